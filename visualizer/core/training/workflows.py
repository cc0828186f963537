"""The window's training workflows as jobs: evaluation, fine-tuning, multi-seed IMP, dynamic sparse
training, group lasso and sweeps, each a generator of :class:`~visualizer.core.tasks.Step`.

The window (ui.jobs.training) starts them on a snapshot of its state (core.provenance) and adds
their rows to the curves; nothing here imports Qt, so scripts and tests run them headless with
:func:`visualizer.core.tasks.run`. Every job trains a copy: the model and mask it is handed are
never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Generator, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from visualizer.core.provenance import weights_id
from visualizer.core.tasks import Step, sub
from visualizer.core.training.cluster import connect, lth_run, seeded_runs, sweep_on_cluster
from visualizer.core.training.dst import DSTConfig, dynamic_sparse_training
from visualizer.core.training.evaluate import evaluate_job as evaluate
from visualizer.core.training.experiments import sweep
from visualizer.core.training.loop import train_with_distillation
from visualizer.core.training.lottery import initial_state, retrain_job
from visualizer.core.training.panel import seed_list
from visualizer.core.training.prox import ProxConfig, proximal_training, prune_channels_by_norm
from visualizer.core.training.sensitivity import allocation_curves_job
from visualizer.core.workspace import (
    Workspace,
    device_name,
    evaluation_batches,
    model_on,
    resolve_device,
    streamed,
    window_evaluation,
)


def _read_on(row: dict, test) -> dict:
    """The samples an evaluation actually read, where the row says it was a sample."""
    return {"eval_samples": test.n} if "eval_samples" in row else {}


def weights_of(model) -> dict:
    """``{"weights": identity}`` of the weights a row started from (core.provenance.weights_id):
    after "keep the trained weights" the same model name holds other weights, and its rows are
    another curve."""
    return {"weights": weights_id(model)}


def evaluate_job(model, data, masks, row: dict, device: str = "cpu") -> Generator[Step, None, dict]:
    """The masked model's accuracy: the evaluation ``pruneviz prune --eval`` and the sweep run,
    on ``device`` (a copy of the model there)."""
    dev = resolve_device(device)
    yield Step("evaluating the masked model", 0.1)
    # an image folder: a preview sample (the CLI reads the whole split)
    batches = evaluation_batches(data, *window_evaluation(data))
    ev = yield from sub(evaluate(model_on(model, dev), batches, masks), 0.1, 1.0)
    extra = {"eval_samples": ev.n} if streamed(data) else {}
    return {**row, **weights_of(model), "density": masks.density(), "kept": masks.kept(), "total": masks.total(),
            "accuracy": ev.accuracy, "loss": ev.loss, "device": device_name(dev), **extra,
            **({} if ev.perplexity is None else {"perplexity": ev.perplexity})}


def finetune_job(model, data, masks, config, distill: bool, row: dict) -> Generator[Step, None, tuple[dict, Any]]:
    job = train_with_distillation(model, data, masks, config) if distill else retrain_job(model, data, masks, "finetune", config)
    res = yield from job
    out = {**row, **weights_of(model), "density": masks.density(), "kept": masks.kept(), "total": masks.total(),
           "accuracy": res.test.accuracy, "loss": res.test.loss, "steps": res.steps, **_read_on(row, res.test)}
    return out, res.model.cpu()


def imp_job(model, ref: str, data, settings: dict, config) -> Generator[Step, None, list[dict]]:
    """IMP with rewinding plus its controls (re-initialised ticket, random mask): LTH rows, one
    run per seed of ``settings["seeds"]`` (core.training.cluster.seeded_runs) -- in parallel as Ray
    tasks when ``settings["cluster"]`` names a cluster, else one after another. Partial results
    are lists of rows."""
    yield Step("initial weights", 0.0)
    seeds = seed_list(settings)
    inits = {s: initial_state(ref, model, s)[0] for s in seeds}
    make = partial(lth_run, model_ref=ref, rounds=int(settings.get("rounds", 3)), rate=float(settings.get("rate", 0.4)),
                   rewind=int(settings.get("rewind", 0)), scope=settings.get("scope", "global"), config=config)
    cluster = str(settings.get("cluster") or "")
    weights = weights_of(model)

    def rows_of(job):
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                return [{**r, **weights} for s in seeds for r in stop.value[s]]
            rows = step.partial[1] if step.partial is not None else None
            rows = [{**r, **weights} for r in rows] if isinstance(rows, list) else None
            yield Step(step.stage, step.fraction, rows)

    if not cluster:
        return (yield from rows_of(seeded_runs(model, data, inits, make, device=config.device)))
    yield Step(f"connecting to {cluster}", 0.0)
    with connect(cluster, keep=True):  # the next job reuses the workers
        return (yield from rows_of(seeded_runs(model, data, inits, make, device=config.device, on_cluster=True)))


def dst_job(model, ref: str, data, density: float, settings: dict, config, row: dict) -> Generator[Step, None, dict]:
    init, _ = initial_state(ref, model, int(settings.get("seed", 0)))
    dst = DSTConfig(settings["retrain"], density, train=config, distribution=settings.get("distribution", "erk"))
    res = yield from dynamic_sparse_training(model, data, dst, start_state=init)
    return {**row, **weights_of(model), "criterion": settings["retrain"], "distribution": dst.distribution,
            "density": res.masks.density(), "kept": res.masks.kept(),
            "total": res.masks.total(), "accuracy": res.test.accuracy, "loss": res.test.loss,
            "mask_updates": len(res.updates), **_read_on(row, res.test)}


def lasso_job(model, data, density: float, settings: dict, config, row: dict) -> Generator[Step, None, dict]:
    """Group lasso training, then the channel cut to the slider's density (the two steps of structured sparsity learning; Wen et al. 2016)."""
    res = yield from sub(proximal_training(model, data, ProxConfig("group-lasso", float(settings.get("lam", 1e-3)),
                                                                   density, train=config)), 0.0, 0.9)
    cut = yield from sub(prune_channels_by_norm(res.model, data, density, row.get("scope", "global"), config),
                         0.9, 1.0)
    return {**row, **weights_of(model), "criterion": "group-lasso", "structure": "channel",
            "density": cut.masks.density(),
            "kept": cut.masks.kept(), "total": cut.masks.total(), "accuracy": cut.test.accuracy,
            "loss": cut.test.loss, "lasso_accuracy": res.test.accuracy, "zero_groups": res.zero_groups,
            "groups": res.groups, **_read_on(row, cut.test)}


