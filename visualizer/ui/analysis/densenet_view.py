"""DenseNet connectivity view: layer x layer connection strengths, before vs after group lasso.

Seed 004: in a DenseNet every layer reads every earlier layer's features through a concatenation;
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

from visualizer.ui.analysis.base import AnalysisView, set_title


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
            plot.setVisible(s is not None and s.size > 0)
            if s is None or s.size == 0:
                continue
            absent = ~np.isfinite(s) | (s <= 0)
            rgba = _cmap().map(np.clip(np.nan_to_num(s) / hi, 0, 1), mode="byte")
            bg = pg.mkColor(theme.background)
            rgba[absent] = (bg.red(), bg.green(), bg.blue(), 255)
            # rows = readers (y), columns = sources (x)
            image = pg.ImageItem(np.ascontiguousarray(rgba), axisOrder="row-major")
            plot.addItem(image)
            # grid lines between cells, so removed (background) cells still read as cells
            pen = pg.mkPen(theme.muted, width=1)
            for k in range(len(conn.sources) + 1):
                plot.addItem(pg.PlotCurveItem([k, k], [0, len(conn.readers)], pen=pen))
            for k in range(len(conn.readers) + 1):
                plot.addItem(pg.PlotCurveItem([0, len(conn.sources)], [k, k], pen=pen))
            # Columns by number (names would overlap at any useful size); the legend below names them.
            plot.getAxis("bottom").setTicks([[(j + 0.5, str(j)) for j in range(len(conn.sources))]])
            left = [(i + 0.5, _short(n)) for i, n in enumerate(conn.readers)]
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
        columns = "  ".join(f"{j} {n}" for j, n in enumerate(self.before.sources))
        return f"{text}\nsource columns: {columns}"


def _short(name: str, limit: int = 14) -> str:
    """Tick labels: keep the informative tail of long dotted names."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def __getattr__(name: str):
    """``VIEW``: this view's ViewSpec for the workbench's registry (built on first access)."""
    if name == "VIEW":
        from visualizer.ui.analysis import view_spec

        return view_spec("densenet")
    raise AttributeError(name)
