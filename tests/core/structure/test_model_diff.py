"""Two models diffed layer by layer: a tiny CNN and its shrunk copy (hand-counted parameters and
FLOPs), the same model before and after a few training steps (relative weight change)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from visualizer.core.structure.model_diff import model_diff, shrunk_diff_job
from visualizer.core.tasks import run


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 8 * 8, 3))


def test_dense_vs_shrunk_by_hand():
    model = tiny()
    x = torch.randn(2, 1, 8, 8)
    d = run(shrunk_diff_job(model, 0.5, x))
    c0, c2, fc = d.layers["0"], d.layers["2"], d.layers["5"]
    # conv 1->4 (3x3) keeps 2 channels: 4*9+4 = 40 -> 2*9+2 = 20
    assert (c0.params_a, c0.params_b, c0.delta_params) == (40, 20, -20)
    # conv 4->6 keeps 3 of 6 outputs reading 2 of 4 inputs: 6*4*9+6 = 222 -> 3*2*9+3 = 57
    assert (c2.params_a, c2.params_b) == (222, 57)
    # linear 384->3 reads 3 of 6 channels of 8x8: 3*384+3 = 1155 -> 3*192+3 = 579
    assert (fc.params_a, fc.params_b) == (1155, 579)
    # FLOPs (2 per MAC, one 8x8 sample): 2*4*9*64 -> 2*2*9*64; 2*6*4*9*64 -> 2*3*2*9*64; 2*384*3 -> 2*192*3
    assert (c0.flops_a, c0.flops_b) == (4608, 2304)
    assert (c2.flops_a, c2.flops_b, c2.delta_flops) == (27648, 6912, 6912 - 27648)
    assert (fc.flops_a, fc.flops_b) == (2304, 1152)
    assert c2.relative_params == pytest.approx((57 - 222) / 222)
    assert all(c.weight_change is None for c in d.layers.values())  # every shape changed
    assert d.totals() == {"params_a": 1417, "params_b": 656, "flops_a": 34560, "flops_b": 10368}
    assert d.kind == "shrunk" and d.tile_quantity() == "relative params"
    ov = d.overlays()
    assert ov["models: Δ params (B − A)"][0]["2"] == -165 and ov["models: Δ params (B − A)"][2]
    assert "models: weight change" not in ov  # no layer kept its shapes
    assert ov["models: relative Δ params"][3] == (-1.0, 1.0) and d.main_overlay() == "models: relative Δ params"
    assert isinstance(d.model_b, nn.Module)


def test_weight_change_by_hand_leaves_biases_out():
    a = nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # ||W_A|| = 5
        a.bias.zero_()
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.weight[1, 1] += 0.5  # ||W_B - W_A|| = 0.5
        b.bias += 100.0
    d = model_diff(a, b, torch.randn(1, 2))
    c = d.layers[""]
    assert c.weight_change == pytest.approx(0.1)
    assert c.delta_params == 0 and c.delta_flops == 0


def test_before_and_after_a_few_training_steps():
    model = tiny()
    trained = copy.deepcopy(model)
    x = torch.randn(4, 1, 8, 8)
    opt = torch.optim.SGD(trained.parameters(), lr=0.1)
    for _ in range(3):
        loss = trained(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = model_diff(model, trained, x[:1], "before training", "after training", kind="training")
    for layer in ("0", "2", "5"):
        wa, wb = model.get_submodule(layer).weight.detach(), trained.get_submodule(layer).weight.detach()
        expected = float(torch.linalg.vector_norm(wb - wa) / torch.linalg.vector_norm(wa))
        assert d.layers[layer].weight_change == pytest.approx(expected, rel=1e-6) and expected > 0
        assert d.layers[layer].delta_params == 0 and d.layers[layer].delta_flops == 0
    assert d.tile_quantity() == "weight change"
    assert set(d.overlays()) == {"models: relative Δ params", "models: Δ params (B − A)", "models: Δ FLOPs (B − A)",
                                 "models: weight change"}
    assert d.main_overlay() == "models: weight change"


def test_a_model_that_does_not_run_has_parameters_and_a_notice():
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 1)
    d = model_diff(a, b, torch.randn(1, 5))  # wrong width: no forward pass
    assert d.layers[""].delta_params == (3 + 1) - (6 + 2)
    assert d.layers[""].flops_a is None and d.layers[""].weight_change is None
    assert d.notices and d.notices[0].startswith("no FLOPs")
    assert "models: Δ FLOPs (B − A)" not in d.overlays()