def sweep_job(model, data, sweep_config, previous: list[dict], cluster: str = "",
              sensitivity_rows: Iterable[dict] = ()):
    """The sweep here, or with one Ray task per cell on ``cluster`` (local[:N], ray://HOST:PORT,
    auto); the progress then reads "cells: d done, r running, q queued". A grid with the
    ``sensitivity`` allocation and no loss curves for a criterion measures them first, as the
    CLI does (:func:`~visualizer.core.training.sensitivity.allocation_curves_job` on a copy of
    the model, reusing the rows of ``sensitivity_rows`` with the same key; the rows stream as
    ``Step.partial`` lists, the sweep's own rows as dicts)."""
    start = 0.0
    if "sensitivity" in sweep_config.allocation_list() and \
            any(not (sweep_config.curves or {}).get(c) for c in sweep_config.criteria):
        ws = Workspace(copy.deepcopy(model), data, device=resolve_device(sweep_config.train.device),
                       model_ref=sweep_config.model)
        found = yield from sub(allocation_curves_job(ws, sweep_config.criteria, sweep_config.curves,
                                                     sensitivity_rows), 0.0, 0.5, "sensitivity allocation: ")
        sweep_config, start = replace(sweep_config, curves=found.curves), 0.5
    if not cluster:
        return (yield from sub(sweep(model, data, sweep_config, previous=previous), start, 1.0))
    yield Step(f"connecting to {cluster}", start)
    with connect(cluster, keep=True):  # the next job reuses the workers
        return (yield from sub(sweep_on_cluster(model, data, sweep_config, previous=previous), start, 1.0))
