"""Attention layers after head pruning.

Layers that hold their head counts as attributes (transformers' GPT-2, BERT, Llama, ViT; timm's
ViT) keep their class: the projections lose the removed heads' rows and columns and
:func:`visualizer.core.structure.groups.attention.set_heads` updates the counts. An
``nn.MultiheadAttention`` cannot have an inner width (heads x head_dim) below its embedding
width, so it becomes a :class:`PrunedMultiheadAttention`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PrunedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` without some of its heads (inner width heads x head_dim may be
    below embed_dim). Same call and results as the original with the removed heads' q/k/v rows
    and output columns zeroed, for every combination of bool or float ``attn_mask`` and
    ``key_padding_mask`` (bool: True = not attended; float: added to the scores), batched or
    not, batch-first or not:

        out = W_o [softmax(Q_h K_h^T / sqrt(d) + M) V_h]_{h kept} + b_o,

    with M the sum of both masks (a bool mask is -inf where True), as torch computes it. With
    ``need_weights`` it returns the kept heads' attention weights, averaged over the kept heads
    (``average_attn_weights``) or per head (N, heads, L, S). ``kept`` lists the original indices
    of the kept heads (``source_heads`` in all), so that a per-head attn_mask of shape
    (N * source_heads, L, S) applies to the right heads. Dropout is not applied (inference)."""

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, batch_first: bool, bias: bool = True,
                 kept: list[int] | None = None, source_heads: int | None = None) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.batch_first = batch_first
        self.kept = list(kept) if kept is not None else list(range(num_heads))
        self.source_heads = source_heads if source_heads is not None else num_heads
        if len(self.kept) != num_heads:
            raise ValueError(f"{num_heads} heads but {len(self.kept)} kept head indices")
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
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # is_causal is only a hint in nn.MultiheadAttention: the causal attn_mask must be given
        unbatched = query.dim() == 2
        if unbatched:  # (L, E): one sequence
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        inner = self.num_heads * self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:inner], None if b is None else b[:inner])
        k = F.linear(key, w[inner: 2 * inner], None if b is None else b[inner: 2 * inner])
        v = F.linear(value, w[2 * inner:], None if b is None else b[2 * inner:])
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        q = q.view(n, lq, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(n, lk, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(n, lk, self.num_heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (N, heads, L, S)
        mask = self._mask(attn_mask, key_padding_mask, n, lq, lk, scores.dtype)
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(n, lq, inner)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)
        return out, (weights.squeeze(0) if unbatched else weights)

    def _mask(self, attn_mask, key_padding_mask, n: int, lq: int, lk: int, dtype) -> torch.Tensor | None:
        """The additive mask (broadcastable to (N, heads, L, S)) of both masks, as
        ``F.multi_head_attention_forward`` merges them: bool -> -inf where True, floats added."""
        total = None
        if attn_mask is not None:
            m = _additive(attn_mask, dtype)
            if m.dim() == 3:  # per head: (N * source_heads, L, S) -> the kept heads
                m = m.view(n, self.source_heads, lq, lk)[:, self.kept]
            total = m
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, dtype).view(n, 1, 1, lk)
            total = pad if total is None else total + pad
        return total


def _additive(mask: torch.Tensor, dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    return mask.to(dtype)
