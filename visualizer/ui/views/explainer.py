"""The explainers' slides: a criterion's score of one weight step by step (then the layer's score
histogram with the cut), and the slices that go with one pruned channel (then the shapes before
and after). Space reveals the next step (presentation mode asks :meth:`advance` before it turns
the slide); the numbers are core's (visualizer.core.lecture.explainers), drawn as they are.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QGraphicsRectItem, QHBoxLayout, QLabel, QScrollArea, QWidget

from visualizer.ui.views.base import AnalysisView, set_title


class SteppedView(AnalysisView):
    """A view whose content is revealed one step at a time (``steps`` lines, then the figure)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout()
        self.text = QLabel(self)
        self.text.setObjectName("explainerSteps")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.canvas = pg.GraphicsLayoutWidget(self)
        self._widgets.append(self.canvas)
        # the steps scroll rather than grow the slide: a long one must not push the window past
        # the screen (a taller window scaled every font of the presentation with it)
        self.scroll = QScrollArea(self)
        self.scroll.setWidget(self.text)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # the theme's background shows through (a default viewport painted white text on grey)
        self.scroll.setStyleSheet("QScrollArea, QScrollArea > QWidget > QWidget { background: transparent; }")
        row.addWidget(self.scroll, 1)
        row.addWidget(self.canvas, 1)
        self.body.addLayout(row, 1)
        self.lines: list[str] = []  # HTML, one per step
        self.shown = 0  # steps revealed; with a figure, len(lines) + 1 reveals it too
        self.has_figure = True

    @property
    def total(self) -> int:
        return len(self.lines) + int(self.has_figure)

    def advance(self) -> bool:
        """Reveal the next step; False when everything is shown (the slide may turn)."""
        if self.shown >= self.total:
            return False
        self.shown += 1
        self.redraw()
        return True

    def retreat(self) -> bool:
        """Hide the last step; False at the first one."""
        if self.shown <= 1:
            return False
        self.shown -= 1
        self.redraw()
        return True

    def show_all(self) -> None:
        self.shown = self.total
        self.redraw()

    def redraw(self) -> None:
        theme = self.theme
        shown = self.lines[: self.shown]
        more = "" if self.shown >= self.total else f"<p style='color:{theme.muted}'>Space: next step</p>"
        self.text.setText("".join(f"<p>{line}</p>" for line in shown) + more)
        self.canvas.setVisible(self.has_figure and self.shown >= self.total)
        self.draw_figure()

    def draw_figure(self) -> None:  # pragma: no cover - every subclass draws its own
        pass


class CriterionExplainerView(SteppedView):
    """One weight's score: the numbers, the formula, the substitution, the rank and the cut;
    then the layer's score histogram with the cut and this weight marked."""

    title = "Criterion explainer"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.add_plot(self.canvas, 0, 0)
        self.result = None
        self.ready()

    def set_result(self, r) -> None:
        """The explanation's steps from the first; a partial one (the weight's numbers still
        computed) shows its pick and the layer's histogram at once."""
        self.result = r
        e = r.explanation
        where = f"{html.escape(r.layer)}[{', '.join(map(str, r.index))}]"
        self.lines = []
        if r.note:
            self.lines.append(f"<i>{html.escape(r.note)}</i>")
        pick = (f" (kept by {r.criterion}, removed by {r.contrast}: where the two disagree)"
                if r.contrast else "")
        self.lines.append(f"<b>{html.escape(r.model)}</b>, weight <b>{where}</b>{html.escape(pick)}")
        if e is None:
            self.lines.append(f"<i>scoring this weight by {html.escape(r.criterion)}…</i>")
            self.show_all()
            return
        for title, text in e.steps:
            self.lines.append(f"<b>{html.escape(title)}</b>: {html.escape(text)}")
        self.shown = 1
        self.redraw()

    def draw_figure(self) -> None:
        plot, r = self.plot, self.result
        plot.clear()
        if r is None:
            return
        e = r.explanation
        widths = np.diff(r.edges)
        plot.addItem(pg.BarGraphItem(x0=r.edges[:-1], width=widths, height=r.counts,
                                     brush=pg.mkBrush(self.theme.color(0)), pen=pg.mkPen(None)))
        wanda = r.criterion == "wanda"
        plot.setLabel("bottom", f"{'|W|·‖X‖' if wanda else r.criterion + ' score'} of {r.layer}")
        plot.setLabel("left", "weights")
        if e is None:
            set_title(plot, "every score of the layer", self.theme)
            return
        font = QFont()
        font.setPointSize(self.theme.font_pt)
        # Wanda's histogram is of S = |W|·‖X‖ (its score is the place in the row) and its cut the row's
        marks = [(e.quantities.get("S", e.score), "this weight", 2, 0.75, Qt.PenStyle.DashLine)]
        if e.threshold is not None:
            marks.append((e.threshold, "its row's cut" if e.scope == "row" else "cut", 1, 0.9,
                          Qt.PenStyle.SolidLine))
        for x, text, colour, where, style in marks:
            line = pg.InfiniteLine(pos=x, angle=90, label=text,
                                   pen=pg.mkPen(self.theme.color(colour), width=self.theme.line_width * 1.5,
                                                style=style),
                                   labelOpts={"position": where, "color": self.theme.foreground})
            line.label.setFont(font)  # the theme's size: in a lecture, the back row reads it
            plot.addItem(line)
        set_title(plot, f"every score of the layer, cut at {e.density:.0%}", self.theme)


