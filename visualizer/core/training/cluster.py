"""Sweeps and seeded IMP runs as Ray tasks, when one machine is not enough.

Ray Core (Moritz et al., 2018, "Ray: A Distributed Framework for Emerging AI Applications")
schedules independent tasks over the CPUs and GPUs of a cluster. A sweep cell (criterion,
density, retraining, seed) is such a task: its row depends only on its settings, the model, the
data and w_0 (:func:`visualizer.core.training.experiments.cell_job`, the same code the serial
sweep runs), so a cluster gives the serial run's rows in whatever order workers finish. The
same holds for one IMP or LTH run per seed (its rounds stay sequential inside the task).

- The model, the data and w_0 go into Ray's object store once (``ray.put``); tasks receive
  references, and a worker process keeps the objects (and its last rankings) between its tasks.
- Resources: one GPU per task when training runs on CUDA; otherwise one CPU per task, with torch
  limited to one thread inside the task (k tasks on k cores, not k x k threads).
- A worker that dies mid-task is retried by Ray (``max_retries``); rows are keyed by their
  settings, so a retry can give neither a duplicate nor a hole.
- Closing the job (the window's cancel, Ctrl+C in the CLI) cancels every unfinished task
  (``ray.cancel``); rows already streamed stay.

Addresses (:func:`connect`): ``local`` or ``local:N`` starts Ray on this machine with N CPUs;
``ray://HOST:PORT`` connects a Ray client to a cluster's head (every node needs pruneviz and its
dependencies installed, same version; a cluster with token authentication needs its token, see
Ray's security docs); ``auto`` joins the cluster named by ``RAY_ADDRESS`` or
the one already running on this machine. Without Ray installed everything else works; asking for
a cluster says in one line how to get it.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visualizer.core.data.sources import Dataset
from visualizer.core.tasks import Step, first_line, run
from visualizer.core.training.experiments import (
    Cell,
    RankingCache,
    SweepConfig,
    SweepResult,
    check_sweep_inputs,
    lth_report,
    read_rows,
    row_key,
    run_cell,
    sweep_cells,
    sweep_identity,
)
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import IMPConfig, iterative_magnitude_pruning

INSTALL_HINT = "Ray is not installed: pip install 'pruneviz[cluster]'"
MAX_RETRIES = 3  # Ray's own default for tasks: a worker may die three times per task
POLL_SECONDS = 0.5  # how often a waiting job yields (a cancel is seen within this time)


class ClusterError(ValueError):
    """A cluster that cannot be used (Ray missing, no cluster at the address, a task that keeps
    failing); the message is one line for the user."""


def import_ray():
    """The ``ray`` module, or :class:`ClusterError` with the one-line install hint."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(INSTALL_HINT) from exc
    return ray


def ray_available() -> bool:
    try:
        import_ray()
    except ClusterError:
        return False
    return True


# --- addresses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSpec:
    """Where tasks run: ``local`` (``workers`` CPUs on this machine, None = all), ``address``
    (a ``ray://HOST:PORT`` head) or ``auto`` (RAY_ADDRESS or the cluster running here)."""

    kind: str
    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return "local" if self.workers is None else f"local:{self.workers}"
        return self.address or self.kind


def parse_cluster(text: str) -> ClusterSpec:
    """``local``, ``local:N``, ``ray://HOST:PORT`` or ``auto``; anything else is a ValueError."""
    text = (text or "").strip()
    if text == "local":
        return ClusterSpec("local")
    if text.startswith("local:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"local:N needs a worker count N >= 1, got {text!r}")
        return ClusterSpec("local", workers=int(n))
    if text == "auto":
        return ClusterSpec("auto")
    if text.startswith("ray://"):
        host, _, port = text[len("ray://"):].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster address is ray://HOST:PORT, got {text!r}")
        return ClusterSpec("address", address=text)
    raise ValueError(f"unknown cluster {text!r} (use local, local:N, ray://HOST:PORT or auto)")


def _package_root() -> str:
    import visualizer

    return str(Path(visualizer.__file__).resolve().parent.parent)


# the session connect(keep=True) started and left running (the window's: one start serves every job)
_KEPT: dict[str, ClusterSpec | None] = {"spec": None}


@contextmanager
def connect(spec: ClusterSpec | str, keep: bool = False) -> Iterator[Any]:
    """Connect to (or start) the cluster for the block and yield the ``ray`` module.

    A Ray session that is already initialised is used as it is and left running, unless it is one
    that ``keep`` left for another address (then it is replaced). A session started here is shut
    down at the end of the block, or with ``keep`` left running for the next block (Ray shuts it
    down when the process exits). Local workers import pruneviz from the same place as this
    process (its folder goes on their PYTHONPATH)."""
    ray = import_ray()
    if isinstance(spec, str):
        spec = parse_cluster(spec)
    if ray.is_initialized():
        if _KEPT["spec"] in (None, spec):
            yield ray
            return
        ray.shutdown()
    _KEPT["spec"] = None
    _init(ray, spec)
    if keep:
        _KEPT["spec"] = spec
        yield ray
        return
    try:
        yield ray
    finally:
        ray.shutdown()


def _init(ray, spec: ClusterSpec) -> None:
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "configure_logging": True}
    try:
        if spec.kind == "local":
            paths = [_package_root(), *filter(None, [os.environ.get("PYTHONPATH")])]
            # address "local": a new instance even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=spec.workers, log_to_driver=False, **quiet,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
        elif spec.kind == "address":
            with warnings.catch_warnings():  # an unreachable head: the ClusterError below says it in one line
                warnings.simplefilter("ignore", UserWarning)
                ray.init(address=spec.address, logging_level=logging.WARNING)
        else:
            ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(connection_error(spec, exc)) from exc


