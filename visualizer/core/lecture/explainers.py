"""The explainers' computations: how a criterion scores one weight, why masked weights save no
time, and what must go with a pruned channel. Each is a job returning what its slide shows;
the numbers are the app's own (core.pruning.explain, core.structure.speed, core.structure.groups).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

from visualizer.core.lecture.loading import _device_of, _load
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.core.pruning.explain import Explanation, explain_weight, instructive_weight
from visualizer.core.pruning.llm_criteria import WandaResult, wanda_job
from visualizer.core.pruning.nm import as_rows, transposed_weights
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import kept_count
from visualizer.core.structure.graph import build_graph, example_input
from visualizer.core.structure.groups import ChannelGroup, find_groups_job
from visualizer.core.structure.hierarchy import Hierarchy, focused_hierarchy
from visualizer.core.structure.overlays import coupling_reasons, coupling_tags, layer_of
from visualizer.core.structure.shrink import PrunePlan, shrink
from visualizer.core.structure.speed import SpeedReport, measure_speed
from visualizer.core.tasks import Step, mapped, sub
from visualizer.core.workspace import Workspace, calibration_batches, model_on

HISTOGRAM_BINS = 60


@dataclass
class CriterionExplainer:
    """One weight's score step by step (``explanation``), the layer's score histogram with the
    cut, and the criterion it was picked against (kept by one, removed by the other)."""

    model: str
    explanation: Explanation | None  # None while the weight's numbers are still computed
    edges: np.ndarray  # histogram of the layer's scores: bin edges ...
    counts: np.ndarray  # ... and counts
    contrast: str  # the other criterion of the pick ("" when the weight was given)
    note: str = ""  # said on the slide: e.g. a criterion that needed data fell back to magnitude
    layer: str = ""  # the layer of the histogram
    index: tuple[int, ...] = ()  # the weight explained
    criterion: str = ""

    @property
    def complete(self) -> bool:
        return self.explanation is not None

    def summary(self) -> str:
        e = self.explanation
        verdict = "kept" if e.kept else "removed"
        return (f"{self.model} {e.layer}[{', '.join(map(str, e.index))}] by {e.criterion}: score "
                f"{e.score:.4g}, rank {e.rank:,} of {e.scope_size:,}, {verdict} at {e.density:.0%}")


def score_histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Edges and counts of a layer's scores (the histogram the cut is drawn on)."""
    counts, edges = np.histogram(values.detach().cpu().double().numpy().reshape(-1), bins=bins)
    return edges, counts


def criterion_explainer_job(criterion: str = "snip", model: str = "lenet", layer: str | None = None,
                            index: tuple[int, ...] | None = None, density: float = 0.1,
                            device: str = "auto", loaded=None, data=None):
    """Explain ``criterion`` on one weight of ``model`` (a bundled name, or ``loaded``/``data``: the
    window's live model and data). Without a weight given, an instructive one: kept by this
    criterion and removed by another at ``density`` (magnitude's contrast is SNIP when there is
    data). A data criterion without data falls back to magnitude and says so."""
    yield Step("loading", 0.0)
    if loaded is None:
        loaded, data = _load(model, device)
    net = loaded.model
    note = ""
    if CRITERIA[criterion].needs_data and data is None:
        note = (f"{CRITERIA[criterion].title} scores with gradients of the loss, and {loaded.ref} has "
                "no data: shown with magnitude, which needs none. Choose a dataset to see "
                f"{CRITERIA[criterion].title}.")
        criterion = "magnitude"
    workspace = Workspace(net, data, model_ref=loaded.ref)
    batches = workspace.criterion_batches() if CRITERIA[criterion].needs_data else None
    scores = yield from sub(workspace.scores(criterion), 0.02, 0.45, f"{criterion}: ")
    contrast = ""
    if layer is None:
        contrast = "snip" if criterion != "snip" and data is not None else "magnitude"
        if contrast == criterion:
            contrast = "random"
        other = yield from sub(workspace.scores(contrast), 0.45, 0.7, f"{contrast}: ")
        pick = instructive_weight(scores, other, density)
        if pick is None:  # the two keep the same weights: the first layer's top weight
            layer = next(iter(scores))
            index = tuple(int(i) for i in np.unravel_index(int(torch.argmax(scores[layer])),
                                                            tuple(scores[layer].shape)))
        else:
            layer, index = pick
    edges, counts = score_histogram(scores[layer])
    so_far = CriterionExplainer(loaded.ref, None, edges, counts, contrast, note, layer, tuple(index), criterion)
    yield Step("the layer's scores", 0.7, so_far)  # the histogram while the weight's numbers come
    explanation = yield from sub(explain_weight(criterion, net, layer, index, batches, density=density,
                                                scores=scores), 0.7, 1.0, "this weight: ")
    return CriterionExplainer(loaded.ref, explanation, edges, counts, contrast, note, layer, tuple(index), criterion)


