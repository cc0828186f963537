"""Accuracy-vs-density curves drawn with pyqtgraph: shared by the app and the headless CLI.

``add_curves(plot_item, rows)`` draws result rows (dicts with ``density`` and ``accuracy``; the
curve a row belongs to is criterion · retrain · kind) on any pyqtgraph PlotItem, styled by
``style_plot``; ``render_curves_png(rows, path)`` draws the same thing offscreen into a PNG (used by
``pruneviz lth-report``). No numerics here: rows come from visualizer.core.training.experiments.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PALETTE = [
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
SYMBOLS = {"ticket": "o", "reinit": "t", "random-mask": "s", "random": "s"}
# labelled density ticks (the default log axis labels every minor tick and they collide)
DENSITY_TICKS = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]


def series_key(row: dict) -> str:
    """The curve a row belongs to: criterion, retrain mode (unless none) and kind (LTH)."""
    parts = [str(row.get("criterion", "?"))]
    retrain = row.get("retrain")
    if retrain and retrain != "none":
        parts.append(str(retrain))
    if row.get("kind"):
        parts.append(str(row["kind"]))
    return " · ".join(parts)


def group_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """Plottable rows (density > 0, finite accuracy) by curve, each sorted by falling density."""
    groups: dict[str, list[dict]] = {}
    # several seeds (a sweep or LTH report with --seeds): one curve per seed, never a zig-zag of them
    by_seed = len({str(r.get("seed")) for r in rows}) > 1
    for r in rows:
        try:
            d, a = float(r["density"]), float(r["accuracy"])
        except (KeyError, TypeError, ValueError):
            continue
        if d > 0 and math.isfinite(a):
            key = series_key(r) + (f" · seed {r.get('seed')}" if by_seed else "")
            groups.setdefault(key, []).append(r)
    return {k: sorted(v, key=lambda r: -float(r["density"])) for k, v in groups.items()}


def style_plot(plot, title: str | None = None) -> None:
    """Log density axis, decreasing to the right (pruning proceeds left to right), grid, legend."""
    plot.setLogMode(x=True, y=False)
    plot.getViewBox().invertX(True)
    plot.setLabel("bottom", "density (fraction of weights kept, log scale)")
    plot.setLabel("left", "test accuracy")
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.getAxis("left").enableAutoSIPrefix(False)  # accuracies as 0.95, not 950 x 0.001
    plot.getAxis("bottom").setTicks([[(math.log10(d), f"{d:g}") for d in DENSITY_TICKS], []])
    if title:
        plot.setTitle(title, color="k")


def add_curves(plot, rows: list[dict]) -> list:
    """One PlotDataItem per curve of ``rows`` on ``plot``; returns the items."""
    import numpy as np
    import pyqtgraph as pg

    if plot.legend is None:
        plot.addLegend(offset=(-10, -10), labelTextColor="k")
    items = []
    for i, (key, grows) in enumerate(group_rows(rows).items()):
        colour = PALETTE[i % len(PALETTE)]
        symbol = SYMBOLS.get(str(grows[0].get("kind", "")), "o")
        item = pg.PlotDataItem(
            np.array([float(r["density"]) for r in grows]),
            np.array([float(r["accuracy"]) for r in grows]),
            pen=pg.mkPen(colour, width=2), symbol=symbol, symbolSize=8,
            symbolBrush=pg.mkBrush(colour), symbolPen=pg.mkPen("w"), name=key,
        )
        plot.addItem(item)
        items.append(item)
    return items


def _application():
    """The running QApplication, or an offscreen one for headless rendering."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication([])
    return app


def render_curves_png(rows: list[dict], path: str | Path, title: str | None = None,
                      width: int = 900, height: int = 600) -> Path:
    """Draw ``rows`` as accuracy-vs-density curves into a PNG at ``path`` (offscreen)."""
    app = _application()
    import pyqtgraph as pg
    import pyqtgraph.exporters  # noqa: F401 - registers ImageExporter

    widget = pg.PlotWidget(background="w")
    widget.resize(width, height)
    plot = widget.getPlotItem()
    style_plot(plot, title)
    add_curves(plot, rows)
    plot.getViewBox().autoRange()
    app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter = pg.exporters.ImageExporter(plot)
    exporter.parameters()["width"] = width
    from visualizer.core.io.atomic import atomic_write

    atomic_write(path, lambda tmp: exporter.export(tmp))
    widget.close()
    widget.deleteLater()
    app.processEvents()
    return path
