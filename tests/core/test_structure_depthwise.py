"""Issue 7: depthwise and grouped convolutions without torchvision (MobileNet-style block).

A depthwise conv (groups = channels) ties its channels to the producer's: removing channel c of
c1 removes row c of dw (and of both batch norms) and column c of the pointwise conv. A grouped
conv with 1 < groups < channels cannot lose arbitrary channels (each conv group must keep the
same count), so its groups are listed as not prunable with the reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visualizer.core.shrink import structured_prune
from visualizer.core.structure import find_groups, group_scores


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


@pytest.mark.parametrize("groups", [2, 3])
def test_grouped_conv_groups_are_listed_unprunable_with_the_reason(groups):
    m, x = _model(groups), torch.randn(2, 3, 8, 8)
    found = {g.root: g for g in find_groups(m, x).groups}
    for root in ("pw", "gc"):
        assert not found[root].prunable and f"grouped convolution gc (groups={groups})" in found[root].reason
    assert found["c1"].prunable  # the depthwise part before it is still removable
    res = structured_prune(m, list(found.values()), group_scores(m, list(found.values()), "l2-norm"), 0.5, x)
    assert set(res.plan.removed) == {found["c1"].id} and res.max_output_diff <= 1e-5
