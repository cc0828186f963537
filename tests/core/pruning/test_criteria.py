"""Every criterion against a hand-computed (closed-form) value on a tiny model.

The closed forms used (no autograd on the reference side):
- Linear W (C x n), one sample x, label y, L = CE(Wx, y):
  g = (p - e_y) x^T with p = softmax(Wx);
  H = (diag(p) - p p^T) ⊗ (x x^T) in the row-major order of vec(W).
- "Tiny diagonal" model: t = w1 x1 + w2 x2, logits [t, 0], batch x = I (two samples), y = (0, 1):
  L = 1/2 [-log σ(w1) - log σ(-w2)], g = 1/2 (σ(w1) - 1, σ(w2)), H = diag(1/2 σ'(w1), 1/2 σ'(w2)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from visualizer.core.pruning.criteria import (
    CRITERIA,
    following_batchnorms,
    hutchinson_diagonal,
    score,
)
from visualizer.core.tasks import run


def scores_of(criterion, model, batches=None, **kw):
    """Run the scoring job (core's one entry point, :func:`score`) to its end."""
    return run(score(criterion, model, batches, **kw))


W = [[1.0, -2.0, 0.5], [0.5, 0.25, -1.0]]
X = [1.0, 2.0, -1.0]
Y = 0


def linear_model() -> nn.Module:
    m = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor(W))
    return m


def linear_batch():
    return [(torch.tensor([X]), torch.tensor([Y]))]


def closed_form_linear():
    w = np.array(W, dtype=np.float64)
    x = np.array(X, dtype=np.float64)
    z = w @ x
    p = np.exp(z - z.max())
    p /= p.sum()
    e = np.zeros(2)
    e[Y] = 1.0
    g = np.outer(p - e, x)
    h = np.kron(np.diag(p) - np.outer(p, p), np.outer(x, x))
    return w, g, h


class TinyDiagonal(nn.Module):
    def __init__(self, w1: float, w2: float) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[w1, w2]]))

    def forward(self, x):
        t = self.fc(x)
        return torch.cat([t, torch.zeros_like(t)], 1)


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_registry_ids_and_flags():
    assert list(CRITERIA) == ["magnitude", "random", "snip", "grasp", "grasp-reversed", "taylor", "obd",
                              "wanda", "l1-norm", "l2-norm", "bn-scale"]
    assert {c for c, i in CRITERIA.items() if i.needs_data} == {"snip", "grasp", "grasp-reversed", "taylor",
                                                                  "obd", "wanda"}
    assert {c for c, i in CRITERIA.items() if i.structured} == {"l1-norm", "l2-norm", "bn-scale"}
    for info in CRITERIA.values():
        assert info.formula and info.meaning and info.title


def test_magnitude_is_abs_w():
    s = scores_of("magnitude", linear_model())
    assert torch.equal(s["0.weight"], torch.tensor(W).abs())


