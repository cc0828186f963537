"""The shared curve drawing: rows -> one item per curve; offscreen PNG."""

from __future__ import annotations

from visualizer.ui.views.plots import add_curves, group_rows, render_curves_png, series_key


def rows():
    return [
        {"criterion": "magnitude", "retrain": "rewind", "kind": k, "density": d, "accuracy": a}
        for k in ("ticket", "reinit", "random-mask")
        for d, a in ((1.0, 0.98), (0.2, 0.95), (0.05, 0.9))
    ] + [{"criterion": "snip", "retrain": "none", "density": 0.0, "accuracy": 0.1},
         {"criterion": "snip", "retrain": "none", "density": 0.5, "accuracy": float("nan")}]


def test_grouping_skips_unplottable_rows():
    groups = group_rows(rows())
    assert list(groups) == ["magnitude · rewind · ticket", "magnitude · rewind · reinit", "magnitude · rewind · random-mask"]
    assert [r["density"] for r in groups["magnitude · rewind · ticket"]] == [1.0, 0.2, 0.05]
    assert series_key({"criterion": "snip", "retrain": "none"}) == "snip"


def test_add_curves_and_png(qtbot, tmp_path):
    import pyqtgraph as pg

    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    items = add_curves(widget.getPlotItem(), rows())
    assert len(items) == 3
    path = render_curves_png(rows(), tmp_path / "c.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"
