"""Offscreen rendering of one view (or the whole window) at a given state, to PNG or SVG."""

from __future__ import annotations

from pathlib import Path


class RenderError(ValueError):
    """Bad options of an offscreen rendering (screenshot, preset, deck: an unknown view, preset or
    layer, a model that failed to load) or an unwritable file: a ValueError, so the CLI prints it
    as one line (cli.common.user_errors)."""


def render_screenshot(options, size: tuple[int, int] = (1200, 800)) -> Path:
    """Build the window with synchronous jobs, bring it to the asked state and save the view."""
    from visualizer.ui.app import configure_threads, make_app

    app = make_app()
    configure_threads()
    from visualizer.core.models.zoo import DEFAULT_MODEL
    from visualizer.ui.files import export
    from visualizer.ui.shell.window import MainWindow

    # never the person's settings: no restored layout in, no layout or recent files out
    window = MainWindow(synchronous=True, restore_layout=False, persist_settings=False)
    try:
        view_id = options.view
        if view_id != "window" and view_id not in window.views:
            raise RenderError(f"unknown view {view_id!r}; choose one of: window, {', '.join(window.views)}")
        window.resize(*size)
        window.show()
        window.request_load(options.model or DEFAULT_MODEL, dataset=options.data or "",
                            trust=bool(getattr(options, "trust", False)))
        _raise_if_failed(window)
        window.pruning_panel.set_settings(options.criterion, options.scope, options.structure)
        _raise_if_failed(window)
        window.pruning_panel.set_density(options.density)
        if options.layer:
            if options.layer not in window.state.params:
                raise RenderError(f"no prunable layer {options.layer!r}; have: {', '.join(window.state.prunable)}")
            window.state.select(options.layer)
        if getattr(options, "kernels", False):
            heat = window.views.get("heatmap")
            if heat is not None:
                heat.layout_box.setCurrentIndex(heat.layout_box.findData("kernels"))
        if view_id != "window":
            spec = window.view_specs[view_id]
            # A view alone at the asked size: float its dock out of the tab group (a docked view
            # gets only what the panels leave, which clips wide plots).
            dock = window.docks[view_id]
            dock.setFloating(True)
            dock.resize(*size)
            dock.show()
            dock.raise_()
            app.processEvents()
            if spec.prepare is not None:
                spec.prepare(window, options)
            _raise_if_failed(window)
        _settle(app)
        out = Path(options.out)
        if view_id == "window":
            try:
                export.save_pixmap(window.grab(), out)
            except OSError as exc:
                raise RenderError(str(exc)) from exc
        else:
            export.export_view(window, view_id, str(out))
        return out
    finally:
        window.state.set_dirty(False)
        window.close()
        window.deleteLater()
        app.processEvents()


def _settle(app, ms: int = 300) -> None:
    """Let layouts and deferred repaints finish: a grab right after a resize could still show a
    dock tab bar at its old place."""
    from PySide6.QtCore import QDeadlineTimer, QEventLoop

    deadline = QDeadlineTimer(ms)
    while not deadline.hasExpired():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def _raise_if_failed(window) -> None:
    msg = window.message()
    if msg:
        raise RenderError(msg)
