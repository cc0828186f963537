"""Dense vs unstructured-masked vs structurally shrunk: latency, FLOPs, achieved FLOP/s and eta.

Run: python tests/benchmarks/bench_speed.py [--models resnet-mini,densenet-mini] [--densities 0.5,0.25]
Each row is measured in one interleaved run (core.speed), so the ratios are comparable even on a
busy machine; the masked model has exactly the shrunk model's number of prunable weights (global
magnitude mask). eta = achieved useful FLOP/s / dense FLOP/s (docs/theory.md §16, relative to dense).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # run from anywhere

import torch  # noqa: E402

from visualizer.core.models.zoo import ZOO  # noqa: E402
from visualizer.core.structure.graph import example_input  # noqa: E402
from visualizer.core.structure.speed import compare_speed  # noqa: E402


def _model(name: str):
    if name.startswith("torchvision:"):
        import torchvision

        m = torchvision.models.get_model(name.split(":", 1)[1], weights=None).eval()
        return m, torch.randn(1, 3, 224, 224)
    m = ZOO[name].build().eval()
    return m, example_input(m, ZOO[name].dataset)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,lenet,resnet-mini,densenet-mini,inception-mini")
    ap.add_argument("--densities", default="0.5,0.25")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch} (torchvision models: 1x3x224x224), {args.repeats} interleaved repeats, {args.threads} thread(s); "
          "speed-up = t_dense / t_model; eta = (F_model/t_model) / (F_dense/t_dense)")
    print(f"{'model':16}{'density':>8}{'params':>10}{'masked/dense t':>16}{'shrunk/dense t':>16}"
          f"{'FLOPs ratio':>12}{'eta masked':>11}{'eta shrunk':>11}")
    for name in args.models.split(","):
        model, x = _model(name)
        x = torch.randn(args.batch, *x.shape[1:]) if not name.startswith("torchvision:") else x
        for d in (float(v) for v in args.densities.split(",")):
            rep = compare_speed(model, d, example=x, repeats=args.repeats)
            dense, masked, shrunk = rep.entry("dense"), rep.entry("masked"), rep.entry("shrunk")
            print(f"{name:16}{d:8.2f}{shrunk.params / dense.params:10.3f}"
                  f"{masked.latency_s / dense.latency_s:16.3f}{shrunk.latency_s / dense.latency_s:16.3f}"
                  f"{shrunk.flops / dense.flops:12.3f}{masked.eta:11.3f}{shrunk.eta:11.3f}")


if __name__ == "__main__":
    main()
