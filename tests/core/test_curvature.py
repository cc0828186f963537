"""Curvature numerics against the exact Hessian of a tiny float64 model (docs/theory.md §10).

The reference is torch.autograd.functional.hessian of the mean cross entropy over the evaluation
set, as a function of the flat vector of the operator's parameters, and torch.linalg.eigvalsh.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from visualizer.core.curvature import hessian as C
from visualizer.core.pruning.masks import MaskError, MaskSet
from visualizer.core.tasks import run

RTOL = 1e-4


class Tiny(nn.Module):
    """5 -> 10 -> 4 with tanh: 90 prunable weights, 14 biases."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyBN(nn.Module):
    """conv + BatchNorm + linear, to check that the Hessian is taken in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


@pytest.fixture
def tiny():
    torch.manual_seed(1)
    model = Tiny().double()
    x = torch.randn(48, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (48,))
    ev = C.EvalSet([(x[:20], y[:20]), (x[20:], y[20:])])  # unequal batches: the mean must weight them
    masks = {
        "fc1.weight": torch.rand(10, 5) < 0.5,
        "fc2.weight": torch.rand(4, 10) < 0.5,
    }
    return model, ev, MaskSet(masks)


def exact_hessian(model, ev, point, names):
    """Hessian of the mean loss w.r.t. the concatenation of ``names`` at ``point``."""
    shapes = [point[n].shape for n in names]
    flat0 = torch.cat([point[n].reshape(-1) for n in names])
    xs = torch.cat([x for x, _ in ev.batches])
    ys = torch.cat([y for _, y in ev.batches])

    def f(flat):
        p = dict(point)
        at = 0
        for n, s in zip(names, shapes):
            p[n] = flat[at : at + s.numel()].view(s)
            at += s.numel()
        was = model.training
        model.eval()
        try:
            out = functional_call(model, p, (xs,))
        finally:
            model.train(was)
        return nn.functional.cross_entropy(out, ys)

    return torch.autograd.functional.hessian(f, flat0)


def keep_vector(mask, names, point):
    return torch.cat([
        mask.masks[n].reshape(-1) if n in mask.masks else torch.ones(point[n].numel(), dtype=torch.bool)
        for n in names
    ])


def assert_close_rel(a, b, rtol=RTOL):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    assert torch.allclose(a, b, rtol=rtol, atol=1e-10), (a, b)


# --- the operator -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["double-backward", "forward-over-reverse"])
def test_hvp_equals_exact_hessian_times_vector(tiny, method):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, masked=False, method=method)
    point = C.masked_point(model)
    H = exact_hessian(model, ev, point, op.coords.names)
    v = torch.randn(op.dim, dtype=torch.float64)
    assert op.dim == 90
    assert torch.allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert op.hvps == 1


def test_masked_operator_is_the_exact_submatrix_at_theta(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, mask)
    point = C.masked_point(model, mask)  # theta = m * w
    names = ["fc1.weight", "fc2.weight"]
    H = exact_hessian(model, ev, point, names)
    keep = keep_vector(mask, names, point)
    assert op.dim == mask.kept()
    assert torch.allclose(op.to_dense(), H[keep][:, keep], rtol=1e-10, atol=1e-12)
    # the dense operator with a mask is taken at the same point theta
    dense = C.hessian_operator(model, ev, mask, masked=False)
    assert torch.allclose(dense.to_dense(), H, rtol=1e-10, atol=1e-12)


def test_gradient_is_projected_gradient(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, mask)
    point = C.masked_point(model, mask)
    xs = torch.cat([x for x, _ in ev.batches])
    ys = torch.cat([y for _, y in ev.batches])
    p = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    loss = nn.functional.cross_entropy(functional_call(model, p, (xs,)), ys)
    loss.backward()
    full = {k: p[k].grad for k in ("fc1.weight", "fc2.weight")}
    assert torch.allclose(op.gradient(), op.coords.gather(full), rtol=1e-10, atol=1e-12)
    assert op.loss() == pytest.approx(float(loss.detach()), rel=1e-12)


def test_include_other_layer_and_group(tiny):
    model, ev, mask = tiny
    point = C.masked_point(model, mask)
    names = [n for n, _ in model.named_parameters()]
    names = ["fc1.weight", "fc2.weight"] + [n for n in names if n not in ("fc1.weight", "fc2.weight")]
    H = exact_hessian(model, ev, point, names)
    keep = keep_vector(mask, names, point)
    op = C.hessian_operator(model, ev, mask, include_other=True)
    assert op.coords.names == names
    assert torch.allclose(op.to_dense(), H[keep][:, keep], rtol=1e-10, atol=1e-12)
    # one layer, masked
    op = C.hessian_operator(model, ev, mask, layer="fc2.weight")
    sl = slice(50, 90)
    k2 = mask.masks["fc2.weight"].reshape(-1)
    assert torch.allclose(op.to_dense(), H[sl, sl][k2][:, k2], rtol=1e-10, atol=1e-12)
    # a group: (param, flat indices), intersected with the mask
    idx = torch.tensor([0, 3, 7, 11, 20])
    op = C.hessian_operator(model, ev, mask, group=[("fc1.weight", idx)])
    kept = idx[mask.masks["fc1.weight"].reshape(-1)[idx]]
    assert op.dim == kept.numel()
    assert torch.allclose(op.to_dense(), H[kept][:, kept], rtol=1e-10, atol=1e-12)


def test_scatter_gather_roundtrip(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, mask)
    v = torch.randn(op.dim, dtype=torch.float64)
    full = op.scatter(v)
    assert set(full) == {"fc1.weight", "fc2.weight"}
    for n, t in full.items():
        assert t.shape == dict(model.named_parameters())[n].shape
        assert torch.all(t[~mask.masks[n]] == 0)
    assert torch.equal(op.coords.gather(full), v)


def test_batchnorm_model_uses_eval_mode_and_is_not_mutated():
    torch.manual_seed(2)
    model = TinyBN().double()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
    model.train()  # the operator must still use running statistics and restore this flag
    x = torch.randn(16, 1, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    ev = C.EvalSet([(x, y)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = C.hessian_operator(model, ev)
    point = C.masked_point(model)
    H = exact_hessian(model, ev, point, op.coords.names)
    assert torch.allclose(op.to_dense(), H, rtol=1e-9, atol=1e-11)
    assert model.training and model.bn.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- Lanczos ----------------------------------------------------------------------------------


def test_lanczos_top_and_bottom_match_eigvalsh(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, masked=False)
    H = exact_hessian(model, ev, C.masked_point(model), op.coords.names)
    exact = torch.linalg.eigvalsh(H)
    res = run(C.lanczos(op, 4, 3, max_steps=90, tol=1e-10))
    assert res.converged
    assert_close_rel(res.top, exact.flip(0)[:4])
    assert_close_rel(res.bottom, exact[:3])
    for lam, vec in zip(res.top, res.top_vectors):
        assert torch.linalg.norm(H @ vec - lam * vec) <= 1e-6 * exact.abs().max()
    assert res.hvps == res.steps == op.hvps


def test_lanczos_stops_on_residual_before_exhausting(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, masked=False)
    H = exact_hessian(model, ev, C.masked_point(model), op.coords.names)
    lam_max = float(torch.linalg.eigvalsh(H)[-1])
    res = run(C.lanczos(op, 1, 0, max_steps=90, tol=1e-3, bound="residual"))
    assert res.converged and not res.exhausted and res.steps < 90
    # the residual bound is rigorous: |lambda - theta| <= r
    assert abs(float(res.top[0]) - lam_max) <= float(res.top_errors[0]) + 1e-12
    assert abs(float(res.top[0]) - lam_max) <= 1e-3 * lam_max


def test_lanczos_on_matrix_with_invariant_subspace():
    # A diagonal matrix with repeated eigenvalues: Krylov spaces break down early (beta = 0);
    # the restart must still find every eigenvalue.
    d = torch.tensor([3.0, 3.0, 1.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    op = C.MatrixOperator(torch.diag(d))
    res = run(C.lanczos(op, 3, 2, max_steps=6, tol=1e-12))
    assert_close_rel(res.top, [3.0, 3.0, 1.0])
    assert_close_rel(res.bottom, [-2.0, 0.5])


def test_power_iteration_peer():
    torch.manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    lam = torch.linspace(-1, 10, 30, dtype=torch.float64)
    op = C.MatrixOperator(q @ torch.diag(lam) @ q.T)
    est, n = C.power_iteration(op, tol=1e-8, max_iter=5000)
    assert est == pytest.approx(10.0, rel=1e-6)
    assert n == op.hvps


# --- interlacing and summaries ---------------------------------------------------------------


def test_interlacing_dense_vs_masked_at_same_point(tiny):
    model, ev, mask = tiny
    # tol=0: Lanczos runs until the Krylov space is the whole space (exhausted)
    opts = C.SpectrumOptions(top_k=3, bottom_k=3, max_steps=200, tol=0.0)
    both = run(C.dense_vs_masked(model, ev, mask, opts))
    point = C.masked_point(model, mask)
    names = ["fc1.weight", "fc2.weight"]
    H = exact_hessian(model, ev, point, names)
    keep = keep_vector(mask, names, point)
    ed = torch.linalg.eigvalsh(H)
    em = torch.linalg.eigvalsh(H[keep][:, keep])
    assert both.masked.lambda_max <= both.dense.lambda_max + 1e-12
    assert both.masked.lambda_min >= both.dense.lambda_min - 1e-12
    assert_close_rel(both.dense.top_eigenvalues, ed.flip(0)[:3])
    assert_close_rel(both.masked.top_eigenvalues, em.flip(0)[:3])
    assert_close_rel(both.masked.bottom_eigenvalues, em[:3])
    assert both.masked.dim == mask.kept() and both.dense.dim == 90
    # exhausted Lanczos: negatives, trace and kappa are exact
    zero = 1e-6 * em.abs().max()
    neg = em[em < -zero]
    assert both.masked.negative_count == neg.numel()
    assert both.masked.negative_mass == pytest.approx(float(neg.abs().sum()), rel=RTOL)
    assert both.masked.trace == pytest.approx(float(em.sum()), rel=RTOL, abs=1e-10)
    pos = em[em > zero]
    kappa = float(em[-1] / (em[0] if em[0] > zero else pos.min()))
    assert both.masked.condition_number == pytest.approx(kappa, rel=RTOL)


def test_condition_number_when_positive_definite():
    lam = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    lz = run(C.lanczos(C.MatrixOperator(torch.diag(lam)), 1, 1, tol=1e-12))
    s = C.summarize(lz, dim=5, hvps=lz.hvps, loss=0.0)
    assert s.condition_number == pytest.approx(16.0, rel=1e-10)
    assert s.condition_kind == "lambda_max/lambda_min"
    assert s.negative_count == 0


def test_spectrum_over_rewinds(tiny):
    model, ev, mask = tiny
    torch.manual_seed(5)
    snaps = []
    for _ in range(2):
        snaps.append({k: v + 0.3 * torch.randn_like(v) for k, v in model.state_dict().items()})
    opts = C.SpectrumOptions(top_k=2, bottom_k=1, max_steps=200, tol=1e-10)
    seen = []
    out = run(C.spectrum_over_rewinds(model, [("tau=0", snaps[0]), ("tau=k1", snaps[1])], mask, ev, opts),
              on_step=lambda s: seen.append(s.partial))
    assert [r.label for r in out] == ["tau=0", "tau=k1"]
    assert any(isinstance(p, C.RewindSpectrum) for p in seen)
    names = ["fc1.weight", "fc2.weight"]
    for r, snap in zip(out, snaps):
        point = C.masked_point(model, mask, snap)
        H = exact_hessian(model, ev, point, names)
        keep = keep_vector(mask, names, point)
        em = torch.linalg.eigvalsh(H[keep][:, keep])
        assert_close_rel(r.spectrum.top_eigenvalues, em.flip(0)[:2])
    # the model itself is untouched
    assert not any(torch.equal(model.state_dict()[k], snaps[0][k]) for k in names)


# --- SLQ and Hutchinson -----------------------------------------------------------------------


def test_slq_with_identity_probes_is_exact(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, mask)
    H = op.to_dense()
    n = op.dim
    exact = torch.linalg.eigvalsh(H)
    # n probes x n steps: on the explicit matrix of the operator (n^2 HVPs would take seconds)
    res = run(C.slq(C.MatrixOperator(H), steps=n, probe_vectors=torch.eye(n, dtype=torch.float64)))
    # with e_i probes and full Lanczos, (n/P) sum_p sum_j w f(theta) = tr f(H) exactly
    assert res.trace() == pytest.approx(float(exact.sum()), rel=1e-8)
    assert res.moment(2) * n == pytest.approx(float((exact**2).sum()), rel=1e-8)
    zero = 1e-6 * float(exact.abs().max())
    count, mass = res.negative(zero)
    neg = exact[exact < -zero]
    assert count == pytest.approx(neg.numel(), abs=1e-6)
    assert mass == pytest.approx(float(neg.abs().sum()), rel=1e-6)


def test_slq_reproduces_moments_up_to_2m_minus_1(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, masked=False)
    H = op.to_dense()
    v = torch.randn(op.dim, dtype=torch.float64)
    vh = v / v.norm()
    m = 3
    res = run(C.slq(op, steps=m, probe_vectors=v[None]))
    for k in range(0, 2 * m):
        exact = float(vh @ torch.linalg.matrix_power(H, k) @ vh)
        assert res.moment(k) == pytest.approx(exact, rel=1e-8), k


def test_density_integrates_to_one_and_first_moment_is_trace(tiny):
    model, ev, mask = tiny
    op = C.hessian_operator(model, ev, masked=False)
    H = op.to_dense()
    exact_trace = float(torch.trace(H))
    res = run(C.slq(op, probes=6, steps=20, seed=1))
    dens = C.spectral_density(res, sigma=None, points=4000)
    integral = np.trapezoid(dens.values, dens.grid)
    first = np.trapezoid(dens.grid * dens.values, dens.grid)
    assert integral == pytest.approx(1.0, abs=1e-6)
    assert first * op.dim == pytest.approx(res.trace(), rel=1e-6)
    # and with the whole space covered, the first moment is the exact trace
    # n probes x n steps: on the explicit matrix of the operator (n^2 HVPs would take seconds)
    full = run(C.slq(C.MatrixOperator(H), steps=op.dim, probe_vectors=torch.eye(op.dim, dtype=torch.float64)))
    dens = C.spectral_density(full, sigma=0.05, points=8000)
    first = np.trapezoid(dens.grid * dens.values, dens.grid)
    assert first * op.dim == pytest.approx(exact_trace, rel=1e-6)


def test_hutchinson_unbiased_with_standard_error(tiny):
    model, ev, mask = tiny
    H = C.hessian_operator(model, ev, masked=False).to_dense()
    exact = float(torch.trace(H))
    est = run(C.hutchinson(C.MatrixOperator(H), probes=4000, seed=0))
    assert est.stderr > 0
    assert abs(est.estimate - exact) <= 4 * est.stderr
    # Rademacher variance: 2 * sum_{i != j} H_ij^2
    var = 2 * float((H**2).sum() - (torch.diagonal(H) ** 2).sum())
    assert est.stderr == pytest.approx((var / 4000) ** 0.5, rel=0.1)
    # the HVP operator gives the same samples as the explicit matrix (same probes)
    small = run(C.hutchinson(C.hessian_operator(model, ev, masked=False), probes=5, seed=0))
    ref = run(C.hutchinson(C.MatrixOperator(H), probes=5, seed=0))
    assert np.allclose(small.samples, ref.samples, rtol=1e-9)


def test_operator_spectrum_with_density_and_trace(tiny):
    model, ev, mask = tiny
    opts = C.SpectrumOptions(top_k=2, max_steps=10, tol=1e-3, density_probes=2, density_steps=5, trace_probes=3)
    spec = run(C.hessian_spectrum(model, ev, mask, opts))
    assert spec.trace_source == "hutchinson" and spec.trace_stderr is not None
    assert spec.negative_source in ("slq", "eigenvalues")
    assert spec.density is not None and len(spec.density["grid"]) == len(spec.density["values"])
    assert spec.hvps == spec.lanczos_steps + 2 * 5 + 3
    assert set(spec.to_json()) >= {"top_eigenvalues", "bottom_eigenvalues", "trace", "hvps"}


# --- jobs, cancel, errors ---------------------------------------------------------------------


def test_cancel_leaves_model_unchanged(tiny):
    model, ev, mask = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    job = C.hessian_spectrum(model, ev, mask, C.SpectrumOptions(top_k=2, max_steps=50, tol=0.0))
    next(job)
    next(job)
    job.close()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_bad_inputs(tiny):
    model, ev, mask = tiny
    empty = MaskSet({k: torch.zeros_like(m) for k, m in mask.masks.items()})
    with pytest.raises(ValueError, match="no active coordinates"):
        C.hessian_operator(model, ev, empty)
    with pytest.raises(ValueError, match="no parameter"):
        C.hessian_operator(model, ev, layer="nope.weight")
    with pytest.raises(MaskError):
        C.hessian_operator(model, ev, MaskSet({"fc1.weight": torch.ones(3, 3, dtype=torch.bool)}))
    with pytest.raises(ValueError, match="out of range"):
        C.hessian_operator(model, ev, group=[("fc1.weight", [999])])
    with pytest.raises(ValueError):
        C.hessian_operator(model, C.EvalSet([]))
    with pytest.raises(ValueError):
        C.masked_point(model, None, {"fc1.weight": torch.zeros(10, 5)})
    with pytest.raises(ValueError):
        run(C.slq(C.MatrixOperator(torch.eye(3)), probes=0))
    # density 1: the masked operator is the dense one
    full = MaskSet.for_model(model)
    assert C.hessian_operator(model, ev, full).dim == 90


def test_eval_batches_fixed_order():
    class D:
        def split(self, which):
            return torch.arange(10.0)[:, None], torch.arange(10)

    ev = C.eval_batches(D(), 2, 3)
    assert [int(y[0]) for _, y in ev.batches] == [0, 3] and ev.n_samples == 6
    assert C.eval_batches(D(), 0, 4).n_samples == 10
    assert C.eval_batches(D(), 99, 4).n_samples == 10
    with pytest.raises(ValueError):
        C.eval_batches(D(), 1, 0)


# --- every number against the exact Hessian, on a few-hundred-parameter model ------------------


class Small(nn.Module):
    """8 -> 16 -> 6 with tanh: 224 prunable weights, 22 biases (246 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 6)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


