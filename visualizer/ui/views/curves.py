"""Accuracy vs density: one curve per (criterion, retrain mode, kind) on a log density axis.

Rows come from ``state.results`` (dicts with at least ``density`` and ``accuracy``; ``criterion``,
``retrain``, ``kind`` (e.g. ticket / reinit / random for LTH), ``scope`` and any other settings are
shown on hover). Points appear as a sweep streams them; the dense baseline is a horizontal line.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from visualizer.ui.panels.density import MIN_DENSITY
from visualizer.ui.views import ViewSpec

PALETTE = [
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
SYMBOLS = {"ticket": "o", "reinit": "t", "random-mask": "s", "random": "s", "": "o"}
HIDDEN_KEYS = {"series", "eval_samples"}  # eval_samples is said with the accuracy


def series_key(row: dict) -> str:
    """The curve a row belongs to: criterion, retrain mode and (for LTH) ticket/reinit/random."""
    parts = [str(row.get("criterion", "?"))]
    retrain = row.get("retrain")
    if retrain and retrain != "none":
        parts.append(str(retrain))
    kind = row.get("kind")
    if kind:
        parts.append(str(kind))
    return " · ".join(parts)


def describe_row(row: dict) -> str:
    keys = ["criterion", "density", "accuracy", "retrain", "kind", "scope", "structure"]
    keys += [k for k in row if k not in keys and k not in HIDDEN_KEYS]
    out = []
    for k in keys:
        if k not in row:
            continue
        v = row[k]
        if k in ("density", "accuracy") and isinstance(v, (int, float)):
            v = f"{v:.2%}"
            if k == "accuracy" and row.get("eval_samples"):  # a preview sample, not the whole split
                v += f" on {row['eval_samples']} test samples"
        elif isinstance(v, float):
            v = f"{v:.4g}"
        out.append(f"{k}: {v}")
    return "\n".join(out)


class CurvesView(QWidget):
    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.state = window.state
        self.widget = pg.PlotWidget(background="w")
        self.plot = self.widget.getPlotItem()
        self.plot.setLogMode(x=True, y=False)
        self.plot.setLabel("bottom", "density (fraction of weights kept, log scale)")
        # pyqtgraph's SI prefix scaled the ticks: 'test accuracy (x0.001)' from 100 to 900, and on
        # the log axis every minor tick had a label, '0.1 0.09 0.08 …' printed over each other
        for side in ("bottom", "left"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setTicks([density_ticks()])
        self.plot.setLabel("left", "test accuracy")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.getViewBox().invertX(True)  # pruning proceeds left to right: 100% -> 0.1%
        # bottom left: curves fall towards low density (right) and the dense line runs along the top
        self.legend = self.plot.addLegend(offset=(10, -10), labelTextColor="k")
        self.baseline = pg.InfiniteLine(angle=0, pen=pg.mkPen((90, 90, 90), width=1.5, style=Qt.PenStyle.DashLine),
                                        label="dense {value:.1%}", labelOpts={"position": 0.1, "color": (60, 60, 60)})
        self.baseline.setVisible(False)
        self.plot.addItem(self.baseline)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen((120, 120, 200), width=1))
        self.plot.addItem(self.cursor)
        self.info = QLabel("run a sweep or evaluate the current mask: points appear here")
        self.info.setWordWrap(True)
        self._series: dict[str, tuple[pg.PlotDataItem, list[dict]]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.widget, 1)
        layout.addWidget(self.info)
        self.state.results_changed.connect(self.refresh)
        self.state.model_changed.connect(self.refresh)
        self.state.masks_changed.connect(self._move_cursor)
        self.refresh()

    def _move_cursor(self) -> None:
        d = self.state.density
        self.cursor.setValue(math.log10(max(d, 1e-6)))

    def refresh(self) -> None:
        # a language model's rows carry perplexity: it replaces accuracy (lower is better)
        metric = "perplexity" if any(_finite(r.get("perplexity")) for r in self.state.results) else "accuracy"
        label = "test perplexity" if metric == "perplexity" else "test accuracy"
        if self.plot.getAxis("left").labelText != label:
            self.plot.setLabel("left", label)
        rows = [r for r in self.state.results if _positive(r.get("density")) and _finite(r.get(metric))]
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(series_key(r), []).append(r)
        for key in list(self._series):
            if key not in groups:
                item, _ = self._series.pop(key)
                self.plot.removeItem(item)
                self.legend.removeItem(item)
        for key, grows in groups.items():
            grows = sorted(grows, key=lambda r: -float(r["density"]))
            x = np.array([float(r["density"]) for r in grows])
            y = np.array([float(r[metric]) for r in grows])
            if key in self._series:
                item, _ = self._series[key]
            else:
                colour = PALETTE[len(self._series) % len(PALETTE)]
                symbol = SYMBOLS.get(str(grows[0].get("kind", "")), "o")
                item = pg.PlotDataItem(
                    pen=pg.mkPen(colour, width=2), symbol=symbol, symbolSize=8,
                    symbolBrush=pg.mkBrush(colour), symbolPen=pg.mkPen("w"), name=key,
                )
                item.sigPointsHovered.connect(self._hovered)
                item.scatter.setAcceptHoverEvents(True)
                self.plot.addItem(item)
            item.setData(x, y, data=grows)
            self._series[key] = (item, grows)
        base = self.state.baseline if metric == "accuracy" else None  # the dense accuracy
        self.baseline.setVisible(base is not None)
        if base is not None and self.baseline.value() != float(base):
            self.baseline.setValue(float(base))
        self._move_cursor()
        self._fit_density_axis([float(r["density"]) for r in rows])
        if rows:
            self.info.setText(f"{len(rows)} points in {len(groups)} curves · hover a point for its settings")

    def _fit_density_axis(self, densities: list[float]) -> None:
        """The slider's whole range, 100% .. 0.1%, and any point beyond it: a lone point (one
        evaluated mask) auto-ranged to a sliver of a decade with no tick label on it."""
        low = min([MIN_DENSITY, *densities])
        high = max([1.0, *densities])
        self.plot.setXRange(math.log10(low), math.log10(high), padding=0.03)

    def _hovered(self, item, points, ev) -> None:
        if len(points):
            row = points[0].data()
            text = describe_row(row) if isinstance(row, dict) else ""
            self.widget.setToolTip(text)
            self.info.setText(text.replace("\n", " · "))

    def export_widget(self):
        return self.widget

    def point_count(self) -> int:
        return sum(len(rows) for _, rows in self._series.values())


def density_ticks() -> list[tuple[float, str]]:
    """Labelled densities 100%, 50%, 20%, 10% … 0.1% at their log10 positions (the log axis's
    coordinates), as the density slider writes them."""
    return [(math.log10(m * 10.0 ** -e), f"{m * 10.0 ** (2 - e):g}%")
            for e in range(4) for m in (1, 0.5, 0.2) if m * 10.0 ** -e >= MIN_DENSITY]


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _positive(v) -> bool:
    """Plottable on the log density axis."""
    return _finite(v) and float(v) > 0


def _prepare(window, options) -> None:
    """Screenshot hook: fill the curves with a short no-retraining sweep."""
    from visualizer.ui.jobs import training as training_ui

    training_ui.prepare_curves(window, options)


VIEW = ViewSpec("curves", "Accuracy vs density", CurvesView, prepare=_prepare,
                description="accuracy against density per criterion and retraining mode")
