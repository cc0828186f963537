"""Dynamic sparse training: SET and RigL, with uniform or Erdős–Rényi-Kernel layer densities.

Dynamic sparse training (Mocanu et al. 2018; Evci et al. 2020): the mask is not fixed; every
``update_every`` steps each layer drops the n smallest-magnitude active weights and regrows n
inactive ones -- at random (SET, Mocanu et al.) or where the dense gradient is largest (RigL,
Evci et al.). Pruning exactly as many as are regrown is the constant-density relation: the kept
count of every layer, hence the density, is the same after every update. The update fraction
decays with the cosine schedule zeta_t = zeta / 2 * (1 + cos(pi * t / T_end)) for t < T_end and
0 afterwards; n = floor(zeta_t * kept). Regrown weights start at 0 (RigL's choice; their
optimiser state is 0 because they were masked), dropped weights become exactly 0 with zeroed
optimiser state.

The starting mask is random with a per-layer density given by a *distribution*: ``uniform`` (every
layer at D) or ``erk``, Erdős–Rényi-Kernel (Evci et al. 2020, RigL's default; the Erdős–Rényi form
is SET's): d_l = min(1, eps * sum(shape_l) / prod(shape_l)), eps chosen so that
sum_l d_l n_l = D * sum_l n_l. Small layers (a 3x3 conv on one input channel) stay dense or nearly
so; at 20% uniform density LeNet's first conv keeps ~2 of each filter's 9 weights and a network
trained from its initialisation does not leave chance accuracy in 5 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.data.sources import Dataset
from visualizer.core.pruning.allocation import (
    erk_densities as erk_densities,  # re-exported: DST starts from it
)
from visualizer.core.pruning.allocation import layer_budgets
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import check_density, first_k, kept_count
from visualizer.core.tasks import Step
from visualizer.core.training.evaluate import EvalResult, evaluate
from visualizer.core.training.loop import (
    LoopHooks,
    MaskProjector,
    TrainConfig,
    config_evaluation_batches,
    fit,
    prepare_copy,
    total_steps,
)

DST_METHODS = ("set", "rigl")
DISTRIBUTIONS = ("erk", "uniform")


# --- dynamic sparse training ----------------------------------------------------------------------


def update_fraction(t: int, zeta: float, t_end: int) -> float:
    """zeta_t = zeta/2 * (1 + cos(pi t / T_end)) for t < T_end, else 0 (cosine decay)."""
    if t_end <= 0 or t >= t_end:
        return 0.0
    return zeta / 2.0 * (1.0 + math.cos(math.pi * t / t_end))


def kept_counts(params: dict[str, torch.Tensor], density: float, distribution: str = "uniform") -> dict[str, int]:
    """Weights kept per layer. ``uniform``: floor(D * n_l) in every layer (up to one weight of
    rounding per layer). ``erk``: the ERK densities, floored, then the remaining weights of
    round(D * N) handed to the layers with the largest fractional parts, so the total is exact."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown layer distribution {distribution!r} (use {', '.join(DISTRIBUTIONS)})")
    density = check_density(density)
    sizes = {n: p.numel() for n, p in params.items()}
    if distribution == "uniform":
        return {n: kept_count(density, k) for n, k in sizes.items()}
    return layer_budgets("erk", density, {n: tuple(p.shape) for n, p in params.items()})


def random_masks(
    params: dict[str, torch.Tensor], density: float, generator: torch.Generator, distribution: str = "uniform"
) -> MaskSet:
    """A random mask: in each layer exactly :func:`kept_counts` weights chosen uniformly at random."""
    counts = kept_counts(params, density, distribution)
    masks = {}
    for name, p in params.items():
        n = p.numel()
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=generator)[: counts[name]]] = True
        masks[name] = flat.reshape(p.shape)
    return MaskSet(masks, {"criterion": "random", "density": f"{density:g}", "scope": "layer",
                           "distribution": distribution})


