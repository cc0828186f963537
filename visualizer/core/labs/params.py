"""The labs' settings as controls: each lab's parameters with their ranges, clamping with a
visible note, the phase-transition grid by resolution, and the instant theory curve.

The window's Labs view and presentation mode build spin boxes from :data:`LAB_PARAMS`; every
request goes through :func:`clamp` first, so an out-of-range value is clamped and said, never
raised from inside a job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from visualizer.core.labs.mask_probability import p_correct


@dataclass(frozen=True)
class Param:
    name: str  # the lab function's keyword
    label: str
    lo: float
    hi: float
    step: float
    default: float
    integer: bool = True


LAB_PARAMS: dict[str, tuple[Param, ...]] = {
    # not a lab, but a slide with a setting: which channel of the coupled group to remove
    "explain-coupling": (Param("unit", "channel", 0, 511, 1, 0),),
    "mask-probability": (
        Param("n", "n weights", 1, 200, 1, 10),
        Param("k", "k kept", 0, 200, 1, 2),
        Param("sigma", "sigma", 0.1, 10.0, 0.1, 1.0, integer=False),
        Param("trials", "Monte Carlo draws", 1_000, 2_000_000, 10_000, 100_000),
    ),
    "phase-transition": (
        Param("n", "n", 10, 200, 5, 50),
        Param("grid", "grid cells per axis", 3, 40, 1, 9),
        Param("trials", "trials per cell", 1, 200, 1, 10),
    ),
    "a-optimal": (
        Param("m", "m rows", 2, 20, 1, 12),  # C(20, 10) is within a_optimal.MAX_SUBSETS
        Param("d", "d columns", 1, 10, 1, 3),
        Param("k", "k kept", 1, 20, 1, 6),
        Param("trials", "trials", 1, 200, 1, 20),
    ),
    "random-labels": (
        Param("rounds", "IMP rounds", 1, 6, 1, 2),
        Param("rate", "prune rate per round", 0.05, 0.95, 0.05, 0.5, integer=False),
        Param("epochs", "epochs", 1, 30, 1, 5),
    ),
}


def defaults(lab: str) -> dict[str, float]:
    return {p.name: p.default for p in LAB_PARAMS[lab]}


def _bounded(p: Param, value: float, notes: list[str]) -> float:
    v = min(max(value, p.lo), p.hi)
    v = round(v) if p.integer else v
    if not math.isclose(v, value):
        notes.append(f"{p.label} {value:g} is outside [{p.lo:g}, {p.hi:g}]: clamped to {v:g}")
    return v


def _at_most(values: dict, name: str, limit: float, why: str, notes: list[str]) -> None:
    if values[name] > limit:
        notes.append(f"{name} {values[name]:g} clamped to {limit:g} ({why})")
        values[name] = limit


def clamp(lab: str, values: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """The settings a lab can run with, and one note per value that had to change.

    Each value is clamped to its range; then the constraints between them: k <= n (a support
    inside n weights) and d <= k <= m (A-optimal; m <= 20 keeps C(m, k) within its exhaustive
    search)."""
    notes: list[str] = []
    out = defaults(lab)
    for p in LAB_PARAMS[lab]:
        if p.name in values:
            out[p.name] = _bounded(p, float(values[p.name]), notes)
    if lab == "mask-probability":
        _at_most(out, "k", out["n"], "k <= n", notes)
    if lab == "a-optimal":
        _at_most(out, "d", out["m"], "d <= m", notes)
        if out["k"] < out["d"]:
            notes.append(f"k {out['k']:g} raised to d = {out['d']:g} (A_S^T A_S must be invertible)")
            out["k"] = out["d"]
        _at_most(out, "k", out["m"], "k <= m", notes)
    integer = {p.name: p.integer for p in LAB_PARAMS[lab]}
    return {k: int(v) if integer[k] else float(v) for k, v in out.items()}, notes


def grid_axis(cells: int) -> tuple[float, ...]:
    """cells evenly spaced values in (0, 1): 1/(c+1), ..., c/(c+1) (9 cells: 0.1 ... 0.9)."""
    return tuple(round((i + 1) / (cells + 1), 6) for i in range(cells))


def job_options(lab: str, values: dict[str, float]) -> dict:
    """Clamped settings as the lab function's keywords (the grid becomes deltas and rhos)."""
    options, _ = clamp(lab, values)
    if lab == "phase-transition":
        axis = grid_axis(options.pop("grid"))
        options.update(deltas=axis, rhos=axis)
    return options


def theory_curve(lab: str, values: dict[str, float]) -> tuple[list[float], list[float]] | None:
    """The lab's formula on a fine grid, cheap enough for every control change (mask-probability:
    p(t/sigma) for n and k); None where the theory does not depend on the controls."""
    if lab != "mask-probability":
        return None
    options, _ = clamp(lab, values)
    x = np.linspace(0.0, 3.0, 151)
    return [float(v) for v in x], [float(v) for v in p_correct(x, options["n"], options["k"])]