def connection_error(spec: ClusterSpec, exc: BaseException) -> str:
    """One line for a failed ``ray.init``: Ray's reason and what to check. A remote head needs
    the address it printed, Ray's client on this machine, and, where the cluster runs Ray's token
    authentication (``RAY_AUTH_MODE=token``, on by default in recent Ray), the head's token here:
    the refusal itself shows only in the head's log."""
    checks = []
    if spec.kind != "local":
        checks.append("that a head runs at that address (`ray start --head` prints it; "
                      "ray://HOST:10001 for a remote one)")
        checks.append("that this machine has Ray's client: pip install 'ray[client]'")
        checks.append("Ray's token authentication: with RAY_AUTH_MODE=token on the head, set the "
                      "same RAY_AUTH_MODE and its token (RAY_AUTH_TOKEN, or `ray get-auth-token`) here")
    hint = f"; check {'; '.join(checks)}" if checks else ""
    return f"cannot reach the Ray cluster {spec}: {first_line(exc).rstrip('.')}{hint}"


# --- tasks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """What one task asks Ray for, and the device its training uses there."""

    device: str  # "cuda", "cpu" or "mps" inside the task
    options: dict  # ray.remote options: {"num_gpus": 1} or {"num_cpus": 1}
    resource: str  # "GPU" or "CPU": what bounds the number of tasks running at once

    @property
    def single_thread(self) -> bool:
        return self.resource == "CPU"


def placement(device: str, ray) -> Placement:
    """One GPU per task when training runs on CUDA (``cuda``, or ``auto`` on a cluster with GPUs),
    else one CPU per task."""
    device = str(device or "auto")
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if device.startswith("cuda") or (device == "auto" and gpus >= 1):
        if gpus < 1:
            raise ClusterError("training on CUDA was asked for, but the Ray cluster has no GPU")
        # Ray sets CUDA_VISIBLE_DEVICES per task, so the task's GPU is always "cuda"
        return Placement("cuda", {"num_gpus": 1}, "GPU")
    return Placement("cpu" if device == "auto" else device, {"num_cpus": 1}, "CPU")


# a worker process keeps the shared objects of the current job (and its rankings) between tasks
_WORKER: dict[str, Any] = {"keys": None, "objects": (), "rankings": None}


def _shared(refs: Sequence[Any]) -> tuple:
    ray = import_ray()
    keys = tuple(r.hex() for r in refs)
    if _WORKER["keys"] != keys:
        _WORKER.update(keys=keys, objects=tuple(ray.get(list(refs))), rankings=RankingCache(size=4))
    return _WORKER["objects"]


def _execute(fn: Callable, item: Any, refs: list, single_thread: bool) -> Any:
    """The body of every task: fetch the shared objects (once per worker), run ``fn``."""
    if single_thread:
        torch.set_num_threads(1)
    return fn(item, *_shared(refs))


