"""The whole model at a glance: every prunable tensor's mask as a downsampled tile.

A tile is a tensor drawn as an image of ``rows x cols`` weights: a linear weight (out, in) as
out x in, a convolution (out, in, kh, kw) as its grid of kernels out*kh x in*kw (the heatmap's
kernel grid without the gaps), anything else as out x the rest. A tile pixel stands for a block
of weights; what it shows is computed from exact block counts:

- ``kept``: the block's kept fraction f = kept / weights (the mask's density there);
- ``value`` / ``score``: the block's mean |w| (or mean score) over all its weights (scaled to
  the layer's range of block means), faded toward the pruned colour by the pruned share: rgb = f * colour + (1 - f) * grey, so a block pruned
  away is grey and a dense one shows its colour;
- ``diff``: two masks A and B: the block's shares kept by both, only by A, only by B and by
  neither, mixed as rgb = sum of share * colour.

The slider path is special (it must follow the mouse on a 25.5M-weight ResNet-50): the static
parts (block edges, totals, mean |w|) are computed once per model, a mask change only counts
kept weights per block. Blocks span whole output channels (rows) and, for a large convolution,
whole kernels of a run of input channels, so the count is one vectorised sum over the output
channels of a block (contiguous rows of the weight) and a segmented sum along the rows of the
much smaller result, never a transposed copy (see tests/benchmarks/bench_overview.py).

Tiles are ordered as the graph runs (:func:`execution_order`, a forward pass with hooks) and
packed in that reading order, each tile aspect-true, with its area proportional to its weight
count or all equal (:func:`pack_tiles`).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from visualizer.core.layers import private_view
from visualizer.core.tasks import Step

MODES = ("kept", "value", "score", "diff")
AREAS = ("params", "equal")
RESOLUTION = 96  # tile pixels per side at most
SMALL = 1 << 16  # tensors up to this many weights are drawn from their full kernel-grid image

PRUNED_RGBA = (225, 225, 225, 255)
BACKGROUND_RGBA = (255, 255, 255, 255)
# diff: kept by both, only A, only B, neither (the heatmap's compare colours)
DIFF_RGBA = ((31, 94, 168, 255), (214, 95, 48, 255), (46, 160, 67, 255), PRUNED_RGBA)
DIFF_LABELS = ("kept by both", "only A", "only B", "pruned in both")


# --- execution order ----------------------------------------------------------------------------


def execution_order(model: nn.Module, names: Sequence[str], example: torch.Tensor | None) -> list[str]:
    """``names`` (parameter names) in the order their modules first run in a forward pass on
    ``example`` (e.g. ``core.structure.graph.example_input``).

    A forward pre-hook on every module that owns one of the parameters records the first call;
    parameters whose module never runs (or all of them, when the forward pass fails or there is
    no example) keep their registration order after the ones that ran."""
    owners: dict[str, list[str]] = {}
    for n in names:
        owners.setdefault(n.rpartition(".")[0], []).append(n)
    seen: list[str] = []
    model = private_view(model)  # hooks and the eval flag on a view: other jobs run the model meanwhile
    modules = dict(model.named_modules())
    handles = []

    def hook_for(path: str):
        def hook(_module, _inputs):
            if path not in seen:
                seen.append(path)
        return hook

    try:
        for path in owners:
            if path in modules:  # TorchScript modules take no hooks: that raises, order kept
                handles.append(modules[path].register_forward_pre_hook(hook_for(path)))
        if example is None:
            raise ValueError("no example input")
        device = next(iter(model.parameters()), torch.empty(0)).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(example.to(device))
        finally:
            model.train(was_training)
    except Exception:  # a model that does not run on a guessed input keeps its registration order
        seen.clear()
    finally:
        for h in handles:
            h.remove()
    ordered = [n for path in seen for n in owners[path]]
    done = set(ordered)
    return ordered + [n for n in names if n not in done]


# --- tiles ----------------------------------------------------------------------------------------


def image_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of a tensor's tile: out*kh x in*kw for a 4-d weight, out x rest otherwise."""
    s = tuple(int(v) for v in shape)
    if len(s) == 0:
        return (1, 1)
    if len(s) == 1:
        return (1, s[0])
    if len(s) == 4:
        return (s[0] * s[2], s[1] * s[3])
    return (s[0], math.prod(s[1:]))


