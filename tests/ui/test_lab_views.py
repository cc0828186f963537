"""The theory labs as presets and in the Labs dock: each view draws what its lab measured."""

from __future__ import annotations

import dataclasses
import math

import pyqtgraph as pg
import pytest

from tests.ui.conftest import wait_idle


def not_blank(widget) -> bool:
    img = widget.grab().toImage()
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    return len(colours) > 8


def items(plot: pg.PlotItem, kind) -> list:
    return [i for i in plot.items if isinstance(i, kind)]


def shown(qtbot, view):
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    return view


def test_mask_probability_preset_draws_formula_curve_and_error_bars(qtbot):
    from visualizer.ui.lecture.presets import PRESETS, run_preset

    view, r = run_preset("mask-probability", n=6, k=2, trials=5000)
    shown(qtbot, view)
    bars = items(view.plot, pg.ErrorBarItem)
    assert len(bars) == 1 and len(bars[0].opts["x"]) == len(r.t_over_sigma)
    curves = [c for c in items(view.plot, pg.PlotDataItem) if c.opts["pen"] is not None]
    assert len(curves[0].xData) == len(r.curve_t_over_sigma) > len(r.t_over_sigma)
    assert view.caption.text().startswith(PRESETS["mask-probability"].caption)
    assert "best t/sigma" in view.caption.text()
    assert not_blank(view)


def test_phase_transition_preset_draws_heatmap_under_the_l1_curve(qtbot):
    from visualizer.ui.lecture.presets import run_preset

    view, r = run_preset("phase-transition", n=20, trials=2, deltas=(0.2, 0.5, 0.8), rhos=(0.2, 0.6))
    shown(qtbot, view)
    meshes = items(view.plot, pg.PColorMeshItem)
    assert len(meshes) == 1 and meshes[0].z.shape == (2, 3)
    curve_lengths = [len(c.xData) for c in items(view.plot, pg.PlotDataItem)]
    assert len(r.curve_delta) in curve_lengths
    assert not_blank(view)


def test_a_optimal_preset_scatter_and_overlap(qtbot):
    from visualizer.ui.lecture.presets import run_preset

    view, r = run_preset("a-optimal", m=8, d=2, k=4, trials=6)
    shown(qtbot, view)
    scatter = [c for c in items(view.scatter_plot, pg.PlotDataItem) if c.opts["symbol"] == "o"]
    assert len(scatter[0].xData) == 6
    bars = items(view.overlap_plot, pg.BarGraphItem)
    assert list(bars[0].opts["height"]) == pytest.approx([t["overlap"] for t in r.trials])
    assert not_blank(view)


def test_random_labels_view_draws_bars_and_chance_band(qtbot):
    # the lab's own run is tested in tests/core/labs (it trains for ~10 s); here a result by hand
    from visualizer.core.labs.random_labels import RandomLabelsResult
    from visualizer.ui.views.labs import RandomLabelsView, show_random_labels

    r = RandomLabelsResult(dense_true=0.95, dense_random=0.1, ticket_true=0.96, ticket_random=0.09,
                           ticket_density=0.25, classes=10, test_size=359, chance=0.1, band_z=3.0,
                           band_low=0.05, band_high=0.15, rounds=2, rate=0.5, epochs=5, seed=0)
    view = shown(qtbot, RandomLabelsView())
    show_random_labels(view, r)
    bars = items(view.plot, pg.BarGraphItem)
    assert list(bars[0].opts["height"]) == [0.95, 0.1, 0.96, 0.09]
    band = items(view.plot, pg.LinearRegionItem)
    assert band[0].getRegion() == pytest.approx((0.05, 0.15))
    assert not_blank(view)
    # while the random-label runs train (a partial figure) their bars are empty, marked "..."
    show_random_labels(view, dataclasses.replace(r, dense_random=math.nan, ticket_random=math.nan))
    assert list(items(view.plot, pg.BarGraphItem)[0].opts["height"]) == [0.95, 0.0, 0.96, 0.0]
    assert [t.toPlainText() for t in items(view.plot, pg.TextItem)] == ["0.950", "...", "0.960", "..."]


def test_labs_dock_runs_the_chosen_lab(qtbot, window):
    panel = window.views["labs"]
    panel.chooser.setCurrentIndex(panel.chooser.findData("a-optimal"))
    assert panel.stack.currentWidget() is panel.views["a-optimal"]
    panel.compute()
    wait_idle(qtbot, window, timeout=30000)
    qtbot.waitUntil(lambda: "a-optimal" in panel.results, timeout=5000)
    assert "mean overlap" in panel.views["a-optimal"].caption.text()


def test_lab_legends_cover_no_data(qtbot):
    """The legends sat on the data (the Monte Carlo points, the heatmap, the scatter): each now
    has the layout cell under its plot, its entries and the plot's area apart."""
    from visualizer.ui.lecture.presets import run_preset

    for preset, kw, attr in (("mask-probability", dict(n=6, k=2, trials=500), "plot"),
                             ("phase-transition", dict(n=20, trials=2, deltas=(0.2, 0.5, 0.8), rhos=(0.2, 0.6)), "plot"),
                             ("a-optimal", dict(m=8, d=2, k=4, trials=6), "scatter_plot")):
        view, _ = run_preset(preset, **kw)
        shown(qtbot, view)
        qtbot.wait(50)
        plot = getattr(view, attr)
        legend = plot.legend
        assert len(legend.items) == (1 if preset == "phase-transition" else 2), preset
        data = plot.getViewBox().sceneBoundingRect()
        box = legend.sceneBoundingRect()
        assert box.height() > 0 and not box.intersects(data), (preset, box, data)


def test_lab_settings_are_live_controls(qtbot, window):
    """A spin box moves the theory curve at once; the Monte Carlo re-runs after the pause with
    the new settings and its points stream in before the result."""
    import numpy as np
    from PySide6.QtCore import Qt

    from visualizer.core.labs.mask_probability import p_correct

    panel = window.views["labs"]
    panel.chooser.setCurrentIndex(panel.chooser.findData("mask-probability"))
    controls = panel.controls["mask-probability"]
    assert panel.controls_stack.currentWidget() is controls
    controls.boxes["trials"].setValue(150_000)
    qtbot.waitUntil(lambda: "mask-probability" in panel.results, timeout=30000)
    box = controls.boxes["n"]
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Up)  # n: 10 -> 11, from the keyboard
    view = panel.views["mask-probability"]
    assert view.data["n"] == 11 and view.data["trials"] == 0  # the curve alone, at once
    assert np.allclose(view.data["formula"], p_correct(view.data["cx"], 11, 2))
    partials = []
    view.set_data = (lambda original: lambda *a, **kw: (partials.append(kw.get("trials", a[-1])),
                                                        original(*a, **kw)))(view.set_data)
    qtbot.waitUntil(lambda: panel.results["mask-probability"].n == 11, timeout=30000)
    assert len(partials) >= 3 and partials[0] < partials[-1] == 150_000


def test_lab_values_out_of_range_are_clamped_with_a_note(qtbot, window):
    panel = window.views["labs"]
    controls = panel.controls["mask-probability"]
    controls.boxes["k"].setValue(30)  # k > n = 10
    assert controls.settings()["k"] == 10
    assert "k 30 clamped to 10" in controls.note.text()
