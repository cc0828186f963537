"""Mask heatmap: the selected layer's weights, scores or mask, and mask-vs-mask comparison.

Drawn as a uint8 image through a lookup table with fixed levels (see :mod:`visualizer.ui.render`):
a layer is encoded once when selected, and a mask change (the density slider) only re-selects
codes, so the heatmap follows the mouse even for 2048 x 2048 layers.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui import render
from visualizer.ui.views import ViewSpec

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

_PRUNED_LEGEND = "<span style='color:rgb(55,55,55)'>■</span> pruned"

MODES = {
    "masked": "weights (pruned dark)",
    "weights": "weights",
    "scores": "scores",
    "mask": "mask",
    "compare": "compare with snapshot A",
}


class HeatmapView(QWidget):
    """Heatmap of one layer. Reads ``window.state``; never computes statistics itself."""

    hovered = Signal(str)

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.state = window.state
        self.mode = "masked"
        self.layout_kind = "flat"
        self._layout: render.Layout | None = None
        self._weights: render.Encoded | None = None
        self._scores: render.Encoded | None = None
        self._image: np.ndarray | None = None
        self._lut_mode: str | None = None
        self._bar_key: tuple | None = None

        self.mode_box = QComboBox()
        for key, text in MODES.items():
            self.mode_box.addItem(text, key)
        self.mode_box.setToolTip("What the heatmap shows for the selected layer")
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.layout_box = QComboBox()
        self.layout_box.addItem("out × (in·k·k)", "flat")
        self.layout_box.addItem("grid of kernels", "kernels")
        self.layout_box.setToolTip("How a convolution's 4-d weight is laid out as an image")
        self.layout_box.currentIndexChanged.connect(self._layout_changed)
        self.snap_button = QPushButton("Snapshot mask as A")
        self.snap_button.setToolTip(
            "Keep the current mask as A; then change criterion/density and pick 'compare' "
            "to see which weights the two masks agree on (overlap and Jaccard per layer)"
        )
        self.snap_button.clicked.connect(self.take_snapshot)
        self.clear_button = QPushButton("Clear A")
        self.clear_button.clicked.connect(lambda: self.state.set_snapshot(None))

        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.mode_box)
        top.addWidget(self.layout_box)
        top.addStretch(1)
        top.addWidget(self.snap_button)
        top.addWidget(self.clear_button)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground("w")
        self.plot = self.canvas.addPlot(row=0, col=0)
        self.plot.invertY(True)
        self.plot.setAspectLocked(False)
        self.plot.setLabel("left", "output")
        self.plot.setLabel("bottom", "input")
        self.plot.showGrid(False, False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setAutoDownsample(True)
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(-1, 1), colorMap="CET-D1", interactive=False, width=16)
        self.bar.axis.enableAutoSIPrefix(False)
        self.canvas.addItem(self.bar, row=0, col=1)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.info = QLabel("hover over the heatmap for index, weight, score and kept")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)

        self.compare_table = QTableWidget(0, 5)
        self.compare_table.setHorizontalHeaderLabels(["layer", "kept now", "kept A", "overlap", "Jaccard"])
        self.compare_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.setVisible(False)
        self.compare_table.setSortingEnabled(True)

        upper = QWidget()
        v = QVBoxLayout(upper)
        v.setContentsMargins(0, 0, 0, 0)
        v.addLayout(top)
        v.addWidget(self.title)
        v.addWidget(self.canvas, 1)
        v.addWidget(self.legend)
        v.addWidget(self.info)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(self.compare_table)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(split)

        self._compare_timer = QTimer(self)
        self._compare_timer.setSingleShot(True)
        self._compare_timer.setInterval(80)
        self._compare_timer.timeout.connect(self._update_compare_table)

        s = self.state
        s.model_changed.connect(self._layer_changed)
        s.selection_changed.connect(lambda _n: self._layer_changed())
        s.masks_changed.connect(self._masks_changed)
        s.scores_changed.connect(self._scores_changed)
        s.snapshot_changed.connect(self._snapshot_changed)
        self._snapshot_changed()
        self._layer_changed()

    # --- state -> view ---------------------------------------------------------------------
    def _layer_changed(self) -> None:
        name = self.state.selected
        if name is None or name not in self.state.params:
            self._layout = None
            self._weights = None
            self.image.clear()
            self.title.setText("<i>no layer selected</i>")
            return
        w = self.state.params[name]
        self.layout_box.setEnabled(w.ndim == 4)
        self._layout = render.make_layout(tuple(w.shape), self.layout_kind)
        self._weights = render.encode_symmetric(w, "weight")
        self._scores = None
        self._scores_changed(redraw=False)
        h, wd = self._layout.image_shape
        self.image.setRect(QRectF(0, 0, wd, h))
        self.plot.setLabel("bottom", "input · kernel" if w.ndim > 2 else "input")
        self.plot.getViewBox().setRange(QRectF(0, 0, wd, h), padding=0.02)
        self.redraw()

    def _scores_changed(self, redraw: bool = True) -> None:
        name = self.state.selected
        sc = None if self.state.scores is None else self.state.scores.get(name)
        self._scores = None if sc is None else render.encode_scores(sc)
        if redraw:
            self.redraw()

    def _masks_changed(self) -> None:
        self.redraw()
        if self.compare_table.isVisible():
            self._compare_timer.start()

    def _snapshot_changed(self) -> None:
        has = self.state.snapshot is not None
        self.clear_button.setEnabled(has)
        self.compare_table.setVisible(has)
        if has:
            self._update_compare_table()
        elif self.mode == "compare":
            self.mode_box.setCurrentIndex(0)
        self.redraw()

    def _mode_changed(self) -> None:
        self.mode = self.mode_box.currentData()
        self.redraw()

    def _layout_changed(self) -> None:
        self.layout_kind = self.layout_box.currentData()
        self._layer_changed()

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(list(MODES).index(mode))

    def take_snapshot(self) -> None:
        if self.state.masks is not None:
            self.state.set_snapshot(self.state.masks.copy())
            self.mode_box.setCurrentIndex(list(MODES).index("compare"))

    # --- drawing ---------------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray | None:
        name = self.state.selected
        masks = self.state.masks
        if masks is None or name not in masks.masks:
            return None
        return masks.masks[name].numpy()

    def layer_codes(self) -> tuple[np.ndarray, str, str]:
        """(codes in parameter shape, lut mode, legend html) for the current mode."""
        mask = self._current_mask()
        mode = self.mode
        if mode == "compare" and self.state.snapshot is not None and mask is not None:
            snap = self.state.snapshot.masks.get(self.state.selected)
            if snap is not None and snap.shape == mask.shape:
                legend = " ".join(
                    f"<span style='color:rgb{c[:3]}'>■</span> {t}" for t, c in render.COMPARE_LEGEND.items()
                )
                return render.compare_codes(mask, snap.numpy()), "compare", legend
            mode = "mask"
        if mode == "compare":
            mode = "mask"
        if mode == "mask":
            if mask is None:
                return np.full(self._layout.shape, render.HI, np.uint8), "mask", ""
            legend = "<span style='color:rgb(31,94,168)'>■</span> kept &nbsp; <span style='color:rgb(160,160,160)'>■</span> pruned"
            return render.mask_codes(mask), "mask", legend
        if mode == "scores":
            if self._scores is None:
                return np.full(self._layout.shape, render.PRUNED, np.uint8), "scores", "<i>no scores yet: pick a criterion (ranking runs in the background)</i>"
            return render.masked_codes(self._scores.codes, mask), "scores", _PRUNED_LEGEND
        codes = self._weights.codes
        if mode == "masked":
            return render.masked_codes(codes, mask), "weights", _PRUNED_LEGEND
        return codes, "weights", ""

    def redraw(self) -> None:
        if self._layout is None or self._weights is None:
            return
        codes, lut_mode, legend = self.layer_codes()
        img = render.to_image(codes, self._layout, fill=render.GAP)
        if lut_mode != self._lut_mode:
            self._set_lut(lut_mode)
        self._image = img
        self.image.setImage(img, autoLevels=False, levels=(0, 255))
        if self._bar_key != (lut_mode, id(self._weights), id(self._scores)):
            self._update_bar(lut_mode)
        self.legend.setText(legend)
        self._update_title()

    def _set_lut(self, lut_mode: str) -> None:
        self._lut_mode = lut_mode
        if lut_mode == "weights":
            self.image.setLookupTable(render.value_lut("CET-D1"))
        elif lut_mode == "scores":
            self.image.setLookupTable(render.value_lut("viridis"))
        elif lut_mode == "mask":
            self.image.setLookupTable(render.mask_lut())
        else:
            self.image.setLookupTable(render.compare_lut())

    def _update_bar(self, lut_mode: str) -> None:
        self._bar_key = (lut_mode, id(self._weights), id(self._scores))
        enc = self._weights if lut_mode == "weights" else self._scores if lut_mode == "scores" else None
        self.bar.setVisible(enc is not None)
        if enc is not None:
            self.bar.setColorMap("CET-D1" if lut_mode == "weights" else "viridis")
            self.bar.setLevels((enc.lo, enc.hi))
            self.bar.axis.setLabel(enc.label)

    def _update_title(self) -> None:
        name = self.state.selected
        shape = "×".join(str(s) for s in self._layout.shape)
        mask = self._current_mask()
        kept = "" if mask is None else f" · kept {int(mask.sum()):,} / {mask.size:,} ({mask.mean():.2%})"
        stride = self._layout.stride
        note = f" · shown every {stride[0]}×{stride[1]} (display only)" if stride != (1, 1) else ""
        self.title.setText(f"<b>{name}</b> [{shape}]{kept}{note}")

    def export_widget(self):
        """What File > Export draws: the heatmap and its colour bar."""
        return self.canvas

    def image_array(self) -> np.ndarray | None:
        """The uint8 image currently drawn (tests and benchmarks read it)."""
        return self._image

    # --- hover -----------------------------------------------------------------------------
    def _mouse_moved(self, pos) -> None:
        if self._layout is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.getViewBox().mapSceneToView(pos)
        text = self.describe(int(np.floor(p.y())), int(np.floor(p.x())))
        if text:
            self.info.setText(text)
            self.hovered.emit(text)

    def describe(self, row: int, col: int) -> str:
        """Text for the image pixel (row, col): index, weight, score and kept."""
        if self._layout is None:
            return ""
        idx = self._layout.index_at(row, col)
        if idx is None:
            return ""
        name = self.state.selected
        w = float(self.state.params[name][idx])
        parts = [f"{name}[{', '.join(map(str, idx))}]", f"weight {w:+.4g}"]
        scores = self.state.scores
        if scores is not None and name in scores:
            parts.append(f"score {float(scores[name][idx]):.4g}")
        mask = self._current_mask()
        if mask is not None:
            parts.append("kept" if bool(mask[idx]) else "pruned")
        snap = self.state.snapshot
        if snap is not None and name in snap.masks:
            parts.append("A: kept" if bool(snap.masks[name][idx]) else "A: pruned")
        return " · ".join(parts)

    # --- compare ---------------------------------------------------------------------------
    def _update_compare_table(self) -> None:
        s = self.state
        if s.snapshot is None or s.masks is None:
            return
        rows = s.masks.compare(s.snapshot)  # core: overlap and Jaccard per layer
        total_inter = sum(r["overlap"] for r in rows)
        cur, snap = s.masks.flat(), s.snapshot.flat() if len(s.snapshot) else None
        union = int((cur | snap).sum()) if snap is not None and snap.shape == cur.shape else 0
        rows = [
            *rows,
            {
                "name": "(all layers)",
                "kept_a": s.masks.kept(),
                "kept_b": s.snapshot.kept(),
                "overlap": total_inter,
                "jaccard": total_inter / union if union else 1.0,
            },
        ]
        t = self.compare_table
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            vals = [r["name"], r["kept_a"], r["kept_b"], r["overlap"], r["jaccard"]]
            for j, v in enumerate(vals):
                item = _NumItem(f"{v:.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
                item.setData(Qt.ItemDataRole.UserRole, v)
                t.setItem(i, j, item)
        t.setSortingEnabled(True)
        self.compare_rows = rows


class _NumItem(QTableWidgetItem):
    def __lt__(self, other) -> bool:
        a = self.data(Qt.ItemDataRole.UserRole)
        b = other.data(Qt.ItemDataRole.UserRole)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def _prepare(window, options) -> None:
    view = window.views["heatmap"]
    view.set_mode(getattr(options, "heatmap_mode", None) or "masked")


VIEW = ViewSpec(
    "heatmap",
    "Mask heatmap",
    HeatmapView,
    prepare=_prepare,
    description="weights, scores or mask of the selected layer; compare two masks",
)
