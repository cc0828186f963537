"""The window's menu bar, one function per menu.

``build_menus(window)`` adds File, View, Jobs and Help in that order; a feature that brings its
own menu (Presets, teaching mode) adds it after the window is built. To extend a menu, add its
action in that menu's function with :func:`add_action`.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from visualizer.ui.shell import dialogs
from visualizer.ui.shell.settings import recent_files


def add_action(window: QMainWindow, menu: QMenu, text: str, slot: Callable[[], object],
               shortcut=None) -> QAction:
    """An action in ``menu`` that calls ``slot()`` (owned by the window, so shortcuts work)."""
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    act.triggered.connect(lambda _=False: slot())
    menu.addAction(act)
    return act


def build_menus(window) -> None:
    file_menu(window)
    view_menu(window)
    jobs_menu(window)
    help_menu(window)


def file_menu(window) -> QMenu:
    m = window.menuBar().addMenu("&File")
    add_action(window, m, "Open &model…", window.open_model_dialog, QKeySequence.StandardKey.Open)
    window.recent_menu = m.addMenu("Open &recent")
    fill_recent(window)
    m.addSeparator()
    add_action(window, m, "Open &session…", window.open_session_dialog, "Ctrl+Shift+O")
    add_action(window, m, "Open mas&k…", window.open_mask_dialog)
    add_action(window, m, "Open mask to &compare (A)…", lambda: window.open_mask_dialog(compare=True))
    add_action(window, m, "&Save session", window.save_session, QKeySequence.StandardKey.Save)
    add_action(window, m, "Save session &as…", window.save_session_as, QKeySequence.StandardKey.SaveAs)
    add_action(window, m, "Recover &autosaved results", window.recover)
    m.addSeparator()
    export_menu(window, m)
    m.addSeparator()
    add_action(window, m, "&Quit", window.close, QKeySequence.StandardKey.Quit)
    return m


def export_menu(window, parent: QMenu) -> QMenu:
    ex = parent.addMenu("&Export")
    for vid, spec in window.view_specs.items():
        add_action(window, ex, f"{spec.title} as PNG…", lambda v=vid: dialogs.export_view_dialog(window, v, "png"))
        add_action(window, ex, f"{spec.title} as SVG…", lambda v=vid: dialogs.export_view_dialog(window, v, "svg"))
    ex.addSeparator()
    add_action(window, ex, "Results table as CSV…", lambda: dialogs.export_results_dialog(window))
    add_action(window, ex, "Compare table as CSV…", lambda: dialogs.export_compare_dialog(window))
    add_action(window, ex, "Mask as safetensors…", lambda: dialogs.export_mask_dialog(window, "safetensors"))
    add_action(window, ex, "Mask as torch.nn.utils.prune state dict…",
               lambda: dialogs.export_mask_dialog(window, "prune"))
    add_action(window, ex, "Mask as NNI mask dict…", lambda: dialogs.export_mask_dialog(window, "nni"))
    return ex


def fill_recent(window) -> None:
    """(Re)fill File > Open recent from the settings."""
    menu = window.recent_menu
    menu.clear()
    items = recent_files()
    for p in items:
        act = menu.addAction(p)
        act.triggered.connect(lambda _=False, p=p: window.open_path(p))
    menu.setEnabled(bool(items))


def view_menu(window) -> QMenu:
    v = window.menuBar().addMenu("&View")
    for dock in window.docks.values():
        v.addAction(dock.toggleViewAction())
    v.addSeparator()
    add_action(window, v, "Reset layout", window.reset_layout)
    return v


def jobs_menu(window) -> QMenu:
    j = window.menuBar().addMenu("&Jobs")
    add_action(window, j, "Cancel running jobs", window.cancel_jobs, "Esc")
    return j


def help_menu(window) -> QMenu:
    h = window.menuBar().addMenu("&Help")
    add_action(window, h, "About", lambda: dialogs.show_about(window))
    return h
