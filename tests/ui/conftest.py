"""Shared fixtures of the GUI tests: a window on the default model, settings and recovery in tmp."""

from __future__ import annotations

import pytest

from visualizer.ui.app import configure_threads

configure_threads()  # as the app does: torch leaves a core to the GUI thread


@pytest.fixture(scope="session", autouse=True)
def _gc_back_to_automatic_after_gui_tests():
    """The window moves cyclic GC to the GUI thread; tests that follow get CPython's default."""
    yield
    from visualizer.ui.jobs.gui_gc import restore_automatic_gc

    restore_automatic_gc()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEVIZ_SETTINGS_ORG", "pruneviz-tests")
    monkeypatch.setenv("PRUNEVIZ_RECOVERY", str(tmp_path / "recovery.pviz"))
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    yield


def wait_idle(qtbot, window, timeout=20000):
    """Wait until no job runs (and deliver queued results)."""
    qtbot.waitUntil(lambda: not window.jobs.is_running(), timeout=timeout)


def open_graph(qtbot, window):
    """Bring the graph panel to the front and wait until its hierarchy is drawn and jobs are done."""
    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.hierarchy is not None, timeout=5000)
    wait_idle(qtbot, window)
    return panel


def open_profile(qtbot, window):
    """Bring the density profile to the front and wait until its FLOPs and groups are in."""
    window.docks["profile"].raise_()
    view = window.views["profile"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.flops is not None and view.groups is not None, timeout=20000)
    return view


def drop_file(window, path) -> None:
    """Drop ``path`` on the window as a file manager does (a copy action with the file's URL)."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


@pytest.fixture
def window(qtbot):
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(restore_layout=False)
    w.ask_discard = lambda: "discard"
    qtbot.addWidget(w)
    w.show()
    w.request_load("lenet")
    wait_idle(qtbot, w)
    assert w.state.loaded is not None and w.state.loaded.ref == "lenet"
    yield w
    w.jobs.shutdown(1.0)
