"""The sensitivity view (run, stream, cancel and resume, curves and heat table) and the
allocations in the Scope box, driven as a user would."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle
from visualizer.core.pruning.allocation import layer_budgets
from visualizer.core.pruning.ranking import kept_count


def test_erk_in_the_scope_box_prunes_by_erk_with_the_exact_count(qtbot, window):
    panel = window.pruning_panel
    panel.scope_box.setCurrentIndex(panel.scope_box.findData("erk"))
    wait_idle(qtbot, window)
    panel.set_density(0.1)
    wait_idle(qtbot, window)
    s = window.state
    masks = s.masks
    assert masks.kept() == kept_count(0.1, masks.total())
    shapes = {n: tuple(m.shape) for n, m in masks.masks.items()}
    assert {n: int(m.sum()) for n, m in masks.masks.items()} == layer_budgets("erk", 0.1, shapes)


def test_data_allocations_are_greyed_without_data(qtbot, window):
    panel = window.pruning_panel
    window.state.dataset = None
    panel.update_data()
    item = panel.scope_box.model().item(panel.scope_box.findData("owl"))
    assert not item.isEnabled() and "needs a dataset" in item.toolTip()


def test_sensitivity_view_runs_streams_and_draws(qtbot, window):
    view = window.views["sensitivity"]
    view.levels_edit.setText("0.5,0.1")
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert len(view.rows) == 10  # lenet: 5 layers x 2 densities
    assert view.curve_count() == 5 and view.table.rowCount() == 5 and view.table.columnCount() == 2
    assert view.table.item(0, 0).text().endswith("%")
    # untick a unit: its curve goes
    item = view.units_list.item(0)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert view.curve_count() == 4
    view.metric_box.setCurrentIndex(view.metric_box.findData("loss"))
    assert "loss" in view.plot.getAxis("left").labelText
    # a second run reuses every row
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert "0 cells measured, 10 reused" in view.status.text()


def test_bad_densities_are_one_line_in_the_view(qtbot, window):
    view = window.views["sensitivity"]
    view.levels_edit.setText("0.5,2")
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert "(0, 1]" in view.status.text() and not window.jobs.is_running()


def test_a_session_keeps_the_sensitivity_rows(qtbot, window, tmp_path):
    from visualizer.ui.files import sessions

    view = window.views["sensitivity"]
    view.levels_edit.setText("0.3")
    view.unit_box.setCurrentIndex(view.unit_box.findData("group"))
    view.run()
    wait_idle(qtbot, window, timeout=60000)
    rows = list(view.rows)
    assert rows and all(r["unit_kind"] == "group" for r in rows)
    path = tmp_path / "s.pviz"
    assert sessions.save_session(window, path, synchronous=True)
    view.clear()
    window.open_session(str(path))
    wait_idle(qtbot, window, timeout=60000)
    view = window.views["sensitivity"]
    assert [(r["unit"], r["accuracy"]) for r in view.rows] == [(r["unit"], r["accuracy"]) for r in rows]
    assert view.unit_box.currentData() == "group" and view.levels_edit.text() == "0.3"


def test_cancel_keeps_the_rows_that_arrived_and_run_resumes(qtbot):
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(synchronous=True, restore_layout=False, persist_settings=False)
    qtbot.addWidget(w)
    w.request_load("lenet")
    view = w.views["sensitivity"]
    view.levels_edit.setText("0.5,0.1")
    add = view.add_rows

    def add_then_cancel(partial):  # the user presses Cancel as the first unit's rows arrive
        add(partial)
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)

    view.add_rows = add_then_cancel
    view.run()
    assert len(view.rows) == 2 and view.status.text().startswith("cancelled: 2 rows kept")
    view.add_rows = add
    view.run()
    assert len(view.rows) == 10 and "8 cells measured, 2 reused" in view.status.text()
    w.state.set_dirty(False)
    w.close()
