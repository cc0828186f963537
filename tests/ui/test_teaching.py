"""Teaching mode: the switch, the lecture shortcuts, the shortcuts dialog, themes."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QSlider

from visualizer.ui.teaching import (
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
