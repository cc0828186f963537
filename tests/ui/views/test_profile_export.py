"""The density profile's CSV exports what is shown: layer rows in layer mode; in group mode the
group rows first, then the layer rows, told apart by ``unit_kind``; the three sparsities and
the comparisons as named columns (read back from the file)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.ui.conftest import open_profile, wait_idle
from visualizer.core.pruning.profile import read_profile_csv


def _compare(qtbot, window, view, entry) -> None:
    """Choose ``entry`` in the Compare box and press Compare, as the user does."""
    box = view.compare_box  # (findData misses tuple data in a box this long)
    box.setCurrentIndex(next(i for i in range(box.count()) if box.itemData(i) == entry))
    qtbot.mouseClick(view.add_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)


def test_csv_exports_the_rows_of_either_mode(qtbot, window, tmp_path):
    window.pruning_panel.set_density(0.3)
    wait_idle(qtbot, window)
    view = open_profile(qtbot, window)
    _compare(qtbot, window, view, ("random", "global"))
    _compare(qtbot, window, view, ("allocation", "erk"))
    qtbot.waitUntil(lambda: "random · global" in view.series, timeout=20000)

    layers = read_profile_csv(view.export_csv(str(tmp_path / "layers.csv")))
    prof = view.profile
    assert [(r["unit_kind"], r["name"]) for r in layers] == [("layer", r.name) for r in prof.rows]
    for row, r in zip(layers, prof.rows):
        assert (row["channel_sparsity"], row["parameter_sparsity"], row["flop_sparsity"]) == \
            pytest.approx((r.channel_sparsity, r.parameter_sparsity, r.flop_sparsity))
        assert row["density[random · global]"] == pytest.approx(view.series["random · global"].densities[r.name])
        assert row["density[allocation: erk]"] == pytest.approx(view.series["allocation: erk"].densities[r.name])
    assert "units" not in layers[0]  # no group columns in layer mode

    view.unit_box.setCurrentIndex(view.unit_box.findData("group"))  # the user's toggle
    assert view.mode == "group" and view.group_rows
    both = read_profile_csv(view.export_csv(str(tmp_path / "groups.csv")))
    groups = [r for r in both if r["unit_kind"] == "group"]
    assert [r["name"] for r in groups] == [g.name for g in view.group_rows]  # as the table shows them
    assert [r["unit_kind"] for r in both] == ["group"] * len(groups) + ["layer"] * len(prof.rows)
    for row, g in zip(groups, view.group_rows):
        assert (row["units"], row["removed_units"], row["kept"], row["params"]) == \
            (g.units, g.removed, g.kept, g.params)
        assert row["unit_sparsity"] == pytest.approx(g.unit_sparsity)
        assert row["layers"] == ";".join(g.layers)
        # the random ranking's mask gives a line per group; ERK (counts per layer only) none
        assert row["density[random · global]"] == pytest.approx(view.group_series["random · global"][g.name])
        assert row["density[allocation: erk]"] is None
    assert [r["name"] for r in both[len(groups):]] == [r.name for r in prof.rows]
