"""Per-layer curvature: the top Hessian eigenvalue of each layer's (or coupled group's) block.

The whole-model λ_max says how sharp the loss is somewhere; which layers are sharp says where a
cut will hurt. For a unit u (a prunable weight tensor, or a coupled channel group of
:mod:`visualizer.core.structure.groups`) with coordinates S_u, the block is the principal
submatrix H[S_u, S_u] of the Hessian of the mean cross entropy on the evaluation set, at
θ = m ⊙ w, with every other parameter held fixed (docs/theory.md §10). With a mask, S_u is the
unit's kept coordinates only (the restricted landscape of that unit). Its largest eigenvalue

    λ_max(H[S_u, S_u]) = max_{‖v‖ = 1, supp v ⊆ S_u} vᵀ H v

is found by Lanczos (:func:`visualizer.core.curvature.lanczos.lanczos`) on the same
Hessian-vector-product engine as the whole-model spectrum. By Cauchy interlacing it lies between
λ_min(H) and λ_max(H), and the largest block value is a lower bound on the whole model's λ_max.

Units:

- ``"layer"``: each prunable weight tensor alone (the tensors a mask prunes; biases and
  normalisation parameters are held fixed), named by the parameter (``fc1.weight``).
- ``"group"``: each prunable coupled group: every parameter slice removed with its units (the
  producer's rows and bias, the BatchNorm's entries, the consumers' columns), named by the group's
  label (``layer1.conv1 (channels: 16)``, with ``#id`` added where two labels coincide).

A unit with no active coordinate (a layer pruned to density 0) is left out of the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.curvature.lanczos import lanczos
from visualizer.core.curvature.operator import EvalSet, build_coordinates, hessian_operator
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.profile import group_unit_names
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.structure.groups import find_groups_job
from visualizer.core.tasks import Job, Step, sub

UNITS = ("layer", "group")

# group coordinates: (parameter name, flat indices into it)
Block = list[tuple[str, torch.Tensor]]


@dataclass(frozen=True)
class UnitCurvature:
    """λ_max of one unit's Hessian block: ``dim`` active coordinates, ``error`` the Lanczos error
    bound |λ − θ|; ``exact`` when the Krylov space exhausted the block (error 0)."""

    unit: str
    lambda_max: float
    dim: int
    hvps: int
    converged: bool
    exact: bool
    error: float

    def to_json(self) -> dict:
        return {"unit": self.unit, "lambda_max": self.lambda_max, "dim": self.dim, "hvps": self.hvps,
                "converged": self.converged, "exact": self.exact, "error": self.error}


def group_blocks(model: nn.Module, groups: Iterable) -> dict[str, Block]:
    """The coordinates of each prunable coupled group (:class:`~visualizer.core.structure.groups.ChannelGroup`):
    for every member that is a parameter (buffers such as running statistics are not
    differentiated), the flat indices of its slices ``indices`` along ``dim``."""
    params = dict(model.named_parameters())
    blocks: dict[str, Block] = {}
    groups = list(groups)
    names = group_unit_names(groups)  # the density profile's names for the same groups
    for g in groups:
        if not g.prunable:
            continue
        name = names[g.id]
        parts: Block = []
        for m in g.members:
            if m.buffer or m.param not in params:
                continue
            shape = params[m.param].shape
            sel = torch.zeros(shape, dtype=torch.bool)
            sel.index_fill_(m.dim, torch.as_tensor(m.indices, dtype=torch.long), True)
            parts.append((m.param, sel.reshape(-1).nonzero().reshape(-1)))
        if parts:
            blocks[name] = parts
    return blocks


def layer_blocks(model: nn.Module) -> dict[str, None]:
    """One block per prunable weight tensor (the whole tensor; the mask restricts it later)."""
    return {name: None for name in prunable_parameters(model)}


def unit_curvature(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet | None = None,
    *,
    unit: str = "layer",
    groups: Sequence | None = None,
    names: Sequence[str] | None = None,
    max_steps: int = 60,
    tol: float = 1e-3,
    seed: int = 0,
    method: str = "auto",
    dtype: torch.dtype | None = None,
    example: torch.Tensor | None = None,
) -> Job[dict[str, UnitCurvature]]:
    """λ_max of every unit's Hessian block (a job: one Step per Lanczos step, labelled with the
    unit), in the order of the model's prunable tensors or of ``groups``.

    unit: ``"layer"`` or ``"group"``; for ``"group"``, ``groups`` are the coupled groups
    (:func:`visualizer.core.structure.groups.find_groups`; found here when None, traced on
    ``example``: the model's input, or a guess from the model when None).
    names: restrict to these units. mask: restrict each block to the kept coordinates.
    max_steps / tol / seed: Lanczos' (a block of dimension ≤ max_steps is solved exactly).
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of: {', '.join(UNITS)}")
    if max_steps < 1:
        raise ValueError(f"Lanczos needs at least one step, got max_steps={max_steps}")
    if unit == "layer":
        blocks: Mapping[str, Block | None] = layer_blocks(model)
    else:
        if groups is None:
            yield Step("per-group curvature: finding the coupled groups", 0.0)
            groups = (yield from find_groups_job(model, example)).groups
        blocks = group_blocks(model, groups)
        if not blocks:
            raise ValueError("the model has no prunable coupled groups: use unit 'layer'")
    if names is not None:
        unknown = [n for n in names if n not in blocks]
        if unknown:
            raise ValueError(f"no {unit} named {unknown[0]!r}; the {unit}s are: {', '.join(blocks)}")
        blocks = {n: blocks[n] for n in names}
    out: dict[str, UnitCurvature] = {}
    total = len(blocks)
    for i, (name, block) in enumerate(blocks.items()):
        start, end = i / total, (i + 1) / total
        try:
            coords_kw = {"layer": name} if block is None else {"group": block}
            build_coordinates(model, mask, **coords_kw)
        except ValueError:  # no active coordinate in this unit (pruned to density 0)
            yield Step(f"{name}: no kept weights", end)
            continue
        op = hessian_operator(model, evalset, mask, method=method, dtype=dtype, **coords_kw)
        steps = min(max_steps, op.dim)
        res = yield from sub(lanczos(op, 1, 0, max_steps=steps, tol=tol, seed=seed, want_vectors=False),
                             start, end, prefix=f"{name}: ")
        out[name] = UnitCurvature(
            unit=name,
            lambda_max=float(res.top[0]),
            dim=op.dim,
            hvps=res.hvps,
            converged=bool(res.converged),
            exact=bool(res.exhausted),
            error=float(res.top_errors[0]),
        )
        yield Step(f"{name}: λ_max {out[name].lambda_max:.4g}", end, out[name])
    return out


def layer_curvature(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet | None = None,
    **options,
) -> Job[dict[str, float]]:
    """{unit name: λ_max of its Hessian block}: :func:`unit_curvature` without the details
    (same options)."""
    detail = yield from unit_curvature(model, evalset, mask, **options)
    return {name: u.lambda_max for name, u in detail.items()}

