"""Dynamic sparse training (SET, RigL) and sparse regularisation by proximal steps.

Dynamic sparse training (seed 000, "The Engineering of Sparsity"): the mask is not fixed; every
``update_every`` steps each layer drops the n smallest-magnitude active weights and regrows n
inactive ones -- at random (SET, Mocanu et al.) or where the dense gradient is largest (RigL,
Evci et al.). Pruning exactly as many as are regrown is the constant-density relation: the kept
count of every layer, hence the density, is the same after every update. The update fraction
decays with the cosine schedule zeta_t = zeta / 2 * (1 + cos(pi * t / T_end)) for t < T_end and
0 afterwards; n = floor(zeta_t * kept). Regrown weights start at 0 (RigL's choice; their
optimiser state is 0 because they were masked), dropped weights become exactly 0 with zeroed
optimiser state.

Proximal operators (seed 000, "The Mathematics of Pruning"; seed 004, group lasso):
- L1 / ISTA soft thresholding:   prox_lam(w) = sign(w) * max(|w| - lam, 0)
- IHT hard thresholding:         keep the k largest |w|, zero the rest (best k-term approximation)
- group lasso, block soft thresholding:  w_G <- max(1 - lam / ||w_G||_2, 0) * w_G
After a gradient step with learning rate eta the proximal step uses threshold eta * lam
(ISTA: w <- prox_{eta lam}(w - eta grad)). Groups are lists of (parameter, dim, start, stop)
slices; :func:`output_channel_groups` builds one group per output channel, and any other group
spec (Inception branches, DenseNet connections from core/structure.py) can be passed in.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.data import Dataset
from visualizer.core.masks import MaskSet
from visualizer.core.models import prunable_parameters
from visualizer.core.tasks import Step
from visualizer.core.training import (
    EvalResult,
    LoopHooks,
    MaskProjector,
    TrainConfig,
    evaluate,
    fit,
    prepare_copy,
    total_steps,
)

DST_METHODS = ("set", "rigl")
PROX_METHODS = ("l1", "group-lasso", "iht")


# --- proximal operators --------------------------------------------------------------------------


def soft_threshold(w: torch.Tensor, lam: float) -> torch.Tensor:
    """prox of lam*||w||_1: sign(w) * max(|w| - lam, 0) (ISTA)."""
    if lam < 0:
        raise ValueError(f"threshold must be >= 0, got {lam}")
    return torch.sign(w) * torch.clamp(w.abs() - lam, min=0.0)


def hard_threshold_masks(tensors: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Masks keeping the k entries of largest |w| over all tensors together (IHT's H_k).

    Ties at the threshold are broken by position (first in name order, then index), so exactly
    k entries are kept."""
    flat = torch.cat([t.detach().reshape(-1).abs().float().cpu() for t in tensors.values()]) if tensors else torch.zeros(0)
    d = flat.numel()
    k = max(0, min(int(k), d))
    keep = torch.zeros(d, dtype=torch.bool)
    if k:
        # stable sort on -|w|: equal magnitudes keep their positional order
        order = torch.sort(-flat, stable=True).indices
        keep[order[:k]] = True
    out, start = {}, 0
    for name, t in tensors.items():
        out[name] = keep[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    return out


def hard_threshold(w: torch.Tensor, k: int) -> torch.Tensor:
    """H_k(w): keep the k largest |w_i|, zero the others."""
    return w * hard_threshold_masks({"w": w}, k)["w"].to(w.device, w.dtype)


def block_soft_threshold(w: torch.Tensor, lam: float) -> torch.Tensor:
    """prox of lam*||w_G||_2 on one group: max(1 - lam/||w_G||_2, 0) * w_G (0 when ||w_G|| = 0)."""
    if lam < 0:
        raise ValueError(f"threshold must be >= 0, got {lam}")
    norm = torch.linalg.vector_norm(w)
    if float(norm) == 0.0:
        return torch.zeros_like(w)
    return torch.clamp(1.0 - lam / norm, min=0.0) * w


@dataclass(frozen=True)
class GroupSlice:
    """Entries start:stop along ``dim`` of parameter ``param``."""

    param: str
    dim: int
    start: int
    stop: int


@dataclass(frozen=True)
class Group:
    """A group of weights penalised together by ||w_G||_2 (one channel, branch, connection)."""

    name: str
    slices: tuple[GroupSlice, ...]


def output_channel_groups(model: nn.Module, include_bias: bool = True) -> list[Group]:
    """One group per output channel/unit of each prunable weight (dim 0), with its bias entry."""
    params = dict(model.named_parameters())
    groups = []
    for name, p in prunable_parameters(model).items():
        if p.ndim < 2:
            continue
        bias = name[: -len("weight")] + "bias" if name.endswith("weight") else None
        for c in range(p.shape[0]):
            slices = [GroupSlice(name, 0, c, c + 1)]
            if include_bias and bias in params and params[bias].shape[:1] == p.shape[:1]:
                slices.append(GroupSlice(bias, 0, c, c + 1))
            groups.append(Group(f"{name}[{c}]", tuple(slices)))
    return groups


def _views(params: dict[str, torch.Tensor], group: Group) -> list[torch.Tensor]:
    return [params[s.param].narrow(s.dim, s.start, s.stop - s.start) for s in group.slices]


def check_groups(model: nn.Module, groups: Sequence[Group]) -> None:
    params = dict(model.named_parameters())
    for g in groups:
        for s in g.slices:
            if s.param not in params:
                raise ValueError(f"group {g.name}: no parameter {s.param!r}")
            p = params[s.param]
            if not (0 <= s.dim < p.ndim and 0 <= s.start < s.stop <= p.shape[s.dim]):
                raise ValueError(f"group {g.name}: slice {s.dim}:{s.start}:{s.stop} outside {s.param} {tuple(p.shape)}")


def group_norm(params: dict[str, torch.Tensor], group: Group) -> float:
    """||w_G||_2 over all slices of the group."""
    return math.sqrt(sum(float(v.detach().pow(2).sum()) for v in _views(params, group)))


@torch.no_grad()
def apply_block_soft_threshold(params: dict[str, torch.Tensor], groups: Sequence[Group], lam: float) -> int:
    """In place, for every group: w_G <- max(1 - lam/||w_G||_2, 0) w_G. Returns groups now zero.

    Overlapping groups are processed in order (a sequential approximation of the joint prox)."""
    zeroed = 0
    for g in groups:
        views = _views(params, g)
        norm = math.sqrt(sum(float(v.pow(2).sum()) for v in views))
        scale = max(1.0 - lam / norm, 0.0) if norm > 0 else 0.0
        for v in views:
            v.mul_(scale)
        zeroed += scale == 0.0
    return zeroed


# --- dynamic sparse training ----------------------------------------------------------------------


def update_fraction(t: int, zeta: float, t_end: int) -> float:
    """zeta_t = zeta/2 * (1 + cos(pi t / T_end)) for t < T_end, else 0 (cosine decay)."""
    if t_end <= 0 or t >= t_end:
        return 0.0
    return zeta / 2.0 * (1.0 + math.cos(math.pi * t / t_end))


def random_masks(params: dict[str, torch.Tensor], density: float, generator: torch.Generator) -> MaskSet:
    """Per layer exactly floor(density * n) kept weights chosen uniformly at random."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    masks = {}
    for name, p in params.items():
        n = p.numel()
        k = int(math.floor(density * n + 1e-9))
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=generator)[:k]] = True
        masks[name] = flat.reshape(p.shape)
    return MaskSet(masks, {"criterion": "random", "density": f"{density:g}", "scope": "layer"})


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
    The kept count is unchanged. Returns the new bool mask (CPU)."""
    mask = mask.detach().bool().cpu().reshape(-1)
    active = mask.nonzero().squeeze(1)
    inactive = (~mask).nonzero().squeeze(1)
    n = int(min(n, active.numel(), inactive.numel()))
    if n <= 0:
        return mask.reshape(weight.shape).clone()
    w = weight.detach().abs().float().cpu().reshape(-1)
    drop = active[torch.sort(w[active], stable=True).indices[:n]]
    if method == "set":
        grow = inactive[torch.randperm(inactive.numel(), generator=generator)[:n]]
    elif method == "rigl":
        if grad is None:
            raise ValueError("RigL needs the dense gradient")
        gabs = grad.detach().abs().float().cpu().reshape(-1)
        grow = inactive[torch.sort(-gabs[inactive], stable=True).indices[:n]]
    else:
        raise ValueError(f"unknown DST method {method!r} (use {', '.join(DST_METHODS)})")
    new = mask.clone()
    new[drop] = False
    new[grow] = True
    return new.reshape(weight.shape)


@dataclass(frozen=True)
class DSTConfig:
    method: str = "set"
    density: float = 0.1
    zeta: float = 0.3  # initial update fraction
    update_every: int = 20  # Delta T, optimiser steps between mask updates
    end_fraction: float = 0.75  # T_end = end_fraction * total steps
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.method not in DST_METHODS:
            raise ValueError(f"unknown DST method {self.method!r} (use {', '.join(DST_METHODS)})")
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {self.density}")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")
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
    with ``masks`` (default: a random per-layer mask at ``config.density``). The caller's model is
    never changed; the result holds the trained copy and its final mask."""
    config = config or DSTConfig()
    config.validate()
    tc = config.train
    work = prepare_copy(model, tc, start_state)
    params = prunable_parameters(work)
    generator = torch.Generator().manual_seed(int(tc.seed) + 7919)
    if masks is None:
        masks = random_masks(params, config.density, generator)
    masks.check(work)
    projector = MaskProjector(work, masks)
    current = {n: m.clone() for n, m in masks.masks.items()}
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
    final = projector.mask_set({"criterion": config.method, "density": f"{config.density:g}", "scope": "layer"})
    test = evaluate(work, data)
    yield Step(f"{config.method}: accuracy {test.accuracy:.3f}", 1.0, {"final": True, "accuracy": test.accuracy, "density": final.density()})
    return DSTResult(work, final, history, updates, test, steps)


def _density(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


# --- proximal training ----------------------------------------------------------------------------


def _prox_default_train() -> TrainConfig:
    # plain SGD: then each step is exactly ISTA's w <- prox_{eta lam}(w - eta grad)
    return TrainConfig(optimizer="sgd", momentum=0.0, lr=0.05)


@dataclass(frozen=True)
class ProxConfig:
    """method: l1 (soft thresholding), group-lasso (block soft thresholding over ``groups``,
    default one group per output channel) or iht (keep the top floor(density * d) weights).
    lam is the penalty weight; the threshold applied after each step is lr * lam."""

    method: str = "l1"
    lam: float = 1e-3
    density: float = 0.1
    groups: tuple[Group, ...] | None = None
    train: TrainConfig = field(default_factory=_prox_default_train)

    def validate(self) -> None:
        if self.method not in PROX_METHODS:
            raise ValueError(f"unknown proximal method {self.method!r} (use {', '.join(PROX_METHODS)})")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {self.density}")
        self.train.validate()


@dataclass
class ProxResult:
    model: nn.Module
    masks: MaskSet  # kept = the prunable weights that are not exactly zero at the end
    history: list[dict]
    test: EvalResult
    steps: int
    zero_groups: int  # group lasso: groups that are exactly zero at the end
    groups: int


def proximal_training(
    model: nn.Module,
    data: Dataset,
    config: ProxConfig | None = None,
    start_state: dict[str, torch.Tensor] | None = None,
) -> Generator[Step, None, ProxResult]:
    """Train a copy of ``model`` with a proximal step after every gradient step (ISTA for L1,
    block soft thresholding for group lasso, hard thresholding for IHT). Acts on the prunable
    weights (and, for group lasso, whatever the groups name). The caller's model is unchanged."""
    config = config or ProxConfig()
    config.validate()
    tc = config.train
    work = prepare_copy(model, tc, start_state)
    prunable = prunable_parameters(work)
    all_params = dict(work.named_parameters())
    groups = list(config.groups) if config.groups is not None else output_channel_groups(work)
    if config.method == "group-lasso":
        check_groups(work, groups)
    total = sum(p.numel() for p in prunable.values())
    k = int(math.floor(config.density * total + 1e-9))
    threshold = tc.lr * config.lam
    zero_groups = [0]

    @torch.no_grad()
    def after_step(step: int, m: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if config.method == "l1":
            for p in prunable.values():
                p.copy_(soft_threshold(p, threshold))
        elif config.method == "group-lasso":
            zero_groups[0] = apply_block_soft_threshold(all_params, groups, threshold)
        else:
            keep = hard_threshold_masks(prunable, k)
            for name, p in prunable.items():
                p.mul_(keep[name].to(p.device, p.dtype))

    def zeros() -> dict:
        nz = sum(int((p != 0).sum()) for p in prunable.values())
        return {"density": nz / total if total else 0.0}

    history, steps, _ = yield from fit(
        work, data, tc, None, hooks=LoopHooks(after_step=after_step), stage=config.method, extra=zeros
    )
    masks = MaskSet.from_model_zeros(work)
    masks.metadata.update({"criterion": config.method, "lambda": f"{config.lam:g}"})
    test = evaluate(work, data)
    yield Step(f"{config.method}: accuracy {test.accuracy:.3f}", 1.0, {"final": True, "accuracy": test.accuracy, "density": masks.density()})
    return ProxResult(work, masks, history, test, steps, zero_groups[0], len(groups))
