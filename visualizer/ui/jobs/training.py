"""Training, evaluation and sweep requests of the window, as jobs over visualizer.core.

Every job trains a copy (core.training guarantees the caller's model and masks are untouched);
its rows go to ``state.results`` (the accuracy-vs-density curves) as they stream. With "keep the
trained weights" ticked, a finished fine-tune replaces the model's weights (the session then
stores them). The requests take the window as a :class:`TrainingHost`, so this module never
imports it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

from visualizer.core.tasks import Step, sub
from visualizer.ui.shell.device_ui import job_device

SWEEP_DENSITIES = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)


class TrainingHost(Protocol):
    """What a training request needs of the main window."""

    state: object  # visualizer.ui.shell.state.AppState: model, data, mask, results
    jobs: object  # visualizer.ui.jobs.runner.JobRunner

    def show_error(self, text: str) -> None: ...
    def install_trained_model(self, model) -> None: ...


def train_config(settings: dict, device: str | None = None, data=None):
    """The Training panel's settings as a TrainConfig, on ``device`` (the window's one device
    chooser, ui.device_ui; ``settings["device"]`` or auto where none is given). Its evaluations
    read the window's sample of ``data`` (core.workspace.window_evaluation: a preview sample of a
    streamed source, the whole split of an in-memory one)."""
    from visualizer.core.training.loop import TrainConfig
    from visualizer.core.workspace import EVAL_BATCH_SIZE, window_evaluation

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
    from visualizer.core.workspace import evaluation_sample_size, streamed, window_evaluation

    if data is None or not streamed(data):
        return {}
    n, batch_size = window_evaluation(data)
    return {"eval_samples": evaluation_sample_size(data, n, batch_size)}


def accuracy_text(row: dict) -> str:
    """The status line of a finished run: "accuracy 87.50% on 32 test samples" for a sample."""
    text = f"accuracy {float(row['accuracy']):.2%}"
    if row.get("perplexity") is not None:  # a language model: perplexity first (lower is better)
        text = f"perplexity {float(row['perplexity']):.4g}, next-token {text}"
    return text + (f" on {row['eval_samples']} test samples" if row.get("eval_samples") else "")


def _read_on(row: dict, test) -> dict:
    """The samples an evaluation actually read, where the row says it was a sample."""
    return {"eval_samples": test.n} if "eval_samples" in row else {}


def add_row(window: TrainingHost, row) -> None:
    """Add a finished run's row to the results and say its accuracy in the status bar."""
    if not isinstance(row, dict):
        return
    window.state.add_result(row)
    if "accuracy" in row and hasattr(window, "statusBar"):
        window.statusBar().showMessage(accuracy_text(row), 8000)


def _base_row(window: TrainingHost, settings: dict, device: str) -> dict:
    s = window.state
    return {"model": s.loaded.ref, "criterion": s.criterion, "scope": s.scope, "structure": s.structure,
            "retrain": settings.get("retrain", "none"), "epochs": int(settings.get("epochs", 0)),
            "lr": float(settings.get("lr", 0.0)), "device": device, **sample_note(s.dataset)}


def _require(window: TrainingHost) -> bool:
    s = window.state
    if s.loaded is None or s.dataset is None:
        window.show_error("load a model with a dataset first")
        return False
    return True


# --- jobs (worker thread) --------------------------------------------------------------------------
def evaluate_job(model, data, masks, row: dict, device: str = "cpu") -> Generator[Step, None, dict]:
    """The masked model's accuracy: the evaluation ``pruneviz prune --eval`` and the sweep run,
    on ``device`` (a copy of the model there)."""
    from visualizer.core.training.evaluate import evaluate_job as evaluate
    from visualizer.core.workspace import (
        device_name,
        evaluation_batches,
        model_on,
        resolve_device,
        streamed,
        window_evaluation,
    )

    dev = resolve_device(device)
    yield Step("evaluating the masked model", 0.1)
    # an image folder: a preview sample (the CLI reads the whole split)
    batches = evaluation_batches(data, *window_evaluation(data))
    ev = yield from sub(evaluate(model_on(model, dev), batches, masks), 0.1, 1.0)
    extra = {"eval_samples": ev.n} if streamed(data) else {}
    return {**row, "density": masks.density(), "kept": masks.kept(), "total": masks.total(),
            "accuracy": ev.accuracy, "loss": ev.loss, "device": device_name(dev), **extra,
            **({} if ev.perplexity is None else {"perplexity": ev.perplexity})}


