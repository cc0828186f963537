"""Experiments as streams of result rows: accuracy-vs-density sweeps and the LTH report.

A sweep runs criteria x densities x one retraining mode and yields every row as soon as it is
computed (``Step.partial`` = the row). Rows carry every setting that produced them (model,
criterion, density, scope, retrain, epochs, lr, seed) next to the results (achieved density,
accuracy, loss), so they can be cached: given earlier rows (a list, or a CSV/JSON file written by
:func:`write_rows`) a sweep reuses those with the same settings and computes only the rest, which
is how a cancelled sweep resumes.

Retraining modes: ``none`` evaluates m ⊙ w of the trained model; ``finetune`` trains the kept
weights from their trained values (projected gradient); ``rewind`` trains m ⊙ w_0 from the
initialisation (one-shot lottery ticket); ``init`` is pruning at initialisation: the criterion
scores w_0 itself (SNIP, GraSP, random, ... on the untrained network) and m ⊙ w_0 is trained.
Without retraining one ranking per criterion serves
every density (the ranking's threshold lookup), so scores are computed once per criterion.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from visualizer.core.data.sources import Dataset
from visualizer.core.io.atomic import atomic_write
from visualizer.core.provenance import data_id, weights_id
from visualizer.core.pruning.allocation import (
    ALLOCATIONS,
    OWL_LAMBDA,
    OWL_M,
    build_allocated_ranking,
    check_allocation,
    outlier_ratios_job,
)
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.ranking import SCOPES
from visualizer.core.tasks import Step, progress_only, run, sub
from visualizer.core.training.evaluate import evaluate_job
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import (
    RETRAIN_MODES,
    IMPConfig,
    iterative_magnitude_pruning,
    retrain_job,
)
from visualizer.core.workspace import (
    SCORE_BATCHES,
    Workspace,
    device_key,
    device_name,
    evaluation_batches,
    model_on,
    resolve_device,
)

# the training settings recorded in a row (None when the row involved no training: retrain none)
TRAIN_FIELDS = ("optimizer", "batch_size", "momentum", "weight_decay", "label_smoothing", "distill_weight",
                "temperature", "max_steps")
# what a row's number was read on and from: the evaluation sample ("2x16": 2 batches of 16; "allx512":
# the whole split in batches of 512), the data as read (core.provenance.data_id: source, split sizes,
# preprocessing) and the weights (core.provenance.weights_id: a kept fine-tune under the same name
# is other weights)
IDENTITY_FIELDS = ("eval_sample", "data_id", "weights")
ROW_FIELDS = [
    "model", "dataset", "criterion", "density", "achieved_density", "scope", "allocation", "allocation_inputs",
    "structure", "retrain", "epochs", "lr", *TRAIN_FIELDS, "seed", "score_batches", "device", *IDENTITY_FIELDS,
    "accuracy", "loss", "kept", "total", "seconds",
]
# every setting that changes a row's result: a cached row is reused only when all of them agree
KEY_FIELDS = ("model", "dataset", "criterion", "density", "scope", "allocation", "allocation_inputs", "structure",
              "retrain", "epochs", "lr", *TRAIN_FIELDS, "seed", "score_batches", "device", *IDENTITY_FIELDS)
# fields that are text even when they read as a number (a hex identity "1234e5678901")
TEXT_FIELDS = ("model", "dataset", "criterion", "scope", "allocation", "allocation_inputs", "structure", "retrain",
               "optimizer", "device", "kind", *IDENTITY_FIELDS)
STRUCTURES = ("auto", "unstructured", "channel")


@dataclass(frozen=True)
class SweepConfig:
    model: str  # the model reference, recorded in each row
    criteria: tuple[str, ...] = ("magnitude", "random")
    densities: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.05)
    retrain: str = "none"
    scope: str = "global"
    structure: str = "auto"  # auto: whole channels for structured criteria (l1-norm, ...), else weights
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = ()  # one cell per seed; empty: train.seed alone
    # a grid dimension: how the density is spread over the layers (core.pruning.allocation);
    # empty: the scope alone (a scope that names an allocation, e.g. "erk", is that allocation)
    allocations: tuple[str, ...] = ()
    # the sensitivity allocation's measured loss curves per criterion: {criterion: {layer: {level: increase}}}
    curves: dict | None = None
    owl_lambda: float | None = None
    owl_m: float | None = None

    def allocation_list(self) -> tuple[str, ...]:
        """The allocations of the grid ("" = the plain scope)."""
        if self.allocations:
            return tuple(dict.fromkeys(self.allocations))
        return ("",) if self.scope in SCOPES else (self.scope,)

    def allocation_inputs(self, allocation: str, criterion: str) -> str:
        """What else decides an allocation's masks, as a key: OWL's lambda and M, a digest of the
        sensitivity curves (two sweeps measured on different levels are different rows)."""
        if allocation == "owl":
            lam = OWL_LAMBDA if self.owl_lambda is None else self.owl_lambda
            return f"lambda={lam:g},m={OWL_M if self.owl_m is None else self.owl_m:g}"
        if allocation == "sensitivity":
            import hashlib

            curves = (self.curves or {}).get(criterion) or {}
            text = json.dumps({n: sorted(c.items()) for n, c in sorted(curves.items())})
            return "curves=" + hashlib.sha1(text.encode()).hexdigest()[:12]
        return ""

    def seed_list(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(int(s) for s in self.seeds)) or (self.train.seed,)

    def structure_for(self, criterion: str, allocation: str = "") -> str:
        if allocation not in ("", "global", "layer"):
            return "unstructured"  # the allocations spread single weights
        if self.structure != "auto":
            return self.structure
        info = CRITERIA.get(criterion)
        return "channel" if info is not None and info.structured else "unstructured"

    def validate(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"unknown structure {self.structure!r} (use {', '.join(STRUCTURES)})")
        if self.retrain not in RETRAIN_MODES:
            raise ValueError(f"unknown retrain mode {self.retrain!r} (use {', '.join(RETRAIN_MODES)})")
        if self.scope not in ("global", "layer", *ALLOCATIONS):
            raise ValueError(f"unknown scope {self.scope!r} (use global, layer)")
        for a in self.allocation_list():
            if a:
                check_allocation(a)
            if a not in ("", "global") and self.structure == "channel":
                raise ValueError(f"the {a} allocation spreads single weights: use structure unstructured")
            if a == "sensitivity":
                for c in self.criteria:
                    if not (self.curves or {}).get(c):
                        raise ValueError(f"the sensitivity allocation needs measured loss curves for {c} "
                                         "(pruneviz sensitivity)")
        if not self.criteria:
            raise ValueError("no criteria given")
        if not self.densities:
            raise ValueError("no densities given")
        for d in self.densities:
            if not (0.0 <= d <= 1.0) or math.isnan(d):
                raise ValueError(f"density must be in [0, 1], got {d}")
        if self.retrain != "none":
            self.train.validate()


@dataclass
class SweepResult:
    rows: list[dict]
    computed: int  # rows computed by this run
    reused: int  # rows taken from the previous results


def row_key(row: dict) -> tuple:
    """The settings that identify a row (:data:`KEY_FIELDS`; numbers rounded to 6 significant
    digits so CSV and JSON round trips match; a missing or empty setting reads as "")."""
    return tuple(_key_value(f, row.get(f)) for f in KEY_FIELDS)


def _key_value(name: str, v) -> str:
    if name == "structure" and v in (None, ""):
        return "unstructured"  # rows written before the structure column existed
    if v is None or v == "":
        return ""
    if name in TEXT_FIELDS:
        return str(v)
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return f"{float(v):.6g}"
    try:  # numbers read back from CSV as text
        return f"{float(v):.6g}"
    except (TypeError, ValueError):
        return str(v)


def eval_sample(config: TrainConfig) -> str:
    """The evaluation sample a row's accuracy is read on: "2x16" (the first 2 batches of 16) or
    "allx512" (the whole split in batches of 512)."""
    return f"{config.eval_batches or 'all'}x{config.eval_batch_size}"


def sweep_identity(model: nn.Module, data) -> dict:
    """What a sweep's rows were computed from, beyond their settings: the data as read and the
    weights (content identities, :mod:`visualizer.core.provenance`)."""
    return {"data_id": data_id(data), "weights": weights_id(model)}


def _settings_row(config: SweepConfig, criterion: str, density: float, dataset: str = "", seed: int | None = None,
                  identity: dict | None = None, allocation: str = "") -> dict:
    """Every setting that produces the (criterion, density, allocation) row of this sweep
    (``identity``: :func:`sweep_identity` of the model and data it runs on)."""
    retrain = config.retrain != "none"
    tc = config.train
    info = CRITERIA.get(criterion)
    return {
        "model": config.model,
        "dataset": dataset,
        "criterion": criterion,
        "density": float(density),
        "scope": config.scope,
        "allocation": allocation,
        "allocation_inputs": config.allocation_inputs(allocation, criterion),
        "structure": config.structure_for(criterion, allocation),
        "retrain": config.retrain,
        "epochs": tc.epochs if retrain else 0,
        "lr": tc.lr if retrain else 0.0,
        **{f: (getattr(tc, f) if retrain else None) for f in TRAIN_FIELDS},
        "seed": tc.seed if seed is None else int(seed),
        "score_batches": SCORE_BATCHES if info is not None and info.needs_data else 0,
        # floating-point sums differ between devices: a row computed on one is not another's
        "device": device_key(tc.device),
        "eval_sample": eval_sample(tc),
        "data_id": (identity or {}).get("data_id", ""),
        "weights": (identity or {}).get("weights", ""),
    }


def read_rows(source: str | Path | Iterable[dict] | None) -> list[dict]:
    """Rows from a list, or a CSV/JSON file written by :func:`write_rows` (missing file: none)."""
    if source is None:
        return []
    if not isinstance(source, (str, Path)):
        return [dict(r) for r in source]
    path = Path(source)
    if not path.exists():
        return []
    if path.suffix == ".json":
        obj = json.loads(path.read_text())
        rows = obj.get("rows", []) if isinstance(obj, dict) else obj
        return [dict(r) for r in rows]
    with path.open(newline="") as f:
        return [_parse_csv_row(r) for r in csv.DictReader(f)]


def _parse_csv_row(r: dict) -> dict:
    out: dict = {}
    for k, v in r.items():
        if v is None or v == "":
            out[k] = None
            continue
        if k in TEXT_FIELDS:
            out[k] = v
            continue
        try:
            out[k] = int(v) if k in ("epochs", "seed", "kept", "total", "round", "batch_size", "score_batches", "max_steps") else float(v)
        except ValueError:
            out[k] = v
    return out


def write_rows(rows: Sequence[dict], path: str | Path, fields: Sequence[str] | None = None) -> None:
    """Write rows as CSV (``.csv``) or JSON (``.json``, ``{"rows": [...]}``), atomically."""
    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps({"rows": [_jsonable(r) for r in rows]}, indent=2)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
        return
    columns = list(fields or ROW_FIELDS)
    for r in rows:
        columns += [k for k in r if k not in columns]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: _csv_value(r.get(k)) for k in columns})

    atomic_write(path, write)


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return "" if v is None else v


def _jsonable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: the settings row that identifies it (:func:`row_key`), the training
    settings it runs with (``train.seed`` = the cell's seed) and its place in the grid."""

    index: int
    settings: dict
    train: TrainConfig
    inputs: dict = field(default_factory=dict)  # the allocation's inputs known before the sweep (curves)

    @property
    def criterion(self) -> str:
        return self.settings["criterion"]

    @property
    def density(self) -> float:
        return self.settings["density"]