def drop_and_grow(
    weight: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    method: str,
    grad: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One layer's DST update: drop the n active weights of smallest |w|, regrow n of the weights
    that were inactive before this update (SET: uniformly at random; RigL: largest |grad|).
    Ties go by position. The kept count is unchanged. Returns the new bool mask on the weight's
    device (the selection runs there: :func:`first_k`; SET's permutation is drawn from the CPU
    ``generator`` so a seed gives the same mask on every device)."""
    dev = weight.device
    flat = mask.detach().to(dev, torch.bool).reshape(-1)
    active_n = int(flat.sum())
    n = int(min(n, active_n, flat.numel() - active_n))
    if n <= 0:
        return flat.reshape(weight.shape).clone()
    inf = torch.tensor(float("inf"), device=dev)
    w = weight.detach().abs().float().reshape(-1)
    drop = first_k(torch.where(flat, w, inf), n, largest=False)
    if method == "set":
        inactive = (~flat).nonzero().squeeze(1)
        pick = torch.randperm(inactive.numel(), generator=generator)[:n].to(dev)
        grow = torch.zeros_like(flat)
        grow[inactive[pick]] = True
    elif method == "rigl":
        if grad is None:
            raise ValueError("RigL needs the dense gradient")
        g = grad.detach().abs().float().to(dev).reshape(-1)
        grow = first_k(torch.where(flat, -inf, g), n, largest=True)
    else:
        raise ValueError(f"unknown DST method {method!r} (use {', '.join(DST_METHODS)})")
    return ((flat & ~drop) | grow).reshape(weight.shape)


@dataclass(frozen=True)
class DSTConfig:
    method: str = "set"
    density: float = 0.1
    zeta: float = 0.3  # initial update fraction
    update_every: int = 20  # Delta T, optimiser steps between mask updates
    end_fraction: float = 0.75  # T_end = end_fraction * total steps
    train: TrainConfig = field(default_factory=TrainConfig)
    distribution: str = "erk"  # per-layer densities of the starting mask: "erk" | "uniform"

    def validate(self) -> None:
        if self.method not in DST_METHODS:
            raise ValueError(f"unknown DST method {self.method!r} (use {', '.join(DST_METHODS)})")
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {self.density}")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown layer distribution {self.distribution!r} (use {', '.join(DISTRIBUTIONS)})")
        if self.update_every < 1:
            raise ValueError("update_every must be >= 1")
        self.train.validate()


@dataclass
class DSTResult:
    model: nn.Module
    masks: MaskSet
    history: list[dict]
    updates: list[dict]  # one per mask update: step, zeta_t, per-layer moved counts, kept, density
    test: EvalResult
    steps: int


def dynamic_sparse_training(
    model: nn.Module,
    data: Dataset,
    config: DSTConfig | None = None,
    start_state: dict[str, torch.Tensor] | None = None,
    masks: MaskSet | None = None,
) -> Generator[Step, None, DSTResult]:
    """SET or RigL on a copy of ``model`` starting from ``start_state`` (e.g. the initialisation)
    with ``masks`` (default: a random mask at ``config.density``, layers at the densities of
    ``config.distribution``). The caller's model is
    never changed; the result holds the trained copy and its final mask."""
    config = config or DSTConfig()
    config.validate()
    tc = config.train
    work = prepare_copy(model, tc, start_state)
    params = prunable_parameters(work)
    generator = torch.Generator().manual_seed(int(tc.seed) + 7919)
    if masks is None:
        masks = random_masks(params, config.density, generator, config.distribution)
    masks.check(work)
    projector = MaskProjector(work, masks)
    # the running masks live on the model's device: drop_and_grow selects there
    current = {n: m.to(params[n].device, torch.bool).clone() for n, m in masks.masks.items()}
    n_total = total_steps(data, tc)
    t_end = int(config.end_fraction * n_total)
    dense_grads: dict[str, torch.Tensor] = {}
    updates: list[dict] = []

    def is_update(step: int) -> bool:
        return (step + 1) % config.update_every == 0 and (step + 1) < t_end

    def on_dense_grads(step: int, m: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if config.method == "rigl" and is_update(step):
            for name, p in params.items():
                if p.grad is not None:
                    dense_grads[name] = p.grad.detach().clone()

    def after_step(step: int, m: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not is_update(step):
            return
        zeta_t = update_fraction(step + 1, config.zeta, t_end)
        moved = {}
        for name, p in params.items():
            kept = int(current[name].sum())
            n = int(math.floor(zeta_t * kept))
            new = drop_and_grow(p, current[name], n, config.method, dense_grads.get(name), generator)
            moved[name] = int((new & ~current[name]).sum())
            current[name] = new
            projector.set_mask(name, new)
        dense_grads.clear()
        projector.project_weights()  # dropped weights -> exactly 0; grown ones are 0 already
        projector.project_state(optimizer)
        kept = {n: int(v.sum()) for n, v in current.items()}
        total = sum(v.numel() for v in current.values())
        updates.append({"step": step + 1, "zeta": zeta_t, "moved": moved, "kept": kept, "density": sum(kept.values()) / total if total else 0.0})

    hooks = LoopHooks(on_dense_grads=on_dense_grads, after_step=after_step)
    history, steps, _ = yield from fit(
        work, data, tc, projector, hooks=hooks, stage=config.method,
        extra=lambda: {"density": _density(current)},
    )
    final = projector.mask_set({"criterion": config.method, "density": f"{config.density:g}", "scope": "layer",
                                "distribution": masks.metadata.get("distribution", "given")})
    test = evaluate(work, config_evaluation_batches(data, tc))
    yield Step(f"{config.method}: accuracy {test.accuracy:.3f}", 1.0, {"final": True, "accuracy": test.accuracy, "density": final.density()})
    return DSTResult(work, final, history, updates, test, steps)


def _density(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 0.0
