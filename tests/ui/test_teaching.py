"""Teaching mode: the switch, the lecture shortcuts, the shortcuts dialog, themes."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QSlider

from visualizer.ui.lecture.teaching import (
    DARK,
    LIGHT,
    SHORTCUTS,
    ShortcutsDialog,
    TeachingMode,
    ThemeManager,
    teaching_variant,
)


@pytest.fixture
def lecture(qtbot):
    window = QMainWindow()
    window.setCentralWidget(QLabel("central"))
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setObjectName("densitySlider")
    slider.setRange(0, 100)
    slider.setValue(50)
    docks = []
    for title in ("Heatmap", "Graph", "Spectrum"):
        dock = QDockWidget(title, window)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(QLabel(title))
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        docks.append(dock)
    left = QDockWidget("Pruning", window)
    left.setWidget(slider)
    left.setObjectName("dock-pruning")
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
    rounds = []
    window.step_imp_round = rounds.append
    manager = ThemeManager(QApplication.instance(), scheme="light")
    mode = TeachingMode(window, manager, views=docks)
    mode.install_menus()
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    yield window, mode, slider, docks, rounds, manager
    mode.set_active(False)


def test_shortcut_keys_step_slider_rounds_and_views(qtbot, lecture):
    window, mode, slider, docks, rounds, _ = lecture
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert slider.value() == 49
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert slider.value() == 51
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    assert rounds == [1, -1]
    with qtbot.waitSignal(mode.viewChanged) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == [2]


def test_teaching_switch_goes_full_screen_single_view_and_restores(qtbot, lecture):
    window, mode, _, docks, _, manager = lecture
    font_before = QApplication.instance().font().pointSizeF()
    with qtbot.waitSignal(mode.toggled) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_F11)
    assert blocker.args == [True]
    assert mode.active and manager.teaching
    assert manager.theme().high_contrast and manager.theme().line_width >= 4
    assert window.windowState() & Qt.WindowState.WindowFullScreen
    assert QApplication.instance().font().pointSizeF() > font_before
    visible = [d.windowTitle() for d in docks if d.isVisible()]
    assert visible == ["Heatmap"]
    mode.show_view(1)
    assert [d.windowTitle() for d in docks if d.isVisible()] == ["Graph"]
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not mode.active and not manager.teaching
    assert not window.windowState() & Qt.WindowState.WindowFullScreen
    assert QApplication.instance().font().pointSizeF() == font_before
    assert all(d.isVisible() for d in docks)


def test_shortcuts_dialog_lists_every_shortcut(qtbot, lecture):
    window, mode, *_ = lecture
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert "Help" in titles and "View" in titles
    dialog = mode.show_shortcuts()
    qtbot.addWidget(dialog)
    assert isinstance(dialog, ShortcutsDialog)
    assert dialog.table.rowCount() == len(SHORTCUTS)
    texts = [dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())]
    assert "Next IMP round" in texts
    dialog.close()


def test_theme_variants_and_scheme_choice(qapp):
    big = teaching_variant(LIGHT)
    assert big.font_pt > LIGHT.font_pt and big.line_width > LIGHT.line_width
    assert big.background == "#ffffff" and big.foreground == "#000000"
    assert teaching_variant(DARK).background == "#000000"
    manager = ThemeManager(QApplication.instance(), scheme="dark")
    assert manager.theme().dark
    manager.set_scheme("light")
    assert not manager.theme().dark
    with pytest.raises(ValueError, match="scheme"):
        manager.set_scheme("purple")


def test_esc_leaves_teaching_mode_in_the_workbench(qtbot, window):
    """In the real window Esc belongs to 'Cancel running jobs', so teaching mode's own Esc was
    never bound: pressing it did nothing and Help > Shortcuts said '(taken by the window)'."""
    window.teaching.set_active(True)
    assert window.teaching.active
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.teaching.active
    dialog = window.teaching.show_shortcuts()
    qtbot.addWidget(dialog)
    row = next(r for r, sc in enumerate(SHORTCUTS) if sc.action == "leave")
    assert dialog.table.item(row, 0).text().startswith("Esc")
    dialog.close()


def _outside(window) -> list[str]:
    """Visible widgets the window's edge cuts (scroll-area contents excepted: their viewport
    clips them on purpose; so are widgets Qt parks wholly outside, like unused tab bars)."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QAbstractScrollArea, QWidget

    def scrolled(w: QWidget) -> bool:
        p = w.parentWidget()
        while p is not None and p is not window:
            if isinstance(p.parentWidget(), QAbstractScrollArea) and p is p.parentWidget().viewport():
                return True
            p = p.parentWidget()
        return False

    bounds = window.rect()
    def cut(w: QWidget) -> bool:
        rect = QRect(w.mapTo(window, QPoint(0, 0)), w.size())
        return bounds.intersects(rect) and not bounds.contains(rect)

    return [f"{type(w).__name__} {w.objectName()}" for w in window.findChildren(QWidget)
            if w.isVisible() and not w.isWindow() and not scrolled(w) and cut(w)]


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_teaching_mode_lays_the_workbench_out_for_large_type(qtbot, window, size):
    """F11 grew the font 1.8x but kept the panel column: at 1280x720 it was clipped and
    scrolled sideways and the layer list shrank to a couple of rows. In teaching mode the
    current view gets the screen; off brings the panels back where they were."""
    panels = [window.docks[k] for k in ("model", "pruning", "training")]
    window.resize(1216, 684)
    qtbot.wait(50)
    before = [(d.isVisible(), d.width()) for d in panels]
    window.teaching.set_active(True)
    # the offscreen screen is 800x800, and full screen there takes its size: lay the window
    # out at the projector's instead
    window.setWindowState(Qt.WindowState.WindowNoState)
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size().toTuple() == size, timeout=10000)
    qtbot.wait(50)
    assert _outside(window) == []
    for dock in panels:
        assert not dock.isVisible() or not dock.widget().horizontalScrollBar().isVisible(), dock.windowTitle()
    shown = [d for d in window.docks.values() if d.isVisible()]
    assert len(shown) == 1 and shown[0].width() >= 0.9 * size[0], [d.windowTitle() for d in shown]
    window.teaching.set_active(False)
    window.resize(1216, 684)
    qtbot.waitUntil(lambda: [(d.isVisible(), d.width()) for d in panels] == before, timeout=10000)


