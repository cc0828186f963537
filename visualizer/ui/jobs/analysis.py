"""The analysis jobs moved to :mod:`visualizer.core.analysis` (no Qt there, so headless commands
and presets run them without the window); these names stay importable for modules not yet moved."""

from visualizer.core.analysis import (  # noqa: F401
    LASSO_DEFAULTS,
    GraphResult,
    GroupLassoResult,
    LandscapeResult,
    graph_job,
    group_lasso_job,
    landscape_job,
    spectrum_job,
    speed_job,
)
