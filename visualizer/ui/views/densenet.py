"""DenseNet connectivity view: layer x layer connection strengths, before vs after group lasso.

In a DenseNet (Huang et al. 2017) every layer reads every earlier layer's features through a concatenation;
a group penalty on the weights reading each source's channel slice drives whole connections to
zero, leaving a sparse, interpretable circuit. Row i, column j is the strength (group norm) of
layer i reading layer j's features; connections that do not exist or were removed are drawn in
the background colour and listed in the caption line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from visualizer.ui.views.base import AnalysisView, set_title


@dataclass
class Connectivity:
    """Connection strengths of one dense block (or a whole model).

    readers: names of the layers reading the concatenation (rows);
    sources: names of the layers whose features are read (columns);
    strength: (len(readers), len(sources)) array, NaN or 0 where there is no connection.
    """

    readers: Sequence[str]
    sources: Sequence[str]
    strength: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.strength, dtype=float)
        if s.shape != (len(self.readers), len(self.sources)):
            raise ValueError(
                f"strength has shape {s.shape}, expected ({len(self.readers)}, {len(self.sources)})"
            )


QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no maximum" for widget and layout item sizes
MAX_TICKS = 40  # reader labels on the left axis; torchvision's densenet121 has ~120 readers
MAX_COLUMN_TICKS = 20  # column numbers on the bottom axis (three digits each, side by side)
MAX_GRID = 60  # cell grid lines only up to this many rows/columns (denser, they blacken the image)
MAX_LISTED = 16  # source columns named in the caption; the tooltip names them all


def tick_step(n: int, max_ticks: int = MAX_TICKS) -> int:
    """Label every k-th row/column so at most ``max_ticks`` labels share an axis."""
    return max(1, -(-n // max_ticks))


def _cmap() -> pg.ColorMap:
    return pg.colormap.get("CET-L8")


class ConnectivityView(AnalysisView):
    title = "DenseNet connections"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.before_plot = self.add_plot(self.canvas, 0, 0)
        self.after_plot = self.add_plot(self.canvas, 0, 1)
        self.colorbar = pg.ColorBarItem(
            colorMap=_cmap(), interactive=False, label="connection strength", width=12
        )
        self.canvas.addItem(self.colorbar, row=0, col=2)
        grid = self.canvas.ci.layout
        grid.setColumnStretchFactor(0, 10)
        grid.setColumnStretchFactor(1, 10)
        grid.setColumnStretchFactor(2, 1)
        for plot in (self.before_plot, self.after_plot):
            plot.getViewBox().invertY(True)
            plot.setLabel("bottom", "source layer (features read)")
            plot.setLabel("left", "reading layer")
        self.summary = QLabel(self)
        # wrapped: one line naming ~120 sources made the label (and so the window) 33,000 px wide
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self.before: Connectivity | None = None
        self.after: Connectivity | None = None
        self.ready()

    def set_connectivity(self, before: Connectivity, after: Connectivity | None = None) -> None:
        """Before and (optionally) after group-lasso pruning, drawn side by side on one scale."""
        self.before = before
        self.after = after
        self.redraw()

    def redraw(self) -> None:
        theme = self.theme
        set_title(self.before_plot, "before group lasso", theme)
        set_title(self.after_plot, "after group lasso", theme)
        mats = [c for c in (self.before, self.after) if c is not None]
        values = np.concatenate([np.asarray(c.strength, float).ravel() for c in mats]) if mats else []
        finite = [v for v in values if np.isfinite(v) and v > 0]
        hi = max(finite) if finite else 1.0
        self.colorbar.setLevels((0.0, hi))
        for plot, conn in ((self.before_plot, self.before), (self.after_plot, self.after)):
            plot.clear()
            s = None if conn is None else np.asarray(conn.strength, dtype=float)
            shown = s is not None and s.size > 0
            plot.setVisible(shown)
            # a hidden plot keeps its grid column unless it may shrink to nothing
            plot.setMaximumWidth(QWIDGETSIZE_MAX if shown else 0)
            if not shown:
                continue
            absent = ~np.isfinite(s) | (s <= 0)
            rgba = _cmap().map(np.clip(np.nan_to_num(s) / hi, 0, 1), mode="byte")
            bg = pg.mkColor(theme.background)
            rgba[absent] = (bg.red(), bg.green(), bg.blue(), 255)
            # rows = readers (y), columns = sources (x)
            image = pg.ImageItem(np.ascontiguousarray(rgba), axisOrder="row-major")
            plot.addItem(image)
            n_rows, n_cols = len(conn.readers), len(conn.sources)
            if max(n_rows, n_cols) <= MAX_GRID:
                # grid lines between cells, so removed (background) cells still read as cells;
                # one item drawing segment pairs, not one item per line
                vertical_x = np.repeat(np.arange(n_cols + 1.0), 2)  # (k, 0)-(k, n_rows)
                horizontal_y = np.repeat(np.arange(n_rows + 1.0), 2)  # (0, k)-(n_cols, k)
                xs = np.concatenate([vertical_x, np.tile([0.0, n_cols], n_rows + 1)])
                ys = np.concatenate([np.tile([0.0, n_rows], n_cols + 1), horizontal_y])
                plot.addItem(pg.PlotCurveItem(xs, ys, connect="pairs", pen=pg.mkPen(theme.muted, width=1)))
            # Columns by number (names would overlap at any useful size); the legend below names them.
            step = tick_step(n_cols, MAX_COLUMN_TICKS)
            plot.getAxis("bottom").setTicks([[(j + 0.5, str(j)) for j in range(0, n_cols, step)]])
            left = [(i + 0.5, _short(n)) for i, n in enumerate(conn.readers)][:: tick_step(n_rows)]
            plot.getAxis("left").setTicks([left])
            metrics = pg.QtGui.QFontMetrics(plot.getAxis("left").style["tickFont"] or self.font())
            widest = max((metrics.horizontalAdvance(t) for _, t in left), default=20)
            plot.getAxis("left").setWidth(widest + 12 + metrics.height())
            plot.setRange(xRange=(0, len(conn.sources)), yRange=(0, len(conn.readers)), padding=0.02)
        self.summary.setText(self._summary())

    def _summary(self) -> str:
        def count(c: Connectivity | None) -> int:
            if c is None:
                return 0
            s = np.asarray(c.strength, float)
            return int((np.isfinite(s) & (s > 0)).sum())

        if self.before is None:
            return ""
        text = f"connections before: {count(self.before)}"
        if self.after is not None:
            text += f"   after: {count(self.after)} ({count(self.before) - count(self.after)} removed)"
        named = [f"{j} {n}" for j, n in enumerate(self.before.sources)]
        self.summary.setToolTip("source columns:\n" + "\n".join(named))
        more = f"  … {len(named) - MAX_LISTED} more (hover to list all)" if len(named) > MAX_LISTED else ""
        return f"{text}\nsource columns: {'  '.join(named[:MAX_LISTED])}{more}"


def _short(name: str, limit: int = 14) -> str:
    """Tick labels: keep the informative tail of long dotted names."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
