"""Scores -> masks at any density, fast enough for a slider.

Pruning to density rho keeps exactly ``k = floor(rho * d)`` entries (docs/theory.md §3: ||w'||_0 <= k with
k = floor(d * rho_target)), the ones with the highest scores. A :class:`Ranking` sorts once; after
that a density change only flips the entries between the old and the new cut.

- scope ``global``: one ranking over all d prunable weights; ``layer``: each layer keeps
  k_l = floor(rho * d_l) of its own d_l weights.
- structure ``unstructured``: single weights; ``channel``: whole output channels (the groups G_k
  of docs/theory.md §6: dim 0 of each weight, or the dimension ``channel_dims`` names, e.g. 1 for
  transformers' ``Conv1D`` whose weight is (in, out), see :func:`visualizer.core.layers.output_dims`),
  so masks are constant over each channel and k counts channels
  (k = floor(rho * number of channels) in the scope). A channel's score is the mean of its
  element scores (for the structured criteria, which are constant per channel, that is the
  criterion's channel value itself).
- ties: deterministic, the lower flat index (parameter order, then row-major position) is kept
  first. Scores are compared as float32 (+0.0 and -0.0 equal); NaN is refused.
- floor(rho * d) is computed exactly and forgives the binary rounding of rho (see
  :func:`kept_count`): floor(0.29 * 100) is 29 and floor((1/49) * 49) is 1, not 28 and 0.

How it is fast (see tests/benchmarks/bench_ranking.py): the sort is one ``np.sort`` of unique
uint64 keys (float32 score bits made order-preserving in the high half, the index in the low
half), several times faster than an argsort of the floats; the masks of all layers are views into
one flat bool array; a density change from k_old to k_new sets only ``keep[order[k_new:k_old]]``,
or, when that slice is a large part of the scope, rewrites the scope in one sequential pass
``keep = position < k`` over uint16 position buckets (2 bytes per weight); per-layer kept counts
come from a checkpoint table (counts at every ~d/16384-th cut, built from the buckets) plus the
layers of fewer than that many positions, never from a pass over the mask.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

import numpy as np
import torch

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import NMRanking, parse_nm, transposed_of
from visualizer.core.tasks import Step, run

SCOPES = ("global", "layer")
STRUCTURES = ("unstructured", "channel")

# When more than 1/FULL_PASS_RATIO of a scope's entries change, one sequential pass ``position < k``
# over the scope beats scattering into random positions. Measured on GPT-2 124M's 85M weights
# (tests/benchmarks/bench_llm.py, 2-core host): the pass ~0.26 ns per entry (22 ms), a scattered
# write through the order ~33 ns per changed entry, so the two cost the same near d/128.
FULL_PASS_RATIO = 128
# Per-layer kept counts are stored at ~CHECKPOINTS cuts of a multi-layer order, so the counts at
# any cut are a table row plus the layers of fewer than d / CHECKPOINTS positions (a binary search
# costs ~100 ns per position here: 25.5M weights -> 2048 positions, 0.1-0.2 ms; table 5 MB).
CHECKPOINTS = 16384


# A CutCounts table holds the counts per bin at ~BIN_CHECKPOINTS cuts: the counts at any cut are a
# table row plus a bincount of fewer than d / BIN_CHECKPOINTS bins (GPT-2 124M, 442k overview
# pixels: a 57 MB uint16 table, <= 1.3M bins per move, a few ms).
BIN_CHECKPOINTS = 64

# the absolute part of kept_count's tolerance (the relative part covers large d)
_ABS_TOLERANCE = Fraction(1, 10**9)


def first_k(values: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    """Bool mask of the k entries of a 1-D ``values`` that a *stable* sort (descending when
    ``largest``) would put first: everything strictly beyond the k-th value, then the tied
    entries in positional order. O(d) on the tensor's own device (``torch.kthvalue`` and a
    cumulative sum), with no host round trip and no full sort."""
    d = values.numel()
    k = max(0, min(int(k), d))
    if k == 0:
        return torch.zeros(d, dtype=torch.bool, device=values.device)
    if k == d:
        return torch.ones(d, dtype=torch.bool, device=values.device)
    kth = torch.kthvalue(values, d - k + 1 if largest else k).values
    strict = values > kth if largest else values < kth
    ties = values == kth
    need = k - strict.sum()
    return strict | (ties & (torch.cumsum(ties, 0) <= need))


def kept_count(density: float, total: int) -> int:
    """k = floor(rho * total) for 0 <= rho <= 1, computed exactly (rationals) and tolerant to the
    binary rounding of rho: a product less than max(1e-9, 4 ulps of total) below an integer counts
    as that integer, so 0.29 * 100 gives 29 and (1/49) * 49 gives 1, where float arithmetic gives
    28 and 0. (A plain +1e-9 is too small for d in the tens of millions: rho * d then carries
    ~3e-9 of rounding error.)"""
    rho = check_density(density)
    x = rho * total
    nearest = round(x)
    if abs(x - nearest) > 1e-6 + total * 1e-15:  # far from an integer: float floor is exact
        return math.floor(x)
    exact = Fraction(rho) * total
    k = math.floor(exact)
    if k < total and (k + 1) - exact <= max(_ABS_TOLERANCE, Fraction(total, 2**50)):
        k += 1
    return k


def check_density(density: float) -> float:
    try:
        rho = float(density)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"density must be a number in [0, 1], got {density!r}") from exc
    if not math.isfinite(rho) or rho < 0.0 or rho > 1.0:
        raise ValueError(f"density must be in [0, 1], got {density!r}")
    return rho


def _descending_keys(scores: np.ndarray, normalized: bool = False) -> np.ndarray:
    """uint64 keys whose ascending order is scores descending, ties by ascending index.

    The float32 bits b (read as int32 i) become a uint32 that orders like the scores reversed:
    b ^ 0x7fffffff for i >= 0 and b for i < 0 (IEEE-754 sign-magnitude). It fills the high half of
    each key and the index the low half, so keys are unique and a plain sort is deterministic.
    -0.0 and +0.0 are made equal first (-0.0 + 0.0 = +0.0) unless the caller did (``normalized``).
    """
    s = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    if not normalized:
        s = s + np.float32(0.0)
    i = s.view(np.int32)
    flip = i >> 31  # -1 where negative, 0 elsewhere
    np.invert(flip, out=flip)
    flip &= 0x7FFFFFFF
    flip ^= i
    keys = np.empty(s.size, dtype=np.uint64)
    halves = keys.view(np.uint32).reshape(-1, 2)
    hi, lo = (1, 0) if sys.byteorder == "little" else (0, 1)
    halves[:, hi] = flip.view(np.uint32)
    halves[:, lo] = np.arange(s.size, dtype=np.uint32)
    return keys


def _sorted_positions(scores: np.ndarray, normalized: bool = False) -> np.ndarray:
    """uint32 indices of ``scores`` from highest to lowest, ties by ascending index (a view)."""
    n = int(scores.size)
    if n >= 2**32:
        raise ValueError(f"too many entries to rank in one scope ({n})")
    keys = _descending_keys(scores, normalized)
    keys.sort()
    return keys.view(np.uint32).reshape(-1, 2)[:, 0 if sys.byteorder == "little" else 1]


def sorted_order(scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` from highest to lowest, ties by ascending index (int64)."""
    return _sorted_positions(scores).astype(np.int64)