def live_explainer_job(criterion: str, model, ref: str, data, layer: str, index: tuple[int, ...],
                       density: float, device: str = "cpu"):
    """The explainer of one weight of the window's model (a snapshot of it): scored on a copy on
    ``device``, so the shown model is never touched (the data criteria run backward passes)."""
    loaded = SimpleNamespace(model=model_on(copy.deepcopy(model), device), ref=ref)
    return (yield from criterion_explainer_job(criterion, layer=layer, index=index, density=density,
                                               loaded=loaded, data=data))


def wanda_explanation(result: WandaResult, model, layer: str, index: tuple[int, ...], density: float,
                      scores: dict[str, torch.Tensor]) -> Explanation:
    """One weight under Wanda (Sun et al. 2024): ``S_ij = |W_ij| · ‖X_j‖₂`` from the calibration
    norms, compared within its output row: the app ranks each row by S and keeps the same share
    of every row (its score is the row place, ``1 − r/n``). Every number is read off ``result``
    (core.pruning.llm_criteria.wanda_job), the app's own."""
    transposed = layer in transposed_weights(model)
    w = float(prunable_parameters(model)[layer].detach()[index])
    norm = float(result.norms[layer].expand_as(result.products[layer])[index])
    product = float(result.products[layer][index])
    row_products = as_rows(result.products[layer], transposed)
    row = index[-1] if transposed else index[0]
    n = row_products.shape[1]
    value = float(scores[layer][index])
    rank = int(round((1.0 - value) * n)) + 1  # the row place: score = 1 - r/n, r from 0
    k = kept_count(density, n)
    kept = rank <= k
    ordered = torch.sort(row_products[row], descending=True).values
    threshold = float(ordered[k - 1]) if k > 0 else None
    steps = [("weight", f"w = {w:.4g}"),
             ("input norm", f"‖X_j‖₂ = {norm:.4g}  (feature j over every calibration token)"),
             ("formula", "S = |w| · ‖X_j‖₂, compared within the weight's output row"),
             ("substituted", f"S = |{w:.4g}| · {norm:.4g} = {product:.4g}"),
             ("rank", f"rank {rank} of {n} in its row (1 = kept first)")]
    steps.append(("threshold", "density keeps no weight of the row" if threshold is None else
                  f"density {density:g} keeps the k = {k} highest of the row: threshold S ≥ {threshold:.4g}; "
                  f"this weight's S = {product:.4g} is {'kept' if kept else 'removed'}"))
    return Explanation(criterion="wanda", layer=layer, index=tuple(int(i) for i in index),
                       quantities={"w": w, "norm": norm, "S": product}, formula=steps[2][1],
                       substituted=steps[3][1], score=value, rank=rank, scope="row", scope_size=n,
                       density=density, kept_count=k, threshold=threshold, kept=kept, steps=steps)


