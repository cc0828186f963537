"""Shared pieces of the analysis views: a themed QWidget base and plot styling helpers."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from visualizer.ui.lecture.teaching import Theme, current_theme
from visualizer.ui.views.qtfix import pin_singletons

pin_singletons()  # see qtfix: PySide6 6.12 + Python 3.11 leak references of True/False/None


class AnalysisView(QWidget):
    """Base of every analysis view: a caption line on top, themed pyqtgraph plots below.

    Subclasses build their plots in ``__init__`` (adding them to ``self.body``), keep the last
    data given to their ``set_*`` methods, and draw it in :meth:`redraw`, which
    :meth:`apply_theme` calls again so colours, fonts and line widths follow the theme.
    """

    title = "view"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme: Theme = current_theme()
        self.caption = QLabel(self)
        self.caption.setWordWrap(True)
        self.caption.setObjectName("caption")
        self.caption.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.caption)
        self.body = layout
        self._plots: list[pg.PlotItem] = []
        self._widgets: list[pg.GraphicsView] = []

    def ready(self) -> None:
        """Call at the end of a subclass ``__init__``: theme the view now and on every change."""
        from PySide6.QtGui import QGuiApplication

        from visualizer.ui.lecture.teaching import theme_manager

        if QGuiApplication.instance() is not None:
            theme_manager().register(self)
        else:  # pragma: no cover - views need an application anyway
            self.apply_theme(self.theme)

    def set_caption(self, text: str) -> None:
        """Show a short explanation above the plots (presets use it); empty hides it."""
        self.caption.setText(text)
        self.caption.setVisible(bool(text))

    def add_layout_widget(self) -> pg.GraphicsLayoutWidget:
        widget = pg.GraphicsLayoutWidget(self)
        self._widgets.append(widget)
        self.body.addWidget(widget, 1)
        return widget

    def add_plot(self, layout: pg.GraphicsLayoutWidget, row: int, col: int, **kw) -> pg.PlotItem:
        plot = layout.addPlot(row=row, col=col, **kw)
        self._plots.append(plot)
        return plot

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for widget in self._widgets:
            widget.setBackground(theme.background)
        for plot in self._plots:
            style_plot(plot, theme)
        font = QFont(self.caption.font())
        font.setPointSize(max(theme.font_pt, 9))
        self.caption.setFont(font)
        self.caption.setStyleSheet(
            f"QLabel#caption {{ color: {theme.foreground}; background: {theme.background};"
            " padding: 4px; }"
        )
        self.redraw()

    def redraw(self) -> None:  # pragma: no cover - overridden
        pass

    def pen(self, i: int = 0, width_scale: float = 1.0, **kw) -> pg.QtGui.QPen:
        return pg.mkPen(self.theme.color(i), width=self.theme.line_width * width_scale, **kw)


def shrinkable(*boxes, chars: int = 8) -> None:
    """Combo boxes that narrow with their dock down to ``chars`` characters (their full names in
    the drop-down): a view's tool bar must not widen the window past a 1280x720 screen."""
    for box in boxes:
        box.setSizeAdjustPolicy(box.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(chars)


def plain_numbers(axis: pg.AxisItem) -> None:
    """The axis prints its values as they are: "test accuracy (x0.001)" with ticks 500-950
    misreads as 950 for 0.95. (Switching auto-SI off alone keeps the scale of the moment: pyqtgraph
    computes it once more on the way out, so no range may enable a prefix.)"""
    axis.setSIPrefixEnableRanges(())
    axis.enableAutoSIPrefix(False)


def style_plot(plot: pg.PlotItem, theme: Theme) -> None:
    """Axis pens, tick/label fonts and title colour of one PlotItem for ``theme``."""
    font = QFont()
    font.setPointSize(theme.font_pt)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(theme.foreground, width=max(1.0, theme.line_width / 2)))
        axis.setTextPen(pg.mkPen(theme.foreground))
        axis.setStyle(tickFont=font)
        plain_numbers(axis)
        axis.label.setFont(font)
        if axis.labelText:
            axis.setLabel(axis.labelText, units=axis.labelUnits, color=theme.foreground)
    title = plot.titleLabel
    if title.text:
        title.setText(title.text, color=theme.foreground, size=f"{theme.font_pt + 1}pt")
        _free_title_width(plot)
    if plot.legend is not None:
        plot.legend.setLabelTextColor(theme.foreground)
        plot.legend.setLabelTextSize(f"{theme.font_pt}pt")
        for _, label in plot.legend.items:
            label.setText(label.text, color=theme.foreground, size=f"{theme.font_pt}pt")


def set_title(plot: pg.PlotItem, text: str, theme: Theme) -> None:
    plot.setTitle(text, color=theme.foreground, size=f"{theme.font_pt + 1}pt")
    _free_title_width(plot)


def _free_title_width(plot: pg.PlotItem) -> None:
    """A title no longer sets its plot's minimum width (pyqtgraph's LabelItem does, on every
    setText): side by side, the speed charts' titles made the row 90 px wider than the view
    dock of a 1280x720 window, and the last chart ran off its right edge. A title longer than
    its plot now overhangs it, centred."""
    label = plot.titleLabel
    if getattr(label, "_width_freed", False):
        return
    measure = label.updateMin  # LabelItem calls it on every setText and resize

    def update_min() -> None:
        measure()
        label.setMinimumWidth(0)

    label.updateMin = update_min
    label._width_freed = True
    update_min()


def density_colormap() -> pg.ColorMap:
    """Density 0 (all pruned) .. 1 (dense) -> colour (viridis: perceptually uniform, CVD-safe)."""
    return pg.colormap.get("viridis")
