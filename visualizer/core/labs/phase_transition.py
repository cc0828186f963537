"""Lab: the sparse-recovery phase transition, measured, with the l1 theory curve over it.

A k-sparse x in R^n (random support, N(0, 1) entries) is measured as y = A x with
A_ij ~ N(0, 1/m). Over a grid of undersampling delta = m / n and sparsity rho = k / m, each cell
records the fraction of trials a solver recovers x, success meaning a relative error
||x_hat - x|| / ||x|| < 1e-2. Solvers:

* OMP, orthogonal matching pursuit (Pati, Rezaiifar & Krishnaprasad 1993; Tropp & Gilbert 2007):
  k greedy steps, each adding the column (normalised) most correlated with the residual and
  refitting by least squares;
* ISTA for the lasso min 1/2 ||y - A x||^2 + lam ||x||_1 with a small lam (Daubechies, Defrise &
  De Mol 2004; run with Beck & Teboulle's 2009 FISTA momentum), then the k largest entries
  refitted by least squares (the debiasing step that removes the l1 shrinkage);
* IHT, iterative hard thresholding x <- H_k(x + mu A^T (y - A x)) with mu = 1 / ||A||_2^2
  (Blumensath & Davies 2009), then the same least-squares refit on its support.

The overlay is the Donoho-Tanner weak phase transition of l1 minimisation for signed signals
(the projected cross-polytope; Donoho & Tanner 2009), computed from its equivalent minimax form
(Donoho, Maleki & Montanari 2009, PNAS, eq. for rho_MSE):

    rho(delta) = max_{z >= 0} [1 - (2/delta) ((1 + z^2) Phi(-z) - z phi(z))]
                              / [1 + z^2 - 2 ((1 + z^2) Phi(-z) - z phi(z))],

which equals the polytope-counting threshold rho_W(delta) of the cross-polytope. Below the curve
l1 recovers most signals when n is large; see docs/theory.md.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special

from visualizer.core.tasks import Step

SOLVERS = ("omp", "ista", "iht")
SUCCESS_TOL = 1e-2  # relative l2 error below which a recovery counts as a success
DEFAULT_DELTAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_RHOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# --- the theory curve ------------------------------------------------------------------------


def _gaussian_tail_term(z: np.ndarray | float) -> np.ndarray:
    """(1 + z^2) Phi(-z) - z phi(z) = E[(|Z| - z)_+^2] / 2 for Z ~ N(0, 1)."""
    z = np.asarray(z, float)
    return (1 + z * z) * special.ndtr(-z) - z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _rho_at(z: float, delta: float) -> float:
    g = _gaussian_tail_term(z)
    return float((1 - 2 * g / delta) / (1 + z * z - 2 * g))


def weak_threshold(delta: float) -> float:
    """rho_W(delta) of l1 recovery (cross-polytope), by the Donoho-Maleki-Montanari 2009 formula
    of the module docstring; the maximising z is found with a bounded scalar search."""
    if not 0 < delta < 1:
        if delta >= 1:
            return 1.0
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    res = optimize.minimize_scalar(lambda z: -_rho_at(z, delta), bounds=(0.0, 10.0), method="bounded",
                                   options={"xatol": 1e-10})
    return max(0.0, -float(res.fun))


def weak_threshold_curve(deltas: Sequence[float]) -> list[float]:
    return [weak_threshold(d) for d in deltas]


# --- solvers ---------------------------------------------------------------------------------


def _refit(A: np.ndarray, y: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Least squares of y on the columns in ``support``; zeros elsewhere."""
    x = np.zeros(A.shape[1])
    if support.size:
        x[support] = np.linalg.lstsq(A[:, support], y, rcond=None)[0]
    return x


