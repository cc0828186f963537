"""The nested graph view, driven as a user would: clicks and keys open and close containers,
runs of identical blocks fold, search jumps and opens, overlays paint, groups highlight."""

from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from tests.graph_models import DeepResNet, TokenTransformer
from visualizer.core.models.zoo import ZOO
from visualizer.core.structure.graph import build_graph
from visualizer.core.structure.hierarchy import ROOT, model_hierarchy
from visualizer.ui.views.graph import CoupledGroup, GraphView


def not_blank(widget) -> bool:
    img = widget.grab().toImage()
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    return len(colours) > 8


def shown(qtbot, model, example=None, size=(1000, 560)) -> GraphView:
    h = model_hierarchy(model, build_graph(model, example))
    view = GraphView()
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    view.set_hierarchy(h)
    return view


def point(view: GraphView, key: str, header: bool = False) -> QPoint:
    scene = view.header_pos_of(key) if header else view.scene_pos_of(key)
    return view.canvas.mapFromScene(scene)


def click(qtbot, view: GraphView, key: str, header: bool = False) -> None:
    qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=point(view, key, header))


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet-mini", "densenet-mini", "inception-mini", "se-cnn",
                                  "rnn", "transformer-mini"])
def test_every_bundled_model_opens_with_its_blocks_closed(qtbot, name):
    view = shown(qtbot, ZOO[name].build())
    h = view.hierarchy
    assert view.opened == {ROOT}
    assert view.placement.visible == h.visible({ROOT})
    layers = [k for k in h.leaf_order if h.nodes[k].op == "layer" and h.nodes[k].params]
    view.set_densities({f"{layers[0]}.weight": 0.1})
    assert view.value_of(layers[0]) == pytest.approx(0.1)
    assert not_blank(view)


