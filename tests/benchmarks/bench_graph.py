"""Graph and group building time on a DenseNet-121-sized model, as ratios to peers in this process;
then the graph view at scale: the nested view against the flat one.

Run: python tests/benchmarks/bench_graph.py [--torchvision] [--views-only] [--skip-flat-synthetic]
Peers: one forward pass of the same model and a bare torch.fx.symbolic_trace. Without torchvision a
DenseNet-121-shaped model is built here (growth 32, blocks 6-12-24-16, bottleneck 4x, 8.0 M params).

Views (offscreen Qt, one process): a 48-block transformer on token ids, a 100-block residual CNN
(tests/graph_models.py) and a synthetic graph of 10,000 nodes. For each: the first picture after
tracing (nested: hierarchy + top-level layout + first paint, all blocks closed; flat: the layered
layout of every node + first paint), opening and closing a block (nested only), re-colouring on a
slider move (new values for every layer + repaint) and the longest pan/zoom step (translate or
scale + repaint, 40 steps). The flat view is the app's view before the hierarchy (commit 5db126f,
loaded from git), measured on the same graphs in the same run: ratio = flat / nested.
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


FLAT_COMMIT = "5db126f"  # the flat graph view, before the hierarchy


def _flat_view_class():
    """GraphView as it was at FLAT_COMMIT (one layered drawing of every node), from git."""
    import subprocess
    import types

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    src = subprocess.run(["git", "-C", root, "show", f"{FLAT_COMMIT}:visualizer/ui/views/graph.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("flat_graph_view")
    exec(compile(src, "flat_graph_view.py", "exec"), mod.__dict__)  # noqa: S102 (our own history)
    return mod.GraphView


class T(tuple):
    """(wall ms, CPU ms) of one call: CPU time is what a shared machine cannot inflate."""

    def __new__(cls, wall: float, cpu: float):
        return super().__new__(cls, (wall, cpu))

    def __str__(self) -> str:
        return f"{self[0]:7.1f}/{self[1]:.1f}"


def _ms(fn) -> T:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return T((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3)


def _median(ts: list[T]) -> T:
    import numpy as np

    return T(float(np.median([t[0] for t in ts])), float(np.median([t[1] for t in ts])))


def _worst(ts: list[T]) -> T:
    return T(max(t[0] for t in ts), max(t[1] for t in ts))


def _view_cases():
    from tests.graph_models import DeepResNet, TokenTransformer, synthetic_graph, token_ids
    from visualizer.core.structure.graph import build_graph
    from visualizer.core.structure.hierarchy import build_hierarchy, model_hierarchy

    t = TokenTransformer(blocks=48)
    yield "transformer, 48 blocks", build_graph(t, token_ids()), (lambda tg, m=t: model_hierarchy(m, tg))
    r = DeepResNet(stages=(25, 25, 25, 25))
    yield "residual CNN, 100 blocks", build_graph(r, torch.randn(1, 3, 16, 16)), (lambda tg, m=r: model_hierarchy(m, tg))
    g, owners, types = synthetic_graph(10_000)

    class Traced:
        graph = g

    yield "synthetic, 10,000 nodes", Traced, (lambda tg: build_hierarchy(tg.graph, owners, types))


def _pan_zoom_steps(vb, paint, steps: int = 40) -> list[float]:
    """ms of each step: a pan or a zoom by 10%, alternating, each followed by a repaint."""
    out = []
    for i in range(steps):
        def step(i=i):
            if i % 2:
                vb.translateBy(x=0.3 if i % 4 < 2 else -0.3)
            else:
                vb.scaleBy((0.9, 0.9) if i % 4 < 2 else (1 / 0.9, 1 / 0.9))
            paint()
        out.append(_ms(step))
    return out


def _nested(app, traced, nest, layers, rng) -> dict:
    """The figures of the nested view for one graph."""

    from visualizer.ui.views.graph import GraphView

    view = GraphView()
    view.resize(1400, 800)
    view.show()
    app.processEvents()

    def paint():
        app.processEvents()
        view.canvas.viewport().repaint()

    holder = {}

    def first():
        holder["h"] = nest(traced)
        view.set_hierarchy(holder["h"])
        paint()

    out = {"first": _ms(first)}
    h = holder["h"]
    closed = [k for k in view.placement.visible if h.nodes[k].is_container]
    target = max(closed, key=lambda k: h.nodes[k].leaves)  # the biggest block on screen
    out["target"] = target
    out["open"] = _ms(lambda: (view.open_node(target), paint()))
    out["close"] = _ms(lambda: (view.close_node(target), paint()))
    out["reopen"] = _ms(lambda: (view.open_node(target), paint()))  # its layout is cached
    out["visible"] = len(view.placement.visible)
    view.set_densities({n: 1.0 for n in layers})
    values = [{n: float(rng.random()) for n in layers} for _ in range(10)]  # made outside the timing
    out["recolour"] = _median([_ms(lambda v=v: (view.set_densities(v), paint())) for v in values])
    out["pan"] = _worst(_pan_zoom_steps(view.plot.getViewBox(), paint))
    view.close()
    return out


def _flat(app, graph, layers, rng) -> dict:
    """The same figures for the flat view (every node laid out and drawn)."""

    from visualizer.core.structure.layout import layered_layout

    view = _flat_view_class()()
    view.resize(1400, 800)
    view.show()
    app.processEvents()

    def paint():
        app.processEvents()
        view.canvas.viewport().repaint()

    out = {"first": _ms(lambda: (view.set_graph(graph, layered_layout(graph)), paint()))}
    values = [{n: float(rng.random()) for n in layers} for _ in range(10)]
    out["recolour"] = _median([_ms(lambda v=v: (view.set_densities(v), paint())) for v in values])
    out["pan"] = _worst(_pan_zoom_steps(view.plot.getViewBox(), paint))
    view.close()
    return out


def bench_views(skip_flat_synthetic: bool = False) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    nan = {k: T(float("nan"), float("nan")) for k in ("first", "recolour", "pan")}
    print("\ngraph view at scale (wall/CPU ms; nested = this view, flat = the view at commit "
          f"{FLAT_COMMIT}; budgets: first picture 1000, open/close 100, recolour 10, pan/zoom gap 50; "
          "ratios flat/nested of CPU time)")
    for label, traced, nest in _view_cases():
        graph = traced.graph
        layers = [str(n) for n, a in graph.nodes(data=True) if a.get("params")]
        n = _nested(app, traced, nest, layers, rng)
        f = nan if skip_flat_synthetic and graph.number_of_nodes() > 5000 else _flat(app, graph, layers, rng)
        print(f"{label}: {graph.number_of_nodes()} traced nodes, {n['visible']} on screen with "
              f"{n['target']!r} open")
        for what, key in (("first picture after tracing", "first"), ("recolour (slider move, median of 10)",
                                                                         "recolour"),
                          ("longest pan/zoom step of 40", "pan")):
            a, b = n[key], f[key]
            print(f"  {what}: nested {a}   flat {b}   flat/nested {b[1] / a[1]:6.1f}x")
            if key == "first":
                print(f"  open {n['target']!r}: {n['open']}   close: {n['close']}   reopen: {n['reopen']}"
                      "   (flat: nothing to open)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--torchvision", action="store_true", help="use torchvision's densenet121")
    ap.add_argument("--views-only", action="store_true", help="only the graph view at scale")
    ap.add_argument("--skip-flat-synthetic", action="store_true",
                    help="no flat view of the 10,000-node graph (its layout alone takes minutes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.views_only:
        bench_views(args.skip_flat_synthetic)
        return
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
    bench_views(args.skip_flat_synthetic)


if __name__ == "__main__":
    main()
