"""The overview and density-profile views driven as a user would: load, click, toggle, slide."""

import numpy as np
from PySide6.QtCore import QPoint, Qt

from tests.ui.conftest import open_profile, wait_idle


def overview(qtbot, window):
    view = window.views["overview"]
    qtbot.waitUntil(lambda: view.overview is not None and view.image_array() is not None, timeout=10000)
    return view


def test_the_overview_is_in_front_after_a_load_with_a_tile_per_prunable_tensor(qtbot, window):
    view = overview(qtbot, window)
    assert not window.docks["overview"].visibleRegion().isEmpty()
    assert [r.name for r in view.layout_.rects] == window.state.prunable  # lenet runs in its order
    window.docks["heatmap"].raise_()
    window.request_load("resnet-mini")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.overview is not None and len(view.overview.tiles) == len(window.state.prunable),
                    timeout=10000)
    assert not window.docks["overview"].visibleRegion().isEmpty()  # back in front after the load


def test_the_first_load_shows_the_overview_even_behind_a_restored_analysis_tab(qtbot):
    """A layout restored from an earlier run may have the graph in front: the window's first load
    still shows the overview. A later load keeps a view the person brought forward (the graph
    then follows the new model: tests/ui/test_window.py)."""
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(restore_layout=False)
    w.ask_discard = lambda: "discard"
    qtbot.addWidget(w)
    w.show()
    w.docks["graph"].raise_()  # as a restored layout would leave it
    qtbot.waitUntil(lambda: not w.docks["graph"].visibleRegion().isEmpty(), timeout=3000)
    try:
        w.request_load("lenet")
        wait_idle(qtbot, w)
        assert not w.docks["overview"].visibleRegion().isEmpty()
        w.docks["graph"].raise_()  # now the person's choice: kept through the next load
        wait_idle(qtbot, w)
        w.request_load("mlp")
        wait_idle(qtbot, w)
        assert not w.docks["graph"].visibleRegion().isEmpty()
        assert w.docks["overview"].visibleRegion().isEmpty()
    finally:
        w.jobs.shutdown(1.0)


def test_a_click_on_a_tile_selects_its_layer_and_opens_the_heatmap(qtbot, window):
    view = overview(qtbot, window)
    target = window.state.prunable[-1]
    assert window.state.selected != target
    scene = view.scene_pos_of(target)
    pos = view.canvas.mapFromScene(scene)
    qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(int(pos.x()), int(pos.y())))
    qtbot.waitUntil(lambda: window.state.selected == target, timeout=3000)
    assert not window.docks["heatmap"].visibleRegion().isEmpty()
    r = view.layout_.rect(target)
    assert view.frame.isVisible() and view.frame.rect().width() > r.w


def test_the_area_toggle_changes_the_tile_areas(qtbot, window):
    view = overview(qtbot, window)
    by_params = {r.name: r.w * r.h for r in view.layout_.rects}
    view.area_box.setCurrentIndex(view.area_box.findData("equal"))
    equal = {r.name: r.w * r.h for r in view.layout_.rects}
    assert view.area == "equal"
    assert max(equal.values()) / min(equal.values()) < 1.3
    assert max(by_params.values()) / min(by_params.values()) > 5  # lenet: 150 vs 48,000 weights


def test_slider_moves_update_the_tiles(qtbot, window):
    view = overview(qtbot, window)
    before = view.image_array().copy()
    window.pruning_panel.set_density(0.1)
    wait_idle(qtbot, window)
    after = view.image_array()
    assert not np.array_equal(before, after)
    name = window.state.prunable[0]
    assert view.overview.tile_stats(name)["kept"] == window.state.layer_kept[name]
    assert "kept" in view.describe(name)


