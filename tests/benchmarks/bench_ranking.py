"""Slider path vs torch.nn.utils.prune on a ResNet-50-sized parameter set (25.5M weights).

Run: ``python tests/benchmarks/bench_ranking.py`` (from the repository root). Prints
- the one-time ranking cost (Ranking.from_scores: sort + index),
- the median time of a density change on the slider path (small and large moves; live masks,
  i.e. ``mask_at(rho, copy=False)``, plus the per-layer kept counts the GUI reads), and with a copy
  of the masks (``mask_at(rho)``),
- torch.nn.utils.prune.global_unstructured (L1) at one density on the same weights,
and the ratios. Timings on a shared machine are noisy: compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer

from visualizer.core.pruning.ranking import Ranking  # noqa: E402


def resnet50_weight_shapes(num_classes: int = 1000) -> list[tuple[str, tuple[int, ...]]]:
    """Conv and fc weight shapes of torchvision's ResNet-50 (no torchvision needed)."""
    shapes = [("conv1.weight", (64, 3, 7, 7))]
    cin = 64
    for stage, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512]), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}."
            shapes += [
                (p + "conv1.weight", (width, cin, 1, 1)),
                (p + "conv2.weight", (width, width, 3, 3)),
                (p + "conv3.weight", (width * 4, width, 1, 1)),
            ]
            if b == 0:
                shapes.append((p + "downsample.0.weight", (width * 4, cin, 1, 1)))
            cin = width * 4
    shapes.append(("fc.weight", (num_classes, cin)))
    return shapes


class Holder(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=21, help="density changes per kind")
    ap.add_argument("--skip-torch", action="store_true", help="skip the torch.nn.utils.prune peer")
    args = ap.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    shapes = resnet50_weight_shapes()
    weights = {n: torch.randn(s, generator=g) * 0.05 for n, s in shapes}
    total = sum(w.numel() for w in weights.values())
    print(f"parameter set: ResNet-50 conv/fc weights, {len(weights)} tensors, {total:,} weights")
    if hasattr(os, "getloadavg"):
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
              f"torch threads {torch.get_num_threads()}")
    scores = {n: w.abs() for n, w in weights.items()}

    holder: list[Ranking] = []
    t_build = timed(lambda: holder.append(Ranking.from_scores(scores, "global", "unstructured")))
    ranking = holder[0]
    print(f"one-time ranking (global, unstructured): {t_build:.2f} s")

    def density_change(rho: float, copy: bool) -> float:
        def step():
            ranking.mask_at(rho, copy=copy)
            ranking.layer_densities()

        return timed(step)

    ranking.mask_at(0.5, copy=False)
    small, large, copied = [], [], []
    rho = 0.5
    for i in range(args.changes):  # slider drags: 0.1% .. 1% of the weights change side
        rho = min(max(rho + (0.001 if i % 2 else -0.003) * (1 + i % 3), 0.0), 1.0)
        small.append(density_change(rho, copy=False))
    for i in range(args.changes):  # jumps across the range, both directions
        rho = 0.9 if i % 2 == 0 else 0.1 + 0.01 * (i % 5)
        large.append(density_change(rho, copy=False))
    for i in range(args.changes):
        rho = 0.3 + 0.001 * i
        copied.append(density_change(rho, copy=True))
    med_small = statistics.median(small)
    med_large = statistics.median(large)
    med_copy = statistics.median(copied)
    print(f"density change, small moves (live masks):  median {med_small * 1e3:7.2f} ms  (max {max(small) * 1e3:.2f})")
    print(f"density change, large moves (live masks):  median {med_large * 1e3:7.2f} ms  (max {max(large) * 1e3:.2f})")
    print(f"density change, with a copy of the masks:  median {med_copy * 1e3:7.2f} ms")

    per_layer_holder: list[Ranking] = []
    t_build_layer = timed(lambda: per_layer_holder.append(Ranking.from_scores(scores, "layer", "unstructured")))
    per_layer = per_layer_holder[0]
    print(f"one-time ranking (layer scope): {t_build_layer:.2f} s")
    t_layer = []
    for i in range(args.changes):
        rho = 0.9 if i % 2 == 0 else 0.2 + 0.001 * i
        t_layer.append(timed(lambda rho=rho, r=per_layer: r.mask_at(rho, copy=False)))
    print(f"density change, scope layer (live masks):  median {statistics.median(t_layer) * 1e3:7.2f} ms")


    channel_holder: list[Ranking] = []
    t_build_channel = timed(lambda: channel_holder.append(Ranking.from_scores(scores, "global", "channel")))
    channel = channel_holder[0]
    t_channel = []
    for i in range(args.changes):
        rho = 0.8 if i % 2 == 0 else 0.3 + 0.001 * i
        t_channel.append(timed(lambda rho=rho, r=channel: r.mask_at(rho, copy=False)))
    print(f"one-time ranking (global, channel): {t_build_channel:.2f} s; density change median "
          f"{statistics.median(t_channel) * 1e3:.2f} ms")

    if args.skip_torch:
        return
    modules = [Holder(w.clone()) for w in weights.values()]
    t_torch = timed(
        lambda: prune.global_unstructured(
            [(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=0.5
        )
    )
    ours = Ranking.from_scores(scores).mask_at(0.5)
    theirs = torch.cat([m.weight_mask.bool().reshape(-1) for m in modules])
    flat_scores = torch.cat([s.reshape(-1) for s in scores.values()])
    differ = ours.flat() != theirs
    cut = flat_scores[ours.flat()].min()
    ties_only = bool((flat_scores[differ] == cut).all())
    print(f"torch.nn.utils.prune.global_unstructured (one density): {t_torch:.2f} s")
    print(f"ratio torch / slider small move: {t_torch / med_small:,.0f}x;  "
          f"torch / slider large move: {t_torch / med_large:,.0f}x;  "
          f"torch / one-time ranking: {t_torch / t_build:.1f}x")
    print(f"masks vs torch's at density 0.5: kept {ours.kept():,} vs {int(theirs.sum()):,}, "
          f"{int(differ.sum())} entries differ, all of them tied at the cut score: {ties_only}")


if __name__ == "__main__":
    main()
