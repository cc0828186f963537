"""Graph view on a DenseNet-121-sized graph: layout time, redraw time, and the ratio to a naive view.

Run: QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_graph_view.py [--repeats N]

The graph is DenseNet-121's traced shape (4 dense blocks of 6/12/24/16 layers, each layer
bn-relu-conv1x1-bn-relu-conv3x3 reading the concatenation of every earlier output of its block;
transitions between blocks): about 1000 nodes. torchvision's real densenet121 is traced instead
when torchvision and core.structure are importable. The peer is the naive drawing (one
PlotCurveItem per edge, one ScatterPlotItem per node) in the same process; timings are printed
together with the ratio naive / ours (machine noise cancels in the ratio).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402


def densenet_like(blocks: tuple[int, ...] = (6, 12, 24, 16)) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("x", params=0)
    g.add_node("features.conv0", params=9408)
    g.add_edge("x", "features.conv0")
    prev = "features.conv0"
    channels = 64
    for b, layers in enumerate(blocks, start=1):
        feats = [prev]
        for i in range(1, layers + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            cat = f"{p}.cat"
            g.add_node(cat, params=0)
            for f in feats:
                g.add_edge(f, cat)
            chain = [
                (f"{p}.norm1", 2 * channels), (f"{p}.relu1", 0), (f"{p}.conv1", channels * 128),
                (f"{p}.norm2", 256), (f"{p}.relu2", 0), (f"{p}.conv2", 128 * 32 * 9),
            ]
            last = cat
            for name, params in chain:
                g.add_node(name, params=params)
                g.add_edge(last, name)
                last = name
            feats.append(last)
            channels += 32
        out = f"features.denseblock{b}.cat"
        g.add_node(out, params=0)
        for f in feats:
            g.add_edge(f, out)
        prev = out
        if b < len(blocks):
            t = f"features.transition{b}"
            for name, params in ((f"{t}.norm", 2 * channels), (f"{t}.relu", 0),
                                 (f"{t}.conv", channels * channels // 2), (f"{t}.pool", 0)):
                g.add_node(name, params=params)
                g.add_edge(prev, name)
                prev = name
            channels //= 2
    g.add_node("classifier", params=channels * 1000)
    g.add_edge(prev, "classifier")
    return g


def real_densenet121() -> nx.DiGraph | None:
    try:
        import torchvision

        from visualizer.core.structure.graph import build_graph
    except ImportError:
        return None
    return build_graph(torchvision.models.densenet121()).graph


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", default="6,12,24,16",
                    help="layers per dense block (DenseNet-121: 6,12,24,16; ~1000 nodes: 6,12,64,48)")
    args = ap.parse_args()

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from visualizer.core.structure.layout import edge_segments, layered_layout
    from visualizer.ui.views.graph import GraphView

    app = QApplication.instance() or QApplication([])
    graph = real_densenet121()
    source = "torchvision densenet121 (core.structure)"
    if graph is None:
        blocks = tuple(int(b) for b in args.blocks.split(","))
        graph, source = densenet_like(blocks), f"DenseNet-shaped synthetic graph, blocks {blocks}"
    print(f"graph: {source}: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")

    t0 = time.perf_counter()
    layout = layered_layout(graph)
    t_layout = (time.perf_counter() - t0) * 1e3
    print(f"layout (core, runs in a worker): {t_layout:.0f} ms, "
          f"{len(layout.layers)} layers, crossings {layout.initial_crossings} -> {layout.crossings}")

    view = GraphView()
    view.resize(1400, 800)
    view.show()
    app.processEvents()

    def paint(widget):
        app.processEvents()
        widget.grab()  # renders the whole scene into a pixmap (what a repaint costs)

    rng = np.random.default_rng(0)
    layers = [str(n) for n, a in graph.nodes(data=True) if a.get("params")]

    def full():
        view.set_graph(graph)  # nested by the dotted names; every block open, as the flat view was
        view.open_all()
        paint(view.canvas)

    t_full = timed(full, args.repeats)

    def recolour():
        view.set_densities({name: float(rng.random()) for name in layers})
        paint(view.canvas)

    t_recolour = timed(recolour, args.repeats)

    def hover():
        view.select(layers[int(rng.integers(len(layers)))])
        paint(view.canvas)

    t_hover = timed(hover, args.repeats)

    def repaint_only():
        paint(view.canvas)

    t_paint = timed(repaint_only, args.repeats)

    # peer: the naive drawing, one item per edge and per node
    naive = pg.PlotWidget()
    naive.resize(1400, 800)
    naive.show()
    app.processEvents()
    seg = edge_segments(layout.positions, layout.edges)
    cmap = pg.colormap.get("viridis")

    def naive_full():
        for item in list(naive.getPlotItem().items):
            naive.removeItem(item)
        for k in range(0, len(seg), 2):
            naive.addItem(pg.PlotCurveItem(seg[k:k + 2, 0], seg[k:k + 2, 1]))
        for x, y in layout.positions:
            naive.addItem(pg.ScatterPlotItem([x], [y], size=10, brush=cmap.map(rng.random(), "qcolor")))
        paint(naive)

    t_naive = timed(naive_full, 1)  # slow: one run is enough for the ratio

    def naive_paint():
        paint(naive)

    t_naive_paint = timed(naive_paint, args.repeats)
    print(f"full redraw (set_graph + paint): {t_full:.1f} ms   naive: {t_naive:.1f} ms   "
          f"ratio naive/ours {t_naive / t_full:.1f}x")
    print(f"repaint only: {t_paint:.1f} ms   naive: {t_naive_paint:.1f} ms   "
          f"ratio {t_naive_paint / t_paint:.1f}x")
    print(f"re-colour by density (slider move): {t_recolour:.1f} ms   "
          f"select (highlight + info): {t_hover:.1f} ms   (60 fps budget: 16.7 ms)")
    view.close()
    naive.close()


if __name__ == "__main__":
    main()