@pytest.fixture(scope="module")
def small():
    gen = torch.Generator().manual_seed(11)
    model = Small().double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(64, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 6, (64,), generator=gen)
    ev = C.EvalSet([(x[:40], y[:40]), (x[40:], y[40:])])
    mask = MaskSet({
        "fc1.weight": torch.rand(16, 8, generator=gen) < 0.4,
        "fc2.weight": torch.rand(6, 16, generator=gen) < 0.6,
    })
    names = [n for n, _ in model.named_parameters()]
    names = ["fc1.weight", "fc2.weight"] + [n for n in names if n not in ("fc1.weight", "fc2.weight")]
    point = C.masked_point(model, mask)
    H = exact_hessian(model, ev, point, names)  # over every parameter, at theta = m * w
    return model, ev, mask, names, point, H


def _exact_sub(small, case):
    """(operator kwargs, exact principal submatrix of H) for each restriction."""
    model, ev, mask, names, point, H = small
    keep = keep_vector(mask, names, point)
    if case == "dense, all parameters":
        return dict(masked=False, include_other=True), H
    if case == "masked":
        k = keep.clone()
        k[224:] = False  # prunable weights only (the default)
        return dict(masked=True), H[k][:, k]
    if case == "masked, all parameters":
        return dict(masked=True, include_other=True), H[keep][:, keep]
    # one layer, masked: fc1.weight = coordinates 0..127 (the loss is convex in the last layer's
    # weights, so fc2.weight alone would have no negative curvature to check)
    sel = torch.zeros(H.shape[0], dtype=torch.bool)
    sel[:128] = mask.masks["fc1.weight"].reshape(-1)
    return dict(masked=True, layer="fc1.weight"), H[sel][:, sel]


