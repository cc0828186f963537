"""Krylov methods on a symmetric :class:`~visualizer.core.curvature.operator.Operator`: Lanczos
for the extreme eigenpairs, stochastic Lanczos quadrature
(SLQ) for the spectral density and Hutchinson's trace estimator.

The algorithms are the textbook ones (Lanczos 1950; Paige 1971; Golub & Meurant for Gauss
quadrature; Ubaru, Chen & Saad 2017 for SLQ; Hutchinson 1989). PyHessian (GPL) was read about,
not copied. Every product goes through ``op.matvec``; the Lanczos basis lives on the operator's
device when it fits there (:func:`basis_device`), else on the host. Work is done in float32 or
float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from visualizer.core.curvature.operator import Operator, rademacher, work_dtype
from visualizer.core.tasks import Job, Step

# --- Lanczos ---------------------------------------------------------------------------------------

# Share of the device's free memory the Lanczos basis may take; the rest is left to the HVPs'
# activations (a double-backward graph of one batch).
BASIS_MEMORY_SHARE = 0.5


def basis_device(device: torch.device, rows: int, dim: int, dtype: torch.dtype) -> torch.device:
    """Where a Lanczos basis of ``rows`` vectors of length ``dim`` lives: on the operator's device
    when it is not CUDA, or when rows·dim·(bytes per entry) fits in :data:`BASIS_MEMORY_SHARE` of
    the GPU's free memory (``torch.cuda.mem_get_info``); otherwise on the host (each product then
    crosses the bus twice, but the run does not fail for lack of GPU memory)."""
    device = torch.device(device)
    if device.type != "cuda":
        return device
    need = rows * dim * torch.empty(0, dtype=dtype).element_size()
    free, _ = torch.cuda.mem_get_info(device)
    return device if need <= BASIS_MEMORY_SHARE * free else torch.device("cpu")


def _where(basis: torch.device, device: torch.device) -> str:
    """Progress text: which memory holds the basis."""
    if basis.type == "cpu":
        return "basis on the host"
    return f"basis on {basis}"


@dataclass
class LanczosResult:
    """Ritz pairs of the extreme ends of the spectrum.

    top: the largest eigenvalues, descending; bottom: the smallest, ascending. ``*_vectors`` are
    (k, dim) flat vectors on S. ``*_errors``: the residual error bounds |λ - θ| used to stop.
    ``exhausted``: the Krylov space is the whole space, so ``ritz_values`` are all eigenvalues.
    """

    top: torch.Tensor
    bottom: torch.Tensor
    top_vectors: torch.Tensor
    bottom_vectors: torch.Tensor
    top_errors: torch.Tensor
    bottom_errors: torch.Tensor
    ritz_values: torch.Tensor
    steps: int
    hvps: int
    converged: bool
    exhausted: bool
    basis_bytes: int


def _eigh_tridiagonal(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the symmetric tridiagonal T (ascending), by LAPACK's tridiagonal solver.

    Not np.linalg.eigh of the dense T: that goes through threaded OpenBLAS, which is orders of
    magnitude slower while torch's own threads are busy (docs/performance.md), and Lanczos
    solves T after every step."""
    return scipy.linalg.eigh_tridiagonal(np.ascontiguousarray(alphas), np.ascontiguousarray(betas))


def _error_bounds(theta: np.ndarray, resid: np.ndarray, bound: str) -> np.ndarray:
    """|λ - θ_i| ≤ r_i (any symmetric matrix); with ``bound='gap'`` also ≤ r_i² / δ_i where δ_i is
    the distance from θ_i to the rest of the spectrum, estimated conservatively by the nearest
    other Ritz value minus its own residual (Parlett, The Symmetric Eigenvalue Problem, §11.7)."""
    if bound == "residual" or theta.size < 2:
        return resid
    order = np.argsort(theta)
    t, r = theta[order], resid[order]
    gaps = np.full(t.size, np.inf)
    left = t[1:] - t[:-1] - r[:-1]
    right = t[1:] - t[:-1] - r[1:]
    gaps[1:] = np.minimum(gaps[1:], left)
    gaps[:-1] = np.minimum(gaps[:-1], right)
    with np.errstate(divide="ignore", invalid="ignore"):
        quad = np.where(gaps > 0, r**2 / gaps, np.inf)
    out = np.empty_like(resid)
    out[order] = np.minimum(r, quad)
    return out


