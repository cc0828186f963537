"""The lecture presets without their views: each is a job (a generator of core Steps calling core
functions on a bundled model) with a title, a caption saying what to look at, and its source.
The window shows them as slides (visualizer.ui.lecture.presets adds the views), ``pruneviz preset
--list`` lists them without importing Qt, and tests run the jobs to the end.

Presets: the LTH curve on the bundled MLP (ticket vs re-init vs random); SNIP vs magnitude masks
on the same layer; masked vs dense Hessian spectrum; DenseNet connections after group lasso;
Inception branches removed; the density law (1-alpha)^S over IMP rounds; time-to-train of dense,
unstructured and structured models; the four theory labs of visualizer.core.labs; and the
explainers (visualizer.core.lecture.explainers).

A job whose spec ``streams`` yields its figure so far as ``Step.partial``, of the same type as
its result (the rounds done, the spectrum's probes so far, the bars after a timing round): the
slide draws it as it fills, and the CLI, which draws only the result, draws the same figure.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from visualizer.core.analysis import LASSO_DEFAULTS, group_lasso_job
from visualizer.core.curvature.spectrum import (
    DenseVsMasked,
    SpectrumOptions,
    dense_vs_masked,
    spectrum_over_rewinds,
)
from visualizer.core.labs import lab_job
from visualizer.core.lecture.explainers import (
    coupling_explainer_job,
    criterion_explainer_job,
    masked_speed_job,
    wanda_explainer_job,
)
from visualizer.core.lecture.loading import _device_of, _load
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.core.pruning.ranking import mask_from_scores
from visualizer.core.structure.speed import measure_speed
from visualizer.core.tasks import Step, mapped, progress_only, run, sub
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import (
    IMPConfig,
    imp_density,
    initial_state,
    iterative_magnitude_pruning,
    rewind_points,
)
from visualizer.core.training.sensitivity import SensitivityConfig
from visualizer.core.training.sensitivity import sensitivity_job as analysis
from visualizer.core.workspace import Workspace, curvature_batches


@dataclass(frozen=True)
class PresetSpec:
    id: str
    title: str
    caption: str
    job: Callable[..., Generator[Step, None, Any]]
    source: str = ""  # the literature it reproduces, and its section of docs/theory.md
    streams: bool = False  # the job yields its result so far: the slide shows it filling in


# --- SNIP vs magnitude ------------------------------------------------------------------------


@dataclass
class MaskComparison:
    """Magnitude and SNIP masks at one density, one layer compared (``row``: overlap, Jaccard;
    ``all``: every layer's). While SNIP still scores, ``snip`` is None: the slide shows the
    magnitude mask alone."""

    layer: str
    density: float
    magnitude: Any
    snip: Any = None
    row: dict | None = None
    all: list = field(default_factory=list)


def snip_vs_magnitude_job(model: str = "lenet", layer: str = "fc1.weight", density: float = 0.1,
                          device: str = "auto"):
    """Magnitude |w| and SNIP |g * w| masks at the same global density; one layer compared.
    SNIP scores on the workspace's criterion batches, so its mask is the window's and the CLI's."""
    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    net = loaded.model
    workspace = Workspace(net, data, model_ref=model)
    mag = yield from sub(workspace.scores("magnitude"), 0.05, 0.2, "magnitude: ")
    a = mask_from_scores(mag, density, criterion="magnitude")
    if layer not in a.masks:
        raise ValueError(f"no prunable layer {layer!r} in {model}")
    yield Step("magnitude mask", 0.2, MaskComparison(layer, density, a))
    snip = yield from sub(workspace.scores("snip"), 0.2, 0.9, "snip: ")
    b = mask_from_scores(snip, density, criterion="snip")
    rows = a.compare(b)
    yield Step("done", 1.0)
    return MaskComparison(layer, density, a, b, next(r for r in rows if r["name"] == layer), rows)


# --- masked vs dense spectrum -----------------------------------------------------------------


@dataclass
class SpectrumFigure:
    """Dense and masked spectra at theta = m * w and the masked one at the rewind points. While it
    computes: ``masked`` None (the dense density filling probe by probe), then the rewinds so far."""

    dense: Any
    masked: Any
    taus: list
    rewinds: list
    density: float


def spectrum_job(model: str = "lenet", density: float = 0.2, top_k: int = 5, probes: int = 4,
                 taus: tuple[int, ...] = (0, 25, 50, 100, 200), device: str = "auto"):
    """Dense and masked Hessian spectra at the same point theta = m * w (magnitude mask of the
    pretrained model), then the masked spectrum H_tau^m at rewind points tau of a fresh training
    run from the shipped initialisation (the mask taken from the end of that run, as IMP does).
    Yields the figure so far: each SLQ probe's density, then each rewind point."""
    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    net = loaded.model
    workspace = Workspace(net, data, model_ref=model)
    mags = yield from sub(workspace.scores("magnitude"), 0.01, 0.02)
    mask = mask_from_scores(mags, density, criterion="magnitude")
    evalset = curvature_batches(data)
    options = SpectrumOptions(top_k=top_k, density_probes=probes, trace_probes=20, partials=True)

    def pair_so_far(step: Step) -> Step:
        if isinstance(step.partial, DenseVsMasked):
            return Step(step.stage, step.fraction,
                        SpectrumFigure(step.partial.dense, step.partial.masked, list(taus), [], density))
        return Step(step.stage, step.fraction)

    pair = yield from sub(mapped(dense_vs_masked(net, evalset, mask, options), pair_so_far), 0.02, 0.5, "spectra: ")
    run_ = yield from sub(progress_only(rewind_points(net, model, data, taus, TrainConfig(device=device))), 0.5, 0.6,
                          "training: ")
    final = yield from sub(workspace.scores("magnitude", run_.model), 0.6, 0.61)
    rewind_mask = mask_from_scores(final, density, criterion="magnitude")
    snapshots = [(f"tau={t}", run_.snapshots[t]) for t in taus]
    done: list = []

    def rewinds_so_far(step: Step) -> Step:
        if step.partial is not None and hasattr(step.partial, "spectrum"):
            done.append(step.partial.spectrum)
            return Step(step.stage, step.fraction, SpectrumFigure(pair.dense, pair.masked, list(taus),
                                                                  list(done), density))
        return Step(step.stage, step.fraction)

    rewinds = yield from sub(mapped(
        spectrum_over_rewinds(net, snapshots, rewind_mask, evalset, SpectrumOptions(top_k=2, bottom_k=2)),
        rewinds_so_far), 0.61, 1.0, "rewinds: ")
    return SpectrumFigure(pair.dense, pair.masked, list(taus), [r.spectrum for r in rewinds], density)


# --- LTH curve and the density law -----------------------------------------------------------


@dataclass
class RoundsSoFar:
    """The IMP rows finished so far: what the lottery-ticket slide draws while the rounds run."""

    rows: list[dict]


def _rounds_so_far(job):
    """``job``'s steps, each finished round's row gathered into a :class:`RoundsSoFar` partial."""
    rows: list[dict] = []

    def gather(step):
        if isinstance(step.partial, dict) and "round" in step.partial:
            rows.append(step.partial)
            return Step(step.stage, step.fraction, RoundsSoFar(list(rows)))
        return step

    return (yield from mapped(job, gather))


def lth_job(model: str = "mlp", rounds: int = 5, rate: float = 0.5, epochs: int = 5, lr: float = 3e-3,
            device: str = "auto"):
    """IMP with rewinding to tau = 0 on the bundled MLP, with re-init and random-mask controls."""
    yield Step("loading", 0.0)
    loaded, data = _load(model)
    init, _ = initial_state(model, loaded.model)
    config = IMPConfig(rounds=rounds, rate=rate, controls=("reinit", "random-mask"),
                       train=TrainConfig(epochs=epochs, lr=lr, evaluate_each_epoch=False, device=device))
    result = yield from sub(
        _rounds_so_far(iterative_magnitude_pruning(loaded.model, data, init, config)), 0.02, 1.0)
    return result


@dataclass
class DensityLaw:
    """The measured mask density of each IMP round against (1 - alpha)^S (while it runs: the
    rounds so far against the law over all of them)."""

    rate: float
    measured: list[float]
    law: list[float]


def density_law_job(model: str = "mlp", rounds: int = 8, rate: float = 0.3, steps: int = 10,
                    device: str = "auto"):
    """IMP rounds: the measured density of each round's mask against (1 - alpha)^S, a point
    per round as it finishes."""
    yield Step("loading", 0.0)
    loaded, data = _load(model)
    init, _ = initial_state(model, loaded.model)
    # the law is about the masks: a few training steps per round are enough to show it
    config = IMPConfig(rounds=rounds, rate=rate,
                       train=TrainConfig(epochs=1, max_steps=steps, evaluate_each_epoch=False, device=device))

    def law_so_far(step: Step) -> Step:
        if isinstance(step.partial, RoundsSoFar):
            measured = [r["density"] for r in step.partial.rows]  # the round's MaskSet.density()
            # the law over every round from the start: the points fill in along it
            return Step(step.stage, step.fraction, DensityLaw(rate, measured, _law(rate, [1.0] * (rounds + 1)).law))
        return Step(step.stage, step.fraction)

    result = yield from sub(mapped(_rounds_so_far(iterative_magnitude_pruning(loaded.model, data, init, config)),
                                   law_so_far), 0.02, 1.0)
    return _law(rate, [m.density() for m in result.masks])


def _law(rate: float, measured: list[float]) -> DensityLaw:
    return DensityLaw(rate, measured, [imp_density(rate, s) for s in range(len(measured))])


# --- DenseNet and Inception after group lasso --------------------------------------------------


def _group_lasso(model: str, kind: str, lam: float | None = None, epochs: int | None = None,
                 finetune_epochs: int = 3, device: str = "auto"):
    """Group lasso + masked fine-tune of a bundled model, by default at the settings that show
    removal (LASSO_DEFAULTS)."""
    loaded, data = _load(model, device)
    default_lam, default_epochs = LASSO_DEFAULTS[kind]
    return (yield from group_lasso_job(loaded.model, data, lam=default_lam if lam is None else lam,
                                       epochs=epochs or default_epochs, finetune_epochs=finetune_epochs,
                                       device=device))


def densenet_job(**options):
    return (yield from _group_lasso("densenet-mini", "densenet", **options))


def inception_job(**options):
    return (yield from _group_lasso("inception-mini", "inception", **options))


# --- time to train ----------------------------------------------------------------------------


@dataclass
class TrainTime:
    """Measured dense, unstructured and structured models and the steps each trains for (the
    report over the timing rounds so far while it runs)."""

    report: Any
    steps: dict
    steps_sparse: int


def time_to_train_job(model: str = "lenet", density: float = 0.25, steps_dense: int = 1000,
                      steps_sparse: int | None = None, device: str = "auto"):
    """Measured latency, FLOPs and eta of dense, unstructured and structured (shrunk) models,
    and time to train = steps x time per step (the time-to-train paradox; Hoefler et al. 2021).
    The bars appear after the first timing round and settle as the rounds add up."""
    yield Step("loading", 0.0)
    loaded, _ = _load(model, device)
    sparse = steps_sparse or steps_dense

    def so_far(step: Step) -> Step:
        return Step(step.stage, step.fraction,
                    None if step.partial is None else TrainTime(step.partial, {"dense": steps_dense}, sparse))

    report = yield from sub(mapped(measure_speed(loaded.model, density=density, device=_device_of(loaded.model),
                                                 partials=True), so_far), 0.02, 1.0)
    return TrainTime(report, {"dense": steps_dense}, sparse)



# --- sensitivity ----------------------------------------------------------------------------------


def sensitivity_job(model: str = "resnet-mini", levels: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05),
                    unit: str = "layer", criterion: str = "magnitude", device: str = "auto"):
    """Each layer (or coupled group) of a bundled model pruned alone at each density: the rows
    of core.training.sensitivity on the first 512 test images, and a one-line summary."""
    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    ws = Workspace(loaded.model, data, device=next(loaded.model.parameters()).device, model_ref=model)
    so_far: list[dict] = []

    def gather(step):  # each finished unit's rows: the slide draws the curves as they come
        if isinstance(step.partial, list):
            so_far.extend(step.partial)
            return Step(step.stage, step.fraction, SimpleNamespace(rows=list(so_far), unit=unit))
        return step

    res = yield from sub(mapped(analysis(ws, SensitivityConfig(model, criterion, unit, tuple(levels),
                                                                eval_batches=1)), gather), 0.02, 1.0)
    low = min(levels)
    at_low = {r["unit"]: r["accuracy"] for r in res.rows if r["level"] == low}
    fragile, robust = min(at_low, key=at_low.get), max(at_low, key=at_low.get)
    text = (f"At {low:.0%} density alone: {fragile} falls to {at_low[fragile]:.0%}, {robust} keeps "
            f"{at_low[robust]:.0%} (dense {res.rows[0]['base_accuracy']:.0%}).")
    return SimpleNamespace(rows=res.rows, unit=unit, summary=lambda: text)


