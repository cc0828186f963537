"""A shrunk nn.MultiheadAttention equals the original with the removed heads zeroed, for every
combination of bool/float attn_mask (shared or per head) and key_padding_mask, with and without
attention weights, batch-first or not, batched or not."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from visualizer.core.structure.groups import find_groups
from visualizer.core.structure.shrink import (
    PrunedMultiheadAttention,
    PrunePlan,
    masked_copy,
    plan_masks,
    shrink,
)

E, H, L, S, N = 16, 4, 5, 6, 3
REMOVED = [1, 3]
KEPT = [0, 2]


class Attn(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=batch_first)
        self.head = nn.Linear(E, 2)

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0])


def _pair(batch_first: bool):
    torch.manual_seed(0)
    model = Attn(batch_first).eval()
    x = torch.randn((N, L, E) if batch_first else (L, N, E))
    groups = find_groups(model, x).groups
    head = next(g for g in groups if g.kind == "head")
    plan = PrunePlan({head.id: REMOVED})
    masked = masked_copy(model, plan_masks(model, groups, plan)).attn.eval()
    small = shrink(model, groups, plan).model.attn
    assert isinstance(small, PrunedMultiheadAttention) and small.kept == KEPT
    return masked, small


def _masks(kind: str, pad: str, gen: torch.Generator):
    attn = None
    if kind != "none":
        shape = (L, S) if kind.endswith("2d") else (N * H, L, S)
        if kind.startswith("bool"):
            attn = torch.rand(shape, generator=gen) < 0.3
            attn[..., 0] = False  # no query row is fully masked (softmax of all -inf is NaN)
        else:
            attn = torch.randn(shape, generator=gen)
    kpm = None
    if pad == "bool":
        kpm = torch.rand(N, S, generator=gen) < 0.3
        kpm[:, 0] = False
    elif pad == "float":
        kpm = torch.randn(N, S, generator=gen)
    return attn, kpm


ATTN_MASKS = ["none", "bool2d", "float2d", "bool3d", "float3d"]
PAD_MASKS = ["none", "bool", "float"]


@pytest.mark.parametrize("batch_first", [True, False])
def test_every_mask_combination_with_and_without_weights(batch_first):
    masked, small = _pair(batch_first)
    gen = torch.Generator().manual_seed(1)
    for kind, pad in itertools.product(ATTN_MASKS, PAD_MASKS):
        if kind.startswith("bool") and pad == "float" or kind.startswith("float") and pad == "bool":
            continue  # torch refuses masks of different types together ("should match")
        attn, kpm = _masks(kind, pad, gen)
        q = torch.randn((N, L, E) if batch_first else (L, N, E), generator=gen)
        kv = torch.randn((N, S, E) if batch_first else (S, N, E), generator=gen)
        for need, average in [(False, True), (True, True), (True, False)]:
            with torch.no_grad():
                ref, ref_w = masked(q, kv, kv, key_padding_mask=kpm, attn_mask=attn, need_weights=need,
                                    average_attn_weights=False)
                out, w = small(q, kv, kv, key_padding_mask=kpm, attn_mask=attn, need_weights=need,
                               average_attn_weights=average)
            where = (batch_first, kind, pad, need, average)
            assert torch.allclose(out, ref, atol=1e-5), where
            if not need:
                assert w is None and ref_w is None, where
                continue
            expected = ref_w[:, KEPT]  # the kept heads' weights (N, kept, L, S)
            expected = expected.mean(1) if average else expected
            assert w.shape == expected.shape and torch.allclose(w, expected, atol=1e-6), where


def test_unbatched_input():
    masked, small = _pair(True)
    gen = torch.Generator().manual_seed(2)
    q, kv = torch.randn(L, E, generator=gen), torch.randn(S, E, generator=gen)
    kpm = torch.zeros(S, dtype=torch.bool)
    kpm[-2:] = True
    with torch.no_grad():
        ref, ref_w = masked(q, kv, kv, key_padding_mask=kpm, average_attn_weights=False)
        out, w = small(q, kv, kv, key_padding_mask=kpm)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(w, ref_w[KEPT].mean(0), atol=1e-6)


def test_the_old_code_path_differed_with_both_masks():
    """The case issue reports showed (outputs up to 2.4 apart): a bool attn_mask with a bool
    key_padding_mask. Checked here against torch with all heads kept."""
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    p = PrunedMultiheadAttention(E, H, E // H, True)
    p.load_state_dict(mha.state_dict())
    gen = torch.Generator().manual_seed(4)
    attn, kpm = _masks("bool2d", "bool", gen)
    q, kv = torch.randn(N, L, E, generator=gen), torch.randn(N, S, E, generator=gen)
    with torch.no_grad():
        ref, ref_w = mha(q, kv, kv, key_padding_mask=kpm, attn_mask=attn)
        out, w = p(q, kv, kv, key_padding_mask=kpm, attn_mask=attn)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(w, ref_w, atol=1e-6)