def test_a_large_rankings_slider_counts_the_tiles_without_reading_the_masks(qtbot, window, monkeypatch):
    """Above COUNTER_MIN_WEIGHTS the overview builds the ranking's pixel counts once (a job) and
    then follows the slider from them: the same numbers as counting the live masks."""
    import visualizer.ui.shell.requests as window_module
    import visualizer.ui.views.overview as overview_module
    from visualizer.core.pruning.overview import Overview

    monkeypatch.setattr(window_module, "COPY_MASK_LIMIT", 0)  # live masks, as for a large model
    monkeypatch.setattr(overview_module, "COUNTER_MIN_WEIGHTS", 0)
    view = overview(qtbot, window)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view._counter is not None, timeout=20000)
    calls = []
    monkeypatch.setattr(view.overview, "set_mask", lambda *a, **k: calls.append(a))
    for rho in (0.3, 0.07, 0.8):
        window.pruning_panel.set_density(rho)
        wait_idle(qtbot, window)
        by_counter = view.overview.kept.copy()
        rk = window.state.current_ranking()
        read = int((rk._synced == rk._groups[0].k).sum())
        Overview.set_mask(view.overview, window.state.masks.masks)
        assert np.array_equal(view.overview.kept, by_counter)
    assert calls == []  # no move counted the masks
    assert read < len(rk.names)  # nor did the window read every layer's mask (at most the shown ones)


def test_diff_mode_shows_snapshot_a_against_the_current_mask(qtbot, window):
    view = overview(qtbot, window)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    view.take_snapshot()
    assert view.mode == "diff"
    window.pruning_panel.set_density(0.2)
    wait_idle(qtbot, window)
    shares = view.overview.diff_shares()
    assert shares is not None
    assert np.allclose(shares[:, 2], 0)  # the current mask keeps a subset of A: nothing only in B
    assert shares[:, 1].sum() > 0


def test_profile_numbers_equal_the_kept_fractions_and_export_round_trips(qtbot, window, tmp_path):
    from visualizer.core.pruning.profile import read_profile_csv

    window.pruning_panel.set_density(0.3)
    wait_idle(qtbot, window)
    window.docks["profile"].raise_()
    view = window.views["profile"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.flops is not None and view.profile is not None, timeout=10000)
    view.refresh()
    s = window.state
    for r in view.profile.rows:
        assert r.kept == s.layer_kept[r.name] and r.params == s.layer_total[r.name]
        assert r.density == s.layer_kept[r.name] / s.layer_total[r.name]
    assert view.table.rowCount() == len(s.prunable)
    rows = read_profile_csv(view.export_csv(str(tmp_path / "p.csv")))
    assert [(r["name"], r["kept"]) for r in rows] == [(r.name, r.kept) for r in view.profile.rows]
    assert all(r["flops"] and r["flops"] > 0 for r in rows)
    png = view.export_image(str(tmp_path / "p.png"))
    svg = view.export_image(str(tmp_path / "p.svg"))
    assert png.stat().st_size > 1000 and "<svg" in svg.read_text()[:2000]


def test_profile_compares_another_criterion_at_the_same_density(qtbot, window):
    window.pruning_panel.set_density(0.3)
    wait_idle(qtbot, window)
    window.docks["profile"].raise_()
    view = window.views["profile"]
    view.add_comparison(("magnitude", "layer"))
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "magnitude · layer" in view.series, timeout=10000)
    dens = view.series["magnitude · layer"].densities
    # layer scope: every layer keeps floor(0.3 * d_l) of its own d_l weights
    for name, total in window.state.layer_total.items():
        assert dens[name] == (int(0.3 * total + 1e-9)) / total
    window.pruning_panel.set_density(0.1)  # the comparison follows the slider
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.series["magnitude · layer"].densities != dens, timeout=3000)
    dens = view.series["magnitude · layer"].densities
    for name, total in window.state.layer_total.items():
        assert dens[name] == (int(0.1 * total + 1e-9)) / total


def test_score_colours_arrive_with_the_ranking(qtbot, window):
    view = overview(qtbot, window)
    window.pruning_panel.set_settings("random", "global", "unstructured")  # scores unlike |w|
    window.pruning_panel.set_density(0.3)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.overview.score is not None and window.state.scores is not None, timeout=5000)
    value = view.image_array().copy()
    view.set_mode("score")
    assert view.mode == "score" and "score" in view.legend.text()
    assert not np.array_equal(value, view.image_array())
    assert np.allclose(view.overview.score, view.overview.levels(window.state.scores))


