"""Teaching mode and themes: what makes the app usable in a lecture hall.

* Themes: light and dark follow the system (``QStyleHints.colorScheme`` on Qt >= 6.5, the
  palette's window lightness otherwise); a :class:`ThemeManager` tells every registered view
  (anything with ``apply_theme(theme)``) when the scheme or the teaching switch changes, so
  pyqtgraph backgrounds, axes and curves follow the theme.
* Teaching mode, one switch (F11): large fonts and thick lines, a high-contrast palette, the
  window full screen showing a single view, and keyboard shortcuts to step the density slider,
  step IMP rounds and switch views. All shortcuts are listed in :data:`SHORTCUTS` and in the
  Help > Shortcuts dialog (F1).

The controller only talks to the window through small hooks (a slider, callbacks, the window's
dock widgets), so it works with any QMainWindow and holds no numerics.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QFont, QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractSlider,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QMainWindow,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

# --------------------------------------------------------------------------------------------
# Themes


@dataclass(frozen=True)
class Theme:
    """Colours and sizes every view draws with.

    series: colours for overlaid series (dense, masked, ...), in order.
    muted: colour of removed / inactive things (pruned branches, dead nodes).
    highlight: colour of the hovered / selected item.
    line_width: pen width of curves in pixels; font_pt: axis and caption font size;
    marker_scale: multiplies marker and node sizes.
    """

    name: str
    background: str
    foreground: str
    series: tuple[str, ...]
    muted: str
    highlight: str
    edge: str
    line_width: float = 2.0
    font_pt: int = 10
    marker_scale: float = 1.0
    high_contrast: bool = False

    @property
    def dark(self) -> bool:
        return self.name.startswith("dark")

    def color(self, i: int) -> str:
        """The i-th series colour (cycles)."""
        return self.series[i % len(self.series)]


# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
LIGHT = Theme(
    name="light",
    background="#ffffff",
    foreground="#202020",
    series=("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"),
    muted="#b0b0b0",
    highlight="#E69F00",
    edge="#9a9a9a",
)
DARK = Theme(
    name="dark",
    background="#1e1e1e",
    foreground="#e6e6e6",
    series=("#56B4E9", "#E69F00", "#2bd19a", "#f08cc8", "#F0E442", "#ff7b54"),
    muted="#5a5a5a",
    highlight="#F0E442",
    edge="#6e6e6e",
)


def teaching_variant(theme: Theme) -> Theme:
    """Large fonts, thick lines, bigger markers and a high-contrast palette (pure black/white)."""
    if theme.dark:
        return replace(
            theme, name="dark-teaching", background="#000000", foreground="#ffffff",
            series=("#4fc3ff", "#ffb000", "#00e08a", "#ff6ec7", "#ffff40", "#ff5a36"),
            edge="#a0a0a0", line_width=5.0, font_pt=20, marker_scale=1.8, high_contrast=True,
        )
    return replace(
        theme, name="light-teaching", background="#ffffff", foreground="#000000",
        series=("#0050a0", "#c03000", "#007050", "#a0006a", "#a06000", "#3070ff"),
        edge="#505050", line_width=5.0, font_pt=20, marker_scale=1.8, high_contrast=True,
    )


def system_is_dark(app: QGuiApplication | None = None) -> bool:
    """Whether the system asks for a dark scheme (Qt >= 6.5), else the palette's lightness."""
    app = app or QGuiApplication.instance()
    if app is None:
        return False
    hints = app.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        value = scheme()
        if value == Qt.ColorScheme.Dark:
            return True
        if value == Qt.ColorScheme.Light:
            return False
    window = app.palette().color(QPalette.ColorRole.Window)
    return window.lightness() < 128