CASES = ["dense, all parameters", "masked", "masked, all parameters", "one layer, masked"]


def _loss_at(model, ev, point):
    xs = torch.cat([x for x, _ in ev.batches])
    ys = torch.cat([y for _, y in ev.batches])
    with torch.no_grad():
        return float(nn.functional.cross_entropy(functional_call(model, point, (xs,)), ys))


@pytest.mark.parametrize("case", CASES)
def test_every_number_equals_the_exact_hessian(small, case):
    """Lanczos over the whole space: eigenvalues, lambda_max/min, kappa of the positive part,
    negative count and mass, trace, loss, all from the summary the views and the CLI show."""
    model, ev, mask, names, point, H = small
    kw, Hs = _exact_sub(small, case)
    e = torch.linalg.eigvalsh(Hs)
    n = Hs.shape[0]
    op = C.hessian_operator(model, ev, mask, **kw)
    # one Ritz check at the end (the per-step checks only decide when to stop)
    lz = run(C.lanczos(op, 4, 4, max_steps=n, tol=0.0, check_every=n))
    assert lz.exhausted and lz.steps == n
    s = C.summarize(lz, dim=op.dim, hvps=op.hvps, loss=op.loss(), parameters=op.coords.names)
    assert s.dim == n and s.hvps == n
    assert_close_rel(s.top_eigenvalues, e.flip(0)[:4])
    assert_close_rel(s.bottom_eigenvalues, e[:4])
    assert s.lambda_max == pytest.approx(float(e[-1]), rel=RTOL)
    assert s.lambda_min == pytest.approx(float(e[0]), rel=RTOL)
    zero = 1e-6 * float(e.abs().max())
    neg = e[e < -zero]
    assert neg.numel() > 0  # a random point: there is negative curvature to count
    assert s.negative_count == neg.numel() and s.negative_source == "eigenvalues"
    assert s.negative_mass == pytest.approx(float(neg.abs().sum()), rel=RTOL)
    assert s.trace == pytest.approx(float(e.sum()), rel=RTOL) and s.trace_source == "eigenvalues"
    assert s.trace == pytest.approx(float(torch.trace(Hs)), rel=RTOL)
    pos = e[e > zero]
    assert s.condition_number == pytest.approx(float(e[-1] / pos.min()), rel=RTOL)
    assert s.condition_kind.startswith("positive part")
    assert s.loss == pytest.approx(_loss_at(model, ev, point), rel=1e-10)


