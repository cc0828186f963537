"""Lanczos, SLQ and Hutchinson (core.curvature.lanczos) against exact eigenvalues.

The reference is torch.autograd.functional.hessian of the mean cross entropy over the evaluation
set, as a function of the flat vector of the operator's parameters, and torch.linalg.eigvalsh.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.core.curvature.exact import (
    MatrixOperator,
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
    op = MatrixOperator(torch.diag(d))
    res = run(lanczos.lanczos(op, 3, 2, max_steps=6, tol=1e-12))
    assert_close_rel(res.top, [3.0, 3.0, 1.0])
    assert_close_rel(res.bottom, [-2.0, 0.5])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k_bottom", [0, 1])
def test_lanczos_from_an_eigenvector_restarts_and_finds_the_top(dtype, k_bottom):
    """diag(1..6) from e_0: the first step breaks down (β_0 = 0, the Krylov space is span{e_0}).
    Before the restart this returned λ_max = 1 reported as converged; the restart with a fresh
    orthogonal vector must reach 6 (and 1 at the bottom)."""
    op = MatrixOperator(torch.diag(torch.arange(1.0, 7.0, dtype=dtype)))
    e0 = torch.zeros(6, dtype=dtype)
    e0[0] = 1.0
    res = run(lanczos.lanczos(op, 1, k_bottom, v0=e0, max_steps=6, tol=1e-6))
    assert res.converged
    assert float(res.top[0]) == pytest.approx(6.0, rel=1e-5)
    if k_bottom:
        assert float(res.bottom[0]) == pytest.approx(1.0, rel=1e-5)
    assert torch.isfinite(res.ritz_values).all() and torch.isfinite(res.top_vectors).all()


def test_lanczos_does_not_stop_on_an_exact_interior_eigenvalue():
    """From an eigenvector of an interior eigenvalue (5 of diag(5, 1, 2, 3, 4, 6)), the first
    block's Ritz value is exact (residual 0) but not λ_max: convergence needs the restarted
    block's top too."""
    d = torch.tensor([5.0, 1.0, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    e0 = torch.zeros(6, dtype=torch.float64)
    e0[0] = 1.0
    for seed in range(5):
        res = run(lanczos.lanczos(MatrixOperator(torch.diag(d)), 1, 0, v0=e0, max_steps=6, tol=1e-6, seed=seed))
        assert float(res.top[0]) == pytest.approx(6.0, rel=1e-5)


@pytest.mark.parametrize("k_top,k_bottom,check_every", [(1, 0, 1), (2, 1, 1), (2, 1, 3)])
def test_lanczos_on_a_zero_operator_has_no_nan(k_top, k_bottom, check_every):
    op = MatrixOperator(torch.zeros(5, 5, dtype=torch.float64))
    res = run(lanczos.lanczos(op, k_top, k_bottom, max_steps=5, check_every=check_every))
    assert res.converged
    assert torch.isfinite(res.ritz_values).all() and torch.isfinite(res.top_vectors).all()
    assert res.top.abs().max() == 0.0


def test_slq_on_a_zero_operator_and_from_an_eigenvector():
    """A breakdown ends the probe's Krylov space: its quadrature is exact with the nodes so far
    (before, 0/0 put NaN into T and the eigen solver raised)."""
    zero = run(lanczos.slq(MatrixOperator(torch.zeros(4, 4, dtype=torch.float64)), probes=2, steps=4))
    assert torch.isfinite(zero.nodes).all() and zero.trace() == 0.0
    d = torch.arange(1.0, 7.0, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64)
    res = run(lanczos.slq(MatrixOperator(torch.diag(d)), steps=6, probe_vectors=eye))
    assert torch.isfinite(res.nodes).all()
    assert res.trace() == pytest.approx(21.0)
    assert res.moment(2) == pytest.approx(float((d**2).mean()))


def test_slq_with_identity_probes_is_exact(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    H = op.to_dense()
    n = op.dim
    exact = torch.linalg.eigvalsh(H)
    # n probes x n steps: on the explicit matrix of the operator (n^2 HVPs would take seconds)
    res = run(lanczos.slq(MatrixOperator(H), steps=n, probe_vectors=torch.eye(n, dtype=torch.float64)))
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
    full = run(lanczos.slq(MatrixOperator(H), steps=op.dim, probe_vectors=torch.eye(op.dim, dtype=torch.float64)))
    dens = lanczos.spectral_density(full, sigma=0.05, points=8000)
    first = np.trapezoid(dens.grid * dens.values, dens.grid)
    assert first * op.dim == pytest.approx(exact_trace, rel=1e-6)


def test_hutchinson_unbiased_with_standard_error(tiny):
    model, ev, mask = tiny
    H = operator.hessian_operator(model, ev, masked=False).to_dense()
    exact = float(torch.trace(H))
    est = run(lanczos.hutchinson(MatrixOperator(H), probes=4000, seed=0))
    assert est.stderr > 0
    assert abs(est.estimate - exact) <= 4 * est.stderr
    # Rademacher variance: 2 * sum_{i != j} H_ij^2
    var = 2 * float((H**2).sum() - (torch.diagonal(H) ** 2).sum())
    assert est.stderr == pytest.approx((var / 4000) ** 0.5, rel=0.1)
    # the HVP operator gives the same samples as the explicit matrix (same probes)
    small = run(lanczos.hutchinson(operator.hessian_operator(model, ev, masked=False), probes=5, seed=0))
    ref = run(lanczos.hutchinson(MatrixOperator(H), probes=5, seed=0))
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
    mat = MatrixOperator(torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.bfloat16)))
    lz = run(lanczos.lanczos(mat, 1, 1, max_steps=3))
    assert lz.top_vectors.dtype == torch.float32
    # the products themselves are the bfloat16 matrix's (relative precision 2^-8)
    assert float(lz.top[0]) == pytest.approx(3.0, rel=1e-2) and float(lz.bottom[0]) == pytest.approx(-2.0, rel=1e-2)