def test_random_is_seeded_uniform():
    m = linear_model()
    a = scores_of("random", m, seed=3)["0.weight"]
    b = scores_of("random", m, seed=3)["0.weight"]
    c = scores_of("random", m, seed=4)["0.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 3) and bool((a >= 0).all() and (a < 1).all())


def test_snip_equals_closed_form_g_times_w():
    w, g, _ = closed_form_linear()
    s = scores_of("snip", linear_model(), linear_batch())["0.weight"].double().numpy()
    np.testing.assert_allclose(s, np.abs(g * w), rtol=1e-5, atol=1e-7)


def test_snip_is_gradient_wrt_mask_at_one():
    """s = |dL/dm| with w_eff = m ⊙ w at m = 1 (Lee et al. 2019), checked with an explicit mask variable."""
    model = linear_model()
    x, y = linear_batch()[0]
    m = torch.ones(2, 3, requires_grad=True)
    loss = nn.functional.cross_entropy(x @ (m * torch.tensor(W)).T, y)
    (dm,) = torch.autograd.grad(loss, m)
    s = scores_of("snip", model, linear_batch())["0.weight"]
    torch.testing.assert_close(s, dm.abs())


def test_taylor_averages_squared_batch_products():
    """taylor = (1/B) Σ_b (g_b ⊙ w)² (Molchanov et al. 2019), each batch gradient in closed form;
    snip on the same batches is |ḡ ⊙ w| with ḡ the mean gradient."""
    w = np.array([0.3, -1.2])
    model = TinyDiagonal(*w)
    b1 = (torch.eye(2), torch.tensor([0, 1]))
    b2 = (torch.eye(2), torch.tensor([1, 1]))
    # batch 1: g = 1/2 (σ(w1) - 1, σ(w2)); batch 2 (both label 1): g = 1/2 (σ(w1), σ(w2))
    g1 = np.array([0.5 * (sig(0.3) - 1), 0.5 * sig(-1.2)])
    g2 = np.array([0.5 * sig(0.3), 0.5 * sig(-1.2)])
    s = scores_of("taylor", model, [b1, b2])["fc.weight"].double().numpy().reshape(-1)
    np.testing.assert_allclose(s, ((g1 * w) ** 2 + (g2 * w) ** 2) / 2, rtol=1e-5)
    snip = scores_of("snip", model, [b1, b2])["fc.weight"].double().numpy().reshape(-1)
    np.testing.assert_allclose(snip, np.abs((g1 + g2) / 2 * w), rtol=1e-5)


def test_taylor_and_snip_masks_differ_on_the_trained_lenet():
    """On a trained model the mean gradient is small and noisy: |ḡ ⊙ w| (SNIP) and the mean of
    (g_b ⊙ w)² (Taylor) keep different weights. Before, taylor was snip (0 of 19,518 differed).
    The batches are the workspace's criterion batches, as in the window and the CLI."""
    from visualizer.core.data.sources import load_dataset
    from visualizer.core.models.loaders import load_model
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.workspace import Workspace, score_job

    loaded = load_model("lenet")
    ws = Workspace(loaded.model, load_dataset(loaded.dataset))
    taylor = run(score_job(ws, "taylor"))
    snip = run(score_job(ws, "snip"))
    a = mask_from_scores(taylor, 0.1)
    b = mask_from_scores(snip, 0.1)
    differ = sum(int((a[n] != b[n]).sum()) for n in a.masks)
    assert differ > 0.05 * sum(m.numel() for m in a.masks.values())


def test_grasp_equals_closed_form_minus_w_hg():
    """GraSP's importance S = -w ⊙ (Hg); ``grasp`` keeps the lowest S (its keep score is -S,
    Wang et al. 2020 remove the highest S) and ``grasp-reversed`` keeps the highest."""
    w, g, h = closed_form_linear()
    importance = -w.reshape(-1) * (h @ g.reshape(-1))
    s = scores_of("grasp", linear_model(), linear_batch())["0.weight"].double().numpy().reshape(-1)
    np.testing.assert_allclose(s, -importance, rtol=1e-4, atol=1e-7)
    r = scores_of("grasp-reversed", linear_model(), linear_batch())["0.weight"].double().numpy().reshape(-1)
    np.testing.assert_allclose(r, importance, rtol=1e-4, atol=1e-7)


def test_grasp_removes_the_highest_importance_like_the_reference_code():
    """The reference implementation (Wang et al. 2020) computes S = -θ ⊙ Hg, takes the top
    ratio·d of S as the threshold and keeps S <= it minus the top: the kept set is the lowest S.
    The app's mask at density ρ keeps exactly the ⌊ρ d⌋ lowest S (before, it kept the highest)."""
    from visualizer.core.pruning.ranking import mask_from_scores

    w, g, h = closed_form_linear()
    importance = (-w.reshape(-1) * (h @ g.reshape(-1)))
    for density in (1 / 6, 0.5, 5 / 6):
        k = round(density * 6)
        want = set(np.argsort(importance, kind="stable")[:k].tolist())
        mask = mask_from_scores(scores_of("grasp", linear_model(), linear_batch()), density)["0.weight"]
        assert set(mask.reshape(-1).nonzero().reshape(-1).tolist()) == want
        rev = mask_from_scores(scores_of("grasp-reversed", linear_model(), linear_batch()), density)["0.weight"]
        assert set(rev.reshape(-1).nonzero().reshape(-1).tolist()) == set(np.argsort(-importance)[:k].tolist())


def test_grasp_matches_autograd_functional_hessian():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss_of(flat):
        w0 = flat[:12].reshape(4, 3)
        w2 = flat[12:].reshape(3, 4)
        out = torch.func.functional_call(model, {"0.weight": w0, "2.weight": w2}, (x,))
        return nn.functional.cross_entropy(out, y)

    h = torch.autograd.functional.hessian(loss_of, flat0)
    g = torch.autograd.functional.jacobian(loss_of, flat0)
    expected = -flat0 * (h @ g)
    s = scores_of("grasp-reversed", model, [(x, y)])
    got = torch.cat([s[n].reshape(-1) for n in names])
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-6)


