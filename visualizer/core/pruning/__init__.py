"""Pruning: masks, saliency criteria, and ranking scores into masks at any density."""
