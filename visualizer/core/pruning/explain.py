"""How a criterion scores one weight, step by step, with the app's own numbers.

For a weight w_i of one layer, :func:`explain_weight` computes the quantities its criterion reads
(the gradient g_i of the mean loss over the criterion batches, the per-batch gradients g_b,i,
the Hessian-vector product (Hg)_i, the Hessian diagonal H_ii), substitutes them into the
criterion's formula (docs/theory.md), and places the score in the global ranking: its rank, the
cut at the density, kept or removed. The whole layer's scores come with it, for the histogram
with the cut. The score itself is the app's (core.pruning.criteria.score on the same batches),
so the explainer can never disagree with the mask; tests check the formula gives that score.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from visualizer.core.curvature.operator import criterion_operator
from visualizer.core.models.loaders import prunable_parameters
from visualizer.core.pruning.criteria import hutchinson_diagonal, score
from visualizer.core.pruning.ranking import Ranking, sorted_order
from visualizer.core.tasks import Step, sub

EXPLAINED = ("magnitude", "snip", "taylor", "grasp", "obd")
DATA_FREE = ("magnitude",)


@dataclass
class Explanation:
    criterion: str
    layer: str
    index: tuple[int, ...]
    values: dict[str, float]  # the named quantities: w, g, (Hg)_i, H_ii, g_b per batch ...
    formula: str  # the symbolic formula
    substituted: str  # the formula with the numbers in, and its value
    score: float  # the app's score of the weight (what the ranking sorts)
    rank: int  # 1 = kept first, in the global ranking of every prunable weight
    total: int  # number of ranked weights
    kept_count: int  # weights kept at the density
    density: float
    cut: float | None  # the lowest kept score at the density (None: nothing kept)
    kept: bool
    layer_scores: np.ndarray = field(repr=False)  # the whole layer's scores (for the histogram)

    def steps(self) -> list[str]:
        """The explanation as lines, one per step of a slide."""
        quantities = ", ".join(f"{k} = {v:.4g}" for k, v in self.values.items())
        where = f"{self.layer}[{', '.join(map(str, self.index))}]"
        verdict = "kept" if self.kept else "removed"
        cut = "nothing kept" if self.cut is None else f"the cut is at score {self.cut:.4g}"
        return [
            f"1. The weight {where}: {quantities}",
            f"2. {self.criterion}: {self.formula}",
            f"3. {self.substituted}",
            f"4. Rank {self.rank:,} of {self.total:,}; at {self.density:.1%} density the "
            f"{self.kept_count:,} highest scores are kept and {cut}: this weight is {verdict}.",
        ]


def _flat_index(shape: Sequence[int], index: Sequence[int]) -> int:
    return int(np.ravel_multi_index(tuple(index), tuple(shape)))


def _gradients(model: nn.Module, params: dict, batches: list) -> Generator[Step, None, dict]:
    op = criterion_operator(model, params, batches)
    return (yield from op.gradient_steps("gradient"))


def _quantities(criterion: str, model: nn.Module, layer: str, index: tuple[int, ...], batches: list,
                probes: int, seed: int) -> Generator[Step, None, tuple[dict[str, float], str, str, float]]:
    """(values, formula, substituted, value of the formula) of one weight."""
    params = {n: p for n, p in prunable_parameters(model).items()}
    w = float(params[layer].detach()[index])
    if criterion == "magnitude":
        return {"w": w}, "S = |w|", f"S = |{w:.4g}| = {abs(w):.4g}", abs(w)
    was_training = model.training
    model.eval()  # the criteria score in eval mode (fixed batch-norm statistics, no dropout)
    try:
        if criterion == "snip":
            g = float((yield from sub(_gradients(model, params, batches), 0.0, 1.0))[layer][index])
            s = abs(g * w)
            return ({"w": w, "g": g}, "S = |g · w|  (Lee et al. 2019)",
                    f"S = |{g:.4g} × {w:.4g}| = {s:.4g}", s)
        if criterion == "taylor":
            per_batch = []
            for b, batch in enumerate(batches):
                grads = yield from sub(_gradients(model, params, [batch]), b / len(batches),
                                       (b + 1) / len(batches), f"batch {b + 1}: ")
                per_batch.append(float(grads[layer][index]))
            s = float(np.mean([(gb * w) ** 2 for gb in per_batch]))
            terms = " + ".join(f"({gb:.3g}×{w:.3g})²" for gb in per_batch)
            values = {"w": w, **{f"g_{b + 1}": gb for b, gb in enumerate(per_batch)}}
            return (values, "S = (1/B) Σ_b (g_b · w)²  (Molchanov et al. 2019)",
                    f"S = (1/{len(per_batch)}) [{terms}] = {s:.4g}", s)
        op = criterion_operator(model, params, batches)
        g_all = yield from sub(op.gradient_steps("gradient"), 0.0, 0.3)
        g = float(g_all[layer][index])
        if criterion == "grasp":
            hg = float((yield from sub(op.hvp_steps(g_all, "Hg"), 0.3, 1.0))[layer][index])
            s = -w * hg
            return ({"w": w, "g": g, "(Hg)_i": hg},
                    "S = -w · (Hg)_i; GraSP removes the weights with the highest S (Wang et al. 2020)",
                    f"S = -{w:.4g} × {hg:.4g} = {s:.4g}", s)
        diag = yield from sub(hutchinson_diagonal(model, params, batches, probes, seed), 0.3, 1.0)
        h = float(diag[list(params).index(layer)][index])
        s = -g * w + 0.5 * h * w * w
        return ({"w": w, "g": g, "H_ii": h},
                "ΔL = -g · w + ½ H_ii · w²  (LeCun et al. 1990; H_ii by Hutchinson probes)",
                f"ΔL = -({g:.4g})({w:.4g}) + ½ ({h:.4g})({w:.4g})² = {s:.4g}", s)
    finally:
        model.train(was_training)


def explain_weight(model: nn.Module, criterion: str, layer: str, index: Sequence[int], density: float,
                   batches: Sequence | None = None, probes: int = 8, seed: int = 0
                   ) -> Generator[Step, None, Explanation]:
    """Explain ``criterion``'s score of ``model``'s weight ``layer[index]`` at ``density``
    (global scope), with the same ``batches``, probes and seed as the app's scoring."""
    if criterion not in EXPLAINED:
        raise ValueError(f"no explainer for {criterion!r} (use {', '.join(EXPLAINED)})")
    if criterion not in DATA_FREE and not batches:
        raise ValueError(f"{criterion} scores a weight with gradients of the loss: it needs data "
                         "(choose a dataset, or explain magnitude, which needs none)")
    params = prunable_parameters(model)
    if layer not in params:
        raise ValueError(f"no prunable layer {layer!r}")
    index = tuple(int(i) for i in index)
    if len(index) != params[layer].ndim or any(not 0 <= i < n for i, n in zip(index, params[layer].shape)):
        raise ValueError(f"index {index} is outside {layer}'s shape {tuple(params[layer].shape)}")
    batches = list(batches or [])
    scores = yield from sub(score(criterion, model, batches, seed=seed, probes=probes), 0.0, 0.5, "scores: ")
    values, formula, substituted, value = yield from sub(
        _quantities(criterion, model, layer, index, batches, probes, seed), 0.5, 0.95, "this weight: ")
    names = list(scores)
    flat = np.concatenate([scores[n].detach().cpu().numpy().reshape(-1) for n in names])
    offset = sum(scores[n].numel() for n in names[:names.index(layer)])
    position = offset + _flat_index(scores[layer].shape, index)
    rank = int(np.flatnonzero(sorted_order(flat) == position)[0]) + 1
    ranking = Ranking.from_scores(scores)
    ranking.set_density(density)
    kept = bool(ranking.mask_at(density).masks[layer][index])
    yield Step("explained", 1.0)
    return Explanation(criterion, layer, index, values, formula, substituted,
                       float(scores[layer][index]), rank, int(flat.size), ranking.kept(), density,
                       ranking.cut_score(), kept, scores[layer].detach().cpu().numpy())


def instructive_weight(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], density: float,
                       layer: str) -> tuple[int, ...]:
    """A weight of ``layer`` that criterion A keeps and criterion B removes at ``density`` (the
    one B ranks lowest among those), else A's top weight: the case worth a slide."""
    ra, rb = Ranking.from_scores(a), Ranking.from_scores(b)
    ma, mb = ra.mask_at(density).masks[layer], rb.mask_at(density).masks[layer]
    disputed = (ma & ~mb).reshape(-1)
    sb = b[layer].detach().cpu().reshape(-1).clone().float()
    if disputed.any():
        sb[~disputed] = float("inf")
        flat = int(torch.argmin(sb))
    else:
        flat = int(torch.argmax(a[layer].detach().cpu().reshape(-1)))
    return tuple(int(i) for i in np.unravel_index(flat, tuple(a[layer].shape)))
