"""Curvature: the masked Hessian operator, Lanczos/SLQ/Hutchinson, loss landscapes."""
