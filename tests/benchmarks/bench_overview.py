"""The overview follows the density slider on ResNet-50 (25.5M prunable weights).

Run: ``python tests/benchmarks/bench_overview.py`` (from the repository root). A drag of the
density slider from 100% to 5% in 40 moves, each move as the window does it:

- the ranking moves its cut (``Ranking.mask_at(rho, copy=False)``, live masks: the window's path
  above 2M weights),
- the overview recounts kept weights per tile pixel block (a tensor kept or pruned whole, by
  the ranking's per-layer counts, is filled without a count), colours the pixels and composes
  the canvas (``Overview.set_mask``, ``codes``, ``canvas``),
- pyqtgraph draws it (``ImageItem.setImage`` and a synchronous repaint of the view, offscreen).

It prints the median and worst milliseconds per move (target: at most 50 ms) and the ratio
against re-rendering the tiles from scratch on every move (building the tiles with their mean
|w| per block and packing them again, then the same update), both measured here in one run.
ResNet-50 is torchvision's when installed, else its conv/fc weight shapes (the same 54 tensors).
Timings on a shared machine are noisy: compare the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from visualizer.core.pruning import overview as ov  # noqa: E402
from visualizer.core.pruning.ranking import Ranking  # noqa: E402


def resnet50_params() -> tuple[dict[str, np.ndarray], str]:
    """name -> float32 weights of ResNet-50's prunable tensors (random values)."""
    try:
        import torchvision

        model = torchvision.models.resnet50(weights=None)
        from visualizer.core.pruning.prunable import prunable_parameters

        return ({n: p.detach().numpy().copy() for n, p in prunable_parameters(model).items()},
                "torchvision resnet50")
    except ImportError:
        from tests.benchmarks.bench_ranking import resnet50_weight_shapes

        rng = np.random.default_rng(0)
        return ({n: rng.standard_normal(s, dtype=np.float32) * 0.05 for n, s in resnet50_weight_shapes()},
                "ResNet-50 weight shapes (no torchvision)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=40)
    ap.add_argument("--size", default="1400x850", help="canvas WIDTHxHEIGHT in pixels")
    ap.add_argument("--scratch-moves", type=int, default=5, help="moves timed for the from-scratch peer")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    params, source = resnet50_params()
    total = sum(p.size for p in params.values())
    print(f"model: {source}, {len(params)} prunable tensors, {total:,} weights; canvas {width}x{height}")

    t0 = time.perf_counter()
    ranking = Ranking.from_scores({n: np.abs(p) for n, p in params.items()})
    print(f"ranking (once per criterion): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    overview = ov.Overview(params)
    layout = ov.pack_tiles(overview, width, height, "params")
    print(f"overview tiles + layout (once per model): {time.perf_counter() - t0:.2f} s, "
          f"{overview.n_pixels:,} tile pixels")

    widget = pg.GraphicsLayoutWidget()
    widget.resize(width, height)
    box = widget.addViewBox()
    box.setAspectLocked(True)
    box.invertY(True)
    image = pg.ImageItem(axisOrder="row-major")
    box.addItem(image)
    widget.show()
    app.processEvents()
    table = ov.Overview.table("value")

    def draw(o: ov.Overview, lay: ov.Layout) -> None:
        pic = ov.canvas(lay, table[o.codes("value")])
        image.setImage(pic, autoLevels=False)
        widget.viewport().repaint()

    densities = np.geomspace(1.0, 0.05, args.moves)
    parts = {"ranking": [], "overview": [], "draw": [], "total": []}
    cpu = []
    for rho in densities:
        c0 = time.process_time()
        t0 = time.perf_counter()
        masks = ranking.mask_at(float(rho), copy=False)
        t1 = time.perf_counter()
        overview.set_mask(masks.masks, ranking.layer_kept())
        pic = ov.canvas(layout, table[overview.codes("value")])
        t2 = time.perf_counter()
        image.setImage(pic, autoLevels=False)
        widget.viewport().repaint()
        t3 = time.perf_counter()
        cpu.append((time.process_time() - c0) * 1e3)
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            parts[k].append(v * 1e3)

    scratch = []
    for rho in densities[:: max(1, len(densities) // args.scratch_moves)][: args.scratch_moves]:
        t0 = time.perf_counter()
        masks = ranking.mask_at(float(rho), copy=False)
        fresh = ov.Overview(params)
        lay = ov.pack_tiles(fresh, width, height, "params")
        fresh.set_mask(masks.masks, ranking.layer_kept())
        draw(fresh, lay)
        scratch.append((time.perf_counter() - t0) * 1e3)

    med = {k: statistics.median(v) for k, v in parts.items()}
    print(f"per slider move ({args.moves} moves, 100% -> 5%): median {med['total']:.1f} ms "
          f"(ranking {med['ranking']:.1f}, overview counts+colours+canvas {med['overview']:.1f}, "
          f"draw {med['draw']:.1f}), worst {max(parts['total']):.1f} ms; target <= 50 ms; "
          f"CPU time median {statistics.median(cpu):.1f} ms per move")
    s = statistics.median(scratch)
    print(f"re-rendering the tiles from scratch: median {s:.1f} ms per move ({len(scratch)} moves)")
    print(f"ratio from scratch / incremental: {s / med['total']:.1f}x")
    widget.close()


if __name__ == "__main__":
    main()