def omp(A: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Orthogonal matching pursuit with at most min(k, m) atoms (the refit is exact after m) and
    correlations taken against unit-norm columns, so a 1-sparse x is found whenever m >= 2."""
    m, n = A.shape
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    support: list[int] = []
    residual = y.copy()
    scale = max(np.linalg.norm(y), 1e-300)
    x = np.zeros(n)
    for _ in range(min(k, m)):
        corr = np.abs(A.T @ residual) / norms
        corr[support] = -1.0
        support.append(int(np.argmax(corr)))
        x = _refit(A, y, np.asarray(support))
        residual = y - A @ x
        if np.linalg.norm(residual) <= 1e-12 * scale:
            break
    return x


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-np.abs(x))[:k]


def ista(A: np.ndarray, y: np.ndarray, k: int, lam_ratio: float = 1e-3, iters: int = 500) -> np.ndarray:
    """Lasso by FISTA with lam = lam_ratio * ||A^T y||_inf (lam_max, where x = 0 is optimal),
    then the least-squares refit on the k largest entries."""
    L = np.linalg.norm(A, 2) ** 2
    lam = lam_ratio * np.max(np.abs(A.T @ y))
    x = np.zeros(A.shape[1])
    z, t = x.copy(), 1.0
    for _ in range(iters):
        g = z - A.T @ (A @ z - y) / L
        x_new = np.sign(g) * np.maximum(np.abs(g) - lam / L, 0.0)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return _refit(A, y, _top_k(x, min(k, A.shape[0])))


def iht(A: np.ndarray, y: np.ndarray, k: int, iters: int = 300) -> np.ndarray:
    """Iterative hard thresholding with step 1 / ||A||_2^2 (Blumensath & Davies 2009), then the
    least-squares refit on its final support."""
    mu = 1.0 / np.linalg.norm(A, 2) ** 2
    kk = min(k, A.shape[0])
    x = np.zeros(A.shape[1])
    for _ in range(iters):
        g = x + mu * (A.T @ (y - A @ x))
        x = np.zeros_like(g)
        keep = _top_k(g, kk)
        x[keep] = g[keep]
    return _refit(A, y, np.flatnonzero(x))


def recover(A: np.ndarray, y: np.ndarray, k: int, solver: str) -> np.ndarray:
    if solver == "omp":
        return omp(A, y, k)
    if solver == "ista":
        return ista(A, y, k)
    if solver == "iht":
        return iht(A, y, k)
    raise ValueError(f"unknown solver {solver!r} (use {', '.join(SOLVERS)})")


def relative_error(x_hat: np.ndarray, x: np.ndarray) -> float:
    return float(np.linalg.norm(x_hat - x) / max(np.linalg.norm(x), 1e-300))


def sparse_problem(rng: np.random.Generator, n: int, m: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, x, y): A_ij ~ N(0, 1/m), x k-sparse with random support and N(0, 1) entries, y = A x."""
    A = rng.normal(0.0, 1.0 / np.sqrt(m), size=(m, n))
    x = np.zeros(n)
    x[rng.choice(n, size=k, replace=False)] = rng.normal(size=k)
    return A, x, A @ x


def recovery_rate(n: int, m: int, k: int, solver: str, trials: int, rng: np.random.Generator) -> float:
    """Fraction of ``trials`` random problems the solver recovers (relative error < SUCCESS_TOL)."""
    wins = 0
    for _ in range(trials):
        A, x, y = sparse_problem(rng, n, m, k)
        wins += relative_error(recover(A, y, k, solver), x) < SUCCESS_TOL
    return wins / trials


# --- the lab ---------------------------------------------------------------------------------


@dataclass
class PhaseTransitionResult:
    """cells: {delta, rho, m, k, success} per grid cell; curve: the l1 weak threshold rho(delta)
    at ``curve_delta``."""

    n: int
    solver: str
    trials: int
    seed: int
    success_tol: float
    cells: list[dict]
    curve_delta: list[float]
    curve_rho: list[float]
    curve_source: str = "Donoho-Tanner l1 weak threshold (cross-polytope), via Donoho-Maleki-Montanari 2009"

    def to_json(self) -> dict:
        return asdict(self)

    def grid(self) -> tuple[list[float], list[float], np.ndarray]:
        """(deltas, rhos, success[rho index, delta index]) for a heatmap."""
        deltas = sorted({c["delta"] for c in self.cells})
        rhos = sorted({c["rho"] for c in self.cells})
        z = np.full((len(rhos), len(deltas)), np.nan)
        for c in self.cells:
            z[rhos.index(c["rho"]), deltas.index(c["delta"])] = c["success"]
        return deltas, rhos, z

    def summary(self) -> str:
        below = [c["success"] for c in self.cells if c["rho"] < weak_threshold(c["delta"])]
        above = [c["success"] for c in self.cells if c["rho"] >= weak_threshold(c["delta"])]
        mean = lambda v: f"{np.mean(v):.2f}" if v else "n/a"  # noqa: E731
        return (f"{self.solver.upper()}, n = {self.n}, {self.trials} trials per cell: mean success "
                f"{mean(below)} below the l1 curve, {mean(above)} above it")


@functools.cache
def l1_curve() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(delta, rho) of the l1 weak threshold on a fine grid: it depends on delta alone."""
    deltas = [float(d) for d in np.linspace(0.02, 0.98, 49)]
    return tuple(deltas), tuple(weak_threshold_curve(deltas))


def phase_transition(
    n: int = 50,
    solver: str = "omp",
    trials: int = 10,
    seed: int = 0,
    deltas: Sequence[float] = DEFAULT_DELTAS,
    rhos: Sequence[float] = DEFAULT_RHOS,
) -> Generator[Step, None, PhaseTransitionResult]:
    """Success probability of ``solver`` on the (delta, rho) grid; m = round(delta n) >= 1,
    k = max(1, round(rho m))."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r} (use {', '.join(SOLVERS)})")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    for name, values in (("delta", deltas), ("rho", rhos)):
        if not values or any(not 0 < v <= 1 for v in values):
            raise ValueError(f"every {name} must be in (0, 1]")
    rng = np.random.default_rng(seed)
    cells = []
    total = len(deltas) * len(rhos)
    for i, delta in enumerate(deltas):
        m = max(1, round(delta * n))
        for j, rho in enumerate(rhos):
            k = max(1, round(rho * m))
            rate = recovery_rate(n, m, k, solver, trials, rng)
            cell = {"delta": float(delta), "rho": float(rho), "m": m, "k": k, "success": rate}
            cells.append(cell)
            # the grid so far streams to the view: the cells fill in as they finish
            yield Step(f"{solver}: delta {delta:.2f}, rho {rho:.2f}", (i * len(rhos) + j + 1) / total,
                       PhaseTransitionResult(n=n, solver=solver, trials=trials, seed=seed,
                                             success_tol=SUCCESS_TOL, cells=list(cells),
                                             curve_delta=list(l1_curve()[0]), curve_rho=list(l1_curve()[1])))
    return PhaseTransitionResult(n=n, solver=solver, trials=trials, seed=seed, success_tol=SUCCESS_TOL,
                                 cells=cells, curve_delta=list(l1_curve()[0]),
                                 curve_rho=list(l1_curve()[1]))