# --- explainers ----------------------------------------------------------------------------------

_CRITERION_EXPLAINED = {
    "magnitude": "Magnitude keeps the largest |w|: no data, no gradient (Han et al. 2015).",
    "snip": "SNIP multiplies a weight by the gradient of the loss: |g · w|, the loss change if the weight "
            "were switched off, to first order (Lee, Ajanthan & Torr 2019).",
    "grasp": "GraSP asks what removing a weight does to the gradient flow: S = -w · (Hg), and the "
             "weights with the highest S are removed (Wang, Zhang & Grosse 2020).",
    "taylor": "First-order Taylor squares the loss change g_b · w of every batch and averages: a weight "
              "whose batches disagree is not cancelled out (Molchanov et al. 2019).",
    "obd": "Optimal Brain Damage adds the curvature: ΔL = -g · w + ½ H_ii w², with H_ii estimated by "
           "Hutchinson probes (LeCun, Denker & Solla 1990).",
}


def _explainer_preset(criterion: str) -> PresetSpec:
    def job(model: str = "lenet", density: float = 0.1, device: str = "auto", **options):
        return (yield from criterion_explainer_job(criterion, model, density=density, device=device, **options))

    return PresetSpec(
        f"explain-{criterion}", f"How {CRITERIA[criterion].title} scores one weight",
        f"{_CRITERION_EXPLAINED[criterion]} Space steps through the numbers of one weight of the "
        "trained model, its rank and the cut; then the whole layer's scores with the cut.",
        job, f"docs/theory.md, Criteria ({criterion})", streams=True)


