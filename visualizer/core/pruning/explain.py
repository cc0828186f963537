"""How a criterion scores one weight, step by step, with the app's own numbers.

For one entry i of one prunable tensor, :func:`explain_weight` returns what goes into its score
(w_i, the gradient g_i or the batch gradients g_b,i, (Hg)_i, the Hutchinson estimate of H_ii),
the criterion's formula, the formula with those values substituted, the score, its rank among
the weights it competes with (the scope), and the threshold at a density: the lowest score that
is still kept when k = ⌊ρ d⌋ weights are kept (docs/theory.md §3, §5).

One home for every number: the scores, the rank and the kept set come from the criterion job
:func:`visualizer.core.pruning.criteria.score` and the ranking rules of
:mod:`visualizer.core.pruning.ranking`; the quantities shown beside them come from the same
curvature engine the criteria use (:func:`visualizer.core.curvature.operator.criterion_operator`,
the same batches, the same Hutchinson seed and probes), and the substituted formula is checked
against the app's score (tests/core/pruning/test_explain.py).

Criteria explained: magnitude, random, snip, taylor, grasp, grasp-reversed, obd (the element
criteria; the channel criteria score whole channels and have no per-weight derivation).
:func:`instructive_weight` picks a weight to explain: one that one criterion keeps and another
removes at the same density.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from visualizer.core.curvature.operator import criterion_operator, eval_mode
from visualizer.core.pruning.criteria import (
    CRITERIA,
    Batch,
    Scores,
    diagonal_estimate,
    materialise_batches,
    score,
)
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import (
    SCOPES,
    check_density,
    kept_count,
    mask_from_scores,
    sorted_order,
)
from visualizer.core.tasks import Job, Step, sub

EXPLAINED = ("magnitude", "random", "snip", "taylor", "grasp", "grasp-reversed", "obd")

# batch terms written out in Taylor's substituted sum before it is shortened with "…"
SHOWN_BATCHES = 6


@dataclass(frozen=True)
class Explanation:
    """One weight's score, derived step by step.

    quantities: the inputs by symbol (``w``, ``g``, ``g_b`` per batch, ``(Hg)_i``, ``H_ii``,
    ``S``), as Python floats. formula: the criterion's rule; substituted: the same with the
    numbers in. score: the keep score the ranking uses (higher = kept), equal to the criterion
    job's value for this entry. rank: 1 = kept first, among ``scope_size`` weights (the whole
    model for scope ``global``, the tensor for ``layer``). kept_count: k = ⌊ρ d⌋ of the scope.
    threshold: the k-th highest score of the scope (None when k = 0); kept: rank ≤ k.
    steps: (title, text) lines in the order a lecture shows them.
    """

    criterion: str
    layer: str
    index: tuple[int, ...]
    quantities: dict[str, float | list[float]]
    formula: str
    substituted: str
    score: float
    rank: int
    scope: str
    scope_size: int
    density: float
    kept_count: int
    threshold: float | None
    kept: bool
    steps: list[tuple[str, str]] = field(default_factory=list)


def _num(x: float) -> str:
    """A number as a lecture shows it: 4 significant digits, negatives in parentheses when
    substituted into a product."""
    if x == 0:
        return "0"
    return f"{x:.4g}"


def _p(x: float) -> str:
    """A factor in a product: parenthesised when negative, so "−(−0.5)" reads right."""
    text = _num(x)
    return f"({text})" if x < 0 else text


def _flat_index(shape: torch.Size, index: Sequence[int] | int) -> tuple[tuple[int, ...], int]:
    """Validate ``index`` (a tuple of coordinates, or a flat position) for ``shape``."""
    numel = math.prod(shape)
    if isinstance(index, (int, np.integer)):
        flat = int(index)
        if not 0 <= flat < numel:
            raise ValueError(f"flat index {flat} is outside the tensor's {numel} entries")
        return tuple(int(i) for i in np.unravel_index(flat, tuple(shape))), flat
    coords = tuple(int(i) for i in index)
    if len(coords) != len(shape) or any(not 0 <= c < s for c, s in zip(coords, shape)):
        raise ValueError(f"index {coords} does not fit the tensor's shape {tuple(shape)}")
    return coords, int(np.ravel_multi_index(coords, tuple(shape))) if coords else 0


def _quantities(criterion: str, model: nn.Module, params: dict[str, nn.Parameter], layer: str, flat: int,
                batches: list[Batch] | None, seed: int, probes: int) -> Job[dict[str, float | list[float]]]:
    """The inputs of the criterion for one entry, from the criteria's own engine."""
    w = float(params[layer].detach().reshape(-1)[flat])
    q: dict[str, float | list[float]] = {"w": w}
    if criterion in ("magnitude", "random"):
        return q
    data = materialise_batches(batches)
    with eval_mode(model):
        if criterion == "taylor":
            gb = []
            for b, batch in enumerate(data):
                op = criterion_operator(model, params, [batch])
                g = yield from sub(op.gradient_steps(f"explain: batch {b + 1}/{len(data)} gradient"),
                                   b / len(data), (b + 1) / len(data))
                gb.append(float(g[layer].reshape(-1)[flat]))
            q["g_b"] = gb
            return q
        op = criterion_operator(model, params, data)
        g = yield from sub(op.gradient_steps("explain: gradient"), 0.0, 0.3)
        q["g"] = float(g[layer].reshape(-1)[flat])
        if criterion in ("grasp", "grasp-reversed"):
            hg = yield from sub(op.hvp_steps(g, "explain: Hg"), 0.3, 1.0)
            q["(Hg)_i"] = float(hg[layer].reshape(-1)[flat])
            q["S"] = -w * q["(Hg)_i"]
        elif criterion == "obd":
            diag = yield from sub(diagonal_estimate(op, probes, seed), 0.3, 1.0)
            q["H_ii"] = float(diag[layer].reshape(-1)[flat])
    return q


