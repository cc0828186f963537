"""Per-layer reconstruction error ‖WX − ŴX‖/‖WX‖ of magnitude, Wanda and SparseGPT side by side.

At the window's density (or its N:M structure), core's ``compare_layers`` prunes every layer with
readable inputs three ways on the calibration sample and measures how much each changes the
layer's output (docs/theory.md §20); rows stream in as layers finish. SparseGPT also changes the
kept weights: "Apply SparseGPT" installs its mask and its updated weights in the window (the
heatmap then shows both) and draws each layer's relative weight change ‖Ŵ − W‖/‖W‖ here.
"""

from __future__ import annotations

import copy

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from visualizer.core.pruning.llm_criteria import compare_layers, sparsegpt_job
from visualizer.core.pruning.nm import parse_nm
from visualizer.core.workspace import calibration_batches
from visualizer.ui.views import ViewSpec
from visualizer.ui.views.base import AnalysisView, set_title

METHODS = (("magnitude", "magnitude"), ("wanda", "Wanda"), ("sparsegpt", "SparseGPT"))


def _nm(structure: str | None):
    try:
        return parse_nm(structure or "")
    except ValueError:
        return None


def errors_job(model, dataset, density: float, structure: str, seed: int = 0):
    """compare_layers on the workspace's calibration sample (worker side, on a copy: the job
    switches the model to eval mode while it reads)."""
    return compare_layers(copy.deepcopy(model), calibration_batches(dataset, seed=seed), density,
                          nm=_nm(structure))


def sparsegpt_apply_job(model, dataset, density: float, structure: str, seed: int = 0):
    """SparseGPT on a copy of ``model``: (result, updated model, relative change per layer)."""
    work = copy.deepcopy(model)
    result = yield from sparsegpt_job(work, calibration_batches(dataset, seed=seed), density, nm=_nm(structure))
    return result, result.updated_model(work), result.layer_changes(work)