def _orthogonal_restart(basis: torch.Tensor, gen: torch.Generator, dt: torch.dtype,
                        dev: torch.device) -> torch.Tensor | None:
    """A fresh unit vector orthogonal to ``basis`` (random, from ``gen``, orthogonalised twice),
    or None when the basis already spans the whole space."""
    n = basis.shape[1]
    for _ in range(3):  # a draw (nearly) inside the span is vanishingly rare; retry a few times
        r = torch.randn(n, generator=gen, dtype=dt).to(dev)
        scale = float(r.norm())
        for _ in range(2):
            r = r - basis.T @ (basis @ r)
        norm = float(r.norm())
        if norm > 1e-3 * scale:
            return r / norm
    return None


def lanczos(
    op: Operator,
    k_top: int = 1,
    k_bottom: int = 0,
    *,
    max_steps: int = 100,
    tol: float = 1e-3,
    bound: str = "gap",
    seed: int = 0,
    v0: torch.Tensor | None = None,
    want_vectors: bool = True,
    check_every: int = 1,
) -> Job[LanczosResult]:
    """Lanczos with full reorthogonalisation for the ``k_top`` largest and ``k_bottom`` smallest
    eigenpairs of a symmetric operator.

    A V_j = V_j T_j + β_j v_{j+1} e_jᵀ; the Ritz pair (θ_i, V_j s_i) has residual
    ‖A x - θ x‖ = |β_j s_{j,i}|. We stop when every wanted pair has an error bound (residual, or
    residual²/gap, :func:`_error_bounds`) below ``tol · max|θ|`` — the residual, not the change of
    the estimate. Each new vector is orthogonalised twice against the whole basis (classical
    Gram-Schmidt twice is enough, Giraud et al. 2005). The basis stays on the operator's device
    when it fits there, else on the host (:func:`basis_device`; the progress text says which);
    β_j and ‖A v_j‖ go to the CPU every step (the breakdown test), the tridiagonal matrix is
    solved once per check (``check_every`` steps). Returned vectors are on the operator's device.

    Breakdown (β_j ≤ ε·max_i ‖A v_i‖, ε the working precision's machine epsilon; e.g. a zero
    operator, or a start on an eigenvector): the Krylov space is invariant and its Ritz values are
    exact eigenvalues, but not necessarily the wanted extremes. Lanczos then restarts with a fresh
    random vector orthogonal to the basis (β_j = 0 in T, which becomes block diagonal) and goes on.
    After a restart, convergence also needs the wanted extremes of the newest block (the one
    started from a random vector) to meet the tolerance, so an exact but interior Ritz value of an
    earlier block is never reported as λ_max. A block started from a random vector that breaks
    down holds every distinct eigenvalue of A on its space, so for one wanted eigenvalue at each
    end the run stops there; for more it restarts, which finds repeated eigenvalues (Lanczos sees
    each distinct eigenvalue once per block). Never divides by β = 0: no NaN enters T.
    """
    n = op.dim
    if n < 1:
        raise ValueError("empty operator")
    k_top = max(0, min(k_top, n))
    k_bottom = max(0, min(k_bottom, n))
    if k_top + k_bottom == 0:
        raise ValueError("ask for at least one eigenvalue")
    steps_cap = max(1, min(max_steps, n))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dt = work_dtype(op.dtype, op.device)
    eps = float(torch.finfo(dt).eps)
    dev = basis_device(op.device, steps_cap + 1, n, dt)
    where = _where(dev, op.device)
    V = torch.zeros(steps_cap + 1, n, dtype=dt, device=dev)
    q = v0.to(dev, dt).clone() if v0 is not None else torch.randn(n, generator=gen, dtype=dt).to(dev)
    q_norm = float(q.norm())
    if not q_norm > 0:  # a zero (or NaN) start vector spans nothing: start at random instead
        q, v0 = torch.randn(n, generator=gen, dtype=dt).to(dev), None
        q_norm = float(q.norm())
    V[0] = q / q_norm
    alphas = torch.zeros(steps_cap, dtype=dt, device=dev)
    betas = torch.zeros(steps_cap, dtype=dt, device=dev)
    hvps0 = op.hvps
    j = 0
    converged = False
    exhausted = False
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    errors = np.zeros(0)
    block = 0  # first step of the current Krylov block (a restart opens a new one)
    random_block = v0 is None  # whether the current block started from a random vector
    av_max = 0.0  # max ‖A v_i‖: the scale of a breakdown
    for j in range(steps_cap):
        w = _apply(op, V[j])
        alpha = torch.dot(w, V[j])
        alphas[j] = alpha
        av_norm = w.norm()
        w = w - alpha * V[j]
        if j > block:
            w = w - betas[j - 1] * V[j - 1]
        basis = V[: j + 1]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        beta = w.norm()
        # one host sync per step (β and ‖Av‖ together): the breakdown test needs β every step
        beta_f, av = (float(t) for t in torch.stack([beta, av_norm]).cpu())
        av_max = max(av_max, av)
        broke = not beta_f > eps * av_max
        betas[j] = beta  # the residual norm of this step (set to 0 in T if Lanczos restarts)
        m = j + 1
        last = m == steps_cap
        if m % check_every == 0 or last or m == n or broke:
            theta, S, errors = _ritz(alphas[:m], betas[:m], bound)
            scale = max(float(np.max(np.abs(theta))), np.finfo(np.float64).tiny)
            want = np.r_[np.arange(m - min(k_top, m), m), np.arange(min(k_bottom, m))]
            if m == n:
                exhausted = True
                converged = True
                errors = np.zeros_like(errors)
                break
            enough = m >= k_top + k_bottom
            if broke and random_block and k_top <= 1 and k_bottom <= 1:
                # a random block's invariant space holds every distinct eigenvalue of A there
                # (beside those of the earlier blocks): the extremes are exact
                converged = True
                break
            if not broke and enough and np.all(errors[want] <= tol * scale):
                if block == 0 or _block_converged(alphas[block:m], betas[block:m], bound, k_top,
                                                  k_bottom, tol * scale):
                    converged = True
                    break
        if broke:
            betas[j] = 0.0  # T becomes block diagonal: the next vector is not w / β
            fresh = _orthogonal_restart(basis, gen, dt, dev)
            if fresh is None:  # the basis spans the space: T is A in that basis
                exhausted = converged = True
                errors = np.zeros_like(errors)
                break
            if not last:
                V[j + 1] = fresh
            block, random_block = j + 1, True
        elif not last:
            V[j + 1] = w / beta
        yield Step(f"lanczos {m}/{steps_cap} ({where})", m / steps_cap)
    m = len(theta)
    kt, kb = min(k_top, m), min(k_bottom, m)
    top_idx = np.arange(m - 1, m - 1 - kt, -1)
    bot_idx = np.arange(kb)
    Vm = V[:m]

    def vecs(idx: np.ndarray) -> torch.Tensor:
        if not want_vectors or idx.size == 0:
            return torch.zeros(idx.size, n if want_vectors else 0, dtype=dt, device=op.device)
        s = torch.as_tensor(S[:, idx], dtype=dt, device=dev)
        return (Vm.T @ s).T.contiguous().to(op.device)

    theta = np.asarray(theta, dtype=np.float64)  # host results (numpy: MPS has no float64)
    return LanczosResult(
        top=torch.from_numpy(theta[top_idx].copy()),
        bottom=torch.from_numpy(theta[bot_idx].copy()),
        top_vectors=vecs(top_idx),
        bottom_vectors=vecs(bot_idx),
        top_errors=torch.from_numpy(np.asarray(errors, dtype=np.float64)[top_idx].copy()),
        bottom_errors=torch.from_numpy(np.asarray(errors, dtype=np.float64)[bot_idx].copy()),
        ritz_values=torch.from_numpy(theta.copy()),
        steps=m,
        hvps=op.hvps - hvps0,
        converged=converged,
        exhausted=exhausted,
        basis_bytes=V.numel() * V.element_size(),
    )


