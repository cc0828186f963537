"""Per-layer quantities painted on the graph, coupling explained, two masks compared.

An *overlay* is any ``{layer or parameter name: value}`` dict with a label: kept fraction, score
statistics, FLOPs, parameter change after training, or what another analysis computes
(sensitivity, per-layer lambda_max). :class:`OverlayRegistry` holds them by name; the graph view
paints the chosen one and every analysis adds its own with :meth:`OverlayRegistry.set`.

Also here: why each member of a coupled channel group is coupled (residual add, concatenation,
normalisation, attention head, ...), which of the group's units a mask keeps, and the per-layer
comparison of two masks (kept by both / only A / only B, parameter and FLOP deltas). No Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from visualizer.core.structure.graph import example_input
from visualizer.core.structure.speed import count_flops
from visualizer.core.tasks import Step

# --- the registry ---------------------------------------------------------------------------------


@dataclass
class Overlay:
    """One paintable quantity. ``diverging``: signed values, coloured around 0 (a delta);
    ``unit`` is shown in the legend."""

    name: str
    values: dict[str, float]
    label: str = ""
    unit: str = ""
    diverging: bool = False
    source: str = ""  # who computed it ("masks", "sensitivity", ...)
    bounds: tuple[float, float] | None = None  # a fixed scale (fractions: (0, 1)), else the data's
    _range: tuple[float, float] | None = field(default=None, repr=False, compare=False)

    def range(self) -> tuple[float, float]:
        """The legend's scale: [min, max] of the finite values ([-m, m] when diverging);
        computed once (a slider move makes a new overlay)."""
        if self.bounds is not None:
            return self.bounds
        if self._range is None:
            vals = np.fromiter(self.values.values(), dtype=float, count=len(self.values))
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                self._range = (0.0, 1.0)
            elif self.diverging:
                m = float(np.abs(vals).max()) or 1.0
                self._range = (-m, m)
            else:
                lo, hi = float(vals.min()), float(vals.max())
                self._range = (lo, hi if hi > lo else lo + 1.0)
        return self._range


@dataclass
class OverlayRegistry:
    """Overlays by name, in the order they were added; listeners hear ``(name)`` on each change
    (``""`` when one is removed)."""

    overlays: dict[str, Overlay] = field(default_factory=dict)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def set(self, name: str, values: Mapping[str, float], label: str = "", unit: str = "",
            diverging: bool = False, source: str = "", bounds: tuple[float, float] | None = None) -> Overlay:
        # values as given (a slider move sends thousands: no per-entry conversion here)
        ov = Overlay(name, {k: v for k, v in values.items() if v is not None}, label or name, unit,
                     diverging, source, bounds)
        self.overlays[name] = ov
        for fn in list(self.listeners):
            fn(name)
        return ov

    def remove(self, name: str) -> None:
        if self.overlays.pop(name, None) is not None:
            for fn in list(self.listeners):
                fn("")

    def names(self) -> list[str]:
        return list(self.overlays)

    def get(self, name: str) -> Overlay | None:
        return self.overlays.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.overlays


# --- overlays computed from masks and weights -----------------------------------------------------


def layer_of(param: str) -> str:
    """'layer1.conv1.weight' -> 'layer1.conv1'."""
    return param.rsplit(".", 1)[0] if "." in param else param


def kept_fraction(masks) -> dict[str, float]:
    """Kept fraction per layer: kept / total over the layer's masked parameters."""
    kept: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, m in masks.masks.items():
        layer = layer_of(name)
        kept[layer] = kept.get(layer, 0) + int(m.sum())
        total[layer] = total.get(layer, 0) + m.numel()
    return {k: kept[k] / total[k] for k in kept if total[k]}