EXPLAINER_PRESETS = [
    *(_explainer_preset(c) for c in _CRITERION_EXPLAINED),
    PresetSpec("explain-wanda", "How Wanda scores one weight",
               "Wanda multiplies a weight by the norm of its input over the calibration sample: "
               "|W_ij| · ‖X_j‖₂, and keeps the same share of every output row (Sun et al. 2024). A "
               "small weight on an outlier input can outrank a large one. Space steps through one "
               "weight's numbers; then the layer's scores with its row's cut.",
               wanda_explainer_job, "docs/theory.md, Language models (Wanda)", streams=True),
    PresetSpec("explain-coupling", "Why channels go together",
               "One channel of a residual network: every slice of every tensor that has to go with it, "
               "and why (it produces the channel, reads it, normalises it, or is added to it by a "
               "residual connection). Space steps through them; then the structured pruner removes the "
               "channel and the shapes change.",
               coupling_explainer_job, "Li et al. 2017; Fang et al. 2023 (dependency graphs); docs/theory.md, "
               "Structured criteria: per output channel and per coupled group", streams=True),
    PresetSpec("explain-masked-speed", "Masked is not faster",
               "The same model dense, masked to 50% (zeros in dense kernels) and shrunk (channels "
               "removed), measured on this machine: the masked model runs as many multiply-adds as the "
               "dense one, only the shrunk one saves time.",
               masked_speed_job, "Hoefler et al. 2021; docs/theory.md, The speed model", streams=True),
]