def map_tasks(
    fn: Callable,
    items: Sequence[Any],
    shared: Sequence[Any],
    place: Placement,
    label: str = "cells",
    max_retries: int = MAX_RETRIES,
) -> Generator[Step, None, dict[int, Any]]:
    """Run ``fn(item, *shared)`` for every item as a Ray task; a job.

    ``shared`` objects go to the object store once. Each finished item is yielded as
    ``Step.partial = (index, result)`` in the order the tasks finish; the stage says how many
    are done, running and queued ("running" = the tasks the cluster's slots hold at once). Closing
    the job cancels every unfinished task. A task that raises, or whose worker dies more than
    ``max_retries`` times, stops the job with :class:`ClusterError`."""
    ray = import_ray()
    refs = [ray.put(obj) for obj in shared]
    remote = ray.remote(_execute).options(max_retries=max_retries, retry_exceptions=False, **place.options)
    pending = {remote.remote(fn, item, refs, place.single_thread): i for i, item in enumerate(items)}
    per_task = place.options.get("num_gpus", place.options.get("num_cpus", 1))
    slots = max(1, int(float(ray.cluster_resources().get(place.resource, 1.0)) // per_task))
    results: dict[int, Any] = {}
    total = len(items)

    def stage() -> str:
        running = min(len(pending), slots)
        return f"{label}: {len(results)} done, {running} running, {len(pending) - running} queued"

    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            if not ready:
                yield Step(stage(), len(results) / total)
                continue
            for ref in ready:
                i = pending.pop(ref)
                results[i] = _get(ray, ref, items[i])
                yield Step(stage(), len(results) / total, (i, results[i]))
    finally:
        for ref in pending:  # closed (cancel, Ctrl+C) or failed: nothing left running
            ray.cancel(ref, force=True)
    return results


def _get(ray, ref, item) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise ClusterError(f"{_describe(item)}: {first_line(cause, with_type=True)}") from exc
    except ray.exceptions.RayError as exc:  # worker died past its retries, node lost, ...
        raise ClusterError(f"{_describe(item)}: {first_line(exc, with_type=True)}") from exc


def _describe(item) -> str:
    if isinstance(item, Cell):
        return f"cell {item.criterion} @ {item.density:g} (seed {item.train.seed})"
    if isinstance(getattr(item, "seed", None), int):  # a SeedRun: its repr would print w_0's tensors
        return f"the run with seed {item.seed}"
    return f"task {type(item).__name__}"


def _cpu_model(model: nn.Module) -> nn.Module:
    if all(t.device.type == "cpu" for t in model.state_dict().values()):
        return model
    return copy.deepcopy(model).cpu()


def _cpu_data(data: Dataset) -> Dataset:
    # a streamed source (an image folder) holds paths, not tensors: it travels as it is
    if not getattr(data, "in_memory", True) or data.x_train.device.type == "cpu":
        return data
    return data.to("cpu")


# --- sweeps --------------------------------------------------------------------------------------

CellFunction = Callable[..., dict]  # (cell, model, data, init_state, cache) -> row, like run_cell


def _sweep_task(cell: Cell, model, data, init_state, compute: CellFunction = run_cell) -> dict:
    return compute(cell, model, data, init_state, _WORKER["rankings"])


def sweep_on_cluster(
    model: nn.Module,
    data: Dataset,
    config: SweepConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    previous: str | Path | Iterable[dict] | None = None,
    compute: CellFunction = run_cell,
    max_retries: int = MAX_RETRIES,
) -> Generator[Step, None, SweepResult]:
    """The sweep of :func:`visualizer.core.training.experiments.sweep` with one Ray task per cell
    (connect first, :func:`connect`). Rows equal the serial sweep's; reused rows (same key in
    ``previous``) are yielded first, computed ones as they finish (``Step.partial`` = the row);
    the result's rows are in grid order. ``compute`` is the function a task runs for a cell
    (:func:`run_cell`, the serial path's)."""
    ray = import_ray()
    check_sweep_inputs(config, init_state)
    # the rows record (and are keyed by) the device the tasks train on, not the driver's
    place = placement(config.train.device, ray)
    config = replace(config, train=replace(config.train, device=place.device))
    cells = sweep_cells(config, getattr(data, "name", "") or "", sweep_identity(model, data))
    cached = {row_key(r): r for r in read_rows(previous)}
    rows: dict[int, dict] = {}
    for cell in cells:
        if row_key(cell.settings) in cached:
            rows[cell.index] = dict(cached[row_key(cell.settings)])
            yield Step(f"{cell.criterion} @ {cell.density:.3g} (done before)", len(rows) / len(cells), dict(rows[cell.index]))
    reused = len(rows)
    todo = [c for c in cells if c.index not in rows]
    if todo:
        job = map_tasks(functools.partial(_sweep_task, compute=compute), todo,
                        (_cpu_model(model), _cpu_data(data), init_state), place, "cells", max_retries)
        try:
            for step in job:
                if step.partial is None:
                    yield Step(step.stage, (reused + step.fraction * len(todo)) / len(cells))
                    continue
                i, row = step.partial
                rows[todo[i].index] = row
                yield Step(step.stage, len(rows) / len(cells), dict(row))
        finally:
            job.close()
    return SweepResult([rows[c.index] for c in cells], len(rows) - reused, reused)


# --- independent seeded runs (IMP, LTH report) ---------------------------------------------------


@dataclass(frozen=True)
class SeedRun:
    """One seeded run: a job factory ``make(model, data, init_state, seed)`` and its inputs."""

    seed: int
    init_state: dict[str, torch.Tensor]
    make: Callable[..., Generator]


def _seed_task(run_spec: SeedRun, model, data) -> Any:
    result = run(run_spec.make(model, data, run_spec.init_state, run_spec.seed))
    return _to_cpu(result)


def _to_cpu(result: Any) -> Any:
    """Trained models inside a result come back on the CPU (the driver may have no GPU)."""
    final = getattr(result, "final", None)
    if final is not None and isinstance(getattr(final, "model", None), nn.Module):
        final.model.cpu()
    return result


def seeds_on_cluster(
    model: nn.Module,
    data: Dataset,
    runs: Sequence[SeedRun],
    device: str = "auto",
    max_retries: int = MAX_RETRIES,
) -> Generator[Step, None, dict[int, Any]]:
    """One Ray task per seeded run (an IMP run, an LTH report): the runs go in parallel, each run's
    rounds stay sequential inside its task. ``make`` is called with ``device`` set by the task's
    placement (``make`` must replace the TrainConfig's device with it: see :func:`imp_run`).
    Yields ``Step.partial = (seed, result)`` as runs finish; returns {seed: result}."""
    ray = import_ray()
    place = placement(device, ray)
    runs = [replace(r, make=functools.partial(r.make, device=place.device)) for r in runs]
    job = map_tasks(_seed_task, runs, (_cpu_model(model), _cpu_data(data)), place, "runs", max_retries)
    out: dict[int, Any] = {}
    try:
        for step in job:
            if step.partial is not None:
                i, result = step.partial
                out[runs[i].seed] = result
                yield Step(step.stage, step.fraction, (runs[i].seed, result))
            else:
                yield step
    finally:
        job.close()
    return out


def seeded_runs(
    model: nn.Module,
    data: Dataset,
    inits: dict[int, dict[str, torch.Tensor]],
    make: Callable[..., Generator],
    device: str = "auto",
    on_cluster: bool = False,
) -> Generator[Step, None, dict[int, Any]]:
    """``make(model, data, init, seed)`` for every seed of ``inits``: one Ray task per seed in
    parallel when ``on_cluster`` (the caller connected, :func:`connect`), else one after another
    here. The multi-seed orchestration of IMP and the LTH report, for the window and the CLI.

    Yields ``Step.partial = (seed, partial)``: a serial run's own partial results as they come
    (an LTH round's rows), a task's whole result when it finishes. Returns {seed: result}."""
    if on_cluster:
        runs = [SeedRun(s, init, make) for s, init in inits.items()]
        return (yield from seeds_on_cluster(model, data, runs, device=device))
    done: dict[int, Any] = {}
    n = len(inits)
    for k, (seed, init) in enumerate(inits.items()):
        prefix = f"seed {seed}: " if n > 1 else ""
        job = make(model, data, init, seed)
        try:
            while True:
                try:
                    step = next(job)
                except StopIteration as stop:
                    done[seed] = stop.value
                    break
                fraction = (k + min(max(step.fraction, 0.0), 1.0)) / n
                partial = None if step.partial is None else (seed, step.partial)
                yield Step(prefix + step.stage, fraction, partial)
        finally:
            job.close()
    return done


def imp_run(model, data, init_state, seed: int, config=None, device: str | None = None):
    """IMP (:func:`visualizer.core.training.lottery.iterative_magnitude_pruning`) with the
    training seed ``seed`` (and the device of its task)."""
    config = config or IMPConfig()
    tc = replace(config.train, seed=int(seed), **({"device": device} if device else {}))
    return (yield from iterative_magnitude_pruning(model, data, init_state, replace(config, train=tc)))


def lth_run(model, data, init_state, seed: int, model_ref: str = "", rounds: int = 8, rate: float = 0.4,
            rewind: int = 0, scope: str = "global", config=None, device: str | None = None):
    """The LTH report (:func:`visualizer.core.training.experiments.lth_report`) for one seed."""
    tc = replace(config or TrainConfig(), seed=int(seed), **({"device": device} if device else {}))
    return (yield from lth_report(model, model_ref, data, init_state, rounds, rate, rewind, scope, tc))