class ReconstructionView(AnalysisView):
    title = "Reconstruction"

    def __init__(self, window=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window = window
        bar = QHBoxLayout()
        self.compare_button = QPushButton("Compare at this density")
        self.compare_button.setToolTip("Prune each layer by magnitude, Wanda and SparseGPT at the slider's "
                                       "density and measure ‖WX − ŴX‖/‖WX‖ on the calibration sample")
        self.compare_button.clicked.connect(self.compare)
        self.apply_button = QPushButton("Apply SparseGPT")
        self.apply_button.setToolTip("Prune the model by SparseGPT at the slider's density (or N:M structure): "
                                     "installs its mask and its updated kept weights")
        self.apply_button.clicked.connect(self.apply_sparsegpt)
        self.status = QLabel("")
        # a long status line must not widen the dock (the window's size wins; the tooltip has it all)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.compare_button)
        bar.addWidget(self.apply_button)
        bar.addWidget(self.status, 1)
        self.body.addLayout(bar)
        self.canvas = self.add_layout_widget()
        self.plot = self.add_plot(self.canvas, 0, 0)
        self.plot.setLabel("left", "‖WX − ŴX‖ / ‖WX‖")
        self.plot.setLabel("bottom", "layer")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.change_plot = self.add_plot(self.canvas, 1, 0)
        self.change_plot.setLabel("left", "‖Ŵ − W‖ / ‖W‖")
        self.change_plot.getAxis("left").enableAutoSIPrefix(False)
        self.changes: dict[str, float] = {}
        self.rows: list = []
        self.ready()

    def compare(self) -> None:
        state = getattr(self.window, "state", None)
        if state is None or state.model is None:
            self.status.setText("load a model first")
            return
        if state.dataset is None:
            self.status.setText("reconstruction errors need calibration data: choose a dataset (Data)")
            return
        density = state.density if state.density < 1.0 else 0.5
        model, dataset, structure = state.model, state.dataset, state.structure
        self.rows = []
        self.redraw()
        self.status.setText(f"comparing at density {density:.3g}…")
        self.window.jobs.submit("reconstruction", "reconstruction errors",
                                lambda: errors_job(model, dataset, density, structure),
                                on_result=self.set_rows, on_partial=self.add_row,
                                on_error=lambda m: self.status.setText(m))

    def apply_sparsegpt(self) -> None:
        state = getattr(self.window, "state", None)
        if state is None or state.model is None:
            self.status.setText("load a model first")
            return
        if state.dataset is None:
            self.status.setText("SparseGPT needs calibration data: choose a dataset (Data)")
            return
        density = state.density if state.density < 1.0 else 0.5
        model, dataset, structure, loaded = state.model, state.dataset, state.structure, state.loaded

        def done(out) -> None:
            result, updated, changes = out
            if state.loaded is not loaded:  # the model changed meanwhile: this result is not its
                return
            self.window.install_trained_model(updated)
            state.set_masks(result.masks, source="SparseGPT")
            self.set_changes(changes)
            skipped = f"; {len(result.skipped)} layers left to magnitude/dense" if result.skipped else ""
            self.status.setText(f"SparseGPT applied: kept {result.masks.density():.2%}, "
                                f"{len(changes)} layers updated{skipped}")

        self.status.setText(f"SparseGPT at density {density:.3g}…")
        self.window.jobs.submit("reconstruction", "SparseGPT",
                                lambda: sparsegpt_apply_job(model, dataset, density, structure),
                                on_result=done, on_error=lambda m: self.status.setText(m))

    def set_changes(self, changes: dict[str, float]) -> None:
        """Relative weight change per layer from SparseGPT's update."""
        self.changes = dict(changes)
        self.redraw()

    def add_row(self, row) -> None:
        if row is not None and hasattr(row, "sparsegpt"):
            self.rows.append(row)
            self.redraw()

    def set_rows(self, rows) -> None:
        """Rows of :class:`~visualizer.core.pruning.llm_criteria.LayerErrors` to draw."""
        self.rows = list(rows)
        if self.rows:
            mean = {k: float(np.mean([getattr(r, k) for r in self.rows])) for k, _ in METHODS}
            self.status.setText(f"{len(self.rows)} layers at density {self.rows[0].density:.3g}; mean error "
                                + ", ".join(f"{t} {mean[k]:.3g}" for k, t in METHODS))
        else:
            self.status.setText("no layer with readable inputs")
        self.redraw()

    def redraw(self) -> None:
        theme = self.theme
        self.change_plot.clear()
        self.change_plot.setVisible(bool(self.changes))
        if self.changes:
            names = list(self.changes)
            self.change_plot.addItem(pg.BarGraphItem(x=np.arange(len(names)), height=list(self.changes.values()),
                                                     width=0.6, brush=pg.mkBrush(theme.color(2))))
            self.change_plot.getAxis("bottom").setTicks([[(j, n.removesuffix(".weight")) for j, n in enumerate(names)]])
            set_title(self.change_plot, "SparseGPT's change of the kept weights per layer", theme)
        self.plot.clear()
        if self.legend is not None:
            self.legend.clear()
        set_title(self.plot, "relative output error per layer (lower is better)", theme)
        if not self.rows:
            return
        n = len(self.rows)
        width = 0.8 / len(METHODS)
        for i, (key, label) in enumerate(METHODS):
            xs = np.arange(n) + (i - 1) * width
            item = pg.BarGraphItem(x=xs, height=[getattr(r, key) for r in self.rows], width=width,
                                   brush=pg.mkBrush(theme.color(i)), pen=pg.mkPen(None), name=label)
            self.plot.addItem(item)  # a named item joins the legend by itself
        self.plot.getAxis("bottom").setTicks([[(j, r.name.removesuffix(".weight")) for j, r in enumerate(self.rows)]])



def _prepare(window, options) -> None:
    """Screenshot hook: compute now (the window's jobs are synchronous then)."""
    window.views["reconstruction"].compare()


VIEW = ViewSpec("reconstruction", "Reconstruction error", ReconstructionView, prepare=_prepare, lazy=True,
                description="‖WX − ŴX‖/‖WX‖ per layer for magnitude, Wanda and SparseGPT")