def wanda_explainer_job(model: str = "lenet", layer: str | None = None, index: tuple[int, ...] | None = None,
                        density: float = 0.1, device: str = "auto", loaded=None, data=None):
    """Explain Wanda on one weight: by default one Wanda keeps and magnitude removes (an outlier
    input feature lifts a small weight), with the layer's histogram of |W|·‖X‖ and the cut."""
    yield Step("loading", 0.0)
    if loaded is None:
        loaded, data = _load(model, device)
    if data is None:
        raise ValueError(f"Wanda reads the inputs' norms over calibration data, and {loaded.ref} has none: "
                         "choose a dataset (or explain magnitude, which needs none)")
    net = loaded.model
    workspace = Workspace(net, data, model_ref=loaded.ref)
    batches = calibration_batches(data, workspace.calibration, workspace.seed)
    result = yield from sub(wanda_job(net, batches), 0.05, 0.7, "wanda: ")
    contrast = ""
    if layer is None:
        contrast = "magnitude"
        magnitude = yield from sub(workspace.scores("magnitude"), 0.7, 0.8)
        pick = instructive_weight(result.scores, magnitude, density)
        layer, index = pick if pick is not None else (next(iter(result.scores)), (0,) * result.scores[
            next(iter(result.scores))].dim())
    edges, counts = score_histogram(result.products[layer])
    note = ("Wanda cuts every output row at its own threshold: the histogram shows the layer's "
            "S = |W|·‖X‖, this weight and its row's cut.")
    yield Step("the layer's scores", 0.9, CriterionExplainer(loaded.ref, None, edges, counts, contrast, note,
                                                             layer, tuple(index), "wanda"))
    explanation = wanda_explanation(result, net, layer, tuple(index), density, result.scores)
    yield Step("explained", 1.0)
    return CriterionExplainer(loaded.ref, explanation, edges, counts, contrast, note, layer, tuple(index), "wanda")


@dataclass
class MaskedSpeed:
    """The same model dense, masked (zeros in dense kernels) and shrunk (channels removed):
    measured latency, FLOPs and parameters side by side."""

    model: str
    density: float
    report: SpeedReport

    def summary(self) -> str:
        dense, masked, shrunk = (self.report.entry(n) for n in ("dense", "masked", "shrunk"))
        return (f"{self.model} at {self.density:.0%}: masked {masked.latency_s * 1e3:.3g} ms vs dense "
                f"{dense.latency_s * 1e3:.3g} ms for {masked.flops / dense.flops:.0%} of the useful FLOPs "
                f"(the kernels still run {masked.executed_flops / dense.flops:.0%}); shrunk "
                f"{shrunk.latency_s * 1e3:.3g} ms with {shrunk.params / dense.params:.0%} of the parameters")


def masked_speed_job(model: str = "resnet-mini", density: float = 0.5, repeats: int = 20, device: str = "auto"):
    """Dense, masked and shrunk ``model`` measured in one run on this machine (core.structure.speed)."""
    yield Step("loading", 0.0)
    loaded, _ = _load(model, device)
    def so_far(step: Step) -> Step:  # the bars after each timing round
        return Step(step.stage, step.fraction,
                    None if step.partial is None else MaskedSpeed(loaded.ref, density, step.partial))

    report = yield from sub(mapped(measure_speed(loaded.model, density=density, repeats=repeats,
                                                 device=_device_of(loaded.model), partials=True), so_far), 0.02, 1.0)
    return MaskedSpeed(loaded.ref, density, report)


@dataclass
class CouplingExplainer:
    """One channel group: its members (tensor, dimension, index, why it is coupled), and every
    tensor's shape before and after the structured pruner removes that one unit."""

    model: str
    group: ChannelGroup
    unit: int
    members: list[dict] = field(default_factory=list)  # param, dim, index, role, reason
    shapes: list[dict] = field(default_factory=list)  # param, before, after (the changed ones)
    same_output: bool = True  # the shrunk model's output equals the masked one's
    pictures: list[dict] = field(default_factory=list)  # the heatmaps: param, image, span (see slice_pictures)
    # the group on the dependency graph: the traced graph cut down to the group's layers and the
    # merges joining them (core.structure.hierarchy.focused_hierarchy), the layers to highlight
    # and a few words per node saying why it is coupled (core.structure.overlays.coupling_tags)
    hierarchy: Hierarchy | None = None
    layers: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    complete: bool = True  # False while the unit is still being removed (no shapes, no pictures yet)

    def summary(self) -> str:
        tensors = len({m["param"] for m in self.members})
        return (f"channel {self.unit} of {self.group.root} in {self.model}: removing it takes "
                f"{len(self.members)} slices of {tensors} tensors with it")


