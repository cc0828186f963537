"""The language-model views driven as a user would: calibration inspector, reconstruction errors,
real savings, and the heatmap's N:M blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle


def test_calibration_inspector_marks_outliers(qtbot, window):
    assert window.state.dataset is not None
    view = window.views["calibration"]
    qtbot.mouseClick(view.measure_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    names = [view.layer_box.itemText(i) for i in range(view.layer_box.count())]
    assert names and all(n in window.state.prunable for n in names)
    row = view.selected()
    assert row.norms.numel() > 0 and "outlier" in view.status.text()
    view.layer_box.setCurrentIndex(view.layer_box.count() - 1)
    assert view.selected().name == names[-1]


def test_reconstruction_errors_side_by_side(qtbot, window):
    window.state.density = 0.5
    view = window.views["reconstruction"]
    qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert view.rows and all(r.density == 0.5 for r in view.rows)
    assert all(0 <= r.sparsegpt for r in view.rows)
    assert "SparseGPT" in view.status.text()
    assert len(view.plot.listDataItems()) == 3  # one bar group per method


def test_savings_table_lists_every_masked_layer(qtbot, window):
    window.set_density(0.5)
    wait_idle(qtbot, window)
    view = window.views["savings"]
    qtbot.mouseClick(view.refresh_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    assert view.table.rowCount() == len(window.state.masks.masks)
    kernels = [view.table.item(i, 8).text() for i in range(view.table.rowCount())]
    assert any("linear layers only" in k for k in kernels)  # LeNet's convolutions
    assert "stored dense" in view.summary.text()


def test_heatmap_draws_the_m_blocks(qtbot, window):
    from visualizer.core.pruning.masks import MaskSet
    from visualizer.core.pruning.nm import nm_masks

    view = window.views["heatmap"]
    name = "fc1.weight" if "fc1.weight" in window.state.prunable else window.state.prunable[-1]
    window.state.select(name)
    view.flush()
    scores = {n: torch.tensor(window.state.params[n]).abs() for n in window.state.prunable}
    window.state.structure = "2:4"
    window.state.set_masks(MaskSet(nm_masks(scores, 2, 4).masks.masks))
    assert not view.blocks.item.isVisible()
    qtbot.mouseClick(view.blocks_check, Qt.MouseButton.LeftButton)
    rows, cols = window.state.params[name].shape[0], int(np.prod(window.state.params[name].shape[1:]))
    view.plot.getViewBox().setRange(xRange=(0, 16), yRange=(0, min(rows, 8)), padding=0)
    view.redraw()
    assert view.blocks.item.isVisible()
    assert list(view.blocks.edges[:3]) == [0.0, 4.0, 8.0]
    assert view.blocks.edges[-1] <= cols
    qtbot.mouseClick(view.blocks_check, Qt.MouseButton.LeftButton)
    assert not view.blocks.item.isVisible()


def test_curves_show_perplexity_for_language_model_rows(qtbot, window):
    from visualizer.ui.jobs.training import accuracy_text

    rows = [{"criterion": "wanda", "density": d, "accuracy": 0.1, "loss": 3.0, "perplexity": p, "retrain": "none"}
            for d, p in ((1.0, 20.0), (0.5, 25.0), (0.3, 60.0))]
    window.state.set_results(rows)
    view = window.views["curves"]
    view.refresh()
    assert view.plot.getAxis("left").labelText == "test perplexity"
    (item,) = [i for i in view.plot.listDataItems() if i.name()]
    assert sorted(item.getData()[1].tolist()) == [20.0, 25.0, 60.0]
    assert accuracy_text(rows[1]).startswith("perplexity 25")


def test_apply_sparsegpt_installs_mask_and_weight_change(qtbot, window):
    window.state.density = 0.5
    before = {n: v.copy() for n, v in window.state.params.items()}
    view = window.views["reconstruction"]
    qtbot.mouseClick(view.apply_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert window.state.mask_source == "SparseGPT"
    assert "SparseGPT applied" in view.status.text()
    assert view.changes and all(v > 0 for v in view.changes.values())
    name = next(iter(view.changes))
    kept = window.state.masks[name].numpy()
    after = window.state.params[name]
    assert (after[kept] != before[name][kept]).any()  # the kept weights moved
    assert window.state.weights_modified


def test_make_it_2_4_installs_an_exact_pattern_and_lists_the_skipped(qtbot, window):
    from visualizer.core.pruning.nm import is_nm

    qtbot.waitUntil(lambda: bool(window.state.scores), timeout=20000)
    view = window.views["savings"]
    qtbot.mouseClick(view.make_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    masks = window.state.masks
    assert window.state.mask_source == "2:4"
    assert is_nm(masks["fc1.weight"], 2, 4)
    assert masks["conv1.weight"].all() and "conv1.weight" in view.summary.text()
    kernels = {view.table.item(i, 0).text(): view.table.item(i, 8).text() for i in range(view.table.rowCount())}
    assert "not a multiple of the kernel tile" in kernels["fc3.weight"]  # 10x84


@pytest.mark.parametrize("view", ["calibration", "reconstruction", "savings"])
def test_screenshot_of_the_llm_views(view, tmp_path, capsys, qapp):
    from PySide6.QtGui import QImage

    from visualizer.cli import main

    out = tmp_path / f"{view}.png"
    rc = main(["screenshot", "--view", view, "--out", str(out), "--model", "lenet", "--density", "0.5",
               "--size", "800x500"])
    assert rc == 0
    img = QImage(str(out))
    assert not img.isNull() and (img.width(), img.height()) == (800, 500)
    colours = {img.pixel(x, y) for x in range(0, 800, 7) for y in range(0, 500, 7)}
    assert len(colours) > 8  # drawn, not a blank widget
