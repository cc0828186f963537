"""Depthwise and grouped convolutions without torchvision (MobileNet/ResNeXt-style blocks).

A depthwise conv (groups = channels) ties its channels to the producer's: removing channel c of
c1 removes row c of dw (and of both batch norms) and column c of the pointwise conv. A grouped
conv with 1 < groups < channels cannot lose arbitrary channels (each conv group must keep the
same count): its unit j is channel j of every conv group, i.e. channels {j, n + j, ...} with
n = channels / groups, which is column j of its weight (dim 1 holds n columns)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import torchvision_or_skip
from visualizer.core.structure.groups import find_groups, group_scores
from visualizer.core.structure.shrink import load_shrunk, save_shrunk, structured_prune


class Block(nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.dw, self.b2 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.pw, self.b3 = nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12)
        self.gc = nn.Conv2d(12, 12, 3, padding=1, groups=groups)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.dw(x)))
        x = torch.relu(self.b3(self.pw(x)))
        return self.fc(self.gc(x).mean((2, 3)))


def _model(groups: int) -> nn.Module:
    m = Block(groups).eval()
    for mod in m.modules():  # non-trivial batch-norm statistics, so a wrong slice shows
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.normal_()
    return m


def _members(g):
    return {(m.param, m.dim): sorted(m.indices) for m in g.members if not m.buffer}


def test_depthwise_conv_is_coupled_with_its_producer_and_shrinks_exactly():
    m, x = _model(1), torch.randn(2, 3, 8, 8)
    groups = find_groups(m, x).groups
    by_root = {g.root: g for g in groups}
    assert set(by_root) == {"c1", "pw", "gc", "fc"}
    r8 = list(range(8))
    assert _members(by_root["c1"]) == {
        ("c1.weight", 0): r8, ("c1.bias", 0): r8, ("b1.weight", 0): r8, ("b1.bias", 0): r8,
        ("dw.weight", 0): r8, ("dw.bias", 0): r8, ("b2.weight", 0): r8, ("b2.bias", 0): r8,
        ("pw.weight", 1): r8,
    }
    assert by_root["c1"].prunable and not by_root["fc"].prunable
    res = structured_prune(m, groups, group_scores(m, groups, "l1-norm"), 0.5, x)
    small = res.shrunk.model
    assert small.dw.groups == small.dw.in_channels == small.dw.out_channels == 4
    assert small.pw.in_channels == 4 and small.gc.out_channels == 6
    assert res.max_output_diff <= 1e-5


def test_grouped_conv_units_take_one_channel_from_every_conv_group_by_hand():
    m, x = _model(2), torch.randn(2, 3, 8, 8)  # pw: 8 -> 12, gc: 12 -> 12 in 2 groups of 6
    by_root = {g.root: g for g in find_groups(m, x).groups}
    pw = by_root["pw"]
    assert pw.prunable and pw.size == 6
    members = {(mm.param, mm.dim): mm for mm in pw.members if not mm.buffer}
    assert set(members) == {("pw.weight", 0), ("pw.bias", 0), ("b3.weight", 0), ("b3.bias", 0), ("gc.weight", 1)}
    # unit j = pw channels j and 6 + j = column j of gc's weight (shape 12 x 6 x 3 x 3)
    assert sorted(zip(members["pw.weight", 0].indices, members["pw.weight", 0].units)) == [(i, i % 6) for i in range(12)]
    assert members["gc.weight", 1].indices == members["gc.weight", 1].units == tuple(range(6))
    gc = by_root["gc"]  # gc's own outputs: rows g*6 + j, read by fc
    assert gc.prunable and gc.size == 6
    fc_in = next(mm for mm in gc.members if mm.param == "fc.weight")
    assert fc_in.dim == 1 and sorted(zip(fc_in.indices, fc_in.units)) == [(i, i % 6) for i in range(12)]
    scores = group_scores(m, [pw, gc], "l1-norm")
    res = structured_prune(m, [pw, gc], scores, 0.5, x)
    small = res.shrunk.model
    assert small.gc.groups == 2 and small.gc.in_channels == 6 and small.gc.out_channels == 6
    assert tuple(small.gc.weight.shape) == (6, 3, 3, 3) and small.fc.in_features == 6
    assert res.max_output_diff <= 1e-5
    # the removed units are the lowest-scoring j, whose channels {j, 6 + j} go together
    removed = set(res.plan.removed[pw.id])
    assert len(removed) == 3 and set(torch.argsort(scores[pw.id])[:3].tolist()) == removed


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_grouped_conv_shrinks_exactly_and_reloads(groups, tmp_path):
    m, x = _model(groups), torch.randn(2, 3, 8, 8)
    found = find_groups(m, x).groups
    assert all(g.prunable for g in found if g.root != "fc")
    for density in (0.5, 0.0):
        res = structured_prune(m, found, group_scores(m, found, "l2-norm"), density, x)
        assert res.params_after < res.params_before and res.max_output_diff <= 1e-5
        assert res.shrunk.model.gc.groups == groups
    save_shrunk(tmp_path / "small.pt", res.shrunk, "block")
    again = load_shrunk(tmp_path / "small.pt", factory=lambda: Block(groups))
    with torch.no_grad():
        assert torch.equal(again(x), res.shrunk.model(x))


class Mixed(nn.Module):
    """Two grouped convs with different group counts on the same 12 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 1)
        self.b = nn.Conv2d(12, 12, 3, padding=1, groups=2)
        self.c = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        return self.fc(self.c(torch.relu(self.b(self.a(x)))).mean((2, 3)))


def test_mixed_group_counts_are_listed_unprunable_with_the_reason():
    m, x = Mixed().eval(), torch.randn(2, 3, 8, 8)
    found = {g.root: g for g in find_groups(m, x).groups}
    assert found["a"].prunable and found["a"].size == 6  # read by b (2 groups of 6)
    assert not found["b"].prunable and "different group counts" in found["b"].reason
    res = structured_prune(m, list(found.values()), group_scores(m, list(found.values()), "l2-norm"), 0.5, x)
    assert set(res.plan.removed) <= {found["a"].id, found["c"].id} and res.max_output_diff <= 1e-5


@pytest.mark.torchvision
def test_torchvision_resnext_grouped_convs_shrink_exactly():
    tvm = torchvision_or_skip("models")
    torch.manual_seed(0)
    m = tvm.get_model("resnext50_32x4d", weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2)
                mod.bias.uniform_(-0.5, 0.5)
        m.fc.weight.div_(float(m(x).abs().max()))
        m.fc.bias.zero_()
    groups = find_groups(m, x).groups
    assert [g.root for g in groups if not g.prunable] == ["fc"]
    res = structured_prune(m, groups, group_scores(m, groups, "l2-norm"), 0.5, x)
    assert res.params_after < 0.3 * res.params_before and res.max_output_diff <= 1e-5
