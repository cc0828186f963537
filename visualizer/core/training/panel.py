"""The Training panel's settings read as core objects: light helpers the window calls on its own
thread (no heavy imports here: start-up must not load networkx or scipy; the jobs that use
these settings live in :mod:`visualizer.core.training.workflows`)."""

from __future__ import annotations

from visualizer.core.training.loop import TrainConfig
from visualizer.core.workspace import (
    EVAL_BATCH_SIZE,
    evaluation_sample_size,
    streamed,
    window_evaluation,
)


def train_config(settings: dict, device: str | None = None, data=None):
    """The Training panel's settings as a TrainConfig, on ``device`` (the window's one device
    chooser, ui.device_ui; ``settings["device"]`` or auto where none is given). Its evaluations
    read the window's sample of ``data`` (core.workspace.window_evaluation: a preview sample of a
    streamed source, the whole split of an in-memory one)."""
    eval_batches, eval_batch_size = window_evaluation(data) if data is not None else (None, EVAL_BATCH_SIZE)
    return TrainConfig(
        eval_batches=eval_batches,
        eval_batch_size=eval_batch_size,
        epochs=int(settings.get("epochs", 1)),
        lr=float(settings.get("lr", 1e-3)),
        label_smoothing=float(settings.get("label_smoothing", 0.0)),
        distill_weight=0.5 if settings.get("distill") else 0.0,
        device=str(device if device is not None else settings.get("device", "auto")),
        seed=int(settings.get("seed", 0)),
        max_steps=settings.get("max_steps"),
    )


def sample_note(data) -> dict:
    """``{"eval_samples": n}`` when the window evaluates a sample of ``data`` rather than its whole
    test split (a streamed source), else ``{}``: the rows then say what their accuracy was read on."""
    if data is None or not streamed(data):
        return {}
    n, batch_size = window_evaluation(data)
    return {"eval_samples": evaluation_sample_size(data, n, batch_size)}


def seed_list(settings: dict) -> tuple[int, ...]:
    """The panel's seeds ("0, 1, 2"); the single ``seed`` when none are given."""
    text = str(settings.get("seeds") or "").replace(" ", "")
    try:
        seeds = tuple(dict.fromkeys(int(t) for t in text.split(",") if t))
    except ValueError as exc:
        raise ValueError(f"seeds are comma-separated integers, got {settings.get('seeds')!r}") from exc
    return seeds or (int(settings.get("seed", 0)),)
