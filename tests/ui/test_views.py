"""The heatmap and curves views: hover text, layouts, comparison, streaming points."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.conftest import wait_idle
from visualizer.ui.views import render


def test_hover_describes_index_weight_score_kept(qtbot, window):
    view = window.views["heatmap"]
    s = window.state
    window.pruning_panel.set_density(0.1)
    s.select("fc1.weight")
    w = s.params["fc1.weight"]
    text = view.describe(3, 17)
    assert text.startswith("fc1.weight[3, 17]")
    assert f"weight {w[3, 17]:+.4g}" in text
    assert f"score {abs(w[3, 17]):.4g}" in text  # magnitude: the score is |w|
    assert ("kept" if bool(s.masks["fc1.weight"][3, 17]) else "pruned") in text
    assert view.describe(-1, 0) == "" and view.describe(0, 10_000) == ""


def test_a_new_layer_is_drawn_one_pass_later_and_signals_meanwhile_wait_for_it(qtbot, window):
    """Selecting a layer draws it on the next event-loop pass (so a model change's work and this
    view's repaint are two short stalls, not one long one); masks or scores arriving in between
    are drawn with the new layer's layout, never the old one's."""
    view = window.views["heatmap"]
    s = window.state
    view.set_mode("scores")
    assert s.selected == "conv1.weight"  # 6 x 1 x 3 x 3: the image is 6 x 9
    s.select("fc2.weight")  # 84 x 120
    s.scores_changed.emit()  # before the pass: must not encode with the old layout
    s.masks_changed.emit()
    qtbot.waitUntil(lambda: view.title.text().startswith("<b>fc2.weight</b>"), timeout=2000)
    assert view.image_array().shape == (84, 120)
    assert (view.image_array() >= render.LO).all()


def test_scores_arriving_with_the_first_model_before_its_layer_is_drawn(qtbot):
    """The first model's scores may arrive before the heatmap has any layout (synchronous jobs
    in `pruneviz screenshot` did): they wait for the layer instead of failing."""
    from visualizer.core.tasks import run
    from visualizer.ui.jobs import actions
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(restore_layout=False)
    qtbot.addWidget(w)
    loaded, data, info = run(actions.load_job("lenet", None, False, None))
    w.state.set_model(loaded, data, info)
    w.state.scores = {n: np.abs(np.asarray(p)) for n, p in info["params"].items()}
    w.state.scores_changed.emit()  # the layer is still waiting for its pass
    view = w.views["heatmap"]
    view.set_mode("scores")
    assert view.image_array().shape == (6, 9)
    assert (view.image_array() >= render.LO).all()
    w.state.set_dirty(False)
    w.jobs.shutdown(1.0)


def test_conv_layouts_flat_and_kernel_grid(qtbot, window):
    view = window.views["heatmap"]
    s = window.state
    s.select("conv2.weight")  # 16 x 6 x 3 x 3
    assert view.image_array().shape == (16, 54)
    view.layout_box.setCurrentIndex(view.layout_box.findData("kernels"))
    img = view.image_array()
    assert img.shape == (16 * 4 - 1, 6 * 4 - 1)
    assert (img[3, :] == render.GAP).all() and (img[:, 3] == render.GAP).all()  # 1-pixel gaps
    # pixel (row 5, col 6) is output 1, input 1, kernel (1, 2)
    assert view.describe(5, 6).startswith("conv2.weight[1, 1, 1, 2]")
    assert view.describe(3, 0) == ""  # a gap


def test_modes_draw_what_they_say(qtbot, window):
    view = window.views["heatmap"]
    s = window.state
    s.select("fc2.weight")
    window.pruning_panel.set_density(0.2)
    mask = s.masks["fc2.weight"].numpy()
    view.set_mode("mask")
    img = view.image_array()
    assert ((img == render.HI) == mask).all() and ((img == render.PRUNED) == ~mask).all()
    view.set_mode("weights")
    assert (view.image_array() != render.PRUNED).all()  # pruned weights still shown
    view.set_mode("scores")
    assert (view.image_array() >= render.LO).all()  # every weight's score, pruned or not
    # symmetric weight colours: the largest |w| sits at an end of the colour scale
    view.set_mode("weights")
    w = s.params["fc2.weight"]
    i = np.unravel_index(np.abs(w).argmax(), w.shape)
    assert view.image_array()[i] in (render.LO, render.HI)


def test_compare_snapshot_with_other_criterion(qtbot, window):
    view = window.views["heatmap"]
    s = window.state
    window.pruning_panel.set_density(0.1)
    view.take_snapshot()
    assert view.mode == "compare" and view.compare_table.isVisible()
    rows = view.compare_rows
    assert rows[-1]["jaccard"] == 1.0  # identical masks
    window.pruning_panel.set_settings(criterion="random")
    wait_idle(qtbot, window)
    view._update_compare_table()
    rows = {r["name"]: r for r in view.compare_rows}
    expected = {r["name"]: r for r in s.masks.compare(s.snapshot)}
    for name, r in expected.items():
        assert rows[name]["overlap"] == r["overlap"] and rows[name]["jaccard"] == pytest.approx(r["jaccard"])
    assert rows["(all layers)"]["jaccard"] < 0.5  # random vs magnitude at 10% barely agree
    img = view.image_array()
    assert set(np.unique(img)) <= {render.CMP_BOTH, render.CMP_CUR, render.CMP_A, render.CMP_NONE}


def test_curves_density_axis_spans_the_slider_with_plain_ticks(qtbot, window):
    """One evaluated mask at 0.35% auto-ranged the log axis to a sliver without tick labels,
    and the SI prefix labelled it '(x0.001)' (seen under Xvfb after a 1-epoch fine-tune)."""
    from visualizer.ui.views.curves import density_ticks

    window.docks["curves"].raise_()
    view = window.views["curves"]
    window.state.add_result({"criterion": "magnitude", "density": 0.0035, "accuracy": 0.1, "retrain": "finetune"})
    qtbot.wait(20)
    low, high = view.plot.getViewBox().viewRange()[0]
    assert low <= -3 and high >= 0
    # a sweep: accuracies 0.09 .. 0.94 read 'test accuracy (x0.001)' with ticks 100 .. 900
    for d, acc in [(1.0, 0.94), (0.5, 0.2), (0.1, 0.09), (0.01, 0.1)]:
        window.state.add_result({"criterion": "random", "density": d, "accuracy": acc, "retrain": "none"})
    qtbot.wait(20)
    for side in ("bottom", "left"):
        assert "(x" not in view.plot.getAxis(side).labelString(), side
    labels = [label for _, label in density_ticks()]
    assert labels[0] == "100%" and labels[-1] == "0.1%" and "1%" in labels


def test_curves_gain_points_as_rows_stream(qtbot, window):
    view = window.views["curves"]
    assert view.point_count() == 0
    for i, d in enumerate([1.0, 0.5, 0.1]):
        window.state.add_result({"criterion": "magnitude", "density": d, "accuracy": 0.9 - 0.1 * i, "retrain": "none"})
        assert view.point_count() == i + 1
    window.state.add_result({"criterion": "random", "density": 0.1, "accuracy": 0.2, "retrain": "none"})
    window.state.add_result({"criterion": "magnitude", "density": 0.0, "accuracy": 0.1})  # not on a log axis
    assert view.point_count() == 4 and len(view._series) == 2
    assert view.baseline.isVisible() and view.baseline.value() == pytest.approx(window.state.loaded.accuracy)
