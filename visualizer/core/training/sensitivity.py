"""Sensitivity analysis: prune one unit alone at each level and measure the loss and accuracy.

For every unit u and level rho in (0, 1] the unit alone keeps ``floor(rho * size)`` of its
entries (by the criterion's scores) while the rest of the network stays dense, and the model is
evaluated on the workspace's evaluation sample (:meth:`visualizer.core.workspace.Workspace.evaluation_batches`,
:func:`visualizer.core.training.evaluate.evaluate_job`'s sums). The rows give per-unit curves
of loss and accuracy against density (Distiller's sensitivity analysis; Han et al. 2015 chose
per-layer thresholds from such curves) and feed the ``sensitivity`` allocation
(:mod:`visualizer.core.pruning.allocation`).

Units (docs/theory.md, "Group-faithful sensitivity"):

- ``layer``: one prunable weight tensor, its k highest-scoring weights kept (first_k of the
  ranking, the same tie rule).
- ``group``: one coupled channel group of :func:`visualizer.core.structure.groups.find_groups`,
  pruned exactly as the structured pruner prunes it: :func:`visualizer.core.structure.shrink.select_units`
  keeps the group's ``max(1, floor(rho * size))`` best units and :func:`plan_masks` masks every
  slice of the removed units at once (producers, consumers' input columns, all residual-coupled
  layers together), so the measured accuracy is that of the physically shrunk model. Pruning one
  tensor of a residual-coupled group alone (what a per-tensor analysis does) leaves the coupled
  channels alive through the other branch and reports too little damage.

Fast path: the network is traced with torch.fx and split at the unit. The nodes that read the
unit's weights and every node after them form the rest of the network; everything the rest reads
from before (the activations at the unit's input, a residual branch's identity, ...) is computed
once per batch and cached, and each level runs only the rest, with m ⊙ w put in place of the
unit's weights by ``torch.func.functional_call``. The numbers are those of evaluating the whole
masked model (same operations in the same order); each unit's split is checked against the
whole model on two samples first, and a model fx cannot trace (or a split that does not reproduce it)
falls back to whole-model evaluation, which the rows say (``method``). A level that keeps every
weight of the unit is the dense model: its row is the baseline's. Each level's sums are
:class:`~visualizer.core.training.evaluate.MetricSums` (evaluate_job's rule; token blocks per
predicted token), and the levels run in evaluation's layout
(:func:`~visualizer.core.training.evaluate.inference_layout`: channels-last for a conv net on the
CPU), so a cell is the masked model evaluated, up to the order of float sums.

Rows stream as each unit finishes (``Step.partial`` = the unit's rows) and are keyed by
:data:`KEY_FIELDS` (model, dataset, criterion, unit kind, unit, level, seed, sample, device):
given the rows of an earlier run (a list or a file of :func:`write_rows`), only the missing cells
are computed, so a cancelled analysis resumes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from visualizer.core.data.text import logits_of
from visualizer.core.device import in_layout, model_device
from visualizer.core.layers import private_view
from visualizer.core.pruning.allocation import OWL_M, check_allocation, outlier_ratios_job
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import first_k, kept_count
from visualizer.core.structure.graph import fx_trace
from visualizer.core.structure.group_criteria import group_criterion
from visualizer.core.structure.groups import (
    ChannelGroup,
    find_groups,
    find_groups_job,
    group_scores,
)
from visualizer.core.structure.shrink import plan_masks, select_units
from visualizer.core.tasks import Step, run, sub
from visualizer.core.training.cluster import import_ray, map_tasks, placement
from visualizer.core.training.evaluate import MetricSums, evaluate_job, inference_layout, laid_out
from visualizer.core.training.experiments import _key_value, read_rows, write_rows
from visualizer.core.workspace import (
    EVAL_BATCH_SIZE,
    Workspace,
    criterion_batches,
    device_key,
    evaluation_sample_size,
    model_on,
    resolve_device,
)

UNITS = ("layer", "group")
DEFAULT_LEVELS = (0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05)
ROW_FIELDS = [
    "model", "dataset", "criterion", "unit_kind", "unit", "level", "achieved_density", "kept", "total",
    "loss", "accuracy", "base_loss", "base_accuracy", "loss_increase", "accuracy_drop", "split", "samples", "seed",
    "score_batches", "device", "method", "seconds",
]
KEY_FIELDS = ("model", "dataset", "criterion", "unit_kind", "unit", "level", "seed", "split", "samples",
              "score_batches", "device")
FAST = "cached-prefix"
WHOLE = "whole-model"


def check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """The levels as floats, each in (0, 1] (a ValueError in one line otherwise), duplicates
    dropped, in the given order."""
    out = []
    for v in levels:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"a level is a density in (0, 1], got {v!r}") from None
        if not (0.0 < x <= 1.0):
            raise ValueError(f"a level is a density in (0, 1], got {v!r}")
        if x not in out:
            out.append(x)
    if not out:
        raise ValueError("no levels given")
    return tuple(out)


@dataclass(frozen=True)
class SensitivityConfig:
    """What an analysis measures. ``units`` names the units to analyse (all when empty): a
    weight (``conv1.weight``) or its layer (``conv1``) for unit ``layer``; a group's root layer or
    id for ``group``. ``eval_batches`` / ``eval_batch_size``: the evaluation sample
    (:meth:`Workspace.evaluation_batches`). ``fast`` False evaluates the whole model per level."""

    model: str = ""
    criterion: str = "magnitude"
    unit: str = "layer"
    levels: tuple[float, ...] = DEFAULT_LEVELS
    units: tuple[str, ...] = ()
    eval_batches: int | None = None
    eval_batch_size: int = EVAL_BATCH_SIZE
    fast: bool = True
    split: str = "test"  # the allocation measures on a training-split sample (no test-set selection)

    def validate(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; choose one of: {', '.join(UNITS)}")
        if self.criterion not in CRITERIA and group_criterion(self.criterion) is None:
            raise ValueError(f"unknown criterion {self.criterion!r}")
        if self.unit == "layer" and self.criterion not in CRITERIA:
            raise ValueError(f"{self.criterion} scores coupled groups: use --unit group")
        check_levels(self.levels)
        if self.split not in ("test", "train"):
            raise ValueError(f"unknown split {self.split!r} (use test or train)")
        if self.eval_batches is not None and self.eval_batches < 0:
            raise ValueError(f"evaluation batches must be 0 or more, got {self.eval_batches}")


@dataclass(frozen=True)
class Unit:
    """One analysed unit: its name, the weights its pruning masks, and (group) the group."""

    name: str
    kind: str
    params: tuple[str, ...]
    group: ChannelGroup | None = field(default=None, compare=False)

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers (module paths) the unit masks."""
        return tuple(dict.fromkeys(p.rpartition(".")[0] for p in self.params))


