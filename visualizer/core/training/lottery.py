"""The Lottery Ticket Hypothesis: iterative magnitude pruning with rewinding, its controls,
one-shot pruning + fine-tuning, and pruning at initialisation.

IMP (Frankle & Carbin 2019; docs/theory.md §9, "Lottery tickets and iterative magnitude
pruning"): start from the initialisation w_0, train, then for rounds r = 1..S prune a
fraction alpha of the weights that remain (smallest |w| of the trained weights, global or per
layer), rewind the survivors to w_tau and train again. The density after S rounds is

    rho_S = (1 - alpha)^S                                          (docs/theory.md §9)

and here round r keeps exactly k_r = floor((1 - alpha)^r * d) weights (per layer with the layer
scope, over all prunable weights with the global scope), so the achieved density is (1-alpha)^S up
to one weight of rounding per layer (per model for the global scope); the closed form is used
rather than repeated flooring so that rounding never accumulates over rounds.

Rewinding: tau = 0 rewinds to the original initialisation (bundled models ship it as
``sample_models/NAME.init.safetensors``); tau > 0 (late rewinding, Frankle et al. 2020)
keeps the weights after tau optimiser steps of the dense run. The ticket of round r starts from
exactly m_r ⊙ w_tau (all other tensors -- biases, norms, buffers -- from w_tau).

Controls (Frankle & Carbin 2019: "re-initializing the winning ticket's structure with new random weights
typically fails"): ``reinit`` trains the same mask from a fresh random initialisation;
``random-mask`` trains a random mask with the same kept count per layer from w_tau.
Every training here runs on copies (see visualizer.core.training.loop), so a cancelled job leaves the
caller's model and masks untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from visualizer.core.data.sources import Dataset
from visualizer.core.layers import output_dims
from visualizer.core.models.loaders import load_state_dict
from visualizer.core.pruning.allocation import (
    OWL_LAMBDA,
    OWL_M,
    budget,
    cap_budgets,
    check_allocation,
    layer_budgets,
    mask_from_budgets,
    outlier_ratios_job,
)
from visualizer.core.pruning.criteria import magnitude_scores
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import mask_from_scores
from visualizer.core.resources import sample_models_dir
from visualizer.core.tasks import Step, sub
from visualizer.core.training.loop import TrainConfig, TrainResult, reinitialize, total_steps, train
from visualizer.core.workspace import Workspace, criterion_batches

CONTROLS = ("reinit", "random-mask")
CONTROL_ALIASES = {"random": "random-mask", "re-init": "reinit"}
SCOPES = ("global", "layer")


def imp_density(rate: float, rounds: int) -> float:
    """rho_S = (1 - alpha)^S (docs/theory.md §9)."""
    return (1.0 - rate) ** rounds


def prune_remaining(
    weights: dict[str, torch.Tensor], masks: MaskSet, density: float, scope: str = "global",
    allocation: str = "", inputs: dict | None = None,
) -> MaskSet:
    """Magnitude-prune among the weights still kept by ``masks`` down to ``density`` of the total.

    Scores are |w| on kept weights and -1 on pruned ones, so a pruned weight is never revived
    (k_r <= k_{r-1}); the mask comes from the shared ranking (exactly floor(rho * d) kept,
    deterministic ties). With an ``allocation`` (:mod:`visualizer.core.pruning.allocation`;
    ``inputs`` its inputs) each layer keeps its budget k_l, capped at what it still keeps
    (:func:`~visualizer.core.pruning.allocation.cap_budgets`)."""
    magnitude = magnitude_scores({name: weights[name] for name in masks.masks})
    scores = {name: torch.where(m, magnitude[name], torch.full_like(magnitude[name], -1.0))
              for name, m in masks.masks.items()}
    if allocation and allocation not in SCOPES:
        shapes = {n: tuple(m.shape) for n, m in masks.masks.items()}
        kept = layer_budgets(allocation, density, shapes, scores=scores, **(inputs or {}))
        kept = cap_budgets(kept, {n: int(m.sum()) for n, m in masks.masks.items()},
                           budget(density, {n: m.numel() for n, m in masks.masks.items()}))
        out = mask_from_budgets(scores, kept)
        scope = allocation
    else:
        out = mask_from_scores(scores, density, scope=allocation or scope)
        scope = allocation or scope
    out.metadata.update({"criterion": "magnitude", "density": f"{density:g}", "scope": scope})
    return out


def rewind_state(w_tau: dict[str, torch.Tensor], masks: MaskSet) -> dict[str, torch.Tensor]:
    """The rewound ticket: m ⊙ w_tau for masked parameters, w_tau for everything else."""
    state = {k: v.detach().clone() for k, v in w_tau.items()}
    for name, m in masks.masks.items():
        state[name] = state[name] * m.to(state[name].device, state[name].dtype)
    return state


def random_mask_like(masks: MaskSet, seed: int) -> MaskSet:
    """A uniformly random mask with the same kept count in every layer as ``masks``."""
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, m in masks.masks.items():
        n, k = m.numel(), int(m.sum())
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=g)[:k]] = True
        out[name] = flat.reshape(m.shape)
    return MaskSet(out, {"criterion": "random", "density": f"{masks.density():g}", "scope": "layer"})


@dataclass(frozen=True)
class IMPConfig:
    rounds: int = 5
    rate: float = 0.2  # alpha: fraction of the remaining weights pruned per round
    rewind: int = 0  # tau in optimiser steps; 0 = the original initialisation
    scope: str = "global"
    controls: tuple[str, ...] = ()
    train: TrainConfig = field(default_factory=TrainConfig)
    # how each round's density is spread over the layers (core.pruning.allocation; "": the scope)
    allocation: str = ""
    curves: dict | None = None  # the sensitivity allocation's measured loss curves {layer: {level: increase}}
    owl_lambda: float | None = None
    owl_m: float | None = None

    def __post_init__(self) -> None:
        # accept the short spellings ("random") the GUI presets use
        object.__setattr__(self, "controls", tuple(CONTROL_ALIASES.get(c, c) for c in self.controls))

    def validate(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {self.rate}")
        if self.rewind < 0:
            raise ValueError(f"rewind iteration must be >= 0, got {self.rewind}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r} (use {', '.join(SCOPES)})")
        for c in self.controls:
            if c not in CONTROLS:
                raise ValueError(f"unknown control {c!r} (use {', '.join(CONTROLS)})")
        if self.allocation:
            check_allocation(self.allocation)
            if self.allocation == "sensitivity" and not self.curves:
                raise ValueError("the sensitivity allocation needs measured loss curves (pruneviz sensitivity)")
        self.train.validate()


@dataclass
class IMPResult:
    """rows: one per round (round 0 = dense), {round, density, target_density, kept, total,
    accuracy, loss, [<control>_accuracy, <control>_loss]}. masks[r]: the mask of round r
    (masks[0] dense). tickets[r]: the exact starting weights of round r's training (m_r ⊙ w_tau).
    w_tau: the rewind point; final: the last round's training result."""

    rows: list[dict]
    masks: list[MaskSet]
    tickets: list[dict[str, torch.Tensor]]
    w_tau: dict[str, torch.Tensor]
    final: TrainResult

    def curve_rows(self) -> list[dict]:
        """Long format for plotting: one row per (kind, round) with kind ticket / reinit /
        random-mask, and density, accuracy, loss (criterion magnitude, retrain rewind)."""
        out = []
        for r in self.rows:
            for kind, prefix in (("ticket", ""), ("reinit", "reinit_"), ("random-mask", "random-mask_")):
                if f"{prefix}accuracy" in r:
                    out.append({"criterion": "magnitude", "retrain": "rewind", "kind": kind, "round": r["round"],
                                "density": r["density"], "accuracy": r[f"{prefix}accuracy"], "loss": r[f"{prefix}loss"]})
        return out


