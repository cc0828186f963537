"""Accuracy vs density: one curve per (criterion, retrain mode, kind, dataset, weights) on a log
density axis.

Rows come from ``state.results`` (dicts with at least ``density`` and ``accuracy``; ``criterion``,
``retrain``, ``kind`` (e.g. ticket / reinit / random for LTH), ``dataset``, ``scope`` and any other
settings are shown on hover). Points appear as a sweep streams them. Rows of several seeds are one
curve, their mean, with the seeds' range as a band (core.training.experiments.curve_series); the
dense baseline is a horizontal line, the dense accuracy of the dataset in use only.
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


def series_label(series, several_datasets: bool, several_weights: bool = False) -> str:
    """A curve's legend entry: criterion, retraining (unless none), kind (LTH), the dataset when
    the curves hold more than one, the weights' identity when they hold several (trained weights
    kept under the same model name), and how many seeds its points average."""
    parts = [series.criterion]
    if series.retrain != "none":
        parts.append(series.retrain)
    if series.kind:
        parts.append(series.kind)
    if several_datasets:
        parts.append(_short_dataset(series.dataset))
    if several_weights:
        parts.append(f"weights {series.weights[:6] or '?'}")
    label = " · ".join(parts)
    return label + (f" (mean of {series.seeds} seeds)" if series.seeds > 1 else "")


def _short_dataset(name: str) -> str:
    """"folder: birds" for "folder:/data/birds"; other names as they are."""
    if name.startswith("folder:"):
        return "folder: " + name[7:].rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return name or "?"


def point_row(series, i: int) -> dict:
    """What hovering point ``i`` of a curve says: its first row's settings, and with several
    seeds the mean accuracy and the seeds' range."""
    at = [r for r in series.rows if f"{float(r['density']):.6g}" == f"{series.densities[i]:.6g}"]
    row = dict(at[0]) if at else {}
    if len(at) > 1:
        row.pop("seed", None)
        row.update(accuracy=series.mean[i], seeds=len(at),
                   accuracy_range=f"{series.low[i]:.2%} .. {series.high[i]:.2%}")
    return row


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
        self._series: dict[tuple, tuple[pg.PlotDataItem, list[dict]]] = {}  # curve key -> (item, rows)
        self._bands: dict[tuple, tuple] = {}  # curve key -> (low, high, fill) of a multi-seed curve
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.widget, 1)
        layout.addWidget(self.info)
        self.state.results_changed.connect(self.refresh)
        self.state.model_changed.connect(self.refresh)
        if hasattr(self.state, "dataset_changed"):  # the baseline is the dataset's
            self.state.dataset_changed.connect(self.refresh)
        self.state.masks_changed.connect(self._move_cursor)
        self.refresh()

    def _move_cursor(self) -> None:
        d = self.state.density
        self.cursor.setValue(math.log10(max(d, 1e-6)))

    def refresh(self) -> None:
        """One curve per (criterion, retraining, kind, dataset) (core curve_series): seeds are
        folded into the mean with their range as a band; the dense baseline is the dataset's.
        A language model's rows carry perplexity: it replaces accuracy (lower is better)."""
        from visualizer.core.training.experiments import curve_series

        metric = "perplexity" if any(_finite(r.get("perplexity")) for r in self.state.results) else "accuracy"
        label = "test perplexity" if metric == "perplexity" else "test accuracy"
        if self.plot.getAxis("left").labelText != label:
            self.plot.setLabel("left", label)
        all_series = curve_series(self.state.results, metric)
        several = len({sr.dataset for sr in all_series}) > 1
        several_weights = len({sr.weights for sr in all_series}) > 1
        keys = {sr.key for sr in all_series}
        for key in list(self._series):
            if key not in keys:
                item, _ = self._series.pop(key)
                self.plot.removeItem(item)
                self.legend.removeItem(item)
        for key in list(self._bands):
            if key not in keys:
                self._remove_band(key)
        for sr in all_series:
            x, y = np.array(sr.densities), np.array(sr.mean)
            label = series_label(sr, several, several_weights)
            if sr.key in self._series:
                item, _ = self._series[sr.key]
                if item.name() != label:
                    self.legend.removeItem(item)
                    item.opts["name"] = label
                    self.legend.addItem(item, label)
            else:
                colour = PALETTE[len(self._series) % len(PALETTE)]
                item = pg.PlotDataItem(
                    pen=pg.mkPen(colour, width=2), symbol=SYMBOLS.get(sr.kind, "o"), symbolSize=8,
                    symbolBrush=pg.mkBrush(colour), symbolPen=pg.mkPen("w"), name=label,
                )
                item.sigPointsHovered.connect(self._hovered)
                item.scatter.setAcceptHoverEvents(True)
                self.plot.addItem(item)
            item.setData(x, y, data=[point_row(sr, i) for i in range(len(x))])
            self._series[sr.key] = (item, sr.rows)
            self._draw_band(sr, item)
        base = None  # the dense accuracy; a perplexity curve has none drawn
        if metric == "accuracy":
            base = self.state.dense_baseline() if hasattr(self.state, "dense_baseline") else self.state.baseline
        self.baseline.setVisible(base is not None)
        if base is not None and self.baseline.value() != float(base):
            self.baseline.setValue(float(base))
        self._move_cursor()
        densities = [d for sr in all_series for d in sr.densities]
        self._fit_density_axis(densities)
        if all_series:
            points = sum(len(sr.rows) for sr in all_series)
            self.info.setText(f"{points} points in {len(all_series)} curves · hover a point for its settings")

    def _draw_band(self, sr, item) -> None:
        """The seeds' range (smallest to largest accuracy at each density) around a mean curve."""
        if sr.seeds < 2:
            self._remove_band(sr.key)
            return
        if sr.key not in self._bands:
            # invisible bounds: a pen of alpha 0 (without a pen the curve keeps no path to fill)
            low, high = (pg.PlotDataItem(pen=pg.mkPen((0, 0, 0, 0))) for _ in range(2))
            colour = item.opts["pen"].color()
            colour.setAlpha(50)
            fill = pg.FillBetweenItem(low, high, brush=pg.mkBrush(colour))
            for it in (low, high, fill):
                self.plot.addItem(it)
            self._bands[sr.key] = (low, high, fill)
        low, high, _fill = self._bands[sr.key]
        low.setData(np.array(sr.densities), np.array(sr.low))
        high.setData(np.array(sr.densities), np.array(sr.high))

    def _remove_band(self, key) -> None:
        for it in self._bands.pop(key, ()):
            self.plot.removeItem(it)

    def band_count(self) -> int:
        """How many curves show a seeds' band."""
        return len(self._bands)

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



def _prepare(window, options) -> None:
    """Screenshot hook: fill the curves with a short no-retraining sweep."""
    from visualizer.ui.jobs import training as training_ui

    training_ui.prepare_curves(window, options)


VIEW = ViewSpec("curves", "Accuracy vs density", CurvesView, prepare=_prepare,
                description="accuracy against density per criterion and retraining mode")