@dataclass
class _Group:
    """One ranking scope: a contiguous range [start, stop) of the flat weights."""

    start: int
    stop: int
    layers: list[int]  # layer ids inside the range
    n_units: int  # weights (unstructured) or channels (channel)
    unit_cum: np.ndarray | None  # channel: kept elements after the first j channels, len n_units+1
    k: int = 0  # kept elements now
    step: int = 1  # multi-layer groups: checkpoint spacing in sorted positions (2**step_log)
    step_log: int = 0
    checkpoints: np.ndarray | None = None  # (n+1, layers): per-layer counts in the first c*step

    @property
    def size(self) -> int:
        return self.stop - self.start


class Ranking:
    """A sorted view of scores: ``mask_at(rho)`` gives the mask keeping the top floor(rho * d).

    Build it with :func:`build_ranking` (a job) or :meth:`from_scores`. Not thread-safe: one owner
    moves the cut (the GUI's main thread); ``mask_at`` returns copies unless ``copy=False``.
    """

    # layers the structure could not be applied to -> why (none here; N:M rankings list some)
    skipped: Mapping[str, str] = MappingProxyType({})

    def __init__(self, scores: Mapping[str, torch.Tensor | np.ndarray], scope: str = "global",
                 structure: str = "unstructured", metadata: Mapping[str, str] | None = None, *,
                 channel_dims: Mapping[str, int] | None = None) -> None:
        run(self._build(scores, scope, structure, metadata, channel_dims))

    # --- construction (a job; __init__ drives it) --------------------------------------------
    @classmethod
    def _empty(cls) -> Ranking:
        return cls.__new__(cls)

    @classmethod
    def from_scores(cls, scores: Mapping[str, torch.Tensor | np.ndarray], scope: str = "global",
                    structure: str = "unstructured", *, channel_dims: Mapping[str, int] | None = None,
                    **metadata: str) -> Ranking:
        return cls(scores, scope, structure, metadata, channel_dims=channel_dims)

    def _build(self, scores, scope, structure, metadata,
               channel_dims: Mapping[str, int] | None = None) -> Generator[Step, None, Ranking]:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
        if structure not in STRUCTURES:
            raise ValueError(f"unknown structure {structure!r}; choose one of: {', '.join(STRUCTURES)}")
        self.scope = scope
        self.structure = structure
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.names = list(scores)
        self.shapes = [tuple(scores[n].shape) for n in self.names]
        # the output (channel) dimension of each weight: 0 unless channel_dims says otherwise
        self.channel_dims = [int((channel_dims or {}).get(n, 0)) for n in self.names]
        self.sizes = np.array([math.prod(s) for s in self.shapes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.total_count = int(self.offsets[-1])
        d = self.total_count
        yield Step("ranking: collecting scores", 0.0)
        flat = np.empty(d, dtype=np.float32)
        self._scores = {}
        for i, n in enumerate(self.names):
            s = scores[n]
            arr = s.detach().to("cpu", torch.float32).numpy() if isinstance(s, torch.Tensor) else np.asarray(s, np.float32)
            part = flat[self.offsets[i] : self.offsets[i + 1]]
            part[:] = arr.reshape(-1)
            if np.isnan(part).any():
                raise ValueError(f"scores for {n} contain NaN: cannot rank them")
            self._scores[n] = part.reshape(self.shapes[i])
        self._flat_scores = flat
        n_layers = len(self.names)
        self._order = np.empty(d, dtype=np.int32 if d < 2**31 else np.int64)
        # bucket[i] = (position of i in its scope's order) >> shift, as uint16: the full-pass path
        # reads 2 bytes per weight instead of a 4-byte rank (memory bandwidth is the floor here)
        self._shift = max(0, (d - 1).bit_length() - 16) if d else 0
        self._bucket = np.empty(d, dtype=np.uint16)
        # written now, in the ranking job: the first slider move's pass into untouched (calloc'd)
        # memory page-faults every page (85M weights: ~260 ms against ~18 ms once touched)
        self._keep = np.empty(d, dtype=bool)
        self._keep.fill(False)
        np.add(flat, np.float32(0.0), out=flat)  # -0.0 -> +0.0: equal scores tie by index
        self._layer_kept = np.zeros(n_layers, dtype=np.int64)
        spans = [(0, d, list(range(n_layers)))] if scope == "global" else [
            (int(self.offsets[i]), int(self.offsets[i + 1]), [i]) for i in range(n_layers)
        ]
        self._groups: list[_Group] = []
        for gi, (a, b, layers) in enumerate(spans):
            yield Step(f"ranking: sorting {'all layers' if scope == 'global' else self.names[layers[0]]}",
                       0.05 + 0.85 * gi / max(len(spans), 1))
            self._groups.append(self._rank_group(a, b, layers))
        if scope == "global" and n_layers > 1:
            yield Step("ranking: counting per layer", 0.9)
            self._checkpoint(self._groups[0])
        self._views = {
            n: torch.from_numpy(self._keep[self.offsets[i] : self.offsets[i + 1]]).view(self.shapes[i])
            for i, n in enumerate(self.names)
        }
        self._index = {n: i for i, n in enumerate(self.names)}
        self._group_of = np.zeros(n_layers, dtype=np.int64)
        for gi, g in enumerate(self._groups):
            self._group_of[g.layers] = gi
        # the cut (kept count of its group) that each layer's mask bytes show now: a move only
        # changes the counts, a layer's bytes are rewritten when it is read (_sync)
        self._synced = np.zeros(n_layers, dtype=np.int64)
        self._live = _LiveMasks(self)
        self._density: float | None = 0.0
        yield Step("ranking: done", 1.0)
        return self

    def _rank_group(self, a: int, b: int, layers: list[int]) -> _Group:
        scores = self._flat_scores[a:b]
        if self.structure == "unstructured":
            order = _sorted_positions(scores, normalized=True)  # _build made -0.0 into +0.0
            n_units, unit_cum = b - a, None
        else:
            unit_scores, unit_start, unit_len, unit_run, unit_gap = self._channels(layers)
            unit_order = sorted_order(unit_scores)
            starts = unit_start[unit_order] - a
            lens = unit_len[unit_order]
            unit_cum = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            # expand channels into element order: the j-th weight of channel u is
            # start_u + (j // run_u) * gap_u + j % run_u (runs of run_u contiguous weights, gap_u
            # apart; a dim-0 channel is one run, a Conv1D column runs of 1)
            j = np.arange(b - a, dtype=np.int64) - np.repeat(unit_cum[:-1], lens)
            if np.all(unit_run == unit_len):  # every channel is one contiguous block
                order = j + np.repeat(starts, lens)
            else:
                runs = np.repeat(unit_run[unit_order], lens)
                q, r = np.divmod(j, runs)
                order = q * np.repeat(unit_gap[unit_order], lens) + r + np.repeat(starts, lens)
            n_units = int(unit_scores.size)
        mine = self._order[a:b]
        mine[:] = order
        del order
        mine += a
        positions = np.arange(b - a, dtype=np.uint32)
        positions >>= self._shift
        self._bucket[mine] = positions
        return _Group(a, b, layers, n_units, unit_cum)

    def _checkpoint(self, g: _Group) -> None:
        """Per-layer kept counts at every ``step``-th cut of a multi-layer group.

        step is a power of two and a multiple of the bucket size, so "position < c * step" is
        "bucket >> (log2(step) - shift) < c": one sequential histogram per layer over its
        buckets, no gather through the order."""
        n_layers = len(self.names)
        g.step_log = max(self._shift, (max(1, -(-g.size // CHECKPOINTS)) - 1).bit_length())
        g.step = 1 << g.step_log
        n = -(-g.size // g.step)
        table = np.zeros((n + 1, n_layers), dtype=np.int64)
        self._layer_ends = self.offsets[1:].astype(self._order.dtype)
        for i in g.layers:
            chunk = self._bucket[self.offsets[i] : self.offsets[i + 1]] >> np.uint16(g.step_log - self._shift)
            table[1:, i] = np.cumsum(np.bincount(chunk, minlength=n)[:n])
        g.checkpoints = table

    def _counts_at(self, g: _Group, k: int) -> np.ndarray:
        """Per-layer kept counts of a multi-layer group at cut k: a table row plus the layers of
        fewer than ``step`` positions (found by a binary search in the layer offsets)."""
        assert g.checkpoints is not None
        c = k >> g.step_log
        rest = self._order[g.start + (c << g.step_log) : g.start + k]
        ids = np.searchsorted(self._layer_ends, rest, side="right")
        return g.checkpoints[c] + np.bincount(ids, minlength=len(self.names))

    def _channels(self, layers: list[int]) -> tuple[np.ndarray, ...]:
        """Per output channel of each layer (along its channel dim): mean score, flat start,
        element count, length of its contiguous runs, distance between runs."""
        scores, starts, lens, runs, gaps = [], [], [], [], []
        for i in layers:
            shape = self.shapes[i] or (1,)
            dim = self.channel_dims[i]
            rows = shape[dim]
            inner = int(self.sizes[i]) // rows if rows else 0
            # the weight as (before, rows, after): channel c is [:, c, :], `before` runs of
            # `after` contiguous weights, rows * after apart, the first at c * after
            after = math.prod(shape[dim + 1:])
            block = self._flat_scores[self.offsets[i] : self.offsets[i + 1]]
            block = block.reshape(-1, rows, after).transpose(1, 0, 2).reshape(rows, inner) if rows else block
            with np.errstate(invalid="ignore"):
                mean = block.astype(np.float64).mean(1) if inner else np.zeros(rows)
            scores.append(mean.astype(np.float32))
            starts.append(self.offsets[i] + after * np.arange(rows, dtype=np.int64))
            lens.append(np.full(rows, inner, dtype=np.int64))
            runs.append(np.full(rows, max(after, 1), dtype=np.int64))
            gaps.append(np.full(rows, rows * after, dtype=np.int64))
        if not scores:
            empty = np.zeros(0, np.int64)
            return np.zeros(0, np.float32), empty, empty, empty, empty
        return tuple(np.concatenate(x) for x in (scores, starts, lens, runs, gaps))

    # --- the slider path -----------------------------------------------------------------------
    def set_density(self, density: float) -> None:
        """Move the cut to ``density`` (in place; the live masks change)."""
        rho = check_density(density)
        for g in self._groups:
            units = kept_count(rho, g.n_units)
            self._move(g, int(g.unit_cum[units]) if g.unit_cum is not None else units)
        self._density = rho

    def mask_at(self, density: float, copy: bool = True) -> MaskSet:
        """The mask keeping the top floor(rho * d) entries (per scope and structure).

        copy=False returns the live masks (views of the internal state, valid until the next
        density change: the cheapest path for a view that redraws at once)."""
        self.set_density(density)
        meta = dict(self.metadata, density=repr(self._density), scope=self.scope, structure=self.structure)
        if not copy:
            return MaskSet(self._live, meta)  # type: ignore[arg-type]  # a Mapping, synced per layer on access
        self._sync_all()
        # one numpy copy of the flat mask, then per-layer views of it: torch's clone of 54 tensors
        # was 100x slower on the loaded 2-core machine (intra-op threads oversubscribed)
        flat = self._keep.copy()
        masks = {
            n: torch.from_numpy(flat[self.offsets[i] : self.offsets[i + 1]]).view(self.shapes[i])
            for i, n in enumerate(self.names)
        }
        return MaskSet(masks, meta)

    def _move(self, g: _Group, k_new: int) -> None:
        """Move a scope's cut to k_new. The kept counts follow at once (a checkpoint row plus
        fewer than ``step`` positions); the mask bytes only when every layer of the scope shows
        the old cut and few entries change (then flipping exactly those is cheapest), otherwise
        each layer is rewritten when it is next read (:meth:`_sync`): a move costs what changes
        for the counts and what is looked at for the masks, not a pass over every weight."""
        k_old = g.k
        if k_new == k_old:
            return
        lo, hi = sorted((k_old, k_new))
        layers = np.asarray(g.layers, dtype=np.int64)
        if (hi - lo) * FULL_PASS_RATIO <= g.size and bool((self._synced[layers] == k_old).all()):
            self._keep[self._order[g.start + lo : g.start + hi]] = k_new > k_old
            self._synced[layers] = k_new
        if g.checkpoints is not None:
            self._layer_kept[:] = self._counts_at(g, k_new)
        else:  # one layer (or none) in the group: its count is the cut itself
            for i in g.layers:
                self._layer_kept[i] = k_new
        g.k = k_new

    def _sync(self, i: int) -> None:
        """Make layer i's mask bytes show its scope's current cut: ``keep = position < k`` in one
        pass over the layer's uint16 position buckets, then the < 2^shift positions of k's own
        bucket that lie in the layer."""
        g = self._groups[self._group_of[i]]
        k = g.k  # the cut these bytes will show (recorded as such, even if the cut moves meanwhile)
        if self._synced[i] == k:
            return
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        kb = k >> self._shift
        np.less(self._bucket[a:b], kb, out=self._keep[a:b])
        tail = self._order[g.start + (kb << self._shift) : g.start + k]
        self._keep[tail[(tail >= a) & (tail < b)]] = True
        self._synced[i] = k

    def _sync_all(self) -> None:
        for i in range(len(self.names)):
            self._sync(i)

    # --- cheap read-outs for views -------------------------------------------------------------
    def kept(self) -> int:
        return int(self._layer_kept.sum())

    def total(self) -> int:
        return self.total_count

    def density(self) -> float:
        """Achieved global density kept / total at the current cut."""
        return self.kept() / self.total_count if self.total_count else 0.0

    def layer_kept(self) -> dict[str, int]:
        """Kept weights per layer at the current cut (maintained incrementally, no mask pass)."""
        return {n: int(k) for n, k in zip(self.names, self._layer_kept)}

    def layer_densities(self) -> dict[str, float]:
        return {
            n: (int(k) / int(s) if s else 0.0) for n, k, s in zip(self.names, self._layer_kept, self.sizes)
        }

    def live_mask(self, name: str) -> torch.Tensor:
        """The current mask of one layer as a view (changes with the next density change)."""
        self._sync(self._index[name])
        return self._views[name]

    def scores_view(self, name: str) -> np.ndarray:
        """The float32 scores of one layer (shape of the weight), read-only."""
        view = self._scores[name].view()
        view.flags.writeable = False
        return view

    def cut_score(self) -> float | None:
        """The lowest kept score of the (global) scope at the current cut, None if nothing kept."""
        if self.scope != "global" or not self._groups or self._groups[0].k == 0:
            return None
        return float(self._flat_scores[self._order[self._groups[0].k - 1]])


class _LiveMasks(Mapping[str, torch.Tensor]):
    """The masks of a :class:`Ranking` at its current cut, as a read-only mapping whose layers are
    brought up to date when looked up (what ``mask_at(copy=False)`` hands out: a view that draws
    one layer reads one layer)."""

    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._ranking.live_mask(name)

    def __contains__(self, name: object) -> bool:
        return name in self._ranking._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ranking.names)

    def __len__(self) -> int:
        return len(self._ranking.names)


class CutCounts:
    """Kept weights per bin at a global ranking's current cut, for any partition of its weights
    into bins (the overview's pixels): ``counts()`` is a table row (the counts at every
    ``step``-th position of the order) plus a bincount of the fewer than ``step`` positions after
    it, so a slider move costs O(bins + d / BIN_CHECKPOINTS), not a pass over the d weights.
    Build with :func:`cut_counts_job` (one gather through the order, in a job)."""

    def __init__(self, ranking: Ranking, bins_in_order: np.ndarray, table: np.ndarray, step_log: int) -> None:
        self.ranking = ranking
        self.n_bins = table.shape[1]
        self._bins = bins_in_order  # bin of the weight at each sorted position
        self._table = table
        self._step_log = step_log

    def follows(self, masks: object) -> bool:
        """Whether ``masks`` (a MaskSet's mapping) are this ranking's live masks, so that
        :meth:`counts` counts them."""
        return masks is self.ranking._live

    def counts(self) -> np.ndarray:
        """int64 kept weights per bin at the ranking's current cut."""
        k = self.ranking._groups[0].k if self.ranking._groups else 0
        c = k >> self._step_log
        out = self._table[c].astype(np.int64)
        out += np.bincount(self._bins[c << self._step_log : k], minlength=self.n_bins)[: self.n_bins]
        return out


def cut_counts_job(ranking: Ranking, bins: np.ndarray, n_bins: int, checkpoints: int = BIN_CHECKPOINTS
                   ) -> Generator[Step, None, CutCounts | None]:
    """A :class:`CutCounts` for ``bins`` (the bin of every weight, in the ranking's flat order:
    its layers concatenated). None where the counts are not one cut of one order (a ``layer``
    scope, a ``channel`` structure's ranking works too; an N:M ranking does not move)."""
    if not isinstance(ranking, Ranking) or ranking.scope != "global" or len(ranking._groups) != 1:
        return None
    d = ranking.total_count
    bins = np.asarray(bins).reshape(-1)
    if bins.size != d:
        raise ValueError(f"{bins.size} bins for {d} weights")
    step_log = max(0, (max(1, -(-d // checkpoints)) - 1).bit_length())
    step = 1 << step_log
    n = -(-d // step) if d else 0
    yield Step("counting per pixel: order", 0.0)
    in_order = bins.astype(np.uint32, copy=False)[ranking._order]
    big = int(np.bincount(bins, minlength=n_bins).max()) if d else 0
    table = np.zeros((n + 1, n_bins), dtype=np.uint16 if big < 2**16 else np.uint32)
    for c in range(n):
        table[c + 1] = table[c] + np.bincount(in_order[c * step : (c + 1) * step], minlength=n_bins)[:n_bins]
        if c % 8 == 7:
            yield Step("counting per pixel", (c + 1) / n)
    return CutCounts(ranking, in_order, table, step_log)


def build_ranking(
    scores: Mapping[str, torch.Tensor | np.ndarray],
    scope: str = "global",
    structure: str = "unstructured",
    *,
    channel_dims: Mapping[str, int] | None = None,
    **metadata: str,
) -> Generator[Step, None, Ranking | NMRanking]:
    """Sort ``scores`` once (a job with progress) and return the :class:`Ranking`.
    ``channel_dims``: the output dimension of the weights whose channels are not along dim 0
    (:func:`visualizer.core.layers.output_dims` of the model).

    An N:M ``structure`` (``"2:4"``, ``"4:8"``) gives an :class:`~visualizer.core.pruning.nm.NMRanking`
    instead: exactly N of every M inputs kept in each eligible layer (the scope does not apply),
    the others dense and listed in its ``skipped``."""
    nm = parse_nm(structure)
    if nm is not None:
        yield Step(f"ranking: {structure} masks", 0.0)
        out = NMRanking(scores, *nm, transposed_of(channel_dims or {}, scores), metadata)
        yield Step(f"ranking: {structure} masks", 1.0)
        return out
    ranking = Ranking._empty()
    return (yield from ranking._build(scores, scope, structure, metadata, channel_dims))


def mask_from_scores(
    scores: Mapping[str, torch.Tensor | np.ndarray],
    density: float,
    scope: str = "global",
    structure: str = "unstructured",
    *,
    channel_dims: Mapping[str, int] | None = None,
    **metadata: str,
) -> MaskSet:
    """One mask at one density (ranks once; keep the Ranking instead for several densities)."""
    check_density(density)
    return Ranking.from_scores(scores, scope, structure, channel_dims=channel_dims, **metadata).mask_at(density)
