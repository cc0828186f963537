"""Calibration inspector: per-layer input-feature norms ‖X_j‖₂ with the outlier features marked.

Wanda (Sun et al. 2024) and OWL (Yin et al. 2024) read these norms; a few features far above the
rest (outliers) are why activation-aware pruning beats magnitude on language models
(docs/theory.md §20). The norms come from core (``calibration_profile`` on the workspace's
calibration sample) in a job; this view only draws them: the selected layer's norms by input
index with the outliers in a second colour, and every layer's outlier share.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from visualizer.core.pruning.llm_criteria import calibration_profile
from visualizer.core.workspace import calibration_batches
from visualizer.ui.views import ViewSpec
from visualizer.ui.views.base import AnalysisView, set_title


def profile_job(model, dataset, seed: int = 0):
    """The calibration profile of ``model`` on the workspace's calibration sample (worker side)."""
    return calibration_profile(model, calibration_batches(dataset, seed=seed))


class CalibrationView(AnalysisView):
    title = "Calibration"

    def __init__(self, window=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window = window
        bar = QHBoxLayout()
        self.measure_button = QPushButton("Measure inputs")
        self.measure_button.setToolTip("Run the calibration sample (128 sequences) through the model and "
                                       "record ‖X_j‖ of every input feature of every layer")
        self.measure_button.clicked.connect(self.measure)
        self.layer_box = QComboBox()
        self.layer_box.setToolTip("The layer whose input norms are drawn")
        self.layer_box.currentIndexChanged.connect(lambda _i: self.redraw())
        self.status = QLabel("")
        # a long status line must not widen the dock (the window's size wins; the tooltip has it all)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.measure_button)
        bar.addWidget(QLabel("Layer"))
        bar.addWidget(self.layer_box, 1)
        bar.addWidget(self.status, 2)
        self.body.addLayout(bar)
        self.canvas = self.add_layout_widget()
        self.norm_plot = self.add_plot(self.canvas, 0, 0)
        self.norm_plot.setLabel("bottom", "input feature j")
        self.norm_plot.setLabel("left", "‖X_j‖₂")
        self.share_plot = self.add_plot(self.canvas, 1, 0)
        self.share_plot.setLabel("bottom", "layer")
        self.share_plot.setLabel("left", "outlier features", units="%")
        self.share_plot.getAxis("left").enableAutoSIPrefix(False)
        self.rows: list = []
        self.ready()

    # --- data ------------------------------------------------------------------------------
    def measure(self) -> None:
        state = getattr(self.window, "state", None)
        if state is None or state.model is None:
            self.status.setText("load a model first")
            return
        if state.dataset is None:
            self.status.setText("the calibration inspector needs data: choose a dataset (Data)")
            return
        model, dataset = state.model, state.dataset
        self.status.setText("measuring…")
        self.window.jobs.submit("calibration", "calibration inputs", lambda: profile_job(model, dataset),
                                on_result=self.set_rows, on_error=lambda m: self.status.setText(m))

    def set_rows(self, rows) -> None:
        """Per-layer :class:`~visualizer.core.pruning.llm_criteria.LayerNorms` to draw."""
        self.rows = list(rows)
        current = self.layer_box.currentText()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for r in self.rows:
            self.layer_box.addItem(r.name)
        if current in [r.name for r in self.rows]:
            self.layer_box.setCurrentText(current)
        self.layer_box.blockSignals(False)
        n = sum(r.outliers.numel() for r in self.rows)
        self.status.setText(f"{len(self.rows)} layers, {n} outlier features (‖X_j‖ > "
                            f"{self.rows[0].ratio:g}× the layer's mean)" if self.rows else "no layer with readable inputs")
        self.redraw()

    def selected(self):
        i = self.layer_box.currentIndex()
        return self.rows[i] if 0 <= i < len(self.rows) else None

    # --- drawing ---------------------------------------------------------------------------
    def redraw(self) -> None:
        theme = self.theme
        self.norm_plot.clear()
        self.share_plot.clear()
        row = self.selected()
        if row is not None:
            v = row.norms.numpy()
            xs = np.arange(v.size)
            self.norm_plot.addItem(pg.BarGraphItem(x=xs, height=v, width=1.0, brush=pg.mkBrush(theme.color(0)),
                                                   pen=pg.mkPen(None)))
            idx = row.outliers.numpy()
            if idx.size:
                self.norm_plot.addItem(pg.ScatterPlotItem(x=idx, y=v[idx], symbol="t", size=10,
                                                          brush=pg.mkBrush(theme.color(3)), pen=pg.mkPen(None)))
            mean = float(v.mean()) if v.size else 0.0
            self.norm_plot.addItem(pg.InfiniteLine(pos=row.ratio * mean, angle=0,
                                                   pen=pg.mkPen(theme.color(3), style=pg.QtCore.Qt.PenStyle.DashLine)))
            set_title(self.norm_plot, f"{row.name}: {idx.size} outliers of {v.size} inputs", theme)
        if self.rows:
            shares = [100 * r.share for r in self.rows]
            self.share_plot.addItem(pg.BarGraphItem(x=np.arange(len(shares)), height=shares, width=0.7,
                                                    brush=pg.mkBrush(theme.color(1))))
            self.share_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(len(shares))]])
            set_title(self.share_plot, "outlier share per layer (index = order in the layer box)", theme)



def _prepare(window, options) -> None:
    """Screenshot hook: compute now (the window's jobs are synchronous then)."""
    window.views["calibration"].measure()


VIEW = ViewSpec("calibration", "Calibration inputs", CalibrationView, prepare=_prepare, lazy=True,
                description="per-layer input norms ‖X_j‖ with outlier features: why Wanda beats magnitude")