def finetune_job(model, data, masks, config, distill: bool, row: dict) -> Generator[Step, None, tuple[dict, Any]]:
    from visualizer.core.training.loop import train_with_distillation
    from visualizer.core.training.lottery import retrain_job

    job = train_with_distillation(model, data, masks, config) if distill else retrain_job(model, data, masks, "finetune", config)
    res = yield from job
    out = {**row, "density": masks.density(), "kept": masks.kept(), "total": masks.total(),
           "accuracy": res.test.accuracy, "loss": res.test.loss, "steps": res.steps, **_read_on(row, res.test)}
    return out, res.model.cpu()


def imp_job(model, ref: str, data, settings: dict, config) -> Generator[Step, None, list[dict]]:
    """IMP with rewinding plus its controls (re-initialised ticket, random mask): LTH rows, one
    run per seed of ``settings["seeds"]`` -- in parallel as Ray tasks when ``settings["cluster"]``
    names a cluster, else one after another. Partial results are lists of rows."""
    from functools import partial

    from visualizer.core.training.cluster import lth_run
    from visualizer.core.training.lottery import initial_state

    yield Step("initial weights", 0.0)
    seeds = seed_list(settings)
    inits = {s: initial_state(ref, model, s)[0] for s in seeds}
    make = partial(lth_run, model_ref=ref, rounds=int(settings.get("rounds", 3)), rate=float(settings.get("rate", 0.4)),
                   rewind=int(settings.get("rewind", 0)), scope=settings.get("scope", "global"), config=config)
    if settings.get("cluster"):
        from visualizer.core.training.cluster import SeedRun, connect, seeds_on_cluster

        yield Step(f"connecting to {settings['cluster']}", 0.0)
        with connect(settings["cluster"], keep=True):  # the next job reuses the workers
            job = seeds_on_cluster(model, data, [SeedRun(s, inits[s], make) for s in seeds], device=config.device)
            while True:
                try:
                    step = next(job)
                except StopIteration as stop:
                    return [r for s in seeds for r in stop.value[s]]
                partial_rows = step.partial[1] if step.partial is not None else None
                yield Step(step.stage, step.fraction, partial_rows)
    rows: list[dict] = []
    for k, s in enumerate(seeds):
        prefix = f"seed {s}: " if len(seeds) > 1 else ""
        rows += yield from sub(make(model, data, inits[s], s), k / len(seeds), (k + 1) / len(seeds), prefix)
    return rows


def seed_list(settings: dict) -> tuple[int, ...]:
    """The panel's seeds ("0, 1, 2"); the single ``seed`` when none are given."""
    text = str(settings.get("seeds") or "").replace(" ", "")
    try:
        seeds = tuple(dict.fromkeys(int(t) for t in text.split(",") if t))
    except ValueError as exc:
        raise ValueError(f"seeds are comma-separated integers, got {settings.get('seeds')!r}") from exc
    return seeds or (int(settings.get("seed", 0)),)


def dst_job(model, ref: str, data, density: float, settings: dict, config, row: dict) -> Generator[Step, None, dict]:
    from visualizer.core.training.dst import DSTConfig, dynamic_sparse_training
    from visualizer.core.training.lottery import initial_state

    init, _ = initial_state(ref, model, int(settings.get("seed", 0)))
    dst = DSTConfig(settings["retrain"], density, train=config, distribution=settings.get("distribution", "erk"))
    res = yield from dynamic_sparse_training(model, data, dst, start_state=init)
    return {**row, "criterion": settings["retrain"], "distribution": dst.distribution,
            "density": res.masks.density(), "kept": res.masks.kept(),
            "total": res.masks.total(), "accuracy": res.test.accuracy, "loss": res.test.loss,
            "mask_updates": len(res.updates), **_read_on(row, res.test)}


