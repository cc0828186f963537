"""Hessian spectrum view: eigenvalues, SLQ density (log y), lambda_max and kappa against tau, trace.

Four panels:
1. top-k and bottom-k eigenvalues (dense and masked side by side, one column each);
2. the SLQ spectral density on a log y axis, dense and masked overlaid;
3. lambda_max and the condition number kappa = lambda_max / lambda_min (of the positive part)
   of the masked Hessian H_tau^m against the rewind point tau of one IMP run (Frankle et al. 2020);
4. the Hutchinson trace with its standard error as an error bar.

The view only draws numbers handed to it (see :class:`SpectrumData`, :class:`RewindSeries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from visualizer.ui.views.base import AnalysisView, set_title

DENSITY_FLOOR = 1e-8  # log axis: densities below this are drawn at this value


@dataclass
class SpectrumData:
    """One Hessian spectrum (the dense or the masked operator at one point).

    label: 'dense' or 'masked' (legend text).
    top: the top-k eigenvalues (any order); bottom: the bottom-k eigenvalues.
    grid, density: the SLQ spectral density sampled on ``grid`` (same length), or None.
    trace, trace_err: the trace estimate and its standard error, or None (no error bar: the SLQ
        estimate while the density is computed, or one Hutchinson probe).
    trace_source: where the trace comes from ('hutchinson', 'eigenvalues' (exact), 'slq'), or None.
    hvps: number of Hessian-vector products used (shown in the legend), or None.
    """

    label: str
    top: Sequence[float]
    bottom: Sequence[float] = ()
    grid: Sequence[float] | None = None
    density: Sequence[float] | None = None
    trace: float | None = None
    trace_err: float | None = None
    hvps: int | None = None
    trace_source: str | None = None


@dataclass
class RewindSeries:
    """lambda_max and condition number of the masked Hessian at rewind points tau of an IMP run."""

    tau: Sequence[float]
    lambda_max: Sequence[float]
    condition: Sequence[float]  # NaN where undefined
    note: str = ""  # why the condition number is missing, when it is


class SpectrumView(AnalysisView):
    title = "Spectrum"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.eig_plot = self.add_plot(self.canvas, 0, 0)
        self.density_plot = self.add_plot(self.canvas, 0, 1)
        self.tau_plot = self.add_plot(self.canvas, 1, 0)
        self.trace_plot = self.add_plot(self.canvas, 1, 1)
        self.density_plot.setLogMode(x=False, y=True)
        self.eig_plot.setLabel("left", "eigenvalue")
        self.density_plot.setLabel("left", "density")
        self.density_plot.setLabel("bottom", "eigenvalue")
        self.tau_plot.setLabel("bottom", "rewind point tau")
        self.tau_plot.setLabel("left", "lambda_max")
        self.trace_plot.setLabel("left", "trace")
        for plot in (self.eig_plot, self.density_plot, self.tau_plot):
            plot.addLegend(offset=(-10, 10))
        self.kappa_box = pg.ViewBox()
        self.tau_plot.showAxis("right")
        self.tau_plot.scene().addItem(self.kappa_box)
        self.tau_plot.getAxis("right").linkToView(self.kappa_box)
        self.kappa_box.setXLink(self.tau_plot)
        self.tau_plot.getAxis("right").setLabel("condition number kappa")
        self.tau_plot.getViewBox().sigResized.connect(self._sync_kappa_box)
        for plot in (self.eig_plot, self.density_plot, self.tau_plot, self.trace_plot):
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.spectra: list[SpectrumData] = []
        self.rewind: RewindSeries | None = None
        self.rewind_pending: str | None = None  # a partial figure: the series being computed
        self.ready()

    def _sync_kappa_box(self) -> None:
        self.kappa_box.setGeometry(self.tau_plot.getViewBox().sceneBoundingRect())

    def set_spectra(self, spectra: Sequence[SpectrumData]) -> None:
        """Show one or more spectra overlaid (usually dense then masked, at the same point)."""
        self.spectra = list(spectra)
        self.redraw()

    def set_rewind(self, series: RewindSeries | None, pending: str | None = None) -> None:
        """lambda_max and kappa of H_tau^m against tau (the rewinding argument of Frankle et al. 2020).
        ``pending``: the series is being computed (a partial figure): said instead of the hint
        that one is missing."""
        if series is not None and not (
            len(series.tau) == len(series.lambda_max) == len(series.condition)
        ):
            raise ValueError("tau, lambda_max and condition must have the same length")
        self.rewind = series
        self.rewind_pending = pending
        self.redraw()

    # drawing ------------------------------------------------------------------------------------
    def redraw(self) -> None:
        theme = self.theme
        for plot in (self.eig_plot, self.density_plot, self.tau_plot, self.trace_plot):
            plot.clear()
            if plot.legend is not None:
                plot.legend.clear()
        self.kappa_box.clear()
        set_title(self.eig_plot, "top / bottom eigenvalues", theme)
        set_title(self.density_plot, "spectral density (SLQ, log scale)", theme)
        set_title(self.tau_plot, "lambda_max and kappa vs rewind point", theme)
        set_title(self.trace_plot, "trace (Hutchinson) +- std. error", theme)
        size = 9 * theme.marker_scale
        ticks = []
        for i, sp in enumerate(self.spectra):
            color = theme.color(i)
            name = sp.label if sp.hvps is None else f"{sp.label} ({sp.hvps} HVPs)"
            top = np.sort(np.asarray(sp.top, dtype=float))[::-1]
            bottom = np.sort(np.asarray(sp.bottom, dtype=float))
            vals = np.concatenate([top, bottom])
            if vals.size:
                x = i + np.linspace(-0.25, 0.25, vals.size) if vals.size > 1 else np.array([i])
                self.eig_plot.addItem(pg.ScatterPlotItem(
                    x=x, y=vals, size=size, brush=pg.mkBrush(color), pen=None, name=name,
                    symbol="o",
                ))
            ticks.append((i, sp.label))
            if sp.grid is not None and sp.density is not None:
                grid = np.asarray(sp.grid, dtype=float)
                dens = np.maximum(np.nan_to_num(np.asarray(sp.density, dtype=float)), DENSITY_FLOOR)
                self.density_plot.plot(grid, dens, pen=self.pen(i), name=name)
            if sp.trace is not None:
                # an error bar only where there is a standard error: "+- 0" would claim an exact
                # trace where the estimate (SLQ while it fills, one probe) has none
                known = sp.trace_err is not None and np.isfinite(sp.trace_err)
                err = float(sp.trace_err) if known else 0.0
                bar = pg.BarGraphItem(
                    x=[i], height=[sp.trace], width=0.6, brush=pg.mkBrush(color),
                    pen=pg.mkPen(theme.foreground),
                )
                self.trace_plot.addItem(bar)
                if known:
                    self.trace_plot.addItem(pg.ErrorBarItem(
                        x=np.array([i]), y=np.array([sp.trace]), height=np.array([2 * err]),
                        beam=0.25, pen=pg.mkPen(theme.foreground, width=theme.line_width),
                    ))
                text = (f"{sp.trace:.4g} +- {err:.2g}" if known
                        else f"{sp.trace:.4g} ({sp.trace_source or 'estimate'}, no error bar)")
                label = pg.TextItem(text, color=theme.foreground, anchor=(0.5, 1.2))
                label.setPos(i, max(sp.trace + err, 0.0))
                self.trace_plot.addItem(label)
        traces = [
            sp.trace + (float(sp.trace_err) if sp.trace_err is not None and np.isfinite(sp.trace_err) else 0.0)
            for sp in self.spectra if sp.trace is not None
        ]
        if traces:
            lows = [min(sp.trace, 0.0) for sp in self.spectra if sp.trace is not None]
            self.trace_plot.setYRange(min(lows), max(max(traces), 0.0) * 1.25 or 1.0)
        zero = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(theme.muted, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.eig_plot.addItem(zero)
        for plot in (self.eig_plot, self.trace_plot):
            plot.getAxis("bottom").setTicks([ticks])
            plot.setXRange(-0.7, max(len(ticks), 1) - 0.3)
        self._draw_rewind()

    def _draw_rewind(self) -> None:
        theme = self.theme
        if self.rewind is None or len(self.rewind.tau) == 0:
            # short lines: at 1280x720 this plot is a quarter of the view, ~300 px wide
            text = self.rewind_pending or (
                "no rewind series yet:\nit needs snapshots of an IMP run\n"
                "(the preset 'Masked vs dense\nHessian spectrum' computes one)")
            hint = pg.TextItem(text, color=theme.muted, anchor=(0.5, 0.5))
            hint.setPos(0.5, 0.5)
            self.tau_plot.addItem(hint)
            self.tau_plot.setRange(xRange=(0, 1), yRange=(0, 1))
            return
        self.tau_plot.enableAutoRange()
        tau = np.asarray(self.rewind.tau, dtype=float)
        lam = np.asarray(self.rewind.lambda_max, dtype=float)
        kappa = np.asarray(self.rewind.condition, dtype=float)
        size = 9 * theme.marker_scale
        self.tau_plot.plot(
            tau, lam, pen=self.pen(1), symbol="o", symbolSize=size,
            symbolBrush=theme.color(1), name="lambda_max",
        )
        if self.rewind.note:
            note = pg.TextItem(self.rewind.note, color=theme.muted, anchor=(1, 1))
            note.setPos(float(tau.max()), float(np.nanmin(lam)))
            self.tau_plot.addItem(note)
        if not np.isfinite(kappa).any():
            self._sync_kappa_box()
            return
        curve = pg.PlotDataItem(
            tau, kappa, pen=self.pen(2, style=pg.QtCore.Qt.PenStyle.DashLine), symbol="s",
            symbolSize=size, symbolBrush=theme.color(2), name="kappa",
        )
        self.kappa_box.addItem(curve)
        if self.tau_plot.legend is not None:
            self.tau_plot.legend.addItem(curve, "kappa (right axis)")
        finite = kappa[np.isfinite(kappa)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            pad = 0.1 * (hi - lo) or 0.5 * abs(hi) or 1.0
            self.kappa_box.setYRange(lo - pad, hi + pad)
        self._sync_kappa_box()
