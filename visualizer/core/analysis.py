"""The window's workflows: ranking, graph, spectrum, landscape, speed and group lasso as jobs.

Each is a generator of :class:`~visualizer.core.tasks.Step` chaining core functions (no numerics
of its own) and returning a small result the window's views take (after ``ui.views.adapters``).
The window runs them in its JobRunner on a snapshot (core.provenance: a model version and a mask
copy); presets, screenshots, the CLI and tests run them to the end with
:func:`visualizer.core.tasks.run`. No Qt here. They never change the model they are given (core
functions work on copies or functional calls).
"""

from __future__ import annotations

import copy
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from visualizer.core.curvature.landscape import interpolate, random_directions, slice_2d
from visualizer.core.curvature.spectrum import (
    DenseVsMasked,
    SpectrumOptions,
    dense_vs_masked,
    hessian_spectrum,
)
from visualizer.core.layers import output_dims
from visualizer.core.pruning.allocation import build_allocated_ranking
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.core.pruning.nm import parse_nm
from visualizer.core.pruning.ranking import SCOPES, build_ranking
from visualizer.core.structure.graph import build_graph_job, example_input
from visualizer.core.structure.groups import branches, connectivity, find_groups, find_groups_job
from visualizer.core.structure.hierarchy import hierarchy_job
from visualizer.core.structure.layout import GraphLayout
from visualizer.core.structure.speed import measure_speed
from visualizer.core.tasks import Step, sub
from visualizer.core.training.prox import group_lasso_then_finetune
from visualizer.core.training.sensitivity import allocation_inputs_job
from visualizer.core.workspace import (
    PREVIEW_BATCH_SIZE,
    PREVIEW_BATCHES,
    Workspace,
    curvature_batches,
    model_on,
    resolve_device,
    streamed,
)

# --- ranking -------------------------------------------------------------------------------------


def rank_job(
    model, dataset, criterion: str, scope: str, structure: str, seed: int = 0, device: str = "cpu",
    model_ref: str = "", previous: Iterable[dict] = (),
) -> Generator[Step, None, tuple[object, dict]]:
    """Scores of ``criterion`` on a copy of the model (the workspace's criterion batches and
    ``seed``, as ``pruneviz prune`` and the sweep; on ``device`` for the data criteria, whose
    forward and backward passes are the work), then the ranking for (scope, structure) on the
    host (the scores come back once). A streamed source is read as a preview sample. An
    allocation ``scope`` gathers its inputs first: the ``sensitivity`` curves are measured
    unless ``previous`` sensitivity rows of the same key (``model_ref``, the data, the
    criterion, ...) hold them; the measured rows stream as ``Step.partial`` lists."""
    info = CRITERIA[criterion]
    if info.structured and parse_nm(structure) is not None:
        raise ValueError(f"{info.title} scores whole channels: an N:M pattern ({structure}) needs a "
                         "criterion that scores single weights")
    # The data criteria run backward passes (they write .grad): they get a copy, never the shown
    # model. The weight-only ones just read it; copying would be a GIL-bound deepcopy beside the
    # GUI thread on every load (it was there in a 130 ms event-loop gap).
    dev = resolve_device(device)
    work = copy.deepcopy(model).to(dev) if info.needs_data else model
    workspace = Workspace(model, dataset, device=dev, seed=seed, model_ref=model_ref)
    if dataset is not None and streamed(dataset):  # a preview sample, not 4 x 128 decoded images
        workspace = replace(workspace, score_batches=PREVIEW_BATCHES, score_batch_size=PREVIEW_BATCH_SIZE)
    with torch.enable_grad():
        scores = yield from sub(workspace.scores(criterion, work), 0.0, 0.7, "scores: ")
    if scope in SCOPES:
        rk = yield from sub(build_ranking(scores, scope=scope, structure=structure,
                                          channel_dims=output_dims(model)), 0.7, 0.97, "ranking: ")
    else:  # an allocation (core.pruning.allocation): gather its inputs, then rank layer by layer
        inputs = yield from sub(allocation_inputs_job(workspace, criterion, scope, model=work, previous=previous),
                                0.7, 0.9, "allocation: ")
        rk = yield from sub(build_allocated_ranking(scores, scope, structure, channel_dims=output_dims(model),
                                                    **inputs), 0.9, 0.97, "ranking: ")
    scores_np = {n: s.detach().cpu().float().numpy() for n, s in scores.items()}
    yield Step("done", 1.0)
    return rk, scores_np


# --- graph --------------------------------------------------------------------------------------