@pytest.mark.parametrize("case", ["masked", "one layer, masked"])
def test_early_stopped_lanczos_and_estimators_match_exact(small, case):
    """Lanczos stopping on its residual bound, before exhausting the space, still gives the
    extreme eigenvalues to 1e-4 relative; Hutchinson is within 4 standard errors of tr H[S,S];
    the SLQ density integrates to 1 and its first moment is the SLQ trace estimate."""
    model, ev, mask, *_ = small
    kw, Hs = _exact_sub(small, case)
    e = torch.linalg.eigvalsh(Hs)
    n = Hs.shape[0]
    opts = C.SpectrumOptions(top_k=2, bottom_k=2, max_steps=n, tol=1e-8, density_probes=4,
                             density_steps=12, trace_probes=200, density_points=3000)
    s = run(C.hessian_spectrum(model, ev, mask, opts, **kw))
    assert s.converged and s.lanczos_steps < n
    assert_close_rel(s.top_eigenvalues, e.flip(0)[:2])
    assert_close_rel(s.bottom_eigenvalues, e[:2])
    assert s.lambda_max == pytest.approx(float(e[-1]), rel=RTOL)
    assert s.trace_source == "hutchinson"
    assert abs(s.trace - float(e.sum())) <= 4 * s.trace_stderr
    grid, values = np.asarray(s.density["grid"]), np.asarray(s.density["values"])
    assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-6)
    op = C.hessian_operator(model, ev, mask, **kw)
    res = run(C.slq(op, probes=4, steps=12, seed=opts.seed + 1))  # the spectrum's own SLQ run
    assert np.allclose(C.spectral_density(res, points=3000).values, values)
    assert np.trapezoid(grid * values, grid) * n == pytest.approx(res.trace(), rel=1e-6)
    assert s.hvps == s.lanczos_steps + 4 * 12 + 200