def _row(r: int, masks: MaskSet, target: float, res: TrainResult) -> dict:
    return {
        "round": r,
        "density": masks.density(),
        "target_density": target,
        "kept": masks.kept(),
        "total": masks.total(),
        "accuracy": res.test.accuracy,
        "loss": res.test.loss,
    }


def iterative_magnitude_pruning(
    model: nn.Module,
    data: Dataset,
    init_state: dict[str, torch.Tensor],
    config: IMPConfig | None = None,
) -> Generator[Step, None, IMPResult]:
    """IMP with rewinding: train -> prune alpha of the remainder -> rewind to m ⊙ w_tau -> train.

    ``model`` supplies the architecture (its weights are not used or changed); ``init_state`` is
    w_0. Yields each finished round as ``Step.partial`` (round 0 = the dense network trained from
    w_0 with the same settings)."""
    config = config or IMPConfig()
    config.validate()
    tc = config.train
    n_steps = total_steps(data, tc)
    if config.rewind > n_steps:
        raise ValueError(f"rewind iteration {config.rewind} is beyond the {n_steps} training steps")
    trainings = (1 + len(config.controls)) * config.rounds + 1
    done = 0

    def span() -> tuple[float, float]:
        return done / trainings, (done + 1) / trainings

    dense_masks = MaskSet.for_model(model)
    res = yield from sub(
        train(model, data, None, tc, start_state=init_state, capture_steps=[0, config.rewind], stage="dense"),
        *span(), prefix="round 0: ",
    )
    done += 1
    w_tau = res.snapshots[config.rewind]
    row = _row(0, dense_masks, 1.0, res)
    for c in config.controls:
        row[f"{c}_accuracy"], row[f"{c}_loss"] = res.test.accuracy, res.test.loss
    rows, all_masks, tickets = [row], [dense_masks], [res.snapshots[0]]
    yield Step("round 0 (dense)", done / trainings, dict(row))
    masks = dense_masks
    for r in range(1, config.rounds + 1):
        target = imp_density(config.rate, r)
        inputs = yield from _allocation_inputs(config, res.model, masks, data)
        masks = prune_remaining(prunable_parameters(res.model), masks, target, config.scope, config.allocation, inputs)
        ticket = rewind_state(w_tau, masks)
        res = yield from sub(
            train(model, data, masks, tc, start_state=ticket, capture_steps=[0], stage=f"ticket {r}"),
            *span(), prefix=f"round {r}: ",
        )
        done += 1
        row = _row(r, masks, target, res)
        for c in config.controls:
            control_masks = masks if c == "reinit" else random_mask_like(masks, tc.seed + 1000 + r)
            start = reinitialize(model, tc.seed + 1000 + r) if c == "reinit" else w_tau
            cres = yield from sub(
                train(model, data, control_masks, tc, start_state=rewind_state(start, control_masks), stage=c),
                *span(), prefix=f"round {r} {c}: ",
            )
            done += 1
            row[f"{c}_accuracy"], row[f"{c}_loss"] = cres.test.accuracy, cres.test.loss
        rows.append(row)
        all_masks.append(masks)
        tickets.append(res.snapshots[0])
        yield Step(f"round {r}: density {row['density']:.3f}", done / trainings, dict(row))
    return IMPResult(rows, all_masks, tickets, w_tau, res)


