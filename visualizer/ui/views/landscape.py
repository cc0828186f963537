"""Loss landscape view: 1D interpolation curves with the barrier, 2D slice as heatmap + contours.

Left: loss along one or more 1D paths (alpha from 0 to 1: init -> trained, dense -> pruned,
ticket -> re-init, two IMP runs from one rewind point), each with its error/loss barrier marked:
the largest gap between the curve and the straight chord between its end points.
Right: the 2D slice (filter-normalised directions) as an image (log loss) with iso-loss contours,
the trained point, the pruned point and the training trajectory marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from visualizer.ui.views.base import AnalysisView, set_title

CONTOURS = 8


def LOSS_CMAP() -> pg.ColorMap:  # noqa: N802 - reads like a constant
    """Low loss dark, high loss bright (viridis: perceptually uniform)."""
    return pg.colormap.get("viridis")


@dataclass
class Curve1D:
    """A 1D slice: ``values[i]`` at ``alpha[i]``.

    label: legend text ('dense -> pruned'); quantity: 'loss' or 'error' (axis label).
    barrier: the barrier height as computed by core (max over alpha of the curve minus the
        chord between the end points), or None to leave it unmarked; barrier_alpha: where.
    """

    alpha: Sequence[float]
    values: Sequence[float]
    label: str = "interpolation"
    quantity: str = "loss"
    barrier: float | None = None
    barrier_alpha: float | None = None


@dataclass
class Surface2D:
    """A 2D slice: ``loss[i, j]`` at (alpha[i], beta[j]).

    points: named markers in (alpha, beta) coordinates, e.g. {'trained': (0, 0), 'pruned': ...}.
    trajectory: (k, 2) array of (alpha, beta) along training, or None.
    """

    alpha: Sequence[float]
    beta: Sequence[float]
    loss: np.ndarray
    accuracy: np.ndarray | None = None
    points: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    trajectory: np.ndarray | None = None


class LandscapeView(AnalysisView):
    title = "Landscape"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.curve_plot = self.add_plot(self.canvas, 0, 0)
        self.surface_plot = self.add_plot(self.canvas, 0, 1)
        self.curve_plot.addLegend(offset=(10, 10))
        self.surface_plot.addLegend(offset=(-10, 10))
        self.curve_plot.setLabel("bottom", "alpha")
        for plot in (self.curve_plot, self.surface_plot):
            for axis in ("left", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
        self.surface_plot.setLabel("bottom", "alpha (direction 1)")
        self.surface_plot.setLabel("left", "beta (direction 2)")
        self.image = pg.ImageItem(axisOrder="col-major")  # loss[i, j]: i along alpha = x
        self.colorbar = pg.ColorBarItem(
            colorMap=LOSS_CMAP(), interactive=False, label="log10 loss", width=12
        )
        self.canvas.addItem(self.colorbar, row=0, col=2)
        self.curves: list[Curve1D] = []
        self.surface: Surface2D | None = None
        self.ready()

    def set_curves(self, curves: Sequence[Curve1D]) -> None:
        """1D interpolation curves (drawn overlaid; barriers marked where given)."""
        for c in curves:
            if len(c.alpha) != len(c.values):
                raise ValueError(f"{c.label}: alpha and values differ in length")
        self.curves = list(curves)
        self.redraw()

    def set_surface(self, surface: Surface2D | None) -> None:
        """The 2D slice; ``loss`` has shape (len(alpha), len(beta))."""
        if surface is not None:
            loss = np.asarray(surface.loss)
            if loss.shape != (len(surface.alpha), len(surface.beta)):
                raise ValueError(
                    f"loss has shape {loss.shape}, expected ({len(surface.alpha)}, {len(surface.beta)})"
                )
        self.surface = surface
        self.redraw()

    def redraw(self) -> None:
        self._draw_curves()
        self._draw_surface()

    def _draw_curves(self) -> None:
        theme = self.theme
        plot = self.curve_plot
        plot.clear()
        plot.legend.clear()
        set_title(plot, "1D interpolation (barrier marked)", theme)
        quantity = self.curves[0].quantity if self.curves else "loss"
        plot.setLabel("left", quantity, color=theme.foreground)
        for i, c in enumerate(self.curves):
            a = np.asarray(c.alpha, dtype=float)
            v = np.asarray(c.values, dtype=float)
            plot.plot(a, v, pen=self.pen(i), name=c.label)
            if len(a) >= 2:
                # the chord between the end points: the barrier is measured against it
                plot.plot([a[0], a[-1]], [v[0], v[-1]], pen=self.pen(i, 0.5, style=Qt.PenStyle.DotLine))
            if c.barrier is not None and c.barrier_alpha is not None and len(a) >= 2:
                chord = v[0] + (c.barrier_alpha - a[0]) / (a[-1] - a[0]) * (v[-1] - v[0])
                top = chord + c.barrier
                plot.plot(
                    [c.barrier_alpha, c.barrier_alpha], [chord, top],
                    pen=pg.mkPen(theme.color(i), width=theme.line_width * 1.5),
                )
                # at an end point a centred label hung half outside the plot
                where = (c.barrier_alpha - a[0]) / (a[-1] - a[0])
                label = pg.TextItem(
                    f"barrier {c.barrier:.3g}", color=theme.color(i),
                    anchor=(0.0 if where < 0.15 else 1.0 if where > 0.85 else 0.5, 1.1),
                )
                label.setPos(c.barrier_alpha, top)
                plot.addItem(label)
        self._fit_curve_range()

    def _fit_curve_range(self) -> None:
        """Auto range, except for a flat curve: dense and pruned equal (100% density) gave a
        loss axis 1e-16 tall, ticks printed with 16 digits ('0.1674394905567174')."""
        values = np.concatenate([np.asarray(c.values, dtype=float) for c in self.curves] or [np.zeros(0)])
        values = values[np.isfinite(values)]
        plot = self.curve_plot
        if values.size == 0:
            return
        low, high = float(values.min()), float(values.max())
        floor = max(1e-3 * max(abs(low), abs(high)), 1e-6)
        if high - low < floor:
            middle = 0.5 * (low + high)
            plot.setYRange(middle - floor, middle + floor, padding=0)
        else:
            plot.enableAutoRange(axis="y")

    def _draw_surface(self) -> None:
        theme = self.theme
        plot = self.surface_plot
        plot.clear()
        plot.legend.clear()
        set_title(plot, "2D slice: log10 loss with contours", theme)
        s = self.surface
        if s is None:
            return
        alpha = np.asarray(s.alpha, dtype=float)
        beta = np.asarray(s.beta, dtype=float)
        # display transform only: loss spans orders of magnitude, colour by log10
        loss = np.nan_to_num(np.asarray(s.loss, dtype=float), nan=np.inf)
        positive = loss[(loss > 0) & np.isfinite(loss)]
        floor = float(positive.min()) if positive.size else 1e-12
        z = np.log10(np.maximum(loss, floor))
        finite = z[np.isfinite(z)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1e-6
        z = np.where(np.isfinite(z), z, hi)
        self.image.setImage(z, levels=(lo, hi))
        self.image.setColorMap(LOSS_CMAP())
        da = (alpha[-1] - alpha[0]) / max(len(alpha) - 1, 1)
        db = (beta[-1] - beta[0]) / max(len(beta) - 1, 1)
        self.image.setRect(
            alpha[0] - da / 2, beta[0] - db / 2, da * len(alpha) or 1.0, db * len(beta) or 1.0
        )
        plot.addItem(self.image)
        self.colorbar.setLevels((lo, hi))
        self.colorbar.setColorMap(LOSS_CMAP())
        if min(z.shape) >= 2:
            for level in np.linspace(lo, hi, CONTOURS + 2)[1:-1]:
                iso = pg.IsocurveItem(
                    data=z, level=level, axisOrder="col-major", pen=pg.mkPen(theme.foreground, width=max(1.0, theme.line_width / 2))
                )
                # IsocurveItem draws in index space: map indices to (alpha, beta)
                iso.setTransform(pg.QtGui.QTransform(da, 0, 0, db, alpha[0], beta[0]))
                plot.addItem(iso)
        size = 14 * theme.marker_scale
        if s.trajectory is not None and len(s.trajectory):
            traj = np.asarray(s.trajectory, dtype=float)
            plot.plot(
                traj[:, 0], traj[:, 1], pen=pg.mkPen(theme.highlight, width=theme.line_width),
                symbol="o", symbolSize=size / 2, symbolBrush=theme.highlight, name="trajectory",
            )
        symbols = ["star", "x", "t", "s", "d"]
        for i, (name, (a, b)) in enumerate(s.points.items()):
            plot.plot(
                [a], [b], pen=None, symbol=symbols[i % len(symbols)], symbolSize=size * 1.4,
                symbolBrush=theme.color(i), symbolPen=pg.mkPen(theme.foreground, width=1.5),
                name=name,
            )
        plot.setXRange(alpha[0], alpha[-1], padding=0.02)
        plot.setYRange(beta[0], beta[-1], padding=0.02)