def test_a_session_keeps_the_overview_modes(qtbot, window, tmp_path):
    from visualizer.ui.files import sessions

    view = overview(qtbot, window)
    view.set_mode("kept")
    view.set_area("equal")
    path = tmp_path / "s.pviz"
    assert sessions.save_session(window, path, synchronous=True)
    view.set_mode("value")
    view.set_area("params")
    window.open_session(str(path))
    wait_idle(qtbot, window)
    assert (view.mode, view.area) == ("kept", "equal")


def test_the_profile_toggles_to_one_row_per_coupled_group(qtbot, window):
    from visualizer.core.pruning.profile import group_profile

    window.request_load("resnet-mini")
    wait_idle(qtbot, window)
    window.pruning_panel.set_density(0.2)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    assert view.table.rowCount() == len(window.state.prunable)
    view.unit_box.setCurrentIndex(view.unit_box.findData("group"))  # the user's toggle
    assert view.mode == "group" and view.lambda_button.text() == "λ_max per coupled group"
    expected = group_profile(view.groups, window.state.masks.masks)
    assert [(r.name, r.kept, r.params) for r in view.group_rows] == [(r.name, r.kept, r.params) for r in expected]
    assert view.table.rowCount() == len(expected) and view.table.item(0, 1).text() == expected[0].name
    # a residual model: some group has two producers joined by an add
    assert any(sum(1 for m in g.producers()) > 1 for g in view.groups)
    assert "coupled groups" in view.summary.text()
    window.pruning_panel.set_density(0.05)  # the group rows follow the slider
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: sum(r.kept for r in view.group_rows) < sum(r.kept for r in expected), timeout=3000)
    # a compared ranking gets a line per group: its own mask's kept fraction of each group
    view.add_comparison(("magnitude", "layer"))
    view.add_comparison(("allocation", "erk"))
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "magnitude · layer" in view.group_series, timeout=10000)
    from visualizer.core.pruning.ranking import Ranking

    scores = {n: p.detach().abs() for n, p in window.state.loaded.model.named_parameters()
              if n in window.state.prunable}
    layer_mask = Ranking.from_scores(scores, "layer").mask_at(0.05)
    assert view.group_series["magnitude · layer"] == {
        r.name: r.density for r in group_profile(view.groups, layer_mask.masks)}
    assert "allocation: erk" in view.series and "allocation: erk" not in view.group_series
    assert "per layer only" in view.summary.text() and "allocation: erk" in view.summary.text()
    view.unit_box.setCurrentIndex(view.unit_box.findData("layer"))
    assert view.table.rowCount() == len(window.state.prunable)


def test_every_allocation_rule_compares_at_the_exact_global_count(qtbot, window):
    from visualizer.core.pruning.allocation import ALLOCATIONS
    from visualizer.core.pruning.ranking import kept_count

    window.pruning_panel.set_density(0.1)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    box = view.compare_box
    offered = [i for i in range(box.count()) if box.itemText(i).startswith("allocation:")]
    assert [box.itemData(i)[1] for i in offered] == list(ALLOCATIONS)  # every rule, once
    for i in offered:
        box.setCurrentIndex(i)
        qtbot.mouseClick(view.add_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    qtbot.waitUntil(lambda: len(view.series) == len(offered), timeout=120000)
    total = window.state.total()
    for label, ser in view.series.items():
        assert sum(ser.kept.values()) == kept_count(0.1, total), label
    window.pruning_panel.set_density(0.03)  # every series follows the slider, still exact
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: all(sum(s.kept.values()) == kept_count(0.03, total) for s in view.series.values()),
                    timeout=5000)


def test_owl_without_data_says_so_in_one_line(qtbot, window):
    view = open_profile(qtbot, window)
    window.state.dataset = None  # a model loaded without a dataset
    view.add_comparison(("magnitude", "owl"))
    assert "needs calibration data" in view.note.text() and "\n" not in view.note.text()
    assert not view.series and ("magnitude", "owl") not in view._wanted
    view.compute_curvature()
    assert "needs evaluation data" in view.note.text()


