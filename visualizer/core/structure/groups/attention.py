"""Attention heads as coupled groups.

Multi-head attention (Vaswani et al. 2017) computes, per head h, softmax(Q_h K_h^T / sqrt(d)) V_h
from d rows of each of the query, key and value projections, and the output projection reads the
heads' d-wide outputs through d of its columns. A head is therefore one unit: its q/k/v rows and
its output-projection columns go together, and it cannot be split (halving a fused ``qkv``
projection channel by channel breaks the (3, heads, head_dim) reshape). Grouped-query attention
(Ainslie et al. 2023) shares each key/value head among g = heads / kv_heads query heads; its unit
is one key/value head together with its g query heads, so the ratio g stays as it was.

Two kinds of layer are recognised:

* ``nn.MultiheadAttention`` (:func:`_head_groups`): rows of ``in_proj_weight``, columns of
  ``out_proj.weight``;
* :class:`AttentionLayout` (:func:`find_attention`): separate ``q_proj/k_proj/v_proj/o_proj``
  (Llama, ViT, ...), ``query/key/value`` read by the parent's ``output.dense`` (BERT), or a fused
  projection ``c_attn``/``c_proj`` (GPT-2, transformers' Conv1D) or ``qkv``/``proj`` (timm's
  ViT), with the head counts the module itself holds.

During the channel-dependency trace each recognised layer is replaced by :class:`TraceProxy`, which
keeps its projection layers under their own names but joins them through one linear map: the
dependency search then sees what the layer reads and writes (the residual stream) and nothing of
its head arithmetic (which Torch-Pruning 1.6 does not finish on grouped-query attention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.layers import (
    fix_linear_attributes,
    input_dim,
    is_conv1d,
    is_linear,
    linear_features,
    output_dim,
)
from visualizer.core.structure.groups.model import ChannelGroup, Member
from visualizer.core.tasks import first_line

_HEAD_COUNT_ATTRS = ("num_heads", "num_attention_heads", "n_head")
_HEAD_DIM_ATTRS = ("head_dim", "attention_head_size")
MIX = "_pruneviz_mix"  # the joining layer TraceProxy adds (never part of a group)


@dataclass(frozen=True)
class AttentionLayout:
    """Where one attention layer keeps its heads. ``q``, ``k``, ``v``, ``o`` are module paths
    (``q == k == v`` for a fused projection whose output is [Q | K | V]); ``o_inside`` says
    whether ``o`` is a child of the layer (False for BERT, whose parent applies it)."""

    name: str
    q: str
    k: str
    v: str
    o: str
    fused: bool
    heads: int
    kv_heads: int
    head_dim: int
    returns_tuple: bool
    o_inside: bool = True

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads


def _child(module: nn.Module, name: str) -> nn.Module | None:
    m = getattr(module, name, None)
    return m if isinstance(m, nn.Module) else None


def _int_attr(module: nn.Module, names: tuple[str, ...]) -> int | None:
    for n in names:
        v = getattr(module, n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _layout(name: str, module: nn.Module, parent: nn.Module | None) -> AttentionLayout | None:
    pre = f"{name}." if name else ""
    hf = type(module).__module__.startswith("transformers")
    q = k = v = o = None
    fused = False
    o_inside = True
    if all(is_linear(_child(module, a) or nn.Identity()) for a in ("q_proj", "k_proj", "v_proj")):
        q, k, v = "q_proj", "k_proj", "v_proj"
        o = next((a for a in ("o_proj", "out_proj", "dense") if is_linear(_child(module, a) or nn.Identity())), None)
    elif all(is_linear(_child(module, a) or nn.Identity()) for a in ("query", "key", "value")):
        q, k, v = "query", "key", "value"
        out = _child(parent, "output") if parent is not None else None
        if out is not None and is_linear(_child(out, "dense") or nn.Identity()):
            o, o_inside = "dense", False
    elif is_conv1d(_child(module, "c_attn") or nn.Identity()) and is_conv1d(_child(module, "c_proj") or nn.Identity()):
        if getattr(module, "is_cross_attention", False):
            return None
        q = k = v = "c_attn"
        o, fused = "c_proj", True
    elif isinstance(_child(module, "qkv"), nn.Linear) and isinstance(_child(module, "proj"), nn.Linear):
        q = k = v = "qkv"
        o, fused = "proj", True
    if q is None or o is None:
        return None
    heads = _int_attr(module, _HEAD_COUNT_ATTRS)
    head_dim = _int_attr(module, _HEAD_DIM_ATTRS)
    q_mod = _child(module, q)
    q_out = linear_features(q_mod)[1]
    if fused:
        if heads is None:
            return None
        head_dim = head_dim or q_out // (3 * heads)
        kv_heads = heads
        if 3 * heads * head_dim != q_out:
            return None
    else:
        config = getattr(module, "config", None)
        heads = heads or (q_out // head_dim if head_dim else getattr(config, "num_attention_heads", None))
        if not heads:
            return None
        head_dim = head_dim or q_out // heads
        k_out = linear_features(_child(module, k))[1]
        if heads * head_dim != q_out or k_out % head_dim or linear_features(_child(module, v))[1] != k_out:
            return None
        kv_heads = k_out // head_dim
        if heads % kv_heads:
            return None
    o_path = f"{pre}{o}" if o_inside else f"{name.rpartition('.')[0]}.output.{o}".lstrip(".")
    return AttentionLayout(name, pre + q, pre + k, pre + v, o_path, fused, heads, kv_heads, head_dim,
                           returns_tuple=hf, o_inside=o_inside)


def find_attention(model: nn.Module) -> list[AttentionLayout]:
    """Every attention layer of ``model`` whose heads :func:`attention_groups` can couple."""
    found = []
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, nn.MultiheadAttention):
            continue
        parent = modules.get(name.rpartition(".")[0]) if name else None
        layout = _layout(name, module, parent)
        if layout is not None:
            found.append(layout)
    return found


def attention_groups(model: nn.Module, layouts: list[AttentionLayout], start: int) -> list[ChannelGroup]:
    """One group per layout: unit j = key/value head j with its g query heads. Members: the rows
    of the q/k/v projections (weights and biases; [Q | K | V] offsets in a fused projection) and
    the output projection's columns that read those query heads."""
    modules = dict(model.named_modules())
    groups = []
    for lay in layouts:
        d, g = lay.head_dim, lay.group_size
        q_rows = [(h * d + i, h // g) for h in range(lay.heads) for i in range(d)]
        kv_rows = [(j * d + i, j) for j in range(lay.kv_heads) for i in range(d)]
        if lay.fused:
            e_q, e_kv = lay.heads * d, lay.kv_heads * d
            rows = q_rows + [(e_q + r, u) for r, u in kv_rows] + [(e_q + e_kv + r, u) for r, u in kv_rows]
            projections = [(lay.q, rows)]
        else:
            projections = [(lay.q, q_rows), (lay.k, kv_rows), (lay.v, kv_rows)]
        members = []
        for path, rows in projections:
            mod = modules[path]
            idx, units = tuple(r for r, _ in rows), tuple(u for _, u in rows)
            members.append(Member(f"{path}.weight", output_dim(mod), idx, units, "out"))
            if getattr(mod, "bias", None) is not None:
                members.append(Member(f"{path}.bias", 0, idx, units, "out"))
        o = modules[lay.o]
        members.append(Member(f"{lay.o}.weight", input_dim(o), tuple(r for r, _ in q_rows),
                              tuple(u for _, u in q_rows), "in"))
        group = ChannelGroup(start + len(groups), "head", lay.name, lay.kv_heads, members)
        per_head = _per_head_tensors(modules[lay.name], lay)
        if per_head:
            group.prunable = False
            group.reason = f"attention {lay.name}: {per_head} has one entry per head and is not shrunk with them"
        elif not type(modules[lay.name]).__module__.startswith("transformers"):
            problem = _fewer_heads_problem(model, lay, group)
            if problem:
                group.prunable, group.reason = False, problem
        groups.append(group)
    return groups


def _per_head_tensors(module: nn.Module, layout: AttentionLayout) -> str:
    """The name of a tensor of the layer, outside its projections, with a dimension of the head
    count (a relative-position bias table, per-head scales), or "" when there is none."""
    projections = {p.rpartition(".")[2] for p in (layout.q, layout.k, layout.v, layout.o)}
    counts = {layout.heads, layout.kv_heads} - {layout.head_dim}
    for name, t in (*module.named_parameters(), *module.named_buffers()):
        if name.split(".", 1)[0] in projections:
            continue
        if any(s in counts for s in t.shape) and t.numel() > 1:
            return name
    return ""


@torch.no_grad()
def _fewer_heads_problem(model: nn.Module, layout: AttentionLayout, group: ChannelGroup) -> str:
    """Why a copy of the layer without its first unit does not run, or "" when it does (or when
    the layer cannot be called on a lone (1, 3, width) input, so only the whole model's shrink
    comparison can tell). A layer whose forward reshapes to its full embedding width (``x.reshape(
    B, N, C)``) cannot lose heads."""
    import copy

    if group.size < 2 or not layout.o_inside:
        return ""
    original = model.get_submodule(layout.name)
    width = linear_features(model.get_submodule(layout.q))[0]
    ref = next(original.parameters())
    x = torch.randn(1, 3, width, dtype=ref.dtype, device=ref.device)
    try:
        original(x)
    except Exception:  # noqa: BLE001 - needs other arguments: not checkable here
        return ""
    small = copy.deepcopy(original)
    prefix = f"{layout.name}." if layout.name else ""
    for m in group.members:
        owner_name, _, attr = m.param[len(prefix):].rpartition(".")
        owner = small.get_submodule(owner_name)
        t = getattr(owner, attr)
        keep = sorted(set(range(t.shape[m.dim])) - {i for i, u in zip(m.indices, m.units) if u == 0})
        setattr(owner, attr, nn.Parameter(t.index_select(m.dim, torch.tensor(keep, device=t.device))))
    for mod in small.modules():
        if is_linear(mod):
            fix_linear_attributes(mod)
    set_heads(small, layout, group.size - 1)
    try:
        small(x)
    except Exception as exc:  # noqa: BLE001 - any failure means its code assumes all heads
        return (f"attention {layout.name} does not run with fewer heads ({first_line(exc, limit=120)}): "
                "its forward assumes the full width")
    return ""


def set_heads(module: nn.Module, layout: AttentionLayout, kept_units: int) -> None:
    """Make a shrunk attention layer's head counts agree with its kept units (key/value heads;
    each keeps its g query heads)."""
    heads = kept_units * layout.group_size
    for attr in _HEAD_COUNT_ATTRS:
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads)
    if isinstance(getattr(module, "num_key_value_heads", None), int):
        module.num_key_value_heads = kept_units
    for attr in ("all_head_size", "split_size", "attn_dim"):
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads * layout.head_dim)