def test_teaching_mode_keeps_its_controls_in_a_strip(qtbot, window):
    """F11 hides the panels; the strip at the bottom keeps model, criterion, density and view
    stepping, so nothing needs leaving teaching mode. Off, the strip goes with it."""
    from PySide6.QtWidgets import QPushButton

    from visualizer.ui.lecture.strip import ControlStrip
    from visualizer.ui.panels.density import density_to_slider

    window.teaching.set_active(True)
    bar = window.teaching.strip_bar
    assert bar is not None and bar.isVisible()
    strip = bar.findChild(ControlStrip)
    assert strip.model_box.currentText() == "lenet"
    strip.slider.setValue(density_to_slider(0.05))  # as a drag of the strip's slider ends
    assert window.state.density == pytest.approx(0.05, rel=0.01)
    assert window.pruning_panel.slider.value() == density_to_slider(window.state.density)
    snip = strip.criterion_box.findData("snip")
    strip.criterion_box.setCurrentIndex(snip)
    strip.criterion_box.activated.emit(snip)
    assert window.pruning_panel.criterion_box.currentData() == "snip"
    before = window.teaching._current
    next_view = next(b for b in bar.findChildren(QPushButton) if b.text() == "View ▶")
    qtbot.mouseClick(next_view, Qt.MouseButton.LeftButton)
    assert window.teaching._current == before + 1
    window.pruning_panel.set_density(0.2)  # a change elsewhere shows in the strip
    qtbot.waitUntil(lambda: strip.density_label.text() == "20.0% kept", timeout=5000)
    window.teaching.set_active(False)
    assert not bar.isVisible()
