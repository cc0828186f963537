"""Experiments as streams of result rows: accuracy-vs-density sweeps and the LTH report.

A sweep runs criteria x densities x one retraining mode and yields every row as soon as it is
computed (``Step.partial`` = the row). Rows carry every setting that produced them (model,
criterion, density, scope, retrain, epochs, lr, seed) next to the results (achieved density,
accuracy, loss), so they can be cached: given earlier rows (a list, or a CSV/JSON file written by
:func:`write_rows`) a sweep reuses those with the same settings and computes only the rest, which
is how a cancelled sweep resumes.

Retraining modes: ``none`` evaluates m ⊙ w of the trained model; ``finetune`` trains the kept
weights from their trained values (projected gradient); ``rewind`` trains m ⊙ w_0 from the
initialisation (one-shot lottery ticket). Without retraining one ranking per criterion serves
every density (the ranking's threshold lookup), so scores are computed once per criterion.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visualizer.core.data import Dataset
from visualizer.core.masks import MaskSet, atomic_write
from visualizer.core.tasks import Step, sub
from visualizer.core.training import TrainConfig, evaluate, train

RETRAIN_MODES = ("none", "finetune", "rewind")
ROW_FIELDS = [
    "model", "criterion", "density", "achieved_density", "scope", "retrain", "epochs", "lr",
    "seed", "accuracy", "loss", "kept", "total", "seconds",
]
KEY_FIELDS = ("model", "criterion", "density", "scope", "retrain", "epochs", "lr", "seed")


@dataclass(frozen=True)
class SweepConfig:
    model: str  # the model reference, recorded in each row
    criteria: tuple[str, ...] = ("magnitude", "random")
    densities: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.05)
    retrain: str = "none"
    scope: str = "global"
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.retrain not in RETRAIN_MODES:
            raise ValueError(f"unknown retrain mode {self.retrain!r} (use {', '.join(RETRAIN_MODES)})")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"unknown scope {self.scope!r} (use global, layer)")
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
    """The settings that identify a row (floats rounded so CSV round trips match)."""
    return (
        str(row["model"]),
        str(row["criterion"]),
        f"{float(row['density']):.6g}",
        str(row["scope"]),
        str(row["retrain"]),
        int(float(row["epochs"])),
        f"{float(row['lr']):.6g}",
        int(float(row["seed"])),
    )


def _settings_row(config: SweepConfig, criterion: str, density: float) -> dict:
    retrain = config.retrain != "none"
    return {
        "model": config.model,
        "criterion": criterion,
        "density": float(density),
        "scope": config.scope,
        "retrain": config.retrain,
        "epochs": config.train.epochs if retrain else 0,
        "lr": config.train.lr if retrain else 0.0,
        "seed": config.train.seed,
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
        try:
            out[k] = int(v) if k in ("epochs", "seed", "kept", "total", "round") else float(v)
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


def sweep(
    model: nn.Module,
    data: Dataset,
    config: SweepConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    previous: str | Path | Iterable[dict] | None = None,
) -> Generator[Step, None, SweepResult]:
    """Accuracy vs density for ``config.criteria`` x ``config.densities`` (see module docstring).

    ``model`` is the trained model (never changed); ``init_state`` (w_0) is needed for
    ``retrain='rewind'``; ``previous`` rows with matching settings are reused, not recomputed.
    Every row, reused or new, is yielded as ``Step.partial`` in grid order."""
    from visualizer.core.lottery import criterion_scores, rewind_state
    from visualizer.core.ranking import build_ranking

    config.validate()
    if config.retrain == "rewind" and init_state is None:
        raise ValueError("retrain 'rewind' needs the initialisation (init_state)")
    cache = {row_key(r): r for r in read_rows(previous)}
    grid = [(c, d) for c in config.criteria for d in config.densities]
    total = len(grid)
    rows: list[dict] = []
    computed = reused = 0
    for ci, criterion in enumerate(config.criteria):
        todo = [d for d in config.densities if row_key(_settings_row(config, criterion, d)) not in cache]
        ranking = None
        if todo:
            base = ci / len(config.criteria)
            scores = yield from sub(
                criterion_scores(criterion, model, data, config.train.seed), base, base, f"{criterion} scores: "
            )
            ranking = yield from sub(
                build_ranking(scores, scope=config.scope), base, base, f"{criterion} ranking: "
            )
        for density in config.densities:
            settings = _settings_row(config, criterion, density)
            key = row_key(settings)
            if key in cache:
                row = dict(cache[key])
                reused += 1
            else:
                start = time.perf_counter()
                masks = ranking.mask_at(density)
                row = yield from _evaluate_cell(model, data, config, masks, init_state, rewind_state, len(rows), total)
                row = {**settings, **row, "seconds": time.perf_counter() - start}
                computed += 1
            rows.append(row)
            yield Step(f"{criterion} @ {density:.3g}", len(rows) / total, dict(row))
    return SweepResult(rows, computed, reused)


def _evaluate_cell(model, data, config: SweepConfig, masks: MaskSet, init_state, rewind_state, i: int, total: int):
    """Accuracy/loss of one (criterion, density) cell under the retraining mode."""
    base = {"achieved_density": masks.density(), "kept": masks.kept(), "total": masks.total()}
    if config.retrain == "none":
        ev = evaluate(model, data, masks=masks)
        return {**base, "accuracy": ev.accuracy, "loss": ev.loss}
    start = rewind_state(init_state, masks) if config.retrain == "rewind" else None
    res = yield from sub(
        train(model, data, masks, config.train, start_state=start, stage=config.retrain),
        i / total, (i + 1) / total,
    )
    return {**base, "accuracy": res.test.accuracy, "loss": res.test.loss}


# --- the lottery ticket report -------------------------------------------------------------------

LTH_FIELDS = ["model", "criterion", "retrain", "kind", "round", "density", "accuracy", "loss", "rate", "rewind", "epochs", "lr", "seed", "scope"]


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
    from visualizer.core.lottery import IMPConfig, iterative_magnitude_pruning

    config = config or TrainConfig()
    imp_config = IMPConfig(rounds, rate, rewind, scope, ("reinit", "random-mask"), config)
    job = iterative_magnitude_pruning(model, data, init_state, imp_config)
    rows: list[dict] = []
    settings = {"model": model_ref, "criterion": "magnitude", "retrain": "rewind", "rate": rate, "rewind": rewind, "epochs": config.epochs,
                "lr": config.lr, "seed": config.seed, "scope": scope}
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