def slice_pictures(model, members: list[dict], limit: int = 8) -> list[dict]:
    """The members' weight matrices as heatmaps (|W| per layer, out x in·k·k, scaled to 0..1) with
    the removed slice: ``span`` = ("row" | "col", first, end) in the picture's pixels."""
    params = dict(model.named_parameters())
    out = []
    for m in members:
        w = params.get(m["param"])
        if w is None or w.dim() < 2 or len(out) >= limit:
            continue
        a = w.detach().abs().float().cpu()
        per = int(np.prod(a.shape[2:])) if a.dim() > 2 else 1  # a kernel's k·k columns per input
        image = a.reshape(a.shape[0], -1).numpy()
        image = image / max(float(image.max()), 1e-12)
        i = int(m["index"])
        span = ("row", i, i + 1) if m["dim"] == 0 else ("col", i * per, (i + 1) * per)
        out.append({"param": m["param"], "image": image, "span": span, "reason": m["reason"]})
    return out


def _pick_group(groups: list[ChannelGroup]) -> ChannelGroup:
    """The group worth a slide: one with several producers (a residual add), else the largest."""
    multi = [g for g in groups if len({m.param for m in g.producers()}) > 1]
    return max(multi or groups, key=lambda g: len(g.members))


def coupling_explainer_job(model: str = "resnet-mini", group: int | None = None, unit: int = 0,
                           device: str = "auto"):
    """The coupled group of one channel of ``model`` (default: a group joined by a residual add),
    each member with the reason it must go too (core.structure.overlays.coupling_reasons), and
    the shapes before and after the structured pruner removes that unit (core.structure.shrink),
    checked against the masked model's output."""
    yield Step("loading", 0.0)
    loaded, _ = _load(model, device)
    net = loaded.model.eval()
    example = example_input(net)
    traced = build_graph(net, example)
    structure = yield from sub(find_groups_job(net, example[:2]), 0.05, 0.6, "groups: ")
    groups = [g for g in structure.groups if g.prunable]
    if not groups:
        raise ValueError(f"{loaded.ref} has no structurally prunable channel group")
    chosen = _pick_group(groups) if group is None else next((g for g in groups if g.id == group), None)
    if chosen is None:
        raise ValueError(f"no prunable group {group} in {loaded.ref}")
    if not 0 <= unit < chosen.size:
        raise ValueError(f"unit {unit} is outside the group's {chosen.size} channels")
    reasons = coupling_reasons(chosen, traced.graph, net)
    members = [{"param": m.param, "dim": m.dim, "index": m.indices[m.units.index(unit)], "role": m.role,
                "reason": why}
               for m, (_, _, why) in zip(chosen.members, reasons) if unit in m.units]
    layers, tags, focus = coupling_on_graph(chosen, members, traced, net)
    yield Step("removing the unit", 0.7, CouplingExplainer(loaded.ref, chosen, unit, members, hierarchy=focus,
                                                           layers=layers, tags=tags, complete=False))
    small = shrink(net, structure.groups, PrunePlan(removed={chosen.id: [unit]}))
    before = dict(net.state_dict())
    after = dict(small.model.state_dict())
    shapes = [{"param": k, "before": tuple(v.shape), "after": tuple(after[k].shape)}
              for k, v in before.items() if k in after and tuple(after[k].shape) != tuple(v.shape)]
    masked = copy.deepcopy(net)
    with torch.no_grad():
        params = dict(masked.named_parameters())
        buffers = dict(masked.named_buffers())
        for m in chosen.members:
            if unit in m.units and m.param in params and m.role in ("out", "norm"):
                params[m.param].index_fill_(m.dim, torch.tensor([m.indices[m.units.index(unit)]]), 0.0)
        del buffers
        same = bool(torch.allclose(masked(example), small.model(example), atol=1e-4))
    yield Step("coupling explained", 1.0)
    return CouplingExplainer(loaded.ref, chosen, unit, members, shapes, same, slice_pictures(net, members),
                             focus, layers, tags)


def coupling_on_graph(group: ChannelGroup, members: list[dict], traced, model) -> tuple[list[str], dict, Hierarchy]:
    """The coupled slices on the dependency graph: the traced layers holding ``members`` (what
    the slide highlights), each node's few words of reason, and the hierarchy of only those
    layers and the merges that join them (the whole graph of a small ResNet is 60 nodes wide:
    unreadable on a slide)."""
    graph = traced.graph
    layers = list(dict.fromkeys(layer_of(m["param"]) for m in members if layer_of(m["param"]) in graph))
    tags = coupling_tags(group, graph, model)
    keep = [*layers, *(n for n in tags if n in graph and n not in layers)]
    return layers, {k: v for k, v in tags.items() if k in keep}, focused_hierarchy(model, traced, keep)
