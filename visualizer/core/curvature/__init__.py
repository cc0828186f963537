"""Curvature: the Hessian-vector-product engine (operator), Lanczos/SLQ/Hutchinson (lanczos),
spectra (spectrum) and loss landscapes (landscape)."""