def list_units(model: nn.Module, kind: str, groups: Sequence[ChannelGroup] | None = None) -> list[Unit]:
    """Every unit of ``kind``: each prunable weight (``layer``), or each prunable coupled group
    that touches a prunable weight (``group``, named by its root layer; ``groups`` from
    :func:`find_groups`)."""
    prunable = prunable_parameters(model)
    if kind == "layer":
        return [Unit(n, "layer", (n,)) for n in prunable]
    if kind != "group":
        raise ValueError(f"unknown unit {kind!r}; choose one of: {', '.join(UNITS)}")
    if groups is None:
        groups = find_groups(model).groups
    units, seen = [], set()
    for g in groups:
        params = tuple(dict.fromkeys(m.param for m in g.members if m.param in prunable and not m.buffer))
        if not g.prunable or g.size < 2 or not params:
            continue
        name = g.root if g.root not in seen else f"{g.root}#{g.id}"
        seen.add(name)
        units.append(Unit(name, "group", params, g))
    return units


def select(units: Sequence[Unit], names: Sequence[str]) -> list[Unit]:
    """The units named in ``names`` (a weight, its layer, a group's root or its id), in the
    order given; a name that matches nothing is a ValueError in one line."""
    if not names:
        return list(units)
    out = []
    for name in names:
        hit = [u for u in units if name in (u.name, u.name.removesuffix(".weight"))
               or (u.group is not None and name in (u.group.root, str(u.group.id)))]
        if not hit:
            known = ", ".join(u.name for u in units[:6]) + (" ..." if len(units) > 6 else "")
            raise ValueError(f"no unit named {name!r} (units: {known})")
        out += [u for u in hit if u not in out]
    return out


# --- masks of one unit -----------------------------------------------------------------------------