@dataclass
class GraphResult:
    """What the graph, DenseNet and Inception views show for one model."""

    graph: Any  # networkx.DiGraph
    layout: GraphLayout | None  # None: the graph view lays out only what it opens (hierarchy)
    groups: list[list[str]]  # parameter names per coupled channel group
    notices: list[str] = field(default_factory=list)
    connectivity: Any = None  # core.structure.Connectivity (None when no concatenations)
    branches: list = field(default_factory=list)  # core.structure.ConcatModule list
    hierarchy: Any = None  # core.structure.hierarchy.Hierarchy
    group_objects: list = field(default_factory=list)  # core.structure.groups.ChannelGroup list


def graph_job(model, example=None) -> Generator[Step, None, GraphResult]:
    """Trace the model, find its coupled groups and summaries, then nest the graph by the module
    tree (core.structure.hierarchy; the view lays out only what it opens). Each part is its own
    step (the tracing and group jobs yield between attempts and groups): run in the window, a step
    holds the job-step lock, and one step for all of it held it for seconds."""
    traced = yield from sub(build_graph_job(model, example), 0.0, 0.3, "tracing: ")
    notices = list(getattr(traced, "notices", []))
    try:
        structure = yield from sub(find_groups_job(model, example), 0.3, 0.45, "groups: ")
        groups_obj = structure.groups
        notices += list(getattr(structure, "notices", []))
    except Exception as exc:  # an untraceable model still gets its graph drawn
        groups_obj = []
        notices.append(f"no channel groups: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    groups = [[m.param for m in g.members] for g in groups_obj]
    yield Step("connectivity", 0.5)
    conn = connectivity(model, groups_obj)
    yield Step("branches", 0.55)
    found = branches(model, groups_obj, example)
    h = yield from sub(hierarchy_job(model, traced), 0.6, 1.0, "hierarchy: ")
    notices = h.notices[:1] + notices if traced.method == "hierarchy" else notices
    return GraphResult(traced.graph, None, groups, notices, conn, found, h, list(groups_obj))


@dataclass
class GroupLassoResult:
    """Connectivity and branches of a model before and after group lasso + masked fine-tune (a
    copy), with the accuracy at each stage."""

    before_connectivity: Any
    after_connectivity: Any
    before_branches: list
    after_branches: list
    zero_groups: int
    groups: int
    accuracy_dense: float = float("nan")
    accuracy_lasso: float = float("nan")  # right after the penalty
    accuracy_final: float = float("nan")  # after the masked fine-tune

    def summary(self) -> str:
        return (f"group lasso zeroed {self.zero_groups} of {self.groups} groups · accuracy "
                f"{self.accuracy_dense:.3f} dense → {self.accuracy_lasso:.3f} after the penalty → "
                f"{self.accuracy_final:.3f} after a masked fine-tune")


# what shows removal on the bundled models (core.training.prox.group_lasso_then_finetune's measurements)
LASSO_DEFAULTS = {"densenet": (0.3, 20), "inception": (0.3, 10)}


def group_lasso_job(model, dataset, lam: float = 0.3, epochs: int = 10, finetune_epochs: int = 3,
                    example=None, device: str = "cpu") -> Generator[Step, None, GroupLassoResult]:
    """Group lasso (block soft thresholding; Yuan & Lin 2006, Wen et al. 2016) on a copy of ``model`` with the groups its
    structure suggests (DenseNet connections, Inception branches, else channels), a masked
    fine-tune, then the connection strengths and branch norms before and after."""
    yield Step("coupled groups", 0.0)
    groups = find_groups(model, example).groups
    before_c, before_b = connectivity(model, groups), branches(model, groups, example)
    # the starting circuit at once (a slide shows it while the penalty trains; the after side
    # fills in at the end)
    yield Step("connections before", 0.05, GroupLassoResult(before_c, before_c, before_b, before_b, 0, len(groups)))
    res = yield from sub(group_lasso_then_finetune(model, dataset, lam=lam, epochs=epochs,
                                                   finetune_epochs=finetune_epochs, device=device),
                         0.05, 0.95, "group lasso: ")
    after = res.model.cpu()  # the connectivity summaries read the trained copy on the host
    yield Step("connections after", 0.97)
    return GroupLassoResult(before_c, connectivity(after, groups), before_b, branches(after, groups, example),
                            res.lasso.zero_groups, res.lasso.groups, res.dense.accuracy, res.lasso.test.accuracy,
                            res.test.accuracy)


# --- spectrum -------------------------------------------------------------------------------------


def spectrum_job(model, dataset, masks, top_k: int = 5, density_probes: int = 4,
                 trace_probes: int = 20, n_batches: int = 1, batch_size: int = 128, device: str = "cpu",
                 *, options: SpectrumOptions | None = None, evalset=None, need_mask: bool = True,
                 **operator: Any) -> Generator[Step, None, DenseVsMasked]:
    """Dense and masked Hessian spectra at the same point theta = m * w (core.curvature), on
    ``device`` (a copy of the model there; eigenvectors come back to the host): the window's
    spectrum tab and ``pruneviz hessian``.

    The CLI's finer settings: ``options`` (every SpectrumOptions field; default: ``top_k``,
    ``density_probes`` and ``trace_probes``), ``operator`` (``layer``, ``include_other``,
    ``method``, ``dtype`` of core.curvature.spectrum.hessian_operator), ``evalset`` (batches
    already read by core.workspace.curvature_batches, whose size the CLI reports) and
    ``need_mask=False``: without a mask, the dense spectrum at the trained weights alone
    (``masked`` is None)."""
    if dataset is None and evalset is None:
        raise ValueError("the Hessian spectrum needs a dataset: choose one under Data")
    if masks is None and need_mask:
        raise ValueError("a masked spectrum needs a mask: prune first")
    yield Step("evaluation batches", 0.0)
    work = model_on(model, device)
    if evalset is None:
        evalset = curvature_batches(dataset, n_batches=n_batches, batch_size=batch_size)
    if options is None:
        options = SpectrumOptions(top_k=top_k, density_probes=density_probes, trace_probes=trace_probes)
    if masks is None:
        dense = yield from sub(hessian_spectrum(work, evalset, None, options, masked=False, **operator), 0.02, 1.0)
        both = DenseVsMasked(dense, None)
    else:
        both = yield from sub(dense_vs_masked(work, evalset, masks, options, **operator), 0.02, 1.0)
    for spec in (both.dense, both.masked):
        if spec is not None and spec.top_vectors is not None:
            spec.top_vectors = spec.top_vectors.cpu()
    return both


# --- landscape ------------------------------------------------------------------------------------


@dataclass
class LandscapeResult:
    curve: Any  # core.landscape.Landscape1D (dense -> pruned interpolation)
    surface: Any  # core.landscape.Landscape2D
    points: dict[str, tuple[float, float]]


def landscape_job(model, dataset, masks, steps_1d: int = 21, steps_2d: int = 21,
                  span: float = 1.5, n_batches: int = 1, seed: int = 0, batch_size: int = 128,
                  device: str = "cpu"):
    """1D: the straight path dense -> pruned (theta -> m * theta), with its barrier.
    2D: the plane through the trained point spanned by the pruning displacement
    delta = m * theta - theta and one random filter-normalised direction (Li et al. 2018), so the
    trained point sits at (0, 0) and the pruned point at (1, 0)."""
    if dataset is None:
        raise ValueError("the loss landscape needs a dataset: choose one under Data")
    if masks is None:
        raise ValueError("the landscape between dense and pruned needs a mask: prune first")
    yield Step("evaluation batches", 0.0)
    model = model_on(model, device)  # a copy on the device; the grids come back as numpy
    evalset = curvature_batches(dataset, n_batches=n_batches, batch_size=batch_size)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    pruned = masks.masked_state(model)
    curve = yield from sub(interpolate(model, trained, pruned, evalset, steps=steps_1d), 0.02, 0.3, "1D: ")
    # the pruning displacement as a direction: zero on kept weights, -w on pruned ones
    delta = {k: (pruned[k] - trained[k]) if trained[k].is_floating_point() else trained[k] * 0
             for k in trained}
    params = dict(model.named_parameters())
    delta = {k: v for k, v in delta.items() if k in params}
    other = random_directions(model, trained, 1, seed=seed)[0]
    surface = yield from sub(
        slice_2d(model, evalset, steps=steps_2d, span=span, state=trained,
                 directions=(delta, other)), 0.3, 1.0, "2D: ")
    return LandscapeResult(curve, surface, {"trained": (0.0, 0.0), "pruned": (1.0, 0.0)})


# --- speed ----------------------------------------------------------------------------------------


def speed_job(model, density: float = 0.5, repeats: int = 20, example=None, device: str = "cpu",
              shrunk=None):
    """Latency, FLOPs and eta of dense, masked (same parameter count) and shrunk models: the
    measurement of ``pruneviz speed`` (core.structure.speed.measure_speed: group-l2 channel
    scores per layer, unless the ``shrunk`` model is given), on a two-sample example input
    unless one is given."""
    x = example if example is not None else example_input(model)
    return (yield from measure_speed(model, density, example=x, repeats=repeats, device=device,
                                     criterion="group-l2", scope="layer", shrunk=shrunk))
