"""FLOPs, latency and the hardware-efficiency factor eta of dense, masked and shrunk models.

The time-to-train paradox (docs/theory.md §16): time per step is not just the number of calculations;
a hardware efficiency factor eta says which fraction of the hardware's speed a network achieves
(dense ~0.60 of peak, irregular sparse ~0.10), so a sparse network with a tenth of the FLOPs can
take longer per step. We measure it:

* F_x — the FLOPs model x needs for one forward pass: counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-accumulate), per layer. For the
  unstructured-masked model the useful FLOPs are F_dense scaled, layer by layer, by the layer's
  weight density (the zeros still go through the dense kernels, so they are executed but useless).
* t_x — median wall-clock latency of one forward pass (eval, no_grad), the three models measured
  interleaved in one run so that machine noise hits them alike.
* achieved FLOP/s R_x = F_x / t_x (useful FLOPs per second).
* eta_x = R_x / R_ref with R_ref = R_dense: the efficiency relative to the dense model on the same
  hardware, so eta_dense = 1 by definition. With a known peak P (``peak_flops``) the absolute
  factor is eta_abs_x = R_x / P. Either way t_x = F_x / (eta_x R_ref): the speed-up over dense is
  t_dense / t_x = eta_x * F_dense / F_x, and FLOP savings pay off only when eta stays near 1.

:func:`step_time` and :func:`time_to_train` are the speed model's formulas (time per step = FLOPs /
(eta * peak); total = steps * time per step).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.device import device_name
from visualizer.core.layers import private_view
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.structure.graph import example_input
from visualizer.core.structure.groups import find_groups_job, group_scores
from visualizer.core.structure.shrink import StructuredResult, structured_prune_job
from visualizer.core.tasks import Step, exclusive, run, sub

LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase, nn.MultiheadAttention)


def step_time(flops: float, eta: float, peak_flops: float) -> float:
    """Seconds per step: t = F / (eta * P) (docs/theory.md §16)."""
    if eta <= 0 or peak_flops <= 0:
        raise ValueError("eta and peak_flops must be positive")
    return flops / (eta * peak_flops)


def time_to_train(steps: int, flops: float, eta: float, peak_flops: float) -> float:
    """Total training time = steps * F / (eta * P) (docs/theory.md §16)."""
    return steps * step_time(flops, eta, peak_flops)


def count_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Total forward FLOPs and FLOPs per leaf layer (module path -> FLOPs) on ``example``.

    Runs with grad enabled on purpose: without grad, ``nn.MultiheadAttention`` takes a fused fast
    path (``_native_multi_head_attention``) that FlopCounterMode has no formula for (counts 0).

    The forward pass holds the exclusive side of core.tasks.STEP_LOCK: FlopCounterMode tracks
    modules through process-wide module hooks (torch.utils.module_tracker), which another job's
    forward pass would run into. The RNN hooks and the eval flag are set on a private view."""
    from torch.utils.flop_counter import FlopCounterMode

    model = private_view(model).eval()
    counter = FlopCounterMode(display=False)
    rnn_flops: dict[str, int] = {}
    handles = [mod.register_forward_hook(_rnn_hook(name, rnn_flops))
               for name, mod in model.named_modules() if isinstance(mod, nn.LSTM | nn.GRU | nn.RNN)]
    try:
        with exclusive("FLOP count"), counter, torch.enable_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    counts = counter.get_flop_counts()
    total = int(sum(counts.get("Global", {}).values())) + sum(rnn_flops.values())
    for name, f in rnn_flops.items():  # FlopCounterMode has no formula for fused RNN kernels
        counts[name] = {"rnn": f}
    leaves = {n for n, m in model.named_modules() if n and not list(m.children()) or isinstance(m, LAYER_TYPES)}
    per_layer = {}
    for name, ops in counts.items():
        # FlopCounterMode names submodules with the root's class as prefix on some versions
        short = name.split(".", 1)[1] if name not in leaves and "." in name else name
        if short in leaves:
            per_layer[short] = per_layer.get(short, 0) + int(sum(ops.values()))
    return total, per_layer


def _rnn_hook(name: str, out: dict[str, int]):
    """FLOPs of a recurrent layer: per layer and direction, each of T steps multiplies the input
    and the state by the gate matrices: 2 * T * N * G*H * (I_l + H), G = 4 (LSTM), 3 (GRU), 1."""

    def hook(mod, inputs, output):
        x = inputs[0]
        if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3):
            return
        steps, batch = (x.shape[1], x.shape[0]) if (mod.batch_first and x.ndim == 3) else (x.shape[0], x.shape[1] if x.ndim == 3 else 1)
        gates = {"LSTM": 4, "GRU": 3}.get(type(mod).__name__, 1)
        dirs = 2 if mod.bidirectional else 1
        h = mod.hidden_size
        f = 0
        for layer in range(mod.num_layers):
            inp = mod.input_size if layer == 0 else h * dirs
            f += dirs * 2 * steps * batch * gates * h * (inp + h)
        out[name] = out.get(name, 0) + int(f)

    return hook