def _lab(lab: str):
    """A theory lab's job; only the training lab takes a device."""
    def job(**options):
        fn = lab_job(lab)
        if "device" not in inspect.signature(fn).parameters:
            options.pop("device", None)
        return (yield from fn(**options))

    return job


def _lab_preset(lab: str, title: str, caption: str) -> PresetSpec:
    return PresetSpec(lab, title, caption, _lab(lab), f"docs/theory.md, Theory labs ({lab})", streams=True)


LAB_PRESETS = [
    _lab_preset(
        "mask-probability", "Lab: a winning mask by chance",
        "Weights drawn w0 ~ N(0, sigma^2), a mask keeping |w0| >= t: the chance it is exactly the "
        "true k-sparse support is [2(1 - Phi(t/sigma))]^k [2 Phi(t/sigma) - 1]^(n-k). The curve is "
        "the formula, the points a Monte Carlo count with error bars; even at the best threshold "
        "the chance is small (docs/theory.md)."),
    _lab_preset(
        "phase-transition", "Lab: sparse recovery phase transition",
        "Recovering a k-sparse x from m random measurements (OMP; Tropp & Gilbert 2007): the "
        "success rate over delta = m/n and rho = k/m drops sharply near the l1 weak threshold of "
        "Donoho & Tanner (2009), drawn as the curve (computed by the formula of Donoho, Maleki & "
        "Montanari 2009; docs/theory.md)."),
    _lab_preset(
        "a-optimal", "Lab: magnitude pruning vs A-optimal design",
        "Keeping k of m sensor rows: the exhaustive A-optimal subset (min trace((A_S^T A_S)^-1); "
        "Kiefer 1959) against keeping the k largest rows, as magnitude pruning does. Points on "
        "y = x are trials where the heuristic is optimal; the bars show how many rows both "
        "keep (docs/theory.md)."),
    _lab_preset(
        "random-labels", "Lab: no free lunch with random labels",
        "The MLP trained dense and as an IMP ticket (Frankle & Carbin 2019) on true and on shuffled "
        "digits labels: with labels that carry no information every learner stays inside the "
        "binomial band around chance 1/K (Wolpert 1996; Zhang et al. 2017; docs/theory.md)."),
]