def _derivation(criterion: str, q: dict, n_batches: int, probes: int, seed: int) -> tuple[str, str, list[tuple[str, str]]]:
    """(formula, substituted formula, the steps before the rank) for one weight."""
    w = q["w"]
    steps = [("weight", f"w = {_num(w)}")]
    if criterion == "magnitude":
        s = abs(w)
        return "s = |w|", f"s = |{_num(w)}| = {_num(s)}", steps
    if criterion == "random":
        return "s ~ U[0, 1), seeded", "s is a seeded uniform draw: it does not depend on w", steps
    if criterion == "snip":
        g = q["g"]
        steps.append(("gradient", f"g = ∂L/∂w = {_num(g)}  (L averaged over {n_batches} batch"
                                  f"{'es' if n_batches != 1 else ''})"))
        return ("s = |g · w|", f"s = |{_p(g)} · {_p(w)}| = {_num(abs(g * w))}", steps)
    if criterion == "taylor":
        gb = q["g_b"]
        steps.append(("batch gradients", "g_b = ∂L_b/∂w = " + ", ".join(_num(x) for x in gb)))
        terms = [f"({_p(x)} · {_p(w)})²" for x in gb[:SHOWN_BATCHES]]
        if len(gb) > SHOWN_BATCHES:
            terms.append("…")
        s = sum((x * w) ** 2 for x in gb) / len(gb)
        return ("s = (1/B) Σ_b (g_b · w)²",
                f"s = (1/{len(gb)}) [{' + '.join(terms)}] = {_num(s)}", steps)
    if criterion in ("grasp", "grasp-reversed"):
        g, hg, S = q["g"], q["(Hg)_i"], q["S"]
        steps.append(("gradient", f"g_i = ∂L/∂w = {_num(g)}"))
        steps.append(("Hessian-gradient product", f"(Hg)_i = {_num(hg)}  (one Hessian-vector product)"))
        steps.append(("importance", f"S = −w · (Hg)_i = −{_p(w)} · {_p(hg)} = {_num(S)}"))
        if criterion == "grasp":
            return ("S = −w · (Hg)_i; GraSP removes the highest S, so the ranking uses s = −S",
                    f"s = −S = {_num(-S)}", steps)
        return ("S = −w · (Hg)_i; the reversed order keeps the highest S, s = S", f"s = S = {_num(S)}", steps)
    if criterion == "obd":
        g, h = q["g"], q["H_ii"]
        steps.append(("gradient", f"g = ∂L/∂w = {_num(g)}"))
        steps.append(("curvature", f"H_ii ≈ {_num(h)}  (Hutchinson, {probes} probe{'s' if probes != 1 else ''}, "
                                   f"seed {seed})"))
        s = -g * w + 0.5 * h * w * w
        return ("s = ΔL ≈ −g · w + ½ H_ii · w²",
                f"s = −{_p(g)} · {_p(w)} + ½ · {_p(h)} · {_p(w)}² = {_num(-g * w)} + {_num(0.5 * h * w * w)}"
                f" = {_num(s)}", steps)
    raise ValueError(f"no explainer for criterion {criterion!r}")  # pragma: no cover - checked by the caller


def _rank(scores: Scores, layer: str, flat: int, scope: str) -> tuple[int, np.ndarray]:
    """1-based rank of the entry among the scope's scores (ranking order: higher first, ties by
    position), and the scope's scores in that order."""
    names = list(scores) if scope == "global" else [layer]
    parts = [scores[n].detach().to("cpu", torch.float32).reshape(-1).numpy() for n in names]
    offset = 0
    for n, part in zip(names, parts):
        if n == layer:
            break
        offset += part.size
    flat_scores = np.concatenate(parts) + np.float32(0.0)  # -0.0 equals +0.0, as in the ranking
    order = sorted_order(flat_scores)
    position = int(np.nonzero(order == offset + flat)[0][0])
    return position + 1, flat_scores[order]


