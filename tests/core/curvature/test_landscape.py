"""Landscapes: filter normalisation (Li et al. 2018), batched grid = point-by-point evaluation,
interpolation and its error barrier (Frankle et al. 2020), no side effects on the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from visualizer.core.curvature import landscape as L
from visualizer.core.curvature.operator import EvalSet, masked_point
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import run


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = SmallCNN()
    model.eval()
    x = torch.randn(30, 1, 4, 4)
    y = torch.randint(0, 3, (30,))
    ev = EvalSet([(x[:16], y[:16]), (x[16:], y[16:])])
    mask = MaskSet({"conv.weight": torch.rand(4, 1, 3, 3) < 0.5, "fc.weight": torch.rand(3, 64) < 0.3})
    mask.masks["conv.weight"][0] = False  # one fully pruned filter
    return model, ev, mask


def direct(model, ev, state):
    """Loss and accuracy at one point, computed the plain way."""
    loss = correct = 0.0
    model.eval()
    with torch.no_grad():
        for x, y in ev.batches:
            out = functional_call(model, state, (x,))
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
    return loss / ev.n_samples, correct / ev.n_samples


def test_filter_normalisation(setup):
    model, ev, mask = setup
    point = masked_point(model)
    d = L.filter_normalized_direction(model, point, generator=torch.Generator().manual_seed(1))
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            assert torch.all(d[name] == 0), name  # biases and BN: zero (Li et al.)
            continue
        dn = d[name].reshape(p.shape[0], -1).norm(dim=1)
        wn = point[name].reshape(p.shape[0], -1).norm(dim=1)
        assert torch.allclose(dn, wn, rtol=1e-5), name


def test_filter_normalisation_masked(setup):
    model, ev, mask = setup
    point = masked_point(model, mask)
    d = L.filter_normalized_direction(model, point, generator=torch.Generator().manual_seed(1), mask=mask)
    for name, m in mask.masks.items():
        assert torch.all(d[name][~m] == 0)
        dn = d[name].reshape(m.shape[0], -1).norm(dim=1)
        wn = point[name].reshape(m.shape[0], -1).norm(dim=1)
        assert torch.allclose(dn, wn, rtol=1e-5)
    assert torch.all(d["conv.weight"][0] == 0)  # the fully pruned filter


@pytest.mark.parametrize("batched", [True, False])
def test_slice_2d_matches_direct_evaluation(setup, batched):
    model, ev, mask = setup
    dirs = L.random_directions(model, masked_point(model, mask), 2, seed=3, mask=mask)
    res = run(L.slice_2d(model, ev, steps=5, span=0.5, mask=mask, directions=dirs, chunk=7, batched=batched))
    assert res.loss.shape == res.accuracy.shape == (5, 5)
    assert np.allclose(res.alpha, np.linspace(-0.5, 0.5, 5)) and np.allclose(res.beta, res.alpha)
    theta = masked_point(model, mask)
    for i, j in [(0, 0), (2, 2), (4, 1), (1, 3)]:
        state = {k: v + res.alpha[i] * dirs[0].get(k, 0) + res.beta[j] * dirs[1].get(k, 0) for k, v in theta.items()}
        lo, ac = direct(model, ev, state)
        assert res.loss[i, j] == pytest.approx(lo, rel=1e-5)
        assert res.accuracy[i, j] == pytest.approx(ac)
        # every point of a masked slice keeps the ticket's zeros
        for name, m in mask.masks.items():
            assert torch.all(state[name][~m] == 0)
    assert res.method == ("vmap" if batched else "loop")


def test_interpolation_and_barrier(setup):
    model, ev, mask = setup
    a = masked_point(model)
    torch.manual_seed(7)
    params = dict(model.named_parameters())
    # perturb parameters only: noise on BN running_var could make it negative (NaN loss)
    b = {k: (v + 0.8 * torch.randn_like(v)) if k in params else v for k, v in a.items()}
    res = run(L.interpolate(model, a, b, ev, steps=6))
    assert np.allclose(res.alpha, np.linspace(0, 1, 6))
    assert res.loss[0] == pytest.approx(direct(model, ev, a)[0], rel=1e-5)
    assert res.loss[-1] == pytest.approx(direct(model, ev, b)[0], rel=1e-5)
    mid = {k: (0.4 * v + 0.6 * b[k]) if v.is_floating_point() else v for k, v in a.items()}
    assert res.loss[3] == pytest.approx(direct(model, ev, mid)[0], rel=1e-5)
    err = 1 - res.accuracy
    line = (1 - res.alpha) * err[0] + res.alpha * err[-1]
    assert res.error_barrier == pytest.approx(max(0.0, float(np.max(err - line))))
    # identical endpoints: flat path, no barrier
    same = run(L.interpolate(model, a, a, ev, steps=3))
    assert np.allclose(same.loss, same.loss[0]) and same.error_barrier == 0 and same.loss_barrier == 0


def test_barrier_hand_worked():
    """Errors 0.1 at both ends and 0.5 midway: barrier 0.4; with ends 0.1 and 0.3 and 0.5 at
    alpha = 0.5, the line is 0.2 there, barrier 0.3."""
    alphas = np.array([0.0, 0.5, 1.0])

    class Fixed(nn.Module):
        """Accuracy set by a parameter: logits favour the right class iff x < s, s = alpha."""

        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            right = (x[:, 0] < self.s).float()
            return torch.stack([right, 1 - right], 1)

    # 10 samples with x = 0.05 .. 0.95: at s, accuracy = fraction of x < s
    x = (torch.arange(10).float() + 0.5)[:, None] / 10
    y = torch.zeros(10, dtype=torch.long)
    ev = EvalSet([(x, y)])
    m = Fixed()
    res = run(L.interpolate(m, {"s": torch.tensor([0.0])}, {"s": torch.tensor([1.0])}, ev, alphas=alphas))
    # accuracies 0, 0.5, 1 -> errors 1, 0.5, 0 lie on the line: barrier 0
    assert np.allclose(res.accuracy, [0.0, 0.5, 1.0])
    assert res.error_barrier == pytest.approx(0.0)


def test_slice_1d_and_no_side_effects(setup):
    model, ev, mask = setup
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = run(L.slice_1d(model, ev, steps=5, span=1.0, seed=2))
    assert res.loss.shape == (5,)
    model.eval()
    assert res.loss[2] == pytest.approx(direct(model, ev, masked_point(model))[0], rel=1e-5)
    model.train()
    job = L.slice_2d(model, ev, steps=9, chunk=4)
    next(job)
    job.close()  # cancelled mid-way
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_lstm_falls_back_to_loop():
    torch.manual_seed(0)

    class R(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 5, batch_first=True)
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(self.lstm(x)[0][:, -1])

    model = R()
    x = torch.randn(8, 4, 3)
    y = torch.randint(0, 2, (8,))
    ev = EvalSet([(x, y)])
    res = run(L.slice_2d(model, ev, steps=3))
    assert res.loss.shape == (3, 3) and np.all(np.isfinite(res.loss))
    assert res.loss[1, 1] == pytest.approx(direct(model, ev, masked_point(model))[0], rel=1e-5)


def test_bad_inputs(setup):
    model, ev, mask = setup
    with pytest.raises(ValueError):
        run(L.slice_2d(model, ev, steps=1))
    with pytest.raises(ValueError):
        run(L.slice_2d(model, ev, steps=3, span=0.0))
    with pytest.raises(ValueError):
        run(L.interpolate(model, masked_point(model), {"conv.weight": torch.zeros(1)}, ev))


def test_auto_chunk_bounds_samples_per_call_and_keeps_values(setup):
    model, ev, mask = setup
    assert L.auto_chunk(ev) == min(L.DEFAULT_CHUNK, L.CHUNK_SAMPLES // 16)
    big = EvalSet([(torch.zeros(4000, 1, 4, 4), torch.zeros(4000, dtype=torch.long))])
    assert L.auto_chunk(big) == L.CHUNK_SAMPLES // 4000
    huge = EvalSet([(torch.zeros(10_000, 1), torch.zeros(10_000, dtype=torch.long))])
    assert L.auto_chunk(huge) == 1
    steps = []
    auto = run(L.slice_2d(model, ev, steps=4, seed=2), on_step=steps.append)
    fixed = run(L.slice_2d(model, ev, steps=4, seed=2, chunk=3))
    assert np.allclose(auto.loss, fixed.loss, rtol=1e-6) and np.array_equal(auto.accuracy, fixed.accuracy)
    assert len(steps) == 1  # 16 points fit one call of auto_chunk(ev) = 128 points
