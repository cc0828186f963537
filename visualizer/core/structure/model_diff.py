"""Two models compared layer by layer: dense vs shrunk, before vs after training.

Layers are paired by module name (a shrunk model keeps its layers' names, only their shapes
change; a layer that reads a subset of its input channels through
:class:`~visualizer.core.structure.shrink.InputSelect` is named by the layer it wraps). For every
layer that holds parameters or runs FLOPs in either model, :func:`model_diff` gives

- its parameter count in A and B and the delta ``P_B - P_A`` (relative: ``(P_B - P_A) / P_A``);
- its forward FLOPs on one example in A and B and their delta (counted by
  :func:`visualizer.core.structure.speed.count_flops`, 2 per multiply-accumulate);
- when every weight tensor of the layer has the same shape in both, the relative weight change
  ``||W_B - W_A||_2 / ||W_A||_2`` over the layer's weight tensors together (biases and norm shifts
  left out, as in the per-layer parameter-change plots of fine-tuning studies, e.g.
  Zhou et al. 2019, Frankle et al. 2020).

A masked model keeps every weight stored: diffing it against its dense original gives zero
deltas, which is the point of the masked-vs-shrunk table (core.structure.overlays.before_after).
No Qt.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.errors import first_line
from visualizer.core.structure.graph import example_input
from visualizer.core.structure.overlays import is_weight, relative_change
from visualizer.core.structure.shrink import InputSelect
from visualizer.core.structure.speed import count_flops, shrink_job
from visualizer.core.tasks import Step, run, sub

# the per-layer quantities of a diff, as overlays: (name, quantity, legend label with {a} and {b},
# diverging, fixed scale or None)
OVERLAYS = (
    ("models: relative Δ params", "relative params", "parameters ({b} − {a}) / {a}", True, (-1.0, 1.0)),
    ("models: Δ params (B − A)", "delta params", "Δ parameters ({b} − {a})", True, None),
    ("models: Δ FLOPs (B − A)", "delta flops", "Δ FLOPs ({b} − {a}, 1 sample)", True, None),
    ("models: weight change", "weight change", "weight change ‖{b} − {a}‖ / ‖{a}‖", False, None),
)
SHORT_NAMES = {"shrunk": ("dense", "shrunk"), "training": ("before", "after")}  # (A, B) in legends


@dataclass(frozen=True)
class LayerChange:
    """One layer of a model diff."""

    layer: str
    params_a: int
    params_b: int
    flops_a: float | None  # None: the model did not run on the example
    flops_b: float | None
    weight_change: float | None  # ||W_B - W_A|| / ||W_A|| when every weight shape is equal

    @property
    def delta_params(self) -> int:
        return self.params_b - self.params_a

    @property
    def delta_flops(self) -> float | None:
        return None if self.flops_a is None or self.flops_b is None else self.flops_b - self.flops_a

    @property
    def relative_params(self) -> float | None:
        """(P_B - P_A) / P_A (None for a layer A does not have)."""
        return self.delta_params / self.params_a if self.params_a else None

    @property
    def relative_flops(self) -> float | None:
        d = self.delta_flops
        return d / self.flops_a if d is not None and self.flops_a else None


@dataclass
class ModelDiff:
    """Per-layer changes from model A to model B, and what A and B are."""

    layers: dict[str, LayerChange]
    label_a: str = "A"
    label_b: str = "B"
    kind: str = ""  # "shrunk" or "training"
    notices: list[str] = field(default_factory=list)
    model_b: nn.Module | None = field(default=None, repr=False, compare=False)  # B (a shrunk copy)

    def totals(self) -> dict[str, float | None]:
        """Whole-model parameters and FLOPs of A and B."""
        def total(attr: str) -> float | None:
            vals = [getattr(c, attr) for c in self.layers.values()]
            return None if any(v is None for v in vals) else sum(vals)

        return {k: total(k) for k in ("params_a", "params_b", "flops_a", "flops_b")}

    def values(self, quantity: str) -> dict[str, float]:
        """One number per layer: ``delta params``, ``delta flops``, ``relative params``,
        ``relative flops`` or ``weight change`` (layers without the number left out)."""
        get = {"delta params": lambda c: float(c.delta_params), "delta flops": lambda c: c.delta_flops,
               "relative params": lambda c: c.relative_params, "relative flops": lambda c: c.relative_flops,
               "weight change": lambda c: c.weight_change}[quantity]
        out = {}
        for name, c in self.layers.items():
            v = get(c)
            if v is not None:
                out[name] = float(v)
        return out

    def overlays(self) -> dict[str, tuple[dict[str, float], str, bool, tuple[float, float] | None]]:
        """The graph's overlays of this diff: name -> (values, short legend label, diverging,
        fixed scale). Weight change only where some layer kept its shapes, Δ FLOPs only where
        both models ran; the relative change on -100% .. +100% whatever the data."""
        a, b = SHORT_NAMES.get(self.kind, ("A", "B"))
        out = {}
        for name, q, label, diverging, bounds in OVERLAYS:
            vals = self.values(q)
            if vals:
                out[name] = (vals, label.format(a=a, b=b), diverging, bounds)
        return out

    def main_overlay(self) -> str:
        """The overlay that shows this diff best: the weight change between two versions of one
        model, the relative parameter change otherwise (the overview's tile colour, too)."""
        return "models: weight change" if self.kind == "training" else "models: relative Δ params"

    def tile_quantity(self) -> str:
        """What the overview colours a layer's tile by: the weight change for two versions of
        the same model (before/after training), the relative parameter change otherwise."""
        return "weight change" if self.kind == "training" else "relative params"


def _own_parameters(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Layer name -> its own parameters (attr -> tensor); a layer wrapped by InputSelect under
    the wrapper's name (the name the layer had before shrinking)."""
    wrappers = {name for name, m in model.named_modules() if isinstance(m, InputSelect)}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, m in model.named_modules():
        own = dict(m.named_parameters(recurse=False))
        if own:
            out[_unwrapped(name, wrappers)] = own
    return out


def _unwrapped(name: str, wrappers: set[str]) -> str:
    parent, _, attr = name.rpartition(".")
    return parent if attr == "layer" and parent in wrappers else name


def _flops(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    wrappers = {name for name, m in model.named_modules() if isinstance(m, InputSelect)}
    per_layer = count_flops(model, example)[1]
    out: dict[str, float] = {}
    for name, f in per_layer.items():
        key = _unwrapped(name, wrappers)
        out[key] = out.get(key, 0.0) + float(f)
    return out


def model_diff(a: nn.Module, b: nn.Module, example: torch.Tensor | None = None, label_a: str = "A",
               label_b: str = "B", kind: str = "") -> ModelDiff:
    """Per-layer parameter, FLOP and weight changes from ``a`` to ``b`` (see the module
    docstring). FLOPs are counted on ``example`` (default: one guessed sample of ``a``); when a
    model does not run on it, the diff carries no FLOPs and says so in ``notices``."""
    return run(model_diff_job(a, b, example, label_a, label_b, kind))


def model_diff_job(a: nn.Module, b: nn.Module, example: torch.Tensor | None = None, label_a: str = "A",
                   label_b: str = "B", kind: str = "") -> Generator[Step, None, ModelDiff]:
    """Job form of :func:`model_diff`: parameters, then FLOPs of A, then of B."""
    notices: list[str] = []
    yield Step("diff: parameters", 0.0)
    pa, pb = _own_parameters(a), _own_parameters(b)
    flops_a: dict[str, float] | None = None
    flops_b: dict[str, float] | None = None
    try:
        x = example if example is not None else example_input(a, batch=1)
        yield Step("diff: FLOPs of A", 0.2)
        flops_a = _flops(a, x)
        yield Step("diff: FLOPs of B", 0.6)
        flops_b = _flops(b, x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        flops_a = flops_b = None
        notices.append(f"no FLOPs: the models do not run on the example input ({first_line(exc, limit=120)})")
    yield Step("diff: weights", 0.9)
    names = list(dict.fromkeys([*pa, *(flops_a or {}), *pb, *(flops_b or {})]))
    layers = {}
    for name in names:
        own_a, own_b = pa.get(name, {}), pb.get(name, {})
        fa = None if flops_a is None else flops_a.get(name, 0.0)
        fb = None if flops_b is None else flops_b.get(name, 0.0)
        if not own_a and not own_b and not fa and not fb:
            continue
        wa = {k: v for k, v in own_a.items() if is_weight(k)}
        wb = {k: v for k, v in own_b.items() if is_weight(k)}
        same = bool(wa) and wa.keys() == wb.keys() and all(wa[k].shape == wb[k].shape for k in wa)
        change = relative_change((wa[k], wb[k]) for k in wa) if same else None
        layers[name] = LayerChange(name, sum(p.numel() for p in own_a.values()),
                                   sum(p.numel() for p in own_b.values()), fa, fb, change)
    yield Step("diff: done", 1.0)
    return ModelDiff(layers, label_a, label_b, kind, notices)


def shrunk_diff_job(model: nn.Module, density: float, example: torch.Tensor | None = None,
                    criterion: str = "group-l2", scores: Mapping[str, torch.Tensor] | None = None,
                    scope: str = "layer", label: str = "") -> Generator[Step, None, ModelDiff]:
    """Job: shrink ``model`` to ``density`` of each coupled group's units (the structured pruner,
    :func:`visualizer.core.structure.speed.shrink_job`, ranked by ``criterion`` or by the sum of
    elementwise ``scores``) and diff the dense model (A) against the shrunk one (B)."""
    x = example if example is not None else example_input(model, batch=2)
    res = yield from sub(shrink_job(model, density, x[:2], criterion, scope,
                                    None if scores is None else dict(scores)), 0.0, 0.6)
    diff = yield from sub(model_diff_job(model, res.shrunk.model, x[:1], "the current model",
                                         label or f"shrunk to {density:.0%} of each group's units", "shrunk"),
                          0.6, 1.0)
    diff.notices.extend(res.plan.notices)
    diff.model_b = res.shrunk.model
    return diff
