"""The graph panel in the window: overlays from the masks (A/B included), FLOPs, coupled groups
with reasons and kept units, the overlay choice kept in the session."""

from __future__ import annotations

import pytest

from tests.ui.conftest import open_graph, wait_idle


def test_overlays_follow_the_masks_and_an_ab_compare(qtbot, window):
    panel = open_graph(qtbot, window)
    names = panel.overlays.names()
    assert "kept fraction" in names and "FLOPs" in names
    assert panel.view.overlay_name == "kept fraction"
    assert panel.overlays.get("FLOPs").values["conv1"] > 0
    window.pruning_panel.set_density(0.5)
    window.views["heatmap"].take_snapshot()  # A
    window.pruning_panel.set_density(0.1)  # B
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "A/B only A" in panel.overlays.names(), timeout=5000)
    only_a = panel.overlays.get("A/B only A").values
    both = panel.overlays.get("A/B kept by both").values
    masks = window.state.masks
    # B (10%) is a subset of A (50%) for one global ranking: B keeps nothing A dropped
    assert all(v == 0.0 for v in panel.overlays.get("A/B only B").values.values())
    fc1 = {ld.name: ld.density for ld in masks.layers()}["fc1.weight"]
    assert both["fc1"] == pytest.approx(fc1, abs=1e-6)
    assert only_a["fc1"] > 0
    assert panel.overlays.get("Δ params (B − A)").values["fc1"] < 0
    assert panel.overlays.get("Δ FLOPs (B − A)").values["fc1"] < 0
    panel.view.overlay_box.setCurrentText("A/B only A")
    assert panel.view.value_of("fc1") == pytest.approx(only_a["fc1"])


def test_groups_carry_reasons_and_the_units_the_mask_keeps(qtbot, window):
    panel = open_graph(qtbot, window)
    groups = panel.view.groups
    assert groups and all(g.reasons and g.kept is not None for g in groups)
    conv1 = next(g for g in groups if "conv1" in g.label)
    assert conv1.kept == conv1.size  # dense
    assert any(why == "produces the channels" for _p, why in conv1.reasons)


def test_the_overlay_choice_is_saved_in_the_session(qtbot, window, tmp_path):
    from visualizer.ui.shell.window import MainWindow

    panel = open_graph(qtbot, window)
    panel.view.overlay_box.setCurrentText("FLOPs")
    path = tmp_path / "s.pviz"
    window.session_path = path
    assert window.save_session(synchronous=True)
    other = MainWindow(restore_layout=False)
    other.ask_discard = lambda: "discard"
    qtbot.addWidget(other)
    other.show()
    other.open_session(str(path))
    wait_idle(qtbot, other)
    graph = other.views["graph"]
    assert graph.view.wanted_overlay == "FLOPs" or graph.view.overlay_name == "FLOPs"
    other.docks["graph"].raise_()  # computed once the tab is looked at
    qtbot.waitUntil(lambda: graph.view.overlay_name == "FLOPs", timeout=10000)
    other.jobs.shutdown(1.0)


def test_masked_vs_shrunk_table(qtbot, window):
    panel = open_graph(qtbot, window)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    panel.compare_shrunk()
    wait_idle(qtbot, window, timeout=60000)
    table = panel.before_after.table
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in (1, 2, 3)] for r in range(table.rowCount())}
    assert rows["parameters stored"][0] == rows["parameters stored"][1]  # masked stores its zeros
    assert rows["FLOPs executed"][0] == rows["FLOPs executed"][1]
    assert "save nothing by themselves" in panel.before_after.note.text()


def test_the_kept_units_of_a_shown_group_follow_the_slider(qtbot, window):
    panel = open_graph(qtbot, window)
    view = panel.view
    view.select("conv1", emit=True)  # as a click on conv1 does
    assert view.groups_tree.isVisible()
    group = view.groups_of("conv1")[0]
    assert group.kept == group.size
    masks = window.state.masks.copy()
    masks.masks["conv1.weight"][:2] = False  # two output channels of conv1 pruned entirely
    window.state.set_masks(masks)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.groups_of("conv1")[0].kept == group.size - 2, timeout=3000)
    assert f"keeps {group.size - 2}/{group.size}" in view.groups_tree.topLevelItem(0).text(0)


def test_a_double_click_on_a_layer_opens_its_heatmap(qtbot, window):
    from PySide6.QtCore import Qt

    panel = open_graph(qtbot, window)
    view = panel.view
    pos = view.canvas.mapFromScene(view.scene_pos_of("fc2"))
    vp = view.canvas.viewport()
    # a double click as the system sends it: press, release, double-click, release
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.state.selected == "fc2.weight", timeout=3000)
    heat = window.views["heatmap"]
    qtbot.waitUntil(lambda: not heat.visibleRegion().isEmpty(), timeout=3000)
    assert panel.visibleRegion().isEmpty()  # the heatmap tab came to the front
