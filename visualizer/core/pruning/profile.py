"""Density profile: how much of each layer a mask keeps, and what that saves (docs/theory.md §16,
channel, parameter and FLOP sparsity).

One :class:`ProfileRow` per prunable tensor, with three sparsities that pruning libraries'
users confuse (Torch-Pruning issues #199 and #214: "pruning ratio 0.5" is a channel ratio, and
it removes about 75% of a chain of convolutions' weights and FLOPs, because a removed channel
also removes the next layer's input slice):

- channel sparsity  s_ch = removed output channels / output channels, a channel being removed
  when the mask prunes every weight of it (row i of the weight along dim 0);
- parameter sparsity  s_p = 1 - kept / weights (the mask's own zeros);
- FLOP sparsity  s_F = 1 - live / weights, where ``live`` counts the kept weights that still
  read a live input: a convolution or linear layer spends the same multiply-adds on every
  weight (the output positions per weight), so its forward FLOPs F scale with the live weights,
  F_kept = F * live / weights. A weight is dead when the mask prunes it, or when its input
  channel is removed: every producer of that channel in its coupled group (residual adds
  included) has the channel's output row pruned (:func:`dead_inputs`, from
  :mod:`visualizer.core.structure.groups`). Without groups, s_F = s_p per layer.

The totals weigh the layers by their weights (s_p) or their FLOPs (s_F), which differ: the early
convolutions of an image network cost many FLOPs per weight. FLOPs per layer are forward FLOPs
for one example (``core.structure.speed.count_flops``, 2 per multiply-accumulate).

Per coupled group (:func:`group_profile`): one :class:`GroupRow` per prunable coupled channel
group G of ``core.structure.groups`` (the units structured pruning removes together, across a
residual add or a concatenation). Its weights are the masked slices of all its members (the
producers' rows, the consumers' input columns, per-channel norm weights), its kept fraction
kept(G) / weights(G) over those slices, and its unit sparsity the share of units with every
producer weight pruned. A convolution's weight is in two groups (its output rows in one, its
input columns in the one before), so the group rows do not add up to the layer rows.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class ProfileRow:
    """One prunable tensor under a mask (see the module docstring for the three sparsities)."""

    name: str
    shape: tuple[int, ...]
    params: int  # weights in the tensor
    kept: int  # weights the mask keeps
    live: int  # kept weights whose input channel is not removed
    channels: int  # output channels (dim 0)
    removed_channels: int  # output channels with every weight pruned
    flops: int | None  # dense forward FLOPs of the layer for one example (None: not counted)

    @property
    def density(self) -> float:
        """Kept fraction kept / weights."""
        return self.kept / self.params if self.params else 1.0

    @property
    def parameter_sparsity(self) -> float:
        return 1.0 - self.density

    @property
    def channel_sparsity(self) -> float:
        return self.removed_channels / self.channels if self.channels else 0.0

    @property
    def flop_sparsity(self) -> float:
        return 1.0 - self.live / self.params if self.params else 0.0

    @property
    def kept_flops(self) -> float | None:
        """F * live / weights: the FLOPs left on kept weights with live inputs."""
        return None if self.flops is None else self.flops * (self.live / self.params if self.params else 1.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = "x".join(str(v) for v in self.shape)
        d.update(density=self.density, channel_sparsity=self.channel_sparsity,
                 parameter_sparsity=self.parameter_sparsity, flop_sparsity=self.flop_sparsity,
                 kept_flops=self.kept_flops)
        return d


@dataclass(frozen=True)
class Totals:
    """The whole model: weights-weighted parameter sparsity, FLOPs-weighted FLOP sparsity."""

    params: int
    kept: int
    channels: int
    removed_channels: int
    flops: int | None
    kept_flops: float | None

    @property
    def parameter_sparsity(self) -> float:
        return 1.0 - self.kept / self.params if self.params else 0.0

    @property
    def channel_sparsity(self) -> float:
        return self.removed_channels / self.channels if self.channels else 0.0

    @property
    def flop_sparsity(self) -> float | None:
        if not self.flops or self.kept_flops is None:
            return None
        return 1.0 - self.kept_flops / self.flops


@dataclass(frozen=True)
class Profile:
    rows: list[ProfileRow]
    notes: tuple[str, ...] = ()

    def totals(self) -> Totals:
        rows = self.rows
        counted = [r for r in rows if r.flops is not None]
        flops = sum(r.flops for r in counted) if counted else None
        kept_flops = sum(r.kept_flops for r in counted) if counted else None
        return Totals(sum(r.params for r in rows), sum(r.kept for r in rows), sum(r.channels for r in rows),
                      sum(r.removed_channels for r in rows), flops, kept_flops)

    def densities(self) -> dict[str, float]:
        return {r.name: r.density for r in self.rows}


def _np(m) -> np.ndarray:
    return m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)


def _alive_along(mask: np.ndarray, dim: int) -> np.ndarray:
    """Per index along ``dim``: does the mask keep any weight of that slice?"""
    axes = tuple(a for a in range(mask.ndim) if a != dim)
    return mask.any(axis=axes) if axes else mask.astype(bool)


def dead_inputs(groups: Iterable, masks: Mapping[str, object]) -> dict[str, tuple[int, np.ndarray]]:
    """Input slices a mask removes through coupling: param -> (dim, bool per index along dim).

    A unit (channel) of a prunable coupled group is removed when every producer slice of it that
    the mask covers is pruned entirely (and at least one is covered); the consumers' slices of a
    removed unit (``role == "in"``: the next layers' input channels) are then dead."""
    out: dict[str, tuple[int, np.ndarray]] = {}
    arrays = {n: _np(m).astype(bool, copy=False) for n, m in masks.items()}
    for g in groups:
        if not getattr(g, "prunable", True):
            continue
        covered = np.zeros(g.size, dtype=bool)
        alive = np.zeros(g.size, dtype=bool)
        for m in g.producers():
            mask = arrays.get(m.param)
            if mask is None or m.dim >= mask.ndim:
                continue
            idx, units = np.asarray(m.indices, dtype=np.intp), np.asarray(m.units, dtype=np.intp)
            covered[units] = True
            np.logical_or.at(alive, units, _alive_along(mask, m.dim)[idx])
        removed = covered & ~alive
        if not removed.any():
            continue
        for m in g.consumers():
            mask = arrays.get(m.param)
            if mask is None or m.dim >= mask.ndim:
                continue
            idx, units = np.asarray(m.indices, dtype=np.intp), np.asarray(m.units, dtype=np.intp)
            dim, dead = out.get(m.param, (m.dim, np.zeros(mask.shape[m.dim], dtype=bool)))
            if dim != m.dim:
                continue
            dead[idx[removed[units]]] = True
            out[m.param] = (dim, dead)
    return out


def density_profile(masks: Mapping[str, object], order: Sequence[str] | None = None,
                    flops: Mapping[str, int] | None = None, groups: Iterable | None = None) -> Profile:
    """The :class:`Profile` of a mask (name -> bool tensor), rows in ``order`` (default: the
    mask's). ``flops``: dense forward FLOPs per parameter name; ``groups``: coupled channel
    groups (``core.structure.groups``) for the removed input channels."""
    names = [n for n in (order or masks) if n in masks]
    dead = dead_inputs(groups, masks) if groups is not None else {}
    rows = []
    for n in names:
        m = _np(masks[n]).astype(bool, copy=False)
        shape = tuple(int(v) for v in m.shape)
        kept = int(np.count_nonzero(m))
        live = kept
        if n in dead:
            dim, d = dead[n]
            view = [1] * m.ndim
            view[dim] = -1
            live = int(np.count_nonzero(m & ~d.reshape(view)))
        channels = shape[0] if m.ndim >= 1 else 1
        removed = int(channels - np.count_nonzero(_alive_along(m, 0))) if m.ndim >= 1 else int(kept == 0)
        f = None if flops is None or n not in flops else int(flops[n])
        rows.append(ProfileRow(n, shape, math.prod(shape), kept, live, channels, removed, f))
    notes = () if groups is not None else ("no coupled groups: FLOP sparsity ignores removed input channels",)
    return Profile(rows, notes)


@dataclass(frozen=True)
class GroupRow:
    """One prunable coupled group under a mask (module docstring): ``units`` channels (hidden
    units, heads), ``removed`` of them with every producer weight pruned; ``params`` weights in
    the members' masked slices, ``kept`` of them kept; ``layers`` the tensors it touches."""

    name: str
    kind: str
    units: int
    removed: int
    params: int
    kept: int
    layers: tuple[str, ...]

    @property
    def density(self) -> float:
        """Kept fraction kept(G) / weights(G) over the group's masked slices."""
        return self.kept / self.params if self.params else 1.0

    @property
    def unit_sparsity(self) -> float:
        return self.removed / self.units if self.units else 0.0


def group_unit_names(groups: Iterable) -> dict[int, str]:
    """Group id -> the name a group goes by (its label, with ``#id`` added where two prunable
    groups' labels coincide): the same names in the profile and the per-group curvature."""
    prunable = [g for g in groups if getattr(g, "prunable", True)]
    labels = [g.label for g in prunable]
    return {g.id: g.label if labels.count(g.label) == 1 else f"{g.label}#{g.id}" for g in prunable}


def group_profile(groups: Iterable, masks: Mapping[str, object]) -> list[GroupRow]:
    """A :class:`GroupRow` per prunable coupled group, in the groups' order: the kept weights of
    each member's slice (``indices`` along ``dim`` of a masked parameter; buffers and unmasked
    parameters such as biases are not counted) and the units whose producer slices are all
    pruned (a group none of whose producers is masked has no removed unit)."""
    groups = [g for g in groups if getattr(g, "prunable", True)]
    names = group_unit_names(groups)
    arrays = {n: _np(m).astype(bool, copy=False) for n, m in masks.items()}
    rows = []
    for g in groups:
        params = kept = 0
        layers: list[str] = []
        covered = np.zeros(g.size, dtype=bool)
        alive = np.zeros(g.size, dtype=bool)
        for m in g.members:
            mask = arrays.get(m.param)
            if m.buffer or mask is None or m.dim >= mask.ndim:
                continue
            idx = np.asarray(m.indices, dtype=np.intp)
            part = np.take(mask, idx, axis=m.dim)
            params += int(part.size)
            kept += int(np.count_nonzero(part))
            if m.param not in layers:
                layers.append(m.param)
            if m.role == "out":
                units = np.asarray(m.units, dtype=np.intp)
                covered[units] = True
                np.logical_or.at(alive, units, _alive_along(mask, m.dim)[idx])
        rows.append(GroupRow(names[g.id], g.kind, int(g.size), int(np.count_nonzero(covered & ~alive)),
                             params, kept, tuple(layers)))
    return rows


def flops_by_parameter(per_module: Mapping[str, int], names: Iterable[str]) -> dict[str, int]:
    """Module FLOPs (``count_flops``' per-layer dict, keyed by module path) per parameter name
    (the owning module's path is the name up to its last dot)."""
    out = {}
    for n in names:
        owner = n.rpartition(".")[0]
        if owner in per_module:
            out[n] = int(per_module[owner])
    return out


# --- comparisons ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A per-layer kept fraction to compare with the current mask (another criterion, scope or
    allocation at the same global density)."""

    label: str
    densities: dict[str, float]
    kept: dict[str, int] | None = None  # kept weights per layer, where the series knows them


ALLOCATION_MODULE = "visualizer.core.pruning.allocation"
# allocations whose per-layer budgets need only the shapes; ``global`` reads the criterion's
# scores, ``owl`` calibration data and ``sensitivity`` measured curves (a ranking job gathers them)
SHAPE_ONLY_ALLOCATIONS = ("uniform", "erk")
DATA_ALLOCATIONS = ("owl", "sensitivity")


def allocations_available() -> tuple[str, ...]:
    """Every allocation rule (``allocation.ALLOCATIONS``), when the allocation module is installed."""
    import importlib
    import importlib.util

    if not importlib.util.find_spec(ALLOCATION_MODULE):
        return ()
    return tuple(importlib.import_module(ALLOCATION_MODULE).ALLOCATIONS)


def allocation_series(allocation: str, density: float, shapes: Mapping[str, Sequence[int]]) -> Series:
    """Kept fraction per layer that ``allocation`` gives at global ``density``: its per-layer
    budgets k_l (``allocation.layer_budgets``, summing to floor(rho * d)) over the layer sizes."""
    import importlib

    budgets = importlib.import_module(ALLOCATION_MODULE).layer_budgets(allocation, density, shapes)
    return Series(f"allocation: {allocation}",
                  {n: budgets[n] / max(math.prod(s), 1) for n, s in shapes.items() if n in budgets},
                  {n: int(budgets[n]) for n in shapes if n in budgets})


def series_from_masks(label: str, masks: Mapping[str, object]) -> Series:
    return Series(label, {n: float(np.count_nonzero(_np(m))) / max(_np(m).size, 1) for n, m in masks.items()})


# --- CSV ----------------------------------------------------------------------------------------

CSV_COLUMNS = ("name", "unit_kind", "shape", "params", "kept", "live", "channels", "removed_channels", "flops",
               "density", "channel_sparsity", "parameter_sparsity", "flop_sparsity", "kept_flops")
# a group row's own columns (in the same file as the layer rows, told apart by ``unit_kind``)
GROUP_CSV_COLUMNS = ("units", "removed_units", "unit_sparsity", "group_kind", "layers")
TEXT_COLUMNS = ("name", "unit_kind", "group_kind", "layers")  # read back as text, never as numbers


def group_row_dict(row: GroupRow) -> dict:
    """A :class:`GroupRow` as the CSV's cells: kept fraction and unit sparsity, its tensors
    joined by ``;``."""
    return {"name": row.name, "unit_kind": "group", "params": row.params, "kept": row.kept,
            "density": row.density, "units": row.units, "removed_units": row.removed,
            "unit_sparsity": row.unit_sparsity, "group_kind": row.kind, "layers": ";".join(row.layers)}


def profile_csv(profile: Profile, series: Sequence[Series] = (),
                extra: Mapping[str, Mapping[str, float]] | None = None, *,
                group_rows: Sequence[GroupRow] | None = None,
                group_series: Mapping[str, Mapping[str, float]] | None = None,
                group_extra: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The profile as CSV text, one row per unit with a ``unit_kind`` column (``layer`` or
    ``group``): the group rows first when ``group_rows`` are given (what the group mode shows),
    then one row per tensor. Columns: :data:`CSV_COLUMNS` (the three sparsities named apart:
    ``channel_sparsity``, ``parameter_sparsity``, ``flop_sparsity``), the group columns
    :data:`GROUP_CSV_COLUMNS` when there are group rows, one ``density[<label>]`` column per
    comparison (``series`` per tensor, ``group_series`` {label: {group: kept fraction}} per
    group; empty where a comparison has no value for a unit), then one column per ``extra``
    (per tensor) or ``group_extra`` (per group) entry, e.g. ``lambda_max``."""
    buf = io.StringIO()
    extra, group_extra = dict(extra or {}), dict(group_extra or {})
    group_series = dict(group_series or {})
    labels = list(dict.fromkeys([s.label for s in series] + list(group_series)))
    extras = list(dict.fromkeys(list(extra) + list(group_extra)))
    cols = list(CSV_COLUMNS) + (list(GROUP_CSV_COLUMNS) if group_rows is not None else []) \
        + [f"density[{label}]" for label in labels] + extras
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for g in group_rows or ():
        d = group_row_dict(g)
        d.update({f"density[{label}]": group_series.get(label, {}).get(g.name) for label in labels})
        d.update({k: group_extra.get(k, {}).get(g.name) for k in extras})
        w.writerow([_cell(d.get(c)) for c in cols])
    by_label = {s.label: s for s in series}
    for r in profile.rows:
        d = {**r.to_dict(), "unit_kind": "layer"}
        d.update({f"density[{label}]": by_label[label].densities.get(r.name) if label in by_label else None
                  for label in labels})
        d.update({k: extra.get(k, {}).get(r.name) for k in extras})
        w.writerow([_cell(d.get(c)) for c in cols])
    return buf.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_profile_csv(profile: Profile, path: str | Path, series: Sequence[Series] = (),
                      extra: Mapping[str, Mapping[str, float]] | None = None, **groups) -> Path:
    """Write :func:`profile_csv` to ``path`` (a temporary file renamed: never half written);
    ``groups``: its keyword arguments ``group_rows``, ``group_series``, ``group_extra``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(profile_csv(profile, series, extra, **groups))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_profile_csv(path: str | Path) -> list[dict]:
    """The rows of a profile CSV as dicts of numbers (shape as a tuple, the text columns of
    :data:`TEXT_COLUMNS` as text, empty cells as None)."""
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            row: dict = {}
            for k, v in rec.items():
                if k in TEXT_COLUMNS:
                    row[k] = v if v or k == "name" else None
                elif k == "shape":
                    row[k] = tuple(int(x) for x in v.split("x")) if v else ()
                elif v == "":
                    row[k] = None
                else:
                    row[k] = float(v) if any(c in v for c in ".eE") or "inf" in v or "nan" in v else int(v)
            rows.append(row)
    return rows
