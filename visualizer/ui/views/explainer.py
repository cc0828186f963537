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
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QWidget

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
        self.result = r
        e = r.explanation
        where = f"{html.escape(e.layer)}[{', '.join(map(str, e.index))}]"
        self.lines = []
        if r.note:
            self.lines.append(f"<i>{html.escape(r.note)}</i>")
        pick = (f" (kept by {e.criterion}, removed by {r.contrast}: where the two disagree)"
                if r.contrast else "")
        self.lines.append(f"<b>{html.escape(r.model)}</b>, weight <b>{where}</b>{html.escape(pick)}")
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
        plot.setLabel("bottom", f"{'|W|·‖X‖' if e.scope == 'row' else e.criterion + ' score'} of {e.layer}")
        plot.setLabel("left", "weights")
        set_title(plot, f"every score of the layer, cut at {e.density:.0%}", self.theme)


class CouplingView(SteppedView):
    """The slices one channel takes with it, with the reason for each; then the shapes before and
    after the structured pruner removes it (a table: the text is the figure here)."""

    title = "Coupling explainer"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.has_figure = False
        self.canvas.hide()
        self.result = None
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
        same = "equals" if r.same_output else "does NOT equal"
        layers = [f"{html.escape(x['param'])} {x['before']} → {x['after']}" for x in r.shapes
                  if len(x["before"]) >= 2]
        vectors = [x for x in r.shapes if len(x["before"]) < 2]
        owners = sorted({x["param"].rsplit(".", 1)[0] for x in vectors})
        self.lines.append("<b>Pruned</b>: " + "; ".join(layers)
                          + (f"; and {len(vectors)} per-channel vectors of {len(owners)} norm layers lose one "
                             "entry" if vectors else "")
                          + f". The smaller model's output {same} the masked model's.")
        self.shown = 1
        self.redraw()
