"""A session keeps the density profile's unit mode, its comparisons and its λ_max columns, with
their provenance: a column computed for the saved model and mask comes back; one computed for
another mask is not shown as current after the reload."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.conftest import open_profile, wait_idle
from visualizer.ui.files import sessions


def _choose(box, data) -> None:
    box.setCurrentIndex(next(i for i in range(box.count()) if box.itemData(i) == data))


def _lambda_max(qtbot, window, view) -> dict:
    qtbot.mouseClick(view.lambda_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    qtbot.waitUntil(lambda: view.mode in view.curvature, timeout=60000)
    return dict(view.curvature[view.mode])


def _reopen(qtbot, window, path):
    window.open_session(str(path))
    wait_idle(qtbot, window, timeout=60000)
    return open_profile(qtbot, window)


def test_a_session_restores_mode_comparisons_and_a_current_lambda_max(qtbot, window, tmp_path, monkeypatch):
    from visualizer.ui.views import profile as profile_mod

    monkeypatch.setattr(profile_mod, "LANCZOS_STEPS", 6)
    window.pruning_panel.set_density(0.4)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    lam = _lambda_max(qtbot, window, view)  # per layer, at this mask
    _choose(view.compare_box, ("random", "global"))
    qtbot.mouseClick(view.add_button, Qt.MouseButton.LeftButton)
    _choose(view.unit_box, "group")  # the user's toggle
    wait_idle(qtbot, window)
    path = tmp_path / "s.pviz"
    assert sessions.save_session(window, path, synchronous=True)

    _choose(view.unit_box, "layer")  # change everything the session keeps
    qtbot.mouseClick(view.clear_button, Qt.MouseButton.LeftButton)
    view = _reopen(qtbot, window, path)
    assert view.mode == "group" and view.unit_box.currentData() == "group"
    assert view.lambda_button.text() == "λ_max per coupled group"
    assert view._wanted == [("random", "global")]
    qtbot.waitUntil(lambda: "random · global" in view.series, timeout=20000)
    assert view.curvature["layer"] == lam and profile_mod.curvature_is_current(view, "layer")
    _choose(view.unit_box, "layer")
    headers = [view.table.horizontalHeaderItem(j).text() for j in range(view.table.columnCount())]
    col = headers.index("λ_max\n(at 40.0%)")
    first = view.profile.rows[0].name
    assert view.table.item(0, col).text() == f"{lam[first]:.4g}"
    assert window.views["graph"].overlays.get("λ_max per layer").values[first.rsplit(".", 1)[0]] == lam[first]


def test_a_lambda_max_of_another_mask_is_not_restored_as_current(qtbot, window, tmp_path, monkeypatch):
    from visualizer.ui.views import profile as profile_mod

    monkeypatch.setattr(profile_mod, "LANCZOS_STEPS", 6)
    window.pruning_panel.set_density(0.4)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    _lambda_max(qtbot, window, view)
    assert profile_mod.curvature_is_current(view, "layer")
    window.pruning_panel.set_density(0.2)  # the mask moves on: the column is of the old one
    wait_idle(qtbot, window)
    assert not profile_mod.curvature_is_current(view, "layer")
    path = tmp_path / "moved.pviz"
    assert sessions.save_session(window, path, synchronous=True)
    view = _reopen(qtbot, window, path)
    assert "layer" not in view.curvature
    headers = [view.table.horizontalHeaderItem(j).text() for j in range(view.table.columnCount())]
    assert "λ_max" in headers and all(view.table.item(i, headers.index("λ_max")).text() == ""
                                      for i in range(view.table.rowCount()))
    assert "not restored" in view.note.text()
