"""Analysis views render, follow the theme and react to the mouse (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from visualizer.ui.views.densenet import Connectivity, ConnectivityView
from visualizer.ui.views.inception import BranchModule, BranchView
from visualizer.ui.views.landscape import Curve1D, LandscapeView, Surface2D
from visualizer.ui.views.spectrum import RewindSeries, SpectrumData, SpectrumView
from visualizer.ui.views.speed import SpeedEntry, SpeedView


def not_blank(widget) -> bool:
    """The grabbed image has more than a handful of distinct colours (something was drawn)."""
    img = widget.grab().toImage()
    w, h = img.width(), img.height()
    colours = {img.pixel(x, y) for x in range(0, w, 7) for y in range(0, h, 7)}
    return len(colours) > 8


# the graph view's tests are in test_graph_view.py


# --- spectrum, landscape, speed ------------------------------------------------------------------


def test_spectrum_view_draws_dense_and_masked(qtbot):
    view = SpectrumView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    grid = np.linspace(-1, 5, 50)
    dense = np.exp(-grid**2)
    view.set_spectra([
        SpectrumData("dense", [4.0, 3.0], [-0.5], grid, dense, 12.0, 0.5, 40),
        SpectrumData("masked", [2.0, 1.0], [0.1], grid, dense * 0.5, 5.0, 0.2, 30),
    ])
    view.set_rewind(RewindSeries([0, 1, 2], [4.0, 3.0, 2.5], [80.0, 40.0, 30.0]))
    assert len(view.density_plot.listDataItems()) == 2
    assert view.density_plot.getAxis("left").logMode
    assert len(view.kappa_box.addedItems) == 1
    assert not_blank(view)
    with pytest.raises(ValueError, match="same length"):
        view.set_rewind(RewindSeries([0, 1], [1.0], [1.0, 2.0]))


def test_a_trace_without_a_standard_error_gets_no_error_bar(qtbot):
    """While the masked density fills, its trace is the SLQ estimate, which has no standard error:
    it was labelled "+- 0", as if exact. Now the bar says where the number comes from."""
    import pyqtgraph as pg

    view = SpectrumView()
    qtbot.addWidget(view)
    view.set_spectra([SpectrumData("dense", [4.0], [-0.5], trace=12.0, trace_err=0.5, trace_source="hutchinson"),
                      SpectrumData("masked", [2.0], [0.1], trace=5.0, trace_source="slq")])
    labels = [i.toPlainText() for i in view.trace_plot.items if isinstance(i, pg.TextItem)]
    assert labels == ["12 +- 0.5", "5 (slq, no error bar)"]
    assert len([i for i in view.trace_plot.items if isinstance(i, pg.ErrorBarItem)]) == 1


def test_landscape_view_marks_barrier_and_points(qtbot):
    view = LandscapeView()
    qtbot.addWidget(view)
    view.resize(900, 450)
    a = np.linspace(0, 1, 11)
    view.set_curves([Curve1D(a, 1 + np.sin(np.pi * a), "init -> trained", barrier=1.0, barrier_alpha=0.5)])
    al, be = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    loss = 0.1 + np.add.outer(al**2, be**2)
    view.set_surface(Surface2D(al, be, loss, points={"trained": (0, 0), "pruned": (0.5, 0.5)},
                               trajectory=np.array([[-1, -1], [-0.5, -0.4], [0, 0]])))
    texts = [i for i in view.curve_plot.items if hasattr(i, "textItem")]
    assert any("barrier 1" in t.textItem.toPlainText() for t in texts)
    assert view.image.image.shape == (9, 7)
    names = [item.name() for item in view.surface_plot.listDataItems()]
    assert {"trained", "pruned", "trajectory"} <= set(names)
    assert not_blank(view)
    with pytest.raises(ValueError, match="shape"):
        view.set_surface(Surface2D(al, be, loss.T))


def _pixel(widget, plot, x: float, y: float):
    """Colour drawn at data point (x, y) of ``plot`` inside ``widget``."""
    gv = plot.scene().views()[0]
    at = gv.mapTo(widget, gv.mapFromScene(plot.getViewBox().mapViewToScene(QPointF(x, y))))
    return widget.grab().toImage().pixelColor(at).getRgb()


def test_images_are_drawn_the_right_way_round(qtbot):
    """loss[i, j] lies at (alpha[i], beta[j]) and a connectivity row is a reader: a global pyqtgraph
    axis-order option set by another view once transposed both pictures."""
    import visualizer.ui.views.heatmap  # noqa: F401 (imported with the window; must not change these)

    view = LandscapeView()
    qtbot.addWidget(view)
    view.resize(900, 450)
    view.show()
    grid = np.linspace(-1, 1, 5)
    view.set_surface(Surface2D(grid, grid, np.exp(3 * np.add.outer(grid, 0 * grid))))  # varies with alpha only
    qtbot.wait(50)
    plot = view.surface_plot
    assert _pixel(view, plot, -1, 0) != _pixel(view, plot, 1, 0)
    assert _pixel(view, plot, 0, -1) == _pixel(view, plot, 0, 1)

    conn = ConnectivityView()
    qtbot.addWidget(conn)
    conn.resize(800, 400)
    conn.show()
    # reader b reads only source a; reader c reads a and b
    conn.set_connectivity(Connectivity(["b", "c"], ["a", "b"], np.array([[1.0, np.nan], [1.0, 1.0]])))
    qtbot.wait(50)
    plot = conn.before_plot
    drawn, empty = _pixel(conn, plot, 0.5, 0.5), _pixel(conn, plot, 1.5, 0.5)
    assert drawn != empty and _pixel(conn, plot, 1.5, 1.5) == drawn


def test_speed_view_shows_three_variants(qtbot):
    view = SpeedView()
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.set_entries([
        SpeedEntry("dense", 1.0, 1e6, 0.6), SpeedEntry("masked", 1.1, 1e5, 0.05),
        SpeedEntry("shrunk", 0.3, 2e5, 0.5),
    ])
    assert [t for _, t in view.latency_plot.getAxis("bottom")._tickLevels[0]] == ["dense", "masked", "shrunk"]
    assert not view.train_plot.isVisible()
    assert not_blank(view)


def test_densenet_and_inception_views(qtbot):
    view = ConnectivityView()
    qtbot.addWidget(view)
    view.resize(800, 400)
    before = np.array([[1.0, np.nan], [0.5, 2.0]])
    after = np.array([[1.0, np.nan], [0.0, 2.0]])
    view.set_connectivity(Connectivity(["b", "c"], ["a", "b"], before), Connectivity(["b", "c"], ["a", "b"], after))
    assert "before: 3" in view.summary.text() and "1 removed" in view.summary.text()
    assert not_blank(view)
    branches = BranchView()
    qtbot.addWidget(branches)
    branches.set_modules([BranchModule("inc1", ["1x1", "3x3"], [1.0, 0.0], [False, True])])
    assert "1/2 branches kept" in branches._plots[0].titleLabel.text
    with pytest.raises(ValueError):
        BranchModule("x", ["a"], [1.0, 2.0])


def test_densenet_view_of_a_large_model_keeps_its_size(qtbot):
    """torchvision's densenet121: ~120 sources and readers. The caption naming every source on
    one line made the window 33,455 px wide; ticks are thinned, the caption names the first
    columns and its tooltip all of them."""
    n = 120
    strength = np.tril(np.ones((n, n)))
    names = [f"features.denseblock{i // 30 + 1}.denselayer{i % 30 + 1}.conv1" for i in range(n)]
    view = ConnectivityView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    view.set_connectivity(Connectivity(names, names, strength))
    assert view.minimumSizeHint().width() < 1000 and view.summary.minimumSizeHint().width() < 1000
    assert "… 104 more" in view.summary.text() and names[-1] in view.summary.toolTip()
    bottom = view.before_plot.getAxis("bottom")._tickLevels[0]
    left = view.before_plot.getAxis("left")._tickLevels[0]
    assert len(bottom) <= 20 and len(left) <= 40
    assert view.after_plot.maximumWidth() == 0  # no empty "after" column beside the matrix
    assert not_blank(view)


def test_inception_view_wraps_many_modules_into_rows(qtbot):
    """GoogLeNet has nine Inception modules: a 3 x 3 grid of charts, each wide enough to read
    (in one row, all but three and a half were clipped off the window)."""
    from visualizer.ui.views.inception import grid_shape

    assert [grid_shape(n) for n in (0, 1, 2, 4, 5, 9, 12)] == [(0, 0), (1, 1), (1, 2), (1, 4), (2, 3), (3, 3), (3, 4)]
    view = BranchView()
    qtbot.addWidget(view)
    view.resize(1000, 800)
    view.show()
    view.set_modules([BranchModule(f"inc{i}", ["b1", "b2", "b3", "b4"], [1.0, 2.0, 3.0, 4.0]) for i in range(9)])
    qtbot.waitUntil(lambda: view._plots[-1].sceneBoundingRect().width() > 0, timeout=2000)
    right = max(p.sceneBoundingRect().right() for p in view._plots)
    assert right <= view.canvas.width() + 1  # nothing clipped on the right
    assert all(p.sceneBoundingRect().width() > 200 for p in view._plots)
    assert len({round(p.sceneBoundingRect().top()) for p in view._plots}) == 3  # three rows


def test_views_follow_dark_theme(qtbot):
    from visualizer.ui.lecture.teaching import DARK, theme_manager

    view = SpeedView()
    qtbot.addWidget(view)
    view.set_entries([SpeedEntry("dense", 1.0, 1e6, 0.6)])
    manager = theme_manager()
    manager.set_scheme("dark")
    try:
        assert view.theme.background == DARK.background
        assert view.canvas.backgroundBrush().color().name() == DARK.background
    finally:
        manager.set_scheme("light")
    assert view.theme.name == "light"


# --- fit on a 1280x720 projector ----------------------------------------------------------------


def test_speed_and_spectrum_fit_the_view_dock_of_a_1280x720_window(qtbot):
    """At 1280x720 the view dock is ~750x600: the speed charts ran 80 px past its right edge
    (the eta title set the plot's minimum width) and the spectrum's rewind hint was cut off."""
    speed = SpeedView()
    spectrum = SpectrumView()
    for view in (speed, spectrum):
        qtbot.addWidget(view)
        view.resize(750, 600)
        view.show()
    qtbot.waitExposed(speed)
    qtbot.wait(20)
    assert speed.canvas.ci.geometry().width() <= speed.canvas.width()
    hint = next(i for i in spectrum.tau_plot.items if hasattr(i, "textItem"))
    assert hint.textItem.boundingRect().width() <= spectrum.tau_plot.getViewBox().width()


def test_a_flat_landscape_curve_gets_a_readable_loss_axis(qtbot):
    """At 100% density dense and pruned are the same point: the loss axis was 1e-16 tall and
    its ticks read '0.1674394905567174' (Xvfb, Landscape tab on lenet)."""
    view = LandscapeView()
    qtbot.addWidget(view)
    view.resize(750, 600)
    view.show()
    loss = 0.1674394905567174
    view.set_curves([Curve1D(alpha=[0.0, 0.5, 1.0], values=[loss, loss + 2.8e-17, loss],
                             label="dense -> pruned", barrier=2.8e-17, barrier_alpha=0.0)])
    qtbot.wait(50)  # auto range is applied on the next paint
    low, high = view.curve_plot.getViewBox().viewRange()[1]
    assert high - low >= 1e-4 and low < loss < high
