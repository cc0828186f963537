"""Overview: every prunable tensor's mask as a tile, in the order the graph runs.

The first view after a load. Draws what :mod:`visualizer.core.pruning.overview` computes: one
RGBA picture of all tiles (core counts kept weights per pixel block and packs the tiles), a
frame around the selected layer, and the hovered tile's numbers. A click on a tile selects the
layer and brings its heatmap to the front. The tiles are built in a job after every load (the
execution order is a forward pass, the mean |w| per block a pass over the weights); after that a
density change only recounts the blocks, so the picture follows the slider.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from visualizer.core.structure.overlays import Overlay
from visualizer.ui.views import ViewSpec, diffs
from visualizer.ui.views.base import shrinkable

COLOUR_MODES = {
    "value": "|weight|, pruned share grey",
    "kept": "kept fraction",
    "score": "score, pruned share grey",
    "diff": "diff: snapshot A vs current",
    "models": "diff of two models: B vs A",
}
AREA_MODES = {"params": "area ∝ parameters", "equal": "equal areas"}
# rankings of at least this many weights get pixel counts (below, counting the masks takes a few ms)
COUNTER_MIN_WEIGHTS = 2_000_000


def _swatch(rgba) -> str:
    return f"<span style='color:rgb({int(rgba[0])},{int(rgba[1])},{int(rgba[2])})'>■</span>"


def model_diff_legend(diff, lo: float, hi: float, lut: np.ndarray) -> str:
    """The scale of the models mode: what B and A are and the colour of each end."""
    if diff is None:
        return ("no model diff yet: choose B in 'diff two models…' (the shrunk model, or the "
                "weights before the last fine-tune)")
    if diff.tile_quantity() == "weight change":
        what, fmt = "weight change ‖W_B − W_A‖ / ‖W_A‖ of the tile's layer", "{:.3g}"
        ends = [(lo, 0), (hi, 255)]
    else:
        what, fmt = "parameter change (P_B − P_A) / P_A of the tile's layer", "{:+.0%}"
        ends = [(lo, 0), (0.0, 128), (hi, 255)]
    scale = " … ".join(f"{_swatch(lut[i])} {fmt.format(v)}" for v, i in ends)
    return f"tile colour = {what}: {scale} &nbsp; (B = {diff.label_b}; A = {diff.label_a})"


def _legend(mode: str) -> str:
    from visualizer.core.pruning.overview import DIFF_LABELS, DIFF_RGBA

    if mode == "diff":
        return " &nbsp; ".join(f"<span style='color:rgb{c[:3]}'>■</span> {t}"
                               for t, c in zip(DIFF_LABELS, DIFF_RGBA))
    if mode == "models":
        return "tile colour = the change of the tile's layer from model A to model B"
    if mode == "kept":
        return ("each pixel a block of weights: <span style='color:rgb(240,240,240)'>■</span> 0% "
                "… <span style='color:rgb(31,94,168)'>■</span> 100% kept")
    what = "mean |weight|" if mode == "value" else "mean score"
    return (f"each pixel a block of weights: colour = the block's {what} (low <span "
            f"style='color:rgb(68,1,84)'>■</span> … <span style='color:rgb(253,231,37)'>■</span> "
            "high, per layer), faded to grey by the share pruned")


class OverviewView(QWidget):
    """All tiles in one picture. Reads ``window.state``; never computes statistics itself."""

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.state = window.state
        self.overview = None  # core.pruning.overview.Overview of the current model
        self.layout_ = None  # core Layout of the drawn picture
        self.mode = "value"
        self.area = "params"
        self._labels: list = []
        self._image: np.ndarray | None = None
        self._built_for = None  # (loaded, params) the overview was built from
        # core.pruning.ranking.CutCounts of the current ranking over the tiles' pixels: a slider
        # move then counts the kept weights per pixel without reading a mask (large models)
        self._counter = None
        self._counter_for = None  # (overview, ranking) the counter was asked for
        self._loaded = None

        self.mode_box = QComboBox()
        for key, text in COLOUR_MODES.items():
            self.mode_box.addItem(text, key)
        self.mode_box.setToolTip("What colours the tiles: the kept share of each block, the weights' "
                                 "or scores' size, or a diff of two masks")
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.area_box = QComboBox()
        for key, text in AREA_MODES.items():
            self.area_box.addItem(text, key)
        self.area_box.setToolTip("Tile area proportional to the tensor's weight count, or all equal "
                                 "(small layers become visible)")
        self.area_box.currentIndexChanged.connect(self._area_changed)
        self.snap_button = QPushButton("Snapshot mask as A")
        self.snap_button.setToolTip("Keep the current mask as A; the diff colours then show what A and "
                                    "the current mask keep")
        self.snap_button.clicked.connect(self.take_snapshot)
        self.diff_box = diffs.diff_box()
        self.diff_box.activated.connect(lambda _i: self.request_diff(self.diff_box.currentData()))

        shrinkable(self.mode_box, self.area_box, self.diff_box)
        top = QHBoxLayout()
        top.addWidget(QLabel("Colour"))
        top.addWidget(self.mode_box)
        top.addWidget(self.area_box)
        top.addStretch(1)
        top.addWidget(self.snap_button)
        top.addWidget(self.diff_box)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground("w")
        self.canvas.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.box = self.canvas.addViewBox(row=0, col=0)
        self.box.setAspectLocked(True)
        self.box.invertY(True)
        self.box.setMenuEnabled(False)
        self.box.setMouseEnabled(False, False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setAutoDownsample(False)
        self.box.addItem(self.image)
        self.frame = self._outline(QColor(230, 60, 20), 2.0, 10)  # the selected tile
        self.hover_frame = self._outline(QColor(40, 40, 40), 1.0, 9)  # the tile under the mouse
        self.canvas.scene().sigMouseMoved.connect(self._mouse_moved)
        self.canvas.scene().sigMouseClicked.connect(self._mouse_clicked)

        self.title = QLabel("<i>load a model: every prunable layer appears here as a tile</i>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.legend = QLabel(_legend(self.mode))
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.info = QLabel("hover over a tile for its layer; click it to open the layer's heatmap")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        v = QVBoxLayout(self)
        v.setContentsMargins(2, 2, 2, 2)
        v.addLayout(top)
        v.addWidget(self.title)
        v.addWidget(self.canvas, 1)
        v.addWidget(self.legend)
        v.addWidget(self.info)

        # a resize lays the tiles out again for the new shape, once it has settled
        self._layout_timer = QTimer(self)
        self._layout_timer.setSingleShot(True)
        self._layout_timer.setInterval(60)
        self._layout_timer.timeout.connect(self.relayout)
        self.box.sigResized.connect(lambda *_: self._layout_timer.start())

        s = self.state
        s.model_changed.connect(self._model_changed)
        s.masks_changed.connect(self._masks_changed)
        s.scores_changed.connect(self._scores_changed)
        s.snapshot_changed.connect(self._snapshot_changed)
        s.model_diff_changed.connect(self._model_diff_changed)
        s.selection_changed.connect(lambda _n: self._update_frame())
        if s.loaded is not None:
            self._model_changed()

    # --- state -> view ---------------------------------------------------------------------

    def _outline(self, color: QColor, width: float, z: float) -> QGraphicsRectItem:
        """A hidden rectangle outline on the tiles, its pen the same width at any zoom."""
        item = QGraphicsRectItem()
        pen = QPen(color)
        pen.setWidthF(width)
        pen.setCosmetic(True)
        item.setPen(pen)
        item.setZValue(z)
        item.hide()
        self.box.addItem(item)
        return item
    def _model_changed(self) -> None:
        s = self.state
        if s.loaded is not self._loaded:  # a new load (not retrained weights): come to the front
            first = self._loaded is None
            self._loaded = s.loaded
            self._come_forward(keep_analysis=not first)
        if s.loaded is None or not s.params:
            return
        key = (id(s.loaded), id(s.params))
        if key == self._built_for:
            return
        self._built_for = key
        self._counter = self._counter_for = None  # they hold the old model's ranking
        model, params, names, dataset = s.loaded.model, s.params, list(s.prunable), s.dataset_name
        self.title.setText("<i>laying out the tiles…</i>")

        def build():
            from visualizer.core.pruning.overview import build_overview_job
            from visualizer.core.structure.graph import example_input

            try:
                example = example_input(model, dataset, batch=1)
            except ValueError:  # no input shape to guess: registration order
                example = None
            return (yield from build_overview_job(model, params, names, example))

        def done(overview) -> None:
            if self._built_for != key:
                return  # another model arrived meanwhile
            self.overview = overview
            self._install_mask_and_scores()
            self.relayout()

        self.window.jobs.submit("overview", "laying out the overview", build, on_result=done)

    def _come_forward(self, keep_analysis: bool = True) -> None:
        """Bring the overview's dock to the front after a load: it is the first thing shown of a
        model. One exception: a person who brought another view to the front in this window
        (the graph, the profile, the spectrum, ...) keeps it, and that view follows the new
        model. The heatmap does not count (it shows one layer of the old model; a tile click
        opens it), nor does the front tab of a layout restored from an earlier run: the window's
        first load (``keep_analysis`` False) always shows the overview."""
        docks = getattr(self.window, "docks", {})
        dock = docks.get("overview")
        if dock is None or dock.isFloating():
            return
        for vid, other in docks.items() if keep_analysis else ():
            if vid in ("overview", "heatmap") or vid not in getattr(self.window, "views", {}):
                continue
            if other.isVisible() and not other.isFloating() and not other.visibleRegion().isEmpty():
                return
        dock.raise_()

    def _install_mask_and_scores(self) -> None:
        ov, s = self.overview, self.state
        if s.masks is not None:
            ov.set_mask(s.masks.masks)
        if s.snapshot is not None:
            ov.set_reference(s.snapshot.masks, None if s.masks is None else s.masks.masks)
        if s.scores is not None:  # a pass over every score: in a job, as on a new ranking
            self._scores_changed()

    def _masks_changed(self) -> None:
        if self.overview is None or self.state.masks is None:
            return
        ov, masks, counter = self.overview, self.state.masks.masks, self._counter
        if counter is not None and ov.reference is None and self._counter_for[0] is ov and counter.follows(masks):
            ov.set_kept(counter.counts())
        else:
            ov.set_mask(masks, self.state.layer_kept)
            self._request_counter()
        self.redraw()

    def _request_counter(self) -> None:
        """Build the pixel counts of the current ranking (one pass through its order, in a job)
        when the slider shows a large model's ranking."""
        ov, rk = self.overview, self.state.current_ranking()
        if ov is None or rk is None or rk.total() < COUNTER_MIN_WEIGHTS or self._counter_for == (ov, rk):
            return
        self._counter_for = (ov, rk)
        self._counter = None

        def build():
            from visualizer.core.pruning.ranking import cut_counts_job

            return (yield from cut_counts_job(rk, ov.pixel_ids(rk.names, rk.shapes), ov.n_pixels))

        def done(counter) -> None:
            if self._counter_for == (ov, rk):
                self._counter = counter

        def dropped(*_args) -> None:  # cancelled or failed: the next move asks again
            if self._counter_for == (ov, rk):
                self._counter_for = None

        self.window.jobs.submit("overview-counts", "overview: pixel counts of the ranking", build,
                                on_result=done, on_error=dropped, on_cancel=dropped)

    def _scores_changed(self) -> None:
        if self.overview is None:
            return
        scores = self.state.scores
        if scores is None:
            self.overview.score = None
            if self.mode == "score":
                self.redraw()
            return
        ov = self.overview

        def levels():
            from visualizer.core.tasks import Step

            yield Step("overview: score levels", 0.0)
            return ov.levels(scores)

        def done(level) -> None:
            if self.overview is ov and self.state.scores is scores:
                ov.score = level
                if self.mode == "score":
                    self.redraw()

        self.window.jobs.submit("overview-scores", "overview: score colours", levels, on_result=done)

    def _snapshot_changed(self) -> None:
        s = self.state
        if self.overview is not None:
            self.overview.set_reference(None if s.snapshot is None else s.snapshot.masks,
                                        None if s.masks is None else s.masks.masks)
        if s.snapshot is None and self.mode == "diff":
            self.set_mode("value")
        self.redraw()

    def _model_diff_changed(self) -> None:
        if self.mode == "models":
            self.redraw()

    def request_diff(self, kind: str) -> None:
        """Diff the shown model with B (ui.views.diffs) and colour the tiles by it when it arrives."""
        self.diff_box.setCurrentIndex(0)  # a choice is an action: choosing it again recomputes
        if kind:
            diffs.request_model_diff(self.window, kind, self._diff_status, lambda: self.set_mode("models"))

    def _diff_status(self, text: str) -> None:
        if text:
            self.info.setText(text)

    def _mode_changed(self) -> None:
        self.mode = self.mode_box.currentData()
        self.legend.setText(_legend(self.mode))
        self.redraw()

    def _area_changed(self) -> None:
        self.area = self.area_box.currentData()
        self.relayout()

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(list(COLOUR_MODES).index(mode))

    def set_area(self, area: str) -> None:
        self.area_box.setCurrentIndex(list(AREA_MODES).index(area))

    def restore(self, mode: str | None, area: str | None) -> None:
        """A saved session's colour mode and area mode (unknown or missing values are ignored)."""
        if area in AREA_MODES:
            self.set_area(area)
        if mode in COLOUR_MODES and (mode != "diff" or self.state.snapshot is not None) and \
                (mode != "models" or getattr(self.state, "model_diff", None) is not None):
            self.set_mode(mode)

    def take_snapshot(self) -> None:
        if self.state.masks is not None:
            self.state.set_snapshot(self.state.masks.copy())
            self.set_mode("diff")

    # --- drawing ---------------------------------------------------------------------------
    def canvas_size(self) -> tuple[int, int]:
        rect = self.box.sceneBoundingRect()
        return max(int(rect.width()), 64), max(int(rect.height()), 64)

    def relayout(self) -> None:
        """Pack the tiles for the view's current size and area mode, then draw."""
        from visualizer.core.pruning.overview import pack_tiles

        if self.overview is None:
            return
        w, h = self.canvas_size()
        self.layout_ = pack_tiles(self.overview, w, h, self.area)
        self.box.setRange(QRectF(0, 0, w, h), padding=0)
        self._place_labels()
        self.redraw()

    def _place_labels(self) -> None:
        """The layer's short name in the top-left corner of every tile wide enough for it."""
        for item in self._labels:
            self.box.removeItem(item)
        self._labels = []
        font = self.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        metrics = QFontMetrics(font)
        for r in self.layout_.rects:
            short = r.name[:-7] if r.name.endswith(".weight") else r.name
            if r.w < 36 or r.h < metrics.height() + 2:
                continue
            text = metrics.elidedText(short, Qt.TextElideMode.ElideLeft, r.w - 6)
            if text != short and len(text) < 4:  # an elided stub says nothing; "fc1" does
                continue
            label = pg.TextItem(text, color=(20, 20, 20), fill=pg.mkBrush(255, 255, 255, 190), anchor=(0, 0))
            label.setFont(font)
            label.setPos(r.x + 1, r.y + 1)
            label.setZValue(5)
            self.box.addItem(label, ignoreBounds=True)
            self._labels.append(label)

    def redraw(self) -> None:
        from visualizer.core.pruning.overview import canvas

        ov, lay = self.overview, self.layout_
        if ov is None or lay is None:
            return
        mode = self.mode
        if mode == "diff" and ov.ref_kept is None:
            mode = "kept"
        if mode == "models":
            colours = self._model_diff_colours()
        elif mode == "diff":
            colours = ov.colours("diff")
        else:
            colours = self._table(mode)[ov.codes(mode)]
        self._image = canvas(lay, colours)
        self.image.setImage(self._image, autoLevels=False)
        self.image.setRect(QRectF(0, 0, lay.width, lay.height))
        self._update_frame()
        self._update_title()

    def _model_diff_colours(self) -> np.ndarray:
        """Each tile in the colour of its layer's change in the state's model diff (relative
        parameter change on a diverging scale, weight change on viridis); grey without one."""
        diff = getattr(self.state, "model_diff", None)
        quantity = diff.tile_quantity() if diff is not None else "relative params"
        diverging = quantity != "weight change"
        values = diff.values(quantity) if diff is not None else {}
        # the relative change on at least -100% .. +100%, as on the graph (comparable across diffs)
        lo, hi = Overlay("tiles", values, diverging=diverging).range()
        if diverging:
            lo, hi = min(lo, -1.0), max(hi, 1.0)
        lut = pg.colormap.get("CET-D1" if diverging else "viridis").getLookupTable(nPts=256, alpha=True)
        lut = np.asarray(lut, dtype=np.uint8)
        self.legend.setText(model_diff_legend(diff, lo, hi, lut))
        return self.overview.value_colours(values, lo, hi, lut)

    def _table(self, mode: str) -> np.ndarray:
        from visualizer.core.pruning.overview import Overview

        tables = getattr(self, "_tables", None)
        if tables is None:
            tables = self._tables = {}
        if mode not in tables:
            lut = None if mode == "kept" else \
                pg.colormap.get("viridis").getLookupTable(nPts=256, alpha=True).astype(np.uint8)
            tables[mode] = Overview.table(mode, lut)
        return tables[mode]

    def _update_frame(self) -> None:
        lay = self.layout_
        rect = None if lay is None else lay.rect(self.state.selected or "")
        if rect is None:
            self.frame.hide()
            return
        self.frame.setRect(QRectF(rect.x - 1.5, rect.y - 1.5, rect.w + 3, rect.h + 3))
        self.frame.show()

    def _update_title(self) -> None:
        s = self.state
        n = len(self.overview.tiles) if self.overview is not None else 0
        kept, total = s.kept(), s.total()
        dens = f" · kept {kept:,} / {total:,} ({kept / total:.2%})" if total else ""
        area = "area ∝ weights" if self.area == "params" else "equal areas"
        self.title.setText(f"<b>{n} prunable tensors</b> in the order the model runs them{dens} · {area}")

    def image_array(self) -> np.ndarray | None:
        """The RGBA picture currently drawn (tests and benchmarks read it)."""
        return self._image

    def export_widget(self):
        return self.canvas

    # --- mouse -----------------------------------------------------------------------------
    def tile_at_scene(self, pos) -> str | None:
        if self.layout_ is None or not self.box.sceneBoundingRect().contains(pos):
            return None
        p = self.box.mapSceneToView(pos)
        return self.layout_.tile_at(p.x(), p.y())

    def scene_pos_of(self, name: str):
        """The scene position of a tile's centre (tests click there)."""
        r = self.layout_.rect(name)
        return self.box.mapViewToScene(pg.Point(r.x + r.w / 2, r.y + r.h / 2))

    def _mouse_moved(self, pos) -> None:
        name = self.tile_at_scene(pos)
        if name is None:
            self.hover_frame.hide()
            return
        r = self.layout_.rect(name)
        self.hover_frame.setRect(QRectF(r.x - 0.5, r.y - 0.5, r.w + 1, r.h + 1))
        self.hover_frame.show()
        self.info.setText(self.describe(name))

    def describe(self, name: str) -> str:
        s = self.state
        shape = "×".join(str(v) for v in s.params[name].shape) if name in s.params else "?"
        kept, total = s.layer_kept.get(name), s.layer_total.get(name, 0)
        parts = [f"{self.overview.index[name] + 1}. {name} [{shape}]"]
        if kept is not None and total:
            parts.append(f"kept {kept:,} / {total:,} ({kept / total:.1%})")
        if s.snapshot is not None and name in s.snapshot.masks:
            parts.append(f"A keeps {int(s.snapshot.masks[name].sum()):,}")
        diff = getattr(s, "model_diff", None)
        change = None if diff is None else diff.layers.get(name.rpartition(".")[0])
        if change is not None and self.mode == "models":
            text = f"params {change.params_a:,} → {change.params_b:,}"
            if change.relative_params is not None:
                text += f" ({change.relative_params:+.1%})"
            if change.flops_a is not None:
                text += f", FLOPs {change.flops_a:,.0f} → {change.flops_b:,.0f}"
            if change.weight_change is not None:
                text += f", weight change {change.weight_change:.3g}"
            parts.append(text)
        parts.append("click: heatmap")
        return " · ".join(parts)

    def _mouse_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        name = self.tile_at_scene(event.scenePos())
        if name is not None:
            self.open_layer(name)

    def open_layer(self, name: str) -> None:
        """Select ``name`` in the window and bring its heatmap to the front."""
        self.state.select(name)
        dock = getattr(self.window, "docks", {}).get("heatmap")
        if dock is not None:
            dock.raise_()


def _prepare(window, options) -> None:
    view = window.views["overview"]
    view.relayout()


VIEW = ViewSpec(
    "overview",
    "Overview",
    OverviewView,
    prepare=_prepare,
    description="every prunable tensor's mask as a tile, in execution order; click opens the heatmap",
)