class ThemeManager(QObject):
    """The current theme; follows the system scheme and the teaching switch.

    ``scheme`` is 'system', 'light' or 'dark'. Views register with :meth:`register` (they need an
    ``apply_theme(theme)`` method) and are re-themed on every change; ``changed`` is emitted too.
    """

    changed = Signal(object)

    def __init__(self, app: QGuiApplication | None = None, scheme: str = "system") -> None:
        super().__init__()
        self._app = app or QGuiApplication.instance()
        self._scheme = scheme
        self._teaching = False
        self._views: list[weakref.ref] = []
        hints = self._app.styleHints() if self._app is not None else None
        if hints is not None and hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(lambda *_: self._emit())

    @property
    def scheme(self) -> str:
        return self._scheme

    def set_scheme(self, scheme: str) -> None:
        if scheme not in ("system", "light", "dark"):
            raise ValueError(f"scheme must be system, light or dark, got {scheme!r}")
        self._scheme = scheme
        self._emit()

    @property
    def teaching(self) -> bool:
        return self._teaching

    def set_teaching(self, on: bool) -> None:
        self._teaching = bool(on)
        self._emit()

    def theme(self) -> Theme:
        dark = system_is_dark(self._app) if self._scheme == "system" else self._scheme == "dark"
        base = DARK if dark else LIGHT
        return teaching_variant(base) if self._teaching else base

    def register(self, view: QObject) -> None:
        """Theme ``view`` now and on every change (forgotten when the view is destroyed)."""
        self._views.append(weakref.ref(view))
        view.apply_theme(self.theme())

    def _emit(self) -> None:
        theme = self.theme()
        alive = []
        for ref in self._views:
            view = ref()
            if view is None:
                continue
            try:
                view.apply_theme(theme)
            except RuntimeError:  # the C++ object is already gone
                continue
            alive.append(ref)
        self._views = alive
        self.changed.emit(theme)


_MANAGER: ThemeManager | None = None


def theme_manager() -> ThemeManager:
    """The application's ThemeManager (created on first use; needs a QApplication)."""
    global _MANAGER
    if _MANAGER is None or _MANAGER._app is not QGuiApplication.instance():
        _MANAGER = ThemeManager()
    return _MANAGER


def current_theme() -> Theme:
    """The theme a new view should draw with (light when no application exists yet)."""
    if QGuiApplication.instance() is None:
        return LIGHT
    return theme_manager().theme()


# --------------------------------------------------------------------------------------------
# Shortcuts


@dataclass(frozen=True)
class Shortcut:
    action: str  # id
    keys: tuple[str, ...]  # QKeySequence strings
    text: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("teaching", ("F11", "Ctrl+Shift+T"), "Teaching mode on/off (large, high contrast, full screen)"),
    Shortcut("leave", ("Esc",), "Leave teaching mode"),
    Shortcut("denser", ("PgUp", "+"), "Density slider one step up (keep more weights)"),
    Shortcut("sparser", ("PgDown", "-"), "Density slider one step down (prune more)"),
    Shortcut("round_next", ("Alt+Right", "]"), "Next IMP round"),
    Shortcut("round_prev", ("Alt+Left", "["), "Previous IMP round"),
    Shortcut("view_next", ("Ctrl+Tab", "Ctrl+PgDown"), "Next view"),
    Shortcut("view_prev", ("Ctrl+Shift+Tab", "Ctrl+PgUp"), "Previous view"),
    *(Shortcut(f"view_{i}", (f"Ctrl+{i}",), f"Show view {i}") for i in range(1, 10)),
    Shortcut("help", ("F1",), "This list of shortcuts"),
)


