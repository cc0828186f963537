"""Spectra, interlacing, rewinds and every reported number (core.curvature.spectrum) against the
exact Hessian.

The reference is torch.autograd.functional.hessian of the mean cross entropy over the evaluation
set, as a function of the flat vector of the operator's parameters, and torch.linalg.eigvalsh.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from tests.core.curvature.exact import (
    RTOL,
    MatrixOperator,
    assert_close_rel,
    exact_hessian,
    keep_vector,
)
from visualizer.core.curvature import lanczos, operator, spectrum
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import run


def test_interlacing_dense_vs_masked_at_same_point(tiny):
    model, ev, mask = tiny
    # tol=0: Lanczos runs until the Krylov space is the whole space (exhausted)
    opts = spectrum.SpectrumOptions(top_k=3, bottom_k=3, max_steps=200, tol=0.0)
    both = run(spectrum.dense_vs_masked(model, ev, mask, opts))
    point = operator.masked_point(model, mask)
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
    lz = run(lanczos.lanczos(MatrixOperator(torch.diag(lam)), 1, 1, tol=1e-12))
    s = spectrum.summarize(lz, dim=5, hvps=lz.hvps, loss=0.0)
    assert s.condition_number == pytest.approx(16.0, rel=1e-10)
    assert s.condition_kind == "lambda_max/lambda_min"
    assert s.negative_count == 0


def test_spectrum_over_rewinds(tiny):
    model, ev, mask = tiny
    torch.manual_seed(5)
    snaps = []
    for _ in range(2):
        snaps.append({k: v + 0.3 * torch.randn_like(v) for k, v in model.state_dict().items()})
    opts = spectrum.SpectrumOptions(top_k=2, bottom_k=1, max_steps=200, tol=1e-10)
    seen = []
    out = run(spectrum.spectrum_over_rewinds(model, [("tau=0", snaps[0]), ("tau=k1", snaps[1])], mask, ev, opts),
              on_step=lambda s: seen.append(s.partial))
    assert [r.label for r in out] == ["tau=0", "tau=k1"]
    assert any(isinstance(p, spectrum.RewindSpectrum) for p in seen)
    names = ["fc1.weight", "fc2.weight"]
    for r, snap in zip(out, snaps):
        point = operator.masked_point(model, mask, snap)
        H = exact_hessian(model, ev, point, names)
        keep = keep_vector(mask, names, point)
        em = torch.linalg.eigvalsh(H[keep][:, keep])
        assert_close_rel(r.spectrum.top_eigenvalues, em.flip(0)[:2])
    # the model itself is untouched
    assert not any(torch.equal(model.state_dict()[k], snaps[0][k]) for k in names)


def test_operator_spectrum_with_density_and_trace(tiny):
    model, ev, mask = tiny
    opts = spectrum.SpectrumOptions(top_k=2, max_steps=10, tol=1e-3, density_probes=2, density_steps=5, trace_probes=3)
    spec = run(spectrum.hessian_spectrum(model, ev, mask, opts))
    assert spec.trace_source == "hutchinson" and spec.trace_stderr is not None
    assert spec.negative_source in ("slq", "eigenvalues")
    assert spec.density is not None and len(spec.density["grid"]) == len(spec.density["values"])
    assert spec.hvps == spec.lanczos_steps + 2 * 5 + 3
    assert set(spec.to_json()) >= {"top_eigenvalues", "bottom_eigenvalues", "trace", "hvps"}


def test_cancel_leaves_model_unchanged(tiny):
    model, ev, mask = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    job = spectrum.hessian_spectrum(model, ev, mask, spectrum.SpectrumOptions(top_k=2, max_steps=50, tol=0.0))
    next(job)
    next(job)
    job.close()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


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
    ev = operator.EvalSet([(x[:40], y[:40]), (x[40:], y[40:])])
    mask = MaskSet({
        "fc1.weight": torch.rand(16, 8, generator=gen) < 0.4,
        "fc2.weight": torch.rand(6, 16, generator=gen) < 0.6,
    })
    names = [n for n, _ in model.named_parameters()]
    names = ["fc1.weight", "fc2.weight"] + [n for n in names if n not in ("fc1.weight", "fc2.weight")]
    point = operator.masked_point(model, mask)
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
    op = operator.hessian_operator(model, ev, mask, **kw)
    # one Ritz check at the end (the per-step checks only decide when to stop)
    lz = run(lanczos.lanczos(op, 4, 4, max_steps=n, tol=0.0, check_every=n))
    assert lz.exhausted and lz.steps == n
    s = spectrum.summarize(lz, dim=op.dim, hvps=op.hvps, loss=op.loss(), parameters=op.coords.names)
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
    opts = spectrum.SpectrumOptions(top_k=2, bottom_k=2, max_steps=n, tol=1e-8, density_probes=4,
                             density_steps=12, trace_probes=200, density_points=3000)
    s = run(spectrum.hessian_spectrum(model, ev, mask, opts, **kw))
    assert s.converged and s.lanczos_steps < n
    assert_close_rel(s.top_eigenvalues, e.flip(0)[:2])
    assert_close_rel(s.bottom_eigenvalues, e[:2])
    assert s.lambda_max == pytest.approx(float(e[-1]), rel=RTOL)
    assert s.trace_source == "hutchinson"
    assert abs(s.trace - float(e.sum())) <= 4 * s.trace_stderr
    grid, values = np.asarray(s.density["grid"]), np.asarray(s.density["values"])
    assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-6)
    op = operator.hessian_operator(model, ev, mask, **kw)
    res = run(lanczos.slq(op, probes=4, steps=12, seed=opts.seed + 1))  # the spectrum's own SLQ run
    assert np.allclose(lanczos.spectral_density(res, points=3000).values, values)
    assert np.trapezoid(grid * values, grid) * n == pytest.approx(res.trace(), rel=1e-6)
    assert s.hvps == s.lanczos_steps + 4 * 12 + 200
