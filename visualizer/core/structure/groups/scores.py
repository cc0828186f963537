"""Scores of the units of coupled groups (group-l1, group-l2, group-bn, summed elementwise scores)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from visualizer.core.structure.graph import attribute_at
from visualizer.core.structure.group_criteria import GROUP_CRITERIA, group_criterion
from visualizer.core.structure.groups.model import ChannelGroup, Member


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    return attribute_at(model, name)


@torch.no_grad()
def group_scores(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    criterion: str = "group-l2",
    scores: dict[str, torch.Tensor] | None = None,
) -> dict[int, torch.Tensor]:
    """Score of every unit of every coupled group (higher = more important = kept); the group
    criteria of :mod:`visualizer.core.structure.group_criteria`, not the per-channel mask
    criteria of core.pruning.criteria (old spellings l2-norm, l1-norm, bn-scale accepted):

    * ``group-l2`` (the group-lasso norm, Yuan & Lin 2006): ||w_{G_k}||_2 = sqrt(sum over all
      member weight slices of w^2) — weights, biases and norm scales of the unit, never running stats;
    * ``group-l1``: sum of |w| over the same slices;
    * ``group-bn``: mean |gamma| over the unit's batch-norm scales (Network Slimming, Liu et al.
      2017); groups without batch norm fall back to the group L2 norm;
    * ``scores`` given (any elementwise criterion, e.g. Taylor |g*w| from core.criteria): the sum
      of the elementwise scores over the unit's slices of the scored parameters.
    """
    out: dict[int, torch.Tensor] = {}
    mods = dict(model.named_modules())
    for g in groups:
        if scores is not None:
            acc = torch.zeros(g.size, dtype=torch.float64)
            for m in g.members:
                if m.param in scores and not m.buffer:
                    acc += _per_unit(g, m, scores[m.param].detach().cpu().double(), "sum")
            out[g.id] = acc
            continue
        criterion_g = group_criterion(criterion)
        if criterion_g == "group-bn":
            bn = [m for m in g.members if m.role == "norm" and m.param.endswith(".weight")
                  and isinstance(mods.get(m.param.rpartition(".")[0]), nn.modules.batchnorm._BatchNorm)]
            if bn:
                acc = sum(_per_unit(g, m, _tensor(model, m.param).detach().cpu().double().abs(), "mean") for m in bn)
                out[g.id] = acc / len(bn)
                continue
            criterion_g = "group-l2"
        if criterion_g not in ("group-l1", "group-l2"):
            raise ValueError(f"unknown group criterion {criterion!r}: use {', '.join(GROUP_CRITERIA)} or give scores")
        acc = torch.zeros(g.size, dtype=torch.float64)
        for m in g.members:
            if m.buffer:
                continue
            t = _tensor(model, m.param).detach().cpu().double()
            acc += _per_unit(g, m, t.abs() if criterion_g == "group-l1" else t * t, "sum")
        out[g.id] = acc if criterion_g == "group-l1" else acc.sqrt()
    return out


def _per_unit(group: ChannelGroup, member: Member, t: torch.Tensor, reduce: str) -> torch.Tensor:
    """Sum (or mean) of ``t`` over each unit's slice of a member, vectorised: reduce every index
    along ``member.dim`` over the other dimensions, then add the indices of each unit together."""
    moved = t.movedim(member.dim, 0).reshape(t.shape[member.dim], -1)
    per_index = moved.sum(1) if reduce == "sum" else moved.mean(1)
    idx = torch.tensor(member.indices, dtype=torch.long)
    units = torch.tensor(member.units, dtype=torch.long)
    acc = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units, per_index[idx])
    if reduce == "mean":
        count = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units, torch.ones(len(idx), dtype=torch.float64))
        acc = acc / count.clamp(min=1)
    return acc


def group_sparsity(model: nn.Module, groups: Iterable[ChannelGroup], tol: float = 0.0) -> int:
    """s_grp(w) = sum_k ||w_{G_k}||_2^0 (group sparsity, Wen et al. 2016): the number of units whose group norm > tol."""
    norms = group_scores(model, groups, "group-l2")
    return int(sum(int((n > tol).sum()) for n in norms.values()))
