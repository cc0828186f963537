"""Sensitivity analysis with the cached prefix against a plain loop, in the same run.

The peer is what a sensitivity tool without the split does: for every unit and every level,
evaluate the whole masked model (:func:`visualizer.core.training.evaluate.evaluate_job`, the
app's one evaluation). The analysis (:func:`visualizer.core.training.sensitivity.sensitivity_job`)
computes the activations before the unit once per batch and runs only the rest of the network
per level. Both run in evaluation's layout (``inference_layout``: channels-last for a conv net on
the CPU), so the ratio is the split's alone. Printed per model: both wall and CPU times (best of
``--repeats`` interleaved runs), the ratio plain / cached, and whether every row agrees with the
plain loop: accuracy exactly equal, loss within ``LOSS_RTOL`` relative (the split sums in another
order, so float rounding only). Target: >= 2x.

``--nchw-peer`` also times the plain loop in the default NCHW layout (the layout rule switched
off, as evaluation ran before it): what a tool without either gives.

Models: the bundled resnet-mini (and densenet-mini, inception-mini) on the digits test split;
torchvision's ResNet-18 (random weights, 64 synthetic 3x64x64 images, 10 classes) when
torchvision is installed. One torch thread (the machine is shared).

Run: .venv/bin/python tests/benchmarks/bench_sensitivity.py [--repeats 3] [--nchw-peer]
[--levels 0.9,0.7,0.5,0.3,0.2,0.1,0.05]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from unittest import mock

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from visualizer.core.data.sources import Dataset, load_dataset  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.pruning.masks import MaskSet  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training import evaluate as evaluate_module  # noqa: E402
from visualizer.core.training.evaluate import evaluate_job  # noqa: E402
from visualizer.core.training.sensitivity import (  # noqa: E402
    DEFAULT_LEVELS,
    SensitivityConfig,
    list_units,
    sensitivity_job,
    split_model,
    trace,
    unit_masks,
)
from visualizer.core.workspace import Workspace  # noqa: E402

LOSS_RTOL = 1e-6  # the largest relative loss difference allowed against the plain loop (accuracy: equal)


def plain_loop(ws: Workspace, levels, criterion: str = "magnitude", nchw: bool = False) -> list[tuple]:
    """(unit, level, loss, accuracy) by evaluating the whole masked model for every cell
    (``nchw``: with evaluation's layout rule switched off)."""
    model = ws.model
    batches = ws.evaluation_batches()
    scores = run(ws.scores(criterion))
    out = []
    with contextlib.ExitStack() as stack:
        if nchw:  # the layout rule off: evaluation as it ran before channels-last
            stack.enter_context(mock.patch.object(evaluate_module, "conv_layout", lambda *a: None))
        for unit in list_units(model, "layer"):
            for level in levels:
                masks = MaskSet.for_model(model)
                masks.masks.update(unit_masks(unit, level, scores))
                ev = run(evaluate_job(model, batches, masks))
                out.append((unit.name, level, ev.loss, ev.accuracy))
    return out


def flops(fn, *args) -> int:
    """FLOPs of one call (torch.utils.flop_counter: matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def flop_bound(ws: Workspace, k: int) -> float:
    """The best ratio plain / split any exact per-cell evaluation can reach with ``k`` levels:
    sum over units of k * F (the whole model per level) over P_u + k * R_u (the prefix once, the
    rest per level), counted on two samples through the analysis's own split."""
    model = ws.model.eval()
    x = ws.evaluation_batches()[0][0][:2]
    gm = trace(model)
    whole = flops(model, x)
    plain = split = 0
    with torch.no_grad():
        for unit in list_units(model, "layer"):
            cut = split_model(gm, unit.params)
            if cut is None:
                continue
            prefix = flops(cut.prefix, x)
            rest = flops(cut.rest, cut.prefix(x), {})
            plain, split = plain + k * whole, split + prefix + k * rest
    return plain / split


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


def compare(name: str, ws: Workspace, levels, repeats: int, nchw_peer: bool = False) -> None:
    cached(ws, levels[:1])  # warm both paths (tracing code, allocator)
    peers = {"plain": lambda: plain_loop(ws, levels), "cached prefix": lambda: cached(ws, levels)}
    if nchw_peer:
        peers["plain, NCHW"] = lambda: plain_loop(ws, levels, nchw=True)
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
    print(f"{'':<22} FLOP bound of the split with {len(levels)} levels: {flop_bound(ws, len(levels)):4.2f}x")
    if nchw_peer:
        key = "plain, NCHW"
        print(f"{'':<22} plain loop in NCHW: wall {wall[key]:6.2f} s (ratio to cached "
              f"{wall[key] / wall['cached prefix']:4.2f}x), CPU {cpu[key]:6.2f} s (ratio "
              f"{cpu[key] / cpu['cached prefix']:4.2f}x): split and layout together")


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
    p.add_argument("--nchw-peer", action="store_true",
                   help="also time the plain loop in the default NCHW layout (evaluation before channels-last)")
    args = p.parse_args()
    torch.set_num_threads(1)
    levels = tuple(float(x) for x in args.levels.split(","))
    print(f"levels {levels}, one torch thread, load average "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    digits = load_dataset("digits")
    for name in args.models.split(","):
        model = load_model(name).model
        compare(name, Workspace(model, digits, model_ref=name), levels, args.repeats, args.nchw_peer)
    tv, note = torchvision_resnet18()
    if tv is None:
        print(note)
    else:
        model, data = tv
        compare("torchvision:resnet18", Workspace(model, data, model_ref="torchvision:resnet18"), levels,
                args.repeats, args.nchw_peer)


if __name__ == "__main__":
    main()
