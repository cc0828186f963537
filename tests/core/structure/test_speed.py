"""FLOP counting, the time-to-train formulas (docs/theory.md §16) and the speed report (no timing asserted)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visualizer.core.models.zoo import ZOO
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.graph import example_input
from visualizer.core.structure.groups import find_groups, group_scores
from visualizer.core.structure.shrink import structured_prune
from visualizer.core.structure.speed import (
    compare_speed,
    count_flops,
    magnitude_masks_like,
    measure_speed,
    step_time,
    time_to_train,
    useful_flops,
)


def test_time_to_train_paradox_hand_worked():
    # docs/theory.md §16: dense eta = 0.60, sparse eta = 0.10 with a tenth of the FLOPs
    peak, flops = 1e12, 6e9
    dense = step_time(flops, 0.60, peak)
    sparse = step_time(flops / 10, 0.10, peak)
    assert dense == pytest.approx(0.01)  # 6e9 / (0.6 * 1e12)
    assert sparse == pytest.approx(0.006)  # 6e8 / (0.1 * 1e12)
    # sparse per step faster here, but needing 2x the steps it loses: 2 * 0.006 > 1 * 0.01
    assert time_to_train(2000, flops / 10, 0.10, peak) > time_to_train(1000, flops, 0.60, peak)
    # and with eta = 0.05 a tenth of the FLOPs is slower per step than dense
    assert step_time(flops / 10, 0.05, peak) > dense
    with pytest.raises(ValueError):
        step_time(flops, 0.0, peak)


def test_count_flops_linear_and_conv_by_hand():
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    x = torch.randn(7, 2, 5, 5)
    total, per = count_flops(m, x)
    conv = 2 * 7 * 4 * 5 * 5 * (2 * 3 * 3)  # 2 per MAC, per output element C_in*k*k MACs
    lin = 2 * 7 * 100 * 3
    assert per["0"] == conv and per["2"] == lin
    assert total == conv + lin


def test_useful_flops_scale_with_layer_density():
    m = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 2, bias=False))
    x = torch.randn(4, 10)
    total, per = count_flops(m, x)
    masks = MaskSet.for_model(m)
    masks.masks["0.weight"][:5] = False  # half of layer 0
    assert useful_flops(per, total, m, masks) == total - per["0"] // 2


def test_magnitude_masks_keep_exactly_k_largest():
    m = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, -5.0, 0.1, 2.0], [0.0, 3.0, -4.0, 0.5]]))
    masks = magnitude_masks_like(m, 3)  # |w| = 5, 4, 3 are kept
    assert masks["weight"].tolist() == [[False, True, False, False], [False, True, True, False]]


def test_speed_report_dense_masked_shrunk():
    m = ZOO["resnet-mini"].build().eval()
    x = example_input(m, "digits", batch=4)
    groups = find_groups(m, x).groups
    res = structured_prune(m, groups, group_scores(m, groups), 0.5, x)
    rep = compare_speed(m, 0.5, shrunk=res.shrunk.model, example=x, repeats=3, warmup=1, peak_flops=1e12)
    d, mk, s = rep.entry("dense"), rep.entry("masked"), rep.entry("shrunk")
    assert d.eta == 1.0 and d.flops == d.executed_flops
    assert mk.executed_flops == d.flops and mk.flops < d.flops  # zeros still run through dense kernels
    assert s.flops == s.executed_flops < d.flops
    assert s.params == res.params_after
    # same prunable parameter count for masked and shrunk
    from visualizer.core.pruning.prunable import prunable_parameters

    kept = sum(p.numel() for p in prunable_parameters(res.shrunk.model).values())
    assert mk.params - (d.params - sum(p.numel() for p in prunable_parameters(m).values())) == kept
    speedup = rep.speedups()
    for e in rep.entries:
        assert e.latency_s > 0
        # eta from the raw measurements (useful FLOPs and median latency), not the derived rate
        assert e.eta == pytest.approx((e.flops / e.latency_s) / (d.flops / d.latency_s))
        assert e.eta_abs == pytest.approx(e.flops / e.latency_s / 1e12)
        # the relation the view explains (docs/theory.md §16): t_dense / t_x = eta_x F_dense / F_x
        assert speedup[e.name] == pytest.approx(e.eta * d.flops / e.flops)
    js = rep.to_json()
    assert [r["name"] for r in js["models"]] == ["dense", "masked", "shrunk"]


def test_measure_speed_job_shrinks_by_itself():
    from visualizer.core.tasks import run

    steps = []
    rep = run(measure_speed(ZOO["lenet"].build().eval(), density=0.25, batch=8, repeats=2, warmup=1), steps.append)
    assert steps and steps[-1].fraction == pytest.approx(1.0)
    assert rep.entry("shrunk").params < rep.entry("dense").params
    assert rep.batch == 8


def test_lstm_flops_by_hand():
    m = nn.LSTM(3, 5, batch_first=True)
    total, _ = count_flops(m, torch.randn(2, 7, 3))
    # 7 steps x 2 sequences x 4 gates x 5 units x (3 inputs + 5 state) MACs, 2 FLOPs each
    assert total == 2 * 7 * 2 * 4 * 5 * (3 + 5)
    rnn = ZOO["rnn"].build().eval()
    total, per = count_flops(rnn, torch.randn(2, 16, 8))
    assert per["lstm"] == 2 * 16 * 2 * 4 * 48 * (8 + 48)
    assert total == per["lstm"] + per["fc"]
