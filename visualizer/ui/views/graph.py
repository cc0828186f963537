"""Dependency graph view: layers left to right, colour = density, size = parameters.

All edges are one ``PlotCurveItem`` (connect='pairs') and all nodes one ``ScatterPlotItem``, so a
DenseNet-121-sized graph (about 1000 nodes, a few thousand edges) redraws in milliseconds;
changing densities only re-colours the scatter. Hovering a node highlights its coupled channel
group (nodes and the edges among them); clicking a node emits ``layerSelected(name)``.

Positions come from :mod:`visualizer.core.structure.layout` (run it in a worker for large graphs and
pass the result to :meth:`GraphView.set_graph`); the view computes nothing but pixel distances.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QWidget

from visualizer.core.structure.layout import GraphLayout, edge_segments
from visualizer.ui.views.base import AnalysisView, density_colormap

if TYPE_CHECKING:
    import networkx as nx

PICK_RADIUS_PX = 10.0
LABEL_LIMIT = 80  # above this many nodes, names are shown on hover only
LABEL_BATCH = 8  # labels made per event-loop pass (~1 ms each): a new graph never stalls the window
# Node colours are density quantised to 5% steps and sizes to 2 px steps: pyqtgraph renders one
# symbol image per (size, brush) pair and caches it, so a bounded set of pairs makes re-colouring
# on every slider move a table lookup instead of hundreds of symbol renders.
BRUSH_LEVELS = 20


def node_params(attrs: Mapping) -> int:
    """Parameter count of a node: the first of params / num_params / parameters present."""
    for key in ("params", "num_params", "parameters", "n_params"):
        value = attrs.get(key)
        if isinstance(value, (int, np.integer, float)):
            return int(value)
    return 0


def node_layer(node: Hashable, attrs: Mapping) -> str:
    """The layer name a node stands for (used for densities and ``layerSelected``)."""
    for key in ("layer", "param", "module", "target"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    return str(node)


class GraphView(AnalysisView):
    """The traced graph of a model.

    Signals: ``layerSelected(str)`` on click, ``nodeHovered(str)`` ('' when leaving a node).
    """

    title = "Graph"
    layerSelected = Signal(str)
    nodeHovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.plot = self.add_plot(self.canvas, 0, 0)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.getViewBox().invertY(True)
        self.edges_item = pg.PlotCurveItem(connect="pairs", antialias=False)
        self.group_edges_item = pg.PlotCurveItem(connect="pairs", antialias=True)
        self.nodes_item = pg.ScatterPlotItem(pxMode=True)
        self.group_item = pg.ScatterPlotItem(pxMode=True)
        for item in (self.edges_item, self.group_edges_item, self.nodes_item, self.group_item):
            self.plot.addItem(item)
        self.info = QLabel(self)
        self.info.setObjectName("graphInfo")
        self.body.addWidget(self.info)
        self.colorbar_item: pg.ColorBarItem | None = None
        self._brushes: tuple | None = None
        self._labels: list[pg.TextItem] = []
        self._label_queue: list[int] = []  # nodes whose label is still to be made
        self._label_timer = QTimer(self)
        self._label_timer.setInterval(0)
        self._label_timer.timeout.connect(self._add_label_batch)
        self.graph: nx.DiGraph | None = None
        self.layout_result: GraphLayout | None = None
        self.names: list[str] = []
        self.layers: list[str] = []
        self.params = np.zeros(0)
        self.density = np.zeros(0)
        self.positions = np.zeros((0, 2))
        self.edges = np.zeros((0, 2), dtype=np.int64)
        self._groups: list[np.ndarray] = []
        self._group_of: dict[int, list[int]] = {}
        self.hovered: int | None = None
        self.selected: int | None = None
        # keyboard: Home fits the graph, +/- zoom, arrows pan (a DenseNet-121 graph is read zoomed in)
        self.canvas.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.canvas.setToolTip("wheel or +/- zoom · drag or arrow keys pan · Home: whole graph · "
                               "click a node to select its layer")
        self.canvas.installEventFilter(self)
        self.canvas.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.canvas.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.ready()

    # data -----------------------------------------------------------------------------------
    def set_graph(self, graph: nx.DiGraph, layout: GraphLayout) -> None:
        """Show ``graph`` at the positions of ``layout`` (from core.graph_layout).

        Node attributes read: a parameter count (``params`` / ``num_params``), the layer name
        (``layer`` / ``param`` / ``module`` / ``target``, else the node key), an optional
        ``density`` in [0, 1]. Nodes without parameters (operations) are drawn small and grey.
        """
        if layout.positions.shape[0] != graph.number_of_nodes():
            raise ValueError("layout does not match the graph (different node count)")
        self.graph = graph
        self.layout_result = layout
        self.names = [str(n) for n in layout.nodes]
        attrs = [graph.nodes[n] for n in layout.nodes]
        self.layers = [node_layer(n, a) for n, a in zip(layout.nodes, attrs)]
        self.params = np.array([node_params(a) for a in attrs], dtype=np.float64)
        self.density = np.array(
            [float(a["density"]) if a.get("density") is not None else np.nan for a in attrs]
        )
        self.density[self.params == 0] = np.nan
        self.density[(self.params > 0) & np.isnan(self.density)] = 1.0
        self.positions = layout.positions.astype(np.float64)
        self.edges = layout.edges
        self._groups, self._group_of = [], {}
        self.hovered = self.selected = None
        self.redraw()
        self.reset_range()

    def reset_range(self) -> None:
        """Fit the whole graph (arcs and labels included) into the view."""
        if not self.names:
            return
        pts = np.concatenate([self.positions, edge_segments(self.positions, self.edges)])
        x0, x1 = pts[:, 0].min(), pts[:, 0].max()
        y0, y1 = pts[:, 1].min(), pts[:, 1].max()
        # Fill the view: a one-row chain sits a third of the way down, a branching graph spans
        # its slots; below the lowest row stays room for the slanted labels.
        self.plot.getViewBox().setRange(
            xRange=(x0 - 1, x1 + 1.5), yRange=(y0 - 0.8, y1 + 1.6), padding=0.02
        )

    ZOOM_STEP = 1.25
    PAN_STEP = 0.1  # of the visible range

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.canvas and event.type() == QEvent.Type.KeyPress and self.key_navigate(event.key()):
            return True
        return super().eventFilter(watched, event)

    def key_navigate(self, key: int) -> bool:
        """Home/0: the whole graph; +/=: zoom in; -: zoom out; arrows: pan. True if handled."""
        box = self.plot.getViewBox()
        (x0, x1), (y0, y1) = box.viewRange()
        dx, dy = (x1 - x0) * self.PAN_STEP, (y1 - y0) * self.PAN_STEP
        k = Qt.Key
        if key in (k.Key_Home, k.Key_0):
            self.reset_range()
        elif key in (k.Key_Plus, k.Key_Equal):
            box.scaleBy((1 / self.ZOOM_STEP, 1 / self.ZOOM_STEP))
        elif key == k.Key_Minus:
            box.scaleBy((self.ZOOM_STEP, self.ZOOM_STEP))
        elif key in (k.Key_Left, k.Key_Right):
            box.translateBy(x=-dx if key == k.Key_Left else dx)
        elif key in (k.Key_Up, k.Key_Down):
            # y is inverted (rows grow downwards): Up shows what is above
            box.translateBy(y=-dy if key == k.Key_Up else dy)
        else:
            return False
        return True

    def set_densities(self, densities: Mapping[str, float]) -> None:
        """Re-colour nodes by density; keys are layer names or parameter names (``x.weight``).

        Layers not mentioned keep their density; fast (only the node colours change).
        """
        for i, layer in enumerate(self.layers):
            if self.params[i] == 0:
                continue
            value = densities.get(layer, densities.get(f"{layer}.weight"))
            if value is not None:
                self.density[i] = float(value)
        self._draw_nodes(geometry=False)
        self._show_info(self.hovered if self.hovered is not None else self.selected)

    def set_groups(self, groups: Iterable[Iterable[Hashable]]) -> None:
        """Coupled channel groups, each a collection of node keys or layer names.

        Hovering a member highlights every node of its group(s).
        """
        index = {name: i for i, name in enumerate(self.names)}
        by_layer: dict[str, list[int]] = {}
        for i, layer in enumerate(self.layers):
            by_layer.setdefault(layer, []).append(i)
        self._groups = []
        self._group_of = {}
        for group in groups:
            members: set[int] = set()
            for m in group:
                key = str(m)
                if key in index:
                    members.add(index[key])
                elif key in by_layer:
                    members.update(by_layer[key])
                elif key.rsplit(".", 1)[0] in by_layer:  # a parameter name
                    members.update(by_layer[key.rsplit(".", 1)[0]])
            if len(members) > 0:
                arr = np.array(sorted(members), dtype=np.int64)
                gi = len(self._groups)
                self._groups.append(arr)
                for i in arr:
                    self._group_of.setdefault(int(i), []).append(gi)
        self._draw_highlight()

    def group_members(self, node: int) -> np.ndarray:
        """Rows of every node sharing a coupled group with ``node`` (itself included)."""
        groups = self._group_of.get(node, [])
        if not groups:
            return np.array([node], dtype=np.int64)
        # a set, not np.unique: the first np.unique of a process imports numpy.ma (~20 ms, here
        # on the GUI thread), and a group has a few dozen rows at most
        members = {int(i) for g in groups for i in self._groups[g]} | {node}
        return np.array(sorted(members), dtype=np.int64)

    # drawing ----------------------------------------------------------------------------------
    def redraw(self) -> None:
        if not self.names:
            self.edges_item.setData([], [])
            self.nodes_item.setData([])
            return
        theme = self.theme
        seg = edge_segments(self.positions, self.edges)
        self.edges_item.setData(
            seg[:, 0], seg[:, 1], connect="pairs",
            pen=pg.mkPen(theme.edge, width=max(1.0, theme.line_width / 2.5)),
        )
        self._draw_nodes()
        self._draw_labels()
        self._draw_colorbar()
        self._draw_highlight()

    def node_sizes(self) -> np.ndarray:
        """Marker diameter in pixels: 6 px for operations, 8..30 px by sqrt(parameters)."""
        scale = self.theme.marker_scale
        top = float(self.params.max()) if self.params.size and self.params.max() > 0 else 1.0
        sizes = np.where(self.params > 0, 8.0 + 22.0 * np.sqrt(self.params / top), 6.0)
        return 2.0 * np.rint(sizes * scale / 2.0)

    def _brush_table(self) -> list:
        """BRUSH_LEVELS+1 brushes: density quantised to 1/BRUSH_LEVELS, then the muted one.

        Built once per theme: making a QBrush per node on every slider move is what would cost
        the time (pg.mkBrush is slow), so re-colouring only indexes this table.
        """
        if self._brushes is None or self._brushes[0] is not self.theme:
            colors = density_colormap().map(np.linspace(0, 1, BRUSH_LEVELS + 1), mode="qcolor")
            table = [pg.mkBrush(c) for c in colors] + [pg.mkBrush(self.theme.muted)]
            self._brushes = (self.theme, table)
        return self._brushes[1]

    def node_brushes(self) -> list:
        table = self._brush_table()
        idx = np.where(
            np.isnan(self.density), BRUSH_LEVELS + 1,
            np.rint(np.clip(np.nan_to_num(self.density), 0, 1) * BRUSH_LEVELS),
        ).astype(np.int64)
        return [table[i] for i in idx]

    def _draw_nodes(self, geometry: bool = True) -> None:
        if not self.names:
            return
        if geometry:
            pen = pg.mkPen(self.theme.foreground, width=1.0)
            self.nodes_item.setData(
                pos=self.positions, size=self.node_sizes(), brush=self.node_brushes(), pen=pen,
            )
        else:
            self.nodes_item.setBrush(self.node_brushes())
        if self.selected is not None:
            self._draw_highlight()

    def _draw_labels(self) -> None:
        """Layer names beside their nodes, made LABEL_BATCH per event-loop pass: pyqtgraph's
        TextItems are slow to make, and a DenseNet's forty at once held the GUI thread past the
        50 ms budget (docs/performance.md)."""
        for label in self._labels:
            self.plot.removeItem(label)
        self._labels = []
        self._label_queue = []
        if len(self.names) <= LABEL_LIMIT:
            self._label_queue = [i for i in range(len(self.layers)) if self.params[i] != 0]
        self._add_label_batch()

    def _add_label_batch(self) -> None:
        batch, self._label_queue = self._label_queue[:LABEL_BATCH], self._label_queue[LABEL_BATCH:]
        for i in batch:
            label = pg.TextItem(self.layers[i], color=self.theme.foreground, anchor=(0, 0.5), angle=-35)
            font = label.textItem.font()
            font.setPointSize(max(7, self.theme.font_pt - 2))
            label.setFont(font)
            label.setPos(*self.positions[i])
            self.plot.addItem(label)
            self._labels.append(label)
        if self._label_queue:
            self._label_timer.start()
        else:
            self._label_timer.stop()

    def labels_pending(self) -> bool:
        """True while labels are still being added (screenshots wait for them)."""
        return bool(self._label_queue)

    def _draw_colorbar(self) -> None:
        if self.colorbar_item is None:
            self.colorbar_item = pg.ColorBarItem(
                values=(0.0, 1.0), colorMap=density_colormap(), interactive=False,
                label="density", width=12,
            )
            self.canvas.addItem(self.colorbar_item, row=0, col=1)
        axis = self.colorbar_item.axis
        axis.setPen(pg.mkPen(self.theme.foreground))
        axis.setTextPen(pg.mkPen(self.theme.foreground))

    def _draw_highlight(self) -> None:
        node = self.hovered if self.hovered is not None else self.selected
        if node is None or not self.names:
            self.group_item.setData([])
            self.group_edges_item.setData([], [])
            return
        members = self.group_members(node)
        sizes = self.node_sizes()[members] + 6 * self.theme.marker_scale
        self.group_item.setData(
            pos=self.positions[members], size=sizes, brush=None,
            pen=pg.mkPen(self.theme.highlight, width=self.theme.line_width + 1),
        )
        inside = np.isin(self.edges, members).all(axis=1) if len(self.edges) else np.zeros(0, bool)
        touching = (self.edges == node).any(axis=1) if len(self.edges) else np.zeros(0, bool)
        seg = edge_segments(self.positions, self.edges[inside | touching])
        self.group_edges_item.setData(
            seg[:, 0], seg[:, 1], connect="pairs",
            pen=pg.mkPen(self.theme.highlight, width=self.theme.line_width),
        )

    # interaction ------------------------------------------------------------------------------
    def node_at_scene(self, scene_pos: QPointF) -> int | None:
        """Row of the node under a scene position (within its radius + a few pixels), or None."""
        if not self.names:
            return None
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        # pixel distances: map every node to the scene with the view's affine transform
        p0 = vb.mapViewToScene(QPointF(0.0, 0.0))
        px = vb.mapViewToScene(QPointF(1.0, 0.0))
        py = vb.mapViewToScene(QPointF(0.0, 1.0))
        sx = np.array([px.x() - p0.x(), px.y() - p0.y()])
        sy = np.array([py.x() - p0.x(), py.y() - p0.y()])
        scene = (
            np.array([p0.x(), p0.y()])
            + self.positions[:, :1] * sx
            + self.positions[:, 1:2] * sy
        )
        d = np.hypot(scene[:, 0] - scene_pos.x(), scene[:, 1] - scene_pos.y())
        reach = self.node_sizes() / 2 + PICK_RADIUS_PX / 2
        i = int(np.argmin(d - reach))
        return i if d[i] <= reach[i] else None

    def scene_pos_of(self, name: str) -> QPointF:
        """Scene position of a node (by node key or layer name); for tests and tours."""
        i = self.index_of(name)
        return self.plot.getViewBox().mapViewToScene(QPointF(*self.positions[i]))

    def index_of(self, name: str) -> int:
        if name in self.names:
            return self.names.index(name)
        return self.layers.index(name)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        node = self.node_at_scene(scene_pos)
        if node == self.hovered:
            return
        self.hovered = node
        self._draw_highlight()
        self._show_info(node)
        self.nodeHovered.emit(self.layers[node] if node is not None else "")

    def _on_mouse_clicked(self, event) -> None:
        node = self.node_at_scene(event.scenePos())
        if node is None:
            return
        self.select_layer(self.layers[node])
        self.layerSelected.emit(self.layers[node])

    def select_layer(self, layer: str) -> None:
        """Mark a layer as selected (the workbench calls this when another view selects it)."""
        try:
            self.selected = self.index_of(layer)
        except ValueError:
            base = layer.rsplit(".", 1)[0]
            self.selected = self.layers.index(base) if base in self.layers else None
        self._draw_highlight()
        self._show_info(self.selected)

    def _show_info(self, node: int | None) -> None:
        if node is None:
            self.info.setText("")
            return
        params = int(self.params[node])
        text = f"{self.layers[node]}"
        if self.names[node] != self.layers[node]:
            text += f"  ({self.names[node]})"
        if params:
            text += f"   params {params:,}   density {self.density[node]:.1%}"
        members = self.group_members(node)
        if len(members) > 1:
            text += f"   coupled with {len(members) - 1} node(s)"
        self.info.setText(text)