def _allocation_inputs(config: IMPConfig, model: nn.Module, masks: MaskSet, data) -> Generator[Step, None, dict]:
    """The inputs of the round's allocation: OWL's outlier ratios of the masked trained weights
    on the criterion batches (the workspace's rule), the sensitivity curves as given."""
    if config.allocation == "sensitivity":
        return {"curves": config.curves}
    if config.allocation != "owl":
        return {}
    masked = copy.deepcopy(model)
    masks.apply(masked)
    batches = criterion_batches(data, seed=config.train.seed)
    m = OWL_M if config.owl_m is None else config.owl_m
    ratios = yield from sub(outlier_ratios_job(masked, batches, m), 0.0, 0.0, "outlier ratios: ")
    return {"outlier_ratios": ratios, "owl_lambda": OWL_LAMBDA if config.owl_lambda is None else config.owl_lambda}


# --- one-shot and at-initialisation pruning --------------------------------------------------------


RETRAIN_MODES = ("none", "finetune", "rewind", "init")


def retrain_job(
    model: nn.Module,
    data: Dataset,
    masks: MaskSet,
    retrain: str,
    config: TrainConfig | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> Generator[Step, None, TrainResult]:
    """The retraining modes of a pruned network, one implementation for the sweeps, the CLI and
    the window: ``finetune`` trains the kept weights from their trained values (projected
    gradient); ``rewind`` and ``init`` train m ⊙ w_0 from the initialisation ``init_state``
    (one-shot lottery ticket, Frankle & Carbin 2019; pruning at initialisation, Lee et al. 2019:
    the difference is only which weights were scored)."""
    if retrain not in RETRAIN_MODES[1:]:
        raise ValueError(f"unknown retrain mode {retrain!r} (use {', '.join(RETRAIN_MODES[1:])})")
    if retrain == "finetune":
        return (yield from train(model, data, masks, config, stage="fine-tune"))
    if init_state is None:
        raise ValueError(f"retrain {retrain!r} needs the initialisation (init_state)")
    return (yield from train(model, data, masks, config, start_state=rewind_state(init_state, masks), stage=retrain))


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)  # on the model's device: scoring at init runs where training does
    clone.load_state_dict(state)
    return clone