def sweep_cells(config: SweepConfig, dataset: str = "", identity: dict | None = None) -> list[Cell]:
    """The grid of a sweep in its order: criteria x allocations x seeds x densities (cells that
    share a ranking -- same criterion, allocation and seed -- are neighbours, so one cached ranking
    serves a run of them). ``identity``: :func:`sweep_identity` of the model and data, recorded in
    every cell's key."""
    cells = []
    for criterion in config.criteria:
        for allocation in config.allocation_list():
            inputs = {}
            if allocation == "sensitivity":
                inputs["curves"] = (config.curves or {}).get(criterion)
            if allocation == "owl":
                inputs["owl_lambda"] = OWL_LAMBDA if config.owl_lambda is None else config.owl_lambda
                inputs["owl_m"] = OWL_M if config.owl_m is None else config.owl_m
            for seed in config.seed_list():
                train_config = replace(config.train, seed=seed)
                for density in config.densities:
                    settings = _settings_row(config, criterion, density, dataset, seed, identity, allocation)
                    cells.append(Cell(len(cells), settings, train_config, inputs))
    return cells


class RankingCache:
    """The last ``size`` rankings by (criterion, seed, scope, structure, retrain): without
    retraining the cells of one criterion differ only in the cut, so one scoring serves them all."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._items: dict[tuple, object] = {}

    def get(self, key: tuple):
        return self._items.get(key)

    def put(self, key: tuple, ranking) -> None:
        self._items.pop(key, None)
        self._items[key] = ranking
        while len(self._items) > self.size:
            self._items.pop(next(iter(self._items)))


def cell_job(
    cell: Cell,
    model: nn.Module,
    data: Dataset,
    init_state: dict[str, torch.Tensor] | None = None,
    cache: RankingCache | None = None,
) -> Generator[Step, None, dict]:
    """The row of one sweep cell: score, rank, cut at the density, evaluate or retrain.

    The row depends only on the cell's settings, the model, the data and w_0: the global torch
    generators are seeded with the cell's seed first (dropout draws the same numbers on any
    worker), the score batches and the batch order come from seeded generators, and a cached
    ranking is the one the cell would compute itself. The serial sweep and a Ray task
    (:mod:`visualizer.core.training.cluster`) both compute cells here."""
    s = cell.settings
    start = time.perf_counter()
    device = resolve_device(cell.train.device)
    model = model_on(model, device)  # a Ray worker's copy arrives on the host
    torch.manual_seed(int(cell.train.seed))
    allocation = s.get("allocation") or s["scope"]
    key = (s["criterion"], cell.train.seed, allocation, s.get("allocation_inputs"), s["structure"], s["retrain"])
    ranking = cache.get(key) if cache is not None else None
    if ranking is None:
        scored = _with_state(model, init_state) if s["retrain"] == "init" else model
        workspace = Workspace(model, data, device=device, seed=cell.train.seed, model_ref=s["model"])
        scores = yield from sub(workspace.scores(s["criterion"], scored), 0.0, 0.0, f"{s['criterion']} scores: ")
        inputs = dict(cell.inputs)
        if allocation == "owl":  # OWL's outlier ratios on the criterion batches of the scored weights
            m = inputs.pop("owl_m", OWL_M)
            inputs["outlier_ratios"] = yield from sub(outlier_ratios_job(scored, workspace.criterion_batches(), m),
                                                      0.0, 0.0, "outlier ratios: ")
        ranking = yield from sub(build_allocated_ranking(scores, allocation, s["structure"], **inputs), 0.0, 0.0,
                                 f"{s['criterion']} ranking: ")
        if cache is not None:
            cache.put(key, ranking)
    masks = ranking.mask_at(s["density"])
    # the training loop's progress records are not rows: only the cell's own row is a result
    result = yield from progress_only(_evaluate_cell(model, data, s["retrain"], cell.train, masks, init_state))
    return {**s, **result, "seconds": time.perf_counter() - start}


def run_cell(
    cell: Cell,
    model: nn.Module,
    data: Dataset,
    init_state: dict[str, torch.Tensor] | None = None,
    cache: RankingCache | None = None,
) -> dict:
    """:func:`cell_job` run to the end: the row of one cell (what a Ray task returns)."""
    return run(cell_job(cell, model, data, init_state, cache))


def check_sweep_inputs(config: SweepConfig, init_state) -> None:
    config.validate()
    if config.retrain in ("rewind", "init") and init_state is None:
        raise ValueError(f"retrain {config.retrain!r} needs the initialisation (init_state)")


def sweep(
    model: nn.Module,
    data: Dataset,
    config: SweepConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    previous: str | Path | Iterable[dict] | None = None,
) -> Generator[Step, None, SweepResult]:
    """Accuracy vs density for ``config.criteria`` x seeds x ``config.densities`` (see module
    docstring), one cell after another in this process.

    ``model`` is the trained model (never changed); ``init_state`` (w_0) is needed for
    ``retrain='rewind'``; ``previous`` rows with matching settings are reused, not recomputed.
    Every row, reused or new, is yielded as ``Step.partial`` in grid order."""
    check_sweep_inputs(config, init_state)
    model = model_on(model, resolve_device(config.train.device))  # scoring and evaluation there too
    cache_rows = {row_key(r): r for r in read_rows(previous)}
    cells = sweep_cells(config, getattr(data, "name", "") or "", sweep_identity(model, data))
    total = len(cells)
    rankings = RankingCache(size=1)
    rows: list[dict] = []
    computed = reused = 0
    for cell in cells:
        key = row_key(cell.settings)
        if key in cache_rows:
            row = dict(cache_rows[key])
            reused += 1
        else:
            i = len(rows)
            row = yield from sub(cell_job(cell, model, data, init_state, rankings), i / total, (i + 1) / total)
            computed += 1
        rows.append(row)
        yield Step(f"{cell.criterion} @ {cell.density:.3g}", len(rows) / total, dict(row))
    return SweepResult(rows, computed, reused)


def _with_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


def _evaluate_cell(model, data, retrain: str, train_config: TrainConfig, masks: MaskSet, init_state):
    """Accuracy/loss of one (criterion, density) cell under the retraining mode: the evaluation
    of ``prune --eval`` for ``none``, :func:`~visualizer.core.training.lottery.retrain_job` (what
    one-shot fine-tuning and pruning at initialisation run) otherwise."""
    base = {"achieved_density": masks.density(), "kept": masks.kept(), "total": masks.total()}
    if retrain == "none":
        batches = evaluation_batches(data, train_config.eval_batches, train_config.eval_batch_size)
        ev = yield from evaluate_job(model, batches, masks)
        return {**base, "accuracy": ev.accuracy, "loss": ev.loss, **_perplexity(ev)}
    res = yield from retrain_job(model, data, masks, retrain, train_config, init_state)
    return {**base, "accuracy": res.test.accuracy, "loss": res.test.loss, **_perplexity(res.test)}


def _perplexity(ev) -> dict:
    """``{"perplexity": exp(loss)}`` for a language model on token data (the metric that replaces
    accuracy there, docs/theory.md §19), nothing for a classifier."""
    return {} if ev.perplexity is None else {"perplexity": ev.perplexity}


class RowFile:
    """The rows of a sweep on disk while it runs: every finished row is written at once (an
    interrupted sweep resumes from the file), the file is rewritten whole and atomically in grid
    order (never half a row, never an order that depends on which worker finished first), one row
    per key (a retried cell cannot appear twice), and rows of other settings already in the file
    are kept after this sweep's."""

    def __init__(self, path: str | Path, cells: Sequence[Cell], previous: Iterable[dict] = (),
                 fields: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.fields = list(fields or ROW_FIELDS)
        self.order = {row_key(c.settings): c.index for c in cells}
        self.previous = [dict(r) for r in previous]
        self.done: dict[tuple, dict] = {}

    def add(self, row: dict) -> None:
        self.done[row_key(row)] = row
        self.write()

    def rows(self) -> list[dict]:
        mine = sorted(self.done.items(), key=lambda kv: self.order.get(kv[0], len(self.order)))
        return [r for _, r in mine] + [r for r in self.previous if row_key(r) not in self.done]

    def write(self, path: str | Path | None = None) -> None:
        write_rows(self.rows(), path or self.path, self.fields)


# --- the lottery ticket report -------------------------------------------------------------------

LTH_FIELDS = ["model", "criterion", "retrain", "kind", "round", "density", "accuracy", "loss", "rate", "rewind", "epochs", "lr", "seed", "scope",
              "device"]


def lth_report(
    model: nn.Module,
    model_ref: str,
    data: Dataset,
    init_state: dict[str, torch.Tensor],
    rounds: int = 8,
    rate: float = 0.4,
    rewind: int = 0,
    scope: str = "global",
    config: TrainConfig | None = None,
) -> Generator[Step, None, list[dict]]:
    """Accuracy vs density of IMP-rewind tickets, their random re-initialisations and random
    masks at the same densities (long format: one row per (kind, round)). Rows stream as
    ``Step.partial`` lists of the rows of each finished round."""
    config = config or TrainConfig()
    imp_config = IMPConfig(rounds, rate, rewind, scope, ("reinit", "random-mask"), config)
    job = iterative_magnitude_pruning(model, data, init_state, imp_config)
    rows: list[dict] = []
    settings = {"model": model_ref, "criterion": "magnitude", "retrain": "rewind", "rate": rate, "rewind": rewind, "epochs": config.epochs,
                "lr": config.lr, "seed": config.seed, "scope": scope,
                "device": device_name(resolve_device(config.device))}
    try:
        yield from _stream_lth(job, settings, rows)
    finally:
        job.close()  # a cancel closes the IMP job too (it trains on copies: nothing to restore)
    return rows


def _stream_lth(job, settings: dict, rows: list[dict]):
    while True:
        try:
            step = next(job)
        except StopIteration:
            return
        if isinstance(step.partial, dict) and "round" in step.partial and "density" in step.partial:
            r = step.partial
            new = []
            for kind, prefix in (("ticket", ""), ("reinit", "reinit_"), ("random-mask", "random-mask_")):
                new.append({**settings, "kind": kind, "round": r["round"], "density": r["density"],
                            "accuracy": r[f"{prefix}accuracy"], "loss": r[f"{prefix}loss"]})
            rows += new
            yield Step(step.stage, step.fraction, new)
        else:
            yield Step(step.stage, step.fraction)


# --- curves: rows as series ----------------------------------------------------------------------


@dataclass
class Series:
    """One accuracy-vs-density curve: the rows of one (criterion, retraining, kind, dataset), one
    point per density. With several seeds a point is their mean accuracy and (low, high) their
    smallest and largest (the band drawn around the mean); with one seed the three agree."""

    criterion: str
    retrain: str
    kind: str
    dataset: str
    weights: str  # core.provenance.weights_id of the weights the rows started from ("" unknown)
    densities: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    seeds: int
    rows: list[dict]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.criterion, self.retrain, self.kind, self.dataset, self.weights)