def lasso_job(model, data, density: float, settings: dict, config, row: dict) -> Generator[Step, None, dict]:
    """Group lasso training, then the channel cut to the slider's density (the two steps of structured sparsity learning; Wen et al. 2016)."""
    from visualizer.core.training.prox import (
        ProxConfig,
        proximal_training,
        prune_channels_by_norm,
    )

    res = yield from sub(proximal_training(model, data, ProxConfig("group-lasso", float(settings.get("lam", 1e-3)),
                                                                   density, train=config)), 0.0, 0.9)
    cut = yield from sub(prune_channels_by_norm(res.model, data, density, row.get("scope", "global"), config),
                         0.9, 1.0)
    return {**row, "criterion": "group-lasso", "structure": "channel", "density": cut.masks.density(),
            "kept": cut.masks.kept(), "total": cut.masks.total(), "accuracy": cut.test.accuracy,
            "loss": cut.test.loss, "lasso_accuracy": res.test.accuracy, "zero_groups": res.zero_groups,
            "groups": res.groups, **_read_on(row, cut.test)}


def sweep_job(model, data, sweep_config, previous: list[dict], cluster: str = ""):
    """The sweep here, or with one Ray task per cell on ``cluster`` (local[:N], ray://HOST:PORT,
    auto); the progress then reads "cells: d done, r running, q queued"."""
    from visualizer.core.training.experiments import sweep

    if not cluster:
        return (yield from sub(sweep(model, data, sweep_config, previous=previous), 0.0, 1.0))
    from visualizer.core.training.cluster import connect, sweep_on_cluster

    yield Step(f"connecting to {cluster}", 0.0)
    with connect(cluster, keep=True):  # the next job reuses the workers
        return (yield from sweep_on_cluster(model, data, sweep_config, previous=previous))


# --- requests (GUI thread) -------------------------------------------------------------------------
def evaluate_mask(window: TrainingHost) -> None:
    if not _require(window):
        return
    device = job_device(window)
    if device is None:
        return
    s = window.state
    model, data, masks = s.loaded.model, s.dataset, s.masks.copy()
    row = _base_row(window, {"retrain": "none"}, device)
    window.jobs.submit("eval", "evaluating the mask", lambda: evaluate_job(model, data, masks, row, device),
                       on_result=lambda r: add_row(window, r))


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
    loaded, data = s.loaded, s.dataset
    model, ref, masks, density = loaded.model, loaded.ref, s.masks.copy(), s.density
    config = train_config(settings, device, data)
    row = _base_row(window, settings, device)
    if mode == "finetune":
        def done(result) -> None:
            out, trained = result
            add_row(window, out)
            if settings.get("keep") and s.loaded is loaded:
                window.install_trained_model(trained)

        window.jobs.submit("train", f"fine-tuning {ref} at {masks.density():.2%}",
                           lambda: finetune_job(model, data, masks, config, bool(settings.get("distill")), row),
                           on_result=done)
    elif mode == "imp":
        settings = {**settings, "scope": s.scope}
        try:
            seeds = seed_list(settings)
        except ValueError as exc:
            window.show_error(str(exc))
            return

        added: list[dict] = []  # the rows this run streamed, as stored in state.results
        was_dirty = s.dirty

        note = sample_note(data)

        def add_rows(rows) -> None:
            for r in rows if isinstance(rows, list) else []:
                s.add_result({**r, **note})
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
                           lambda: imp_job(model, ref, data, settings, config),
                           on_partial=add_rows, on_result=lambda _rows: None,
                           on_cancel=roll_back, on_error=roll_back)
    elif mode in ("set", "rigl"):
        window.jobs.submit("train", f"{mode.upper()} at {density:.2%}",
                           lambda: dst_job(model, ref, data, density, settings, config, row), on_result=lambda r: add_row(window, r))
    elif mode == "group-lasso":
        window.jobs.submit("train", f"group lasso to {density:.2%}",
                           lambda: lasso_job(model, data, density, settings, config, row), on_result=lambda r: add_row(window, r))
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
    model, data = s.loaded.model, s.dataset
    note = sample_note(data)

    def add(row) -> None:
        if isinstance(row, dict) and "accuracy" in row:
            key = row_key(row)
            if key not in known:
                known.add(key)
                s.add_result({**row, **note})

    where = f" on {cluster}" if cluster else ""
    window.jobs.submit("sweep", f"sweep {', '.join(criteria)} × {len(densities)} densities ({retrain}){where}",
                       lambda: sweep_job(model, data, config, previous, cluster), on_partial=add,
                       on_result=lambda _r: None)


def prepare_curves(window: TrainingHost, options) -> None:
    """Fill the curves view for a screenshot: a no-retraining sweep of the chosen criterion."""
    if window.state.dataset is None:
        return
    run_sweep(window, {"retrain": "none"})
