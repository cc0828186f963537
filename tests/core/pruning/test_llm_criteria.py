import copy
import math

import pytest
import torch
from torch import nn

from visualizer.core.pruning.llm_criteria import (
    calibrated_layers,
    compare_layers,
    input_grams,
    reconstruction_error,
    repeated_blocks,
    row_ranks,
    sparsegpt_job,
    sparsegpt_layer,
    sparsegpt_reference,
    wanda_job,
)
from visualizer.core.pruning.nm import as_rows, is_nm, nm_masks, nm_rows, parse_nm
from visualizer.core.pruning.ranking import first_k, kept_count
from visualizer.core.tasks import run


def test_parse_nm():
    assert parse_nm("2:4") == (2, 4) and parse_nm(" 4 : 8 ") == (4, 8)
    assert parse_nm("unstructured") is None
    with pytest.raises(ValueError):
        parse_nm("5:4")


def test_nm_hand_case_keeps_top_n_of_each_group():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 1.0, 1.0]])
    keep = nm_rows(scores, 2, 4)
    # group 1 keeps 4 and 3; group 2 keeps 5 and the first of the tied 1s
    assert keep.tolist() == [[True, False, True, False, False, True, True, False]]


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_patterns_are_exact(n, m):
    torch.manual_seed(0)
    scores = {"a.weight": torch.randn(6, 16), "conv.weight": torch.randn(3, 4, 2, 2)}
    result = nm_masks(scores, n, m)
    assert not result.skipped
    for mask in result.masks.masks.values():
        assert is_nm(mask, n, m)
        assert mask.sum() == mask.numel() * n // m


def test_nm_skips_and_lists_a_layer_whose_input_is_not_a_multiple():
    result = nm_masks({"ok.weight": torch.randn(2, 8), "odd.weight": torch.randn(2, 6)}, 2, 4)
    assert list(result.skipped) == ["odd.weight"] and "6" in result.skipped["odd.weight"]
    assert result.masks["odd.weight"].all()  # left dense, not a wrong pattern
    assert is_nm(result.masks["ok.weight"], 2, 4)


def test_nm_follows_conv1d_input_dimension():
    # stored (in=8, out=3): the groups run down each column
    scores = torch.randn(8, 3)
    mask = nm_masks({"c.weight": scores}, 2, 4, transposed={"c.weight"}).masks["c.weight"]
    assert is_nm(mask, 2, 4, transposed=True)
    assert (mask.reshape(2, 4, 3).sum(1) == 2).all()


def test_wanda_hand_case():
    # tokens (3, 0) and (4, 1): ‖X_0‖ = 5, ‖X_1‖ = 1; W = [[1, -2], [3, 0.5]]
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    batches = [(torch.tensor([[3.0, 0.0], [4.0, 1.0]]), None)]
    result = run(wanda_job(layer, batches, {"weight": layer.weight}))
    assert torch.allclose(result.products["weight"], torch.tensor([[5.0, 2.0], [15.0, 0.5]]))
    # within each row the larger product ranks first: 1 - r/n
    assert result.scores["weight"].tolist() == [[1.0, 0.5], [1.0, 0.5]]


def test_wanda_equals_magnitude_when_every_feature_has_the_same_norm():
    torch.manual_seed(1)
    layer = nn.Linear(16, 8)
    x = torch.randint(0, 2, (64, 16)).float() * 2 - 1  # ±1: every ‖X_j‖ = 8
    result = run(wanda_job(layer, [(x, None)], {"weight": layer.weight}))
    assert torch.allclose(result.norms["weight"], torch.full((1, 16), 8.0))
    assert torch.equal(result.scores["weight"], row_ranks(layer.weight.detach().abs()))


def test_row_ranks_keep_the_same_count_of_every_row():
    torch.manual_seed(2)
    s = row_ranks(torch.randn(5, 12))
    kept = s > 1 - 0.25  # ranks 0, 1, 2 of 12
    assert (kept.sum(1) == 3).all()


def test_wanda_reads_conv1d_in_its_orientation():
    torch.manual_seed(3)
    from transformers.pytorch_utils import Conv1D  # weight (in, out), y = x W + b

    model = nn.Sequential(Conv1D(3, 4))
    x = torch.randn(10, 4)
    result = run(wanda_job(model, [(x, None)], {"0.weight": model[0].weight}))
    expect = model[0].weight.detach().abs() * x.pow(2).sum(0).sqrt()[:, None]
    assert torch.allclose(result.products["0.weight"], expect)
    # each output (a column of the stored weight) ranks its own inputs
    assert torch.equal(result.scores["0.weight"], row_ranks(expect, transposed=True))


