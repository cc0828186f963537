"""N:M semi-structured sparsity: exactly N weights kept in every group of M consecutive weights
along a layer's input dimension (docs/theory.md, "N:M sparsity").

NVIDIA's sparse tensor cores (Ampere and later) multiply a 2:4 matrix at up to twice the dense
rate (Mishra et al. 2021); 4:8 and other patterns are studied as accuracy/speed trade-offs (Zhou
et al. 2021). The pattern is a constraint on the mask, so it combines with any elementwise
score: within each group of M, the N highest scores are kept (ties: the lower input index).

A weight is read as a matrix of output rows by input columns (:func:`as_rows`): ``nn.Linear``
(out, in) as stored; ``Conv2d`` (out, in, kh, kw) as (out, in·kh·kw), the order its im2col GEMM
reduces over; transformers' ``Conv1D`` stores (in, out) and is transposed. A layer whose input
dimension is not a multiple of M cannot carry the pattern: it is skipped (kept dense) and named
in :attr:`NMResult.skipped`, never given a pattern that is silently wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from visualizer.core.layers import is_conv1d
from visualizer.core.pruning.masks import MaskSet

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(text: str) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); None when ``text`` is not an N:M pattern. Raises ValueError for an
    N:M text that is not a pattern (N < 1 or N > M)."""
    match = _NM.match(str(text))
    if match is None:
        return None
    n, m = int(match.group(1)), int(match.group(2))
    if m < 1 or n < 1 or n > m:
        raise ValueError(f"structure {text!r}: N:M needs 1 <= N <= M (2:4, 4:8)")
    return n, m


def transposed_weights(model: nn.Module) -> set[str]:
    """Names of weights stored as (in, out): transformers' ``Conv1D`` (GPT-2)."""
    return {f"{name}.weight" if name else "weight" for name, m in model.named_modules() if is_conv1d(m)}


def as_rows(weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """The weight as an (out, in) matrix whose rows are the output features (a view where the
    storage allows): a (in, out) ``Conv1D`` is transposed, a conv kernel is flattened per output
    channel, a vector is one row."""
    if weight.dim() == 1:
        return weight.reshape(1, -1)
    if transposed:
        return weight.t()
    return weight.reshape(weight.shape[0], -1)


def from_rows(rows: torch.Tensor, shape: torch.Size | tuple[int, ...], transposed: bool = False) -> torch.Tensor:
    """Inverse of :func:`as_rows` for a tensor of the stored ``shape``."""
    if transposed:
        return rows.t().contiguous()
    return rows.reshape(shape)


def nm_rows(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of an (out, in) score matrix keeping the N highest scores of every group of M
    consecutive inputs (in % m == 0). Ties go to the lower input index (a stable sort)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"input dimension {cols} is not a multiple of {m}")
    groups = scores.reshape(rows, cols // m, m).float()
    order = torch.argsort(-groups, dim=-1, stable=True)[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order, True)
    return keep.reshape(rows, cols)


def is_nm(mask: torch.Tensor, n: int, m: int, transposed: bool = False) -> bool:
    """Whether a stored mask keeps exactly N of every M along its input dimension."""
    rows = as_rows(mask, transposed)
    if rows.shape[1] % m:
        return False
    counts = rows.reshape(rows.shape[0], -1, m).sum(-1)
    return bool((counts == n).all())


@dataclass
class NMResult:
    """An N:M mask over the model's prunable weights and the layers left dense, with the reason."""

    masks: MaskSet
    n: int
    m: int
    skipped: dict[str, str] = field(default_factory=dict)


def nm_masks(scores: Mapping[str, torch.Tensor], n: int, m: int,
             transposed: set[str] | frozenset[str] = frozenset()) -> NMResult:
    """The N:M mask of every scored weight (higher score kept); a weight whose input dimension
    is not a multiple of M stays dense and is listed in ``skipped``."""
    masks: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    for name, s in scores.items():
        t = name in transposed
        rows = as_rows(s, t)
        if rows.shape[1] % m:
            skipped[name] = f"input dimension {rows.shape[1]} is not a multiple of {m}"
            masks[name] = torch.ones(s.shape, dtype=torch.bool)
            continue
        masks[name] = from_rows(nm_rows(rows, n, m), s.shape, t).to("cpu")
    return NMResult(MaskSet(masks, {"structure": f"{n}:{m}"}), n, m, skipped)


def transposed_of(channel_dims: Mapping[str, int], scores: Mapping[str, torch.Tensor | np.ndarray]) -> set[str]:
    """The (in, out) matrices among ``scores``, read from their output dims
    (:func:`visualizer.core.layers.output_dims`): 2-D weights whose outputs are dim 1."""
    return {n for n, d in channel_dims.items() if d == 1 and n in scores and len(scores[n].shape) == 2}


class NMRanking:
    """The N:M mask of a set of scores behind the :class:`~visualizer.core.pruning.ranking.Ranking`
    interface the window's slider uses (``mask_at``, ``layer_kept`` ...). The pattern fixes the
    density (N/M of every eligible layer, the skipped layers dense), so a density change moves
    nothing: ``mask_at`` returns the same mask at every density. ``skipped``: the layers left
    dense, each with its reason."""

    scope = "layer"

    def __init__(self, scores: Mapping[str, torch.Tensor | np.ndarray], n: int, m: int,
                 transposed: set[str] | frozenset[str] = frozenset(),
                 metadata: Mapping[str, str] | None = None) -> None:
        result = nm_masks({k: torch.as_tensor(v) for k, v in scores.items()}, n, m, transposed)
        self.n, self.m = n, m
        self.structure = f"{n}:{m}"
        self.skipped = dict(result.skipped)
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.names = list(result.masks)
        self.shapes = [tuple(result.masks[k].shape) for k in self.names]
        self._masks = result.masks
        self._scores = {k: np.asarray(torch.as_tensor(v).detach().cpu().float()) for k, v in scores.items()}
        self._layer_kept = {k: int(result.masks[k].sum()) for k in self.names}
        self._density: float | None = None

    def set_density(self, density: float) -> None:
        self._density = float(density)  # the pattern fixes the mask: nothing moves

    def mask_at(self, density: float, copy: bool = True) -> MaskSet:
        self.set_density(density)
        meta = dict(self.metadata, density=repr(self.density()), scope=self.scope, structure=self.structure)
        if not copy:
            return MaskSet(dict(self._masks.masks), meta)
        return MaskSet({k: t.clone() for k, t in self._masks.masks.items()}, meta)

    def kept(self) -> int:
        return sum(self._layer_kept.values())

    def total(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes)

    def density(self) -> float:
        total = self.total()
        return self.kept() / total if total else 0.0

    def layer_kept(self) -> dict[str, int]:
        return dict(self._layer_kept)

    def layer_densities(self) -> dict[str, float]:
        return {k: (self._layer_kept[k] / int(np.prod(s)) if np.prod(s) else 0.0)
                for k, s in zip(self.names, self.shapes)}

    def live_mask(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def scores_view(self, name: str) -> np.ndarray:
        view = self._scores[name].view()
        view.flags.writeable = False
        return view

    def cut_score(self) -> float | None:
        return None  # no single threshold: each group of M keeps its own top N