def oneshot_job(
    model: nn.Module,
    data: Dataset,
    density: float,
    criterion: str,
    retrain: str,
    scope: str = "global",
    config: TrainConfig | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
    structure: str = "unstructured",
) -> Generator[Step, None, tuple[MaskSet, TrainResult]]:
    """Prune once to ``density`` by ``criterion`` and retrain with :func:`retrain_job`. The
    criterion scores the trained ``model`` (its batches and seed from a
    :class:`~visualizer.core.workspace.Workspace` with ``config.seed``), or w_0 itself when
    ``retrain`` is ``init``."""
    config = config or TrainConfig()
    if retrain == "init" and init_state is None:
        raise ValueError("retrain 'init' needs the initialisation (init_state)")
    scored = _load(model, init_state) if retrain == "init" else model
    workspace = Workspace(model, data, seed=config.seed)
    scores = yield from sub(workspace.scores(criterion, scored), 0.0, 0.1, "scores: ")
    masks = mask_from_scores(scores, density, scope=scope, structure=structure, criterion=criterion,
                             channel_dims=output_dims(model))
    res = yield from sub(retrain_job(model, data, masks, retrain, config, init_state), 0.1, 1.0)
    return masks, res


def oneshot_finetune(
    model: nn.Module,
    data: Dataset,
    density: float,
    criterion: str = "magnitude",
    scope: str = "global",
    config: TrainConfig | None = None,
) -> Generator[Step, None, tuple[MaskSet, TrainResult]]:
    """Prune the trained ``model`` once to ``density`` by ``criterion``, then fine-tune the kept
    weights (projected gradient) from their trained values: :func:`oneshot_job` with
    ``finetune``, what a sweep's ``--retrain finetune`` row computes."""
    return (yield from oneshot_job(model, data, density, criterion, "finetune", scope, config))


def prune_at_init(
    model: nn.Module,
    data: Dataset,
    init_state: dict[str, torch.Tensor],
    density: float,
    criterion: str = "snip",
    scope: str = "global",
    config: TrainConfig | None = None,
) -> Generator[Step, None, tuple[MaskSet, TrainResult]]:
    """Pruning at initialisation (SNIP, Lee et al. 2019; GraSP, Wang et al. 2020; random, ...):
    score w_0, keep the top floor(rho d), train m ⊙ w_0 with the mask fixed: :func:`oneshot_job`
    with ``init``, what a sweep's ``--retrain init`` row computes."""
    return (yield from oneshot_job(model, data, density, criterion, "init", scope, config, init_state))


def initial_state(model_ref: str, model: nn.Module, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """w_0 for a model: a bundled model's shipped initialisation, else a fresh seeded one.
    Returns (state, where it came from)."""
    path = sample_models_dir() / f"{model_ref}.init.safetensors"
    if path.exists():
        state = load_state_dict(path)
        own = model.state_dict()
        if set(state) == set(own) and all(tuple(state[k].shape) == tuple(own[k].shape) for k in own):
            return state, path.name
    return reinitialize(model, seed), f"fresh initialisation (seed {seed})"


@dataclass
class RewindRun:
    """A training run from w_0 with the weights kept at the rewind points."""

    snapshots: dict[int, dict[str, torch.Tensor]]  # tau -> w_tau (tau = optimiser steps)
    model: nn.Module  # the weights after max(taus) steps
    source: str  # where w_0 came from


def rewind_points(
    model: nn.Module, model_ref: str, data: Dataset, taus: list[int] | tuple[int, ...],
    config: TrainConfig | None = None, seed: int = 0,
) -> Generator[Step, None, RewindRun]:
    """Train a copy from the model's initialisation w_0 (:func:`initial_state`) for max(taus)
    steps and keep w_tau at every tau: the points late rewinding returns to (Frankle et al. 2020). The
    caller's model is unchanged."""
    taus = sorted({int(t) for t in taus})
    if not taus or taus[0] < 0:
        raise ValueError(f"rewind points must be steps >= 0, got {list(taus)}")
    init, source = initial_state(model_ref, model, seed)
    if max(taus) == 0:
        return RewindRun({0: init}, model, source)
    base = config or TrainConfig()
    # enough epochs that max_steps, not the epoch count, ends the run
    config = replace(base, epochs=max(base.epochs, 1000), max_steps=max(taus), evaluate_each_epoch=False, seed=seed)
    res = yield from train(model, data, None, config, start_state=init, capture_steps=taus)
    return RewindRun({t: res.snapshots[t] for t in taus}, res.model, source)
