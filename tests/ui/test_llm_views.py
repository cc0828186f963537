"""The language-model views driven as a user would: calibration inspector, reconstruction errors,
real savings, and the heatmap's N:M blocks."""

from __future__ import annotations

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
