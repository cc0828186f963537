"""Structured pruning that physically shrinks a model, and the MaskSet it is equivalent to.

Given the coupled groups of :func:`visualizer.core.structure.groups.find_groups` and a score per unit
(:func:`visualizer.core.structure.groups.group_scores`: channel L1/L2 norm, BN scale, Taylor, or the
group-lasso norm ||w_{G_k}||_2 of Yuan & Lin 2006), a :class:`PrunePlan` lists the units removed from each
group. From one plan come

* :func:`plan_masks` — the MaskSet over the original model's prunable weights (what the app
  shows): every member weight slice of a removed unit is False. Masks are constant over each group
  (docs/theory.md §6: masks constant over each group);
* :func:`shrink` — a new, smaller ``nn.Module``: every member tensor loses the removed indices
  (``index_select`` along the member's dimension), layer attributes follow the new shapes, and
  attention modules that lose heads become :class:`PrunedMultiheadAttention`.

The shrunk model's output equals the masked original's output (eval mode): each removed unit's
consumers read it through weights that the mask zeroes, so what the unit carries (a BN bias, a
constant gate) cannot reach the output — this is why groups that reach a LayerNorm or the output
are not prunable. Tests check allclose(atol=1e-5) on every bundled model.

A group keeps at least one unit (PyTorch cannot run a convolution with zero output channels),
except for whole Inception branches: :func:`remove_branches` deletes the branch's layers and drops
its input from the ``torch.cat`` of the fx graph (the shrunk model is then an fx GraphModule).
DenseNet connections are cut with :func:`select_zero_connections`: the consumer stops reading a
producer's channels (:class:`InputSelect`) while other layers keep them. :func:`zero_plan`
collects everything group lasso drove to zero (units, connections, branches).

Files: :func:`save_shrunk` writes ``torch.save({"format", "spec" (JSON), "state_dict"})`` that
loads with ``weights_only=True``; :func:`load_shrunk` rebuilds the original architecture from its
model reference, resizes it to the saved shapes and loads the weights. :func:`save_torchscript`
writes a TorchScript archive.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visualizer.core.errors import first_line
from visualizer.core.io.atomic import atomic_write
from visualizer.core.io.checks import FileFormatError
from visualizer.core.io.session import TrustRequired
from visualizer.core.io.torchfile import safe_load
from visualizer.core.models.loaders import load_model
from visualizer.core.models.outputs import main_logits
from visualizer.core.models.trust import model_trust_reason
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.ranking import check_density, kept_count
from visualizer.core.structure.graph import fx_trace, model_device
from visualizer.core.structure.groups import (
    ChannelGroup,
    Member,
    branches,
    connectivity,
    group_scores,
)
from visualizer.core.tasks import Step, run

FORMAT = "pruneviz-shrunk"


# --- plans -----------------------------------------------------------------------------------------


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


# --- removals per tensor -----------------------------------------------------------------------------


def _removals(groups: Iterable[ChannelGroup], plan: PrunePlan) -> dict[tuple[str, int], set[int]]:
    """(tensor name, dim) -> indices to remove, the union over all groups of the plan."""
    out: dict[tuple[str, int], set[int]] = defaultdict(set)
    by_id = {g.id: g for g in groups}
    for gid, units in plan.removed.items():
        g = by_id.get(gid)
        if g is None:
            raise ValueError(f"plan names group {gid}, which the model does not have")
        if not g.prunable:
            raise ValueError(f"group {gid} ({g.root}) is not prunable: {g.reason}")
        bad = [u for u in units if not 0 <= u < g.size]
        if bad:
            raise ValueError(f"group {gid} has no unit {bad[0]}")
        if len(set(units)) >= g.size and gid not in plan.branch_groups:
            raise ValueError(f"group {gid} ({g.root}) would lose all {g.size} units")
        uset = set(units)
        for m in g.members:
            out[(m.param, m.dim)].update(i for i, u in zip(m.indices, m.units) if u in uset)
    return out


def _cut_columns(groups: Iterable[ChannelGroup], plan: PrunePlan) -> dict[tuple[str, int], set[int]]:
    """(consumer weight, dim) -> input indices (original numbering) no longer read."""
    by_id = {g.id: g for g in groups}
    out: dict[tuple[str, int], set[int]] = defaultdict(set)
    for gid, consumer in plan.cut:
        g = by_id.get(gid)
        if g is None:
            raise ValueError(f"plan cuts group {gid}, which the model does not have")
        if not g.prunable:
            raise ValueError(f"group {gid} ({g.root}) is not prunable: {g.reason}")
        readers = [m for m in g.consumers() if m.param.rpartition(".")[0] == consumer]
        if not readers:
            raise ValueError(f"{consumer} does not read group {gid} ({g.root})")
        for m in readers:
            out[(m.param, m.dim)].update(m.indices)
    return out


class InputSelect(nn.Module):
    """Runs ``layer`` on the input channels ``keep`` only: a consumer whose connections to some
    producers were cut, while other layers still read those channels."""

    def __init__(self, keep: list[int], layer: nn.Module) -> None:
        super().__init__()
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.index_select(1, self.keep))


def plan_masks(model: nn.Module, groups: Iterable[ChannelGroup], plan: PrunePlan, **metadata: str) -> MaskSet:
    """The MaskSet of a structured pruning on the original model: dense everywhere except the
    removed units' slices of prunable weights."""
    masks = MaskSet.for_model(model)
    removals = _removals(groups, plan)
    for (name, dim), idx in _cut_columns(groups, plan).items():
        removals.setdefault((name, dim), set()).update(idx)
    for (name, dim), idx in removals.items():
        if name in masks.masks and idx:
            masks.masks[name].index_fill_(dim, torch.tensor(sorted(idx), dtype=torch.long), False)
    masks.metadata.update({"structure": "channel", **metadata})
    return masks


