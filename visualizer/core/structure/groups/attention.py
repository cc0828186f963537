"""Attention heads as coupled groups."""

from __future__ import annotations

from torch import nn

from visualizer.core.structure.groups.model import ChannelGroup, Member


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