class TraceProxy(nn.Module):
    """Stands in for an attention layer while channel dependencies are traced: its projections
    (same objects, same names) joined by one linear map, so the trace couples what the layer
    reads (q/k/v inputs) and writes (o outputs) and nothing inside. Never run for results."""

    def __init__(self, original: nn.Module, layout: AttentionLayout, o_layer: nn.Module) -> None:
        super().__init__()
        for child_name, child in original.named_children():
            self.add_module(child_name, child)
        self._layout = layout
        names = [layout.q] if layout.fused else [layout.q, layout.k, layout.v]
        self._projections = [n.rpartition(".")[2] for n in names]
        width = sum(linear_features(getattr(self, n))[1] for n in self._projections)
        o_name = layout.o.rpartition(".")[2]
        o_in = linear_features(o_layer)[0]
        ref = getattr(self, self._projections[0]).weight
        self.add_module(MIX, nn.Linear(width, o_in, bias=False).to(ref.device, ref.dtype))
        self._o = o_name if layout.o_inside else None

    def forward(self, *args, **kwargs):
        x = args[0] if args else next(v for k, v in kwargs.items() if isinstance(v, torch.Tensor))
        z = torch.cat([getattr(self, n)(x) for n in self._projections], dim=-1)
        z = getattr(self, MIX)(z)
        if self._o is not None:
            z = getattr(self, self._o)(z)
        return (z, None) if self._layout.returns_tuple else z


