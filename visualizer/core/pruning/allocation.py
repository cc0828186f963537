"""Sparsity allocation: how a global density budget is spread over the layers.

Every rule returns per-layer kept counts k_l whose sum is exactly the global budget
``K = floor(rho * d)`` of :func:`visualizer.core.pruning.ranking.kept_count` (d = all prunable
weights), so every allocation at a density keeps the same number of weights and only the
profile differs (docs/theory.md, "Sparsity allocation"):

- ``uniform``: every layer at the target, rho_l = rho. The floors k_l = floor(rho * d_l) sum to
  at most K; the K - sum(k_l) weights left over go one each to the layers with the largest
  remainders rho * d_l - k_l (ties: the earlier layer), so no layer is more than one weight away
  from rho * d_l.
- ``global``: one threshold over all scores (the ``global`` scope of the ranking); k_l is what
  that threshold keeps in layer l.
- ``erk``: Erdős–Rényi-Kernel (Evci et al. 2020, "Rigging the Lottery"): rho_l = eps * sum(shape_l)
  / prod(shape_l), i.e. (n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w) for a convolution and
  (n_in + n_out) / (n_in n_out) for a linear layer, with eps such that sum(rho_l d_l) = K. A layer
  whose rho_l would exceed 1 is made dense and eps is solved again over the rest (the capping of
  their reference code), until no layer exceeds 1.
- ``owl``: outlier-weighted layerwise sparsity (Yin et al. 2024). A layer's outlier ratio D_l is
  the share of its entries A_ij = |W_ij| * ||X_j||_2 greater than M times the layer's mean of A
  (||X_j|| from :func:`visualizer.core.pruning.calibration.input_norms`). Densities follow D_l
  inside a band of width 2*lambda: rho_l = rho + 2*lambda * (u_l - mean_d(u)) with u_l = (D_l -
  min D) / (max D - min D), the mean weighted by layer size d_l (the paper's plain mean over
  equal-sized blocks), so sum(rho_l d_l) = rho d; densities outside [0, 1] are clipped and the
  difference is shifted over the others.
- ``sensitivity``: the densities that minimise the summed measured loss increase
  sum_l Delta L_l(rho_l) subject to sum(k_l) <= K, each rho_l chosen among the measured levels
  of layer l (and 1.0 at no cost): a multiple-choice knapsack, solved exactly by a Pareto
  dynamic program over (kept, cost) or greedily by marginal cost per weight
  (:func:`solve_sensitivity`). Weights left under the budget are handed back to the layers in
  proportion to their pruned weights.

:func:`layer_budgets` is the one function every caller uses (the CLI's ``--allocation`` on prune,
sweep and imp, the window's Scope box, the density profile); :func:`allocation_mask` turns the
counts into a mask keeping each layer's top-k_l scores.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from visualizer.core.pruning.calibration import input_norms
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import (
    SCOPES,
    Ranking,
    build_ranking,
    check_density,
    first_k,
    kept_count,
)
from visualizer.core.tasks import Step

ALLOCATIONS = ("uniform", "global", "erk", "owl", "sensitivity")
ALLOCATION_TITLES = {
    "uniform": "uniform (every layer at the target)",
    "global": "global (one threshold)",
    "erk": "ERK (Erdős–Rényi-Kernel)",
    "owl": "OWL (outlier-weighted)",
    "sensitivity": "sensitivity (measured loss)",
}
OWL_M = 5.0  # outlier threshold: M times the layer's mean |W| * ||X|| (Yin et al. 2024 use 5)
OWL_LAMBDA = 0.08  # half-width of the density band around the target (Yin et al. 2024: 0.08)
SOLVERS = ("exact", "greedy")
# the exact knapsack keeps a Pareto front of (kept, cost) states; past this many states it
# would be slow, and the greedy solver takes over (the result says which solved it)
MAX_FRONT = 200_000


class AllocationError(ValueError):
    """An allocation that cannot meet the budget, or lacks the inputs its rule reads."""


def check_allocation(name: str) -> str:
    if name not in ALLOCATIONS:
        raise AllocationError(f"unknown allocation {name!r}; choose one of: {', '.join(ALLOCATIONS)}")
    return name


def budget(density: float, sizes: Mapping[str, int]) -> int:
    """K = floor(rho * d) over all layers (the ranking's exact rule)."""
    return kept_count(density, int(sum(sizes.values())))


# --- rounding real densities to exact counts ---------------------------------------------------


def apportion(densities: Mapping[str, float], sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Integer counts k_l (0 <= k_l <= d_l, sum = ``total``) closest to rho_l * d_l: the floors
    k_l = floor(rho_l d_l) (exact, :func:`kept_count`), then one more weight for the layers with
    the largest remainders rho_l d_l - k_l (ties: the earlier layer) until the sum is ``total``
    (largest-remainder rounding); a surplus is taken back from the smallest remainders."""
    names = list(sizes)
    cap = sum(int(sizes[n]) for n in names)
    if not 0 <= total <= cap:
        raise AllocationError(f"cannot keep {total} of {cap} weights")
    rho = {n: min(1.0, max(0.0, float(densities[n]))) for n in names}
    k = {n: kept_count(rho[n], int(sizes[n])) for n in names}
    rem = {n: rho[n] * int(sizes[n]) - k[n] for n in names}
    short = total - sum(k.values())
    if short > 0:
        order = sorted(range(len(names)), key=lambda i: (-rem[names[i]], i))
        while short > 0:
            moved = False
            for i in order:
                n = names[i]
                if short and k[n] < int(sizes[n]):
                    k[n] += 1
                    short -= 1
                    moved = True
            if not moved:  # pragma: no cover - total <= cap makes this unreachable
                raise AllocationError("allocation cannot meet the budget")
    elif short < 0:
        order = sorted(range(len(names)), key=lambda i: (rem[names[i]], -i))
        while short < 0:
            for i in order:
                n = names[i]
                if short and k[n] > 0:
                    k[n] -= 1
                    short += 1
    return k


# --- the rules ---------------------------------------------------------------------------------


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """ERK densities rho_l = min(1, eps * sum(shape_l) / prod(shape_l)) with sum(rho_l d_l) =
    rho d (Evci et al. 2020): eps solved over the layers not yet dense, a layer whose density
    would pass 1 is made dense, and eps is solved again (their capping loop)."""
    rho = check_density(density)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / math.prod(s)) if math.prod(s) else 0.0 for n, s in shapes.items()}
    target = rho * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense and sizes[n]]
        rest = target - sum(sizes[n] for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in free)
        if not free or divisor <= 0:
            if rest > 1e-9 * max(1.0, target):
                raise AllocationError(
                    f"erk cannot meet density {rho:.4g}: every layer is capped at density 1")
            eps = 0.0
            break
        eps = rest / divisor
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        top = max(raw[n] for n in over)
        dense.update(n for n in over if raw[n] == top)
    return {n: (1.0 if n in dense else eps * raw[n]) for n in shapes}


def outlier_ratio(activation: torch.Tensor, m: float = OWL_M) -> float:
    """D = share of the entries of A = |W| * ||X|| greater than M times the mean of A (OWL,
    Yin et al. 2024)."""
    a = activation.detach().double().reshape(-1)
    if a.numel() == 0:
        return 0.0
    return float((a > m * a.mean()).double().mean())


def outlier_ratios_job(model: torch.nn.Module, batches, m: float = OWL_M,
                       names: Sequence[str] | None = None) -> Generator[Step, None, dict[str, float]]:
    """D_l of every prunable weight (``names``, default all of the model's prunable weights) on
    the calibration ``batches`` (the workspace's criterion batches): A = |W| * ||X|| with the
    input norms of :func:`visualizer.core.pruning.calibration.input_norms`; a weight with no
    input norm (recurrent or attention projections) counts on |W| alone."""
    params = prunable_parameters(model)
    names = list(names or params)
    norms = yield from input_norms(model, batches)
    out = {}
    for n in names:
        w = params[n].detach().abs()
        a = w * norms[n].to(w.device, w.dtype) if n in norms else w
        out[n] = outlier_ratio(a, m)
    return out


def owl_densities(ratios: Mapping[str, float], sizes: Mapping[str, int], density: float,
                  lam: float = OWL_LAMBDA) -> dict[str, float]:
    """OWL densities rho_l = rho + 2*lambda * (u_l - sum(u d)/sum(d)), u_l = (D_l - min D) /
    (max D - min D) (all equal: every layer at rho), clipped to [0, 1] with the clipped part
    shifted over the others (:func:`_shift_to_budget`)."""
    rho = check_density(density)
    if not 0.0 <= lam <= 0.5:
        raise AllocationError(f"owl lambda must be in [0, 0.5], got {lam}")
    names = list(sizes)
    d = np.array([float(ratios[n]) for n in names])
    w = np.array([float(sizes[n]) for n in names])
    spread = d.max() - d.min() if d.size else 0.0
    u = (d - d.min()) / spread if spread > 0 else np.zeros_like(d)
    mean = float((u * w).sum() / w.sum()) if w.sum() else 0.0
    raw = {n: rho + 2.0 * lam * (float(u[i]) - mean) for i, n in enumerate(names)}
    return _shift_to_budget(raw, sizes, rho)


def _shift_to_budget(raw: Mapping[str, float], sizes: Mapping[str, int], rho: float) -> dict[str, float]:
    """clip(raw_l + c, 0, 1) with the one shift c that makes sum(rho_l d_l) = rho d (bisection:
    the sum is monotone in c); c = 0 when nothing is clipped."""
    names = list(sizes)
    w = np.array([float(sizes[n]) for n in names])
    r = np.array([float(raw[n]) for n in names])
    target = rho * w.sum()

    def kept(c: float) -> float:
        return float((np.clip(r + c, 0.0, 1.0) * w).sum())

    if abs(kept(0.0) - target) <= 1e-9 * max(1.0, target):
        c = 0.0
    else:
        lo, hi = -1.0 - r.max(), 1.0 - r.min()
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if kept(mid) < target:
                lo = mid
            else:
                hi = mid
        c = 0.5 * (lo + hi)
    return {n: float(np.clip(r[i] + c, 0.0, 1.0)) for i, n in enumerate(names)}


@dataclass(frozen=True)
class Knapsack:
    """The sensitivity solution: per-layer kept counts, the summed loss increase of the chosen
    levels, and which solver found it (``exact`` or ``greedy``)."""

    kept: dict[str, int]
    levels: dict[str, float]
    cost: float
    solver: str


def _choices(curve: Mapping[float, float], size: int) -> list[tuple[int, float, float]]:
    """(kept, cost, level) options of one layer: each measured level, plus 1.0 at no cost;
    fewer kept weights at a lower cost dominates and is kept, dominated options dropped."""
    opts = {size: (0.0, 1.0)}
    for level, cost in curve.items():
        k = kept_count(min(1.0, float(level)), size)
        c = max(0.0, float(cost))  # a measured gain (negative increase) counts as none
        if k not in opts or c < opts[k][0]:
            opts[k] = (c, float(level))
    out = sorted(((k, c, lv) for k, (c, lv) in opts.items()), key=lambda t: t[0])
    front, best = [], math.inf
    for k, c, lv in out:  # ascending kept: keep options strictly cheaper than any smaller one
        if c < best:
            front.append((k, c, lv))
            best = c
    return front


def solve_sensitivity(curves: Mapping[str, Mapping[float, float]], sizes: Mapping[str, int], total: int,
                      solver: str = "exact") -> Knapsack:
    """Minimise sum_l cost_l(k_l) subject to sum_l k_l <= ``total``, k_l among each layer's
    options (:func:`_choices`): a multiple-choice knapsack.

    ``exact``: a dynamic program over layers whose states are the Pareto front of (kept, cost)
    (a state with more weights kept and no lower cost is dropped), so the optimum over every
    combination is found without a table over all budgets; past :data:`MAX_FRONT` states the
    greedy solver answers instead. ``greedy``: start from each layer's smallest option and
    repeatedly undo the pruning step with the largest cost saved per weight added back (marginal
    cost) while the budget allows. Raises :class:`AllocationError` when even the lowest measured
    levels keep more than ``total``."""
    if solver not in SOLVERS:
        raise AllocationError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
    names = list(sizes)
    missing = [n for n in names if n not in curves]
    if missing:
        raise AllocationError(f"sensitivity allocation has no measured curve for {missing[0]}")
    options = {n: _choices(curves[n], int(sizes[n])) for n in names}
    floor = sum(opts[0][0] for opts in options.values())
    if floor > total:
        raise AllocationError(
            f"sensitivity allocation cannot meet the budget: the lowest measured levels keep {floor} of "
            f"{sum(sizes.values())} weights, more than {total}; measure lower levels")
    if solver == "exact":
        picked = _pareto(names, options, total)
        if picked is not None:
            return _knapsack_result(names, options, picked, "exact")
    return _knapsack_result(names, options, _greedy(names, options, total), "greedy")


def _pareto(names, options, total) -> list[int] | None:
    # states: (kept, cost, choices) sorted by kept with strictly decreasing cost
    front: list[tuple[int, float, tuple[int, ...]]] = [(0, 0.0, ())]
    for n in names:
        merged = sorted(((k + ok, c + oc, ch + (j,)) for k, c, ch in front
                         for j, (ok, oc, _lv) in enumerate(options[n]) if k + ok <= total),
                        key=lambda t: (t[0], t[1]))
        front, best = [], math.inf
        for state in merged:
            if state[1] < best - 1e-15:
                front.append(state)
                best = state[1]
        if len(front) > MAX_FRONT:
            return None
    return list(min(front, key=lambda t: (t[1], -t[0]))[2])


def _greedy(names, options, total) -> list[int]:
    idx = [0] * len(names)
    kept = sum(options[n][0][0] for n in names)
    while True:
        best, best_i = None, -1
        for i, n in enumerate(names):
            if idx[i] + 1 < len(options[n]):
                k0, c0, _ = options[n][idx[i]]
                k1, c1, _ = options[n][idx[i] + 1]
                if kept + k1 - k0 <= total:
                    rate = (c0 - c1) / (k1 - k0)
                    if best is None or rate > best:
                        best, best_i = rate, i
        if best_i < 0:
            return idx
        n = names[best_i]
        kept += options[n][idx[best_i] + 1][0] - options[n][idx[best_i]][0]
        idx[best_i] += 1


def _knapsack_result(names, options, picked, solver) -> Knapsack:
    kept = {n: options[n][j][0] for n, j in zip(names, picked)}
    return Knapsack(kept, {n: options[n][j][2] for n, j in zip(names, picked)},
                    sum(options[n][j][1] for n, j in zip(names, picked)), solver)


def _fill(kept: Mapping[str, int], sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Hand the weights left under the budget back: in proportion to each layer's pruned
    weights d_l - k_l (largest-remainder rounding), so the global count is exact."""
    spare = total - sum(kept.values())
    room = {n: int(sizes[n]) - int(kept[n]) for n in sizes}
    free = sum(room.values())
    if spare <= 0 or free == 0:
        return dict(kept)
    extra = apportion({n: room[n] and spare / free for n in sizes}, room, spare)
    return {n: int(kept[n]) + extra[n] for n in sizes}


def cap_budgets(kept: Mapping[str, int], caps: Mapping[str, int], total: int) -> dict[str, int]:
    """``kept`` with no layer above its cap (IMP: a layer cannot keep more than it still has), the
    excess handed to the layers below their cap in proportion to their room cap_l - k_l
    (largest-remainder rounding), so the sum stays ``total``."""
    capped = {n: min(int(kept[n]), int(caps[n])) for n in kept}
    spare = total - sum(capped.values())
    if spare <= 0:
        return capped
    room = {n: int(caps[n]) - capped[n] for n in kept}
    free = sum(room.values())
    if free < spare:
        raise AllocationError(f"cannot keep {total} weights: only {sum(int(c) for c in caps.values())} are left")
    extra = apportion({n: room[n] and spare / free for n in kept}, room, spare)
    return {n: capped[n] + extra[n] for n in kept}


# --- the one entry point -------------------------------------------------------------------------


def layer_budgets(
    allocation: str,
    density: float,
    shapes: Mapping[str, Sequence[int]],
    *,
    scores: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    outlier_ratios: Mapping[str, float] | None = None,
    curves: Mapping[str, Mapping[float, float]] | None = None,
    owl_lambda: float = OWL_LAMBDA,
    solver: str = "exact",
) -> dict[str, int]:
    """Kept weights per layer under ``allocation`` at global ``density`` (module docstring); the
    counts always sum to K = floor(rho * d). ``scores`` are read by ``global``, ``outlier_ratios``
    (:func:`outlier_ratio` per layer) by ``owl``, ``curves`` ({layer: {level: loss increase}},
    :func:`visualizer.core.pruning.sensitivity.loss_curves`) by ``sensitivity``."""
    check_allocation(allocation)
    rho = check_density(density)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = budget(rho, sizes)
    if allocation == "uniform":
        return apportion({n: rho for n in sizes}, sizes, total)
    if allocation == "global":
        if scores is None:
            raise AllocationError("global allocation needs the criterion's scores")
        ranking = Ranking.from_scores({n: scores[n] for n in shapes})
        ranking.set_density(rho)
        return ranking.layer_kept()
    if allocation == "erk":
        return apportion(erk_densities(shapes, rho), sizes, total)
    if allocation == "owl":
        if outlier_ratios is None:
            raise AllocationError("owl allocation needs each layer's outlier ratio (calibration data)")
        return apportion(owl_densities(outlier_ratios, sizes, rho, owl_lambda), sizes, total)
    if curves is None:
        raise AllocationError("sensitivity allocation needs measured sensitivity curves")
    return _fill(solve_sensitivity(curves, sizes, total, solver).kept, sizes, total)


def mask_from_budgets(scores: Mapping[str, torch.Tensor | np.ndarray], kept: Mapping[str, int],
                      **metadata: str) -> MaskSet:
    """Each layer keeps its ``kept[l]`` highest scores (ties: the lower index, as the ranking)."""
    masks = {}
    for n, s in scores.items():
        t = s.detach().to("cpu", torch.float32) if isinstance(s, torch.Tensor) else torch.from_numpy(np.asarray(s, np.float32))
        flat = t.reshape(-1) + 0.0  # -0.0 and +0.0 tie
        if torch.isnan(flat).any():
            raise ValueError(f"scores for {n} contain NaN: cannot rank them")
        masks[n] = first_k(flat, int(kept[n])).reshape(t.shape)
    return MaskSet(masks, dict(metadata))


class AllocatedRanking(Ranking):
    """A :class:`Ranking` whose cut follows an allocation: each layer is sorted once (scope
    ``layer``) and a density change moves layer l's cut to the k_l of :func:`layer_budgets`, so
    the slider stays a threshold lookup per layer. ``scope`` reads as the allocation's name.
    Build it with :func:`build_allocated_ranking`."""

    def set_density(self, density: float) -> None:
        rho = check_density(density)
        kept = self._budgets.get(rho)
        if kept is None:
            kept = layer_budgets(self.allocation, rho, dict(zip(self.names, self.shapes)), **self._inputs)
            self._budgets = {rho: kept}  # the last one: the slider asks again for the same density
        for g in self._groups:
            (i,) = g.layers
            self._move(g, int(kept[self.names[i]]))
        self._density = rho


def build_allocated_ranking(scores: Mapping[str, torch.Tensor | np.ndarray], allocation: str,
                            structure: str = "unstructured", *, channel_dims: Mapping[str, int] | None = None,
                            **inputs) -> Generator[Step, None, Ranking]:
    """The ranking of ``allocation`` (a job): ``global`` and ``layer`` are the plain scopes of
    :func:`visualizer.core.pruning.ranking.build_ranking`; the rules of :data:`ALLOCATIONS`
    (``inputs``: their :func:`layer_budgets` inputs) give an :class:`AllocatedRanking`. The rules
    other than ``global`` spread single weights (``unstructured``). ``channel_dims``: as
    :func:`~visualizer.core.pruning.ranking.build_ranking`'s, for the channel structure."""
    if allocation in SCOPES:
        return (yield from build_ranking(scores, allocation, structure, channel_dims=channel_dims))
    check_allocation(allocation)
    if structure != "unstructured":
        raise AllocationError(f"the {allocation} allocation spreads single weights: use structure unstructured")
    shapes = {n: tuple(s.shape) for n, s in scores.items()}
    layer_budgets(allocation, 1.0, shapes, scores=scores, **inputs)  # missing inputs fail here, at once
    ranking = AllocatedRanking._empty()
    ranking.allocation = allocation
    ranking._inputs = dict(inputs, scores=scores) if allocation == "global" else dict(inputs)
    ranking._budgets = {}
    yield from ranking._build(scores, "layer", "unstructured", {"allocation": allocation})
    ranking.scope = allocation
    return ranking


def allocation_mask(scores: Mapping[str, torch.Tensor | np.ndarray], density: float, allocation: str = "global",
                    **inputs) -> MaskSet:
    """The mask of ``allocation`` at ``density``: :func:`layer_budgets`, then each layer's top
    k_l scores (``global`` is the ranking's own global cut, the same mask). ``inputs`` are
    :func:`layer_budgets`'s keyword inputs."""
    check_allocation(allocation)
    meta = {"density": repr(float(density)), "allocation": allocation, "scope": "global" if allocation == "global" else "layer"}
    if allocation == "global":
        masks = Ranking.from_scores(scores, "global").mask_at(density)
        masks.metadata.update(meta)
        return masks
    shapes = {n: tuple(s.shape) for n, s in scores.items()}
    kept = layer_budgets(allocation, density, shapes, scores=scores, **inputs)
    return mask_from_budgets(scores, kept, **meta)
