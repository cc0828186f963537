"""Channel rules on transformers' Conv1D (GPT-2), whose weight is stored (in, out): its output
channels are the weight's columns, for the per-channel criteria and the channel ranking."""

from __future__ import annotations

import torch
from torch import nn

from tests.hfmodels import build_hf_model
from visualizer.core.layers import output_dims
from visualizer.core.pruning.criteria import l1_norm_scores, l2_norm_scores, score
from visualizer.core.pruning.nm import NMRanking, is_nm
from visualizer.core.pruning.ranking import Ranking, build_ranking, mask_from_scores
from visualizer.core.tasks import run

FC = "transformer.h.0.mlp.c_fc.weight"


def test_output_dims_name_the_conv1d_weights():
    model = build_hf_model("gpt2")
    dims = output_dims(model)
    assert dims[FC] == 1 and dims["transformer.h.1.attn.c_attn.weight"] == 1
    assert "transformer.wte.weight" not in dims  # an embedding: rows


def test_l1_and_l2_scores_are_column_norms_on_conv1d():
    model = build_hf_model("gpt2")
    w = model.get_submodule("transformer.h.0.mlp.c_fc").weight.detach()  # (in 32, out 64)
    l1 = run(score("l1-norm", model))[FC]
    l2 = run(score("l2-norm", model))[FC]
    # by hand: column j's sum of |w| over its 32 inputs, repeated down the column
    col_l1 = [sum(abs(float(w[i, j])) for i in range(w.shape[0])) for j in range(w.shape[1])]
    assert torch.allclose(l1, torch.tensor(col_l1).expand(w.shape[0], -1), rtol=1e-5)
    assert torch.allclose(l2, w.pow(2).sum(0).sqrt().expand_as(w), rtol=1e-5)
    assert not torch.allclose(l1[:, 0], l1[:, 1])  # not constant along rows by accident


def test_channel_masks_of_c_fc_keep_whole_output_columns():
    model = build_hf_model("gpt2")
    scores = run(score("l2-norm", model))
    masks = mask_from_scores(scores, 0.5, scope="layer", structure="channel", channel_dims=output_dims(model))
    m = masks[FC]
    kept_columns = m.all(0)
    assert torch.equal(m, kept_columns.expand_as(m))  # each column all kept or all removed
    assert int(kept_columns.sum()) == 32  # floor(0.5 * 64 output channels)
    col_norm = scores[FC][0]
    assert col_norm[kept_columns].min() >= col_norm[~kept_columns].max()  # the strongest columns


def test_strided_channels_equal_the_transposed_ranking():
    """A (in, out) weight ranked along dim 1 gives the transpose of its (out, in) twin ranked
    along dim 0, at every density, in both scopes (random scores, a conv and a vector beside)."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(7, 5, generator=g)  # stored (in, out) = (7, 5)
    others = {"conv": torch.rand(4, 3, 2, 2, generator=g), "vec": torch.rand(6, generator=g)}
    for scope in ("global", "layer"):
        r1 = Ranking.from_scores({"a": a, **others}, scope, "channel", channel_dims={"a": 1})
        r2 = Ranking.from_scores({"a": a.t().contiguous(), **others}, scope, "channel")
        for rho in (0.0, 0.2, 0.45, 0.7, 1.0):
            m1, m2 = r1.mask_at(rho), r2.mask_at(rho)
            assert torch.equal(m1["a"], m2["a"].t())
            assert torch.equal(m1["conv"], m2["conv"]) and torch.equal(m1["vec"], m2["vec"])
            assert r1.layer_kept() == r2.layer_kept()


def test_transposed_conv_channels_are_dim_1():
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 2))
    assert output_dims(model) == {"0.weight": 1}
    scores = run(score("l1-norm", model))
    w = model[0].weight.detach()  # (in 3, out 4, 2, 2)
    assert torch.allclose(scores["0.weight"][0, :, 0, 0], w.abs().sum((0, 2, 3)))
    m = mask_from_scores(scores, 0.5, scope="layer", structure="channel", channel_dims=output_dims(model))["0.weight"]
    per_out = m.transpose(0, 1).reshape(4, -1)
    assert torch.equal(per_out.all(1), per_out.any(1)) and int(per_out.all(1).sum()) == 2


def test_nm_ranking_on_gpt2_follows_conv1d_inputs():
    """build_ranking with a 2:4 structure: exact 2:4 along each Conv1D's input dim (its rows),
    the same masks at every density, nothing skipped in this model (32, 64 inputs)."""
    model = build_hf_model("gpt2")
    scores = run(score("magnitude", model))
    rk = run(build_ranking(scores, "global", "2:4", channel_dims=output_dims(model)))
    assert isinstance(rk, NMRanking) and rk.skipped == {}
    a, b = rk.mask_at(0.1), rk.mask_at(0.9)
    for name in scores:
        assert torch.equal(a[name], b[name])
    m = a[FC]  # (in 32, out 64): groups of 4 consecutive inputs down each column
    assert bool((m.reshape(8, 4, 64).sum(1) == 2).all())
    assert is_nm(m, 2, 4, transposed=True)
    assert rk.density() == 0.5 and rk.kept() == a.kept()


def test_worked_case_of_the_theory_notes():
    """docs/theory.md §6: a Conv1D weight [[1, -2], [3, 4]] (in x out) scores its columns 4 and 6."""
    w = {"w": torch.tensor([[1.0, -2.0], [3.0, 4.0]])}
    assert torch.equal(l1_norm_scores(w, {"w": 1})["w"], torch.tensor([[4.0, 6.0], [4.0, 6.0]]))
    assert torch.equal(l1_norm_scores(w)["w"], torch.tensor([[3.0, 3.0], [7.0, 7.0]]))  # nn.Linear rows
    assert torch.allclose(l2_norm_scores(w, {"w": 1})["w"][0], torch.tensor([10.0, 20.0]).sqrt())
