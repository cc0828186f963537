"""Analysis views (graph, spectrum, landscape, speed, DenseNet connections, Inception branches,
the theory labs),
their integration into the main window, and offscreen rendering for screenshots.

Integration points for the workbench:

* :func:`view_spec` / each view module's ``VIEW`` attribute: ViewSpecs for the window's view
  registry (list ``visualizer.ui.analysis.graph_view`` etc. in ``VIEW_MODULES``);
* :func:`install_analysis` (call once after the window is built): themes for every analysis
  view, teaching mode with its shortcuts (View > Teaching mode, Help > Shortcuts) and the
  Presets menu;
* :func:`render_view` for ``pruneviz screenshot --view graph|spectrum|landscape|speed|...``.
"""

from __future__ import annotations

from pathlib import Path
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
    from visualizer.ui.analysis import panels

    if view_id == "labs":  # needs no model: its own module, not an AnalysisPanel
        from visualizer.ui.analysis.lab_views import LabsPanel

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
    """Presets menu: a preset opens as a slide of the presentation window (its figure fills the
    window, its caption below in large type; see :mod:`visualizer.ui.presentation`), and
    View > Presentation mode (F5) shows the whole deck full screen."""
    from PySide6.QtGui import QAction, QKeySequence

    from visualizer.ui.presets import PRESETS

    menu = window.menuBar().addMenu("&Presets")

    def open_presentation(preset_id: str | None = None, full_screen: bool = False):
        from visualizer.ui.presentation import Presentation

        current = getattr(window, "presentation", None)
        if current is None or not current.isVisible():
            current = Presentation(window)
            window.presentation = current
        if preset_id is not None:
            current.show_slide([s.id for s in current.slides].index(preset_id))
        if full_screen:
            current.present()
        else:
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


def render_view(view_name: str, model: str, out: str | Path, size: tuple[int, int] = (1200, 800),
                density: float = 0.2, criterion: str = "magnitude", **opts: Any) -> Path:
    """Compute one analysis view for a bundled model offscreen and save it as PNG (or SVG).

    The mask is ``criterion`` at ``density`` (global); the view's job runs to the end in this
    thread. Raises ValueError for an unknown view.
    """
    from PySide6.QtWidgets import QApplication

    from visualizer.core.data.sources import load_dataset
    from visualizer.core.models.loaders import load_model
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.tasks import run
    from visualizer.core.workspace import Workspace
    from visualizer.ui.analysis import adapters, jobs

    if view_name not in VIEW_IDS:
        raise ValueError(f"unknown view {view_name!r}; choose one of: {', '.join(VIEW_IDS)}")
    app = QApplication.instance() or QApplication([])
    loaded = load_model(model)
    data = load_dataset(loaded.dataset)
    net = loaded.model
    # the workspace's criterion batches: the mask the window, the CLI and the sweep give
    masks = mask_from_scores(run(Workspace(net, data, model_ref=model).scores(criterion)), density,
                             criterion=criterion)
    from visualizer.ui.analysis.densenet_view import ConnectivityView
    from visualizer.ui.analysis.graph_view import GraphView
    from visualizer.ui.analysis.inception_view import BranchView
    from visualizer.ui.analysis.landscape_view import LandscapeView
    from visualizer.ui.analysis.spectrum_view import SpectrumView
    from visualizer.ui.analysis.speed_view import SpeedView

    if view_name in ("graph", "densenet", "inception"):
        r = run(jobs.graph_job(net))
        if view_name == "graph":
            view = GraphView()
            view.set_graph(r.graph, r.layout)
            view.set_groups(r.groups)
            view.set_densities({ld.name: ld.density for ld in masks.layers()})
        elif view_name == "densenet":
            if r.connectivity is None or len(r.connectivity.producers) == 0:
                raise ValueError(f"{model} has no concatenation connections to show")
            view = ConnectivityView()
            view.set_connectivity(adapters.connectivity_input(r.connectivity))
        else:
            modules = adapters.branch_modules(r.branches)
            if not modules:
                raise ValueError(f"{model} has no Inception modules")
            view = BranchView()
            view.set_modules(modules)
    elif view_name == "spectrum":
        r = run(jobs.spectrum_job(net, data, masks, **opts))
        view = SpectrumView()
        view.set_spectra([adapters.spectrum_data(r.dense, "dense"),
                          adapters.spectrum_data(r.masked, f"masked ({density:.0%})")])
    elif view_name == "landscape":
        r = run(jobs.landscape_job(net, data, masks, **opts))
        view = LandscapeView()
        view.set_curves([adapters.curve_1d(r.curve, "dense -> pruned")])
        view.set_surface(adapters.surface_2d(r.surface, r.points))
    else:
        r = run(jobs.speed_job(net, density, **opts))
        view = SpeedView()
        view.set_entries(adapters.speed_entries(r))
    view.resize(*size)
    view.show()
    for _ in range(3):
        app.processEvents()
    while getattr(view, "labels_pending", lambda: False)():  # the graph adds its labels in batches
        app.processEvents()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not view.grab().save(str(out)):
        raise ValueError(f"could not write {out}")
    view.close()
    return out
