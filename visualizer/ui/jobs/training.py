"""Training, evaluation and sweep requests of the window, as jobs over visualizer.core.

Every job trains a copy (core.training guarantees the caller's model and masks are untouched);
its rows go to ``state.results`` (the accuracy-vs-density curves) as they stream. With "keep the
trained weights" ticked, a finished fine-tune replaces the model's weights (the session then
stores them). The requests take the window as a :class:`TrainingHost`, so this module never
imports it.
"""

from __future__ import annotations

from typing import Protocol

from visualizer.core.training.panel import sample_note, seed_list, train_config
from visualizer.ui.shell.device_ui import job_device
from visualizer.ui.views import sensitivity


def _workflows():
    """core.training.workflows, imported in the worker when a job first runs: it brings the
    structure code (networkx, scipy) that the window's start-up need not load."""
    from visualizer.core.training import workflows

    return workflows


SWEEP_DENSITIES = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)


class TrainingHost(Protocol):
    """What a training request needs of the main window."""

    state: object  # visualizer.ui.shell.state.AppState: model, data, mask, results
    jobs: object  # visualizer.ui.jobs.runner.JobRunner

    def show_error(self, text: str) -> None: ...
    def install_trained_model(self, model) -> None: ...


def accuracy_text(row: dict) -> str:
    """The status line of a finished run: "accuracy 87.50% on 32 test samples" for a sample."""
    text = f"accuracy {float(row['accuracy']):.2%}"
    if row.get("perplexity") is not None:  # a language model: perplexity first (lower is better)
        text = f"perplexity {float(row['perplexity']):.4g}, next-token {text}"
    return text + (f" on {row['eval_samples']} test samples" if row.get("eval_samples") else "")


def add_row(window: TrainingHost, row, origin=None) -> None:
    """Add a finished run's row to the results and say its accuracy in the status bar; a row of
    a state no longer shown (``origin``, core.provenance) is dropped (AppState.add_result)."""
    if not isinstance(row, dict) or not window.state.add_result(row, origin):
        return
    if "accuracy" in row and hasattr(window, "statusBar"):
        window.statusBar().showMessage(accuracy_text(row), 8000)


def _base_row(window: TrainingHost, settings: dict, device: str) -> dict:
    s = window.state
    return {"model": s.loaded.ref, "dataset": s.dataset_name or "", "criterion": s.criterion, "scope": s.scope,
            "structure": s.structure,
            "retrain": settings.get("retrain", "none"), "epochs": int(settings.get("epochs", 0)),
            "lr": float(settings.get("lr", 0.0)), "device": device, **sample_note(s.dataset)}


def _require(window: TrainingHost) -> bool:
    s = window.state
    if s.loaded is None or s.dataset is None:
        window.show_error("load a model with a dataset first")
        return False
    return True


# --- requests (GUI thread) -------------------------------------------------------------------------
def evaluate_mask(window: TrainingHost) -> None:
    if not _require(window):
        return
    device = job_device(window)
    if device is None:
        return
    snap = window.state.capture(mask=True)
    row = _base_row(window, {"retrain": "none"}, device)
    window.jobs.submit("eval", "evaluating the mask",
                       lambda: _workflows().evaluate_job(snap.model, snap.data, snap.masks, row, device),
                       on_result=lambda r: add_row(window, r, snap.provenance), origin=snap.provenance)