def test_obd_exact_when_hessian_is_diagonal():
    """Hutchinson z ⊙ Hz = diag(H) exactly for any Rademacher z when H is diagonal (z_i^2 = 1)."""
    w1, w2 = 0.7, -0.4
    model = TinyDiagonal(w1, w2)
    batch = [(torch.eye(2), torch.tensor([0, 1]))]
    g = np.array([0.5 * (sig(w1) - 1), 0.5 * sig(w2)])
    hdiag = np.array([0.5 * sig(w1) * (1 - sig(w1)), 0.5 * sig(w2) * (1 - sig(w2))])
    w = np.array([w1, w2])
    expected = -g * w + 0.5 * hdiag * w**2
    for probes in (1, 3):
        s = scores_of("obd", model, batch, probes=probes, seed=11)["fc.weight"].double().numpy().reshape(-1)
        np.testing.assert_allclose(s, expected, rtol=1e-5)


def test_hutchinson_converges_to_exact_diagonal():
    """With a full Hessian, E[z ⊙ Hz] = diag(H): the mean over many probes is within a few
    standard errors (the error's variance per probe is sum_{j != i} H_ij^2)."""
    model = linear_model()
    _, _, h = closed_form_linear()
    params = {"0.weight": model[0].weight}
    probes = 400
    est = run(hutchinson_diagonal(model, params, linear_batch(), probes=probes, seed=0))[0]
    est = est.detach().double().numpy().reshape(-1)
    off = h - np.diag(np.diag(h))
    stderr = np.sqrt((off**2).sum(1) / probes)
    assert np.all(np.abs(est - np.diag(h)) <= 5 * stderr + 1e-9)
    assert not np.allclose(est, np.diag(h), atol=1e-6)  # a real estimate, not a copy of the truth


def test_obd_formula_with_exact_hessian_diagonal_on_linear_model():
    """OBD with many probes approaches -g w + 1/2 H_ii w^2 computed from the closed-form H."""
    w, g, h = closed_form_linear()
    expected = (-g * w + 0.5 * np.diag(h).reshape(2, 3) * w**2).reshape(-1)
    s = scores_of("obd", linear_model(), linear_batch(), probes=400)["0.weight"].double().numpy().reshape(-1)
    off = h - np.diag(np.diag(h))
    tol = 5 * 0.5 * w.reshape(-1) ** 2 * np.sqrt((off**2).sum(1) / 400) + 1e-6
    assert np.all(np.abs(s - expected) <= tol)


def conv_bn_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 2), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
    return m


def test_l1_and_l2_norm_per_output_channel():
    m = conv_bn_model()
    w = m[0].weight.detach()
    l1 = scores_of("l1-norm", m)["0.weight"]
    l2 = scores_of("l2-norm", m)["0.weight"]
    for c in range(3):
        assert torch.allclose(l1[c], w[c].abs().sum().expand_as(l1[c]))
        assert torch.allclose(l2[c], w[c].pow(2).sum().sqrt().expand_as(l2[c]))
    fc = scores_of("l2-norm", m)["4.weight"]
    assert torch.allclose(fc[:, 0], m[4].weight.detach().norm(dim=1))
    assert bool((fc == fc[:, :1]).all())  # constant over each output row


def test_bn_scale_maps_gamma_to_the_conv_before_it():
    m = conv_bn_model()
    assert following_batchnorms(m) == {"0.weight": "1"}
    s = scores_of("bn-scale", m)
    assert torch.equal(s["0.weight"][:, 0, 0, 0], torch.tensor([0.5, 2.0, 0.1]))
    assert bool((s["0.weight"] == s["0.weight"][:, :1, :1, :1]).all())
    assert bool(torch.isinf(s["4.weight"]).all())  # no BN after the classifier: ranked last to prune


def test_bn_scale_without_batchnorm_is_a_clear_error():
    with pytest.raises(ValueError, match="bn-scale needs BatchNorm"):
        scores_of("bn-scale", linear_model())


def test_data_criteria_need_batches():
    with pytest.raises(ValueError, match="needs data"):
        scores_of("snip", linear_model())
    with pytest.raises(ValueError, match="empty"):
        scores_of("grasp", linear_model(), [])


def test_unknown_criterion_and_empty_model():
    with pytest.raises(ValueError, match="unknown criterion"):
        scores_of("nope", linear_model())
    with pytest.raises(ValueError, match="no prunable parameters"):
        scores_of("magnitude", nn.Sequential(nn.ReLU()))


def test_nan_scores_are_refused():
    m = linear_model()
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        scores_of("snip", m, linear_batch())


