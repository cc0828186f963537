"""Legibility of a slide, read off its items' geometry: every text's height on screen, where it
is, and whether an axis scales its numbers by an SI multiplier ("x0.001").

A lecture slide is legible from the back row when no text is much smaller than the caption and
no two texts overlap. :func:`problems` lists what breaks either rule (tests assert it is empty
for every preset slide at projector sizes); it measures, it never changes the slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRectF
from PySide6.QtGui import QFontMetricsF, QImage, QPainter
from PySide6.QtWidgets import QGraphicsTextItem, QLabel, QWidget

MIN_FRACTION = 0.6  # of the caption's line height: a tick label may be smaller, not tiny


@dataclass(frozen=True)
class Text:
    text: str
    rect: QRectF  # in the root widget's pixels, without the text's document margins
    line_px: float  # height of one line of it on screen
    owner: str  # what drew it: "title", "tick", "label", ...


def _text_item(item: QGraphicsTextItem, view: pg.GraphicsView, root: QWidget, owner: str) -> Text:
    to_view = item.deviceTransform(view.viewportTransform())
    margin = item.document().documentMargin()
    local = item.boundingRect().adjusted(margin, margin, -margin, -margin)
    rect = to_view.mapRect(local).translated(view.mapTo(root, QPoint(0, 0)).toPointF())
    lines = max(1, item.document().lineCount())
    return Text(item.toPlainText(), rect, rect.height() / lines, owner)


def _owner(item) -> str:
    parent = item.parentItem()
    for kind, name in ((pg.AxisItem, "axis label"), (pg.LegendItem, "legend"), (pg.TextItem, "value label")):
        p = parent
        while p is not None:
            if isinstance(p, kind):
                return name
            p = p.parentItem()
    return "title" if isinstance(parent, pg.LabelItem) else "text"


def _ticks(axis: pg.AxisItem, view: pg.GraphicsView, root: QWidget) -> list[Text]:
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    if specs is None:
        return []
    font = axis.style.get("tickFont") or axis.font()
    to_view = axis.deviceTransform(view.viewportTransform())
    offset = view.mapTo(root, QPoint(0, 0)).toPointF()
    line = QFontMetricsF(font).height() * abs(to_view.m22())
    return [Text(text, to_view.mapRect(QRectF(rect)).translated(offset), line, "tick")
            for rect, _flags, text in specs[2]]


def texts(root: QWidget) -> list[Text]:
    """Every visible text of ``root``: its labels and its plots' titles, axis labels, tick
    labels, legends and value labels."""
    out: list[Text] = []
    for label in root.findChildren(QLabel):
        if label.isVisibleTo(root) and label.text().strip():
            rect = QRectF(label.mapTo(root, QPoint(0, 0)).toPointF(), label.size().toSizeF())
            out.append(Text(label.text(), rect, QFontMetricsF(label.font()).height(), "caption"))
    for view in root.findChildren(pg.GraphicsView):
        if not view.isVisibleTo(root):
            continue
        for item in view.scene().items():
            if not item.isVisible() or (item.parentItem() is not None and not item.parentItem().isVisible()):
                continue
            if isinstance(item, QGraphicsTextItem) and item.toPlainText().strip():
                out.append(_text_item(item, view, root, _owner(item)))
            elif isinstance(item, pg.AxisItem) and item.style.get("showValues", True):
                out.extend(_ticks(item, view, root))
            elif hasattr(item, "drawn"):  # a graph paints its titles and notes in pixels
                out.extend(_painted(item.drawn, view, root))
    return out


def _painted(drawn, view: pg.GraphicsView, root: QWidget) -> list[Text]:
    """Texts a graph painted on its viewport, one line each, in the root's pixels."""
    offset = view.viewport().mapTo(root, QPoint(0, 0)).toPointF()
    return [Text(text, QRectF(rect).translated(offset), rect.height(), "graph") for text, rect in drawn]


def si_multipliers(root: QWidget) -> list[str]:
    """Axes whose numbers are scaled by an SI prefix ("x0.001"): a reader sees 950 for 0.95."""
    return [f"{axis.orientation} axis {axis.labelText!r} scaled by {axis.autoSIPrefixScale:g}"
            for view in root.findChildren(pg.GraphicsView) for axis in view.scene().items()
            if isinstance(axis, pg.AxisItem) and axis.isVisible() and axis.autoSIPrefixScale != 1.0]


def _overlap(a: QRectF, b: QRectF) -> float:
    inter = a.intersected(b)
    if inter.isEmpty():
        return 0.0
    return inter.width() * inter.height() / max(1.0, min(a.width() * a.height(), b.width() * b.height()))


def problems(root: QWidget, caption: QLabel, min_fraction: float = MIN_FRACTION) -> list[str]:
    """What makes ``root`` hard to read: texts under ``min_fraction`` of the caption's line
    height, texts cut off at the slide's edge, texts that overlap (by more than a fifth of the
    smaller one), SI multipliers."""
    reference = QFontMetricsF(caption.font()).height()
    found = texts(root)
    out = [f"{t.owner} {t.text!r} is {t.line_px:.0f} px high, under {min_fraction:.0%} of the "
           f"caption's {reference:.0f} px" for t in found if t.line_px < min_fraction * reference]
    bounds = QRectF(root.rect()).adjusted(-2, -2, 2, 2)
    out += [f"{t.owner} {t.text!r} runs off the slide" for t in found
            if t.owner != "caption" and not bounds.contains(t.rect)]
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            if _overlap(a.rect, b.rect) > 0.2:
                out.append(f"{a.owner} {a.text!r} overlaps {b.owner} {b.text!r}")
    return out + si_multipliers(root)
