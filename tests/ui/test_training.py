"""Retraining from the Training panel: a short fine-tune adds a point, a sweep streams points,
cancel changes nothing, and the event loop keeps running meanwhile."""

from __future__ import annotations

import threading

import pytest
import torch
from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle
from tests.ui.probe import StallProbe
from visualizer.ui.jobs import training as training_ui


def _choose(box, data) -> None:
    box.setCurrentIndex(box.findData(data))


def test_short_finetune_adds_a_point(qtbot, window):
    panel = window.training_panel
    assert panel.run_button.isEnabled()
    window.pruning_panel.set_density(0.1)
    weights_before = {k: v.clone() for k, v in window.state.loaded.model.state_dict().items()}
    masks_before = window.state.masks
    _choose(panel.mode_box, "finetune")
    panel.epochs.setValue(1)
    probe = StallProbe(5)
    probe.start()
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert panel.cancel_button.isEnabled()
    wait_idle(qtbot, window, timeout=60000)
    probe.stop()
    assert window.message() == ""
    view = window.views["curves"]
    assert view.point_count() == 1
    row = window.state.results[0]
    assert row["retrain"] == "finetune" and row["criterion"] == "magnitude"
    assert row["density"] == pytest.approx(masks_before.density()) and 0.0 <= row["accuracy"] <= 1.0
    # the run trained a copy: model and mask as before (keep box unticked)
    after = window.state.loaded.model.state_dict()
    assert all(torch.equal(weights_before[k], after[k]) for k in after)
    assert window.state.masks is masks_before
    assert probe.ticks > 3
    print(f"\nevent-loop probe during a 1-epoch fine-tune: {probe.report()}")


def test_keep_trained_weights(qtbot, window):
    panel = window.training_panel
    window.pruning_panel.set_density(0.2)
    _choose(panel.mode_box, "finetune")
    panel.epochs.setValue(1)
    panel.keep_box.setChecked(True)
    before = window.state.params["fc1.weight"].copy()
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    after = window.state.params["fc1.weight"]
    mask = window.state.masks["fc1.weight"].numpy()
    assert window.state.weights_modified
    assert (after[~mask] == 0).all()  # the fine-tuned pruned network: pruned weights are exactly 0
    assert not (after[mask] == before[mask]).all()  # kept weights were trained


def test_sweep_streams_points_and_reuses_rows(qtbot, window):
    panel = window.training_panel
    view = window.views["curves"]
    counts = []
    window.state.results_changed.connect(lambda: counts.append(view.point_count()))
    probe = StallProbe(5)
    probe.start()
    qtbot.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    probe.stop()
    n = 2 * len(training_ui.SWEEP_DENSITIES)  # magnitude and random
    assert view.point_count() == n and counts[:3] == [1, 2, 3]  # streamed one by one
    assert {r["criterion"] for r in window.state.results} == {"magnitude", "random"}
    dense = [r for r in window.state.results if r["density"] == 1.0]
    assert all(r["accuracy"] == pytest.approx(window.state.loaded.accuracy, abs=0.02) for r in dense)
    qtbot.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)  # same settings: all reused
    wait_idle(qtbot, window, timeout=60000)
    assert view.point_count() == n
    print(f"\nevent-loop probe during a sweep: {probe.report()}")


def test_cancel_training_changes_nothing(qtbot, window):
    panel = window.training_panel
    window.pruning_panel.set_density(0.3)
    state = window.state
    before = (state.masks, list(state.results), state.loaded.model)
    weights = {k: v.clone() for k, v in state.loaded.model.state_dict().items()}
    _choose(panel.mode_box, "imp")
    panel.epochs.setValue(3)
    panel.rounds.setValue(3)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.wait(200)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not [t for t in threading.enumerate() if t.name.startswith("pruneviz-job")],
                    timeout=5000)
    assert (state.masks, state.results, state.loaded.model) == before
    assert all(torch.equal(weights[k], v) for k, v in state.loaded.model.state_dict().items())
    assert not panel.cancel_button.isEnabled()


def test_cancel_after_rows_streamed_takes_them_back(qtbot, window):
    """IMP streams each round's rows into the curves; cancelling after some arrived leaves the
    results (and the unsaved-changes flag) as they were before the run."""
    panel = window.training_panel
    window.pruning_panel.set_density(0.3)
    state = window.state
    before, dirty = list(state.results), state.dirty
    _choose(panel.mode_box, "imp")
    panel.epochs.setValue(2)
    panel.rounds.setValue(4)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(state.results) > len(before), timeout=60000)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not [t for t in threading.enumerate() if t.name.startswith("pruneviz-job")],
                    timeout=5000)
    assert state.results == before and state.dirty == dirty


def test_layer_distribution_box_applies_to_dynamic_sparse_training_only(qtbot, window):
    panel = window.training_panel
    _choose(panel.mode_box, "finetune")
    assert not panel.distribution_box.isEnabled()
    _choose(panel.mode_box, "rigl")
    assert panel.distribution_box.isEnabled()
    _choose(panel.distribution_box, "uniform")
    window.pruning_panel.set_density(0.3)
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    row = window.state.results[-1]
    assert row["distribution"] == "uniform" and row["retrain"] == "rigl"


@pytest.mark.parametrize("mode", ["imp", "set", "rigl", "group-lasso"])
def test_each_retrain_mode_runs_from_the_panel(qtbot, window, mode):
    """Every mode of the Retrain box trains a copy in the background and adds its rows to the
    curves; the model and mask on screen stay as they were."""
    panel = window.training_panel
    window.pruning_panel.set_density(0.2)
    masks_before = window.state.masks
    _choose(panel.mode_box, mode)
    panel.epochs.setValue(1)
    panel.rounds.setValue(2)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    assert window.message() == ""
    rows = window.state.results
    assert rows and all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    if mode == "imp":  # per round: the rewound ticket, its re-initialisation and a random mask
        assert len(rows) >= 2 * 3
        assert min(r["density"] for r in rows) < 0.5
    elif mode == "group-lasso":  # then the channel cut: k = floor(0.2 * channels) whole channels
        assert rows[-1]["structure"] == "channel" and 0.05 < rows[-1]["density"] < 0.5
        assert 0.0 <= rows[-1]["lasso_accuracy"] <= 1.0
    else:
        assert rows[-1]["retrain"] == mode and rows[-1]["distribution"] == "erk"  # the box's default
        assert rows[-1]["density"] == pytest.approx(masks_before.density(), abs=0.02)
    assert window.views["curves"].point_count() == len(rows)
    assert window.state.masks is masks_before