def install_proxies(model: nn.Module, layouts: list[AttentionLayout]) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace each layout's layer by a :class:`TraceProxy`; returns what
    :func:`remove_proxies` puts back (always call it, in a ``finally``)."""
    modules = dict(model.named_modules())
    swapped = []
    try:
        for lay in layouts:
            original = modules[lay.name]
            parent_name, _, attr = lay.name.rpartition(".")
            parent = modules[parent_name] if lay.name else None
            if parent is None:
                continue  # the whole model is one attention layer: trace it as it is
            proxy = TraceProxy(original, lay, modules[lay.o])
            setattr(parent, attr, proxy)
            swapped.append((parent, attr, original))
    except Exception:
        remove_proxies(swapped)
        raise
    return swapped


def remove_proxies(swapped: list[tuple[nn.Module, str, nn.Module]]) -> None:
    for parent, attr, original in reversed(swapped):
        setattr(parent, attr, original)
    swapped.clear()
def _head_groups(model: nn.Module, start: int) -> list[ChannelGroup]:
    """One group per nn.MultiheadAttention: unit h = head h = q/k/v rows [h*d, (h+1)*d) of
    ``in_proj_weight``/``in_proj_bias`` and the same columns of ``out_proj.weight``."""
    groups = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.MultiheadAttention) or not mod._qkv_same_embed_dim:
            continue
        e, nh = mod.embed_dim, mod.num_heads
        d = e // nh
        pre = f"{name}." if name else ""
        rows, units = [], []
        for k in range(3):
            for h in range(nh):
                rows += list(range(k * e + h * d, k * e + (h + 1) * d))
                units += [h] * d
        cols = tuple(range(e))
        col_units = tuple(h for h in range(nh) for _ in range(d))
        members = [Member(pre + "in_proj_weight", 0, tuple(rows), tuple(units), "out")]
        if mod.in_proj_bias is not None:
            members.append(Member(pre + "in_proj_bias", 0, tuple(rows), tuple(units), "out"))
        members.append(Member(pre + "out_proj.weight", 1, cols, col_units, "in"))
        problem = "" if (mod.bias_k is None and not mod.add_zero_attn) else "bias_k/add_zero_attn not supported"
        groups.append(ChannelGroup(start + len(groups), "head", name, nh, members, not problem, problem))
    return groups