def test_sparsegpt_hand_case():
    # W = [1, 2], H = [[2, 1], [1, 2]], λ = 0: U = chol(H⁻¹) upper has diag (√(2/3), 1/√2),
    # saliencies w²/U_jj² = 1.5 and 8: w_0 goes; e = 1/√(2/3), w_1 -= e · U_01 = 2 + 1/2
    w = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    h = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    keep, new = sparsegpt_layer(w, h, 0.5, damping=0.0)
    assert keep.tolist() == [[False, True]]
    assert torch.allclose(new, torch.tensor([[0.0, 2.5]], dtype=torch.float64))
    assert math.isclose(reconstruction_error(w, new, h), math.sqrt(1.5 / 14))
    assert math.isclose(reconstruction_error(w, torch.tensor([[0.0, 2.0]]), h), math.sqrt(2 / 14))


def _calibrated_layer(seed: int = 0, out: int = 24, inp: int = 64, tokens: int = 256):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g, dtype=torch.float64)
    scale = torch.ones(inp, dtype=torch.float64)
    scale[::7] = 20.0  # a few outlier features, as in LLM activations
    mix = torch.randn(inp, inp, generator=g, dtype=torch.float64) * 0.3 + torch.eye(inp, dtype=torch.float64)
    x = (torch.randn(tokens, inp, generator=g, dtype=torch.float64) @ mix) * scale
    return w, x


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_equals_the_plain_reference(nm):
    w, x = _calibrated_layer()
    h = x.t() @ x
    keep, new = sparsegpt_layer(w, h, 0.5, nm=nm, block=16)
    ref_keep, ref_new = sparsegpt_reference(w, h, 0.5, nm=nm, block=16)
    assert torch.equal(keep, ref_keep)
    assert torch.allclose(new, ref_new, rtol=0, atol=1e-9)
    assert torch.equal(new != 0, keep)
    if nm:
        assert is_nm(keep, *nm)
    else:
        assert int(keep.sum()) == w.numel() // 2


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_reconstruction_error_sparsegpt_le_wanda_le_magnitude(nm):
    w, x = _calibrated_layer(seed=4)
    layer = nn.Linear(64, 24, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w.float())
    rows = run(compare_layers(layer, [(x.float(), None)], 0.5, {"weight": layer.weight}, nm=nm, block=16))
    (row,) = rows
    assert row.sparsegpt <= row.wanda <= row.magnitude
    assert 0 < row.sparsegpt


def test_sparsegpt_job_on_a_model_masks_and_updates():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    batches = [(torch.randn(32, 8), None)]
    result = run(sparsegpt_job(model, batches, 0.5, nm=(2, 4), block=8))
    assert set(result.skipped) == {"4.weight"}  # in = 6 is not a multiple of 4
    assert is_nm(result.masks["0.weight"], 2, 4) and is_nm(result.masks["2.weight"], 2, 4)
    assert result.masks["4.weight"].all()
    deltas = result.deltas(model)
    assert set(deltas) == {"0.weight", "2.weight"}
    kept = result.masks["2.weight"]
    assert (deltas["2.weight"][kept] != 0).any()  # kept weights move
    result.apply(model)
    assert torch.equal(model[2].weight.detach(), result.weights["2.weight"])
    assert torch.equal(model[2].weight.detach() == 0, ~kept)


def _tiny_gpt2():
    """The tests' 2-block GPT-2 (hidden 32), 16 calibration sequences of 16 tokens, and its block
    weights (the tied embedding left out: its magnitude mask would change block 0's inputs)."""
    from tests.hfmodels import build_hf_model

    model = build_hf_model("gpt2")
    ids = torch.randint(0, 96, (16, 16), generator=torch.Generator().manual_seed(0))
    params = {n: p for n, p in model.named_parameters() if ".h." in n and n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))}
    return model, [(ids[i:i + 4], None) for i in range(0, 16, 4)], params


def test_sparsegpt_is_sequential_over_a_transformers_blocks():
    model, batches, params = _tiny_gpt2()
    assert repeated_blocks(model, calibrated_layers(model, params)) == ["transformer.h.0", "transformer.h.1"]
    seq = run(sparsegpt_job(model, batches, 0.5, params=params))
    one = run(sparsegpt_job(model, batches, 0.5, params=params, sequential=False))
    assert seq.mode == "sequential over 2 blocks" and one.mode == "one-shot"
    assert seq.masks.metadata["mode"] == seq.mode
    for name in params:  # block 0 reads the dense embeddings either way; block 1 reads pruned block 0
        same = torch.equal(seq.masks[name], one.masks[name]) and torch.equal(seq.weights[name], one.weights[name])
        assert same == (".h.0." in name), name
    assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, params["transformer.h.0.mlp.c_fc.weight"])  # model untouched


def test_sequential_equals_one_shot_when_the_first_block_stays_dense():
    model, batches, params = _tiny_gpt2()
    later = {n: p for n, p in params.items() if ".h.1." in n}
    seq = run(sparsegpt_job(model, batches, 0.5, params=later, sequential=True))
    one = run(sparsegpt_job(model, batches, 0.5, params=later, sequential=False))
    assert seq.mode == "sequential over 2 blocks"
    for name in later:
        assert torch.equal(seq.masks[name], one.masks[name]) and torch.equal(seq.weights[name], one.weights[name])


