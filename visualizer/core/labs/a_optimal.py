"""Lab: magnitude pruning of sensors against the A-optimal design.

Rows of A (m x d) are sensors measuring theta in R^d: y = A theta + noise with unit variance. Keeping
the rows S (|S| = k >= d), least squares estimates theta with covariance (A_S^T A_S)^{-1}; the
A-optimal design minimises its trace, the mean squared error
(Kiefer 1959; Pukelsheim 2006, "Optimal Design of Experiments"):

    S_opt = argmin_{|S| = k} trace((A_S^T A_S)^{-1}),

found here exhaustively over all m choose k subsets (the problem is NP-hard in general; Cerny &
Hladik 2012). The magnitude heuristic keeps the k rows of largest l2 norm, what magnitude pruning
does with the rows of a weight matrix. Per trial: both errors (traces) and the overlap
|S_opt ∩ S_mag| / k. See docs/theory.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np

from visualizer.core.tasks import Step

MAX_SUBSETS = 200_000
_BATCH = 20_000  # subsets per batched inverse
SINGULAR_COND = 1e12  # a Gram matrix this ill-conditioned counts as singular (error inf)


def a_error(A: np.ndarray, rows) -> float:
    """trace((A_S^T A_S)^{-1}) of the rows S; inf when A_S^T A_S is singular."""
    sub = A[list(rows)]
    gram = sub.T @ sub
    # the same singularity rule as the exhaustive search, so both errors are comparable
    if not np.linalg.cond(gram) < SINGULAR_COND:
        return math.inf
    return float(np.trace(np.linalg.inv(gram)))


def check_sizes(m: int, d: int, k: int) -> None:
    if d < 1 or m < 1:
        raise ValueError(f"m and d must be >= 1, got m = {m}, d = {d}")
    if not d <= k <= m:
        raise ValueError(f"k must be in [d, m] = [{d}, {m}] so that A_S^T A_S can be invertible, got {k}")
    count = math.comb(m, k)
    if count > MAX_SUBSETS:
        raise ValueError(f"{m} choose {k} = {count} subsets is over the exhaustive limit {MAX_SUBSETS}; "
                         "use a smaller m or a k nearer 0 or m")


def a_optimal_subset(A: np.ndarray, k: int) -> tuple[tuple[int, ...], float]:
    """The exhaustive A-optimal k-subset of A's rows and its error (ties: the first in
    itertools.combinations order)."""
    m, d = A.shape
    check_sizes(m, d, k)
    best, best_err = None, math.inf
    combos = itertools.combinations(range(m), k)
    while True:
        chunk = list(itertools.islice(combos, _BATCH))
        if not chunk:
            break
        idx = np.asarray(chunk)
        subs = A[idx]  # (batch, k, d)
        grams = np.einsum("bki,bkj->bij", subs, subs)
        # a singular Gram matrix is not a candidate: inf error
        ok = np.linalg.cond(grams) < SINGULAR_COND
        errs = np.full(len(chunk), math.inf)
        if ok.any():
            errs[ok] = np.trace(np.linalg.inv(grams[ok]), axis1=1, axis2=2)
        i = int(np.argmin(errs))
        if errs[i] < best_err:
            best, best_err = chunk[i], float(errs[i])
    if best is None:
        raise ValueError("every k-subset of the rows is rank deficient")
    return tuple(best), best_err


def magnitude_subset(A: np.ndarray, k: int) -> tuple[int, ...]:
    """The k rows of largest l2 norm (stable order for ties)."""
    order = np.argsort(-np.linalg.norm(A, axis=1), kind="stable")
    return tuple(sorted(int(i) for i in order[:k]))


@dataclass
class AOptimalResult:
    """trials: {trial, a_optimal_error, magnitude_error, ratio, overlap, a_optimal_rows,
    magnitude_rows} per random A."""

    m: int
    d: int
    k: int
    seed: int
    trials: list[dict]

    def to_json(self) -> dict:
        return asdict(self)

    def mean_overlap(self) -> float:
        return float(np.mean([t["overlap"] for t in self.trials]))

    def summary(self) -> str:
        ratios = [t["ratio"] for t in self.trials if math.isfinite(t["ratio"])]
        same = sum(t["overlap"] == 1.0 for t in self.trials)
        return (f"m = {self.m} rows, d = {self.d}, keep k = {self.k}: mean overlap "
                f"{self.mean_overlap():.2f}, same subset in {same}/{len(self.trials)} trials, "
                f"median error ratio magnitude / A-optimal {np.median(ratios):.3f}")


def random_sensors(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """Rows with unequal strengths (a log-normal scale times a Gaussian direction), as the rows of
    a trained layer have: with equal-norm rows the magnitude heuristic would have nothing to go on."""
    scale = np.exp(rng.normal(0.0, 0.5, size=(m, 1)))
    return scale * rng.normal(size=(m, d))


def a_optimal(m: int = 12, d: int = 3, k: int = 6, trials: int = 20, seed: int = 0) -> Generator[Step, None, AOptimalResult]:
    """A-optimal vs magnitude row selection on ``trials`` random m x d matrices."""
    check_sizes(m, d, k)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(trials):
        A = random_sensors(rng, m, d)
        opt, opt_err = a_optimal_subset(A, k)
        mag = magnitude_subset(A, k)
        mag_err = a_error(A, mag)
        row = {"trial": t, "a_optimal_error": opt_err, "magnitude_error": mag_err,
               "ratio": mag_err / opt_err, "overlap": len(set(opt) & set(mag)) / k,
               "a_optimal_rows": list(opt), "magnitude_rows": list(mag)}
        rows.append(row)
        yield Step(f"trial {t + 1}/{trials}", (t + 1) / trials,
                   AOptimalResult(m=m, d=d, k=k, seed=seed, trials=list(rows)))
    return AOptimalResult(m=m, d=d, k=k, seed=seed, trials=rows)
