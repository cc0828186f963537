"""Turn core result objects into the small inputs the views draw (reshaping only, no numerics).

Duck-typed on purpose (attribute names, not imports), so the views keep working while the core
result classes grow fields, and so this module imports no core module that might be absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from visualizer.ui.views.densenet import Connectivity
from visualizer.ui.views.inception import BranchModule
from visualizer.ui.views.landscape import Curve1D, Surface2D
from visualizer.ui.views.spectrum import RewindSeries, SpectrumData
from visualizer.ui.views.speed import SpeedEntry

REMOVED_NORM = 1e-8  # a branch whose group norm is at most this has been removed


def group_members(structure: Any) -> list[list[str]]:
    """core.structure.StructureResult (or a list of ChannelGroup) -> parameter names per group."""
    groups = getattr(structure, "groups", structure)
    return [[m.param for m in g.members] for g in groups]


def connectivity_input(conn: Any) -> Connectivity:
    """core.structure.Connectivity (producer rows x consumer columns) -> reader rows x source columns."""
    strength = np.asarray(conn.strength, dtype=float).T
    return Connectivity(list(conn.consumers), list(conn.producers), strength)


def _branch_name(branch: Any, module: str) -> str:
    layers = list(getattr(branch, "layers", []) or [])
    if not layers:
        return "identity"
    first = layers[0]
    rest = first[len(module) + 1:] if module and first.startswith(module + ".") else first
    return rest.split(".")[0] or first


def branch_modules(modules: Iterable[Any], kind: str = "inception") -> list[BranchModule]:
    """core.structure.ConcatModule list -> one BranchModule per module of ``kind``.

    A branch counts as removed when its group norm is at most REMOVED_NORM (group lasso drives
    removed groups exactly to zero; shrink then drops them).
    """
    out = []
    for mod in modules:
        if kind and getattr(mod, "kind", kind) != kind:
            continue
        names = [_branch_name(b, mod.name) for b in mod.branches]
        norms = [float(b.norm) for b in mod.branches]
        out.append(BranchModule(mod.name, names, norms, [n <= REMOVED_NORM for n in norms]))
    return out


def spectrum_data(spectrum: Any, label: str) -> SpectrumData:
    """core.curvature.Spectrum -> SpectrumData (density dict with grid/values when SLQ ran)."""
    density = getattr(spectrum, "density", None) or {}
    grid = density.get("grid") if isinstance(density, dict) else getattr(density, "grid", None)
    values = density.get("values") if isinstance(density, dict) else getattr(density, "values", None)
    return SpectrumData(
        label=label,
        top=list(spectrum.top_eigenvalues),
        bottom=list(spectrum.bottom_eigenvalues),
        grid=None if grid is None else np.asarray(grid, dtype=float),
        density=None if values is None else np.asarray(values, dtype=float),
        trace=spectrum.trace,
        trace_err=spectrum.trace_stderr,
        hvps=spectrum.hvps,
        trace_source=getattr(spectrum, "trace_source", None),
    )


def rewind_series(taus: Sequence[float], spectra: Sequence[Any]) -> RewindSeries:
    """lambda_max and condition number of masked spectra at rewind points ``taus``.

    A missing condition number (more non-positive eigenvalues than computed) is drawn as a gap.
    """
    kappa = [np.nan if s.condition_number is None else float(s.condition_number) for s in spectra]
    missing = [s for s in spectra if s.condition_number is None]
    note = ""
    if missing:
        why = str(getattr(missing[0], "condition_kind", "") or "no positive bottom eigenvalue")
        note = (f"kappa undefined at {len(missing)}/{len(spectra)} points "
                f"({why.removeprefix('unknown: ')})")
    return RewindSeries(list(taus), [float(s.lambda_max) for s in spectra], kappa, note)


def curve_1d(result: Any, label: str, quantity: str = "loss") -> Curve1D:
    """core.landscape.Landscape1D -> Curve1D of the loss or the error (1 - accuracy).

    The barrier height is core's (loss_barrier / error_barrier); the view marks it where the
    curve is farthest above the chord, which is located here by an argmax over the grid.
    """
    alpha = np.asarray(result.alpha, dtype=float)
    if quantity == "error":
        values = 1.0 - np.asarray(result.accuracy, dtype=float)
        barrier = getattr(result, "error_barrier", None)
    else:
        values = np.asarray(result.loss, dtype=float)
        barrier = getattr(result, "loss_barrier", None)
    where = None
    if barrier is not None and len(alpha) >= 2 and alpha[-1] != alpha[0]:
        chord = values[0] + (alpha - alpha[0]) / (alpha[-1] - alpha[0]) * (values[-1] - values[0])
        where = float(alpha[int(np.nanargmax(values - chord))])
    return Curve1D(alpha, values, label, quantity, barrier, where)


def surface_2d(result: Any, points: dict[str, tuple[float, float]] | None = None,
               trajectory: np.ndarray | None = None) -> Surface2D:
    """core.landscape.Landscape2D -> Surface2D with named points and an optional trajectory."""
    return Surface2D(
        np.asarray(result.alpha, dtype=float), np.asarray(result.beta, dtype=float),
        np.asarray(result.loss, dtype=float), np.asarray(result.accuracy, dtype=float),
        dict(points or {}), trajectory,
    )


def speed_entries(report: Any) -> list[SpeedEntry]:
    """core.speed.SpeedReport -> bars (latency in ms, spread as +- half the interquartile range)."""
    out = []
    for e in report.entries:
        ms = float(e.latency_s) * 1e3
        out.append(SpeedEntry(
            label=e.name, latency_ms=ms, flops=float(e.flops), eta=float(e.eta),
            params=int(e.params), latency_err_ms=ms * float(e.latency_spread) / 2,
        ))
    return out
