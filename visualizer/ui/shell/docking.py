"""The main window's dock layout: panels on the left in scroll areas, views tabbed on the right
(lazy ones built when first brought to the front), tab bars that show whole titles, a panel
column that keeps its width on resizes, and the saved layout.

A mixin of :class:`visualizer.ui.shell.window.MainWindow` (it reads the window's panels, views
and settings flags); Qt's event overrides here reach the window through the method order.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QFrame, QScrollArea, QTabBar, QWidget

from visualizer.ui.files import opening as files
from visualizer.ui.shell.settings import settings
from visualizer.ui.shell.view_registry import ViewRegistry
from visualizer.ui.views import available_views
from visualizer.ui.views.analysis import register_themes


def scrolled(panel: QWidget) -> QScrollArea:
    """``panel`` in a frameless scroll area that scrolls only when the dock is too short."""
    area = QScrollArea()
    area.setObjectName(f"scroll-{panel.objectName() or type(panel).__name__}")
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def fit_to_screen(window: QWidget, wanted: QSize) -> QSize:
    """``wanted``, or 85% of the available area of the screen the window opens on when that is
    larger (a 1920x1080 desktop), never more than 95% of it (a 1280x720 projector)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return wanted
    room = screen.availableGeometry().size()
    return wanted.expandedTo(room * 0.85).boundedTo(room * 0.95)



