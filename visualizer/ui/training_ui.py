"""Training, evaluation and sweep requests of the window (wired to visualizer.core.training)."""

from __future__ import annotations


def prepare_curves(window, options) -> None:
    """Nothing to draw until the training engine is available."""


def available() -> bool:
    from visualizer.ui.window import training_available

    return training_available()[0]
