"""Spectra of the loss Hessian for the views and the CLI: top/bottom eigenvalues, condition
number, negative mass, density and trace of one operator (:func:`operator_spectrum`), dense vs
masked at the same point, and the masked spectrum over rewind points.

Theory: docs/theory.md §10 ("Curvature of the restricted landscape"); the condition number
is κ = λ_max / λ_min (meaningful when λ_min > 0; see :func:`summarize`); interlacing gives
λ_max(H[S,S]) ≤ λ_max(H) for the masked principal submatrix (Cauchy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from visualizer.core.curvature.lanczos import (
    Density,
    LanczosResult,
    SLQResult,
    TraceEstimate,
    hutchinson,
    lanczos,
    slq,
    spectral_density,
)
from visualizer.core.curvature.operator import EvalSet, HessianOperator, Operator, hessian_operator
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Job, Step, mapped, sub

# --- summaries ---------------------------------------------------------------------------------------


@dataclass
class Spectrum:
    """What the views and the CLI show about one operator.

    ``condition_number``: κ = λ_max/λ_min when λ_min > zero_tol; otherwise κ₊ =
    λ_max / (smallest positive eigenvalue), the condition number of the positive part, when that
    eigenvalue is known (all eigenvalues computed, or a computed bottom eigenvalue is positive —
    the bottom-k are the k smallest, so the smallest positive among them is the global one);
    else None (then more than k eigenvalues are ≤ 0: ask for more). Eigenvalues with
    |λ| ≤ zero_tol = 1e-6·|λ|_max count as zero, neither negative nor positive.
    ``negative_count``/``negative_mass`` (Σ_{λ<0} |λ|): exact from the eigenvalues when Lanczos
    exhausted the space, else from the SLQ measure when probes were run
    (``negative_source='slq'``), else a lower bound from the bottom-k (``'bottom-k'``).
    """

    dim: int
    top_eigenvalues: list[float]
    bottom_eigenvalues: list[float]
    top_errors: list[float]
    bottom_errors: list[float]
    lambda_max: float
    lambda_min: float
    condition_number: float | None
    condition_kind: str
    negative_count: float
    negative_mass: float
    negative_source: str
    trace: float | None
    trace_stderr: float | None
    trace_source: str | None
    hvps: int
    lanczos_steps: int
    converged: bool
    loss: float
    density: dict | None = None
    top_vectors: torch.Tensor | None = field(default=None, repr=False)
    parameters: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("top_vectors",)}
        return out


def summarize(
    lz: LanczosResult,
    *,
    dim: int,
    hvps: int,
    loss: float,
    slq_result: SLQResult | None = None,
    density: Density | None = None,
    trace: TraceEstimate | None = None,
    parameters: Sequence[str] = (),
) -> Spectrum:
    top = lz.top.tolist()
    bottom = lz.bottom.tolist()
    allvals = lz.ritz_values.numpy()
    lam_max = float(allvals.max())
    lam_min = float(allvals.min())
    scale = max(abs(lam_max), abs(lam_min))
    zero_tol = 1e-6 * scale
    if lz.exhausted:
        known = allvals
    else:
        known = np.asarray(bottom)
    if lam_min > zero_tol:
        kappa, kind = lam_max / lam_min, "lambda_max/lambda_min"
    else:
        pos = known[known > zero_tol]
        if pos.size and (lz.exhausted or pos.size < len(known) or np.all(known > zero_tol)):
            kappa, kind = lam_max / float(pos.min()), "positive part: lambda_max/min positive"
        else:
            kappa, kind = None, "unknown: more than k eigenvalues <= 0"
    if lz.exhausted:
        neg = allvals[allvals < -zero_tol]
        ncount, nmass, nsrc = float(neg.size), float(np.abs(neg).sum()), "eigenvalues"
    elif slq_result is not None:
        ncount, nmass = slq_result.negative(zero_tol)
        nsrc = "slq"
    else:
        neg = np.asarray(bottom)
        neg = neg[neg < -zero_tol]
        ncount, nmass, nsrc = float(neg.size), float(np.abs(neg).sum()), "bottom-k"
    if trace is not None:
        tr, tr_se, tr_src = trace.estimate, trace.stderr, "hutchinson"
    elif lz.exhausted:
        tr, tr_se, tr_src = float(allvals.sum()), 0.0, "eigenvalues"
    elif slq_result is not None:
        tr, tr_se, tr_src = slq_result.trace(), None, "slq"
    else:
        tr, tr_se, tr_src = None, None, None
    dens = None
    if density is not None:
        dens = {"grid": density.grid.tolist(), "values": density.values.tolist(), "sigma": density.sigma}
        if slq_result is not None:
            dens.update(probes=int(slq_result.nodes.shape[0]), steps=int(slq_result.nodes.shape[1]))
    return Spectrum(
        dim=dim,
        top_eigenvalues=top,
        bottom_eigenvalues=bottom,
        top_errors=lz.top_errors.tolist(),
        bottom_errors=lz.bottom_errors.tolist(),
        lambda_max=lam_max,
        lambda_min=lam_min,
        condition_number=kappa,
        condition_kind=kind,
        negative_count=ncount,
        negative_mass=nmass,
        negative_source=nsrc,
        trace=tr,
        trace_stderr=tr_se,
        trace_source=tr_src,
        hvps=hvps,
        lanczos_steps=lz.steps,
        converged=lz.converged,
        loss=loss,
        density=dens,
        top_vectors=lz.top_vectors,
        parameters=list(parameters),
    )


@dataclass
class SpectrumOptions:
    """Knobs of :func:`operator_spectrum`, shared by the comparisons."""

    top_k: int = 5
    bottom_k: int | None = None  # None: same as top_k
    max_steps: int = 100
    tol: float = 1e-3
    density_probes: int = 0
    density_steps: int = 30
    sigma: float | None = None
    density_points: int = 500
    trace_probes: int = 0
    seed: int = 0
    partials: bool = False  # yield the spectrum so far after each SLQ probe (a slide draws it filling)


def operator_spectrum(op: HessianOperator | Operator, options: SpectrumOptions | None = None) -> Job[Spectrum]:
    """Lanczos (top-k, bottom-k), then optionally SLQ density and Hutchinson trace."""
    o = options or SpectrumOptions()
    bottom_k = o.top_k if o.bottom_k is None else o.bottom_k
    parts = 1 + (o.density_probes > 0) + (o.trace_probes > 0)
    span = 1.0 / parts
    hv0 = op.hvps
    lz = yield from sub(
        lanczos(op, o.top_k, bottom_k, max_steps=o.max_steps, tol=o.tol, seed=o.seed), 0.0, span, "eigen: "
    )
    at = span
    slq_res = dens = tr = None
    if o.density_probes > 0:
        params = op.coords.names if isinstance(op, HessianOperator) else []
        done = op.hvps

        def so_far(step: Step) -> Step:  # the eigenvalues found and the density of the probes so far
            if step.partial is None:
                return step
            part = summarize(lz, dim=op.dim, hvps=done - hv0 + step.partial.hvps, loss=float("nan"),
                             slq_result=step.partial, parameters=params,
                             density=spectral_density(step.partial, sigma=o.sigma, points=o.density_points))
            return Step(step.stage, step.fraction, part)

        slq_res = yield from sub(mapped(slq(op, o.density_probes, o.density_steps, seed=o.seed + 1,
                                           partials=o.partials), so_far), at, at + span, "density: ")
        dens = spectral_density(slq_res, sigma=o.sigma, points=o.density_points)
        at += span
    if o.trace_probes > 0:
        tr = yield from sub(hutchinson(op, o.trace_probes, seed=o.seed + 2), at, at + span, "trace: ")
    loss = op.loss() if isinstance(op, HessianOperator) else float("nan")
    params = op.coords.names if isinstance(op, HessianOperator) else []
    return summarize(
        lz, dim=op.dim, hvps=op.hvps - hv0, loss=loss, slq_result=slq_res, density=dens, trace=tr, parameters=params
    )


def hessian_spectrum(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet | None = None,
    options: SpectrumOptions | None = None,
    *,
    masked: bool = True,
    state: Mapping[str, torch.Tensor] | None = None,
    layer: str | None = None,
    group: Sequence[tuple[str, Sequence[int] | torch.Tensor]] | None = None,
    include_other: bool = False,
    method: str = "auto",
    dtype: torch.dtype | None = None,
) -> Job[Spectrum]:
    """Spectrum of H[S,S] at θ = m ⊙ w (see :func:`hessian_operator`)."""
    op = hessian_operator(
        model, evalset, mask, masked=masked, state=state, layer=layer, group=group,
        include_other=include_other, method=method, dtype=dtype,
    )
    return (yield from operator_spectrum(op, options))


@dataclass
class DenseVsMasked:
    """Both spectra at the same point θ = m ⊙ w; interlacing: masked.λ_max ≤ dense.λ_max."""

    dense: Spectrum
    masked: Spectrum | None  # None in a partial result (the masked one not started yet) and in a dense-only run (no mask)


def dense_vs_masked(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet,
    options: SpectrumOptions | None = None,
    **kw: Any,
) -> Job[DenseVsMasked]:
    """The dense Hessian and its masked principal submatrix, both at θ = m ⊙ w. With
    ``options.partials`` the pair so far as the density probes run (masked None until it starts)."""
    dense = yield from sub(mapped(hessian_spectrum(model, evalset, mask, options, masked=False, **kw),
                                  lambda s: _pair(s, None)), 0.0, 0.5, "dense ")
    yield Step("dense done", 0.5, DenseVsMasked(dense, None) if options is not None and options.partials else None)
    masked = yield from sub(mapped(hessian_spectrum(model, evalset, mask, options, masked=True, **kw),
                                   lambda s: _pair(s, dense)), 0.5, 1.0, "masked ")
    return DenseVsMasked(dense, masked)


def _pair(step: Step, dense: Spectrum | None) -> Step:
    """A partial spectrum as the pair so far: the dense one filling, or the masked one with the dense done."""
    if not isinstance(step.partial, Spectrum):
        return step
    pair = DenseVsMasked(step.partial, None) if dense is None else DenseVsMasked(dense, step.partial)
    return Step(step.stage, step.fraction, pair)


@dataclass
class RewindSpectrum:
    label: str
    spectrum: Spectrum


def _labelled(snapshots: Any) -> list[tuple[str, Mapping[str, torch.Tensor]]]:
    if isinstance(snapshots, Mapping) and snapshots and all(isinstance(v, Mapping) for v in snapshots.values()):
        return [(str(k), v) for k, v in snapshots.items()]
    out = []
    for i, s in enumerate(snapshots):
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[1], Mapping):
            out.append((str(s[0]), s[1]))
        elif isinstance(s, Mapping):
            out.append((f"snapshot {i}", s))
        else:
            raise ValueError("snapshots must be state dicts, (label, state dict) pairs or a dict label -> state dict")
    return out


def spectrum_over_rewinds(
    model: nn.Module,
    snapshots: Iterable[Mapping[str, torch.Tensor]] | Mapping[str, Mapping[str, torch.Tensor]],
    mask: MaskSet,
    evalset: EvalSet,
    options: SpectrumOptions | None = None,
    **kw: Any,
) -> Job[list[RewindSpectrum]]:
    """Spectrum of the masked Hessian H^m_τ at each rewind point θ_τ = m ⊙ w_τ (Frankle et al. 2020, docs/theory.md §10:
    rewinding to τ* may give a smaller λ_max and κ). ``snapshots``: plain state dicts (labels
    'snapshot i'), (label, state dict) pairs, or a dict label -> state dict, e.g. τ = 0, k1, k2.
    Each finished snapshot is yielded as a partial result."""
    items = _labelled(snapshots)
    if not items:
        raise ValueError("no snapshots given")
    out: list[RewindSpectrum] = []
    for i, (label, state) in enumerate(items):
        spec = yield from sub(
            hessian_spectrum(model, evalset, mask, options, masked=True, state=state, **kw),
            i / len(items), (i + 1) / len(items), f"{label}: ",
        )
        out.append(RewindSpectrum(label, spec))
        yield Step(f"{label} done", (i + 1) / len(items), partial=out[-1])
    return out
