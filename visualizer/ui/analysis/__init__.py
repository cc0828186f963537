"""Analysis views (graph, spectrum, landscape, speed, DenseNet connections, Inception branches)
and their integration into the main window.

Integration points for the workbench:

* :func:`view_spec`: the ViewSpec of each id in :data:`VIEW_IDS` for the window's view registry
  (``pruneviz screenshot --view graph|spectrum|...`` renders them through the window);
* :func:`install_analysis` (call once after the window is built): themes for every analysis
  view, teaching mode with its shortcuts (View > Teaching mode, Help > Shortcuts) and the
  Presets menu.
"""

from __future__ import annotations

from typing import Any

VIEW_IDS = ("graph", "spectrum", "landscape", "speed", "densenet", "inception")

_TITLES = {
    "graph": ("Graph", "dependency graph: colour = density, size = parameters; click selects"),
    "spectrum": ("Spectrum", "Hessian spectrum dense vs masked, SLQ density, trace"),
    "landscape": ("Landscape", "loss along dense -> pruned and on the plane through both"),
    "speed": ("Speed", "latency, FLOPs and eta of dense, masked and shrunk models"),
    "densenet": ("DenseNet connections", "layer x layer connection strengths"),
    "inception": ("Inception branches", "branch norms per Inception module"),
}


def _factory(view_id: str):
    from visualizer.ui.analysis import panels

    return {
        "graph": panels.GraphPanel,
        "spectrum": panels.SpectrumPanel,
        "landscape": panels.LandscapePanel,
        "speed": panels.SpeedPanel,
        "densenet": panels.densenet_panel,
        "inception": panels.inception_panel,
    }[view_id]


def _prepare(view_id: str):
    """Screenshot hook: run the panel's compute synchronously (the window's jobs are sync then)."""

    def prepare(window, options) -> None:
        panel = window.views[view_id]
        compute = getattr(panel, "compute", None) or getattr(panel, "refresh", None)
        if compute is not None:
            compute()

    return prepare


def view_spec(view_id: str):
    """The workbench ViewSpec of one analysis view (needs visualizer.ui.views)."""
    from visualizer.ui.views import ViewSpec

    title, description = _TITLES[view_id]
    return ViewSpec(view_id, title, _factory(view_id), prepare=_prepare(view_id),
                    description=description, lazy=True)


def register_themes(root, manager) -> None:
    """Theme every analysis view in ``root`` (``root`` included) now and on every theme change;
    the window calls it again for a view it builds later."""
    from visualizer.ui.analysis.base import AnalysisView

    views = root.findChildren(AnalysisView) + ([root] if isinstance(root, AnalysisView) else [])
    for view in views:
        manager.register(view)


def install_analysis(window) -> Any:
    """Add teaching mode, themes and presets to the main window; returns the TeachingMode.

    Uses only public bits of the window: ``menuBar()``, its dock widgets, ``views`` (id ->
    widget), ``pruning_panel.slider`` (a log slider where a larger value is a lower density),
    ``jobs.submit`` and ``addDockWidget``.
    """
    from PySide6.QtWidgets import QAbstractSlider

    from visualizer.ui.teaching import TeachingMode, theme_manager

    manager = theme_manager()
    register_themes(window, manager)
    slider = getattr(getattr(window, "pruning_panel", None), "slider", None)
    step_density = None
    if slider is not None:
        def step_density(direction: int) -> None:
            # the workbench's slider runs from 100% (left, value 0) to 0.1% (right)
            slider.triggerAction(
                QAbstractSlider.SliderAction.SliderSingleStepSub if direction > 0
                else QAbstractSlider.SliderAction.SliderSingleStepAdd)
    docks = getattr(window, "docks", {})
    view_ids = list(getattr(window, "views", {}))
    view_docks = [docks[v] for v in view_ids if v in docks] or None
    mode = TeachingMode(window, manager, slider=slider, step_density=step_density,
                        views=view_docks)
    mode.install_menus()
    _install_presets(window, mode)
    window.teaching = mode
    return mode


def _install_presets(window, mode) -> None:
    """Presets menu: each preset runs as a job and shows in a 'Preset' dock with its caption."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    from visualizer.ui.presets import PRESETS, caption_of

    menu = window.menuBar().addMenu("&Presets")
    state: dict[str, Any] = {"dock": None}

    def show(preset, result) -> None:
        view = preset.view()
        preset.show(view, result)
        view.set_caption(caption_of(preset, result))
        dock = state["dock"]
        if dock is None:
            dock = QDockWidget("Preset", window)
            dock.setObjectName("dock-preset")
            window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            state["dock"] = dock
        old = dock.widget()
        dock.setWidget(view)
        dock.setWindowTitle(f"Preset: {preset.title}")
        if old is not None:
            old.deleteLater()
        dock.show()
        dock.raise_()

    def launch(preset) -> None:
        window.jobs.submit("preset", preset.title, preset.job,
                           on_result=lambda r, p=preset: show(p, r))

    def populate() -> None:
        # Filled when first opened, not while the window is built: start-up stays short.
        # Tests and shortcuts call ``window.populate_presets()`` directly.
        if menu.actions():
            return
        for preset in PRESETS.values():
            action = menu.addAction(preset.title)
            action.setToolTip(preset.caption)
            action.triggered.connect(lambda _=False, p=preset: launch(p))

    menu.aboutToShow.connect(populate)
    window.presets_menu = menu
    window.populate_presets = populate
