"""Lanczos, power iteration, SLQ and Hutchinson (core.curvature.lanczos) against exact eigenvalues.

The reference is torch.autograd.functional.hessian of the mean cross entropy over the evaluation
set, as a function of the flat vector of the operator's parameters, and torch.linalg.eigvalsh.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.core.curvature.exact import (
    assert_close_rel,
    exact_hessian,
)
from visualizer.core.curvature import lanczos, operator
from visualizer.core.tasks import run


def test_lanczos_top_and_bottom_match_eigvalsh(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, masked=False)
    H = exact_hessian(model, ev, operator.masked_point(model), op.coords.names)
    exact = torch.linalg.eigvalsh(H)
    res = run(lanczos.lanczos(op, 4, 3, max_steps=90, tol=1e-10))
    assert res.converged
    assert_close_rel(res.top, exact.flip(0)[:4])
    assert_close_rel(res.bottom, exact[:3])
    for lam, vec in zip(res.top, res.top_vectors):
        assert torch.linalg.norm(H @ vec - lam * vec) <= 1e-6 * exact.abs().max()
    assert res.hvps == res.steps == op.hvps


def test_lanczos_stops_on_residual_before_exhausting(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, masked=False)
    H = exact_hessian(model, ev, operator.masked_point(model), op.coords.names)
    lam_max = float(torch.linalg.eigvalsh(H)[-1])
    res = run(lanczos.lanczos(op, 1, 0, max_steps=90, tol=1e-3, bound="residual"))
    assert res.converged and not res.exhausted and res.steps < 90
    # the residual bound is rigorous: |lambda - theta| <= r
    assert abs(float(res.top[0]) - lam_max) <= float(res.top_errors[0]) + 1e-12
    assert abs(float(res.top[0]) - lam_max) <= 1e-3 * lam_max


def test_lanczos_on_matrix_with_invariant_subspace():
    # A diagonal matrix with repeated eigenvalues: Krylov spaces break down early (beta = 0);
    # the restart must still find every eigenvalue.
    d = torch.tensor([3.0, 3.0, 1.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    op = operator.MatrixOperator(torch.diag(d))
    res = run(lanczos.lanczos(op, 3, 2, max_steps=6, tol=1e-12))
    assert_close_rel(res.top, [3.0, 3.0, 1.0])
    assert_close_rel(res.bottom, [-2.0, 0.5])


def test_power_iteration_peer():
    torch.manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    lam = torch.linspace(-1, 10, 30, dtype=torch.float64)
    op = operator.MatrixOperator(q @ torch.diag(lam) @ q.T)
    est, n = lanczos.power_iteration(op, tol=1e-8, max_iter=5000)
    assert est == pytest.approx(10.0, rel=1e-6)
    assert n == op.hvps


def test_slq_with_identity_probes_is_exact(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    H = op.to_dense()
    n = op.dim
    exact = torch.linalg.eigvalsh(H)
    # n probes x n steps: on the explicit matrix of the operator (n^2 HVPs would take seconds)
    res = run(lanczos.slq(operator.MatrixOperator(H), steps=n, probe_vectors=torch.eye(n, dtype=torch.float64)))
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
    op = operator.hessian_operator(model, ev, masked=False)
    H = op.to_dense()
    v = torch.randn(op.dim, dtype=torch.float64)
    vh = v / v.norm()
    m = 3
    res = run(lanczos.slq(op, steps=m, probe_vectors=v[None]))
    for k in range(0, 2 * m):
        exact = float(vh @ torch.linalg.matrix_power(H, k) @ vh)
        assert res.moment(k) == pytest.approx(exact, rel=1e-8), k


def test_density_integrates_to_one_and_first_moment_is_trace(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, masked=False)
    H = op.to_dense()
    exact_trace = float(torch.trace(H))
    res = run(lanczos.slq(op, probes=6, steps=20, seed=1))
    dens = lanczos.spectral_density(res, sigma=None, points=4000)
    integral = np.trapezoid(dens.values, dens.grid)
    first = np.trapezoid(dens.grid * dens.values, dens.grid)
    assert integral == pytest.approx(1.0, abs=1e-6)
    assert first * op.dim == pytest.approx(res.trace(), rel=1e-6)
    # and with the whole space covered, the first moment is the exact trace
    # n probes x n steps: on the explicit matrix of the operator (n^2 HVPs would take seconds)
    full = run(lanczos.slq(operator.MatrixOperator(H), steps=op.dim, probe_vectors=torch.eye(op.dim, dtype=torch.float64)))
    dens = lanczos.spectral_density(full, sigma=0.05, points=8000)
    first = np.trapezoid(dens.grid * dens.values, dens.grid)
    assert first * op.dim == pytest.approx(exact_trace, rel=1e-6)


def test_hutchinson_unbiased_with_standard_error(tiny):
    model, ev, mask = tiny
    H = operator.hessian_operator(model, ev, masked=False).to_dense()
    exact = float(torch.trace(H))
    est = run(lanczos.hutchinson(operator.MatrixOperator(H), probes=4000, seed=0))
    assert est.stderr > 0
    assert abs(est.estimate - exact) <= 4 * est.stderr
    # Rademacher variance: 2 * sum_{i != j} H_ij^2
    var = 2 * float((H**2).sum() - (torch.diagonal(H) ** 2).sum())
    assert est.stderr == pytest.approx((var / 4000) ** 0.5, rel=0.1)
    # the HVP operator gives the same samples as the explicit matrix (same probes)
    small = run(lanczos.hutchinson(operator.hessian_operator(model, ev, masked=False), probes=5, seed=0))
    ref = run(lanczos.hutchinson(operator.MatrixOperator(H), probes=5, seed=0))
    assert np.allclose(small.samples, ref.samples, rtol=1e-9)


def test_basis_device_keeps_the_basis_on_cuda_only_when_it_fits(monkeypatch):
    """steps * dim * bytes against BASIS_MEMORY_SHARE of the free GPU memory (mem_get_info is
    replaced: no GPU is needed to check the rule)."""
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8_000_000, 16_000_000))
    assert lanczos.basis_device(cuda, 100, 10_000, torch.float32) == cuda  # 4 MB <= 0.5 * 8 MB
    assert lanczos.basis_device(cuda, 101, 10_000, torch.float32).type == "cpu"  # 4.04 MB > 4 MB
    assert lanczos.basis_device(cuda, 100, 10_000, torch.float64).type == "cpu"  # 8 MB
    assert lanczos.basis_device(torch.device("cpu"), 10**6, 10**6, torch.float32).type == "cpu"


def test_progress_says_where_the_basis_lives(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    stages = []
    run(lanczos.lanczos(op, 1, 0, max_steps=5, tol=0.0), lambda s: stages.append(s.stage))
    run(lanczos.slq(op, probes=1, steps=3), lambda s: stages.append(s.stage))
    assert stages[0] == "lanczos 1/5 (basis on the host)"
    assert stages[-1] == "slq probe 1/1 (basis on the host)"


def test_lanczos_works_in_float32_or_float64_only():
    mat = operator.MatrixOperator(torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.bfloat16)))
    lz = run(lanczos.lanczos(mat, 1, 1, max_steps=3))
    assert lz.top_vectors.dtype == torch.float32
    # the products themselves are the bfloat16 matrix's (relative precision 2^-8)
    assert float(lz.top[0]) == pytest.approx(3.0, rel=1e-2) and float(lz.bottom[0]) == pytest.approx(-2.0, rel=1e-2)
