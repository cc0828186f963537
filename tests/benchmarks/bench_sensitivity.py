"""Sensitivity analysis with the cached prefix against a plain loop, in the same run.

The peer is what a sensitivity tool without the split does: for every unit and every level,
evaluate the whole masked model (:func:`visualizer.core.training.evaluate.evaluate_job`, the
app's one evaluation). The analysis (:func:`visualizer.core.training.sensitivity.sensitivity_job`)
computes the activations before the unit once per batch and runs only the rest of the network
per level. Printed per model: both wall and CPU times (best of ``--repeats`` interleaved runs), the ratio plain / cached, and whether every row's
loss and accuracy are identical (they must be). Target: >= 2x.

Models: the bundled resnet-mini (and densenet-mini, inception-mini) on the digits test split;
torchvision's ResNet-18 (random weights, 64 synthetic 3x64x64 images, 10 classes) when
torchvision is installed. One torch thread (the machine is shared).

Run: .venv/bin/python tests/benchmarks/bench_sensitivity.py [--levels 0.9,0.7,0.5,0.3,0.2,0.1,0.05]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from visualizer.core.data.sources import Dataset, load_dataset  # noqa: E402
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


def plain_loop(ws: Workspace, levels, criterion: str = "magnitude") -> list[tuple]:
    """(unit, level, loss, accuracy) by evaluating the whole masked model for every cell."""
    model = ws.model
    batches = ws.evaluation_batches()
    scores = run(ws.scores(criterion))
    out = []
    for unit in list_units(model, "layer"):
        for level in levels:
            masks = MaskSet.for_model(model)
            masks.masks.update(unit_masks(unit, level, scores))
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


def compare(name: str, ws: Workspace, levels, repeats: int) -> None:
    cached(ws, levels[:1])  # warm both paths (tracing code, allocator)
    t_plain = t_fast = c_plain = c_fast = float("inf")
    for _ in range(repeats):  # interleaved, best of each: the shared machine's load moves
        a, t, c = timed(lambda: plain_loop(ws, levels))
        t_plain, c_plain = min(t_plain, t), min(c_plain, c)
        b, t, c = timed(lambda: cached(ws, levels))
        t_fast, c_fast = min(t_fast, t), min(c_fast, c)
    same = a == b
    cells = len(a)
    print(f"{name:<22} {cells:>4} cells  wall: plain {t_plain:6.2f} s, cached prefix {t_fast:6.2f} s, "
          f"ratio {t_plain / t_fast:4.2f}x  CPU: {c_plain:6.2f} s vs {c_fast:6.2f} s, ratio {c_plain / c_fast:4.2f}x  "
          f"identical numbers: {same}")
    if not same:
        bad = next((x, y) for x, y in zip(a, b) if x != y)
        print(f"  first difference: {bad}")


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
    args = p.parse_args()
    torch.set_num_threads(1)
    levels = tuple(float(x) for x in args.levels.split(","))
    print(f"levels {levels}, one torch thread, load average "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    digits = load_dataset("digits")
    for name in args.models.split(","):
        model = load_model(name).model
        compare(name, Workspace(model, digits, model_ref=name), levels, args.repeats)
    tv, note = torchvision_resnet18()
    if tv is None:
        print(note)
    else:
        model, data = tv
        compare("torchvision:resnet18", Workspace(model, data, model_ref="torchvision:resnet18"), levels,
                args.repeats)


if __name__ == "__main__":
    main()