def _image(arr: np.ndarray) -> np.ndarray:
    """A tensor as its full tile image (4-d: the kernel grid out*kh x in*kw, a copy)."""
    if arr.ndim == 4:
        o, i, kh, kw = arr.shape
        return np.ascontiguousarray(arr.transpose(0, 2, 1, 3)).reshape(o * kh, i * kw)
    rows, cols = image_shape(arr.shape)
    return arr.reshape(rows, cols)


def _edges(n: int, most: int) -> tuple[int, int]:
    """(block size f, number of blocks) splitting n items into at most ``most`` blocks."""
    f = max(1, -(-n // max(1, most)))
    return f, -(-n // f)


@dataclass
class Tile:
    """One prunable tensor's tile: how its weights fall into pixel blocks.

    ``full``: a small convolution is reduced from its kernel-grid image (a copy); any other
    tensor from the weight as (out, rest), a view: blocks of ``row_f`` rows (output channels)
    and column blocks that end at ``col_edges`` (for a large convolution whole kernels of a run
    of input channels). ``pixels`` = (ny, nx) of the tile image."""

    name: str
    shape: tuple[int, ...]
    rows: int  # image rows (aspect)
    cols: int
    params: int
    full: bool
    row_f: int
    col_edges: np.ndarray  # int64 cumulative-sum indices, len nx + 1 (first is 0)
    pixels: tuple[int, int]
    offset: int = 0  # first pixel in the concatenated pixel arrays
    totals: np.ndarray | None = None  # weights per pixel (float64, flat ny*nx)

    @property
    def size(self) -> int:
        return self.pixels[0] * self.pixels[1]

    def matrix(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` (the tensor's shape) as the 2-d array the blocks are cut from (a view when
        not ``full``)."""
        if self.full:
            return _image(arr)
        return arr.reshape(self.shape[0] if len(self.shape) == 4 else self.rows, -1)

    def block_sums(self, arr: np.ndarray, dtype=np.int64) -> np.ndarray:
        """Sum of ``arr`` over each pixel block, flat (ny*nx). Bool input is counted.

        Rows first: ``row_f`` contiguous rows are added as whole vectors (fast, no transpose);
        then the columns as segments of the smaller result (``np.add.reduceat`` along rows)."""
        m = self.matrix(arr)
        if m.dtype == np.bool_:
            m = m.view(np.uint8)
            acc = np.uint8 if self.row_f < 256 else np.int32
        else:
            acc = np.float64
        n, c = m.shape
        f = self.row_f
        full_rows = n // f
        if f == 1:
            rows = m
        else:
            parts = [m[: full_rows * f].reshape(full_rows, f, c).sum(1, dtype=acc)] if full_rows else []
            if full_rows * f < n:
                parts.append(m[full_rows * f:].sum(0, dtype=acc)[None, :])
            rows = np.concatenate(parts, 0) if len(parts) > 1 else parts[0]
        out = np.add.reduceat(rows, self.col_edges[:-1], axis=1,
                              dtype=np.float64 if acc is np.float64 else np.int32)
        return out.reshape(-1).astype(dtype, copy=False)


def make_tile(name: str, shape: Sequence[int], resolution: int = RESOLUTION) -> Tile:
    """The blocks of one tensor's tile, at most ``resolution`` pixels a side."""
    shape = tuple(int(v) for v in shape)
    rows, cols = image_shape(shape)
    params = math.prod(shape)
    grid = len(shape) == 4 and shape[2] * shape[3] > 1
    full = grid and params <= SMALL
    if grid and not full:  # a large kernel grid: blocks of whole output channels and whole kernels
        o, i, kh, kw = shape
        row_f, ny = _edges(o, resolution)
        col_f, nx = _edges(i, resolution)
        col_edges = np.minimum(np.arange(nx + 1, dtype=np.int64) * col_f, i) * (kh * kw)
    else:  # the image itself (a view for matrices and 1x1 convolutions)
        row_f, ny = _edges(rows, resolution)
        col_f, nx = _edges(cols, resolution)
        col_edges = np.minimum(np.arange(nx + 1, dtype=np.int64) * col_f, cols)
    tile = Tile(name, shape, rows, cols, params, full, row_f, col_edges, (ny, nx))
    tile.totals = tile.block_sums(np.ones(shape, dtype=bool), np.float64)
    return tile


# --- the overview -------------------------------------------------------------------------------


class Overview:
    """Every prunable tensor as a tile, in execution order; the numbers behind the picture.

    Build once per model (:meth:`__init__` reads the weights for the mean |w| per pixel, a job
    for big models); then :meth:`set_mask` per slider move and :meth:`colours` per mode."""

    def __init__(self, params: Mapping[str, np.ndarray], order: Sequence[str] | None = None,
                 resolution: int = RESOLUTION) -> None:
        names = [n for n in (order or params) if n in params]
        names += [n for n in params if n not in set(names)]
        self.names = names
        self.tiles: list[Tile] = []
        offset = 0
        for n in names:
            t = make_tile(n, np.shape(params[n]), resolution)
            t.offset = offset
            offset += t.size
            self.tiles.append(t)
        self.n_pixels = offset
        self.index = {t.name: i for i, t in enumerate(self.tiles)}
        self.totals = np.concatenate([t.totals for t in self.tiles]) if self.tiles else np.zeros(0)
        self._inv_totals = 1.0 / np.maximum(self.totals, 1)
        self.value = self.levels({n: np.abs(np.asarray(params[n], dtype=np.float32)) for n in names})
        self.score: np.ndarray | None = None
        self.kept = self.totals.copy()  # kept weights per pixel (dense until a mask is set)
        self.reference: dict[str, np.ndarray] | None = None  # mask A of the diff mode
        self.ref_kept: np.ndarray | None = None  # diff: kept by A, and by A and B
        self.both: np.ndarray | None = None

    def _pixels(self, arrays: Mapping[str, np.ndarray], dtype=np.float64) -> np.ndarray:
        out = np.zeros(self.n_pixels, dtype=dtype)
        for t in self.tiles:
            a = arrays.get(t.name)
            if a is not None and tuple(np.shape(a)) == t.shape:
                out[t.offset: t.offset + t.size] = t.block_sums(np.asarray(a), dtype)
        return out

    def levels(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per pixel block mean of ``arrays``, scaled to the tile's range of block means,
        (mean - min) / (max - min), 0..1 in every tile (1 where a tile's blocks are all equal):
        the colour level of the ``value`` and ``score`` modes, contrast within each layer. Pure
        (a job may compute it and hand it to :attr:`score`)."""
        mean = np.nan_to_num(self._pixels(arrays) / np.maximum(self.totals, 1), nan=0.0, posinf=0.0, neginf=0.0)
        for t in self.tiles:
            part = mean[t.offset: t.offset + t.size]
            if not part.size:
                continue
            lo, hi = part.min(), part.max()
            if hi > lo:
                part -= lo
                part /= hi - lo
            else:
                part[:] = 1.0
        return mean

    def set_scores(self, scores: Mapping[str, np.ndarray] | None) -> None:
        """Mean score per pixel (0..1 per tile), or None (no ranking yet)."""
        self.score = None if scores is None else self.levels(
            {n: np.asarray(s, dtype=np.float32) for n, s in scores.items()})

    def set_mask(self, masks: Mapping[str, object], counts: Mapping[str, int] | None = None) -> None:
        """Kept weights per pixel of a mask (name -> bool tensor or array); tensors the mask does
        not name count as dense. ``counts`` (kept per tensor, e.g. the ranking's) lets a tensor
        kept whole or pruned whole skip its count. With a reference mask A set, also what both
        keep."""
        self.kept = self._counts(masks, counts)
        if self.reference is not None:
            self._update_both(masks)

    def set_kept(self, kept: np.ndarray) -> None:
        """Kept weights per pixel as counted elsewhere (a ranking's
        :class:`~visualizer.core.pruning.ranking.CutCounts` over :meth:`pixel_ids`): the slider
        path that reads no mask. Without a reference mask (the diff mode reads the masks)."""
        self.kept = np.asarray(kept, dtype=np.float64)

    def pixel_ids(self, names: Sequence[str], shapes: Sequence[Sequence[int]]) -> np.ndarray:
        """uint32 pixel of every weight of ``names`` (stored shapes ``shapes``), concatenated in
        that order: the pixel whose block sum (:meth:`Tile.block_sums`) counts it. A tensor
        without a tile, or of another shape, goes to a pixel past the last (``n_pixels``)."""
        sizes = [math.prod(int(v) for v in sh) for sh in shapes]
        out = np.full(sum(sizes), self.n_pixels, dtype=np.uint32)
        start = 0
        for name, shape, size in zip(names, shapes, sizes):
            i = self.index.get(name)
            t = None if i is None else self.tiles[i]
            if t is not None and tuple(t.shape) == tuple(int(v) for v in shape) and size:
                local = t.matrix(np.arange(size, dtype=np.int64).reshape(t.shape))  # flat index per cell
                n, c = local.shape
                cols = np.searchsorted(t.col_edges, np.arange(c), side="right") - 1
                pix = (np.arange(n) // t.row_f)[:, None] * t.pixels[1] + cols[None, :] + t.offset
                part = out[start : start + size]
                part[local.reshape(-1)] = pix.reshape(-1)
            start += size
        return out

    def set_reference(self, reference: Mapping[str, object] | None, masks: Mapping[str, object] | None = None) -> None:
        """Mask A for the diff mode (``masks``: the current mask B); None clears it."""
        if reference is None:
            self.reference = self.ref_kept = self.both = None
            return
        self.reference = {n: _as_numpy(m) for n, m in reference.items()}
        self.ref_kept = self._counts(self.reference)
        self._update_both(masks or {})

    def _update_both(self, masks: Mapping[str, object]) -> None:
        a = self.reference or {}
        both = {}
        for t in self.tiles:
            ma, mb = a.get(t.name), masks.get(t.name)
            ma = None if ma is None or ma.shape != t.shape else ma
            mb = None if mb is None else _as_numpy(mb)
            mb = None if mb is None or mb.shape != t.shape else mb
            if ma is not None and mb is not None:
                both[t.name] = ma & mb
            else:  # a tensor a mask does not name is dense in it
                both[t.name] = ma if mb is None else mb
        self.both = self._counts(both)

    def _counts(self, masks: Mapping[str, object], counts: Mapping[str, int] | None = None,
                dense_missing: bool = True) -> np.ndarray:
        out = self.totals.copy() if dense_missing else np.zeros(self.n_pixels)
        for t in self.tiles:
            k = None if counts is None else counts.get(t.name)
            if k is not None and (k == 0 or k == t.params):
                out[t.offset: t.offset + t.size] = t.totals if k else 0.0
                continue
            m = masks.get(t.name) if hasattr(masks, "get") else None
            if m is None:
                continue
            arr = _as_numpy(m)
            if arr.shape != t.shape:
                continue
            out[t.offset: t.offset + t.size] = t.block_sums(arr, np.float64)
        return out

    def fractions(self) -> np.ndarray:
        """Kept fraction per pixel."""
        return self.kept * self._inv_totals

    def diff_shares(self) -> np.ndarray | None:
        """(pixels, 4): shares kept by both, only A, only B, neither; None without a reference."""
        if self.ref_kept is None or self.both is None:
            return None
        t = np.maximum(self.totals, 1)
        both = self.both
        only_a = self.ref_kept - both
        only_b = self.kept - both
        neither = self.totals - both - only_a - only_b
        return np.stack([both, only_a, only_b, neither], 1) / t[:, None]

    def codes(self, mode: str) -> np.ndarray:
        """uint8 colour code per tile pixel for ``mode`` (see :meth:`table`): ``kept`` the kept
        fraction in 256 steps; ``value``/``score`` 16 steps of the kept fraction times 16 of the
        level (code = 16 * f_q + level_q); ``diff`` the nearest of 16 x 16 mixes is not exact, so
        diff has its own colours (:meth:`diff_colours`) and returns no codes."""
        f = self.kept * self._inv_totals
        if mode == "kept":
            return np.rint(np.clip(f, 0.0, 1.0) * 255).astype(np.uint8)
        level = self._levels(mode)
        fq = np.rint(np.clip(f, 0.0, 1.0) * 15).astype(np.uint8)
        return (fq << 4) | level

    def _levels(self, mode: str) -> np.ndarray:
        """16-step level codes of ``value`` or ``score``, cached per level array."""
        level = self.value if mode == "value" else self.score
        if level is None:
            return np.full(self.n_pixels, 15, dtype=np.uint8)
        cache = getattr(self, "_level_cache", None)
        if cache is None or cache[0] is not level:
            cache = self._level_cache = (level, np.rint(np.clip(level, 0.0, 1.0) * 15).astype(np.uint8))
        return cache[1]

    @staticmethod
    def table(mode: str, lut: np.ndarray | None = None) -> np.ndarray:
        """256 x RGBA colours of the codes of ``mode``: ``kept`` indexes ``lut`` by the kept
        fraction; ``value``/``score`` fade ``lut``'s colour of the level toward the pruned grey
        by the pruned share, rgb = f * colour + (1 - f) * grey."""
        lut = _default_lut() if lut is None else np.asarray(lut, dtype=np.uint8)
        if mode == "kept":
            return lut.copy()
        f = (np.arange(256) >> 4) / 15.0
        colour = lut[np.rint((np.arange(256) & 15) * 17).astype(np.intp)].astype(np.float64)
        grey = np.asarray(PRUNED_RGBA, dtype=np.float64)
        return np.rint(grey + f[:, None] * (colour - grey)).astype(np.uint8)

    def colours(self, mode: str, lut: np.ndarray | None = None) -> np.ndarray:
        """(pixels, 4) uint8 RGBA of every tile pixel in ``mode`` (see the module docstring)."""
        if mode not in MODES:
            raise ValueError(f"unknown overview mode {mode!r}; choose one of: {', '.join(MODES)}")
        if mode == "diff":
            shares = self.diff_shares()
            if shares is not None:
                return np.rint(shares @ np.asarray(DIFF_RGBA, dtype=np.float64)).clip(0, 255).astype(np.uint8)
            mode = "kept"
        return self.table(mode, lut)[self.codes(mode)]

    def value_colours(self, values: Mapping[str, float], lo: float, hi: float, lut: np.ndarray) -> np.ndarray:
        """(pixels, 4) uint8 RGBA with every pixel of a tile in the colour of one number per
        tensor (keyed by the tensor's name or its layer's, e.g. a model diff's relative change):
        ``lut`` (256 x RGBA) at t = (v - lo) / (hi - lo) clipped to [0, 1]; a tensor without a
        finite value is drawn in the pruned grey."""
        lut = np.asarray(lut, dtype=np.uint8)
        out = np.empty((self.n_pixels, 4), dtype=np.uint8)
        span = hi - lo if hi > lo else 1.0
        for t in self.tiles:
            v = values.get(t.name, values.get(t.name.rpartition(".")[0]))
            if v is None or not np.isfinite(v):
                colour = PRUNED_RGBA
            else:
                colour = lut[int(round(float(np.clip((v - lo) / span, 0.0, 1.0)) * (len(lut) - 1)))]
            out[t.offset: t.offset + t.size] = colour
        return out

    def tile_stats(self, name: str) -> dict:
        """Kept and total weights of one tile (from the pixel counts)."""
        t = self.tiles[self.index[name]]
        sl = slice(t.offset, t.offset + t.size)
        return {"name": name, "shape": t.shape, "kept": int(round(self.kept[sl].sum())), "total": t.params}


def _as_numpy(m) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        return m.detach().cpu().numpy()
    return np.asarray(m)


def _default_lut() -> np.ndarray:
    t = np.linspace(0, 1, 256)[:, None]
    lo, hi = np.array([240, 240, 240, 255.0]), np.array([31, 94, 168, 255.0])
    return np.rint(lo + t * (hi - lo)).astype(np.uint8)


def build_overview_job(model: nn.Module | None, params: Mapping[str, np.ndarray], names: Sequence[str],
                       example: torch.Tensor | None = None,
                       resolution: int = RESOLUTION) -> Generator[Step, None, Overview]:
    """A job: the execution order (a forward pass on ``example``, skipped without a model),
    then the tiles."""
    yield Step("overview: execution order", 0.0)
    order = list(names) if model is None else execution_order(model, names, example)
    yield Step("overview: tiles", 0.5)
    overview = Overview(params, order, resolution)
    yield Step("overview: done", 1.0)
    return overview


# --- packing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A tile's rectangle on the canvas in pixels (x, y from the top left)."""

    name: str
    x: int
    y: int
    w: int
    h: int


@dataclass
class Layout:
    """Tiles placed on a ``width x height`` canvas, and the pixel -> tile-pixel index map."""

    width: int
    height: int
    rects: list[Placed]
    index_map: np.ndarray  # (height, width) int32: tile pixel + 1, 0 = background
    columns: bool = False  # shelves are columns (top to bottom, then right), not rows

    def tile_at(self, x: float, y: float) -> str | None:
        for r in self.rects:
            if r.x <= x < r.x + r.w and r.y <= y < r.y + r.h:
                return r.name
        return None

    def rect(self, name: str) -> Placed | None:
        return next((r for r in self.rects if r.name == name), None)


def tile_sizes(tiles: Sequence[Tile], area: str, scale: float) -> list[tuple[float, float]]:
    """(w, h) of each tile at ``scale``: aspect cols/rows true, area proportional to the weight
    count (``params``) or equal: w = scale * sqrt(A * a), h = scale * sqrt(A / a)."""
    if area not in AREAS:
        raise ValueError(f"unknown tile area {area!r}; choose one of: {', '.join(AREAS)}")
    out = []
    for t in tiles:
        a = t.cols / max(t.rows, 1)
        big_a = float(t.params) if area == "params" else 1.0
        out.append((scale * math.sqrt(big_a * a), scale * math.sqrt(big_a / a)))
    return out


def _shelves(sizes: list[tuple[float, float]], width: float, gap: float, least: float):
    """Shelf packing in reading order: (x, y, w, h) per tile and the total height. A tile wider
    than the canvas is scaled down to fit (aspect kept); sides are at least ``least`` pixels."""
    placed = []
    x = y = shelf = 0.0
    for w, h in sizes:
        if w > width:
            h, w = h * width / w, width
        w, h = max(w, least), max(h, least)
        if x > 0 and x + w > width:
            y += shelf + gap
            x = shelf = 0.0
        placed.append((x, y, w, h))
        x += w + gap
        shelf = max(shelf, h)
    return placed, y + shelf


def _fit_scale(sizes: list[tuple[float, float]], width: int, height: int, gap: int, least: int) -> float:
    """The largest scale at which the shelves fit ``height`` (bisection)."""
    lo, hi = 0.0, 2.0 * max(width, height) / max(min(max(w, h) for w, h in sizes), 1e-12)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        _, total = _shelves([(w * mid, h * mid) for w, h in sizes], width, gap, least)
        if total <= height:
            lo = mid
        else:
            hi = mid
    return lo


def pack_tiles(overview: Overview, width: int, height: int, area: str = "params", gap: int = 3,
               least: int = 3) -> Layout:
    """Place the tiles in execution order on a ``width x height`` canvas: shelves filled left to
    right (or, where that fits larger tiles, top to bottom), the largest common scale that fits
    (bisection), tiles aspect-true with area proportional to weights or equal. Returns the
    rectangles and the canvas index map."""
    width, height = max(int(width), 8), max(int(height), 8)
    tiles = overview.tiles
    if not tiles:
        return Layout(width, height, [], np.zeros((height, width), np.int32))
    base = tile_sizes(tiles, area, 1.0)
    # shelves as rows (left to right, then down) or as columns (down, then right): whichever
    # fits the tiles at the larger scale on this canvas
    best = None
    for columns in (False, True):
        sizes = [(h, w) for w, h in base] if columns else base
        wide, high = (height, width) if columns else (width, height)
        scale = _fit_scale(sizes, wide, high, gap, least)
        if best is None or scale > best[0] * 1.02:
            placed, _ = _shelves([(w * scale, h * scale) for w, h in sizes], wide, gap, least)
            if columns:
                placed = [(y, x, h, w) for x, y, w, h in placed]
            best = (scale, placed, columns)
    _scale, placed, columns = best
    rects = []
    index_map = np.zeros((height, width), dtype=np.int32)
    for t, (x, y, w, h) in zip(tiles, placed):
        x0, y0 = int(round(x)), int(round(y))
        x1, y1 = min(width, max(x0 + 1, int(round(x + w)))), min(height, max(y0 + 1, int(round(y + h))))
        if x1 <= x0 or y1 <= y0:
            continue
        rects.append(Placed(t.name, x0, y0, x1 - x0, y1 - y0))
        ny, nx = t.pixels
        ry = (np.arange(y1 - y0) * ny // (y1 - y0)).astype(np.int32)
        rx = (np.arange(x1 - x0) * nx // (x1 - x0)).astype(np.int32)
        index_map[y0:y1, x0:x1] = t.offset + 1 + ry[:, None] * nx + rx[None, :]
    return Layout(width, height, rects, index_map, columns)


def canvas(layout: Layout, colours: np.ndarray) -> np.ndarray:
    """(height, width, 4) uint8 RGBA picture: each canvas pixel the colour of its tile pixel."""
    table = np.empty((colours.shape[0] + 1, 4), dtype=np.uint8)
    table[0] = BACKGROUND_RGBA
    table[1:] = colours
    flat = table.view(np.uint32).reshape(-1)
    return flat[layout.index_map].view(np.uint8).reshape(layout.height, layout.width, 4)