class DockLayout:
    """Docks, tab bars and the saved layout of the main window (a mixin)."""

    def _build_docks(self) -> None:
        """The panels (left, in scroll areas) and the views (right, tabbed; lazy ones as
        placeholders until first shown) as dock widgets, sized: panels at their natural width."""
        self.docks: dict[str, QDockWidget] = {}
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        # in scroll areas: stacked at their full height the panels made the window's minimum
        # height 770 px, taller than a 1280x720 projector
        self._add_dock("model", "Model", scrolled(self.model_panel), left)
        self._add_dock("pruning", "Pruning", scrolled(self.pruning_panel), left)
        self._add_dock("training", "Training", scrolled(self.training_panel), left)
        self.tabifyDockWidget(self.docks["pruning"], self.docks["training"])
        self.docks["pruning"].raise_()

        # views
        self.views = ViewRegistry(self._build_view)
        self.view_specs = available_views()
        first = None
        for vid, spec in self.view_specs.items():
            if spec.lazy:
                widget = QWidget()  # placeholder until the dock first comes to the front
                self.views.defer(vid, widget)
            else:
                widget = spec.factory(self)
                self.views[vid] = widget
            dock = self._add_dock(vid, spec.title, widget, Qt.DockWidgetArea.RightDockWidgetArea)
            if spec.lazy:
                dock.visibilityChanged.connect(lambda visible, v=vid: self._lazy_dock_visible(v, visible))
            if first is None:
                first = dock
            else:
                self.tabifyDockWidget(first, dock)
        if first is not None:
            first.raise_()
        # the panels at their natural width (no horizontal scrolling), the views take the rest
        panels = max(w.sizeHint().width() for w in (self.model_panel, self.pruning_panel, self.training_panel))
        # + the vertical scroll bar + the dock separator, which on xcb came out of the dock's
        # width: the training panel scrolled sideways by 2 px at 1920x1080
        metric = self.style().pixelMetric
        pm = self.style().PixelMetric
        left = panels + metric(pm.PM_ScrollBarExtent) + metric(pm.PM_DockWidgetSeparatorExtent) + 4
        self._left_width = self._default_left = left  # the panel column; kept on resizes
        self._window_width = self.width()
        self.docks["model"].installEventFilter(self)
        self.resizeDocks([self.docks["model"], first], [left, max(self.width() - left, 400)],
                         Qt.Orientation.Horizontal)
        # the pruning panel (criterion, density slider) whole; the model's layer list takes the rest
        pruning = self.pruning_panel.sizeHint().height() + 56  # + title bar and the Pruning|Training tabs
        self.resizeDocks([self.docks["model"], self.docks["pruning"]],
                         [max(self.height() - pruning - 60, 200), pruning], Qt.Orientation.Vertical)

    def _add_dock(self, key: str, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{key}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        self.docks[key] = dock
        self._connect_view(dock, widget)
        dock.dockLocationChanged.connect(self._schedule_tab_bar_cleanup)
        dock.topLevelChanged.connect(self._schedule_tab_bar_cleanup)
        return dock

    @staticmethod
    def _connect_view(dock: QDockWidget, widget: QWidget) -> None:
        if hasattr(widget, "dock_visibility_changed"):  # analysis panels draw when first in front
            dock.visibilityChanged.connect(widget.dock_visibility_changed)

    def _lazy_dock_visible(self, vid: str, visible: bool) -> None:
        if visible and vid in self.views.pending:
            QTimer.singleShot(0, lambda: self._build_if_shown(vid))  # after the tab switch's layout

    def _build_if_shown(self, vid: str) -> None:
        # visibilityChanged(True) also reaches docks behind a tab; their region is empty
        placeholder = self.docks[vid].widget()
        if vid in self.views.pending and placeholder.isVisible() and not placeholder.visibleRegion().isEmpty():
            self.views.materialize(vid)

    def _build_view(self, vid: str) -> QWidget:
        """Build a deferred view (ViewRegistry) and put it in its dock, themed like the rest."""
        widget = self.view_specs[vid].factory(self)
        dock = self.docks[vid]
        old = dock.widget()
        dock.setWidget(widget)
        if old is not None:
            old.deleteLater()
        self._connect_view(dock, widget)
        if getattr(self, "teaching", None) is not None:  # views built after install_analysis
            register_themes(widget, self.teaching.manager)
        return widget

    def _schedule_tab_bar_cleanup(self, *_args) -> None:
        QTimer.singleShot(0, self.hide_stale_tab_bars)
        QTimer.singleShot(0, self.unelide_tab_bars)

    def unelide_tab_bars(self) -> None:
        """Dock tabs show their whole titles and scroll when they do not fit.

        Qt elides them by default: at 1280x720 the nine view tabs read 'G…', 'S…', 'L…', which
        a lecturer cannot find a view by. Called again after every regrouping, since Qt makes a
        new tab bar for each new tab group."""
        for bar in self.findChildren(QTabBar):
            if bar.parent() is self:
                bar.setElideMode(Qt.TextElideMode.ElideNone)
                bar.setUsesScrollButtons(True)

    def hide_stale_tab_bars(self) -> int:
        """Hide dock tab bars Qt left visible after regrouping; returns how many it hid.

        Qt 6.12's main-window layout leaves a retired tab bar shown when a second tab group is
        formed (reproduced with plain QDockWidgets: two tabified groups give three visible bars),
        drawn over the status bar. A bar is stale when it is empty or every title it shows is
        also in a bar with more tabs (the live group)."""
        bars = [b for b in self.findChildren(QTabBar) if b.parent() is self and b.isVisible()]
        titles = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
        hidden = 0
        for bar in bars:
            stale = not titles[bar] or any(
                other is not bar and len(titles[other]) > len(titles[bar]) and titles[bar] <= titles[other]
                for other in bars)
            if stale:
                bar.hide()
                hidden += 1
        return hidden

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt API)
        # the model dock resized with a mouse button down while the window kept its width:
        # the person dragged the separator; that is the column width to keep
        if event.type() == QEvent.Type.Resize and obj is self.docks.get("model") \
                and QGuiApplication.mouseButtons() & Qt.MouseButton.LeftButton \
                and self.width() == self._window_width and not obj.isFloating():
            self._left_width = obj.width()
        return super().eventFilter(obj, event)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Without a central widget to absorb it, QMainWindow shares a resize out between the
        left and right dock areas; the panels keep their column and the views take the rest."""
        super().resizeEvent(event)
        self._window_width = self.width()
        QTimer.singleShot(0, self._keep_left_width)

    def fit_pruning_panel(self) -> None:
        """The pruning panel (criterion, density slider) whole, the layer list giving way: a
        layout saved on a large screen and restored on a 1280x720 projector left the slider
        scrolled out of sight under a tall layer list."""
        model = self.docks["model"]
        group = next((d for d in (self.docks["pruning"], self.docks["training"]) if d.isVisible()), None)
        if group is None or not model.isVisible() or model.isFloating() or group.isFloating() \
                or model.x() != group.x():
            return
        want = self.pruning_panel.sizeHint().height() + 24
        total = model.height() + group.height()
        if group.height() < want and total - want >= 200:
            self.resizeDocks([model, group], [total - want, want], Qt.Orientation.Vertical)

    def _keep_left_width(self) -> None:
        model = self.docks["model"]
        if model.isVisible() and not model.isFloating() and model.width() != self._left_width:
            # both sides named: QMainWindow ignores a one-sided resizeDocks here
            views = next((d for vid, d in self.docks.items() if vid in self.views
                          and d.isVisible() and not d.isFloating()), None)
            if views is not None:
                self.resizeDocks([model, views], [self._left_width, max(self.width() - self._left_width, 1)],
                                 Qt.Orientation.Horizontal)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        QTimer.singleShot(0, self._keep_left_width)
        QTimer.singleShot(0, self.fit_pruning_panel)
        self._schedule_tab_bar_cleanup()
        if self._redock_pending:  # once shown, the restored floating docks have their real places
            self._redock_pending = False
            QTimer.singleShot(0, lambda: files.redock_stray_docks(self))

    def _restore_settings(self) -> None:
        st = settings()
        geo = st.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        layout = st.value("windowState")
        if layout is not None:
            self.restoreState(layout)
            width = st.value("panelWidth")
            if width is not None and int(width) > 0:
                self._left_width = int(width)
            self._redock_pending = True

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        self._left_width = self._default_left
        self._keep_left_width()

    def save_settings(self) -> None:
        if not self.persist_settings:
            return
        st = settings()
        st.setValue("geometry", self.saveGeometry())
        st.setValue("panelWidth", self._left_width)
        st.setValue("windowState", self.saveState())
        st.sync()