def score_statistics(scores: Mapping[str, object]) -> dict[str, dict[str, float]]:
    """Per layer: mean and standard deviation of the saliency scores (the criterion's)."""
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for name, s in scores.items():
        a = np.asarray(s, dtype=np.float64).ravel()
        if a.size:
            mean[layer_of(name)] = float(a.mean())
            std[layer_of(name)] = float(a.std())
    return {"score mean": mean, "score std": std}


def relative_change(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """||B - A||_2 / ||A||_2 over all (A, B) tensor pairs taken as one vector (the distance
    itself when ||A|| = 0)."""
    num = den = 0.0
    for a, b in pairs:
        a = a.detach().to("cpu", torch.float64)
        b = b.detach().to("cpu", torch.float64)
        num += float(torch.sum((b - a) ** 2))
        den += float(torch.sum(a ** 2))
    return math.sqrt(num / den) if den else math.sqrt(num)


def is_weight(param: str) -> bool:
    """A parameter that multiplies the input ('weight', 'in_proj_weight', 'weight_ih_l0'), not a
    bias or a norm's shift."""
    return "weight" in param.rsplit(".", 1)[-1]


def parameter_change(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Relative change of each layer's weights, ||w_after - w_before|| / ||w_before|| over the
    layer's weight tensors together (:func:`relative_change`)."""
    pairs: dict[str, list] = {}
    for name, w0 in before.items():
        w1 = after.get(name)
        if w1 is None or w1.shape != w0.shape or not is_weight(name):
            continue
        pairs.setdefault(layer_of(name), []).append((w0, w1))
    return {layer: relative_change(p) for layer, p in pairs.items()}


# --- two masks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerDiff:
    """One layer of an A/B comparison: weights kept by both, only by A, only by B, of ``total``."""

    both: int
    only_a: int
    only_b: int
    total: int

    @property
    def delta(self) -> int:
        """Parameters B keeps minus those A keeps."""
        return self.only_b - self.only_a


def mask_diff(a, b) -> dict[str, LayerDiff]:
    """Per layer: |A ∧ B|, |A ∧ ¬B|, |¬A ∧ B| over the parameters both masks cover."""
    out: dict[str, list[int]] = {}
    for name, ma in a.masks.items():
        mb = b.masks.get(name)
        if mb is None or mb.shape != ma.shape:
            continue
        row = out.setdefault(layer_of(name), [0, 0, 0, 0])
        row[0] += int((ma & mb).sum())
        row[1] += int((ma & ~mb).sum())
        row[2] += int((~ma & mb).sum())
        row[3] += ma.numel()
    return {k: LayerDiff(*v) for k, v in out.items()}


def diff_overlays(diff: Mapping[str, LayerDiff], layer_flops: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Overlays of an A/B comparison: fractions kept by both / only A / only B, the parameter
    delta (B - A) and, given dense FLOPs per layer, the useful-FLOP delta (B - A): a layer's
    useful FLOPs scale with its kept fraction, so delta = F_layer * (kept_B - kept_A) / total."""
    both = {k: d.both / d.total for k, d in diff.items() if d.total}
    only_a = {k: d.only_a / d.total for k, d in diff.items() if d.total}
    only_b = {k: d.only_b / d.total for k, d in diff.items() if d.total}
    params = {k: float(d.delta) for k, d in diff.items()}
    out = {"A/B kept by both": both, "A/B only A": only_a, "A/B only B": only_b, "Δ params (B − A)": params}
    if layer_flops:
        out["Δ FLOPs (B − A)"] = {k: layer_flops[k] * d.delta / d.total for k, d in diff.items()
                                  if d.total and k in layer_flops}
    return out


# --- coupling -------------------------------------------------------------------------------------

MERGE_OPS = {"add": "residual add", "iadd": "residual add", "add_": "residual add",
             "cat": "concatenation", "concat": "concatenation", "mul": "gate (elementwise product)"}


def _merge_after(graph, layer: str, depth: int = 6) -> str:
    """The first merging operation downstream of ``layer`` in the traced graph (through
    per-channel layers and activations), as a reason; '' when none within ``depth`` steps."""
    return _merge_node_after(graph, layer, depth)[1]


def _merge_node_after(graph, layer: str, depth: int = 6) -> tuple[object, str]:
    """(traced node, reason) of the first merge downstream of ``layer``; (None, '') when none."""
    if graph is None or layer not in graph:
        return None, ""
    frontier = [layer]
    seen = {layer}
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for s in graph.successors(n):
                if s in seen:
                    continue
                seen.add(s)
                label = str(graph.nodes[s].get("label", "")).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
                if label in MERGE_OPS:
                    return s, MERGE_OPS[label]
                nxt.append(s)
        frontier = nxt
    return None, ""


def coupling_reasons(group, graph=None, model=None) -> list[tuple[str, str, str]]:
    """(parameter, role, reason) for every member of a coupled channel group: why removing one
    of the group's units has to touch it. With ``model``, a member that holds only a slice of
    its tensor's channels is named as reading them through a concatenation."""
    out = []
    producers = list(dict.fromkeys(layer_of(m.param) for m in group.producers()))  # layers, not tensors
    sizes: dict[str, int] = {}
    if model is not None:
        state = dict(model.named_parameters())
        state.update(dict(model.named_buffers()))
        sizes = {m.param: int(state[m.param].shape[m.dim]) for m in group.members
                 if m.param in state and state[m.param].dim() > m.dim}

    def sliced(m) -> str:
        n = sizes.get(m.param)
        if n is None or not m.indices or len(m.indices) >= n:
            return ""
        return f" (channels {min(m.indices)}–{max(m.indices)} of {n}: a concatenation)"

    for m in group.members:
        layer = layer_of(m.param)
        if group.kind == "head":
            why = "attention head: its q/k/v rows and out-projection columns go together"
        elif group.kind == "lstm-unit":
            why = "LSTM hidden unit: 4 gate rows, the recurrent column and the next layer's input"
        elif m.buffer:
            why = "running statistics of a norm over these channels" + sliced(m)
        elif m.role == "norm":
            why = "normalisation over these channels" + sliced(m)
        elif m.role == "gate":
            why = "squeeze-and-excitation gate on these channels"
        elif m.role == "out":
            merge = _merge_after(graph, layer) if len(producers) > 1 else ""
            why = (f"produces the channels; {merge} joins it with {len(producers) - 1} other producer(s)"
                   if merge else "produces the channels" if len(producers) == 1 else
                   f"produces the same channels as {len(producers) - 1} other layer(s)")
        elif m.role == "in":
            lo = min(m.indices) if m.indices else 0
            why = "reads these channels" + sliced(m)
            if lo and not sliced(m):
                why = f"reads them through a concatenation (input slice from {lo})"
        else:
            why = m.role
        out.append((m.param, m.role, why))
    return out


SHORT_REASONS = {"head": "attention head", "lstm-unit": "LSTM unit", "norm": "batch norm", "gate": "SE gate",
                 "out": "produces it", "in": "reads it"}


def coupling_tags(group, graph=None, model=None) -> dict[str, str]:
    """A few words per traced node of a coupled group, to label the graph with: each member
    layer's role (produces it, reads it, batch norm, attention head, ...; "reads it via concat"
    for a slice of a concatenation) and each merge joining the group's producers ("residual
    add", "concatenation"). The full sentences are :func:`coupling_reasons`'."""
    modules = dict(model.named_modules()) if model is not None else {}
    tags: dict[str, str] = {}
    for param, role, why in coupling_reasons(group, graph, model):
        layer = layer_of(param)
        if layer in tags:
            continue  # a layer's weight speaks for its bias and running statistics
        tag = SHORT_REASONS.get(group.kind if group.kind in ("head", "lstm-unit") else role, role)
        if role == "norm" and layer in modules and "BatchNorm" not in type(modules[layer]).__name__:
            tag = "norm"
        if role == "in" and "concatenation" in why:
            tag = "reads via concat"
        tags[layer] = tag
    if len({layer_of(m.param) for m in group.producers()}) > 1:
        for m in group.producers():
            node, why = _merge_node_after(graph, layer_of(m.param))
            if node is not None:
                tags.setdefault(str(node), why)
    return tags


def units_kept(group, masks) -> np.ndarray:
    """Which of the group's units the mask keeps: a unit is kept while any producer weight of
    it survives (a unit all of whose producing weights are masked outputs zero)."""
    kept = np.zeros(group.size, dtype=bool)
    found = False
    for m in group.producers():
        mask = masks.masks.get(m.param) if masks is not None else None
        if mask is None:
            continue
        found = True
        dims = [d for d in range(mask.dim()) if d != m.dim]
        alive = mask.any(dim=dims).numpy() if dims else mask.numpy()
        for idx, unit in zip(m.indices, m.units):
            if idx < alive.size and alive[idx]:
                kept[unit] = True
    if not found:
        kept[:] = True
    return kept


def group_layers(groups: Iterable) -> dict[str, list[int]]:
    """Layer name -> ids of the coupled groups it belongs to."""
    out: dict[str, list[int]] = {}
    for g in groups:
        for m in g.members:
            ids = out.setdefault(layer_of(m.param), [])
            if g.id not in ids:
                ids.append(g.id)
    return out


def layer_flops(model, example=None) -> dict[str, float]:
    """Dense forward FLOPs per layer on ``example`` (one sample; core.structure.speed)."""
    x = example if example is not None else example_input(model, batch=1)
    return {k: float(v) for k, v in count_flops(model, x)[1].items()}


def computed(fn: Callable, *args, stage: str = "computing"):
    """A one-step job around a plain function (for the GUI's job runner)."""
    yield Step(stage, 0.0)
    return fn(*args)


# --- masked vs shrunk, in numbers ------------------------------------------------------------------


def before_after(report, prunable: int, bytes_per_param: int = 4) -> tuple[list[list], str]:
    """Rows (quantity, dense, masked, shrunk) of a core.structure.speed SpeedReport, and one line
    saying what the masked model saves. A masked model stores its zeros in dense tensors (plus a
    1-byte mask per prunable weight) and its kernels multiply them: only the shrunk model stores
    and runs fewer numbers (Hoefler et al. 2021; docs/theory.md §16)."""
    d, m, s = (report.entry(n) for n in ("dense", "masked", "shrunk"))
    total = d.params
    rows = [
        ["parameters stored", total, total, s.params],
        ["nonzero parameters", total, m.params, s.params],
        ["weight memory (MB)", total * bytes_per_param / 1e6, (total * bytes_per_param + prunable) / 1e6,
         s.params * bytes_per_param / 1e6],
        ["FLOPs executed", d.executed_flops, m.executed_flops, s.executed_flops],
        ["useful FLOPs", d.flops, m.flops, s.flops],
        ["latency (ms)", d.latency_s * 1e3, m.latency_s * 1e3, s.latency_s * 1e3],
    ]

    def ratio(a, b):
        return a / b if b else float("nan")

    note = (f"masked: {ratio(m.params, total):.0%} of the weights nonzero, yet it stores "
            f"{ratio(total * bytes_per_param + prunable, total * bytes_per_param):.2f}× the dense memory, executes "
            f"{ratio(m.executed_flops, d.executed_flops):.2f}× its FLOPs and takes "
            f"{ratio(m.latency_s, d.latency_s):.2f}× its time: masked weights save nothing by themselves. "
            f"shrunk: {ratio(s.params, total):.2f}× the memory, {ratio(s.executed_flops, d.executed_flops):.2f}× "
            f"the FLOPs, {ratio(s.latency_s, d.latency_s):.2f}× the time.")
    return rows, note
