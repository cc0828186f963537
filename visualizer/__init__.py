"""Pruning Visualizer: see what pruning does to a neural network."""

__version__ = "0.1.0"