@pytest.mark.parametrize("criterion", ["snip", "grasp", "taylor", "obd"])
def test_scoring_has_no_side_effects_and_uses_eval_mode(criterion):
    m = conv_bn_model()
    m.train()
    x = torch.randn(6, 1, 3, 3)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m[4].weight.requires_grad_(False)  # a frozen layer stays frozen
    s_train = scores_of(criterion, m, [(x, y)], probes=2)
    assert m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # BN stats untouched
    assert all(p.grad is None for p in m.parameters())
    assert m[4].weight.requires_grad is False
    m.eval()
    s_eval = scores_of(criterion, m, [(x, y)], probes=2)
    for n in s_train:
        torch.testing.assert_close(s_train[n], s_eval[n])  # scored in eval mode either way


def test_cancelled_job_restores_model_state():
    m = conv_bn_model()
    m.train()
    job = score("obd", m, [(torch.randn(4, 1, 3, 3), torch.tensor([0, 1, 0, 1]))], probes=4)
    next(job)
    next(job)
    assert not m.training  # scoring in eval mode while running
    job.close()
    assert m.training
    assert all(p.grad is None for p in m.parameters())


def test_scores_have_param_shapes_and_float32():
    m = conv_bn_model()
    x = torch.randn(4, 1, 3, 3)
    y = torch.tensor([0, 1, 0, 1])
    for c in CRITERIA:
        s = scores_of(c, m, [(x, y)], probes=1)
        assert set(s) == {"0.weight", "4.weight"}
        for n, p in m.named_parameters():
            if n in s:
                assert s[n].shape == p.shape and s[n].dtype == torch.float32


def _bundled(name):
    from visualizer.core.data.sources import load_dataset
    from visualizer.core.models.loaders import load_model

    loaded = load_model(name)
    data = load_dataset(loaded.dataset)
    return loaded.model, [(data.x_train[:8], data.y_train[:8])]


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet-mini", "densenet-mini", "inception-mini", "se-cnn", "rnn", "transformer-mini"])
def test_every_criterion_runs_on_every_bundled_model(name):
    from visualizer.core.pruning.prunable import prunable_parameters

    model, batch = _bundled(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = prunable_parameters(model)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    for criterion in CRITERIA:
        if criterion == "bn-scale" and not has_bn:
            with pytest.raises(ValueError, match="bn-scale needs BatchNorm"):
                scores_of(criterion, model, batch)
            continue
        s = scores_of(criterion, model, batch, probes=1)
        assert list(s) == list(params)
        for n, p in params.items():
            assert s[n].shape == p.shape
            assert not torch.isnan(s[n]).any()
            if criterion != "bn-scale":
                assert torch.isfinite(s[n]).all()
        if criterion == "bn-scale":
            assert any(torch.isfinite(v).all() for v in s.values())  # some layer has a BN after it
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, module order must be used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 2 * 2, 2)
        with torch.no_grad():
            self.bn.weight.copy_(torch.tensor([-3.0, 0.25]))

    def forward(self, x):
        h = self.bn(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        return self.head(h.flatten(1))


def test_bn_scale_falls_back_to_module_order():
    m = Untraceable()
    assert following_batchnorms(m) == {"conv.weight": "bn"}
    s = scores_of("bn-scale", m)
    assert torch.equal(s["conv.weight"][:, 0, 0, 0], torch.tensor([3.0, 0.25]))
    assert bool(torch.isinf(s["head.weight"]).all())


def test_bn_scale_resnet_mini_pairs():
    from visualizer.core.models.loaders import load_model

    pairs = following_batchnorms(load_model("resnet-mini").model)
    assert pairs["stem.0.weight"] == "stem.1"
    assert pairs["layer1.conv1.weight"] == "layer1.bn1"
    assert pairs["layer3.shortcut.0.weight"] == "layer3.shortcut.1"
    assert "fc.weight" not in pairs


def test_data_criteria_work_under_a_callers_no_grad():
    """Grad mode is per thread and the caller may hold no_grad: the job enables it locally."""
    w, g, h = closed_form_linear()
    with torch.no_grad():
        s = scores_of("grasp", linear_model(), linear_batch())["0.weight"].double().numpy().reshape(-1)
        assert not torch.is_grad_enabled()
    np.testing.assert_allclose(s, w.reshape(-1) * (h @ g.reshape(-1)), rtol=1e-4, atol=1e-7)


def test_criterion_captions_cite_the_literature():
    """The pruning panel shows each criterion's meaning under its name; a lecturer saw
    'Magnitude … (seed 002)' there, a reference no reader can look up."""
    from visualizer.core.pruning.criteria import CRITERIA

    for info in CRITERIA.values():
        assert "seed" not in f"{info.title} {info.formula} {info.meaning}".replace("seeded", ""), info.id
