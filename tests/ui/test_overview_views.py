"""The overview and density-profile views driven as a user would: load, click, toggle, slide."""

import numpy as np
from PySide6.QtCore import QPoint, Qt

from tests.ui.conftest import wait_idle


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
