"""The view registry: every view is a dock of the main window and a `pruneviz screenshot --view`.

A view module defines ``VIEW = ViewSpec(...)``; list it in :data:`VIEW_MODULES`; the analysis
views come from :func:`visualizer.ui.views.analysis.view_spec` for each of its ``VIEW_IDS``. A view's
factory gets the main window (for ``window.state`` and ``window.jobs``) and returns a QWidget.
``prepare`` (optional) brings the view into a state worth a screenshot, running its jobs
synchronously; it receives the window and the parsed screenshot options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VIEW_MODULES = [
    "visualizer.ui.views.overview",
    "visualizer.ui.views.heatmap",
    "visualizer.ui.views.curves",
    "visualizer.ui.views.explain_dock",
    "visualizer.ui.views.profile",
    "visualizer.ui.views.calibration",
    "visualizer.ui.views.reconstruction",
    "visualizer.ui.views.savings",
    "visualizer.ui.views.sensitivity",
]


@dataclass(frozen=True)
class ViewSpec:
    id: str  # stable id: dock object name and `screenshot --view ID`
    title: str
    factory: Callable[[Any], Any]  # (window) -> QWidget
    prepare: Callable[[Any, Any], None] | None = None  # (window, options) -> None
    description: str = ""
    lazy: bool = False  # built when its dock first comes to the front (or is asked for)


def available_views() -> dict[str, ViewSpec]:
    """id -> ViewSpec: the VIEW_MODULES in order, then the analysis views."""
    from visualizer.ui.views import analysis

    views: dict[str, ViewSpec] = {}
    for name in VIEW_MODULES:
        spec = importlib.import_module(name).VIEW  # imported here: each module imports ViewSpec
        views[spec.id] = spec
    for view_id in analysis.VIEW_IDS:
        views[view_id] = analysis.view_spec(view_id)
    return views
