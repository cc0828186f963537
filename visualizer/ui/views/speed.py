"""Speed view: latency and FLOPs of dense, masked and shrunk models, and the efficiency eta.

The time-to-train paradox (Hoefler et al. 2021): a sparse model has fewer FLOPs per step, but unstructured
sparsity runs at a low hardware efficiency eta (a fraction of peak speed), so it can take as long
or longer per step; a structurally shrunk model keeps a dense, regular shape and a high eta.
Three bar charts side by side (latency, FLOPs, eta) plus, when given, a fourth one with the
time to train (steps x time per step) of each variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from visualizer.ui.views.base import AnalysisView, set_title


@dataclass
class SpeedEntry:
    """One variant of the model, as measured by core.

    label: 'dense', 'masked', 'shrunk' (or 'unstructured', 'structured').
    latency_ms: measured time per forward pass in milliseconds (latency_err_ms: its spread).
    flops: FLOPs the variant needs per forward pass (for masked: the nonzero work).
    eta: hardware efficiency = achieved FLOP/s divided by a reference (core defines the
        reference; docs/theory.md), or None.
    params: parameter count (nonzero for masked), or None.
    train_time_s: time to train (steps x time per step) when known, else None.
    """

    label: str
    latency_ms: float
    flops: float
    eta: float | None = None
    params: int | None = None
    latency_err_ms: float | None = None
    train_time_s: float | None = None


class SpeedView(AnalysisView):
    title = "Speed"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        # two by two: four charts in a row left the category names of each overlapping at
        # lecture type on a 1280x720 projector
        self.latency_plot = self.add_plot(self.canvas, 0, 0)
        self.flops_plot = self.add_plot(self.canvas, 0, 1)
        self.eta_plot = self.add_plot(self.canvas, 1, 0)
        self.train_plot = self.add_plot(self.canvas, 1, 1)
        self.latency_plot.setLabel("left", "latency", units="ms")
        self.flops_plot.setLabel("left", "FLOPs")
        self.eta_plot.setLabel("left", "eta (hardware efficiency)")
        self.train_plot.setLabel("left", "time to train", units="s")
        for plot in (self.latency_plot, self.eta_plot, self.train_plot):
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.entries: list[SpeedEntry] = []
        self.note = ""
        self.ready()

    def set_entries(self, entries: Sequence[SpeedEntry], note: str = "") -> None:
        """The variants to compare side by side; ``note`` is printed under the charts."""
        self.entries = list(entries)
        self.note = note
        self.redraw()

    def redraw(self) -> None:
        theme = self.theme
        has_train = any(e.train_time_s is not None for e in self.entries)
        self.train_plot.setVisible(has_train)
        panels = [
            (self.latency_plot, "latency per forward pass", lambda e: e.latency_ms, "{:.3g} ms"),
            (self.flops_plot, "FLOPs per forward pass", lambda e: e.flops, "{:.3g}"),
            (self.eta_plot, "hardware efficiency eta", lambda e: e.eta, "{:.2f}"),
            (self.train_plot, "time to train", lambda e: e.train_time_s, "{:.3g} s"),
        ]
        ticks = [(i, e.label) for i, e in enumerate(self.entries)]
        for plot, title, value, fmt in panels:
            plot.clear()
            set_title(plot, title, theme)
            plot.getAxis("bottom").setTicks([ticks])
            values = [value(e) for e in self.entries]
            xs = [i for i, v in enumerate(values) if v is not None and np.isfinite(v)]
            if not xs:
                continue
            heights = [float(values[i]) for i in xs]
            tops = []
            plot.addItem(pg.BarGraphItem(
                x=xs, height=heights, width=0.6,
                brushes=[pg.mkBrush(theme.color(i)) for i in xs],
                pen=pg.mkPen(theme.foreground, width=max(1.0, theme.line_width / 2)),
            ))
            for x, h in zip(xs, heights):
                err = self.entries[x].latency_err_ms if plot is self.latency_plot else None
                label = pg.TextItem(fmt.format(h), color=theme.foreground, anchor=(0.5, 1.0))
                label.setPos(x, h + (err or 0.0))
                tops.append(h + (err or 0.0))
                plot.addItem(label)
            if plot is self.latency_plot:
                errs = [self.entries[i].latency_err_ms for i in xs]
                if any(e is not None for e in errs):
                    plot.addItem(pg.ErrorBarItem(
                        x=np.array(xs, float), y=np.array(heights),
                        height=2 * np.array([e or 0.0 for e in errs]), beam=0.2,
                        pen=pg.mkPen(theme.foreground, width=theme.line_width),
                    ))
            plot.setXRange(-0.7, len(self.entries) - 0.3, padding=0)
            # room above the highest error bar for its value label, under the title
            plot.setYRange(0, max(tops) * 1.3 or 1.0, padding=0)
        self.canvas.setToolTip(self.note)
