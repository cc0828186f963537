"""Lab: the chance that magnitude pruning at initialisation finds a k-sparse support exactly.

Stylised model (docs/theory.md, "a winning mask by chance"): the weights start as
w0 ~ N(0, sigma^2)^n, the target is a k-sparse support S (here the first k coordinates), and the
mask keeps |w0_i| >= t. The mask is exactly S iff every |w0_i| on S is at least t and every one
off S is below t, so with Phi the standard normal CDF and tau = t / sigma

    p(tau) = [2 (1 - Phi(tau))]^k * [2 Phi(tau) - 1]^(n - k).

The formula is evaluated in log space (p is tiny for large n); a Monte Carlo estimate with its
binomial standard error sqrt(p (1 - p) / trials) checks it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special

from visualizer.core.tasks import Step

DEFAULT_RATIOS = tuple(np.round(np.linspace(0.25, 3.0, 12), 4))
CHUNK = 50_000  # trials per Monte Carlo batch: bounds memory at CHUNK x n floats


def log_p_correct(tau: np.ndarray | float, n: int, k: int) -> np.ndarray:
    """log p(tau) = k log(2 Phi(-tau)) + (n - k) log(2 Phi(tau) - 1), stable at both ends.

    2 (1 - Phi(tau)) = 2 Phi(-tau) = erfc(tau / sqrt 2); 2 Phi(tau) - 1 = erf(tau / sqrt 2).
    log erf loses digits when erf is near 1 (large tau): there log1p(-erfc) is used instead."""
    tau = np.asarray(tau, dtype=float)
    log_keep = np.log(2.0) + special.log_ndtr(-tau)
    u = tau / np.sqrt(2.0)
    with np.errstate(divide="ignore"):
        log_drop = np.where(u < 1.0, np.log(special.erf(u)), np.log1p(-special.erfc(u)))
    # an empty support or off-support set contributes log 1 = 0 (not 0 * -inf)
    keep = k * log_keep if k > 0 else 0.0
    drop = (n - k) * log_drop if n > k else 0.0
    return keep + drop


def p_correct(tau: np.ndarray | float, n: int, k: int) -> np.ndarray:
    """The formula p(tau) of the module docstring."""
    return np.exp(log_p_correct(tau, n, k))


def check_settings(n: int, k: int, sigma: float, trials: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n] = [0, {n}], got {k}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")


@dataclass
class MaskProbabilityResult:
    """formula[i], monte_carlo[i], stderr[i] at threshold thresholds[i] = t_over_sigma[i] * sigma.

    stderr is sqrt(p (1 - p) / trials) with p the formula's value: the standard error the Monte
    Carlo estimate has if the formula is right (an estimate of 0 hits would claim an error of 0)."""

    n: int
    k: int
    sigma: float
    trials: int
    seed: int
    t_over_sigma: list[float]
    thresholds: list[float]
    formula: list[float]
    monte_carlo: list[float]
    stderr: list[float]
    curve_t_over_sigma: list[float]  # the formula on a fine grid, for drawing it as a curve
    curve_formula: list[float]

    def to_json(self) -> dict:
        return asdict(self)

    def rows(self) -> list[dict]:
        return [{"t_over_sigma": r, "threshold": t, "formula": f, "monte_carlo": mc, "stderr": se}
                for r, t, f, mc, se in zip(self.t_over_sigma, self.thresholds, self.formula,
                                           self.monte_carlo, self.stderr)]

    def best(self) -> dict:
        """The grid point where the formula is largest."""
        return max(self.rows(), key=lambda r: r["formula"])

    def summary(self) -> str:
        b = self.best()
        return (f"n = {self.n}, k = {self.k}: best t/sigma = {b['t_over_sigma']:.3g} with p = "
                f"{b['formula']:.4g} (Monte Carlo {b['monte_carlo']:.4g}, standard error {b['stderr']:.2g}, "
                f"{self.trials} draws)")


def mask_probability(
    n: int = 10,
    k: int = 2,
    sigma: float = 1.0,
    thresholds: Sequence[float] | None = None,
    trials: int = 100_000,
    seed: int = 0,
) -> Generator[Step, None, MaskProbabilityResult]:
    """Formula vs Monte Carlo for the exact-support probability over thresholds t (default: a grid
    of t / sigma in [0.25, 3])."""
    check_settings(n, k, sigma, trials)
    ts = np.asarray([r * sigma for r in DEFAULT_RATIOS] if thresholds is None else list(thresholds), float)
    if ts.size == 0 or np.any(ts < 0) or not np.all(np.isfinite(ts)):
        raise ValueError("thresholds must be finite and >= 0")
    rng = np.random.default_rng(seed)
    hits = np.zeros(ts.size)
    done = 0
    while done < trials:
        size = min(CHUNK, trials - done)
        w = np.abs(rng.normal(0.0, sigma, size=(size, n)))
        # the mask equals S = {0..k-1} iff max off S < t <= min on S
        low = w[:, :k].min(axis=1) if k > 0 else np.full(size, np.inf)
        high = w[:, k:].max(axis=1) if k < n else np.full(size, -np.inf)
        hits += ((high[:, None] < ts[None, :]) & (low[:, None] >= ts[None, :])).sum(axis=0)
        done += size
        # the estimate so far streams to the view: the points settle as the draws come in
        yield Step(f"Monte Carlo {done}/{trials}", done / trials, _result(n, k, sigma, seed, ts, hits, done))
    return _result(n, k, sigma, seed, ts, hits, trials)


def _result(n: int, k: int, sigma: float, seed: int, ts: np.ndarray, hits: np.ndarray,
            draws: int) -> MaskProbabilityResult:
    """The result after ``draws`` Monte Carlo draws with ``hits`` exact-support counts."""
    p = p_correct(ts / sigma, n, k)
    curve = np.linspace(0.0, max(3.0, float(ts.max() / sigma)), 151)
    return MaskProbabilityResult(
        n=n, k=k, sigma=float(sigma), trials=draws, seed=seed,
        t_over_sigma=[float(t / sigma) for t in ts], thresholds=[float(t) for t in ts],
        formula=[float(v) for v in p],
        monte_carlo=[float(v) for v in hits / draws],
        stderr=[float(v) for v in np.sqrt(p * (1 - p) / draws)],
        curve_t_over_sigma=[float(v) for v in curve],
        curve_formula=[float(v) for v in p_correct(curve, n, k)],
    )