def _ritz(alphas: torch.Tensor, betas: torch.Tensor, bound: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values (ascending), T's eigenvectors and error bounds of the m x m tridiagonal T
    with diagonal ``alphas`` and off-diagonal ``betas[:-1]``; ``betas[-1]`` is the residual norm.
    Moved to the host before the cast: MPS has no float64."""
    a = alphas.cpu().numpy().astype(np.float64)
    b = betas.cpu().numpy().astype(np.float64)
    theta, S = _eigh_tridiagonal(a, b[:-1])
    resid = np.abs(b[-1] * S[-1, :])
    return theta, S, _error_bounds(theta, resid, bound)


def _block_converged(alphas: torch.Tensor, betas: torch.Tensor, bound: str, k_top: int, k_bottom: int,
                     limit: float) -> bool:
    """Whether the wanted extremes of one Krylov block (after a restart) meet the tolerance."""
    theta, _, errors = _ritz(alphas, betas, bound)
    m = theta.size
    want = np.r_[np.arange(m - min(k_top, m), m), np.arange(min(k_bottom, m))]
    return bool(np.all(errors[want] <= limit))


# --- SLQ density and Hutchinson trace ----------------------------------------------------------------


@dataclass
class SLQResult:
    """Gauss quadrature of each probe: nodes θ_pj (Ritz values of T_p) and weights τ_pj² (the
    squared first components of T_p's eigenvectors, summing to 1 per probe).

    The spectral measure μ = (1/n) Σ_i δ(λ - λ_i) is estimated by (1/P) Σ_p Σ_j τ_pj² δ(λ - θ_pj):
    for each probe v̂ = v/‖v‖ and f polynomial of degree ≤ 2m-1, Σ_j τ_pj² f(θ_pj) = v̂ᵀ f(H) v̂
    exactly; with Rademacher probes n·E[v̂ᵀ f(H) v̂] = tr f(H).
    """

    nodes: torch.Tensor  # (P, m)
    weights: torch.Tensor  # (P, m)
    dim: int
    hvps: int
    basis_bytes: int

    def moment(self, k: int) -> float:
        """Estimate of (1/n) tr H^k."""
        return float((self.weights * self.nodes**k).sum(1).mean())

    def trace(self) -> float:
        """n · first moment: the SLQ trace estimate (equal to Hutchinson's on the same probes)."""
        return self.dim * self.moment(1)

    def negative(self, zero_tol: float) -> tuple[float, float]:
        """(count, mass) of eigenvalues below -zero_tol: n·μ(λ<-t) and n·∫_{λ<-t} |λ| dμ."""
        neg = self.nodes < -zero_tol
        count = self.dim * float((self.weights * neg).sum(1).mean())
        mass = self.dim * float((self.weights * self.nodes.abs() * neg).sum(1).mean())
        return count, mass


@dataclass
class Density:
    """A spectral density on a grid: values integrate to 1 (trapezoid) over ``grid``."""

    grid: np.ndarray
    values: np.ndarray
    sigma: float


def _apply(op: Operator, v: torch.Tensor) -> torch.Tensor:
    """op · v, brought back to v's device and dtype (the basis may live on the host)."""
    return op.matvec(v.to(op.device, op.dtype)).to(v.device, v.dtype)


def _lanczos_fixed(op: Operator, v: torch.Tensor, steps: int, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos steps from v with full reorthogonalisation: (alphas, betas) of T.

    Stops early on a breakdown (β_j ≤ ε·max_i ‖A v_i‖, ε the machine epsilon of the working
    precision; e.g. a zero operator, or a probe inside an invariant subspace): v then lies in an
    invariant subspace of dimension j + 1, and the (j + 1)-node Gauss quadrature of v's spectral
    measure is exact (Golub & Meurant), so no restart is needed and nothing is divided by 0.
    The basis lives on ``device`` (default: :func:`basis_device`)."""
    n = op.dim
    steps = min(steps, n)
    dt = work_dtype(op.dtype, op.device)
    eps = float(torch.finfo(dt).eps)
    dev = basis_device(op.device, steps, n, dt) if device is None else device
    V = torch.zeros(steps, n, dtype=dt, device=dev)
    v = v.to(dev, dt)
    V[0] = v / v.norm()
    alphas = torch.zeros(steps, dtype=dt, device=dev)
    betas = torch.zeros(steps, dtype=dt, device=dev)
    av_max = 0.0
    m = steps
    for j in range(steps):
        w = _apply(op, V[j])
        alphas[j] = torch.dot(w, V[j])
        av_norm = w.norm()
        w = w - alphas[j] * V[j]
        if j > 0:
            w = w - betas[j - 1] * V[j - 1]
        basis = V[: j + 1]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        betas[j] = w.norm()
        beta_f, av = (float(t) for t in torch.stack([betas[j], av_norm]).cpu())
        av_max = max(av_max, av)
        if not beta_f > eps * av_max:  # invariant subspace: the quadrature is exact with j + 1 nodes
            m = j + 1
            break
        if j + 1 < steps:
            V[j + 1] = w / betas[j]
    a = alphas[:m].cpu().numpy().astype(np.float64)
    b = betas[:m].cpu().numpy().astype(np.float64)
    return a, b[: m - 1]


def slq(
    op: Operator,
    probes: int = 10,
    steps: int = 30,
    *,
    seed: int = 0,
    probe_vectors: torch.Tensor | None = None,
    partials: bool = False,
) -> Job[SLQResult]:
    """Stochastic Lanczos quadrature: ``probes`` Rademacher probes, ``steps`` Lanczos steps each.
    ``probe_vectors`` (P, n) replaces the random probes (e.g. the identity's columns, for which
    the estimate of μ is exact once steps ≥ n). With ``partials`` each probe's step carries the
    estimate over the probes so far (an :class:`SLQResult` of p probes; the same numbers as a
    run stopped there)."""
    n = op.dim
    if probe_vectors is not None:
        probes = probe_vectors.shape[0]
    if probes < 1 or steps < 1:
        raise ValueError("SLQ needs at least one probe and one Lanczos step")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    m_max = min(steps, n)
    nodes = np.zeros((probes, m_max))  # float64 on the host (numpy: MPS has no float64)
    weights = np.zeros((probes, m_max))
    hvps0 = op.hvps
    dt = work_dtype(op.dtype, op.device)
    dev = basis_device(op.device, m_max, n, dt)
    where = _where(dev, op.device)
    for p in range(probes):
        if probe_vectors is not None:
            v = probe_vectors[p].to(dev, dt)
        else:
            v = rademacher(n, gen, dt, dev)
        a, b = _lanczos_fixed(op, v, steps, dev)
        theta, S = _eigh_tridiagonal(a, b)
        k = theta.size
        nodes[p, :k] = theta
        weights[p, :k] = S[0, :] ** 2
        so_far = None
        if partials:
            so_far = SLQResult(torch.from_numpy(nodes[: p + 1].copy()), torch.from_numpy(weights[: p + 1].copy()), n,
                               op.hvps - hvps0, m_max * n * torch.empty(0, dtype=dt).element_size())
        yield Step(f"slq probe {p + 1}/{probes} ({where})", (p + 1) / probes, so_far)
    basis_bytes = m_max * n * torch.empty(0, dtype=dt).element_size()
    return SLQResult(torch.from_numpy(nodes), torch.from_numpy(weights), n, op.hvps - hvps0, basis_bytes)


def spectral_density(
    result: SLQResult,
    *,
    sigma: float | None = None,
    points: int = 1000,
    grid: np.ndarray | None = None,
) -> Density:
    """ρ(t) = (1/P) Σ_p Σ_j τ_pj² N(t; θ_pj, σ²), on a grid reaching 5σ past the extreme nodes.

    Default σ: 1% of the nodes' range. It integrates to 1 and its first moment is the mean node
    (the trace estimate / n), up to the grid's quadrature error.
    """
    nodes = result.nodes.numpy()
    w = result.weights.numpy() / result.nodes.shape[0]
    live = w > 0
    lo, hi = float(nodes[live].min()), float(nodes[live].max())
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-8 * max(abs(lo), abs(hi), 1.0))
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
    t = np.asarray(grid, dtype=np.float64)[:, None]
    dens = np.exp(-0.5 * ((t - nodes[live][None, :]) / sigma) ** 2) @ w[live]
    dens /= sigma * math.sqrt(2 * math.pi)
    return Density(np.asarray(grid, dtype=np.float64), dens, float(sigma))


@dataclass
class TraceEstimate:
    """Hutchinson: tr H ≈ (1/P) Σ_p z_pᵀ H z_p, z Rademacher; stderr = std / √P."""

    estimate: float
    stderr: float
    probes: int
    samples: np.ndarray


def hutchinson(op: Operator, probes: int = 100, *, seed: int = 0) -> Job[TraceEstimate]:
    """tr H ≈ (1/P) Σ_p z_pᵀ H z_p with Rademacher probes z_p drawn from ``seed`` (Hutchinson 1989)."""
    if probes < 1:
        raise ValueError("Hutchinson needs at least one probe")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dt = work_dtype(op.dtype, op.device)
    samples = torch.zeros(probes, dtype=dt, device=op.device)
    for p in range(probes):
        z = rademacher(op.dim, gen, dt, op.device)
        samples[p] = torch.dot(z, op.matvec(z.to(op.device, op.dtype)).to(dt))
        yield Step(f"hutchinson {p + 1}/{probes}", (p + 1) / probes)
    s = samples.cpu().numpy().astype(np.float64)
    stderr = float(s.std(ddof=1) / math.sqrt(probes)) if probes > 1 else float("nan")
    return TraceEstimate(float(s.mean()), stderr, probes, s)
