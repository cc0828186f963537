"""The sensitivity allocation in the window, driven as a user would: the profile's comparison, the
Scope box's ranking and the sweep measure the loss curves they lack in the job, as the CLI does (one core function), the
sensitivity view shows them, and later jobs of the same model version, data and criterion reuse
them; new weights measure again."""

from __future__ import annotations

import copy

import pytest
from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle
from visualizer.core.pruning.allocation import layer_budgets
from visualizer.core.pruning.ranking import kept_count
from visualizer.core.training.experiments import SweepConfig
from visualizer.core.training.sensitivity import loss_curves
from visualizer.ui.files import sessions
from visualizer.ui.jobs import training as training_ui

LEVELS = (0.5, 0.1, 0.01)  # small: the test stays quick; 1% so the sweep's lowest density fits


@pytest.fixture
def measured(monkeypatch):
    """The allocation's levels made small, and a count of the units whose levels were evaluated."""
    from visualizer.core.training import sensitivity as core

    monkeypatch.setattr(core, "ALLOCATION_LEVELS", LEVELS)
    calls: list[int] = []
    real = core.unit_levels_job

    def counting(*args, **kwargs):
        calls.append(1)
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(core, "unit_levels_job", counting)
    return calls


def _train_rows(view, criterion: str) -> list[dict]:
    return [r for r in view.rows if r["criterion"] == criterion and r["split"] == "train"]


def test_sensitivity_scope_and_sweep_measure_the_curves_once(qtbot, window, measured, tmp_path):
    s, panel = window.state, window.pruning_panel
    layers = len(s.prunable)  # lenet: 5
    # the profile's comparison "allocation: sensitivity (magnitude)" ranks in a job: curves measured
    window.docks["profile"].raise_()
    profile = window.views["profile"]
    box = profile.compare_box
    box.setCurrentIndex(next(i for i in range(box.count()) if box.itemData(i) == ("magnitude", "sensitivity")))
    qtbot.mouseClick(profile.add_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    view = window.views["sensitivity"]
    rows = _train_rows(view, "magnitude")
    assert len(measured) == layers and len(rows) == layers * len(LEVELS)
    panel.scope_box.setCurrentIndex(panel.scope_box.findData("sensitivity"))  # the user's choice
    wait_idle(qtbot, window, timeout=60000)
    assert window.message() == ""
    assert len(measured) == layers  # the Scope box's ranking reused them
    assert _train_rows(view, "magnitude") == rows
    assert view.rows_box.currentData() == ["magnitude", "train"]  # the view shows them
    assert view.table.rowCount() == layers and view.table.columnCount() == len(LEVELS)
    assert "sensitivity allocation" in view.status.text()

    panel.set_density(0.1)  # the slider cuts every layer at the budget those curves give
    wait_idle(qtbot, window)
    masks = s.masks
    shapes = {n: tuple(m.shape) for n, m in masks.masks.items()}
    curves = loss_curves(rows, "magnitude")
    assert masks.kept() == kept_count(0.1, masks.total())
    assert {n: int(m.sum()) for n, m in masks.masks.items()} == layer_budgets("sensitivity", 0.1, shapes,
                                                                              curves=curves)

    qtbot.mouseClick(window.training_panel.sweep_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=120000)
    assert window.message() == ""
    assert len(measured) == 2 * layers  # magnitude's curves reused; random's measured
    assert len(_train_rows(view, "random")) == layers * len(LEVELS)
    assert view.rows_box.count() == 2
    results = [r for r in s.results if r.get("allocation") == "sensitivity"]
    assert len(results) == 2 * len(training_ui.SWEEP_DENSITIES)
    # each row was cut by the curves the view shows (the sweep keys its rows by their digest)
    config = SweepConfig("lenet", ("magnitude", "random"),
                         curves={c: loss_curves(_train_rows(view, c), c) for c in ("magnitude", "random")})
    for r in results:
        assert r["allocation_inputs"] == config.allocation_inputs("sensitivity", r["criterion"])

    qtbot.mouseClick(window.training_panel.sweep_button, Qt.MouseButton.LeftButton)  # again
    wait_idle(qtbot, window, timeout=120000)
    assert len(measured) == 2 * layers  # nothing measured: curves and rows reused
    assert len([r for r in s.results if r.get("allocation") == "sensitivity"]) == len(results)

    # a session keeps the curves (and which analysis the view shows): reopened, the Scope box's
    # ranking of the same model reuses them
    path = tmp_path / "curves.pviz"
    assert sessions.save_session(window, path, synchronous=True)
    view.rows_box.setCurrentIndex(0)
    window.open_session(str(path))
    wait_idle(qtbot, window, timeout=60000)
    assert window.message() == "" and s.scope == "sensitivity" and s.current_ranking() is not None
    assert len(measured) == 2 * layers and len(view.rows) == 2 * layers * len(LEVELS)
    assert view.rows_box.currentData() == ["random", "train"]

    # trained weights are a new model version: its curves are measured again, not reused
    window.install_trained_model(copy.deepcopy(s.loaded.model))
    wait_idle(qtbot, window, timeout=60000)
    assert len(measured) == 3 * layers
    assert [r["criterion"] for r in view.rows] == ["magnitude"] * layers * len(LEVELS)