def explain_weight(
    criterion: str,
    model: nn.Module,
    layer: str,
    index: Sequence[int] | int,
    batches: Iterable[Batch] | None = None,
    *,
    density: float = 0.5,
    scope: str = "global",
    seed: int = 0,
    probes: int = 8,
    scores: Scores | None = None,
) -> Job[Explanation]:
    """The step-by-step score of entry ``index`` of the prunable tensor ``layer`` (a job).

    batches, seed, probes: as for :func:`visualizer.core.pruning.criteria.score` (the window
    passes the workspace's criterion batches and seed). scores: the criterion's scores when the
    caller has them (the window's ranking), else they are computed here with :func:`score`.
    density and scope: where the cut is (the rank and threshold are those of unstructured
    pruning in that scope).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if criterion not in EXPLAINED:
        raise ValueError(f"{CRITERIA[criterion].title} scores whole channels: no per-weight explanation "
                         f"(explained: {', '.join(EXPLAINED)})")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    rho = check_density(density)
    params = prunable_parameters(model)
    if layer not in params:
        raise ValueError(f"{layer!r} is not a prunable tensor of the model (e.g. {next(iter(params), '-')})")
    coords, flat = _flat_index(params[layer].shape, index)
    data = None
    if CRITERIA[criterion].needs_data:
        data = materialise_batches(batches)
    if scores is None:
        scores = yield from sub(score(criterion, model, data, seed=seed, probes=probes), 0.0, 0.5)
    q = yield from sub(_quantities(criterion, model, params, layer, flat, data, seed, probes), 0.5, 1.0)
    formula, substituted, steps = _derivation(criterion, q, len(data) if data else 0, probes, seed)
    value = float(scores[layer].reshape(-1)[flat])
    rank, ordered = _rank(scores, layer, flat, scope)
    k = kept_count(rho, ordered.size)
    threshold = float(ordered[k - 1]) if k > 0 else None
    kept = rank <= k
    where = "the whole model" if scope == "global" else "its layer"
    steps.append(("formula", formula))
    steps.append(("substituted", substituted))
    steps.append(("rank", f"rank {rank} of {ordered.size} in {where} (1 = kept first)"))
    if threshold is None:
        cut = f"density {rho:g} keeps k = 0 weights: every weight is removed"
    else:
        cut = (f"density {rho:g} keeps the k = {k} highest scores: threshold s ≥ {_num(threshold)}; "
               f"this weight's s = {_num(value)} is {'kept' if kept else 'removed'}")
    steps.append(("threshold", cut))
    yield Step("explanation ready", 1.0)
    return Explanation(
        criterion=criterion, layer=layer, index=coords, quantities=q, formula=formula,
        substituted=substituted, score=value, rank=rank, scope=scope, scope_size=int(ordered.size),
        density=rho, kept_count=k, threshold=threshold, kept=kept, steps=steps,
    )


def instructive_weight(
    kept_by: Scores,
    removed_by: Scores,
    density: float,
    scope: str = "global",
) -> tuple[str, tuple[int, ...]] | None:
    """A weight one criterion keeps and another removes at ``density`` (the explainer's default
    pick): among the weights kept under ``kept_by`` and removed under ``removed_by`` (unstructured
    masks of :func:`visualizer.core.pruning.ranking.mask_from_scores` in ``scope``), the one
    ``kept_by`` ranks highest, ties by position. None when the two keep the same weights.
    Returns (tensor name, index)."""
    if list(kept_by) != list(removed_by):
        raise ValueError("the two score sets cover different tensors")
    keep_a = mask_from_scores(kept_by, density, scope)
    keep_b = mask_from_scores(removed_by, density, scope)
    best: tuple[float, str, int] | None = None
    for name in kept_by:
        only_a = (keep_a[name] & ~keep_b[name]).reshape(-1)
        if not bool(only_a.any()):
            continue
        values = kept_by[name].detach().to("cpu", torch.float32).reshape(-1)
        idx = only_a.nonzero().reshape(-1)
        top = int(idx[int(torch.argmax(values[idx]))])  # argmax returns the first of equal maxima
        if best is None or float(values[top]) > best[0]:
            best = (float(values[top]), name, top)
    if best is None:
        return None
    _, name, flat = best
    shape = tuple(kept_by[name].shape)
    return name, tuple(int(i) for i in np.unravel_index(flat, shape))