def masked_copy(model: nn.Module, masks: MaskSet) -> nn.Module:
    m = copy.deepcopy(model)
    masks.apply(m)
    return m


# --- physical shrinking -----------------------------------------------------------------------------


class PrunedMultiheadAttention(nn.Module):
    """Multi-head attention whose inner width (heads x head_dim) may be smaller than embed_dim:
    what ``nn.MultiheadAttention`` becomes after head pruning. Same call as the original
    (query, key, value, ...) -> (output, None); dropout is not applied (inference)."""

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, batch_first: bool, bias: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.batch_first = batch_first
        inner = num_heads * head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        inner = self.num_heads * self.head_dim
        w = self.in_proj_weight
        b = self.in_proj_bias
        q = F.linear(query, w[:inner], None if b is None else b[:inner])
        k = F.linear(key, w[inner: 2 * inner], None if b is None else b[inner: 2 * inner])
        v = F.linear(value, w[2 * inner:], None if b is None else b[2 * inner:])
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        q = q.view(n, lq, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(n, lk, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(n, lk, self.num_heads, self.head_dim).transpose(1, 2)
        mask = attn_mask
        if key_padding_mask is not None:
            pad = key_padding_mask.view(n, 1, 1, lk)
            pad = ~pad if pad.dtype == torch.bool else pad
            mask = pad if mask is None else (mask.logical_and(pad) if mask.dtype == torch.bool else mask + pad)
        if mask is not None and mask.dtype == torch.bool and attn_mask is not None:
            mask = ~mask if key_padding_mask is None else mask  # torch's bool masks mark disallowed positions
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        out = out.transpose(1, 2).reshape(n, lq, inner)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


@dataclass
class ShrunkModel:
    model: nn.Module
    spec: dict  # what load_shrunk needs besides the state dict


def _get(root: nn.Module, path: str):
    obj = root
    for part in path.split(".") if path else []:
        obj = getattr(obj, part)
    return obj


def _set_tensor(module: nn.Module, attr: str, value: torch.Tensor) -> None:
    old = getattr(module, attr)
    if isinstance(old, nn.Parameter):
        setattr(module, attr, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        module._buffers[attr] = value


def fix_module_attributes(module: nn.Module, reference: nn.Module | None = None) -> None:
    """Make a module's size attributes agree with its (shrunk) tensors. ``reference`` is the
    module before shrinking (decides whether a grouped conv was depthwise)."""
    ref = reference if reference is not None else module
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight
        depthwise = ref.groups > 1 and ref.groups == ref.in_channels
        if module.transposed:
            module.in_channels = w.shape[0]
            module.out_channels = w.shape[1] * module.groups
        else:
            module.out_channels = w.shape[0]
            if depthwise:
                module.groups = w.shape[0] // max(1, ref.out_channels // ref.in_channels)
            module.in_channels = w.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        t = module.weight if module.weight is not None else module.running_mean
        module.num_features = t.shape[0]
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = (module.weight.shape[0],)
    elif isinstance(module, nn.LSTM):
        module.hidden_size = module.weight_hh_l0.shape[1]
        module.input_size = module.weight_ih_l0.shape[1]
        module._init_flat_weights()
    elif isinstance(module, nn.PReLU):
        module.num_parameters = module.weight.shape[0]


@torch.no_grad()
def shrink(model: nn.Module, groups: Iterable[ChannelGroup], plan: PrunePlan) -> ShrunkModel:
    """A smaller copy of ``model`` without the plan's units (the original is not touched)."""
    groups = list(groups)
    removals = _removals(groups, plan)
    small = copy.deepcopy(model)
    small.eval()
    original = dict(model.named_modules())
    per_tensor: dict[str, list[tuple[int, set[int]]]] = defaultdict(list)
    for (name, dim), idx in removals.items():
        if idx:
            per_tensor[name].append((dim, idx))
    touched: set[str] = set()
    for name, cuts in per_tensor.items():
        owner_name, _, attr = name.rpartition(".")
        owner = _get(small, owner_name)
        t = getattr(owner, attr).detach()
        for dim, idx in cuts:
            keep = [i for i in range(t.shape[dim]) if i not in idx]
            t = t.index_select(dim, torch.tensor(keep, dtype=torch.long, device=t.device))
        _set_tensor(owner, attr, t.clone())
        touched.add(owner_name)
    spec: dict = {"replaced": {}}
    for owner_name in sorted(touched):
        mod = _get(small, owner_name)
        fix_module_attributes(mod, original.get(owner_name))
    _apply_cuts(small, groups, plan, removals, spec)
    # attention modules that lost heads: nn.MultiheadAttention cannot hold inner width != embed_dim
    heads = {g.root: g for g in groups if g.kind == "head" and g.id in plan.removed}
    for name, g in heads.items():
        mha = _get(small, name)
        kept_heads = g.size - len(plan.removed[g.id])
        new = PrunedMultiheadAttention(mha.embed_dim, kept_heads, mha.head_dim, mha.batch_first,
                                       bias=mha.in_proj_bias is not None)
        new.in_proj_weight = nn.Parameter(mha.in_proj_weight.detach().clone())
        if mha.in_proj_bias is not None:
            new.in_proj_bias = nn.Parameter(mha.in_proj_bias.detach().clone())
        new.out_proj.weight = nn.Parameter(mha.out_proj.weight.detach().clone())
        new.out_proj.in_features = new.out_proj.weight.shape[1]
        if mha.out_proj.bias is not None:
            new.out_proj.bias = nn.Parameter(mha.out_proj.bias.detach().clone())
        _replace(small, name, new)
        spec["replaced"][name] = {"type": "PrunedMultiheadAttention", "embed_dim": mha.embed_dim,
                                  "num_heads": kept_heads, "head_dim": mha.head_dim,
                                  "batch_first": mha.batch_first, "bias": mha.in_proj_bias is not None}
    if plan.branches:
        small = drop_branches(small, plan.branches)
        spec["branches"] = [list(b) for b in plan.branches]
    return ShrunkModel(small, spec)


def drop_branches(model: nn.Module, branches: list) -> nn.Module:
    """The model as an fx GraphModule whose concatenations no longer take the given inputs;
    the layers only those inputs used are deleted."""
    gm = fx_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    drop: dict[str, set[int]] = defaultdict(set)
    for name, index in branches:
        drop[name].add(int(index))
    for name, idx in drop.items():
        node = nodes.get(name)
        if node is None or node.target is not torch.cat:
            raise ValueError(f"no concatenation {name!r} in the traced model")
        tensors = [t for i, t in enumerate(node.args[0]) if i not in idx]
        node.args = (tensors, *node.args[1:])
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.eval()
    return gm


def _apply_cuts(small: nn.Module, groups, plan: PrunePlan, removals, spec: dict) -> None:
    """Consumers with cut connections: drop the cut weight columns and read only the kept
    channels through :class:`InputSelect` (indices renumbered after the group removals)."""
    for (wname, dim), cut in _cut_columns(groups, plan).items():
        layer_name, _, attr = wname.rpartition(".")
        layer = _get(small, layer_name)
        if dim != 1 or attr != "weight" or not isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)) \
                or getattr(layer, "groups", 1) != 1:
            raise ValueError(f"cannot cut connections of {layer_name}: only plain conv/linear inputs")
        gone = sorted(removals.get((wname, dim), set()))
        original_width = layer.weight.shape[1] + len(gone)
        survivors = [i for i in range(original_width) if i not in set(gone)]  # original numbering
        keep_new = [k for k, i in enumerate(survivors) if i not in cut]
        if not keep_new:
            raise ValueError(f"{layer_name} would read no input channel")
        dev = layer.weight.device
        w = layer.weight.detach().index_select(1, torch.tensor(keep_new, dtype=torch.long, device=dev))
        layer.weight = nn.Parameter(w.clone())
        fix_module_attributes(layer)
        _replace(small, layer_name, InputSelect(keep_new, layer).to(dev))
        spec["replaced"][layer_name] = {"type": "InputSelect", "keep": keep_new}


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(_get(root, parent_name), attr, new)


# --- files ---------------------------------------------------------------------------------------------


def save_shrunk(path: str | Path, shrunk: ShrunkModel, ref: str, **info) -> None:
    """Write the shrunk weights + the spec that rebuilds the architecture from ``ref`` (a model
    reference load_model understands). Loadable with ``torch.load(weights_only=True)``."""
    spec = {**shrunk.spec, "ref": ref, **info}
    state = {k: v.detach().cpu().clone() for k, v in shrunk.model.state_dict().items()}
    payload = {"format": FORMAT, "version": 1, "spec": json.dumps(spec), "state_dict": state}
    atomic_write(path, lambda p: torch.save(payload, p))


def load_shrunk(path: str | Path, factory: Callable[[], nn.Module] | None = None, trust: bool = False) -> nn.Module:
    """Rebuild a model written by :func:`save_shrunk`: build the original architecture (``factory``
    or the saved model reference, without pretrained weights), resize every tensor to its saved
    shape, fix layer attributes, swap in pruned attention modules, load the weights.

    The saved reference is data from the file: when building it could run code (a
    ``file.py:factory``, a pickled model) it is refused with
    :class:`~visualizer.core.io.session.TrustRequired` unless ``trust`` (the person said yes)."""
    name = Path(path).name
    try:
        payload = safe_load(path)
    except FileFormatError as exc:  # damaged, or Python objects weights_only refuses
        raise FileFormatError(f"{name}: not a readable shrunk model ({_first_line(exc.__cause__ or exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FileFormatError(f"{name}: not a pruneviz shrunk model")
    try:
        spec = json.loads(payload["spec"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise FileFormatError(f"{name}: damaged shrunk model (spec or state missing)") from exc
    if not isinstance(spec, dict) or not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FileFormatError(f"{name}: damaged shrunk model (spec or state of the wrong type)")
    if factory is None:
        ref = spec.get("ref")
        if not isinstance(ref, str) or not ref:
            raise FileFormatError(f"{name}: names no model to rebuild")
        reason = model_trust_reason(ref)
        if reason is not None and not trust:
            raise TrustRequired(name, reason)
        model = load_model(ref, pretrained=False, trust=trust).model
    else:
        model = factory()
    try:
        return rebuild(model, spec, state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as exc:
        raise FileFormatError(f"{name}: does not rebuild {spec.get('ref', 'the model')} ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=200)


@torch.no_grad()
def rebuild(model: nn.Module, spec: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    for name, r in spec.get("replaced", {}).items():
        if r["type"] == "PrunedMultiheadAttention":
            _replace(model, name, PrunedMultiheadAttention(r["embed_dim"], r["num_heads"], r["head_dim"],
                                                           r["batch_first"], r["bias"]))
        elif r["type"] == "InputSelect":
            _replace(model, name, InputSelect(r["keep"], _get(model, name)))
        else:
            raise ValueError(f"unknown replaced module type {r['type']}")
    if spec.get("branches"):
        model = drop_branches(model, spec["branches"])
    reference = {n: copy.copy(m) for n, m in model.named_modules()}
    touched = set()
    for key, value in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = _get(model, owner_name)
        cur = getattr(owner, attr, None)
        if isinstance(cur, torch.Tensor) and tuple(cur.shape) != tuple(value.shape):
            _set_tensor(owner, attr, torch.zeros(value.shape, dtype=value.dtype))
            touched.add(owner_name)
    for owner_name in touched:
        fix_module_attributes(_get(model, owner_name), reference.get(owner_name))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def save_exported(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """``torch.export`` archive (.pt2) of ``model`` on inputs shaped like ``example``: torch's
    successor to TorchScript (``torch.jit`` is deprecated as of torch 2.13); load it with
    ``torch.export.load(path).module()``."""
    model = model.eval()
    program = torch.export.export(model, (example,))
    atomic_write(path, lambda p: torch.export.save(program, str(p)))


def save_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """TorchScript archive of ``model``: scripted when possible, else traced on ``example``."""
    model = model.eval()
    with warnings.catch_warnings():  # deprecated in torch >= 2.13 (Deprecation-, then FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            ts = torch.jit.script(model)
        except Exception:
            with torch.no_grad():
                ts = torch.jit.trace(model, example, check_trace=False)
        atomic_write(path, lambda p: torch.jit.save(ts, str(p)))


# --- one call ---------------------------------------------------------------------------------------------


@dataclass
class StructuredResult:
    """What ``pruneviz shrink`` reports."""

    plan: PrunePlan
    masks: MaskSet
    shrunk: ShrunkModel
    params_before: int
    params_after: int
    max_output_diff: float
    groups_total: int
    groups_prunable: int
    output_scale: float = 1.0  # max |masked(x)| over the same inputs


SHRINK_TOLERANCE = 1e-4  # of max(1, output scale): float32 rounding stays far below it


def shrink_mismatch(diff: float, scale: float, tol: float = SHRINK_TOLERANCE) -> bool:
    """Whether the shrunk model really differs from the masked one: |diff| > tol * max(1, scale),
    NaN included. Relative to the outputs' size: a randomly initialised torchvision Inception v3
    outputs ~7e11, where float32 rounding alone differs by ~1e6."""
    return not diff <= tol * max(1.0, scale)


@torch.no_grad()
def output_difference(a: nn.Module, b: nn.Module, example: torch.Tensor, trials: int = 3,
                      seed: int = 0) -> tuple[float, float]:
    """(max |a(x) - b(x)|, max |a(x)|) over ``trials`` random inputs shaped like ``example``
    (eval mode), drawn on the device of ``a``'s weights from a generator there (seeded)."""
    a.eval()
    b.eval()
    device = model_device(a)
    gen = torch.Generator(device=device).manual_seed(seed)
    worst = scale = 0.0
    for _ in range(trials):
        x = torch.randn(example.shape, generator=gen, dtype=example.dtype, device=device)
        ya, yb = main_logits(a(x)), main_logits(b(x))
        worst = max(worst, float((ya - yb).abs().max()))
        scale = max(scale, float(ya.abs().max()))
    return worst, scale


def max_output_diff(a: nn.Module, b: nn.Module, example: torch.Tensor, trials: int = 3, seed: int = 0) -> float:
    """max |a(x) - b(x)| over ``trials`` random inputs shaped like ``example`` (eval mode)."""
    return output_difference(a, b, example, trials, seed)[0]


def structured_prune(
    model: nn.Module,
    groups: list[ChannelGroup],
    scores: dict[int, torch.Tensor],
    density: float,
    example: torch.Tensor,
    scope: str = "layer",
    plan: PrunePlan | None = None,
    **metadata: str,
) -> StructuredResult:
    """Select units, build the masks and the shrunk model, and measure their output difference
    (the convenience form of :func:`structured_prune_job`)."""
    return run(structured_prune_job(model, groups, scores, density, example, scope, plan, **metadata))


def structured_prune_job(
    model: nn.Module,
    groups: list[ChannelGroup],
    scores: dict[int, torch.Tensor],
    density: float,
    example: torch.Tensor,
    scope: str = "layer",
    plan: PrunePlan | None = None,
    **metadata: str,
) -> Generator[Step, None, StructuredResult]:
    """Job: select units, build the masks and the shrunk model (a new module: ``model`` is only
    read), and measure their output difference. Yields between the stages; a job closed at a
    yield has changed nothing."""
    yield Step("selecting units", 0.0)
    plan = select_units(groups, scores, density, scope) if plan is None else plan
    masks = plan_masks(model, groups, plan, density=str(density), **metadata)
    yield Step("building the smaller model", 0.3)
    shrunk = shrink(model, groups, plan)
    yield Step("comparing with the masked model", 0.7)
    diff, scale = output_difference(masked_copy(model, masks), shrunk.model, example)
    if shrink_mismatch(diff, scale):
        plan.notices.append(
            f"the shrunk model differs from the masked model by {diff:.3g} (outputs up to {scale:.3g}): a "
            "channel coupling was missed for this architecture; trust the masks, not the shrunk model")
    yield Step("shrunk", 1.0)
    return StructuredResult(
        plan, masks, shrunk,
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in shrunk.model.parameters()),
        diff, len(groups), sum(1 for g in groups if g.prunable), scale,
    )


__all__ = [
    "Member", "PrunePlan", "select_units", "select_zero_units", "branch_plan", "plan_masks",
    "masked_copy", "shrink", "ShrunkModel", "PrunedMultiheadAttention", "save_shrunk", "load_shrunk",
    "rebuild", "save_exported", "save_torchscript", "structured_prune", "structured_prune_job", "StructuredResult", "max_output_diff",
    "InputSelect", "select_zero_connections", "remove_branches", "drop_branches", "zero_plan",
]
