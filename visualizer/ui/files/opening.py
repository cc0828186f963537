"""Files the person hands the window: told apart by content, masks opened, stray docks put back.

- :func:`open_any` (File > Open, recent files, drag and drop): a session, a model, weights, a mask
  or a torch.nn.utils.prune checkpoint, decided by :func:`visualizer.core.io.mask_formats.detect_kind`
  from the file's bytes, never from its suffix (a mask saved as ``.safetensors`` is not weights).
  Telling them apart can read a whole checkpoint, so it runs as a job and the file opens when the
  job returns: the GUI thread never waits on a large file.
- :func:`request_mask` (File > Open mask…): the mask becomes the current one (the pruning panel
  says "mask from file") or, for comparison, snapshot A (the heatmap's compare mode then diffs it
  against the current mask).
- :func:`redock_stray_docks`: after a layout is restored, floating docks that are off every screen
  or cover most of the main window go back into it (a layout saved on another monitor, or by an
  offscreen run, must not hide the app).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QFileDialog

from visualizer.core.tasks import Step
from visualizer.ui.jobs import actions
from visualizer.ui.shell import dialogs

MASK_FILTER = "Masks (*.safetensors *.pt *.pth *.bin *.tar);;All files (*)"


def kind_of(path: str) -> tuple[str | None, str]:
    """``(kind, problem)``: the detected kind, or None and a one-line reason."""
    from visualizer.core.io.checks import FileFormatError
    from visualizer.core.io.mask_formats import detect_kind

    try:
        return detect_kind(path), ""
    except (FileFormatError, OSError) as exc:
        return None, str(exc)


def classify_job(path: str):
    """Job: ``(kind, problem)`` of the file at ``path`` (worker thread: it reads the file)."""
    yield Step(f"reading {Path(path).name}", 0.1)
    return kind_of(path)


def open_any(window, path: str) -> None:
    """Open whatever ``path`` holds (by content, read in a job)."""
    p = Path(path)
    if not p.exists():
        window.show_error(f"{p.name}: file not found")
        return
    window.jobs.submit("open", f"reading {p.name}", lambda: classify_job(str(p)),
                       on_result=lambda result: open_kind(window, p, result[0]))


def open_kind(window, p: Path, kind: str | None) -> None:
    """Hand ``p`` to what opens its ``kind`` (GUI thread, after :func:`classify_job`)."""
    if kind is None:
        # unrecognised bytes: let the loader the suffix suggests say what is wrong with it
        kind = {".pviz": "session", ".safetensors": "weights"}.get(p.suffix.lower(), "model")
    if kind == "session":
        window.open_session(str(p))
    elif kind == "mask":
        request_mask(window, str(p))
    elif kind in ("weights", "prune-checkpoint"):
        window.request_weights(str(p))
    elif p.suffix.lower() == ".py":
        factory = dialogs.ask_factory(window, p.name)
        if factory:
            window.request_load(f"{p}:{factory}", window.model_panel.weights_edit.text().strip())
    else:
        window.request_load(str(p), "", window.model_panel.trust_box.isChecked())


def open_mask_dialog(window, compare: bool = False) -> None:
    title = "Open mask to compare (A)" if compare else "Open mask"
    path, _ = QFileDialog.getOpenFileName(window, title, "", MASK_FILTER)
    if path:
        request_mask(window, path, compare=compare)


def request_mask(window, path: str, compare: bool = False) -> None:
    """Read a mask file in the background; install it as the current mask or as snapshot A."""
    s = window.state
    if s.loaded is None:
        window.show_error(f"{Path(path).name}: load a model first, then its mask")
        return
    loaded = s.loaded
    name = Path(path).name

    def done(masks) -> None:
        if s.loaded is not loaded:
            return  # another model arrived meanwhile: the mask was fitted to the old one
        if compare:
            s.set_snapshot(masks)
            heat = window.views.get("heatmap")
            if heat is not None:
                heat.set_mode("compare")
            window.statusBar().showMessage(f"{name} is mask A: the heatmap compares it with the current mask", 6000)
        else:
            install_mask(window, masks, name)
        window.add_recent(path)

    window.jobs.cancel("rank")
    window.jobs.cancel("mask")
    window.jobs.submit("mask", f"reading {name}", lambda: actions.mask_job(path, loaded.model), on_result=done)


def install_mask(window, masks, source: str) -> None:
    """Make ``masks`` the current mask, with the slider at its density and the panel naming the file."""
    s = window.state
    s.density = masks.density()
    s.set_masks(masks, dirty=True, source=source)
    panel = window.pruning_panel
    panel._set_slider(s.density)
    panel._set_spin(s.density * 100)
    panel.update_label()


# --- layout ---------------------------------------------------------------------------------------
def _visible_fraction(rect: QRect) -> float:
    """Largest fraction of ``rect`` that lies on one screen's available area."""
    area = rect.width() * rect.height()
    if area <= 0:
        return 0.0
    best = 0
    for screen in QGuiApplication.screens():
        inter = rect.intersected(screen.availableGeometry())
        best = max(best, inter.width() * inter.height())
    return best / area


def stray_reason(dock: QDockWidget, main: QRect) -> str | None:
    """Why a floating dock must go back: off-screen, or covering most of the main window."""
    if not dock.isFloating():
        return None
    rect = dock.frameGeometry()
    if _visible_fraction(rect) < 0.5:
        return "off-screen"
    inter = rect.intersected(main)
    main_area = main.width() * main.height()
    if main_area > 0 and inter.width() * inter.height() >= 0.5 * main_area:
        return "covers the main window"
    return None


def redock_stray_docks(window) -> list[str]:
    """Dock again every floating dock that is off-screen or covers the main window; return their
    titles."""
    main = window.frameGeometry()
    moved = []
    for dock in window.findChildren(QDockWidget):
        if stray_reason(dock, main) is not None:
            dock.setFloating(False)
            moved.append(dock.windowTitle())
    return moved
