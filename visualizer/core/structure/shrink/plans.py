"""Prune plans: which units of which groups go, which connections are cut, which branches are removed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.pruning.ranking import check_density, kept_count
from visualizer.core.structure.groups import ChannelGroup, branches, connectivity, group_scores


@dataclass
class PrunePlan:
    """Units removed from each group (group id -> sorted unit indices), and connections cut
    (group id, consumer layer): the consumer stops reading that group's channels while other
    consumers keep them (DenseNet connection pruning, docs/theory.md §13)."""

    removed: dict[int, list[int]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    cut: list[tuple[int, str]] = field(default_factory=list)
    # whole Inception branches: (fx torch.cat node, input index); their groups lose every unit
    branches: list[tuple[str, int]] = field(default_factory=list)
    branch_groups: list[int] = field(default_factory=list)

    def units_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def to_json(self) -> dict:
        return {"removed": {str(k): v for k, v in self.removed.items()}, "notices": self.notices,
                "cut": [list(c) for c in self.cut], "branches": [list(b) for b in self.branches]}


def select_units(
    groups: Iterable[ChannelGroup],
    scores: dict[int, torch.Tensor],
    density: float,
    scope: str = "layer",
) -> PrunePlan:
    """Keep the highest-scoring units.

    ``scope='layer'``: every prunable group keeps k = max(1, floor(density * size)) units.
    ``scope='global'``: k = floor(density * N) over all N prunable units are kept by one ranking
    (both floors by :func:`visualizer.core.pruning.ranking.kept_count`, the masks' exact rule)
    of the raw scores (ties broken by lower group id, then unit), each group keeping at least one.
    """
    density = check_density(density)
    groups = [g for g in groups if g.prunable and g.size > 0]
    plan = PrunePlan()
    if scope == "layer":
        for g in groups:
            keep = max(1, kept_count(density, g.size))
            order = sorted(range(g.size), key=lambda u: (-float(scores[g.id][u]), u))
            removed = sorted(order[keep:])
            if removed:
                plan.removed[g.id] = removed
        return plan
    if scope != "global":
        raise ValueError(f"unknown scope {scope!r}: use layer or global")
    units = [(float(scores[g.id][u]), g.id, u) for g in groups for u in range(g.size)]
    k = kept_count(density, len(units))
    ranked = sorted(units, key=lambda t: (-t[0], t[1], t[2]))
    kept = {(gid, u) for _, gid, u in ranked[:k]}
    for g in groups:
        if not any((g.id, u) for u in range(g.size) if (g.id, u) in kept):
            best = max(range(g.size), key=lambda u: (float(scores[g.id][u]), -u))
            kept.add((g.id, best))
            plan.notices.append(f"group {g.id} ({g.root}) keeps one unit: a layer cannot be empty")
        removed = [u for u in range(g.size) if (g.id, u) not in kept]
        if removed:
            plan.removed[g.id] = removed
    return plan


def select_zero_units(groups: Iterable[ChannelGroup], scores: dict[int, torch.Tensor], tol: float = 1e-8) -> PrunePlan:
    """Remove the units whose group norm is <= tol: after group-lasso training (block soft
    thresholding, Yuan & Lin 2006) these are exactly zero, so removing them changes nothing."""
    plan = PrunePlan()
    for g in groups:
        if not g.prunable:
            continue
        zero = [u for u in range(g.size) if float(scores[g.id][u]) <= tol]
        if len(zero) == g.size:
            best = max(range(g.size), key=lambda u: (float(scores[g.id][u]), -u))
            zero.remove(best)
            plan.notices.append(f"group {g.id} ({g.root}) is entirely zero; one unit is kept")
        if zero:
            plan.removed[g.id] = zero
    return plan


def select_zero_connections(connectivity, tol: float = 1e-8, plan: PrunePlan | None = None) -> PrunePlan:
    """Cut every connection whose strength ||W_consumer[:, S_producer]||_2 is <= tol (what group
    lasso on connections leaves at zero; :func:`visualizer.core.structure.groups.connectivity`)."""
    plan = plan if plan is not None else PrunePlan()
    for i, gid in enumerate(connectivity.groups):
        for j, consumer in enumerate(connectivity.consumers):
            v = connectivity.strength[i, j]
            if v == v and v <= tol:  # NaN: no connection
                plan.cut.append((gid, consumer))
    return plan


def remove_branches(groups: Iterable[ChannelGroup], removals, plan: PrunePlan | None = None) -> PrunePlan:
    """Remove whole branches of concatenations: ``removals`` is a list of (ConcatModule, branch
    index) from :func:`visualizer.core.structure.groups.branches`. Every group living only inside the
    branch loses all its units, the concatenation drops that input (the model becomes a
    ``torch.fx.GraphModule``), and the layers reading the concat lose the branch's columns.
    This is what group lasso on branches (Yuan & Lin 2006; docs/theory.md §13) ends in."""
    plan = plan if plan is not None else PrunePlan()
    by_id = {g.id: g for g in groups}
    for module, index in removals:
        if not module.node:
            raise ValueError(f"{module.name}: no fx node recorded; trace the model with fx first")
        b = module.branches[index]
        if not b.layers or not b.groups:
            raise ValueError(f"branch {index} of {module.name} has no layers of its own to remove")
        if sum(1 for other in module.branches if other.layers) - sum(1 for m, _ in removals if m is module) < 1:
            raise ValueError(f"{module.name} would lose all its branches")
        for gid in b.groups:
            g = by_id[gid]
            if not g.prunable:
                raise ValueError(f"branch {index} of {module.name}: group {gid} is not prunable ({g.reason})")
            plan.removed[gid] = list(range(g.size))
            if gid not in plan.branch_groups:
                plan.branch_groups.append(gid)
        plan.branches.append((module.node, index))
    return plan


def zero_plan(model: nn.Module, groups: list[ChannelGroup], example: torch.Tensor | None = None,
              tol: float = 1e-8) -> PrunePlan:
    """Everything group lasso drove to zero (norm <= tol): units of channel groups, DenseNet
    connections (:func:`select_zero_connections`) and whole Inception branches (every weight of
    the branch zero, :func:`remove_branches`). Removing them leaves the output unchanged."""
    plan = select_zero_units(groups, group_scores(model, groups, "group-l2"), tol)
    select_zero_connections(connectivity(model, groups), tol, plan)
    whole = []
    for module in branches(model, groups, example):
        if module.kind != "inception":
            continue
        zero = [i for i, b in enumerate(module.branches) if b.layers and b.groups and b.norm <= tol]
        live = sum(1 for b in module.branches if b.layers) - len(zero)
        for i in zero[: len(zero) - (1 if live < 1 else 0)]:
            whole.append((module, i))
    if whole:
        remove_branches(groups, whole, plan)
        gone_layers = {layer for module, i in whole for layer in module.branches[i].layers}
        plan.cut = [(gid, c) for gid, c in plan.cut if c not in gone_layers]
    # a consumer whose every input connection is zero keeps them (its whole weight is zero)
    reads: dict[str, int] = defaultdict(int)
    for g in groups:
        for m in g.consumers():
            reads[m.param.rpartition(".")[0]] += 1
    cuts_per: dict[str, int] = defaultdict(int)
    for _, c in plan.cut:
        cuts_per[c] += 1
    plan.cut = [(gid, c) for gid, c in plan.cut if cuts_per[c] < reads[c]]
    plan.notices = [n for n in plan.notices if not any(n.startswith(f"group {g} (") for g in plan.branch_groups)]
    return plan


def branch_plan(groups: Iterable[ChannelGroup], branch_groups: Iterable[int]) -> PrunePlan:
    """Prune whole branches (Inception) or connections' producers (DenseNet): every unit but one
    of the given groups (see :func:`visualizer.core.structure.groups.branches` for a branch's groups)."""
    by_id = {g.id: g for g in groups}
    plan = PrunePlan()
    for gid in branch_groups:
        g = by_id[gid]
        if g.prunable and g.size > 1:
            plan.removed[gid] = list(range(1, g.size))
    plan.notices.append("each pruned branch keeps one channel: a layer cannot have zero channels")
    return plan
