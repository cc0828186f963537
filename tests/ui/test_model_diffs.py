"""Diffs of two models in the window, driven as a user would: B = the shrunk model or the
weights before the last kept fine-tune, painted on the graph (Δ params, Δ FLOPs, weight change)
and in the overview (tile colour = the layer's change); the masked-vs-shrunk table measures the
same shrunk model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.ui.conftest import open_graph, wait_idle
from visualizer.ui.views.diffs import NO_EARLIER_VERSION


def choose(box, key: str) -> None:
    """Pick an entry of a diff box as a click on it does (activated with its index)."""
    i = box.findData(key)
    box.setCurrentIndex(i)
    box.activated.emit(i)


def fine_tuned(window) -> torch.nn.Module:
    """A kept fine-tune, as the training panel installs it: a new model object, fc1 changed."""
    model = copy.deepcopy(window.state.loaded.model)
    with torch.no_grad():
        model.fc1.weight.mul_(1.5)  # ||W_B - W_A|| / ||W_A|| = 0.5 exactly
    window.install_trained_model(model)
    return model


def test_the_shrunk_model_on_the_graph(qtbot, window):
    panel = open_graph(qtbot, window)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    choose(panel.diff_box, "shrunk")
    wait_idle(qtbot, window, timeout=60000)
    diff = window.state.model_diff
    assert diff is not None and diff.kind == "shrunk"
    assert panel.view.overlay_name == "models: relative Δ params"
    rel = panel.overlays.get("models: relative Δ params")
    assert rel.range() == (-1.0, 1.0) and rel.values["conv2"] == pytest.approx(diff.layers["conv2"].relative_params)
    d_params = panel.overlays.get("models: Δ params (B − A)")
    assert d_params.diverging and d_params.values["conv2"] < 0
    # the deltas are the two models' own parameter counts, layer by layer
    shrunk = diff.model_b
    assert d_params.values["conv2"] == sum(p.numel() for p in shrunk.conv2.parameters()) - (16 * 6 * 9 + 16)
    panel.view.overlay_box.setCurrentText("models: Δ params (B − A)")
    assert panel.view.value_of("conv2") == d_params.values["conv2"]
    assert panel.overlays.get("models: Δ FLOPs (B − A)").values["conv2"] < 0
    assert "models: weight change" not in panel.overlays  # every shape changed
    assert "B = shrunk to 50%" in panel.status.text()
    window.request_load("mlp")  # a new model: the diff and its overlays go
    wait_idle(qtbot, window)
    assert window.state.model_diff is None
    assert not [n for n in panel.overlays.names() if n.startswith("models:")]


def test_before_and_after_training_on_the_graph(qtbot, window):
    panel = open_graph(qtbot, window)
    choose(panel.diff_box, "training")
    assert panel.status.text() == NO_EARLIER_VERSION  # one line, no job
    before = window.state.loaded.model
    window.pruning_panel.set_density(0.5)
    fine_tuned(window)
    assert window.state.previous_model is before
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.hierarchy is not None, timeout=5000)
    choose(panel.diff_box, "training")
    wait_idle(qtbot, window, timeout=30000)
    qtbot.waitUntil(lambda: "models: weight change" in panel.overlays, timeout=5000)
    change = panel.overlays.get("models: weight change").values
    assert change["fc1"] == pytest.approx(0.5) and change["conv1"] == 0.0
    assert panel.view.overlay_name == "models: weight change"
    assert "B = the fine-tuned weights" in panel.status.text() and "counts the pruned weights" in panel.status.text()
    assert all(v == 0 for v in panel.overlays.get("models: Δ params (B − A)").values.values())
    # the weights since load ("parameter change") survive the new model version too
    qtbot.waitUntil(lambda: "parameter change" in panel.overlays, timeout=5000)
    assert panel.overlays.get("parameter change").values["fc1"] == pytest.approx(0.5)


def test_the_overview_colours_tiles_by_the_model_diff(qtbot, window):
    view = window.views["overview"]
    window.docks["overview"].raise_()
    qtbot.waitUntil(lambda: view.layout_ is not None, timeout=10000)
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    choose(view.diff_box, "shrunk")
    wait_idle(qtbot, window, timeout=60000)
    assert view.mode == "models"
    diff = window.state.model_diff
    rel = diff.values("relative params")
    assert -1.0 < rel["conv2"] < 0.0
    img = view.image_array()

    def colour_of(name):
        r = view.layout_.rect(name)
        return img[r.y + r.h // 2, r.x + r.w // 2]

    # a smaller cut and a larger cut get different colours; each tile is one colour
    assert not np.array_equal(colour_of("conv2.weight"), colour_of("fc3.weight")) or rel["conv2"] == rel["fc3"]
    r = view.layout_.rect("fc1.weight")
    tile = img[r.y + 1: r.y + r.h - 1, r.x + 1: r.x + r.w - 1].reshape(-1, 4)
    assert (tile == tile[0]).all()
    assert "parameter change" in view.legend.text() and "B = shrunk" in view.legend.text()
    assert "params 880 → " in view.describe("conv2.weight")  # 16*6*9 + 16 dense


def test_the_overview_shows_weight_change_after_training(qtbot, window):
    view = window.views["overview"]
    fine_tuned(window)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.overview is not None, timeout=10000)
    choose(view.diff_box, "training")
    wait_idle(qtbot, window, timeout=30000)
    assert view.mode == "models"
    assert "weight change" in view.legend.text()
    assert "weight change 0.5" in view.describe("fc1.weight")


def test_the_table_measures_the_diffs_shrunk_model(qtbot, window):
    panel = open_graph(qtbot, window)
    window.pruning_panel.set_density(0.5)
    choose(panel.diff_box, "shrunk")
    wait_idle(qtbot, window, timeout=60000)
    shrunk_params = window.state.model_diff.totals()["params_b"]
    panel.compare_shrunk()
    wait_idle(qtbot, window, timeout=60000)
    table = panel.before_after.table
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in (1, 2, 3)] for r in range(table.rowCount())}
    assert rows["parameters stored"][2] == f"{shrunk_params:,.0f}"
    assert rows["parameters stored"][0] == rows["parameters stored"][1]  # masked stores its zeros
    assert rows["FLOPs executed"][0] == rows["FLOPs executed"][1]  # and runs them
    assert all(float(v) > 0 for v in rows["latency (ms)"])  # measured in the job
    note = panel.before_after.note.text()
    assert "save nothing by themselves" in note and "Latency: median of 20 forward passes" in note
