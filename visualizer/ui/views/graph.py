"""Dependency graph view: the traced graph nested by the module tree.

A container (block, stage, encoder layer) is one box until opened; a run of identical blocks is
one box "× N" until unfolded. Click a closed box (or select it and press Enter) to open it in
place, click an open box's title strip (or Backspace) to close it. Breadcrumbs show where the
selection sits, the search box jumps to a name and opens what hides it, Home fits the view.

Any per-layer quantity paints the nodes (an overlay: kept fraction, FLOPs, scores, sensitivity,
...); a closed container shows a small colour bar of its layers' values and their mean/min/max on
hover, and the legend gives the scale. Selecting a layer lists its coupled channel groups with
the reason each member is coupled; choosing a group highlights every slice it touches, opening
what is needed.

Everything is painted by one :class:`GraphItem` from the boxes of
:func:`visualizer.core.structure.hierarchy.place`; the view computes nothing but pixel
positions. A container with many children is laid out in a worker thread (``run_job``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.core.structure import hierarchy as hier
from visualizer.core.structure.hierarchy import ROOT, Hierarchy, Placement
from visualizer.core.structure.overlays import Overlay, OverlayRegistry
from visualizer.ui.views.base import AnalysisView, density_colormap

LEVELS = 64  # overlay colours are quantised: one brush per level, made once per colormap
MIN_LABEL_PX = 26  # nodes narrower than this on screen are drawn without text
NOTE_ROOM = 0.7 * hier.NODE_H  # free under each node when notes are drawn: one line of them
NODE_TITLE_W = 1.0  # a box's title is drawn while this much of its strip is in view


@dataclass
class CoupledGroup:
    """What the view shows of one coupled channel group (computed by the panel from core)."""

    id: int
    label: str
    layers: list[str]
    reasons: list[tuple[str, str]]  # (parameter, why it is coupled)
    size: int = 0
    kept: int | None = None  # units the current mask keeps


class BeforeAfterTable(QDialog):
    """Dense vs masked vs shrunk in numbers (rows from core.structure.overlays.before_after)."""

    def __init__(self, rows: list[list], note: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Masked vs shrunk")
        layout = QVBoxLayout(self)
        self.table = QTableWidget(len(rows), 4, self)
        self.table.setHorizontalHeaderLabels(["", "dense", "masked", "shrunk"])
        self.table.verticalHeader().hide()
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                text = value if isinstance(value, str) else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}")
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        for c in (1, 2, 3):  # the numbers share the width (no empty strip right of them)
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table)
        self.note = QLabel(note, self)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.resize(560, 320)


class _Worker(QObject):
    """Runs a job generator to the end in a Python thread; ``done`` arrives on the GUI thread."""

    done = Signal(object, object)  # (callback, result)

    def start(self, factory: Callable, callback: Callable) -> None:
        from visualizer.core.tasks import run

        def work():
            try:
                result = run(factory())
            except Exception as exc:  # shown by the callback as a one-line status
                result = exc
            self.done.emit(callback, result)

        threading.Thread(target=work, daemon=True).start()


class GraphItem(pg.GraphicsObject):
    """Paints a placement: open boxes, edges, nodes coloured by the overlay, colour bars,
    labels and highlights. Labels are drawn in device pixels, only where they fit."""

    def __init__(self, view: GraphView) -> None:
        super().__init__()
        self.view = view
        self._bounds = QRectF()
        self.edge_path = QPainterPath()
        self.highlight_path = QPainterPath()
        self.drawn: list[tuple[str, QRectF]] = []  # texts of the last paint on screen, in viewport pixels

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt API)
        return self._bounds

    def relayout(self, placement: Placement) -> None:
        self.prepareGeometryChange()
        x0, y0, x1, y1 = placement.bounds()
        self._bounds = QRectF(x0 - 1, y0 - 1, x1 - x0 + 2, y1 - y0 + 2)
        self.edge_path = self._curves(hier.edge_curves(placement))
        self.update()

    @staticmethod
    def _curves(ctrl: np.ndarray) -> QPainterPath:
        path = QPainterPath()
        for c in ctrl:
            path.moveTo(c[0, 0], c[0, 1])
            path.cubicTo(c[1, 0], c[1, 1], c[2, 0], c[2, 1], c[3, 0], c[3, 1])
        return path

    cull: QRectF | None = None  # data rect outside which no text is drawn (None: everything)

    def paint(self, p: QPainter, *args) -> None:
        v = self.view
        if args:  # drawn by the scene: only what the view shows needs its text
            self.cull = v.plot.getViewBox().viewRect()
        pl = v.placement
        if pl is None:
            return
        theme = v.theme
        fg = QColor(theme.foreground)
        # open boxes, outermost first (so inner ones paint over)
        for key in pl.boxes:
            x, y, w, h = pl.rects[key]
            level = len(v.hierarchy.ancestors(key)) if key else 0
            fill = QColor(theme.edge)
            fill.setAlpha(18 + 10 * (level % 3))
            pen = QPen(QColor(theme.edge), 1.0)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.setBrush(QBrush(fill))
            p.drawRect(QRectF(x, y, w, h))
        # edges
        pen = QPen(QColor(theme.edge), 1.0)
        pen.setCosmetic(True)
        if v.hierarchy is not None and v.hierarchy.edge_kind == "order":
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(self.edge_path)
        if not self.highlight_path.isEmpty():
            hp = QPen(QColor(theme.highlight), 2.5)
            hp.setCosmetic(True)
            p.setPen(hp)
            p.drawPath(self.highlight_path)
        # nodes, one brush at a time
        border = QPen(fg, 1.0)
        border.setCosmetic(True)
        p.setPen(border)
        rects = v.node_rects
        for level, rows in v.brush_rows.items():
            p.setBrush(v.brush(level))
            p.drawRects([rects[i] for i in rows])
        # runs look like a stack of cards; closed containers get a thicker frame
        thick = QPen(fg, 2.0)
        thick.setCosmetic(True)
        p.setPen(thick)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for i in v.container_rows:
            p.drawRect(rects[i])
        for i in v.run_rows:
            r = rects[i]
            p.drawLine(QPointF(r.left() + 0.06, r.bottom() + 0.05), QPointF(r.right() + 0.06, r.bottom() + 0.05))
            p.drawLine(QPointF(r.right() + 0.06, r.top() + 0.05), QPointF(r.right() + 0.06, r.bottom() + 0.05))
        # colour bars of closed containers: a strip along the bottom
        p.setPen(Qt.PenStyle.NoPen)
        for i, bar in v.bars.items():
            r = rects[i]
            n = len(bar)
            bw = r.width() / n
            top = r.bottom() - r.height() * 0.28
            for j, level in enumerate(bar):
                p.setBrush(v.brush(level))
                p.drawRect(QRectF(r.left() + j * bw, top, bw, r.bottom() - top))
        # highlights: selection and coupled-group members
        for rows, width in ((v.group_rows, 3.0), ([v.selected_row] if v.selected_row is not None else [], 3.5)):
            if not rows:
                continue
            hp = QPen(QColor(theme.highlight), width)
            hp.setCosmetic(True)
            p.setPen(hp)
            p.setBrush(Qt.BrushStyle.NoBrush)
            for i in rows:
                p.drawRect(rects[i].adjusted(-0.04, -0.04, 0.04, 0.04))
        self._paint_text(p, pl)

    text_pt: float | None = None  # the titles' point size; None: the theme's (a slide sets its own)

    def set_text_pt(self, point_size: float) -> None:
        """Titles and notes in ``point_size`` type (a slide sizes every text to its screen)."""
        self.text_pt = point_size
        self.update()

    def _paint_text(self, p: QPainter, pl: Placement) -> None:
        """Titles in device pixels: node names where a node is wide enough, box titles, and the
        view's notes (a few words under a node) in the highlight colour. What was drawn on screen
        is kept in ``drawn`` (the legibility check reads it)."""
        v = self.view
        tr = p.transform()
        p.save()
        p.resetTransform()
        font = QFont(p.font())
        font.setPointSizeF(self.text_pt if self.text_pt else max(7.0, v.theme.font_pt - 1.5))
        p.setFont(font)
        metrics = QFontMetricsF(font)
        p.setPen(QColor(v.theme.foreground))
        lh = metrics.height()
        drawn: list[tuple[str, QRectF]] = []
        flags = int(Qt.AlignmentFlag.AlignCenter)
        shown = self.cull
        for key in pl.boxes:
            x, y, w, h = pl.rects[key]
            if shown is not None and not shown.contains(QRectF(x, y, min(w, NODE_TITLE_W), hier.HEADER)):
                continue  # a title cut off at the edge of the view is noise
            a = tr.map(QPointF(x, y))
            b = tr.map(QPointF(x + w, y + hier.HEADER))
            if b.x() - a.x() < MIN_LABEL_PX or b.y() - a.y() < lh * 0.8:
                continue
            node = v.hierarchy.nodes[key]
            text = f"▾ {node.label if key else 'model'}" + (f"  {node.module_type}" if node.module_type else "")
            text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, b.x() - a.x() - 6)
            box = QRectF(a.x() + 4, a.y(), b.x() - a.x() - 6, b.y() - a.y())
            align = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            p.drawText(box, align, text)
            drawn.append((text, metrics.boundingRect(box, align, text)))
        for i in range(len(pl.visible)):
            r = v.node_rects[i]
            if shown is not None and not shown.intersects(r):
                continue
            a = tr.map(r.topLeft())
            b = tr.map(r.bottomRight())
            wpx, hpx = b.x() - a.x(), b.y() - a.y()
            if wpx < MIN_LABEL_PX or hpx < lh * 0.7:
                continue
            mode = Qt.TextElideMode.ElideLeft if i in v.run_set else Qt.TextElideMode.ElideMiddle
            text = metrics.elidedText(v.titles[i], mode, wpx - 4)
            box = QRectF(a.x() + 2, a.y(), wpx - 4, hpx * (0.72 if i in v.bars else 1.0))
            p.setPen(QColor(v.text_colours[i]))
            p.drawText(box, flags, text)
            drawn.append((text, metrics.boundingRect(box, flags, text)))
        # notes: centred under their node, as wide as they need
        p.setPen(QColor(v.theme.highlight))
        for key, note in v.notes.items():
            i = v.row_of.get(key)
            if i is None:
                continue
            r = v.node_rects[i]
            a, b = tr.map(r.bottomLeft()), tr.map(r.bottomRight())
            width = metrics.horizontalAdvance(note) + 4
            box = QRectF((a.x() + b.x() - width) / 2, a.y() + 1, width, lh)
            p.drawText(box, flags, note)
            drawn.append((note, metrics.boundingRect(box, flags, note)))
        p.restore()
        if self.cull is not None:  # painted on screen (an export paints elsewhere)
            self.drawn = drawn


class GraphView(AnalysisView):
    """The nested graph of a model.

    Signals: ``layerSelected(str)`` when a layer is clicked, ``layerActivated(str)`` when it is
    double-clicked, ``nodeHovered(str)`` ('' when leaving), ``overlayChanged(str)`` when the
    painted overlay changes.
    """

    title = "Graph"
    layerSelected = Signal(str)
    layerActivated = Signal(str)  # a double click on a layer: show its heatmap
    nodeHovered = Signal(str)
    overlayChanged = Signal(str)

    ZOOM_STEP = 1.25
    PAN_STEP = 0.1  # of the visible range

    def __init__(self, parent: QWidget | None = None, overlays: OverlayRegistry | None = None) -> None:
        super().__init__(parent)
        # top row: breadcrumbs | search | overlay | fit
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        self.crumbs = QHBoxLayout()
        self.crumbs.setSpacing(0)
        top.addLayout(self.crumbs, 1)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("find a layer…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("type a module name and press Enter: the graph opens what hides it")
        self.search.setMaximumWidth(220)
        self.search.returnPressed.connect(lambda: self.find(self.search.text()))
        top.addWidget(self.search)
        self.overlay_box = QComboBox(self)
        self.overlay_box.setToolTip("the per-layer quantity that colours the nodes")
        self.overlay_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.overlay_box.currentTextChanged.connect(self._overlay_chosen)
        top.addWidget(self.overlay_box)
        self.fit_button = QToolButton(self)
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("show everything that is open (Home)")
        self.fit_button.clicked.connect(self.fit)
        top.addWidget(self.fit_button)
        self.body.addLayout(top)
        # the list goes below the graph: a layered graph is wide and flat, so the width is
        # what the nodes need (at 1280x720 a side list left them too small to label)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.canvas = pg.GraphicsLayoutWidget()
        self._widgets.append(self.canvas)
        split.addWidget(self.canvas)
        self.groups_tree = QTreeWidget(self)
        self.groups_tree.setHeaderLabels(["coupled channel group", "why"])
        self.groups_tree.setToolTip("the selected layer's coupled groups: choose one to see every "
                                    "slice it touches")
        self.groups_tree.itemClicked.connect(self._group_clicked)
        self.groups_tree.hide()
        split.addWidget(self.groups_tree)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.groups_tree.setMinimumHeight(90)
        self.body.addWidget(split, 1)
        self.plot = self.canvas.addPlot(row=0, col=0)
        self._plots.append(self.plot)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.getViewBox().invertY(True)
        self.plot.getViewBox().setAspectLocked(True)  # boxes keep their shape, text fits them
        # the plot's own size settles after the widget's: fit again then, until the user navigates
        self.plot.getViewBox().sigResized.connect(lambda *_: self.auto_fit and self.reset_range())
        self.item = GraphItem(self)
        self.plot.addItem(self.item)
        self.colorbar_item: pg.ColorBarItem | None = None
        self.info = QLabel(self)
        self.info.setObjectName("graphInfo")
        self.info.setWordWrap(True)
        self.body.addWidget(self.info)
        # state
        self.overlays = overlays if overlays is not None else OverlayRegistry()
        self.overlays.listeners.append(self._overlays_changed)
        self.overlay_name = ""
        self.wanted_overlay = ""  # chosen before it was computed (a session): shown when it arrives
        self.hierarchy: Hierarchy | None = None
        self.graph = None  # the traced networkx graph on screen
        self.opened: set[str] = set()
        self.orders: dict[str, list[list[str]]] = {}
        self.pending: set[str] = set()  # containers whose layout runs in a worker
        self.placement: Placement | None = None
        self.row_of: dict[str, int] = {}
        self.node_rects: list[QRectF] = []
        self.titles: list[str] = []
        self.text_colours: list[str] = []
        self.values = np.zeros(0)  # overlay value per visible node
        self.leafvals = np.zeros(0)
        self.brush_rows: dict[int, list[int]] = {}
        self.container_rows: list[int] = []
        self.run_rows: list[int] = []
        self.run_set: set[int] = set()
        self.bars: dict[int, list[int]] = {}
        self.selected: str | None = None
        self.selected_row: int | None = None
        self.hovered: str | None = None
        self.groups: list[CoupledGroup] = []
        self.group_rows: list[int] = []
        self.active_group: CoupledGroup | None = None
        self.notes: dict[str, str] = {}  # node key -> a few words drawn under it (a slide's reasons)
        self._brushes: dict = {}
        self._worker = _Worker()
        self._worker.done.connect(lambda cb, res: cb(res))
        self.run_job: Callable[[str, Callable, Callable], None] | None = None  # the window's runner
        self.auto_fit = True  # until the user pans or zooms, the whole graph stays in view
        self.canvas.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.canvas.setToolTip("click a box to open it, its title strip to close it · Enter opens, "
                               "Backspace closes the selection · wheel or +/- zoom · drag or arrows "
                               "pan · Home: fit · click a layer to select it")
        self.canvas.installEventFilter(self)
        self.canvas.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.canvas.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._fill_overlay_box()
        self.ready()

    # --- data ----------------------------------------------------------------------------------
    def set_hierarchy(self, h: Hierarchy, opened: Iterable[str] = (), graph=None) -> None:
        """Show ``h`` with only the model open (plus ``opened``). A model whose top level is
        large is laid out in a worker: it shows as one closed box until then. ``graph`` is the
        traced graph it nests (kept for callers that read it)."""
        self.hierarchy = h
        self.graph = graph
        self.orders = {}
        self.pending = set()
        self.opened = set()
        self.selected = self.hovered = None
        self.groups, self.active_group = [], None
        self.notes, self.focus_keys = {}, None
        self.groups_tree.clear()
        self.groups_tree.hide()
        self.search.setCompleter(QCompleter(sorted(k for k in h.nodes if k), self.search))
        self._recompute_leafvals()
        for key in [ROOT, *opened]:
            self.open_node(key, fit=False)
        self._relayout()
        self.reset_range()
        self._show_info(None)  # an untraced model's one line: why, and what would help
        self.auto_fit = True

    def set_graph(self, graph, layout=None) -> None:
        """A bare traced graph (no module tree): nested by the dotted names of its layers."""
        owners = {n: str(a.get("target") or "").rpartition(".")[0] if a.get("kind") == "layer" else ""
                  for n, a in graph.nodes(data=True)}
        self.set_hierarchy(hier.build_hierarchy(graph, owners), graph=graph)

    # --- open / close --------------------------------------------------------------------------
    def is_open(self, key: str) -> bool:
        return key in self.opened

    def open_node(self, key: str, fit: bool = False, then: Callable[[], None] | None = None) -> None:
        """Open a container in place (its layout is computed now, in a worker when large)."""
        h = self.hierarchy
        if h is None or key not in h.nodes or not h.nodes[key].is_container:
            return
        for a in h.ancestors(key):  # what hides it opens too
            if a not in self.opened:
                self.open_node(a)
        if key in self.opened:
            if then:
                then()
            return
        if key in self.orders:
            self.opened.add(key)
            self._relayout()
            if then:
                then()
            return
        if len(h.nodes[key].children) > hier.LARGE_CONTAINER:
            self.pending.add(key)
            self.info.setText(f"laying out {h.nodes[key].label or 'the model'} "
                              f"({len(h.nodes[key].children)} nodes)…")

            def done(result) -> None:
                self.pending.discard(key)
                if self.hierarchy is not h:
                    return
                if isinstance(result, Exception):
                    self.info.setText(f"could not lay out {key or 'the model'}: {result}")
                    return
                self.orders[key] = result
                self.opened.add(key)
                self._relayout()
                if key == ROOT:
                    self.reset_range()
                if then:
                    then()

            factory = lambda: hier.order_job(h, key)  # noqa: E731
            if self.run_job is not None:
                self.run_job("graph-layout", f"laying out {key or 'the model'}", factory, done)
            else:
                self._worker.start(factory, done)
            return
        self.orders[key] = hier.order(h, key)
        self.opened.add(key)
        only = h.nodes[key].children
        if len(only) == 1 and h.nodes[only[0]].kind == "module":
            # a wrapper (a Sequential holding one stage) shows what it wraps at once; a folded
            # run stays folded
            self.open_node(only[0], then=then)
            return
        self._relayout()
        if then:
            then()

    def close_node(self, key: str) -> None:
        """Close an open container (its descendants stay open for when it reopens)."""
        if key == ROOT or key not in self.opened:
            return
        self.opened.discard(key)
        if self.selected is not None and key in self.hierarchy.ancestors(self.selected):
            self.selected = key
        self._relayout()

    def toggle(self, key: str) -> None:
        if key in self.opened:
            self.close_node(key)
        else:
            self.open_node(key)

    def open_all(self) -> None:
        for key in self.hierarchy.containers():
            if len(self.hierarchy.nodes[key].children) <= hier.LARGE_CONTAINER:
                self.orders.setdefault(key, hier.order(self.hierarchy, key))
                self.opened.add(key)
        self._relayout()

    # --- drawing -------------------------------------------------------------------------------
    def _relayout(self) -> None:
        h = self.hierarchy
        if h is None:
            return
        self.placement = hier.place(h, self.opened, self.orders, note_room=NOTE_ROOM if self.notes else 0.0)
        pl = self.placement
        self.row_of = {k: i for i, k in enumerate(pl.visible)}
        self.node_rects = [QRectF(*pl.rects[k]) for k in pl.visible]
        self.titles = []
        self.container_rows, self.run_rows = [], []
        self.run_set: set[int] = set()
        for i, k in enumerate(pl.visible):
            n = h.nodes[k]
            t = n.title() if k else "model"
            if k in self.pending:
                t = f"{t} (laying out…)"
            self.titles.append(t)
            if n.is_container:
                self.container_rows.append(i)
                if n.kind == "run":
                    self.run_rows.append(i)
                    self.run_set.add(i)
        self.item.relayout(pl)
        self._recolour()
        self._update_highlight()
        self._update_crumbs()
        if self.auto_fit:
            self.reset_range()

    def redraw(self) -> None:
        self._brushes = {}
        self._recolour()
        self._draw_colorbar()

    def brush(self, level: int) -> QBrush:
        """Brush of a quantised overlay level (-1: no value); one table per colormap and theme."""
        key = (id(self._colormap()), id(self.theme))
        if self._brushes.get("key") != key:
            base = QColor(self.theme.background)
            table = [QBrush(self._colormap().map(i / LEVELS, mode="qcolor")) for i in range(LEVELS + 1)]
            table.append(QBrush(base.lighter(160) if self.theme.dark else base.darker(108)))  # [-1]
            self._brushes = {"key": key, "table": table}
        return self._brushes["table"][level]

    def _colormap(self) -> pg.ColorMap:
        ov = self.current_overlay()
        if ov is not None and ov.diverging:
            if not hasattr(self, "_div_cmap"):
                self._div_cmap = pg.colormap.get("CET-D1")
            return self._div_cmap
        if not hasattr(self, "_seq_cmap"):
            self._seq_cmap = density_colormap()
        return self._seq_cmap

    def value_of(self, name: str) -> float:
        """The painted overlay value of a layer (NaN when it has none)."""
        key = self.hierarchy.resolve(name) if self.hierarchy is not None else None
        if key is None or key not in self.hierarchy.leaf_order:
            return float("nan")
        return float(self.leafvals[self.hierarchy.leaf_order.index(key)])

    def current_overlay(self) -> Overlay | None:
        return self.overlays.get(self.overlay_name) if self.overlay_name else None

    def _levels(self, vals: np.ndarray) -> np.ndarray:
        ov = self.current_overlay()
        lo, hi = ov.range() if ov is not None else (0.0, 1.0)
        t = np.clip((np.nan_to_num(vals) - lo) / (hi - lo), 0.0, 1.0)
        return np.where(np.isnan(vals), -1, np.rint(t * LEVELS)).astype(np.int64)

    def _recompute_leafvals(self) -> None:
        ov = self.current_overlay()
        h = self.hierarchy
        if h is None:
            return
        self.leafvals = hier.leaf_values(h, ov.values if ov is not None else {})

    def _recolour(self) -> None:
        """Node colours and colour bars from the overlay (only brushes change: no relayout)."""
        pl = self.placement
        if pl is None:
            return
        h = self.hierarchy
        self.values = hier.node_values(h, self.leafvals, pl.visible)
        levels = self._levels(self.values)
        order = np.argsort(levels, kind="stable")
        uniq, starts = np.unique(levels[order], return_index=True)
        groups = np.split(order, starts[1:])
        self.brush_rows = {int(lv): rows.tolist() for lv, rows in zip(uniq, groups)}
        self.bars = {}
        for i in self.container_rows:
            bar = hier.bar_values(h, self.leafvals, pl.visible[i])
            if bar.size > 1:
                self.bars[i] = self._levels(bar).tolist()
        # text stays readable on dark and light fills: one choice per level, looked up
        self.brush(0)  # the table of the current colormap and theme
        light = self._brushes.get("light")
        if light is None:
            light = np.array([b.color().lightnessF() > 0.55 for b in self._brushes["table"]])
            self._brushes["light"] = light
        fg = self.theme.foreground
        self.text_colours = np.where(levels < 0, fg, np.where(light[levels], "#000000", "#ffffff")).tolist()
        self.item.update()

    def _draw_colorbar(self) -> None:
        ov = self.current_overlay()
        lo, hi = ov.range() if ov is not None else (0.0, 1.0)
        label = (ov.label + (f" ({ov.unit})" if ov.unit else "")) if ov is not None else "no overlay"
        key = (lo, hi, label, id(self._colormap()), id(self.theme), ov is not None)
        if self.colorbar_item is not None and key == getattr(self, "_legend_key", None):
            return  # a slider move that keeps the scale redraws no legend
        self._legend_key = key
        if self.colorbar_item is None:
            self.colorbar_item = pg.ColorBarItem(values=(lo, hi), colorMap=self._colormap(), interactive=False,
                                                 width=12)
            self.colorbar_item.axis.setWidth(60)  # the values and, beside them, the legend's title
            self.canvas.addItem(self.colorbar_item, row=0, col=1)
        self.colorbar_item.setColorMap(self._colormap())
        self.colorbar_item.setLevels((lo, hi))
        self.colorbar_item.axis.setLabel(label)
        for axis in (self.colorbar_item.axis,):
            axis.setPen(pg.mkPen(self.theme.foreground))
            axis.setTextPen(pg.mkPen(self.theme.foreground))
        self.colorbar_item.setVisible(ov is not None)

    # --- overlays ------------------------------------------------------------------------------
    def set_overlay(self, name: str) -> None:
        """Paint ``name`` (one of the registry's; '' for none). A name not computed yet is
        remembered and shown when it arrives."""
        if name and name not in self.overlays:
            self.wanted_overlay = name
            return
        self.wanted_overlay = ""
        if name == self.overlay_name:
            return
        self.overlay_name = name
        self.overlay_box.blockSignals(True)
        self.overlay_box.setCurrentIndex(max(0, self.overlay_box.findText(name)))
        self.overlay_box.blockSignals(False)
        self._recompute_leafvals()
        self._recolour()
        self._draw_colorbar()
        self._show_info(self.hovered or self.selected)
        self.overlayChanged.emit(name)

    def set_overlay_values(self, name: str, values: Mapping[str, float], **kw) -> None:
        """Add or replace an overlay (the registry's ``set``); repaints when it is the shown one."""
        self.overlays.set(name, values, **kw)

    def set_densities(self, densities: Mapping[str, float]) -> None:
        """The kept fraction per layer (layer or parameter names), painted by default."""
        self.overlays.set("kept fraction", densities, label="kept fraction", source="masks", bounds=(0.0, 1.0))
        if not self.overlay_name and not self.wanted_overlay:
            self.set_overlay("kept fraction")

    def _overlays_changed(self, name: str) -> None:
        self._fill_overlay_box()
        if name and name == self.overlay_name:
            self._recompute_leafvals()
            self._recolour()
            self._draw_colorbar()
            self._show_info(self.hovered or self.selected)
        elif name and name == self.wanted_overlay:
            self.set_overlay(name)
        elif not name and self.overlay_name not in self.overlays:
            self.set_overlay("")

    def _fill_overlay_box(self) -> None:
        names = ["(none)", *self.overlays.names()]
        if [self.overlay_box.itemText(i) for i in range(self.overlay_box.count())] == names:
            return
        self.overlay_box.blockSignals(True)
        self.overlay_box.clear()
        self.overlay_box.addItems(names)
        self.overlay_box.setCurrentIndex(max(0, self.overlay_box.findText(self.overlay_name)))
        self.overlay_box.blockSignals(False)

    def _overlay_chosen(self, text: str) -> None:
        self.set_overlay("" if text == "(none)" else text)

    # --- coupled groups --------------------------------------------------------------------------
    def set_groups(self, groups: Iterable) -> None:
        """Coupled channel groups: :class:`CoupledGroup` records, or bare lists of layer or
        parameter names (no reasons)."""
        out = []
        for i, g in enumerate(groups):
            if isinstance(g, CoupledGroup):
                out.append(g)
            else:
                names = [str(m) for m in g]
                layers = list(dict.fromkeys(n.rsplit(".", 1)[0] if n.endswith((".weight", ".bias")) else n
                                            for n in names))
                out.append(CoupledGroup(i, f"group {i}", layers, [(n, "") for n in names]))
        self.groups = out
        self.active_group = None
        self._show_groups()
        self._update_highlight()

    def groups_of(self, layer: str) -> list[CoupledGroup]:
        return [g for g in self.groups if layer in g.layers]

    def show_group(self, group: CoupledGroup) -> None:
        """Highlight every slice of ``group``, opening the containers that hide them."""
        self.active_group = group
        h = self.hierarchy
        keys = [h.resolve(layer) for layer in group.layers]
        for k in keys:
            if k is not None:
                for a in h.ancestors(k):
                    if a not in self.opened:
                        self.open_node(a)
        self._update_highlight()
        kept = f", the mask keeps {group.kept} of {group.size} units" if group.kept is not None else ""
        self.info.setText(f"{group.label}: {len(group.layers)} layers{kept}")

    def _show_groups(self) -> None:
        self.groups_tree.clear()
        layer = self._layer_of(self.selected) if self.selected else ""
        mine = self.groups_of(layer) if layer else []
        for g in mine:
            kept = f" · keeps {g.kept}/{g.size}" if g.kept is not None else (f" · {g.size} units" if g.size else "")
            top = QTreeWidgetItem([f"{g.label}{kept}", ""])
            top.setData(0, Qt.ItemDataRole.UserRole, g.id)
            for param, why in g.reasons:
                child = QTreeWidgetItem([param, why])
                child.setToolTip(1, why)
                top.addChild(child)
            self.groups_tree.addTopLevelItem(top)
        self.groups_tree.setVisible(bool(mine))
        if mine:
            self.groups_tree.expandAll()
            self.groups_tree.resizeColumnToContents(0)

    def _group_clicked(self, item: QTreeWidgetItem, _col: int) -> None:
        top = item if item.parent() is None else item.parent()
        gid = top.data(0, Qt.ItemDataRole.UserRole)
        group = next((g for g in self.groups if g.id == gid), None)
        if group is not None:
            self.show_group(group)

    def _update_highlight(self) -> None:
        pl = self.placement
        if pl is None:
            return
        h = self.hierarchy
        self.selected_row = None
        if self.selected is not None:
            rep = h.representative(self.selected, self.opened) if self.selected in h.nodes else None
            self.selected_row = self.row_of.get(rep) if rep is not None else None
        self.group_rows = []
        path = QPainterPath()
        if self.active_group is not None:
            reps = set()
            for layer in self.active_group.layers:
                k = h.resolve(layer)
                if k is not None:
                    reps.add(h.representative(k, self.opened))
            self.group_rows = sorted(self.row_of[r] for r in reps if r in self.row_of)
            ctrl = hier.edge_curves(Placement(pl.rects, pl.visible, pl.boxes,
                                              [e for e in pl.edges if e[0] in reps and e[1] in reps]))
            path = GraphItem._curves(ctrl)
        self.item.highlight_path = path
        self.item.update()

    # --- a slide's graph -------------------------------------------------------------------------
    def bare(self) -> None:
        """The graph alone: no breadcrumbs, search, overlay choice, group list or info line (a
        slide shows a graph, the lecturer does not browse it)."""
        self.chrome = False
        for w in (self.search, self.overlay_box, self.fit_button, self.groups_tree, self.info):
            w.hide()
        self._update_crumbs()

    def set_notes(self, notes: Mapping[str, str]) -> None:
        """A few words drawn under nodes (layer or node names): why each one is highlighted."""
        h = self.hierarchy
        self.notes = {(h.resolve(k) if h is not None else None) or k: v for k, v in notes.items()}
        self._relayout()  # room under the nodes for them

    def fit_to(self, keys: Iterable[str]) -> None:
        """Zoom to the boxes standing for ``keys`` (the highlighted part), and keep it there as
        the widget resizes."""
        self.focus_keys = list(keys)
        self.auto_fit = True
        self.reset_range()

    def highlighted_layers(self) -> set[str]:
        """The visible nodes drawn highlighted as the active group's members."""
        pl = self.placement
        return {pl.visible[i] for i in self.group_rows} if pl is not None else set()

    def drawn_texts(self) -> list[tuple[str, QRectF]]:
        """Texts of the last paint, in the canvas viewport's pixels."""
        return list(self.item.drawn)

    # --- navigation ----------------------------------------------------------------------------
    chrome = True  # the browsing controls are shown (bare() hides them)
    focus_keys: list[str] | None = None  # the part fitting keeps on screen (None: everything)

    def reset_range(self) -> None:
        """Fit everything on screen (or the part :meth:`fit_to` chose)."""
        if self.placement is None:
            return
        keys = None
        h = self.hierarchy
        if self.focus_keys is not None and h is not None:
            keys = {h.representative(k, self.opened) for k in (h.resolve(k) for k in self.focus_keys)
                    if k is not None}
            keys |= {a for k in keys for a in h.ancestors(k) if a in self.opened and a != ROOT}  # box titles
        x0, y0, x1, y1 = self.placement.bounds(keys)
        x0, y0, x1, y1 = x0 - 0.3, y0 - 0.3, x1 + 0.3, y1 + 0.3
        vb = self.plot.getViewBox()
        w_px, h_px = max(vb.width(), 1.0), max(vb.height(), 1.0)
        # a wide, flat graph sits at the top of the view, not in the middle of empty space
        needed = (x1 - x0) * h_px / w_px
        if needed > y1 - y0:
            y1 = y0 + needed
        vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.0)

    def fit(self) -> None:
        """Fit everything, and keep fitting as blocks open and close (until a pan or zoom)."""
        self.auto_fit = True
        self.reset_range()

    def focus_on(self, key: str) -> None:
        """Zoom so that ``key`` (or the closed box standing for it) fills about a third of the
        view, centred."""
        if self.placement is None:
            return
        rep = key if key in self.placement.rects else self.hierarchy.representative(key, self.opened)
        x, y, w, h = self.placement.rects[rep]
        self.auto_fit = False
        vb = self.plot.getViewBox()
        (vx0, vx1), (vy0, vy1) = vb.viewRange()
        span_x = max(w * 3, min(vx1 - vx0, 12 * hier.NODE_W))
        span_y = max(h * 3, span_x * (vy1 - vy0) / max(vx1 - vx0, 1e-9))
        cx, cy = x + w / 2, y + h / 2
        vb.setRange(xRange=(cx - span_x / 2, cx + span_x / 2), yRange=(cy - span_y / 2, cy + span_y / 2), padding=0)

    def find(self, text: str) -> str | None:
        """Jump to the best match of ``text``: open what hides it (and it, when a container),
        select and centre it. Returns the key found."""
        if self.hierarchy is None:
            return None
        hits = self.hierarchy.find(text)
        if not hits:
            self.info.setText(f"no layer or block named like “{text}”")
            return None
        key = hits[0]

        def show() -> None:
            self.select(key)
            self.focus_on(key)

        node = self.hierarchy.nodes[key]
        if node.is_container:
            self.open_node(key, then=show)
        else:
            for a in self.hierarchy.ancestors(key):
                self.open_node(a)
            show()
        return key

    def select(self, key: str | None, emit: bool = False) -> None:
        """Select a node; ``emit`` (a click here) also lists its coupled groups and tells the
        other views. A selection made elsewhere only marks it, keeping the graph wide."""
        self.selected = key
        self._update_highlight()
        self._update_crumbs()
        if emit:
            self._show_groups()
        else:
            self.groups_tree.hide()
        self._show_info(key)
        if emit and key is not None:
            layer = self._layer_of(key)
            if layer:
                self.layerSelected.emit(layer)

    def select_layer(self, layer: str) -> None:
        """Mark a layer as selected (another view selected it): opens what hides it."""
        if self.hierarchy is None:
            return
        key = self.hierarchy.resolve(layer)
        if key is None or key == self.selected:
            return  # (the echo of a click here: its group list stays open)
        for a in self.hierarchy.ancestors(key):
            node = self.hierarchy.nodes[a]
            if node.kind == "run":
                break  # a folded run stays folded: it is marked as holding the selection
            if a not in self.opened and len(node.children) <= hier.LARGE_CONTAINER:
                self.orders.setdefault(a, hier.order(self.hierarchy, a))
                self.opened.add(a)
        self._relayout()
        self.select(key)

    def _layer_of(self, key: str | None) -> str:
        if key is None or self.hierarchy is None or key not in self.hierarchy.nodes:
            return ""
        n = self.hierarchy.nodes[key]
        return n.layer if n.op == "layer" and n.params > 0 else ""

    def _update_crumbs(self) -> None:
        while self.crumbs.count():
            w = self.crumbs.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.deleteLater()
        h = self.hierarchy
        if h is None or not self.chrome:
            return
        key = self.selected if self.selected in (h.nodes if h else {}) else ROOT
        path = [*h.ancestors(key), key] if key != ROOT else [ROOT]
        for i, k in enumerate(path):
            b = QToolButton(self)
            b.setAutoRaise(True)
            n = h.nodes[k]
            b.setText("model" if k == ROOT else (n.title() if n.kind == "run" else n.label.rsplit(".", 1)[-1]))
            b.setToolTip(f"{k or 'the model'}: open and show it")
            b.clicked.connect(lambda _=False, k=k: self._crumb(k))
            self.crumbs.addWidget(b)
            if i < len(path) - 1:
                self.crumbs.addWidget(QLabel("›", self))
        self.crumbs.addStretch(1)

    def breadcrumb_texts(self) -> list[str]:
        out = []
        for i in range(self.crumbs.count()):
            w = self.crumbs.itemAt(i).widget()
            if isinstance(w, QToolButton):
                out.append(w.text())
        return out

    def _crumb(self, key: str) -> None:
        if self.hierarchy.nodes[key].is_container:
            self.open_node(key, then=lambda: self.focus_on(key))
        self.select(key)

    # --- interaction ---------------------------------------------------------------------------
    def hit(self, scene_pos: QPointF) -> tuple[str | None, bool]:
        """(key under a scene position, True when it is an open box's title strip)."""
        if self.placement is None:
            return None, False
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None, False
        pt = vb.mapSceneToView(scene_pos)
        x, y = pt.x(), pt.y()
        for i, r in enumerate(self.node_rects):
            if r.contains(x, y):
                return self.placement.visible[i], False
        for key in reversed(self.placement.boxes):  # innermost first
            bx, by, bw, bh = self.placement.rects[key]
            if bx <= x <= bx + bw and by <= y <= by + bh:
                return key, y <= by + hier.HEADER
        return None, False

    def scene_pos_of(self, key: str) -> QPointF:
        """Scene position of the centre of a node (or of the box standing for it)."""
        rep = key if key in self.placement.rects else self.hierarchy.representative(
            self.hierarchy.resolve(key) or key, self.opened)
        x, y, w, h = self.placement.rects[rep]
        return self.plot.getViewBox().mapViewToScene(QPointF(x + w / 2, y + h / 2))

    def header_pos_of(self, key: str) -> QPointF:
        """Scene position inside an open box's title strip."""
        x, y, w, h = self.placement.rects[key]
        return self.plot.getViewBox().mapViewToScene(QPointF(x + min(w / 2, 0.6), y + hier.HEADER / 2))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        key, _ = self.hit(scene_pos)
        if key is not None and self.placement is not None and key not in self.row_of:
            key = None  # an open box's body: nothing to describe
        if key == self.hovered:
            return
        self.hovered = key
        self._show_info(key if key is not None else self.selected)
        self.nodeHovered.emit(self._layer_of(key) or (key or ""))

    def _on_mouse_clicked(self, event) -> None:
        key, header = self.hit(event.scenePos())
        if key is None:
            return
        self.canvas.setFocus()
        node = self.hierarchy.nodes[key]
        if event.double():
            if self._layer_of(key):
                self.layerActivated.emit(self._layer_of(key))
            return
        if header:
            self.close_node(key)
            self.select(key)
        elif node.is_container and key not in self.opened:
            self.select(key)
            self.open_node(key)
        elif not node.is_container:
            self.select(key, emit=True)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.canvas:
            kind = event.type()
            if kind == QEvent.Type.KeyPress and self.key_navigate(event.key()):
                return True
            if kind in (QEvent.Type.Wheel, QEvent.Type.MouseMove) and \
                    (kind == QEvent.Type.Wheel or event.buttons() != Qt.MouseButton.NoButton):
                self.auto_fit = False  # the user navigates: the view stays where they put it
        return super().eventFilter(watched, event)

    def key_navigate(self, key: int) -> bool:
        """Enter/Space: open the selected box; Backspace: close it (or the box holding the
        selection); Home/0: fit; +/=, -: zoom; arrows: pan. True if handled."""
        box = self.plot.getViewBox()
        (x0, x1), (y0, y1) = box.viewRange()
        dx, dy = (x1 - x0) * self.PAN_STEP, (y1 - y0) * self.PAN_STEP
        k = Qt.Key
        h = self.hierarchy
        if key not in (k.Key_Return, k.Key_Enter, k.Key_Space, k.Key_Backspace, k.Key_Slash):
            self.auto_fit = key in (k.Key_Home, k.Key_0)  # fit again on Home, free after a pan/zoom
        if key in (k.Key_Return, k.Key_Enter, k.Key_Space):
            if self.selected is not None and h.nodes[self.selected].is_container:
                self.open_node(self.selected)
        elif key == k.Key_Backspace:
            if self.selected is not None:
                target = self.selected if self.selected in self.opened else h.nodes[self.selected].parent
                if target:
                    self.close_node(target)
                    self.select(target)
        elif key in (k.Key_Home, k.Key_0):
            self.reset_range()
        elif key in (k.Key_Plus, k.Key_Equal):
            box.scaleBy((1 / self.ZOOM_STEP, 1 / self.ZOOM_STEP))
        elif key == k.Key_Minus:
            box.scaleBy((self.ZOOM_STEP, self.ZOOM_STEP))
        elif key in (k.Key_Left, k.Key_Right):
            box.translateBy(x=-dx if key == k.Key_Left else dx)
        elif key in (k.Key_Up, k.Key_Down):
            box.translateBy(y=-dy if key == k.Key_Up else dy)
        elif key == k.Key_Slash:
            self.search.setFocus()
        else:
            return False
        return True

    def _show_info(self, key: str | None) -> None:
        h = self.hierarchy
        if key is None or h is None or key not in h.nodes:
            self.info.setText(h.notices[0] if h is not None and h.notices and h.method in ("hierarchy", "hooks")
                              else "")
            return
        n = h.nodes[key]
        ov = self.current_overlay()
        parts = [key or "model"]
        if n.kind == "run":
            parts.append(f"{n.repeat} × {n.module_type} (first {n.first})")
        elif n.module_type:
            parts.append(n.module_type)
        if n.is_container:
            parts.append(f"{n.leaves:,} traced nodes")
        if n.params:
            parts.append(f"params {n.params:,}")
        if ov is not None and len(self.leafvals):
            s = hier.summarise(h, self.leafvals, key)
            if s.count == 1:
                parts.append(f"{ov.label} {s.mean:.4g}")
            elif s.count > 1:
                parts.append(f"{ov.label}: mean {s.mean:.4g}  min {s.min:.4g}  max {s.max:.4g} over {s.count} layers")
        layer = self._layer_of(key)
        if layer and self.groups_of(layer):
            parts.append(f"in {len(self.groups_of(layer))} coupled group(s)")
        self.info.setText("   ".join(parts))

    # --- export --------------------------------------------------------------------------------
    def _paint_to(self, painter: QPainter, size: QSize) -> None:
        x0, y0, x1, y1 = self.placement.bounds()
        pad = 0.3
        x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
        s = min(size.width() / (x1 - x0), size.height() / (y1 - y0))
        painter.fillRect(QRectF(0, 0, size.width(), size.height()), QColor(self.theme.background))
        painter.translate((size.width() - s * (x1 - x0)) / 2, (size.height() - s * (y1 - y0)) / 2)
        painter.scale(s, s)
        painter.translate(-x0, -y0)
        self.item.cull = None
        self.item.paint(painter)

    def export_png(self, path: str, width: int = 1920, height: int = 1080) -> None:
        """The open graph at any size (independent of the window), as PNG."""
        img = QImage(width, height, QImage.Format.Format_ARGB32)
        painter = QPainter(img)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint_to(painter, QSize(width, height))
        painter.end()
        if not img.save(path):
            raise OSError(f"could not write {path}")

    def export_svg(self, path: str, width: int = 1920, height: int = 1080) -> None:
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(path)
        gen.setSize(QSize(width, height))
        gen.setViewBox(QRectF(0, 0, width, height))
        gen.setTitle("model graph")
        painter = QPainter(gen)
        self._paint_to(painter, QSize(width, height))
        painter.end()

    def to_json(self) -> dict:
        """The hierarchy, what is open, the boxes on screen and every overlay's values."""
        h = self.hierarchy
        out = {"hierarchy": h.to_json() if h else None, "opened": sorted(self.opened),
               "overlay": self.overlay_name,
               "overlays": {n: {"label": o.label, "unit": o.unit, "values": o.values}
                            for n, o in self.overlays.overlays.items()}}
        if self.placement is not None:
            out["boxes"] = {k: list(r) for k, r in self.placement.rects.items()}
        for o in out["overlays"].values():
            o["values"] = {str(k): float(v) for k, v in o["values"].items()}
        return out

    def export_json(self, path: str) -> None:
        from visualizer.core.io.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), indent=1))