def test_click_opens_a_block_in_place_and_its_title_strip_closes_it(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    assert "layer3.conv1" not in view.placement.visible
    click(qtbot, view, "layer3")
    assert view.is_open("layer3") and "layer3.conv1" in view.placement.visible
    # the boxes of what stayed closed did not move sideways past the opened one
    assert view.placement.rects["stem"][0] < view.placement.rects["layer3"][0]
    click(qtbot, view, "layer3", header=True)
    assert not view.is_open("layer3") and "layer3" in view.placement.visible
    assert view.breadcrumb_texts() == ["model", "layer3"]


def test_keys_open_and_close_the_selection(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.select("layer3")
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Return)
    assert view.is_open("layer3")
    view.select("layer3.conv2")
    qtbot.keyClick(view.canvas, Qt.Key.Key_Backspace)  # closes the block holding the selection
    assert not view.is_open("layer3") and view.selected == "layer3"


def test_sixteen_identical_blocks_show_as_one_run_that_unfolds(qtbot):
    view = shown(qtbot, DeepResNet(stages=(16,), width=2), torch.randn(1, 3, 8, 8))
    click(qtbot, view, "stages")
    run = "stages.0.0..stages.0.15"
    assert view.placement.visible.count(run) == 1
    assert view.titles[view.row_of[run]] == "Bottleneck × 16"
    blocks = [k for k in view.placement.visible if k.startswith("stages.0.")]
    assert blocks == [run]
    click(qtbot, view, run)
    blocks = [k for k in view.placement.visible if k.startswith("stages.0.")]
    assert blocks == [f"stages.0.{i}" for i in range(16)]
    click(qtbot, view, run, header=True)  # folded again
    assert [k for k in view.placement.visible if k.startswith("stages.0.")] == [run]


def test_search_jumps_to_a_layer_and_opens_what_hides_it(qtbot):
    view = shown(qtbot, DeepResNet(stages=(16,), width=2), torch.randn(1, 3, 8, 8))
    qtbot.keyClicks(view.search, "stages.0.7.conv2")
    qtbot.keyClick(view.search, Qt.Key.Key_Return)
    assert view.selected == "stages.0.7.conv2"
    assert "stages.0.7.conv2" in view.placement.visible
    assert {"stages", "stages.0.0..stages.0.15", "stages.0.7"} <= view.opened
    assert view.breadcrumb_texts() == ["model", "stages", "0", "Bottleneck × 16", "7", "conv2"]
    # the view is centred on it
    (x0, x1), (y0, y1) = view.plot.getViewBox().viewRange()
    x, y, w, h = view.placement.rects["stages.0.7.conv2"]
    assert x0 < x + w / 2 < x1 and y0 < y + h / 2 < y1
    # a search for a container opens it
    view.find("stages.0.3")
    assert view.is_open("stages.0.3")
    view.find("no-such-layer")
    assert "no layer" in view.info.text()


def test_click_on_a_layer_selects_it_and_hover_summarises_a_closed_block(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.set_densities({"layer3.conv1.weight": 0.2, "layer3.conv2.weight": 0.6, "fc.weight": 0.5})
    with qtbot.waitSignal(view.layerSelected, timeout=2000) as blocker:
        click(qtbot, view, "fc")
    assert blocker.args == ["fc"]
    qtbot.mouseMove(view.canvas.viewport(), point(view, "layer3"))
    qtbot.waitUntil(lambda: view.hovered == "layer3")
    assert "mean 0.4" in view.info.text() and "min 0.2" in view.info.text() and "max 0.6" in view.info.text()
    # the closed block carries a colour bar of its layers' values
    assert view.row_of["layer3"] in view.bars
    # a click on empty space selects nothing
    with qtbot.assertNotEmitted(view.layerSelected):
        qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(3, 3))


def test_any_registered_overlay_paints_and_the_legend_follows(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.overlays.set("sensitivity", {"layer3.conv1": 5.0, "stem.0": -1.0}, unit="Δ loss", diverging=True)
    assert view.overlay_box.findText("sensitivity") >= 0
    view.overlay_box.setCurrentText("sensitivity")
    assert view.overlay_name == "sensitivity"
    assert view.colorbar_item.isVisible()
    assert view.colorbar_item.levels() == pytest.approx((-5.0, 5.0))
    assert "sensitivity (Δ loss)" in view.colorbar_item.axis.labelText
    assert view.value_of("layer3.conv1") == 5.0
    # a new value for the shown overlay repaints it
    view.overlays.set("sensitivity", {"layer3.conv1": 2.0}, diverging=True)
    assert view.value_of("layer3.conv1") == 2.0
    view.overlays.remove("sensitivity")
    assert view.overlay_name == ""


def test_an_overlay_chosen_before_it_exists_is_shown_when_it_arrives(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.set_overlay("FLOPs")
    assert view.overlay_name == ""
    view.overlays.set("FLOPs", {"fc": 100.0})
    assert view.overlay_name == "FLOPs"


def test_a_coupled_group_highlights_every_member_and_says_why(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    group = CoupledGroup(0, "#0 channels of stem.0", ["stem.0", "layer1.conv2", "layer3.shortcut.0"],
                         [("stem.0.weight", "produces the channels; residual add joins it"),
                          ("layer1.conv2.weight", "produces the channels; residual add joins it"),
                          ("layer3.shortcut.0.weight", "reads these channels")], size=16, kept=12)
    view.set_groups([group])
    view.select_layer("stem.0")  # selected in another view: marked, the list stays closed
    assert not view.groups_tree.isVisible()
    view.open_node("stem")
    click(qtbot, view, "stem.0")  # a click here lists the layer's groups
    assert view.groups_tree.isVisible() and view.groups_tree.topLevelItemCount() == 1
    top = view.groups_tree.topLevelItem(0)
    assert "keeps 12/16" in top.text(0) and top.child(0).text(1).startswith("produces")
    view._group_clicked(top, 0)
    # the members inside closed blocks were opened to show them
    assert {"layer1..layer2", "layer1", "layer3", "layer3.shortcut"} <= view.opened
    highlighted = {view.placement.visible[i] for i in view.group_rows}
    assert highlighted == {"stem.0", "layer1.conv2", "layer3.shortcut.0"}
    assert "keeps 12 of 16" in view.info.text()


def test_the_selection_of_another_view_opens_and_marks_the_layer(qtbot):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.select_layer("layer3.conv2.weight")
    assert view.selected == "layer3.conv2" and view.is_open("layer3")
    assert view.selected_row == view.row_of["layer3.conv2"]


def test_keyboard_zooms_pans_and_fits(qtbot):
    view = shown(qtbot, ZOO["densenet-mini"].build())
    box = view.plot.getViewBox()
    whole = box.viewRange()
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Plus)
    (a0, a1), _ = box.viewRange()
    assert a1 - a0 == pytest.approx((whole[0][1] - whole[0][0]) / 1.25, rel=1e-3)
    qtbot.keyClick(view.canvas, Qt.Key.Key_Right)
    (b0, _b1), _ = box.viewRange()
    assert b0 - a0 == pytest.approx(0.1 * (a1 - a0), rel=1e-3)
    qtbot.keyClick(view.canvas, Qt.Key.Key_Home)
    assert box.viewRange()[0] == pytest.approx(whole[0], rel=1e-6)


@pytest.mark.slow  # torch.fx and torch.export both try first (5 s)
def test_an_untraceable_model_shows_its_modules_and_one_line_why(qtbot):
    m = TokenTransformer(blocks=3)
    view = shown(qtbot, m)  # a float example cannot run the Embedding
    assert view.placement.visible == ["embed", "blocks", "norm", "head"]
    assert "--example-input" in view.info.text()
    click(qtbot, view, "blocks")
    assert view.titles[view.row_of["blocks.0..blocks.2"]] == "Block × 3"


def test_export_png_svg_and_json_at_any_size(qtbot, tmp_path):
    view = shown(qtbot, ZOO["resnet-mini"].build())
    view.set_densities({"fc.weight": 0.5})
    view.open_node("layer3")
    view.export_png(str(tmp_path / "g.png"), 3000, 1200)
    img = QImage(str(tmp_path / "g.png"))
    assert (img.width(), img.height()) == (3000, 1200)
    view.export_svg(str(tmp_path / "g.svg"), 800, 400)
    assert "<svg" in (tmp_path / "g.svg").read_text()
    view.export_json(str(tmp_path / "g.json"))
    js = json.loads((tmp_path / "g.json").read_text())
    assert "layer3" in js["opened"] and js["overlays"]["kept fraction"]["values"]["fc.weight"] == 0.5
    assert any(c["id"] == "layer1..layer2" and c["repeat"] == 2 for c in js["hierarchy"]["containers"])


def test_a_large_container_is_laid_out_off_the_gui_thread_and_shows_closed_meanwhile(qtbot, monkeypatch):
    import networkx as nx

    from visualizer.core.structure import hierarchy as hier

    monkeypatch.setattr(hier, "LARGE_CONTAINER", 5)
    g = nx.DiGraph([(f"n{i}", f"n{i + 1}") for i in range(11)])
    for n in g:
        g.nodes[n].update(kind="layer", target=n, params=1)
    h = hier.build_hierarchy(g, {n: "" for n in g})  # 12 nodes at the top: "large" here
    view = GraphView()
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    view.set_hierarchy(h)
    assert view.placement.visible == [ROOT] and "laying out" in view.titles[0]  # the model, closed
    qtbot.waitUntil(lambda: view.is_open(ROOT), timeout=5000)
    assert view.placement.visible == [f"n{i}" for i in range(12)]
