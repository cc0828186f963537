"""The window's control panels (model, pruning, training), one module each.

Panels turn user input into requests on the window (which submits jobs) and show the state;
they never compute anything themselves.
"""
