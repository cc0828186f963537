"""The heatmap's N:M mode: the boundaries of the M-blocks drawn over the layer's image.

An N:M mask keeps N weights in every group of M consecutive inputs (docs/theory.md §20); with the
block edges drawn, a user sees that each block holds exactly N kept weights. For a flat layout the
input dimension runs along the columns (a conv kernel flattened as in·kh·kw); transformers'
``Conv1D`` stores (in, out), so its blocks run down the rows. Lines are drawn only where they are
at least a few pixels apart (zoom in on a wide layer to see them). Drawing only: M comes from the
window's structure (``2:4`` -> 4; 4 when the structure is not N:M).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from visualizer.core.pruning.nm import parse_nm, transposed_weights

MIN_PIXELS = 4  # block edges closer than this on screen are not drawn


def block_size(structure: str | None) -> int:
    """M of an N:M structure text, else 4 (the 2:4 kernels' group)."""
    try:
        nm = parse_nm(structure or "")
    except ValueError:
        nm = None
    return nm[1] if nm else 4


def inputs_along_rows(model, name: str | None) -> bool:
    """Whether the weight ``name`` stores its inputs along the rows (transformers' Conv1D)."""
    if model is None or not name:
        return False
    return name in transposed_weights(model)


class BlockLines:
    """One line item on a heatmap plot holding the M-block edges of the visible region."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.item = pg.PlotCurveItem(pen=pg.mkPen((230, 80, 20), width=1), connect="pairs")
        self.item.setZValue(10)
        self.item.setVisible(False)
        plot.addItem(self.item)
        self.edges = np.zeros(0)

    def update(self, enabled: bool, shape: tuple[int, int], m: int, along_rows: bool = False) -> None:
        """Edges every ``m`` inputs over an image of ``shape`` (rows, cols) in the view's range."""
        if not enabled or m < 2:
            self.item.setVisible(False)
            self.edges = np.zeros(0)
            return
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        rows, cols = shape
        span, extent = (y1 - y0, cols) if along_rows else (x1 - x0, rows)
        width = self.plot.getViewBox().width() if not along_rows else self.plot.getViewBox().height()
        if span <= 0 or width / span * m < MIN_PIXELS:
            self.item.setVisible(False)
            self.edges = np.zeros(0)
            return
        lo, hi = (y0, y1) if along_rows else (x0, x1)
        limit = rows if along_rows else cols
        edges = np.arange(max(0, int(lo) // m * m), min(limit, int(hi) + m) + 1, m, dtype=float)
        self.edges = edges
        a = np.repeat(edges, 2)
        b = np.tile([0.0, float(extent)], edges.size)
        x, y = (b, a) if along_rows else (a, b)
        self.item.setData(x=x, y=y)
        self.item.setVisible(True)