def test_lambda_max_per_layer_fills_the_column_and_paints_the_graph(qtbot, window, monkeypatch, tmp_path):
    from visualizer.ui.views import profile as profile_mod

    monkeypatch.setattr(profile_mod, "LANCZOS_STEPS", 8)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    qtbot.mouseClick(view.lambda_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    qtbot.waitUntil(lambda: "layer" in view.curvature, timeout=60000)
    lam = view.curvature["layer"]
    assert set(lam) == set(window.state.prunable) and all(v > 0 for v in lam.values())
    col = [view.table.horizontalHeaderItem(j).text() for j in range(view.table.columnCount())].index(
        "λ_max\n(at 50.0%)")
    first = view.profile.rows[0].name
    assert view.table.item(0, col).text() == f"{lam[first]:.4g}"
    from visualizer.core.pruning.profile import read_profile_csv

    rows = read_profile_csv(view.export_csv(str(tmp_path / "p.csv")))
    assert {r["name"]: r["lambda_max"] for r in rows} == lam
    # the Graph view, built later, paints it as an overlay
    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not None, timeout=10000)
    assert "λ_max per layer" in panel.overlays
    assert panel.overlays.get("λ_max per layer").values[first.rsplit(".", 1)[0]] == lam[first]
    panel.view.overlay_box.setCurrentText("λ_max per layer")  # the user's choice
    assert panel.view.overlay_name == "λ_max per layer"
    assert panel.view.value_of(first.rsplit(".", 1)[0]) == lam[first]
    window.request_load("mlp")  # another model: not painted with lenet's numbers
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "λ_max per layer" not in panel.overlays, timeout=10000)


def test_lambda_max_per_group_paints_every_layer_of_the_group(qtbot, window, monkeypatch):
    from visualizer.ui.views import profile as profile_mod

    monkeypatch.setattr(profile_mod, "LANCZOS_STEPS", 4)
    window.request_load("resnet-mini")
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    view.set_mode("group")
    qtbot.mouseClick(view.lambda_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    qtbot.waitUntil(lambda: "group" in view.curvature, timeout=120000)
    lam = view.curvature["group"]
    assert set(lam) == {r.name for r in view.group_rows}
    heads = [view.table.horizontalHeaderItem(j).text() for j in range(view.table.columnCount())]
    col = next(j for j, h in enumerate(heads) if h.startswith("λ_max"))
    assert view.table.item(0, col).text() == f"{lam[view.group_rows[0].name]:.4g}"
    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "λ_max per group" in panel.overlays, timeout=10000)
    painted = panel.overlays.get("λ_max per group").values
    for row in view.group_rows:  # each layer shows the largest λ_max of the groups it is in
        for t in row.layers:
            assert painted[t.rsplit(".", 1)[0]] >= lam[row.name]


def test_sensitivity_rows_paint_the_graph(qtbot, window):
    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    window.docks["sensitivity"].raise_()
    sens = window.views["sensitivity"]
    sens.levels_edit.setText("0.5,0.1")
    qtbot.mouseClick(sens.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    qtbot.waitUntil(lambda: "sensitivity (accuracy drop)" in panel.overlays, timeout=60000)
    painted = panel.overlays.get("sensitivity (accuracy drop)").values
    lowest = {r["unit"]: r["accuracy_drop"] for r in sens.rows if r["level"] == 0.1}
    assert {k.rsplit(".", 1)[0]: v for k, v in lowest.items()} == painted


def test_the_profile_leaves_the_panels_their_width_at_1280(qtbot, window):
    """Its controls in one row made the right dock area 1,039 px wide at least: at 1280x720 the
    model and pruning panels were cut. Two rows, a short comparison box and a cut note."""
    view = open_profile(qtbot, window)
    view._say("λ_max per coupled group at density 20.0% (5 units, 128 test samples); on the Graph view " * 3)
    assert view.minimumSizeHint().width() <= 600
