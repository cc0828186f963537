"""Graph and group building time on a DenseNet-121-sized model, as ratios to peers in this process.

Run: python tests/benchmarks/bench_graph.py [--torchvision]
Peers: one forward pass of the same model and a bare torch.fx.symbolic_trace. Without torchvision a
DenseNet-121-shaped model is built here (growth 32, blocks 6-12-24-16, bottleneck 4x, 8.0 M params).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # run from anywhere

import torch  # noqa: E402
from torch import nn  # noqa: E402

from visualizer.core.structure.graph import build_graph  # noqa: E402
from visualizer.core.structure.groups import find_groups  # noqa: E402


class _Layer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv2(torch.relu(self.norm2(self.conv1(torch.relu(self.norm1(x))))))], 1)


class DenseNet121Shaped(nn.Module):
    def __init__(self, growth: int = 32, blocks=(6, 12, 24, 16), init: int = 64, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, init, 7, 2, 3, bias=False), nn.BatchNorm2d(init), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c = init
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(_Layer(c, growth))
                c += growth
            if i != len(blocks) - 1:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def _best(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run): CPU time is what a shared machine can't inflate."""
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--torchvision", action="store_true", help="use torchvision's densenet121")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.torchvision:
        import torchvision

        model, label = torchvision.models.densenet121(weights=None).eval(), "torchvision densenet121"
    else:
        model, label = DenseNet121Shaped().eval(), "DenseNet-121-shaped (built here)"
    x = torch.randn(1, 3, args.size, args.size)
    params = sum(p.numel() for p in model.parameters())
    g = build_graph(model, x)  # warm up (imports, first trace)
    with torch.no_grad():
        fwd = _best(lambda: model(x), args.repeats)
    trace = _best(lambda: torch.fx.symbolic_trace(model), args.repeats)
    graph = _best(lambda: build_graph(model, x), args.repeats)
    groups = _best(lambda: find_groups(model, x), args.repeats)
    r = find_groups(model, x)
    print(f"{label}: {params / 1e6:.2f} M params, input 1x3x{args.size}x{args.size}, {torch.get_num_threads()} threads")
    print(f"graph: {g.method}, {g.graph.number_of_nodes()} nodes, {g.graph.number_of_edges()} edges; "
          f"{len(r.groups)} groups ({len(r.prunable())} prunable)")
    print(f"{'':26}{'wall s':>8}{'cpu s':>8}{'wall/fwd':>10}{'cpu/fwd':>9}")
    for name, (wall, cpu) in [("forward pass (peer)", fwd), ("fx symbolic_trace (peer)", trace),
                              ("build_graph", graph), ("find_groups", groups)]:
        print(f"{name:26}{wall:8.3f}{cpu:8.3f}{wall / fwd[0]:10.2f}{cpu / fwd[1]:9.2f}")


if __name__ == "__main__":
    main()