def series_key(row: dict) -> tuple[str, str, str, str, str]:
    """The curve a row belongs to: (criterion, retraining, kind, dataset, weights); rows of
    several seeds of one setting share it. "none" and a missing retraining are the same curve;
    rows of other weights under the same model name (trained weights kept) are another curve."""
    retrain = str(row.get("retrain") or "none")
    return (str(row.get("criterion", "?")), retrain, str(row.get("kind") or ""), str(row.get("dataset") or ""),
            str(row.get("weights") or ""))


def curve_series(rows: Iterable[dict], metric: str = "accuracy") -> list[Series]:
    """Rows with a positive density and a finite ``metric`` (accuracy, or a language model's
    perplexity) as curves by :func:`series_key` (first appearance order), each point the mean
    over the seeds at that density (achieved densities are rounded to 6 significant digits to
    pair up)."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        d, a = _number(r.get("density")), _number(r.get(metric))
        if d is None or a is None or d <= 0:
            continue
        groups.setdefault(series_key(r), {}).setdefault(f"{d:.6g}", []).append(r)
    out = []
    for key, by_density in groups.items():
        points = sorted(by_density.values(), key=lambda rs: -float(rs[0]["density"]))
        accs = [[float(r[metric]) for r in rs] for rs in points]
        seeds = {r.get("seed") for rs in points for r in rs}
        out.append(Series(*key, densities=[float(rs[0]["density"]) for rs in points],
                          mean=[math.fsum(a) / len(a) for a in accs], low=[min(a) for a in accs],
                          high=[max(a) for a in accs], seeds=len(seeds),
                          rows=[r for rs in points for r in rs]))
    return out


def dense_baseline(rows: Iterable[dict], dataset: str | None,
                   reported: tuple[str | None, float | None] = (None, None)) -> float | None:
    """The dense accuracy on ``dataset``: the mean of the rows that evaluated the unpruned model
    (density 1, no retraining) on it, else the accuracy reported with the model (a bundled
    model's manifest) when that was measured on this dataset, else None (unknown: another
    dataset's figure is not this one's)."""
    dense = [float(r["accuracy"]) for r in rows if str(r.get("dataset") or "") == (dataset or "")
             and _number(r.get("density")) == 1.0 and str(r.get("retrain") or "none") == "none"
             and not r.get("kind") and _number(r.get("accuracy")) is not None]
    if dense:
        return math.fsum(dense) / len(dense)
    name, accuracy = reported
    return accuracy if accuracy is not None and dataset and name == dataset else None


def _number(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
