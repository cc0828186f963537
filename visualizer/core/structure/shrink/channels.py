"""Masks of a plan, and the physically smaller copy of the model without the plan's units."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.layers import fix_linear_attributes, is_linear
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.graph import fx_trace
from visualizer.core.structure.groups import ChannelGroup
from visualizer.core.structure.groups.attention import find_attention, set_heads
from visualizer.core.structure.shrink.attention import PrunedMultiheadAttention
from visualizer.core.structure.shrink.plans import PrunePlan


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
    elif is_linear(module):
        fix_linear_attributes(module)
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
    layouts = {lay.name: lay for lay in find_attention(model)}
    for name, g in heads.items():
        mha = _get(small, name)
        if not isinstance(mha, nn.MultiheadAttention):  # a layer that keeps its own class
            kept_units = g.size - len(plan.removed[g.id])
            set_heads(mha, layouts[name], kept_units)
            spec.setdefault("heads", {})[name] = kept_units
            continue
        kept_heads = g.size - len(plan.removed[g.id])
        kept = [h for h in range(g.size) if h not in set(plan.removed[g.id])]
        new = PrunedMultiheadAttention(mha.embed_dim, kept_heads, mha.head_dim, mha.batch_first,
                                       bias=mha.in_proj_bias is not None, kept=kept, source_heads=g.size)
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
                                  "batch_first": mha.batch_first, "bias": mha.in_proj_bias is not None,
                                  "kept": kept, "source_heads": g.size}
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
