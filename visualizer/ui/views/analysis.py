"""Analysis views (graph, spectrum, landscape, speed, DenseNet connections, Inception branches,
the theory labs) and their integration into the main window.

Integration points for the workbench:

* :func:`view_spec`: the ViewSpec of each id in :data:`VIEW_IDS` for the window's view registry
  (``pruneviz screenshot --view graph|spectrum|...`` renders them through the window);
* :func:`install_analysis` (call once after the window is built): themes for every analysis
  view, teaching mode with its shortcuts (View > Teaching mode, Help > Shortcuts), the Presets
  menu and presentation mode.
"""

from __future__ import annotations

from typing import Any

VIEW_IDS = ("graph", "spectrum", "landscape", "speed", "densenet", "inception", "labs")

_TITLES = {
    "graph": ("Graph", "dependency graph: colour = density, size = parameters; click selects"),
    "spectrum": ("Spectrum", "Hessian spectrum dense vs masked, SLQ density, trace"),
    "landscape": ("Landscape", "loss along dense -> pruned and on the plane through both"),
    "speed": ("Speed", "latency, FLOPs and eta of dense, masked and shrunk models"),
    "densenet": ("DenseNet connections", "layer x layer connection strengths"),
    "inception": ("Inception branches", "branch norms per Inception module"),
    "labs": ("Labs", "theory labs: a formula of the pruning theory against a measurement"),
}


def _factory(view_id: str):
    from visualizer.ui.views import docks as panels

    if view_id == "labs":  # needs no model: its own module, not an AnalysisPanel
        from visualizer.ui.views.labs import LabsPanel

        return LabsPanel
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
    from visualizer.ui.views.base import AnalysisView

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

    from visualizer.ui.lecture.teaching import TeachingMode, theme_manager

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
    def strip(parent):
        from visualizer.ui.lecture.strip import ControlStrip

        return ControlStrip(window, parent)

    mode = TeachingMode(window, manager, slider=slider, step_density=step_density,
                        views=view_docks, strip=strip if hasattr(window, "pruning_panel") else None)
    mode.install_menus()
    _install_presets(window, mode)
    window.teaching = mode
    return mode


def _install_presets(window, mode) -> None:
    """Presets menu: a preset opens as a slide of the presentation window (its figure fills the
    window, its caption below in large type; see :mod:`visualizer.ui.lecture.presentation`), and
    View > Presentation mode (F5) shows the whole deck full screen."""
    from PySide6.QtGui import QAction, QKeySequence

    from visualizer.ui.lecture.presets import PRESETS

    menu = window.menuBar().addMenu("&Presets")

    def open_presentation(preset_id: str | None = None, full_screen: bool = False):
        from visualizer.ui.lecture.presentation import Presentation

        current = getattr(window, "presentation", None)
        if current is None or not current.isVisible():
            current = Presentation(window)
            window.presentation = current
        if preset_id is not None:
            current.show_slide([s.id for s in current.slides].index(preset_id))
        if full_screen:
            current.present()
        else:
            if not current.isVisible():
                # the screen's size first: where no window manager maximizes (a bare X server,
                # some kiosk setups) the window opened at its size hint, 1057x275, the figure
                # squeezed to a 40 px strip
                handle = window.windowHandle()
                screen = handle.screen() if handle is not None else None
                if screen is not None:
                    current.setGeometry(screen.availableGeometry())
            current.showMaximized()
            current.raise_()
        return current

    def populate() -> None:
        # Filled when first opened, not while the window is built: start-up stays short.
        # Tests and shortcuts call ``window.populate_presets()`` directly.
        if menu.actions():
            return
        deck = menu.addAction("Present all (deck)")
        deck.triggered.connect(lambda _=False: open_presentation(None, full_screen=True))
        menu.addSeparator()
        for preset in PRESETS.values():
            action = menu.addAction(preset.title)
            action.setToolTip(preset.caption)
            action.triggered.connect(lambda _=False, p=preset: open_presentation(p.id))

    present = QAction("&Presentation mode", window)
    present.setShortcut(QKeySequence("F5"))
    present.triggered.connect(lambda _=False: open_presentation(None, full_screen=True))
    view_menu = next((a.menu() for a in window.menuBar().actions()
                      if a.menu() is not None and a.text().replace("&", "") == "View"), None)
    (view_menu or menu).addAction(present)
    window.addAction(present)
    menu.aboutToShow.connect(populate)
    window.presets_menu = menu
    window.populate_presets = populate
    window.open_presentation = open_presentation
