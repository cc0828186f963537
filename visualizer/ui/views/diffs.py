"""Diffs of two models in the window: which model B is, and the job that compares it with A.

B is either the shrunk model (the structured pruner at the window's density, ranked by the current
criterion's scores summed over each coupled unit, or by the group L2 norm before a ranking exists)
with A the shown model, or the shown model itself with A the weights before the last kept
fine-tune (AppState.previous_model). The diff (core.structure.model_diff) is computed in a job
and installed on the state; the graph paints it as overlays, the overview as tile colours.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PySide6.QtWidgets import QComboBox

from visualizer.core.structure.model_diff import model_diff_job, shrunk_diff_job

CHOICES = {
    "": "diff two models…",
    "shrunk": "B = the shrunk model",
    "training": "B = now, A = before training",
}
TIPS = {
    "": "compare the shown model with another one, layer by layer",
    "shrunk": "A = the shown model, B = the structured pruner's physically smaller copy at the current "
              "density and criterion (computed in a job): Δ parameters and Δ FLOPs per layer",
    "training": "A = the weights before the last kept fine-tune, B = the shown weights: the relative "
                "weight change ‖W_B − W_A‖ / ‖W_A‖ per layer",
}
NO_EARLIER_VERSION = ("no earlier version: the weights have not been fine-tuned (with 'keep trained "
                      "weights') since the model was loaded")


def diff_box() -> QComboBox:
    """The choice of B (the first entry: nothing chosen)."""
    box = QComboBox()
    for key, text in CHOICES.items():
        box.addItem(text, key)
    box.setToolTip("\n".join(f"{CHOICES[k]}: {TIPS[k]}" for k in CHOICES if k))
    return box


def request_model_diff(window, kind: str, status: Callable[[str], None],
                       on_done: Callable[[], None] | None = None) -> str:
    """Start the diff of ``kind`` ("shrunk" or "training") for the window's shown model in a
    job; the result is installed on the state (AppState.set_model_diff) unless the model changed
    meanwhile. ``status`` shows one line (progress, why not, notices). Returns '' when the job
    started, else the line saying why not."""
    state = window.state
    if getattr(state, "loaded", None) is None:
        return ""
    snap = state.capture(reads_data=False, settings={"diff": kind})
    masked_note = ""
    if kind == "training":
        before = getattr(state, "previous_model", None)
        if before is None:
            status(NO_EARLIER_VERSION)
            return NO_EARLIER_VERSION
        after = snap.model

        def factory():
            return model_diff_job(before, after, None, "the weights before the last fine-tune",
                                  "the fine-tuned weights", "training")

        title = "diff: before vs after training"
        if state.masks is not None and state.kept() < state.total():
            masked_note = ("the fine-tuned weights hold the mask's zeros: the change counts the pruned "
                           "weights too")
    elif kind == "shrunk":
        model = snap.model
        density = float(getattr(state, "density", 1.0) or 1.0)
        scores_np = getattr(state, "scores", None)
        criterion = getattr(state, "criterion", "")
        by = f"{criterion} scores summed per unit" if scores_np else "group L2 norm"
        label = f"shrunk to {density:.0%} of each coupled group's units ({by})"

        def factory():
            scores = None if not scores_np else {k: torch.as_tensor(v) for k, v in scores_np.items()}
            return shrunk_diff_job(model, density, None, scores=scores, label=label)

        title = f"diff: the model vs its shrunk copy at {density:.0%}"
    else:
        return ""

    def done(diff) -> None:
        if not state.is_current(snap.provenance):
            status(f"{title}: discarded (computed on {snap.provenance.label()})")
            return
        if masked_note:
            diff.notices.append(masked_note)
        status("; ".join(diff.notices))
        state.set_model_diff(diff)
        if on_done is not None:
            on_done()

    status(f"{title}…")
    window.jobs.submit("model-diff", title, factory, on_result=done,
                       on_error=lambda msg: status(f"{title} failed: {msg}"), origin=snap.provenance)
    return ""