class CouplingView(SteppedView):
    """The slices one channel takes with it, with the reason for each: on the dependency graph
    from the first step (the group's layers highlighted, each node labelled with why it is
    coupled), then in words; last the shapes before and after the structured pruner removes it,
    and the layers' heatmaps with the slice marked."""

    title = "Coupling explainer"

    def __init__(self, parent: QWidget | None = None) -> None:
        from visualizer.ui.views.graph import GraphView

        super().__init__(parent)
        self.result = None
        # the app's graph view, bare: the whole width above the steps (a layered graph is wide)
        self.graph = GraphView(self)
        self.graph.bare()
        self.graph.canvas.setToolTip("")
        self.body.insertWidget(self.body.count() - 1, self.graph, 1)
        self.body.setStretch(self.body.count() - 1, 1)
        self.ready()

    def set_result(self, r) -> None:
        self.result = r
        self.lines = [f"<b>{html.escape(r.model)}</b>: channel {r.unit} of <b>{html.escape(r.group.root)}</b> "
                      f"({r.group.size} channels in its group)"]
        by_reason: dict[str, list[str]] = {}
        for m in r.members:
            by_reason.setdefault(m["reason"], []).append(f"{m['param']}[{m['index']}] (dim {m['dim']})")
        for reason, where in by_reason.items():
            self.lines.append(f"<b>{html.escape(reason)}</b>: {html.escape(', '.join(where))}")
        self.has_figure = r.complete
        if not r.complete:  # the group is known, the unit still being removed
            self.lines.append("<i>removing the channel: the shapes come next…</i>")
            self.show_graph(r)
            self.show_all()
            return
        same = "equals" if r.same_output else "does NOT equal"
        layers = [f"{html.escape(x['param'])} {x['before']} → {x['after']}" for x in r.shapes
                  if len(x["before"]) >= 2]
        vectors = [x for x in r.shapes if len(x["before"]) < 2]
        owners = sorted({x["param"].rsplit(".", 1)[0] for x in vectors})
        self.lines.append("<b>Pruned</b>: " + "; ".join(layers)
                          + (f"; and {len(vectors)} per-channel vectors of {len(owners)} norm layers lose one "
                             "entry" if vectors else "")
                          + f". The smaller model's output {same} the masked model's.")
        self.show_graph(r)
        self.shown = 1
        self.redraw()

    def show_graph(self, r) -> None:
        """The group on core's cut-down graph: every container open, the group's layers
        highlighted, each node's reason under it, zoomed to them."""
        from visualizer.ui.views.graph import CoupledGroup

        self.graph.setVisible(r.hierarchy is not None)
        if r.hierarchy is None:
            return
        self.graph.set_hierarchy(r.hierarchy, opened=r.hierarchy.containers())
        self.graph.show_group(CoupledGroup(r.group.id, f"channel {r.unit} of {r.group.root}", list(r.layers),
                                           [(m["param"], m["reason"]) for m in r.members], r.group.size))
        self.graph.set_notes(r.tags)
        self.graph.fit_to([*r.layers, *r.tags])

    def draw_figure(self) -> None:
        """Each layer's |W| (out x in·k·k) with the removed row or columns outlined."""
        self.canvas.clear()
        r = self.result
        if r is None or not r.pictures:
            return
        colour = self.theme.color(1)
        cols = 2 if len(r.pictures) > 2 else 1
        for k, pic in enumerate(r.pictures):
            self.canvas.addLabel(pic["param"].removesuffix(".weight"), row=2 * (k // cols), col=k % cols,
                                 color=self.theme.foreground, size=f"{self.theme.font_pt}pt")
            box = self.canvas.addViewBox(row=2 * (k // cols) + 1, col=k % cols)
            box.setAspectLocked(False)
            box.invertY(True)
            box.setMouseEnabled(False, False)
            image = pic["image"]
            box.addItem(pg.ImageItem(image.T, levels=(0.0, 1.0)))
            kind, first, end = pic["span"]
            rows, columns = image.shape
            x, y, w, h = (0, first, columns, end - first) if kind == "row" else (first, 0, end - first, rows)
            mark = QGraphicsRectItem(x, y, w, h)
            mark.setPen(pg.mkPen(colour, width=3))
            mark.setBrush(pg.mkBrush(QColor(colour).red(), QColor(colour).green(), QColor(colour).blue(), 90))
            box.addItem(mark)
            box.setRange(xRange=(0, columns), yRange=(0, rows), padding=0.02)