# --- recurrent and attention models; ops without a second derivative -------------------------


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0].mean(1))


@pytest.mark.parametrize("cls", [TinyLSTM, TinyAttention])
def test_hvp_of_recurrent_and_attention_models_is_exact(cls):
    torch.manual_seed(4)
    model = cls().double()
    x = torch.randn(6, 5, 3 if cls is TinyLSTM else 4, dtype=torch.float64)
    ev = C.EvalSet([(x, torch.randint(0, 3, (6,)))])
    op = C.hessian_operator(model, ev)
    with C.second_order_compat():
        H = exact_hessian(model, ev, C.masked_point(model), op.coords.names)
    # recurrent models start on the unfused kernels; attention switches to them on the first
    # refusal of its fused kernel
    assert op.compat == (cls is TinyLSTM)
    assert torch.allclose(op.to_dense(), H, rtol=1e-8, atol=1e-10)


class _OnceDifferentiable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class NoSecondOrder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return _OnceDifferentiable.apply(self.fc(x))


@pytest.mark.parametrize("method", ["auto", "double-backward", "forward-over-reverse"])
def test_op_without_second_derivative_is_a_one_line_error_not_a_zero_hvp(method):
    model = NoSecondOrder()
    ev = C.EvalSet([(torch.randn(5, 3), torch.randint(0, 2, (5,)))])
    op = C.hessian_operator(model, ev, method=method)
    with pytest.raises(ValueError, match="no second derivative") as info:
        op.matvec(torch.randn(op.dim))
    assert len(str(info.value).splitlines()) == 1