class ShortcutsDialog(QDialog):
    """Help > Shortcuts: a two-column table of keys and what they do."""

    def __init__(self, parent: QWidget | None = None, actions: dict[str, QAction] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        native = QKeySequence.SequenceFormat.NativeText
        for row, sc in enumerate(SHORTCUTS):
            if actions is not None and sc.action in actions:  # what is really bound
                seqs = actions[sc.action].shortcuts()
            else:
                seqs = [QKeySequence(k) for k in sc.keys]
            keys = ", ".join(seq.toString(native) for seq in seqs) or (
                # the window's own action holds the key (Esc cancels jobs, then leaves)
                ", ".join(QKeySequence(k).toString(native) for k in sc.keys) + " (no job running)")
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(sc.text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(560, 420)


# --------------------------------------------------------------------------------------------
# Teaching controller


class TeachingMode(QObject):
    """Installs the teaching switch and the lecture shortcuts on a QMainWindow.

    Hooks (all optional, looked up on the window when not given):
    slider: the density slider (a QAbstractSlider; default: the window's child named
        ``densitySlider``, else its first QAbstractSlider); stepped by its single step, a
        larger value meaning a higher density.
    step_density: callable(+1 denser / -1 sparser) used instead of the slider when given (for
        sliders whose value runs the other way, like the workbench's log slider).
    step_round: callable(+1/-1) stepping the IMP round shown; default ``window.step_imp_round``.
    views: the switchable views, as a QTabWidget or a list of QDockWidgets (default: the
        window's dock widgets in creation order, plus the central QTabWidget's tabs if any).
    strip: callable(parent) -> QWidget, the compact controls shown at the bottom while teaching
        mode hides the panels (the workbench's: model, criterion, density), so nothing needs
        leaving it; the view-stepping buttons are added beside it.

    Teaching mode on: the theme switches to its teaching variant (fonts, lines, contrast), the
    application font grows, the window goes full screen and only the current view stays
    visible (docks that are not views, like the workbench's panels, are hidden). Off: everything is restored exactly (window state, dock layout, font).
    """

    toggled = Signal(bool)
    viewChanged = Signal(int)

    def __init__(
        self,
        window: QMainWindow,
        manager: ThemeManager | None = None,
        *,
        slider: QAbstractSlider | None = None,
        step_density: Callable[[int], None] | None = None,
        step_round: Callable[[int], None] | None = None,
        views: QTabWidget | list[QDockWidget] | None = None,
        strip: Callable[[QWidget], QWidget] | None = None,
    ) -> None:
        super().__init__(window)
        self._strip_factory = strip
        self.strip_bar: QToolBar | None = None  # made on the first switch-on
        self.window = window
        self.manager = manager or theme_manager()
        self._slider = slider
        self._step_density = step_density
        self._step_round = step_round
        self._views = views
        self._active = False
        self._saved: dict = {}
        self._current = 0
        self.actions: dict[str, QAction] = {}
        self._install_actions()

    # hooks ---------------------------------------------------------------------------------
    def slider(self) -> QAbstractSlider | None:
        if self._slider is not None:
            return self._slider
        named = self.window.findChild(QAbstractSlider, "densitySlider")
        if named is not None:
            return named
        sliders = self.window.findChildren(QAbstractSlider)
        sliders = [s for s in sliders if s.objectName() != "qt_scrollarea_hcontainer"]
        return next((s for s in sliders if s.maximum() > s.minimum()), None)

    def views(self) -> list[QWidget]:
        """The switchable views in order (dock widgets or tab pages)."""
        if isinstance(self._views, QTabWidget):
            return [self._views.widget(i) for i in range(self._views.count())]
        if self._views is not None:
            return list(self._views)
        docks = [d for d in self.window.findChildren(QDockWidget) if d.parent() is self.window]
        central = self.window.centralWidget()
        if isinstance(central, QTabWidget):
            return [central.widget(i) for i in range(central.count())] + docks
        return docks

    # actions --------------------------------------------------------------------------------
    def _install_actions(self) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "teaching": self.toggle,
            "leave": lambda: self.set_active(False),
            "denser": lambda: self.step_slider(+1),
            "sparser": lambda: self.step_slider(-1),
            "round_next": lambda: self.step_round(+1),
            "round_prev": lambda: self.step_round(-1),
            "view_next": lambda: self.show_view(self._current + 1),
            "view_prev": lambda: self.show_view(self._current - 1),
            "help": self.show_shortcuts,
        }
        for i in range(1, 10):
            handlers[f"view_{i}"] = lambda i=i: self.show_view(i - 1)
        taken = {
            seq.toString()
            for a in self.window.findChildren(QAction)
            for seq in a.shortcuts()
        }
        for sc in SHORTCUTS:
            action = QAction(sc.text, self.window)
            # a key the window already uses (e.g. Esc = cancel jobs) would make both ambiguous
            keys = [QKeySequence(k) for k in sc.keys if QKeySequence(k).toString() not in taken]
            action.setShortcuts(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(handlers[sc.action])
            if sc.action == "teaching":
                action.setText("&Teaching mode")
                action.setCheckable(True)
            self.window.addAction(action)
            self.actions[sc.action] = action
        self.actions["help"].setText("&Shortcuts...")
        self.actions["leave"].setEnabled(False)

    def install_menus(self) -> None:
        """Add View > Teaching mode and Help > Shortcuts to the window's menu bar."""
        bar = self.window.menuBar()
        view_menu = _find_menu(bar, "&View") or bar.addMenu("&View")
        view_menu.addAction(self.actions["teaching"])
        help_menu = _find_menu(bar, "&Help") or bar.addMenu("&Help")
        help_menu.addAction(self.actions["help"])

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.window, self.actions)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def step_slider(self, direction: int) -> None:
        if self._step_density is not None:
            self._step_density(direction)
            return
        slider = self.slider()
        if slider is None:
            return
        slider.triggerAction(
            QAbstractSlider.SliderAction.SliderSingleStepAdd
            if direction > 0
            else QAbstractSlider.SliderAction.SliderSingleStepSub
        )

    def step_round(self, direction: int) -> None:
        hook = self._step_round or getattr(self.window, "step_imp_round", None)
        if hook is not None:
            hook(direction)

    def show_view(self, index: int) -> None:
        views = self.views()
        if not views:
            return
        self._current = index % len(views)
        target = views[self._current]
        if isinstance(self._views, QTabWidget):
            self._views.setCurrentIndex(self._current)
        elif isinstance(self.window.centralWidget(), QTabWidget) and not isinstance(
            target, QDockWidget
        ):
            self.window.centralWidget().setCurrentWidget(target)
        if isinstance(target, QDockWidget):
            if self._active:
                for v in views:
                    if isinstance(v, QDockWidget):
                        v.setVisible(v is target)
            else:
                target.show()
            target.raise_()
        self.viewChanged.emit(self._current)

    def _hide_panels(self) -> None:
        """Hide the window's docks that are not switchable views (the workbench's Model,
        Pruning and Training panels): laid out for 1.8x type they no longer fit their column
        (at 1280x720 it was clipped and scrolled sideways) and the view is what the room
        reads. The saved dock state brings them back when teaching mode is switched off."""
        views = self.views()
        for dock in self.window.findChildren(QDockWidget):
            if dock.parent() is self.window and dock not in views:
                dock.hide()

    def _ensure_strip(self) -> None:
        """Make the strip's tool bar (hidden) before the layout is saved: a tool bar the saved
        state does not know about changed the panels' widths when the state came back."""
        if self._strip_factory is None or self.strip_bar is not None:
            return
        bar = self.strip_bar = QToolBar("Lecture controls", self.window)
        bar.setObjectName("teachingStrip")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.addWidget(self._strip_factory(bar))
        for text, step in (("◀ View", -1), ("View ▶", +1)):
            button = QPushButton(text, bar)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, step=step: self.show_view(self._current + step))
            bar.addWidget(button)
        self.window.addToolBar(Qt.ToolBarArea.BottomToolBarArea, bar)
        bar.hide()

    def _show_strip(self, on: bool) -> None:
        """The control strip at the bottom of the window, only while teaching mode is on."""
        if self.strip_bar is not None:
            self.strip_bar.setVisible(on)

    # the switch -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active

    def toggle(self) -> None:
        self.set_active(not self._active)

    def set_active(self, on: bool) -> None:
        on = bool(on)
        if on == self._active:
            self.actions["teaching"].setChecked(on)
            return
        app = QApplication.instance()
        if on:
            self._ensure_strip()
            self._saved = {
                "state": self.window.saveState(),
                "window_state": self.window.windowState(),
                "font": QFont(app.font()) if app else None,
            }
            if app is not None:
                font = QFont(app.font())
                font.setPointSizeF(max(font.pointSizeF(), 9.0) * 1.8)
                app.setFont(font)
            self._active = True
            self.manager.set_teaching(True)
            self._saved["geometry"] = self.window.geometry()
            screen = self.window.screen()
            if screen is not None:  # full size even where no window manager obeys
                self.window.setGeometry(screen.geometry())
            self.window.showFullScreen()
            self._hide_panels()
            self._show_strip(True)
            self.show_view(self._current)
        else:
            self._active = False
            self.manager.set_teaching(False)
            if app is not None and self._saved.get("font") is not None:
                app.setFont(self._saved["font"])
            self.window.setWindowState(self._saved.get("window_state", Qt.WindowState.WindowNoState))
            if "geometry" in self._saved and not self.window.windowState():
                self.window.setGeometry(self._saved["geometry"])
            if "state" in self._saved:
                # the views' minimum sizes shrink back with the font only once its posted change
                # events run: restored before, the panel column came back 32 px narrower
                for kind in (QEvent.Type.ApplicationFontChange, QEvent.Type.FontChange,
                             QEvent.Type.LayoutRequest):
                    QApplication.sendPostedEvents(None, kind)
                self.window.restoreState(self._saved["state"])
        self.actions["teaching"].setChecked(on)
        self.actions["leave"].setEnabled(on)
        self.toggled.emit(on)


def _find_menu(bar, title: str):
    for action in bar.actions():
        menu = action.menu()
        if menu is not None and action.text().replace("&", "") == title.replace("&", ""):
            return menu
    return None
