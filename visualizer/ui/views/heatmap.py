"""Mask heatmap: the selected layer's weights, scores or mask, and mask-vs-mask comparison.

Drawn as a uint8 image through a lookup table with fixed levels (see :mod:`visualizer.ui.views.render`):
a layer is encoded once when selected, and a mask change (the density slider) only re-selects
codes, so the heatmap follows the mouse even for 2048 x 2048 layers.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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

from visualizer.ui.views import ViewSpec, render
from visualizer.ui.views.base import shrinkable
from visualizer.ui.views.nm_blocks import BlockLines, block_size, inputs_along_rows

# No process-wide pg.setConfigOptions here: a global imageAxisOrder set on import silently
# transposed the other views' images. Every ImageItem names its axis order.

MAX_DISPLAY = 1024  # image pixels per side drawn at most; more -> a display stride

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
    weight_picked = Signal(str, tuple)  # (layer, index): a click on a weight (the explainer listens)

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
        self._weights_img: np.ndarray | None = None
        self._scores_img: np.ndarray | None = None
        self._gaps: np.ndarray | None = None
        self._region: tuple[int, int, int, int, int] | None = None
        self._drawn_key: tuple | None = None
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
        self.blocks_check = QCheckBox("M-blocks")
        self.blocks_check.setToolTip("Draw the groups of M inputs an N:M mask keeps N of (M from the "
                                     "structure, 4 otherwise); zoom in on a wide layer")
        self.blocks_check.toggled.connect(lambda _on: self.redraw())
        self.clear_button = QPushButton("Clear A")
        self.clear_button.clicked.connect(lambda: self.state.set_snapshot(None))

        shrinkable(self.layout_box)  # the mode names stay whole (the presentation's live slide)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.mode_box)
        top.addWidget(self.layout_box)
        top.addWidget(self.blocks_check)
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
        # no pyqtgraph downsampling: it averages, which would mix codes; we stride instead
        self.image.setAutoDownsample(False)
        self.plot.addItem(self.image)
        self.blocks = BlockLines(self.plot)
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
        self.plot.scene().sigMouseClicked.connect(self._mouse_clicked)

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

        self._range_timer = QTimer(self)
        self._range_timer.setSingleShot(True)
        self._range_timer.setInterval(30)
        self._range_timer.timeout.connect(self.redraw)
        self.plot.getViewBox().sigRangeChanged.connect(self._range_changed)

        self._compare_timer = QTimer(self)
        self._compare_timer.setSingleShot(True)
        self._compare_timer.setInterval(80)
        self._compare_timer.timeout.connect(self._update_compare_table)

        # A new layer (a model change, a click in the tree) is drawn one event-loop pass later:
        # the model change itself rebuilds the layer tree and the panels (~10 ms) and this
        # view's repaint regenerates three axes (~20 ms); back to back they were one 30-50 ms
        # stall, in two passes neither reaches 25 ms. Coalesces model_changed + selection_changed.
        self._layer_timer = QTimer(self)
        self._layer_timer.setSingleShot(True)
        self._layer_timer.setInterval(0)
        self._layer_timer.timeout.connect(self._apply_layer)

        s = self.state
        s.model_changed.connect(self._layer_changed)
        s.selection_changed.connect(lambda _n: self._layer_changed())
        s.masks_changed.connect(self._masks_changed)
        s.scores_changed.connect(self._scores_changed)
        s.snapshot_changed.connect(self._snapshot_changed)
        self._snapshot_changed()
        self._apply_layer()

    # --- state -> view ---------------------------------------------------------------------
    def _layer_changed(self) -> None:
        self._layer_timer.start()

    def flush(self) -> None:
        """Apply a layer change still waiting for its event-loop pass (readers of the image)."""
        if self._layer_timer.isActive():
            self._apply_layer()

    def _apply_layer(self) -> None:
        self._layer_timer.stop()
        name = self.state.selected
        if name is None or name not in self.state.params:
            self._layout = None
            self._weights = None
            self._drawn_key = None
            self.image.clear()
            self.title.setText("<i>no layer selected</i>")
            return
        w = self.state.params[name]
        key = (id(w), name, self.layout_kind)
        if key == self._drawn_key:  # same layer: masks or scores may have changed meanwhile
            self.redraw()
            return
        self._drawn_key = key
        self.layout_box.setEnabled(w.ndim == 4)
        self._layout = render.make_layout(tuple(w.shape), self.layout_kind)
        self._weights = render.encode_symmetric(w, "weight")
        self._weights_img = self._grid(self._weights.codes, render.GAP)
        self._gaps = None
        if self._layout.kind == "kernels":
            self._gaps = self._grid(np.zeros(w.shape, dtype=bool), True)
        self._scores = None
        self._region = None
        self._scores_img = None
        self._scores_changed(redraw=False)
        h, wd = self._layout.image_shape
        self._set_axes(w.shape)
        self.plot.getViewBox().setRange(QRectF(0, 0, wd, h), padding=0.02)
        self.redraw()

    def _stored_in_out(self) -> bool:
        """Whether the selected weight is stored (in, out), rows being inputs (transformers' Conv1D)."""
        from visualizer.core.layers import output_dim

        model, name = self.state.model, self.state.selected
        if model is None or not name:
            return False
        try:
            return output_dim(model.get_submodule(name.rpartition(".")[0])) == 1
        except (AttributeError, RuntimeError):  # no such module; a TorchScript module has no get_submodule
            return False

    def _set_axes(self, shape: tuple[int, ...]) -> None:
        """Axis titles, and channel-index ticks at kernel centres in the kernel grid."""
        left, bottom = self.plot.getAxis("left"), self.plot.getAxis("bottom")
        if self._layout.kind == "kernels":
            o, i, kh, kw = shape
            left.setTicks([_channel_ticks(o, kh)])
            bottom.setTicks([_channel_ticks(i, kw)])
            xlabel, ylabel = f"input channel (each tile a {kh}×{kw} kernel)", "output channel"
        else:
            left.setTicks(None)
            bottom.setTicks(None)
            xlabel = "input · kernel position (in·kh·kw)" if len(shape) > 2 else "input"
            ylabel = "output" if len(shape) > 1 else ""
            if len(shape) == 2 and self._stored_in_out():  # transformers' Conv1D: W is (in, out)
                xlabel, ylabel = "output", "input (stored in×out)"
        if bottom.labelText != xlabel:
            self.plot.setLabel("bottom", xlabel)
        if left.labelText != ylabel:
            self.plot.setLabel("left", ylabel)

    def _grid(self, arr: np.ndarray, fill) -> np.ndarray:
        """A parameter-shaped array as the full-resolution 2-D image (a view for 'flat')."""
        return render.to_image(arr, self._layout, fill=fill)

    def _range_changed(self, *_args) -> None:
        if self._layout is not None and self._visible_region() != self._region:
            self._range_timer.start()

    def _visible_region(self) -> tuple[int, int, int, int, int]:
        """(r0, r1, c0, c1, stride) of the image the view shows; stride keeps it under MAX_DISPLAY
        pixels a side (display only: zooming in shows every weight)."""
        h, w = self._layout.image_shape
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
        r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
        if c1 <= c0 or r1 <= r0:
            r0, r1, c0, c1 = 0, h, 0, w
        vp = self.canvas.viewport().size()
        limit = max(256, min(MAX_DISPLAY, max(vp.width(), vp.height())))  # ~ one image pixel per screen pixel
        stride = max(1, -(-max(r1 - r0, c1 - c0) // limit))
        return r0 - r0 % stride, r1, c0 - c0 % stride, c1, stride

    def _scores_changed(self, redraw: bool = True) -> None:
        if self._layer_timer.isActive() or self._layout is None:
            return  # a pending layer change encodes the scores with its own layout
        name = self.state.selected
        sc = None if self.state.scores is None else self.state.scores.get(name)
        self._scores = None if sc is None else render.encode_scores(sc)
        self._scores_img = None if self._scores is None else self._grid(self._scores.codes, render.GAP)
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

    def layer_codes(self, region: tuple[int, int, int, int, int]) -> tuple[np.ndarray, str, str]:
        """(uint8 image of ``region``, lut mode, legend html) for the current mode."""
        r0, r1, c0, c1, st = region
        sl = (slice(r0, r1, st), slice(c0, c1, st))
        mask_full = self._current_mask()
        mask = None if mask_full is None else self._grid(mask_full, True)[sl]
        mode = self.mode
        if mode == "compare" and self.state.snapshot is not None and mask is not None:
            snap = self.state.snapshot.masks.get(self.state.selected)
            if snap is not None and tuple(snap.shape) == mask_full.shape:
                legend = " ".join(
                    f"<span style='color:rgb{c[:3]}'>■</span> {t}" for t, c in render.COMPARE_LEGEND.items()
                )
                return render.compare_codes(mask, self._grid(snap.numpy(), True)[sl]), "compare", legend
            mode = "mask"
        if mode == "compare":
            mode = "mask"
        if mode == "mask":
            legend = ("<span style='color:rgb(31,94,168)'>■</span> kept &nbsp; "
                      "<span style='color:rgb(160,160,160)'>■</span> pruned")
            if mask is None:
                return np.full(self._weights_img[sl].shape, render.HI, np.uint8), "mask", ""
            return render.mask_codes(mask), "mask", legend
        if mode == "scores":
            if self._scores is None:
                return (np.full(self._weights_img[sl].shape, render.PRUNED, np.uint8), "scores",
                        "<i>no scores yet: pick a criterion (ranking runs in the background)</i>")
            # every score (pruned ones too): the colour bar shows where the cut falls
            return self._scores_img[sl], "scores", "scores of all weights (kept and pruned)"
        codes = self._weights_img[sl]
        if mode == "masked":
            return render.masked_codes(codes, mask), "weights", _PRUNED_LEGEND
        return codes, "weights", ""

    def redraw(self) -> None:
        if self._layer_timer.isActive():
            return  # the pending layer change redraws (its shape may differ from the drawn one)
        if self._layout is None or self._weights is None:
            return
        region = self._visible_region()
        self._region = region
        img, lut_mode, legend = self.layer_codes(region)
        r0, r1, c0, c1, st = region
        if self._gaps is not None:
            img = np.where(self._gaps[r0:r1:st, c0:c1:st], np.uint8(render.GAP), img)
        img = np.ascontiguousarray(img)
        if lut_mode != self._lut_mode:
            self._set_lut(lut_mode)
        self._image = img
        self.image.setImage(img, autoLevels=False, levels=(0, 255))
        self.image.setRect(QRectF(c0, r0, img.shape[1] * st, img.shape[0] * st))
        if self._bar_key != (lut_mode, id(self._weights), id(self._scores)):
            self._update_bar(lut_mode)
        self.legend.setText(legend)
        self._update_title()
        blocks = self.blocks_check.isChecked() and self._layout.kind == "flat"
        self.blocks.update(blocks, self._layout.image_shape, block_size(self.state.structure),
                           along_rows=blocks and inputs_along_rows(self.state.model, self.state.selected))

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
        kept_n = self.state.layer_kept.get(name)
        total = self.state.layer_total.get(name, 0)
        kept = "" if kept_n is None or not total else f" · kept {kept_n:,} / {total:,} ({kept_n / total:.2%})"
        stride = self._region[4] if self._region else 1
        note = f" · drawn every {stride}th row/column (zoom in for all)" if stride > 1 else ""
        self.title.setText(f"<b>{name}</b> [{shape}]{kept}{note}")

    def export_widget(self):
        """What File > Export draws: the heatmap and its colour bar."""
        return self.canvas

    def image_array(self) -> np.ndarray | None:
        """The uint8 image currently drawn (tests and benchmarks read it)."""
        self.flush()
        return self._image

    # --- hover -----------------------------------------------------------------------------
    def _mouse_moved(self, pos) -> None:
        if self._layout is None or self._layer_timer.isActive() or not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.getViewBox().mapSceneToView(pos)
        text = self.describe(int(np.floor(p.y())), int(np.floor(p.x())))
        if text:
            self.info.setText(text)
            self.hovered.emit(text)

    def _mouse_clicked(self, event) -> None:
        """A click on a weight picks it: the explainer view explains it."""
        if event.button() != Qt.MouseButton.LeftButton or self._layout is None:
            return
        p = self.plot.getViewBox().mapSceneToView(event.scenePos())
        idx = self.weight_at(int(np.floor(p.y())), int(np.floor(p.x())))
        if idx is not None:
            self.weight_picked.emit(self.state.selected, tuple(int(i) for i in idx))

    def weight_at(self, row: int, col: int) -> tuple[int, ...] | None:
        """The weight index drawn at image pixel (row, col), or None outside the layer."""
        self.flush()
        return None if self._layout is None else self._layout.index_at(row, col)

    def describe(self, row: int, col: int) -> str:
        """Text for the image pixel (row, col): index, weight, score and kept."""
        self.flush()
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


def _channel_ticks(n: int, k: int, most: int = 16) -> list[tuple[float, str]]:
    step = max(1, -(-n // most))
    return [(c * (k + 1) + k / 2, str(c)) for c in range(0, n, step)]


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