def unit_masks(unit: Unit, level: float, scores: Mapping[str, torch.Tensor],
               model: nn.Module | None = None, groups: Sequence[ChannelGroup] = (),
               unit_scores: Mapping[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The masks of ``unit``'s weights at ``level`` (everything else stays dense).

    layer: keep the floor(level * d) highest scores (ties: lower index, as the ranking).
    group: :func:`select_units` on this group alone at ``level`` (scope layer: at least one unit
    kept) and :func:`plan_masks`: every slice of each removed unit, as the structured pruner."""
    if unit.kind == "layer":
        (name,) = unit.params
        s = scores[name].detach().to("cpu", torch.float32)
        flat = s.reshape(-1) + 0.0
        return {name: first_k(flat, kept_count(level, flat.numel())).reshape(s.shape)}
    g = unit.group
    assert g is not None and model is not None and unit_scores is not None
    plan = select_units([g], {g.id: unit_scores[g.id]}, level, "layer")
    masks = plan_masks(model, groups or [g], plan)
    return {n: masks.masks[n] for n in unit.params}


# --- the split network ------------------------------------------------------------------------------


class SplitModel:
    """A traced model cut at the nodes that read ``params``: :meth:`prefix` computes (once per
    batch) the values the rest needs from before the cut; :meth:`rest` runs the rest with
    overridden weights. Built by :func:`split_model`."""

    def __init__(self, prefix: torch.fx.GraphModule, rest: torch.fx.GraphModule, ratio: float) -> None:
        self._prefix = prefix
        self._rest = rest
        self.ratio = ratio  # share of the graph's call nodes in the rest (what one level runs)
        self._copy = _writes_in_place(rest)
        # each part holds only the modules its nodes call: overrides are cut to its own names
        self._names = {id(gm): {n for n, _ in gm.named_parameters()} for gm in (prefix, rest)}

    def prefix(self, x: torch.Tensor, overrides: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
        out = self._call(self._prefix, overrides, (x,))
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def rest(self, cached: Sequence[torch.Tensor], overrides: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # fresh copies when the rest writes in place: it may add into a cached tensor
        # (torchvision's out += identity) that the next level reads again
        args = tuple(t.clone() if self._copy and isinstance(t, torch.Tensor) else t for t in cached)
        return self._call(self._rest, overrides, args)

    def _call(self, gm: torch.fx.GraphModule, overrides: Mapping[str, torch.Tensor] | None, args: tuple):
        if not overrides:
            return gm(*args)
        names = self._names[id(gm)]
        return torch.func.functional_call(gm, {k: v for k, v in overrides.items() if k in names}, args, strict=False)


def _writes_in_place(gm: torch.fx.GraphModule) -> bool:
    """Whether any node of ``gm`` may write into its input: an in-place method or function
    (``add_``, ``operator.iadd``), ``inplace=True``, or a module with ``inplace`` set (ReLU)."""
    import operator

    in_place_ops = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.iand, operator.ior}
    modules = dict(gm.named_modules())
    for n in gm.graph.nodes:
        if n.kwargs.get("inplace"):
            return True
        if n.op == "call_method" and str(n.target).endswith("_"):
            return True
        if n.op == "call_function" and (n.target in in_place_ops or getattr(n.target, "__name__", "").endswith("_")):
            return True
        if n.op == "call_module" and getattr(modules.get(n.target), "inplace", False):
            return True
    return False


def trace(model: nn.Module) -> torch.fx.GraphModule | None:
    """The model traced by torch.fx (the graph's tracer), or None when it cannot be traced."""
    try:
        return fx_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: evaluate the whole model
        return None


def split_model(gm: torch.fx.GraphModule, params: Iterable[str]) -> SplitModel | None:
    """Cut ``gm`` at the nodes that read any of ``params`` (a call of the module owning it, or a
    get_attr of it): the rest is those nodes and all their descendants; the prefix computes every
    value the rest reads from outside it. None when no node reads the weights or the output does
    not depend on them (evaluate the whole model then)."""
    params = tuple(params)

    def reads(node) -> bool:
        if node.op == "call_module":
            return any(p.startswith(f"{node.target}.") for p in params)
        if node.op == "get_attr":
            return any(p == node.target or p.startswith(f"{node.target}.") for p in params)
        return False

    nodes = list(gm.graph.nodes)
    down: set = set()
    for n in nodes:  # topological order: a node is downstream if it reads the unit or a downstream value
        if reads(n) or any(a in down for a in n.all_input_nodes):
            down.add(n)
    output = next((n for n in nodes if n.op == "output"), None)
    if not down or output is None or output not in down:
        return None
    frontier = [n for n in nodes if n not in down and n.op != "get_attr" and any(u in down for u in n.users)]

    rest_graph = torch.fx.Graph()
    env: dict = {}
    for f in frontier:
        env[f] = rest_graph.placeholder(f"cached_{f.name}")
    for n in nodes:
        if n in down or (n.op == "get_attr" and any(u in down for u in n.users)):
            env[n] = rest_graph.node_copy(n, lambda a: env[a])
    prefix_graph = torch.fx.Graph()
    penv: dict = {}
    for n in nodes:
        if n not in down and n.op != "output":
            penv[n] = prefix_graph.node_copy(n, lambda a: penv[a])
    prefix_graph.output(tuple(penv[f] for f in frontier))
    rest = torch.fx.GraphModule(gm, rest_graph)
    prefix = torch.fx.GraphModule(gm, prefix_graph)
    prefix.graph.eliminate_dead_code()
    prefix.recompile()
    calls = [n for n in nodes if n.op in ("call_module", "call_function", "call_method")]
    ratio = sum(1 for n in calls if n in down) / max(1, len(calls))
    return SplitModel(prefix, rest, ratio)


# --- evaluation of one unit at all its levels -------------------------------------------------------


def _overrides(model: nn.Module, masks: Mapping[str, torch.Tensor],
               layout: torch.memory_format | None = None) -> dict[str, torch.Tensor]:
    """{name: m ⊙ w} of the unit's weights (as :func:`masked_parameters`), 4-d ones in ``layout``."""
    params = dict(model.named_parameters())
    return {n: in_layout(params[n].detach() * m.to(params[n].device, params[n].dtype), layout)
            for n, m in masks.items()}


def unit_levels_job(model: nn.Module, batches: Sequence, level_masks: Sequence[Mapping[str, torch.Tensor]],
                    split: SplitModel | None) -> Generator[Step, None, tuple[list[tuple[float, float]], str]]:
    """(loss, accuracy) of the model with each entry of ``level_masks`` in place of the unit's
    weights, over ``batches``, and the method used. With ``split`` the prefix runs once per batch
    and each level runs the rest; the split is first checked against the whole masked model on
    two samples (:func:`_split_reproduces`; a mismatch: whole-model evaluation for this unit).

    Each level's sums are :class:`MetricSums` (the rule of :func:`evaluate_job`; token blocks
    per predicted token), in evaluation's layout (:func:`inference_layout`); the other weights are the model's own (m ⊙ w with m = 1 is w, bit for bit)."""
    device = model_device(model)
    n = sum(int(y.shape[0]) for _, y in batches)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    layout = inference_layout(model, batches[0][0][:2].to(device), _overrides(model, level_masks[0]))
    dense = laid_out(model, {}, layout)
    mine = [{**dense, **_overrides(model, masks, layout)} for masks in level_masks]
    sums = [MetricSums(device) for _ in level_masks]
    method = FAST if split is not None and _split_reproduces(model, split, batches, dense, mine[0], layout) else WHOLE
    was_training = model.training
    model.eval()
    try:
        for bi, (xb, yb) in enumerate(batches):
            xb, yb = in_layout(xb.to(device), layout), yb.to(device)
            with torch.inference_mode():
                if method == FAST:
                    cached = split.prefix(xb, dense)
                    for s, over in zip(sums, mine):
                        s.add(split.rest(cached, over), yb)
                else:
                    for s, over in zip(sums, mine):
                        s.add(torch.func.functional_call(model, over, (xb,), strict=False), yb)
            yield Step(f"batch {bi + 1}/{len(batches)}", (bi + 1) / len(batches))
    finally:
        model.train(was_training)
    return [(r.loss, r.accuracy) for r in (s.result(n) for s in sums)], method


def _split_reproduces(model: nn.Module, split: SplitModel, batches: Sequence, dense: Mapping, mine: Mapping,
                      layout: torch.memory_format | None) -> bool:
    """Whether prefix + rest gives the whole masked model's output, bit for bit, on the first
    two samples (a cheap guard against a graph the split misreads, e.g. an in-place op)."""
    x = in_layout(batches[0][0][:2].to(model_device(model)), layout)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.equal(logits_of(split.rest(split.prefix(x, dense), mine)),
                               logits_of(torch.func.functional_call(model, dict(mine), (x,), strict=False)))
    except Exception:  # noqa: BLE001 - a split that cannot run: evaluate the whole model
        return False
    finally:
        model.train(was_training)


# --- the analysis -----------------------------------------------------------------------------------


def row_key(row: Mapping) -> tuple:
    """The settings that identify a row (numbers to 6 significant digits, as sweep rows)."""
    return tuple(_key_value(f, row.get(f)) for f in KEY_FIELDS)


@dataclass
class SensitivityResult:
    rows: list[dict]
    computed: int
    reused: int
    notices: list[str] = field(default_factory=list)


def unit_scores_for(model: nn.Module, criterion: str, groups: Sequence[ChannelGroup],
                    scores: Mapping[str, torch.Tensor] | None) -> dict[int, torch.Tensor]:
    """Per-unit scores of every group: a group criterion (group-l1/-l2/-bn) by name, any
    elementwise criterion as the sum of its scores over each unit's slices
    (:func:`group_scores`)."""
    if group_criterion(criterion) is not None:
        return group_scores(model, groups, criterion)
    return group_scores(model, groups, scores=dict(scores or {}))


def sensitivity_job(workspace: Workspace, config: SensitivityConfig,
                    previous: str | Path | Iterable[dict] | None = None,
                    groups: Sequence[ChannelGroup] | None = None,
                    out: str | Path | None = None) -> Generator[Step, None, SensitivityResult]:
    """The analysis of ``config`` on the workspace's model and evaluation sample (module
    docstring). Each unit's rows are yielded as ``Step.partial`` (a list) when the unit finishes,
    and written to ``out`` (CSV or JSON, atomically, earlier rows kept) at once, so a cancel
    loses at most the unit in progress. ``previous`` rows with the same key are reused."""
    config.validate()
    levels = check_levels(config.levels)
    # every level swaps the unit's weights (functional_call, also inside the fx split): on a
    # private view of the model, which other jobs read meanwhile
    model = private_view(workspace.model)
    workspace.needs_data("sensitivity analysis")
    batches = list(workspace.evaluation_batches(config.eval_batches, config.eval_batch_size, config.split))
    notices: list[str] = []
    if config.unit == "group" and groups is None:
        result = yield from sub(_groups_job(model, batches), 0.0, 0.02, "groups: ")
        groups = result
    units = select(list_units(model, config.unit, groups), config.units)
    if not units:
        raise ValueError(f"the model has no prunable {config.unit} units")
    base = row_settings(workspace, config, str(workspace.device))
    earlier = read_rows(previous)
    cache = {row_key(r): r for r in earlier}
    todo = {u.name: [lv for lv in levels if row_key({**base, "unit": u.name, "level": lv}) not in cache] for u in units}
    rows: list[dict] = []
    reused = computed = 0
    writer = _RowWriter(out, earlier)
    scores = unit_scores = None
    gm = split = None
    dense = None
    total_cells = len(units) * len(levels)
    try:
        for ui, unit in enumerate(units):
            unit_rows: list[dict] = []
            start_frac = ui / len(units)
            if todo[unit.name]:
                if dense is None:
                    ev = yield from sub(evaluate_job(model, batches), start_frac, start_frac, "dense model: ")
                    dense = (ev.loss, ev.accuracy)
                if scores is None:
                    scores = yield from sub(_scores_job(workspace, config.criterion), start_frac, start_frac,
                                            f"{config.criterion} scores: ")
                    if config.unit == "group":
                        unit_scores = unit_scores_for(model, config.criterion, groups, scores)
                    if config.fast:
                        gm = trace(model)
                        if gm is None:
                            notices.append("the model cannot be traced by torch.fx: every level evaluates the "
                                           "whole model")
                t0 = time.perf_counter()
                masks = [unit_masks(unit, lv, scores or {}, model, groups or (), unit_scores) for lv in todo[unit.name]]
                split = split_model(gm, unit.params) if gm is not None else None
                full = [all(bool(m.all()) for m in ms.values()) for ms in masks]
                need = [ms for ms, f in zip(masks, full) if not f]
                results: list[tuple[float, float]] = []
                method = FAST if split is not None else WHOLE
                if need:
                    results, method = yield from sub(unit_levels_job(model, batches, need, split),
                                                     start_frac, (ui + 1) / len(units), f"{unit.name}: ")
                seconds = (time.perf_counter() - t0) / max(1, len(need))
                it = iter(results)
                measured = {}
                for lv, ms, f in zip(todo[unit.name], masks, full):
                    loss, acc = dense if f else next(it)
                    kept = sum(int(m.sum()) for m in ms.values())
                    total = sum(m.numel() for m in ms.values())
                    measured[lv] = {**base, "unit": unit.name, "level": lv, "achieved_density": kept / total if total else 1.0,
                                    "kept": kept, "total": total, "loss": loss, "accuracy": acc,
                                    "base_loss": dense[0], "base_accuracy": dense[1], "loss_increase": loss - dense[0],
                                    "accuracy_drop": dense[1] - acc, "method": method if not f else "dense",
                                    "seconds": 0.0 if f else seconds}
                if method == WHOLE and split is not None:
                    notices.append(f"{unit.name}: the split network did not reproduce the model; evaluated whole")
            for lv in levels:
                key = row_key({**base, "unit": unit.name, "level": lv})
                if key in cache:
                    unit_rows.append(dict(cache[key]))
                    reused += 1
                else:
                    unit_rows.append(measured[lv])
                    computed += 1
            rows += unit_rows
            writer.add(unit_rows)
            yield Step(f"{unit.name} done", len(rows) / total_cells, [dict(r) for r in unit_rows])
    finally:
        writer.close()
    return SensitivityResult(rows, computed, reused, notices)


def _score_batches(workspace: Workspace, criterion: str) -> int:
    info = CRITERIA.get(criterion)
    return workspace.score_batches if info is not None and info.needs_data else 0


def _scores_job(workspace: Workspace, criterion: str):
    if group_criterion(criterion) is not None and criterion not in CRITERIA:
        return {}
    return (yield from workspace.scores(criterion))


def _groups_job(model: nn.Module, batches: Sequence):
    example = batches[0][0][:2].to(next(model.parameters()).device)
    result = yield from find_groups_job(model, example)
    return result.groups


class _RowWriter:
    """Writes every finished unit's rows to the rows file at once (with the earlier rows of
    other keys after them), so a cancelled analysis keeps them and resumes from the file."""

    def __init__(self, path: str | Path | None, earlier: Sequence[dict]) -> None:
        self.path = Path(path) if path else None
        self.earlier = [dict(r) for r in earlier]
        self.rows: list[dict] = []

    def add(self, rows: Sequence[dict]) -> None:
        self.rows += [dict(r) for r in rows]
        self.close()

    def close(self) -> None:
        if self.path is None:
            return
        mine = {row_key(r) for r in self.rows}
        write_rows(self.rows + [r for r in self.earlier if row_key(r) not in mine], self.path, ROW_FIELDS)


# --- on a Ray cluster -------------------------------------------------------------------------------


def _unit_task(unit: str, model: nn.Module, data, config: SensitivityConfig, settings: dict,
               groups: Sequence[ChannelGroup] | None) -> list[dict]:
    """One Ray task: the rows of one unit (the serial job's code, on the task's device)."""
    device = resolve_device(settings["device"])
    ws = Workspace(model_on(model, device), data, device=device, seed=settings["seed"],
                   model_ref=settings["model_ref"], score_batches=settings["score_batches"],
                   score_batch_size=settings["score_batch_size"])
    return run(sensitivity_job(ws, replace(config, units=(unit,)), groups=groups)).rows


def sensitivity_on_cluster(workspace: Workspace, config: SensitivityConfig,
                           previous: str | Path | Iterable[dict] | None = None,
                           groups: Sequence[ChannelGroup] | None = None,
                           out: str | Path | None = None) -> Generator[Step, None, SensitivityResult]:
    """The analysis of :func:`sensitivity_job` with one Ray task per unit (connect first,
    :func:`visualizer.core.training.cluster.connect`), through the sweeps' task runner
    (:func:`visualizer.core.training.cluster.map_tasks`). Units whose rows are all in
    ``previous`` are not sent; each unit's rows stream as its task finishes and go to ``out``
    at once; the result's rows are in unit order, equal to the serial job's."""
    config.validate()
    levels = check_levels(config.levels)
    ray = import_ray()
    place = placement(str(workspace.device), ray)
    model = workspace.model
    data = workspace.needs_data("sensitivity analysis")
    if config.unit == "group" and groups is None:
        batches = list(workspace.evaluation_batches(config.eval_batches, config.eval_batch_size, config.split))
        groups = yield from sub(_groups_job(model, batches), 0.0, 0.02, "groups: ")
    units = select(list_units(model, config.unit, groups), config.units)
    earlier = read_rows(previous)
    cache = {row_key(r): r for r in earlier}
    probe = row_settings(workspace, config, place.device)
    todo = [u for u in units if any(row_key({**probe, "unit": u.name, "level": lv}) not in cache for lv in levels)]
    done: dict[str, list[dict]] = {}
    writer = _RowWriter(out, earlier)
    for u in units:
        if u not in todo:
            done[u.name] = [dict(cache[row_key({**probe, "unit": u.name, "level": lv})]) for lv in levels]
            writer.add(done[u.name])
            yield Step(f"{u.name} (done before)", len(done) / len(units), [dict(r) for r in done[u.name]])
    settings = {"device": place.device, "seed": workspace.seed, "model_ref": config.model or workspace.model_ref,
                "score_batches": workspace.score_batches, "score_batch_size": workspace.score_batch_size}
    cpu_model = model if all(t.device.type == "cpu" for t in model.state_dict().values()) else copy.deepcopy(model).cpu()
    if todo:
        job = map_tasks(_unit_task, [u.name for u in todo],
                        (cpu_model, data, replace(config, units=()), settings, groups), place, "units")
        try:
            for step in job:
                if step.partial is None:
                    yield Step(step.stage, (len(units) - len(todo) + step.fraction * len(todo)) / len(units))
                    continue
                i, rows = step.partial
                done[todo[i].name] = rows
                writer.add(rows)
                yield Step(step.stage, len(done) / len(units), [dict(r) for r in rows])
        finally:
            job.close()
            writer.close()
    rows = [r for u in units for r in done[u.name]]
    computed = sum(len(done[u.name]) for u in todo)
    return SensitivityResult(rows, computed, len(rows) - computed)


def row_settings(workspace: Workspace, config: SensitivityConfig, device: str) -> dict:
    """The settings every row of this analysis records (all of the key but unit and level)."""
    data = workspace.needs_data("sensitivity analysis")
    return {"model": config.model or workspace.model_ref, "dataset": getattr(data, "name", "") or "",
            "criterion": config.criterion, "unit_kind": config.unit, "seed": workspace.seed, "split": config.split,
            "samples": evaluation_sample_size(data, config.eval_batches, config.eval_batch_size, config.split),
            "score_batches": _score_batches(workspace, config.criterion), "device": device_key(device)}


# --- inputs of the allocations -------------------------------------------------------------------

ALLOCATION_LEVELS = (0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)
ALLOCATION_BATCHES = 1  # training-split batches (of EVAL_BATCH_SIZE) the sensitivity allocation measures on


@dataclass
class AllocationCurves:
    """The ``sensitivity`` allocation's loss curves per criterion ({criterion: {layer: {level:
    increase}}}) and the analysis rows they were read from (measured or reused; none for the
    curves that were given)."""

    curves: dict[str, dict[str, dict[float, float]]]
    rows: list[dict]
    computed: int = 0  # cells measured by this job
    reused: int = 0  # cells taken from the previous rows


def allocation_config(workspace: Workspace, criterion: str, levels: Sequence[float] | None = None,
                      batches: int | None = ALLOCATION_BATCHES) -> SensitivityConfig:
    """The analysis whose curves the ``sensitivity`` allocation reads: per layer, at ``levels``
    (default :data:`ALLOCATION_LEVELS`), on the first ``batches`` batches of the TRAINING split
    (choosing densities on the test split would select on the numbers then reported)."""
    levels = ALLOCATION_LEVELS if levels is None else levels
    return SensitivityConfig(workspace.model_ref, criterion, "layer", tuple(levels), eval_batches=batches,
                             split="train")


def allocation_curves_job(workspace: Workspace, criteria: Sequence[str],
                          known: Mapping[str, Mapping[str, Mapping[float, float]]] | None = None,
                          previous: Iterable[dict] = (), *, levels: Sequence[float] | None = None,
                          batches: int | None = ALLOCATION_BATCHES,
                          model: nn.Module | None = None) -> Generator[Step, None, AllocationCurves]:
    """The loss curves of the ``sensitivity`` allocation for each of ``criteria``: those in
    ``known`` as given (e.g. read from an earlier analysis' file), the others measured here
    (:func:`allocation_config`, one analysis per criterion; its rows stream as
    ``Step.partial``). Rows of ``previous`` with the same key (model, dataset, criterion, split,
    sample, seed, device: :func:`row_key`) are reused, so a second sweep measures nothing. The
    one rule "measure the curves when missing" of the CLI and the window."""
    ws = workspace if model is None else workspace.with_model(model)
    known = {c: v for c, v in (known or {}).items() if v}
    missing = [c for c in dict.fromkeys(criteria) if c not in known]
    previous = list(previous)
    curves = {c: {n: dict(v) for n, v in known[c].items()} for c in criteria if c in known}
    found = AllocationCurves(curves, [])
    for i, c in enumerate(missing):
        res = yield from sub(sensitivity_job(ws, allocation_config(ws, c, levels, batches), previous),
                             i / len(missing), (i + 1) / len(missing), f"{c} loss curves: ")
        curves[c] = loss_curves(res.rows, c)
        found.rows += res.rows
        found.computed += res.computed
        found.reused += res.reused
    return found


def allocation_inputs_job(workspace: Workspace, criterion: str, allocation: str, *,
                          curves: Mapping[str, Mapping[float, float]] | None = None,
                          levels: Sequence[float] | None = None, batches: int | None = ALLOCATION_BATCHES,
                          model: nn.Module | None = None, owl_m: float | None = None,
                          previous: Iterable[dict] = ()) -> Generator[Step, None, dict]:
    """What :func:`visualizer.core.pruning.allocation.layer_budgets` reads for ``allocation``
    on this workspace, as keyword arguments: ``owl`` the outlier ratios on the criterion batches
    (:func:`~visualizer.core.pruning.allocation.outlier_ratios_job`); ``sensitivity`` the loss
    curves (``curves`` given, or :func:`allocation_curves_job`, reusing the rows of
    ``previous``). The other rules need nothing."""
    check_allocation(allocation)
    model = workspace.model if model is None else model
    if allocation == "owl":
        data = workspace.needs_data("the owl allocation")
        calib = criterion_batches(data, workspace.score_batches, workspace.score_batch_size, workspace.seed)
        return {"outlier_ratios": (yield from outlier_ratios_job(model, calib, OWL_M if owl_m is None else owl_m))}
    if allocation != "sensitivity":
        return {}
    found = yield from allocation_curves_job(workspace, (criterion,), {criterion: curves} if curves else None,
                                             previous, levels=levels, batches=batches, model=model)
    return {"curves": found.curves[criterion]}


# --- read-outs ---------------------------------------------------------------------------------------


def loss_curves(rows: Iterable[Mapping], criterion: str | None = None) -> dict[str, dict[float, float]]:
    """{unit: {level: loss increase}} of layer-unit rows (the ``sensitivity`` allocation's
    input; keyed by the weight's name), optionally of one criterion."""
    out: dict[str, dict[float, float]] = {}
    for r in rows:
        if r.get("unit_kind", "layer") != "layer" or (criterion and r.get("criterion") != criterion):
            continue
        value = r.get("loss_increase")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out.setdefault(str(r["unit"]), {})[float(r["level"])] = float(value)
    return out


METRICS = ("accuracy_drop", "loss_increase", "accuracy", "loss")


def layer_values(rows: Iterable[Mapping], level: float | None = None, metric: str = "accuracy_drop",
                 units: Sequence[Unit] = ()) -> dict[str, float]:
    """{layer (module path): value} for painting on the dependency graph: ``metric`` at
    ``level`` (default: each unit's lowest measured level). A group's value goes to every layer
    it masks (``units`` from :func:`list_units` names them; else the group's root layer); a
    layer in several groups gets the largest."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    by_unit: dict[str, dict[float, float]] = {}
    kinds: dict[str, str] = {}
    for r in rows:
        by_unit.setdefault(str(r["unit"]), {})[float(r["level"])] = float(r[metric])
        kinds[str(r["unit"])] = str(r.get("unit_kind", "layer"))
    layers_of = {u.name: u.layers for u in units}
    out: dict[str, float] = {}
    for name, curve in by_unit.items():
        lv = min(curve) if level is None else min(curve, key=lambda x: abs(x - level))
        value = curve[lv]
        if kinds[name] == "layer":
            targets = (name.rpartition(".")[0] or name,)
        else:
            targets = layers_of.get(name, (name.split("#")[0],))
        for t in targets:
            out[t] = max(out.get(t, -math.inf), value)
    return out


def heat_table(rows: Iterable[Mapping], metric: str = "accuracy") -> tuple[list[str], list[float], list[list[float]]]:
    """(units, levels descending, values[unit][level]) of ``metric`` for the unit x level table
    (NaN where a cell was not measured)."""
    units: list[str] = []
    cells: dict[tuple[str, float], float] = {}
    for r in rows:
        u = str(r["unit"])
        if u not in units:
            units.append(u)
        cells[(u, float(r["level"]))] = float(r[metric])
    levels = sorted({lv for _, lv in cells}, reverse=True)
    return units, levels, [[cells.get((u, lv), math.nan) for lv in levels] for u in units]


__all__ = [
    "UNITS", "DEFAULT_LEVELS", "ROW_FIELDS", "KEY_FIELDS", "SensitivityConfig", "SensitivityResult", "Unit",
    "check_levels", "list_units", "select", "unit_masks", "split_model", "SplitModel", "unit_levels_job",
    "sensitivity_job", "sensitivity_on_cluster", "AllocationCurves", "allocation_config", "allocation_curves_job",
    "allocation_inputs_job", "loss_curves", "layer_values", "heat_table", "read_rows", "write_rows", "row_key",
]