def useful_flops(per_layer: dict[str, int], total: int, model: nn.Module, masks: MaskSet) -> int:
    """FLOPs that multiply nonzero weights: each masked layer's FLOPs times its weight density."""
    density = {}
    params = dict(model.named_parameters())
    users = {}  # a tied weight (GPT-2's embedding and head) saves FLOPs in every layer that uses it
    for mod_name, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            users.setdefault(id(p), []).append(f"{mod_name}.{pname}" if mod_name else pname)
    for name, m in masks.masks.items():
        p = params.get(name)
        for user in users.get(id(p), [name]) if p is not None else [name]:
            layer = user.rpartition(".")[0]
            kept, tot = density.get(layer, (0, 0))
            density[layer] = (kept + int(m.sum()), tot + m.numel())
    saved = 0.0
    for layer, f in per_layer.items():
        for key in (layer, layer.rpartition(".")[0]):
            if key in density and density[key][1]:
                kept, tot = density[key]
                saved += f * (1 - kept / tot)
                break
    return int(round(total - saved))


@dataclass
class SpeedEntry:
    name: str  # "dense", "masked", "shrunk"
    params: int  # parameters stored (masked: nonzero prunable + the rest)
    flops: int  # useful FLOPs per forward pass
    executed_flops: int  # FLOPs the kernels actually run
    latency_s: float  # median seconds per forward pass
    latency_spread: float  # (p75 - p25) / median
    flops_per_s: float  # achieved useful FLOP/s = flops / latency
    eta: float  # flops_per_s / dense flops_per_s (docs/theory.md §16, relative to dense)
    eta_abs: float | None = None  # flops_per_s / peak when a peak is given
    per_layer_flops: dict[str, int] = field(default_factory=dict)


@dataclass
class SpeedReport:
    entries: list[SpeedEntry]
    device: str
    batch: int
    repeats: int
    threads: int

    def entry(self, name: str) -> SpeedEntry:
        return next(e for e in self.entries if e.name == name)

    def speedups(self) -> dict[str, float]:
        """t_dense / t_x for every model."""
        dense = self.entry("dense").latency_s
        return {e.name: dense / e.latency_s if e.latency_s > 0 else float("nan") for e in self.entries}

    def to_json(self) -> dict:
        sp = self.speedups()
        return {
            "device": self.device, "batch": self.batch, "repeats": self.repeats, "threads": self.threads,
            "models": [{"name": e.name, "params": e.params, "flops": e.flops, "executed_flops": e.executed_flops,
                        "latency_s": e.latency_s, "latency_spread": e.latency_spread,
                        "flops_per_s": e.flops_per_s, "eta": e.eta, "eta_abs": e.eta_abs,
                        "speedup": sp[e.name]} for e in self.entries],
        }