def run_training(window: TrainingHost, settings: dict) -> None:
    """Run the Training panel's retrain mode on the current model and mask."""
    if not _require(window):
        return
    s = window.state
    mode = settings.get("retrain", "none")
    if mode == "none":
        evaluate_mask(window)
        return
    device = job_device(window)
    if device is None:
        return
    snap = s.capture(mask=True, settings=settings)
    origin = snap.provenance
    model, data, masks, ref, density = snap.model, snap.data, snap.masks, s.loaded.ref, s.density
    config = train_config(settings, device, data)
    row = _base_row(window, settings, device)
    if mode == "finetune":
        def done(result) -> None:
            out, trained = result
            add_row(window, out, origin)
            if settings.get("keep") and s.is_current(origin):
                window.install_trained_model(trained)

        window.jobs.submit("train", f"fine-tuning {ref} at {masks.density():.2%}",
                           lambda: _workflows().finetune_job(model, data, masks, config, bool(settings.get("distill")), row),
                           on_result=done, origin=origin)
    elif mode == "imp":
        settings = {**settings, "scope": s.scope}
        try:
            seeds = seed_list(settings)
        except ValueError as exc:
            window.show_error(str(exc))
            return

        added: list[dict] = []  # the rows this run streamed, as stored in state.results
        was_dirty = s.dirty

        note = {"dataset": s.dataset_name or "", **sample_note(data)}

        def add_rows(rows) -> None:
            for r in rows if isinstance(rows, list) else []:
                if s.add_result({**r, **note}, origin):
                    added.append(s.results[-1])

        def roll_back(*_args) -> None:
            """A cancelled or failed run leaves the curves as they were before it."""
            if added:
                mine = {id(r) for r in added}
                s.set_results([r for r in s.results if id(r) not in mine])
                s.set_dirty(was_dirty)

        where = f" on {settings['cluster']}" if settings.get("cluster") else ""
        runs = f", {len(seeds)} seeds" if len(seeds) > 1 else ""
        window.jobs.submit("train", f"IMP ({settings.get('rounds', 3)} rounds, rewind {settings.get('rewind', 0)}{runs}){where}",
                           lambda: _workflows().imp_job(model, ref, data, settings, config),
                           on_partial=add_rows, on_result=lambda _rows: None,
                           on_cancel=roll_back, on_error=roll_back, origin=origin)
    elif mode in ("set", "rigl"):
        window.jobs.submit("train", f"{mode.upper()} at {density:.2%}",
                           lambda: _workflows().dst_job(model, ref, data, density, settings, config, row),
                           on_result=lambda r: add_row(window, r, origin), origin=origin)
    elif mode == "group-lasso":
        window.jobs.submit("train", f"group lasso to {density:.2%}",
                           lambda: _workflows().lasso_job(model, data, density, settings, config, row),
                           on_result=lambda r: add_row(window, r, origin), origin=origin)
    else:
        window.show_error(f"unknown retrain mode {mode!r}")


def run_sweep(window: TrainingHost, settings: dict, densities=SWEEP_DENSITIES) -> None:
    """Accuracy at several densities for the current criterion (and random, as the baseline);
    rows already computed with the same settings are reused, new ones stream into the curves."""
    if not _require(window):
        return
    from visualizer.core.training.experiments import KEY_FIELDS, SweepConfig, row_key

    device = job_device(window)
    if device is None:
        return
    s = window.state
    mode = settings.get("retrain", "none")
    retrain = mode if mode in ("none", "finetune") else "none"
    criteria = tuple(dict.fromkeys([s.criterion, "random"]))
    structure = "channel" if s.structure == "channel" else "auto"
    try:
        seeds = seed_list(settings)
    except ValueError as exc:
        window.show_error(str(exc))
        return
    config = SweepConfig(s.loaded.ref, criteria, tuple(densities), retrain=retrain, scope=s.scope,
                         structure=structure, train=train_config(settings, device, s.dataset), seeds=seeds)
    cluster = str(settings.get("cluster") or "")
    previous = [r for r in s.results if all(k in r for k in KEY_FIELDS)]
    known = {row_key(r) for r in previous}
    snap = s.capture(settings={"sweep": criteria, "retrain": retrain})
    model, data = snap.model, snap.data
    note = sample_note(data)

    # the sensitivity allocation's loss curves: measured first unless the sensitivity view holds
    # them for this model version, data and criterion; the measured rows go to that view
    rows = sensitivity.allocation_rows(window) if "sensitivity" in config.allocation_list() else []

    def add(row) -> None:
        if sensitivity.take_allocation_rows(window, row, snap.provenance):
            return
        if isinstance(row, dict) and "accuracy" in row:
            key = row_key(row)
            if key not in known and s.add_result({**row, **note}, snap.provenance):
                known.add(key)

    where = f" on {cluster}" if cluster else ""
    window.jobs.submit("sweep", f"sweep {', '.join(criteria)} × {len(densities)} densities ({retrain}){where}",
                       lambda: _workflows().sweep_job(model, data, config, previous, cluster, rows), on_partial=add,
                       on_result=lambda _r: None, origin=snap.provenance)


def prepare_curves(window: TrainingHost, options) -> None:
    """Fill the curves view for a screenshot: a no-retraining sweep of the chosen criterion."""
    if window.state.dataset is None:
        return
    run_sweep(window, {"retrain": "none"})
