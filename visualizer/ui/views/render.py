"""Display encodings for the heatmaps: tensors -> uint8 images + colour tables.

Display only, never statistics: every number the app reports comes from visualizer.core.
pyqtgraph draws a uint8 image through a 256-entry lookup table with fixed levels (0, 255) far
faster than a float image with auto levels (docs/performance.md), so each layer is encoded once
(weights or scores -> codes 2..255) and a mask change only selects between that code and the
"pruned" code 1. Code 0 is the gap between kernels in the kernel-grid layout.

Layouts of a parameter of shape (out, in, *k):
- ``flat``: a matrix out x (in * prod(k)) (linear layers are simply out x in);
- ``kernels``: conv kernels as a grid, out rows by in columns of kh x kw tiles, 1 pixel apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAP, PRUNED = 0, 1
LO, HI = 2, 255  # value codes

BACKGROUND = (255, 255, 255, 255)  # gaps between kernels
PRUNED_RGBA = (225, 225, 225, 255)  # pruned, in mask views
PRUNED_ON_VALUES = (55, 55, 55, 255)  # pruned, over a weight/score colour map (near-0 is pale)


def _cmap_table(name: str) -> np.ndarray:
    import pyqtgraph as pg

    return pg.colormap.get(name).getLookupTable(nPts=HI - LO + 1, alpha=True).astype(np.uint8)


def value_lut(cmap: str) -> np.ndarray:
    """256 x RGBA: gap, pruned, then the colour map over codes 2..255."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[GAP] = BACKGROUND
    lut[PRUNED] = PRUNED_ON_VALUES
    lut[LO:] = _cmap_table(cmap)
    return lut


def mask_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[GAP] = BACKGROUND
    lut[PRUNED] = PRUNED_RGBA
    lut[LO:] = (31, 94, 168, 255)  # kept
    return lut


# compare mode codes: kept in both, only in current, only in A (snapshot), in neither
CMP_BOTH, CMP_CUR, CMP_A, CMP_NONE = 2, 3, 4, 1
COMPARE_LEGEND = {
    "kept in both": (31, 94, 168, 255),
    "only current": (46, 160, 67, 255),
    "only snapshot A": (214, 95, 48, 255),
    "pruned in both": PRUNED_RGBA,
}


def compare_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[GAP] = BACKGROUND
    colours = list(COMPARE_LEGEND.values())
    lut[CMP_BOTH], lut[CMP_CUR], lut[CMP_A], lut[CMP_NONE] = colours
    return lut


@dataclass(frozen=True)
class Layout:
    """How an N-d parameter maps to image pixels (and back, for hover)."""

    shape: tuple[int, ...]
    kind: str  # flat | kernels

    @property
    def image_shape(self) -> tuple[int, int]:
        """Size in parameter pixels (before any display stride)."""
        s = self.shape
        if len(s) == 0:
            return (1, 1)
        if len(s) == 1:
            return (1, s[0])
        if self.kind == "kernels" and len(s) == 4:
            o, i, kh, kw = s
            return (o * (kh + 1) - 1, i * (kw + 1) - 1)
        return (s[0], int(np.prod(s[1:])))

    def index_at(self, row: int, col: int) -> tuple[int, ...] | None:
        """The parameter index drawn at image pixel (row, col), or None (gap / outside)."""
        h, w = self.image_shape
        if not (0 <= row < h and 0 <= col < w):
            return None
        s = self.shape
        if len(s) <= 1:
            return (col,) if len(s) == 1 else ()
        if self.kind == "kernels" and len(s) == 4:
            o, ky = divmod(row, s[2] + 1)
            i, kx = divmod(col, s[3] + 1)
            if ky == s[2] or kx == s[3]:
                return None
            return (o, i, ky, kx)
        return (row, *np.unravel_index(col, s[1:]))


def make_layout(shape: tuple[int, ...], kind: str = "flat") -> Layout:
    kind = kind if (kind == "kernels" and len(shape) == 4) else "flat"
    return Layout(tuple(shape), kind)


def to_image(arr: np.ndarray, layout: Layout, fill=0) -> np.ndarray:
    """Arrange a parameter-shaped array as the layout's 2-D image ('flat': a view, no copy)."""
    s = layout.shape
    if arr.ndim == 0:
        img = arr.reshape(1, 1)
    elif arr.ndim == 1:
        img = arr.reshape(1, -1)
    elif layout.kind == "kernels":
        o, i, kh, kw = s
        h, w = layout.image_shape
        img = np.full((o * (kh + 1), i * (kw + 1)), fill, dtype=arr.dtype)
        img.reshape(o, kh + 1, i, kw + 1)[:, :kh, :, :kw] = arr.transpose(0, 2, 1, 3)
        img = img[:h, :w]
    else:
        img = arr.reshape(s[0], -1)
    return img


@dataclass(frozen=True)
class Encoded:
    """A layer's values as codes LO..HI plus the value range the colour bar shows."""

    codes: np.ndarray  # uint8, parameter shape
    lo: float
    hi: float
    label: str


def encode_symmetric(values: np.ndarray, label: str) -> Encoded:
    """Linear, symmetric around 0: -m..m with m = max |v| (weights, signed scores)."""
    v = np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    m = float(np.abs(v).max()) if v.size else 0.0
    m = m if m > 0 else 1.0
    codes = np.rint((v / m + 1.0) * (0.5 * (HI - LO))).astype(np.int16) + LO
    return Encoded(np.clip(codes, LO, HI).astype(np.uint8), -m, m, label)


def encode_scores(values: np.ndarray, decades: float = 6.0) -> Encoded:
    """Non-negative scores on a log10 scale over at most ``decades``; signed ones linearly."""
    v = np.nan_to_num(values.astype(np.float64, copy=False), nan=0.0)
    if v.size and v.min() < 0:
        return encode_symmetric(v, "score")
    pos = v[v > 0]
    if pos.size == 0:
        return Encoded(np.full(v.shape, LO, dtype=np.uint8), 0.0, 1.0, "score")
    hi = float(np.log10(pos.max()))
    lo = max(float(np.log10(pos.min())), hi - decades)
    if hi - lo < 1e-9:
        return Encoded(np.full(v.shape, HI, dtype=np.uint8), lo - 1, hi, "log10 score")
    with np.errstate(divide="ignore"):
        lv = np.log10(np.where(v > 0, v, 10.0**lo))
    codes = np.rint((np.clip(lv, lo, hi) - lo) / (hi - lo) * (HI - LO)) + LO
    return Encoded(codes.astype(np.uint8), lo, hi, "log10 score")


def masked_codes(codes: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Value codes where kept, PRUNED where the mask is False."""
    if mask is None:
        return codes
    return np.where(mask, codes, np.uint8(PRUNED))


def mask_codes(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.uint8(HI), np.uint8(PRUNED))


def compare_codes(current: np.ndarray, snapshot: np.ndarray) -> np.ndarray:
    out = np.full(current.shape, CMP_NONE, dtype=np.uint8)
    out[current & snapshot] = CMP_BOTH
    out[current & ~snapshot] = CMP_CUR
    out[~current & snapshot] = CMP_A
    return out
