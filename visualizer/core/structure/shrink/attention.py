"""Attention layers after head pruning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