def test_sequential_later_layers_are_solved_and_measured_on_pruned_inputs():
    # block 1's problems are SparseGPT's on the inputs of the model whose block 0 is already
    # pruned and updated: read those Gram matrices from such a model by hand and solve again
    model, batches, params = _tiny_gpt2()
    seq = run(sparsegpt_job(model, batches, 0.5, params=params))
    twin = copy.deepcopy(model)
    twin_params = dict(twin.named_parameters())
    with torch.no_grad():
        for name in params:
            if ".h.0." in name:
                twin_params[name].copy_(seq.weights[name])
    later = {n: twin_params[n] for n in params if ".h.1." in n}
    grams = run(input_grams(twin, batches, calibrated_layers(twin, later)))
    dense_grams = run(input_grams(model, batches, calibrated_layers(model, later)))
    for name in later:
        w = as_rows(params[name].detach(), True).float()
        keep, new = sparsegpt_layer(w, grams[name], 0.5)
        assert torch.equal(new.t(), seq.weights[name]) and torch.equal(keep.t(), seq.masks[name])
        assert not torch.allclose(grams[name], dense_grams[name])  # the inputs did change
        # measured on the pruned inputs, the reconstruction beats both masks without updates
        g = grams[name]
        prod = w.abs() * torch.diag(g).sqrt()[None, :]
        wanda_keep = torch.stack([first_k(r, kept_count(0.5, w.shape[1])) for r in prod])
        mag_keep = first_k(w.abs().reshape(-1), kept_count(0.5, w.numel())).reshape(w.shape)
        errors = [reconstruction_error(w, m, g) for m in (new, w * wanda_keep, w * mag_keep)]
        assert 0 < errors[0] < min(errors[1:]), (name, errors)


def test_sparsegpt_without_blocks_stays_one_shot():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6))
    batches = [(torch.randn(32, 8), None)]
    auto = run(sparsegpt_job(model, batches, 0.5, block=8))
    one = run(sparsegpt_job(model, batches, 0.5, block=8, sequential=False))
    assert auto.mode == "one-shot"
    assert all(torch.equal(auto.weights[n], one.weights[n]) for n in one.weights)
    layered = run(sparsegpt_job(model, batches, 0.5, block=8, sequential=True))
    assert layered.mode == "sequential over layers"
    assert torch.equal(layered.weights["0.weight"], one.weights["0.weight"])  # the first layer reads x itself
    assert not torch.equal(layered.weights["2.weight"], one.weights["2.weight"])


def test_input_grams_by_hand():
    layer = nn.Linear(2, 1)
    x = torch.tensor([[3.0, 0.0], [4.0, 1.0]])
    g = run(input_grams(layer, [(x, None)], {"weight": ""}))["weight"]
    assert torch.allclose(g, torch.tensor([[25.0, 4.0], [4.0, 1.0]]))


def test_calibration_profile_marks_outlier_features():
    from visualizer.core.pruning.llm_criteria import calibration_profile

    layer = nn.Sequential(nn.Linear(10, 3))
    x = torch.ones(4, 10)
    x[:, 7] = 100.0  # norms: 2 for nine features, 200 for feature 7; mean 21.8
    (row,) = run(calibration_profile(layer, [(x, None)]))
    assert row.name == "0.weight"
    assert torch.allclose(row.norms[:7], torch.full((7,), 2.0))
    assert row.outliers.tolist() == [7] and row.share == pytest.approx(0.1)


@pytest.mark.parametrize("transposed", [False, True])
def test_row_ranks_equal_a_stable_descending_argsort(transposed):
    torch.manual_seed(6)
    w = torch.randn(6, 10)
    w[:, 2:5] = 0.5  # ties go to the lower input index
    w[0, 7] = -0.0
    rows = w.t() if transposed else w
    order = torch.argsort(-rows.t() if transposed else -rows, dim=1, stable=True)
    expect = torch.empty_like(order)
    expect.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    expect = 1.0 - expect.float() / order.shape[1]
    got = row_ranks(rows, transposed)
    assert torch.equal(got, expect.t() if transposed else expect)


def test_workspace_scores_wanda_on_the_calibration_sample(digits, lenet):
    from visualizer.core.workspace import Workspace, calibration_batches

    ws = Workspace(lenet, digits, calibration=16)
    got = run(ws.scores("wanda"))
    expect = run(wanda_job(lenet, calibration_batches(digits, 16))).scores
    assert set(got) == set(expect)
    assert all(torch.equal(got[n], expect[n]) for n in got)
    assert sum(int(x.shape[0]) for x, _ in calibration_batches(digits, 16)) == 16


def test_wanda_without_data_is_one_line(lenet):
    from visualizer.core.workspace import Workspace

    with pytest.raises(ValueError, match="needs data"):
        run(Workspace(lenet, None).scores("wanda"))
