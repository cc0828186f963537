"""Sensitivity analysis with the cached prefix against a plain loop, in the same run.

The peer is what a sensitivity tool without the split does: for every unit and every level,
evaluate the whole masked model (:func:`visualizer.core.training.evaluate.evaluate_job`, the
app's one evaluation). The analysis (:func:`visualizer.core.training.sensitivity.sensitivity_job`)
computes the activations before the unit once per batch and runs only the rest of the network
per level, channels-last on the CPU for conv nets (visualizer.core.device.conv_layout). Printed
per model: both wall and CPU times (best of ``--repeats`` interleaved runs), the ratio plain /
cached, and whether every row agrees with the plain loop: accuracy exactly equal, loss within
``LOSS_RTOL`` relative (the layout changes the summation order, so float rounding only). Target:
>= 2x.

``--layout-peer`` also times the plain loop run channels-last itself (a copy of the model and
the inputs in that layout): the ratio cached / that peer is what the cached prefix alone gives
(the split), the rest of the first ratio is the layout.

Models: the bundled resnet-mini (and densenet-mini, inception-mini) on the digits test split;
torchvision's ResNet-18 (random weights, 64 synthetic 3x64x64 images, 10 classes) when
torchvision is installed. One torch thread (the machine is shared).

Run: .venv/bin/python tests/benchmarks/bench_sensitivity.py [--repeats 3] [--layout-peer]
[--levels 0.9,0.7,0.5,0.3,0.2,0.1,0.05]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from visualizer.core.data.sources import Dataset, load_dataset  # noqa: E402
from visualizer.core.device import conv_layout, in_layout  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.pruning.masks import MaskSet  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training.evaluate import evaluate_job  # noqa: E402
from visualizer.core.training.sensitivity import (  # noqa: E402
    DEFAULT_LEVELS,
    SensitivityConfig,
    list_units,
    sensitivity_job,
    unit_masks,
)
from visualizer.core.workspace import Workspace  # noqa: E402

LOSS_RTOL = 1e-6  # the largest relative loss difference allowed against the plain loop (accuracy: equal)


def plain_loop(ws: Workspace, levels, criterion: str = "magnitude", layout: bool = False) -> list[tuple]:
    """(unit, level, loss, accuracy) by evaluating the whole masked model for every cell
    (``layout``: a channels-last copy of the model on channels-last inputs, where conv_layout
    says so)."""
    model = ws.model
    batches = ws.evaluation_batches()
    scores = run(ws.scores(criterion))
    fmt = conv_layout(model, "cpu") if layout else None
    if fmt is not None:
        model = copy.deepcopy(model).to(memory_format=fmt)
        batches = [(in_layout(x, fmt), y) for x, y in batches]
    out = []
    for unit in list_units(model, "layer"):
        for level in levels:
            masks = MaskSet.for_model(model)
            masks.masks.update(unit_masks(unit, level, scores))
            if fmt is not None:  # m in the layout's strides keeps m * w in it where a dimension is 1
                masks.masks.update({k: in_layout(m, fmt) for k, m in masks.masks.items()})
            ev = run(evaluate_job(model, batches, masks))
            out.append((unit.name, level, ev.loss, ev.accuracy))
    return out


def cached(ws: Workspace, levels, criterion: str = "magnitude") -> list[tuple]:
    res = run(sensitivity_job(ws, SensitivityConfig(criterion=criterion, levels=levels)))
    return [(r["unit"], r["level"], r["loss"], r["accuracy"]) for r in res.rows]


def timed(fn):
    """(result, wall seconds, CPU seconds of this process): with one torch thread the CPU time
    is the work done, which other programs on a shared machine disturb far less than the wall."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def agreement(a: list[tuple], b: list[tuple]) -> tuple[bool, float, tuple | None]:
    """(every cell agrees, the largest relative loss difference, the first cell that does not):
    same units and levels, equal accuracy, loss within LOSS_RTOL."""
    worst, bad = 0.0, None
    for x, y in zip(a, b, strict=True):
        rel = abs(x[2] - y[2]) / max(abs(x[2]), 1e-12)
        worst = max(worst, rel)
        if bad is None and (x[:2] != y[:2] or x[3] != y[3] or rel > LOSS_RTOL):
            bad = (x, y)
    return bad is None, worst, bad


def compare(name: str, ws: Workspace, levels, repeats: int, layout_peer: bool = False) -> None:
    cached(ws, levels[:1])  # warm both paths (tracing code, allocator)
    peers = {"plain": lambda: plain_loop(ws, levels), "cached prefix": lambda: cached(ws, levels)}
    if layout_peer:
        peers["plain, channels-last"] = lambda: plain_loop(ws, levels, layout=True)
    wall = dict.fromkeys(peers, float("inf"))
    cpu = dict.fromkeys(peers, float("inf"))
    out = {}
    for _ in range(repeats):  # interleaved, best of each: the shared machine's load moves
        for key, fn in peers.items():
            out[key], t, c = timed(fn)
            wall[key], cpu[key] = min(wall[key], t), min(cpu[key], c)
    same, worst, bad = agreement(out["plain"], out["cached prefix"])
    print(f"{name:<22} {len(out['plain']):>4} cells  wall: plain {wall['plain']:6.2f} s, cached prefix "
          f"{wall['cached prefix']:6.2f} s, ratio {wall['plain'] / wall['cached prefix']:4.2f}x  CPU: "
          f"{cpu['plain']:6.2f} s vs {cpu['cached prefix']:6.2f} s, ratio {cpu['plain'] / cpu['cached prefix']:4.2f}x  "
          f"agree (acc equal, loss rel <= {LOSS_RTOL:g}): {same}, max rel loss diff {worst:.1e}")
    if bad is not None:
        print(f"  first difference: {bad}")
    if layout_peer:
        key = "plain, channels-last"
        print(f"{'':<22} plain loop channels-last: wall {wall[key]:6.2f} s (ratio to cached "
              f"{wall[key] / wall['cached prefix']:4.2f}x), CPU {cpu[key]:6.2f} s (ratio "
              f"{cpu[key] / cpu['cached prefix']:4.2f}x): the split alone")


def torchvision_resnet18():
    try:
        import torchvision
    except Exception as exc:  # noqa: BLE001 - not installed, or built for another torch
        return None, f"torchvision ResNet-18: skipped ({type(exc).__name__}: {exc})"
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 64, 64, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    data = Dataset("synthetic-64", x[:0], y[:0], x, y, 10, "64 random 3x64x64 images")
    return (model, data), ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default=",".join(str(x) for x in DEFAULT_LEVELS))
    p.add_argument("--models", default="resnet-mini,densenet-mini,inception-mini")
    p.add_argument("--repeats", type=int, default=3, help="runs of each path; the best time counts")
    p.add_argument("--layout-peer", action="store_true",
                   help="also time the plain loop run channels-last (what the split alone gives)")
    args = p.parse_args()
    torch.set_num_threads(1)
    levels = tuple(float(x) for x in args.levels.split(","))
    print(f"levels {levels}, one torch thread, load average "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    digits = load_dataset("digits")
    for name in args.models.split(","):
        model = load_model(name).model
        compare(name, Workspace(model, digits, model_ref=name), levels, args.repeats, args.layout_peer)
    tv, note = torchvision_resnet18()
    if tv is None:
        print(note)
    else:
        model, data = tv
        compare("torchvision:resnet18", Workspace(model, data, model_ref="torchvision:resnet18"), levels,
                args.repeats, args.layout_peer)


if __name__ == "__main__":
    main()
