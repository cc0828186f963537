"""Coupled groups counted by hand from visualizer/core/models/zoo/convnets.py, group scores,
connectivity, branches, and torchvision couplings."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import torchvision_or_skip
from visualizer.core.models.zoo import ZOO
from visualizer.core.structure.graph import build_graph, example_input
from visualizer.core.structure.groups import (
    branches,
    connectivity,
    find_groups,
    group_scores,
    group_sparsity,
    layer_groups,
)


def _zoo(name):
    m = ZOO[name].build().eval()
    return m, example_input(m, ZOO[name].dataset)


def _summary(groups):
    """{root: (size, prunable, {(param, dim): sorted indices})} without running stats."""
    out = {}
    for g in groups:
        out[g.root] = (g.size, g.prunable, {(m.param, m.dim): sorted(m.indices) for m in g.members if not m.buffer})
    return out


def _r(a, b):
    return list(range(a, b))


def test_resnet_mini_groups_by_hand():
    m, x = _zoo("resnet-mini")
    s = _summary(find_groups(m, x).groups)
    # the residual stream through stem, layer1, layer2 (16 channels), each block's inner channels,
    # layer3's projected stream (32) reaching fc, and fc's outputs (not prunable: model output)
    assert set(s) == {"stem.0", "layer1.conv1", "layer2.conv1", "layer3.conv1", "layer3.conv2", "fc"}
    size, prunable, mem = s["stem.0"]
    assert size == 16 and prunable
    assert set(mem) == {
        ("stem.0.weight", 0), ("stem.1.weight", 0), ("stem.1.bias", 0),
        ("layer1.conv1.weight", 1), ("layer1.conv2.weight", 0), ("layer1.bn2.weight", 0), ("layer1.bn2.bias", 0),
        ("layer2.conv1.weight", 1), ("layer2.conv2.weight", 0), ("layer2.bn2.weight", 0), ("layer2.bn2.bias", 0),
        ("layer3.conv1.weight", 1), ("layer3.shortcut.0.weight", 1),
    }
    assert all(v == _r(0, 16) for v in mem.values())
    assert s["layer1.conv1"][0] == 16 and set(s["layer1.conv1"][2]) == {
        ("layer1.conv1.weight", 0), ("layer1.bn1.weight", 0), ("layer1.bn1.bias", 0), ("layer1.conv2.weight", 1)}
    size, prunable, mem = s["layer3.conv2"]
    assert size == 32 and prunable
    assert set(mem) == {
        ("layer3.shortcut.0.weight", 0), ("layer3.shortcut.1.weight", 0), ("layer3.shortcut.1.bias", 0),
        ("layer3.conv2.weight", 0), ("layer3.bn2.weight", 0), ("layer3.bn2.bias", 0), ("fc.weight", 1)}
    assert s["layer3.conv1"][0] == 32
    assert s["fc"][:2] == (10, False)


def test_densenet_mini_concat_groups_map_back_to_producers():
    m, x = _zoo("densenet-mini")
    s = _summary(find_groups(m, x).groups)
    # block1: stem (16) + three layers of growth 8 concatenated -> 40 channels read by trans1
    # block2: trans1 (24) + three layers of 8 -> 48 channels read by bn and fc
    assert list(s) == ["stem", "block1.0.conv", "block1.1.conv", "block1.2.conv",
                       "trans1.conv", "block2.0.conv", "block2.1.conv", "block2.2.conv", "fc"]
    assert [v[0] for v in s.values()] == [16, 8, 8, 8, 24, 8, 8, 8, 10]
    # the stem's 16 channels are channels 0..15 of every later concat in block 1
    mem = s["stem"][2]
    for reader in ["block1.0.conv", "block1.1.conv", "block1.2.conv", "trans1.conv"]:
        assert mem[(f"{reader}.weight", 1)] == _r(0, 16)
    # block1.0's 8 new channels are channels 16..23 of the inputs of block1.1, block1.2, trans1
    mem = s["block1.0.conv"][2]
    assert mem[("block1.0.conv.weight", 0)] == _r(0, 8)
    for reader in ["block1.1.conv", "block1.2.conv", "trans1.conv"]:
        assert mem[(f"{reader}.weight", 1)] == _r(16, 24)
        bn = reader.replace("conv", "bn")
        assert mem[(f"{bn}.weight", 0)] == _r(16, 24)
    assert ("block1.0.conv.weight", 1) not in mem  # a layer does not read its own output
    assert s["block1.1.conv"][2][("trans1.conv.weight", 1)] == _r(24, 32)
    assert s["block1.2.conv"][2][("trans1.conv.weight", 1)] == _r(32, 40)
    # block 2 ends in bn + fc: block2.2's channels are 40..47 of fc's input
    mem = s["block2.2.conv"][2]
    assert mem[("fc.weight", 1)] == _r(40, 48) and mem[("bn.weight", 0)] == _r(40, 48)
    assert s["trans1.conv"][2][("fc.weight", 1)] == _r(0, 24)
    assert s["block2.0.conv"][2][("block2.2.conv.weight", 1)] == _r(24, 32)


def test_inception_mini_branch_groups_by_hand():
    m, x = _zoo("inception-mini")
    groups = find_groups(m, x).groups
    s = _summary(groups)
    # stem (16); per module: 4 branch outputs + 2 reductions (3x3, 5x5) = 6; fc outputs
    assert len(s) == 1 + 6 + 6 + 1
    assert sum(g.prunable for g in groups) == 13
    sizes = {k: v[0] for k, v in s.items()}
    assert sizes == {
        "stem.0": 16,
        "inc1.branch1.0": 8, "inc1.branch2.0.0": 8, "inc1.branch2.1.0": 12,
        "inc1.branch3.0.0": 4, "inc1.branch3.1.0": 4, "inc1.branch4.1.0": 4,
        "inc2.branch1.0": 12, "inc2.branch2.0.0": 8, "inc2.branch2.1.0": 16,
        "inc2.branch3.0.0": 4, "inc2.branch3.1.0": 8, "inc2.branch4.1.0": 4,
        "fc": 10,
    }
    # inc1's concat is [b1 8 | b2 12 | b3 4 | b4 4] = 28 channels read by all four inc2 branches
    offsets = {"inc1.branch1.0": (0, 8), "inc1.branch2.1.0": (8, 20), "inc1.branch3.1.0": (20, 24), "inc1.branch4.1.0": (24, 28)}
    readers = ["inc2.branch1.0", "inc2.branch2.0.0", "inc2.branch3.0.0", "inc2.branch4.1.0"]
    for root, (a, b) in offsets.items():
        mem = s[root][2]
        for r in readers:
            assert mem[(f"{r}.weight", 1)] == _r(a, b), (root, r)
    # inc2's concat [12 | 16 | 8 | 4] feeds fc
    fc_off = {"inc2.branch1.0": (0, 12), "inc2.branch2.1.0": (12, 28), "inc2.branch3.1.0": (28, 36), "inc2.branch4.1.0": (36, 40)}
    for root, (a, b) in fc_off.items():
        assert s[root][2][("fc.weight", 1)] == _r(a, b)
    # a reduction stays inside its branch
    assert set(s["inc1.branch2.0.0"][2]) == {("inc1.branch2.0.0.weight", 0), ("inc1.branch2.0.1.weight", 0),
                                             ("inc1.branch2.0.1.bias", 0), ("inc1.branch2.1.0.weight", 1)}


def test_lenet_flatten_into_linear_maps_each_channel_to_four_columns():
    m, x = _zoo("lenet")
    g = next(g for g in find_groups(m, x).groups if g.root == "conv2")
    fc = next(mm for mm in g.members if mm.param == "fc1.weight")
    assert fc.dim == 1 and len(fc.indices) == 64
    for u in range(16):
        assert sorted(i for i, uu in zip(fc.indices, fc.units) if uu == u) == _r(4 * u, 4 * u + 4)


def test_se_gate_couples_conv_channels_with_excitation_output():
    m, x = _zoo("se-cnn")
    s = _summary(find_groups(m, x).groups)
    mem = s["conv1.0"][2]
    assert {("conv1.0.weight", 0), ("conv1.1.weight", 0), ("se1.fc1.weight", 1), ("se1.fc2.weight", 0),
            ("se1.fc2.bias", 0), ("conv2.0.weight", 1)} <= set(mem)
    assert s["se1.fc1"][0] == 4 and s["se2.fc1"][0] == 8


def test_lstm_hidden_units_span_four_gates_and_next_layer():
    m, x = _zoo("rnn")
    g = next(g for g in find_groups(m, x).groups if g.kind == "lstm-unit")
    assert g.prunable and g.size == 48
    ih = next(mm for mm in g.members if mm.param == "lstm.weight_ih_l0")
    assert sorted(i for i, u in zip(ih.indices, ih.units) if u == 5) == [5, 53, 101, 149]
    assert {(mm.param, mm.dim) for mm in g.members} == {
        ("lstm.weight_ih_l0", 0), ("lstm.weight_hh_l0", 0), ("lstm.bias_ih_l0", 0), ("lstm.bias_hh_l0", 0),
        ("lstm.weight_hh_l0", 1), ("fc.weight", 1)}


def test_transformer_heads_prunable_residual_stream_not():
    m, x = _zoo("transformer-mini")
    groups = find_groups(m, x).groups
    heads = [g for g in groups if g.kind == "head"]
    assert [(g.root, g.size) for g in heads] == [("blocks.0.attn", 4), ("blocks.1.attn", 4)]
    w = next(mm for mm in heads[0].members if mm.param.endswith("in_proj_weight"))
    # head 1 of 4 (head_dim 8): q rows 8..15, k rows 40..47, v rows 72..79
    assert sorted(i for i, u in zip(w.indices, w.units) if u == 1) == _r(8, 16) + _r(40, 48) + _r(72, 80)
    stream = [g for g in groups if any(mm.param == "norm.weight" for mm in g.members)]
    assert len(stream) == 1 and not stream[0].prunable and "LayerNorm" in stream[0].reason
    assert sum(g.prunable for g in groups) == 4  # 2 MLP hidden + 2 attention


def test_every_bundled_model_has_groups_and_an_unprunable_output_layer():
    for name in ZOO:
        m, x = _zoo(name)
        r = find_groups(m, x)
        assert r.prunable(), name
        assert r.output_layers, name
        for g in r.groups:
            for mm in g.members:
                assert len(mm.indices) == len(mm.units)
                assert set(mm.units) <= set(range(g.size))


def test_group_scores_by_hand_on_a_tiny_mlp():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -4.0]]))
        m[0].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
        m[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
    groups = [g for g in find_groups(m, torch.randn(2, 2)).groups if g.prunable]
    assert len(groups) == 1 and groups[0].size == 3
    l2 = group_scores(m, groups, "group-l2")[groups[0].id]
    # unit 0: row (1, 2), bias 2, next-layer column 1 -> sqrt(1+4+4+1) = sqrt(10)
    assert torch.allclose(l2, torch.tensor([math.sqrt(10), 0.0, 5.0], dtype=torch.float64))
    l1 = group_scores(m, groups, "group-l1")[groups[0].id]
    assert torch.allclose(l1, torch.tensor([6.0, 0.0, 7.0], dtype=torch.float64))
    # the old spellings still mean the group scores here ...
    assert torch.equal(group_scores(m, groups, "l2-norm")[groups[0].id], l2)
    assert torch.equal(group_scores(m, groups, "l1-norm")[groups[0].id], l1)
    # ... which are not the per-channel mask criterion of the same old name: that one scores the
    # first layer's row alone, sqrt(1 + 4) = sqrt(5), without the bias and the consumer's column
    from visualizer.core.pruning.criteria import score
    from visualizer.core.tasks import run

    assert run(score("l2-norm", m))["0.weight"][0, 0].item() == pytest.approx(math.sqrt(5))
    with pytest.raises(ValueError, match="group-l2, group-l1, group-bn"):
        group_scores(m, groups, "magnitude")
    # s_grp counts units with a nonzero group norm (docs/theory.md §6b)
    assert group_sparsity(m, groups) == 2
    taylor = {"0.weight": torch.ones(3, 2)}
    assert group_scores(m, groups, scores=taylor)[groups[0].id].tolist() == [2.0, 2.0, 2.0]


def test_bn_scale_scores_read_gamma():
    m, x = _zoo("resnet-mini")
    groups = find_groups(m, x).groups
    g = next(g for g in groups if g.root == "layer1.conv1")
    with torch.no_grad():
        m.layer1.bn1.weight.copy_(torch.arange(16.0) - 8)
    assert torch.allclose(group_scores(m, [g], "group-bn")[g.id], (torch.arange(16.0) - 8).abs().double())


def test_densenet_connectivity_matrix():
    m, x = _zoo("densenet-mini")
    groups = find_groups(m, x).groups
    c = connectivity(m, groups)
    assert c.producers[:4] == ["stem", "block1.0.conv", "block1.1.conv", "block1.2.conv"]
    i, j = c.producers.index("block1.0.conv"), c.consumers.index("trans1.conv")
    expected = float(m.trans1.conv.weight.detach()[:, 16:24].double().norm())
    assert c.strength[i, j] == pytest.approx(expected)
    # block1.2 does not read block1.2's own output, nor does anything in block 1 read block 2
    assert np.isnan(c.strength[c.producers.index("block1.2.conv"), c.consumers.index("block1.2.conv")])
    assert np.isnan(c.strength[c.producers.index("block2.0.conv"), c.consumers.index("trans1.conv")])
    # zeroing a connection (what group lasso does) reads 0
    with torch.no_grad():
        m.trans1.conv.weight[:, 16:24] = 0
    assert connectivity(m, groups).strength[i, j] == 0.0


def test_inception_branches_and_norms():
    m, x = _zoo("inception-mini")
    groups = find_groups(m, x).groups
    mods = [c for c in branches(m, groups, x) if c.kind == "inception"]
    assert [c.name for c in mods] == ["inc1", "inc2"]
    b = mods[0].branches
    assert [br.channels for br in b] == [(0, 8), (8, 20), (20, 24), (24, 28)]
    assert b[1].layers == ["inc1.branch2.0.0", "inc1.branch2.0.1", "inc1.branch2.0.2",
                           "inc1.branch2.1.0", "inc1.branch2.1.1", "inc1.branch2.1.2"]
    expected = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in m.inc1.branch2.parameters()))
    assert b[1].norm == pytest.approx(expected)
    roots = {g.id: g.root for g in groups}
    assert sorted(roots[i] for i in b[1].groups) == ["inc1.branch2.0.0", "inc1.branch2.1.0"]
    dm, dx = _zoo("densenet-mini")
    dense = [c for c in branches(dm, None, dx) if c.kind == "dense"]
    assert len(dense) == 6 and dense[0].branches[0].layers == []  # identity + new features


TORCHVISION = {
    # name: (builder kwargs, input size) — inputs kept small so the CPU run stays short
    "resnet18": ({}, 64),
    "densenet121": ({}, 64),
    "googlenet": ({"aux_logits": False, "init_weights": True}, 64),
    "mobilenet_v2": ({}, 64),
    "efficientnet_b0": ({}, 64),
    "vgg11": ({}, 32),
}


def _tv_model(name):
    tvm = torchvision_or_skip("models")
    if name == "vit":
        from torchvision.models.vision_transformer import VisionTransformer

        # the ViT-B/16 class at a small size: 4 heads of 16, 2 encoder layers, 32x32 images
        m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                              hidden_dim=64, mlp_dim=128, num_classes=10).eval()
        with torch.no_grad():  # torchvision zero-initialises the head: give it weights
            m.heads.head.weight.normal_()
        x = torch.randn(2, 3, 32, 32)
        _unit_output_scale(m, x)
        return m, x
    kwargs, size = TORCHVISION[name]
    torch.manual_seed(0)
    m = tvm.get_model(name, weights=None, **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that a wrong group changes the output
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2)
                mod.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, size, size)
    _unit_output_scale(m, x)
    return m, x


def _unit_output_scale(m: nn.Module, x: torch.Tensor) -> None:
    """Scale the classifier so that max |y| = 1: torchvision's init gives outputs ~1e-3, under
    which an absolute 1e-5 tolerance would hide a wrong group."""
    last = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1]
    with torch.no_grad():
        scale = float(m(x).abs().max())
        if scale > 0:
            last.weight.div_(scale)
            if last.bias is not None:
                last.bias.div_(scale)


@pytest.mark.torchvision
@pytest.mark.parametrize("name", [*TORCHVISION, "vit"])
def test_torchvision_graph_groups_and_shrink(name):
    from visualizer.core.structure.shrink import structured_prune

    m, x = _tv_model(name)
    g = build_graph(m, x)
    assert g.graph.number_of_nodes() > 10
    r = find_groups(m, x)
    assert r.prunable(), (name, r.notices)
    res = structured_prune(m, r.groups, group_scores(m, r.groups, "l2-norm"), 0.5, x)
    assert res.params_after < res.params_before
    with torch.no_grad():
        assert float(m(x).abs().max()) == pytest.approx(1.0, rel=1e-3)
    assert res.max_output_diff <= 1e-5, (name, res.max_output_diff)


@pytest.mark.torchvision
def test_torchvision_specific_couplings():
    m, x = _tv_model("mobilenet_v2")
    r = find_groups(m, x)
    # an inverted residual's expansion channels run through the depthwise conv: one group
    g = next(g for g in r.groups if g.root == "features.2.conv.0.0")
    params = {mm.param for mm in g.members}
    assert "features.2.conv.1.0.weight" in params  # the depthwise conv (groups = channels)
    assert "features.2.conv.2.weight" in params  # the projection reads them
    m, x = _tv_model("efficientnet_b0")
    r = find_groups(m, x)
    g = next(g for g in r.groups if any(mm.param == "features.1.0.block.1.fc2.weight" and mm.dim == 0 for mm in g.members))
    assert any(mm.param == "features.1.0.block.1.fc1.weight" and mm.dim == 1 for mm in g.members)  # SE squeeze
    m, x = _tv_model("vit")
    heads = [g for g in find_groups(m, x).groups if g.kind == "head"]
    assert len(heads) == 2 and all(g.size == 4 and g.prunable for g in heads)


def test_layer_groups_for_colouring_the_graph():
    m, x = _zoo("resnet-mini")
    groups = find_groups(m, x).groups
    lg = layer_groups(groups)
    by_root = {g.root: g.id for g in groups}
    # layer1.conv2 reads its block's inner channels and writes the residual stream
    assert sorted(lg["layer1.conv2"]) == sorted([by_root["layer1.conv1"], by_root["stem.0"]])
    g = build_graph(m, x)
    assert set(lg) <= set(g.graph.nodes)  # every grouped layer is a node of the drawn graph


@pytest.mark.torchvision
def test_torchvision_googlenet_branch_removal_and_densenet_connection_cut():
    from visualizer.core.structure.shrink import (
        PrunePlan,
        masked_copy,
        max_output_diff,
        plan_masks,
        remove_branches,
        shrink,
    )

    m, x = _tv_model("googlenet")
    groups = find_groups(m, x).groups
    mods = {c.name: c for c in branches(m, groups, x) if c.kind == "inception"}
    assert len(mods) == 9 and [len(c.branches) for c in mods.values()] == [4] * 9
    plan = remove_branches(groups, [(mods["inception3a"], 2), (mods["inception4b"], 0)])
    small = shrink(m, groups, plan).model
    assert max_output_diff(masked_copy(m, plan_masks(m, groups, plan)), small, x) <= 1e-5
    assert dict(small.named_modules())["inception3b.branch1.conv"].in_channels == 256 - 32
    m, x = _tv_model("densenet121")
    groups = find_groups(m, x).groups
    conn = connectivity(m, groups)
    gid = conn.groups[conn.producers.index("features.denseblock1.denselayer1.conv2")]
    plan = PrunePlan(cut=[(gid, "features.denseblock1.denselayer3.conv1"), (gid, "features.transition1.conv")])
    small = shrink(m, groups, plan).model
    assert max_output_diff(masked_copy(m, plan_masks(m, groups, plan)), small, x) <= 1e-5


def test_a_group_search_past_its_budget_is_stopped_with_a_notice(monkeypatch):
    """Torch-Pruning spent minutes on one group of torchvision's Swin-T: past the budget the model
    gets no groups and a notice saying so, instead of a job that cannot be stopped."""
    import torch_pruning as tp

    def endless(self, *args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", endless)
    from visualizer.core.models.loaders import load_model

    model = load_model("lenet").model
    t0 = time.monotonic()
    result = find_groups(model, budget_s=0.3)
    assert time.monotonic() - t0 < 5.0
    assert result.groups == [] or all(g.kind != "channel" for g in result.groups)
    assert any("did not finish in 0.3 s" in n for n in result.notices)


def test_find_groups_on_a_model_that_cannot_run_says_why():
    m = nn.Sequential(nn.Linear(3, 4))
    r = find_groups(m, torch.randn(2, 5))  # wrong input width: never raises, no groups, a notice why
    assert r.groups == []
    assert len(r.notices) == 1 and "could not trace" in r.notices[0] and "mat1 and mat2" in r.notices[0]