PRESETS: dict[str, PresetSpec] = {p.id: p for p in [
    PresetSpec("lth", "Lottery ticket on the MLP",
               "Winning ticket vs re-initialised vs random mask. Look at the gap: the same sparse "
               "structure trained from its original initialisation keeps its accuracy to low density; "
               "re-initialised or random masks fall off earlier.",
               lth_job,
               "Frankle & Carbin 2019; docs/theory.md, Lottery tickets", streams=True),
    PresetSpec("snip-vs-magnitude", "SNIP vs magnitude masks",
               "The same layer pruned to 10% by |w| and by SNIP's |g * w|. Agreement: dark cells are kept "
               "by both, blue ones only by |w|, orange ones only by SNIP: where a data-driven criterion "
               "disagrees with plain magnitude.",
               snip_vs_magnitude_job,
               "Lee, Ajanthan & Torr 2019; docs/theory.md, Criteria", streams=True),
    PresetSpec("spectrum", "Masked vs dense Hessian spectrum",
               "Hessian of the loss at theta = m * w: dense vs restricted to the kept weights (P_m H P_m). "
               "By interlacing, the masked lambda_max is never above the dense one; a smaller "
               "lambda_max allows a larger stable learning rate.",
               spectrum_job,
               "Cauchy interlacing; Lanczos 1950; Frankle et al. 2020; docs/theory.md, The masked Hessian",
               streams=True),
    PresetSpec("densenet", "DenseNet connections after group lasso",
               "Each cell: how strongly a layer reads an earlier layer's features. Group lasso drives "
               "all outgoing connections of a layer to zero together (an empty column); a short masked "
               "fine-tune brings the accuracy back: what is left is the circuit the network uses.",
               densenet_job,
               "Yuan & Lin 2006; Huang et al. 2017; docs/theory.md, Group lasso", streams=True),
    PresetSpec("inception", "Inception branches removed",
               "Group norm of every parallel branch. A group penalty makes an all-or-nothing decision "
               "per branch: grey bars are branches driven to zero and removed; a short masked fine-tune "
               "recovers the accuracy without them.",
               inception_job,
               "Yuan & Lin 2006; Szegedy et al. 2015; docs/theory.md, Group lasso", streams=True),
    PresetSpec("density-law", "The density law (1 - alpha)^S",
               "Pruning a fraction alpha of the remaining weights each round leaves (1 - alpha)^S after "
               "S rounds: the measured mask density sits on the geometric law.",
               density_law_job,
               "Frankle & Carbin 2019; docs/theory.md, Iterative magnitude pruning", streams=True),
    PresetSpec("time-to-train", "Time to train: dense vs unstructured vs structured",
               "Fewer FLOPs are not less time: unstructured sparsity runs at a low hardware "
               "efficiency eta, while a structurally shrunk model stays dense and fast.",
               time_to_train_job,
               "docs/theory.md, The speed model", streams=True),
    PresetSpec("sensitivity", "Sensitivity: which layers can lose how much",
               "Each layer of the residual network pruned alone by magnitude, everything else dense. "
               "The stem and the first blocks break first; the last layers barely notice: a uniform cut "
               "spends its budget where it hurts most, and a sensitivity allocation does not.",
               sensitivity_job,
               "Han et al. 2015; Distiller's sensitivity analysis; docs/theory.md, Group-faithful sensitivity",
               streams=True),
    *LAB_PRESETS,
    *EXPLAINER_PRESETS,
]}


def caption_of(spec, result) -> str:
    """The preset's fixed caption, and under it the run's measured summary when it has one."""
    summary = getattr(result, "summary", None)
    return f"{spec.caption}\n{summary()}" if callable(summary) else spec.caption


def run_preset_job(preset_id: str, on_step=None, **options):
    """Run a preset's job to the end (CLI, tests) and return its result."""
    if preset_id not in PRESETS:
        raise ValueError(f"unknown preset {preset_id!r}; choose one of: {', '.join(PRESETS)}")
    return run(PRESETS[preset_id].job(**options), on_step)