def _time_once(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward pass. On CUDA, kernels run asynchronously: the time is measured
    between two CUDA events recorded on the stream around the call, read after synchronising
    (the host clock would measure the launch, not the work); elsewhere by the host clock."""
    if device.type == "cuda":
        with torch.cuda.device(device):  # events record on the current stream of this device
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
    t0 = time.perf_counter()
    model(x)
    return time.perf_counter() - t0


def magnitude_masks_like(model: nn.Module, kept: int) -> MaskSet:
    """Global magnitude mask over the prunable weights keeping exactly ``kept`` of them (ties by
    position): the unstructured model with the same parameter count as a shrunk one."""
    masks = MaskSet.for_model(model)
    params = dict(model.named_parameters())
    flat = torch.cat([params[n].detach().abs().reshape(-1).cpu() for n in masks.masks])
    kept = max(0, min(kept, flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if kept:
        keep[torch.topk(flat, kept, sorted=False).indices] = True
    start = 0
    for n, m in masks.masks.items():
        masks.masks[n] = keep[start:start + m.numel()].reshape(m.shape).clone()
        start += m.numel()
    masks.metadata.update({"criterion": "magnitude", "scope": "global"})
    return masks


def speed_job(
    dense: nn.Module,
    shrunk: nn.Module,
    example: torch.Tensor,
    masks: MaskSet | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
    peak_flops: float | None = None,
    partials: bool = False,
) -> Generator[Step, None, SpeedReport]:
    """Measure dense, unstructured-masked (``masks``, by default a global magnitude mask with the
    shrunk model's number of prunable weights) and shrunk models in one interleaved run. With
    ``partials`` each timing round carries the report over the rounds so far (medians of fewer
    repeats: a figure that settles as it fills)."""
    device = torch.device(device)
    if masks is None:
        kept = sum(p.numel() for p in prunable_parameters(shrunk).values())
        masks = magnitude_masks_like(dense, kept)
    models = {"dense": copy.deepcopy(dense).eval().to(device)}
    masked = copy.deepcopy(dense).eval()
    masks.apply(masked)
    models["masked"] = masked.to(device)
    models["shrunk"] = copy.deepcopy(shrunk).eval().to(device)
    x = example.to(device)
    yield Step("counting FLOPs", 0.02)
    flops = {name: count_flops(m, x) for name, m in models.items()}
    f_dense, per_dense = flops["dense"]
    useful = {
        "dense": f_dense,
        "masked": useful_flops(per_dense, f_dense, dense, masks),
        "shrunk": flops["shrunk"][0],
    }
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.no_grad():
        for _ in range(warmup):
            for m in models.values():
                _time_once(m, x, device)
    nonzero = sum(int(m.sum()) for m in masks.masks.values())
    masked_total = sum(p.numel() for p in dense.parameters()) - masks.total() + nonzero
    params = {"dense": sum(p.numel() for p in dense.parameters()), "masked": masked_total,
              "shrunk": sum(p.numel() for p in shrunk.parameters())}
    with torch.no_grad():
        for i in range(repeats):
            for name, m in models.items():  # interleaved: noise hits all three alike
                times[name].append(_time_once(m, x, device))
            so_far = (SpeedReport(_entries(times, useful, flops, params, peak_flops), device_name(device),
                                  int(example.shape[0]), i + 1, torch.get_num_threads()) if partials else None)
            yield Step(f"timing {i + 1}/{repeats}", 0.05 + 0.95 * (i + 1) / repeats, so_far)
    return SpeedReport(_entries(times, useful, flops, params, peak_flops), device_name(device),
                       int(example.shape[0]), repeats, torch.get_num_threads())


def _entries(times: dict[str, list[float]], useful: dict, flops: dict, params: dict,
             peak_flops: float | None) -> list[SpeedEntry]:
    """One entry per model from its timings: the median latency, its spread (interquartile range
    / median), useful FLOPs per second and that rate relative to the dense model's."""
    entries = []
    rate_dense = None
    for name in times:
        ts = sorted(times[name])
        med = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [med, med, med]
        rate = useful[name] / med if med > 0 else float("nan")
        if name == "dense":
            rate_dense = rate
        entries.append(SpeedEntry(
            name, params[name], useful[name], flops[name][0], med, (q[2] - q[0]) / med if med else 0.0,
            rate, rate / rate_dense if rate_dense else float("nan"),
            rate / peak_flops if peak_flops else None, flops[name][1]))
    return entries


def shrink_job(
    model: nn.Module,
    density: float,
    example: torch.Tensor,
    criterion: str = "group-l2",
    scope: str = "layer",
    scores: dict[str, torch.Tensor] | None = None,
) -> Generator[Step, None, StructuredResult]:
    """Job: find the coupled groups of ``model`` and build the physically smaller copy keeping
    ``density`` of each group's units, ranked by the group ``criterion`` or, given elementwise
    ``scores`` (a mask criterion's), by their sum over each unit's slices
    (core.structure.groups.group_scores). ``model`` is only read."""
    yield Step("finding groups", 0.0)
    groups = (yield from sub(find_groups_job(model, example), 0.0, 0.5, "structure: ")).groups
    if not any(g.prunable for g in groups):
        raise ValueError("the model has no structurally prunable group")
    unit_scores = group_scores(model, groups, criterion, scores)
    return (yield from sub(structured_prune_job(model, groups, unit_scores, density, example, scope=scope),
                           0.5, 1.0, "shrink: "))


def measure_speed(
    model: nn.Module,
    density: float = 0.5,
    *,
    shrunk: nn.Module | None = None,
    example: torch.Tensor | None = None,
    dataset: str | None = None,
    batch: int = 64,
    criterion: str = "group-l2",
    scope: str = "layer",
    masks: MaskSet | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
    peak_flops: float | None = None,
    partials: bool = False,
) -> Generator[Step, None, SpeedReport]:
    """Job: shrink ``model`` to ``density`` (group ``criterion``, unless ``shrunk`` is given) and
    measure dense vs unstructured-masked vs shrunk in one run (see :func:`speed_job`; with
    ``partials`` the report so far after each timing round)."""
    if example is None:
        example = example_input(model, dataset, batch=batch)
    if shrunk is None:
        res = yield from sub(shrink_job(model, density, example[:2], criterion, scope), 0.0, 0.1)
        shrunk = res.shrunk.model
    report = yield from sub(speed_job(model, shrunk, example, masks, repeats, warmup, device, peak_flops, partials),
                            0.1, 1.0)
    return report


def compare_speed(*args, **kwargs) -> SpeedReport:
    """:func:`measure_speed` driven to the end (CLI, notebooks)."""
    return run(measure_speed(*args, **kwargs))
