"""The view registry: every view is a dock of the main window and a `pruneviz screenshot --view`.

A view module defines ``VIEW = ViewSpec(...)``; list it in :data:`VIEW_MODULES` (modules not
written yet are skipped, so later views can be added without touching the window). A view's
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
    "visualizer.ui.views.heatmap",
    "visualizer.ui.views.curves",
]
# The analysis views (issue 6) live in visualizer.ui.analysis and are listed by its VIEW_IDS.
ANALYSIS_PACKAGE = "visualizer.ui.analysis"


@dataclass(frozen=True)
class ViewSpec:
    id: str  # stable id: dock object name and `screenshot --view ID`
    title: str
    factory: Callable[[Any], Any]  # (window) -> QWidget
    prepare: Callable[[Any, Any], None] | None = None  # (window, options) -> None
    description: str = ""
    lazy: bool = False  # built when its dock first comes to the front (or is asked for)


def available_views() -> dict[str, ViewSpec]:
    """id -> ViewSpec for every view module that exists, in VIEW_MODULES order."""
    views: dict[str, ViewSpec] = {}
    for name in VIEW_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        spec = module.VIEW
        views[spec.id] = spec
    try:
        analysis = importlib.import_module(ANALYSIS_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name != ANALYSIS_PACKAGE:
            raise
        return views
    for view_id in analysis.VIEW_IDS:
        views[view_id] = analysis.view_spec(view_id)
    return views
