"""The Training panel on a Ray cluster: a sweep's cells and IMP seeds run as Ray tasks from the
window's job runner, rows stream into the curves, the progress counts cells done / running /
queued; without Ray the request fails in one line that says how to get it."""

from __future__ import annotations

import sys

import pytest

from tests.ui.conftest import wait_idle
from visualizer.core.tasks import run
from visualizer.core.training.cluster import INSTALL_HINT
from visualizer.core.training.experiments import SweepConfig, row_key, sweep
from visualizer.ui.jobs import training as training_ui

try:
    import ray  # noqa: F401
except ImportError:  # in the test extra: a missing ray is a broken install, not a skip
    pytest.fail("ray is not installed; the cluster tests need it: pip install -e '.[test]'", pytrace=False)

DENSITIES = (1.0, 0.5, 0.1)


@pytest.fixture(scope="module")
def local_cluster():
    """One local Ray session for the module: the jobs' connect() joins it (and leaves it running),
    so the workers start once."""
    from visualizer.core.training.cluster import connect

    with connect("local:2") as r:
        yield r


def _choose(box, data) -> None:
    box.setCurrentIndex(box.findData(data))


def test_panel_sweep_on_a_local_cluster_streams_the_serial_rows(qtbot, window, local_cluster):
    stages: list[str] = []
    window.jobs.progress.connect(lambda _id, stage, _f: stages.append(stage))
    panel = window.training_panel
    _choose(panel.run_on_box, "ray")
    panel.cluster_address.setText("local:2")
    panel.seeds_edit.setText("0, 1")
    settings = panel.settings()
    assert settings["cluster"] == "local:2" and settings["seeds"] == "0, 1"
    training_ui.run_sweep(window, settings, densities=DENSITIES)
    wait_idle(qtbot, window, timeout=180000)
    assert window.message() == ""
    rows = window.state.results
    assert len(rows) == 2 * len(DENSITIES) * 2 and {r["seed"] for r in rows} == {0, 1}
    assert any("done" in s and "running" in s and "queued" in s for s in stages)
    s = window.state
    config = SweepConfig(s.loaded.ref, (s.criterion, "random"), DENSITIES, scope=s.scope,
                         train=training_ui.train_config(settings), seeds=(0, 1))
    serial = {row_key(r): r for r in run(sweep(s.loaded.model, s.dataset, config)).rows}
    for r in rows:
        assert r["accuracy"] == pytest.approx(serial[row_key(r)]["accuracy"], abs=1e-6)


def test_imp_seeds_on_a_local_cluster(qtbot, window, local_cluster):
    training_ui.run_training(window, {"retrain": "imp", "rounds": 1, "rate": 0.5, "epochs": 1, "seeds": "0,1",
                                      "cluster": "local:2"})
    wait_idle(qtbot, window, timeout=180000)
    assert window.message() == ""
    rows = window.state.results
    assert {(r["seed"], r["round"], r["kind"]) for r in rows} == {
        (s, r, k) for s in (0, 1) for r in (0, 1) for k in ("ticket", "reinit", "random-mask")}


def test_this_machine_is_the_default_and_sends_no_cluster(window):
    panel = window.training_panel
    assert panel.run_on_box.currentData() == "here" and not panel.cluster_address.isEnabled()
    assert panel.settings()["cluster"] == ""


def test_without_ray_the_panel_request_fails_in_one_line(qtbot, window, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    training_ui.run_sweep(window, {"retrain": "none", "cluster": "local:2"}, densities=DENSITIES)
    wait_idle(qtbot, window, timeout=60000)
    assert INSTALL_HINT in window.message() and "\n" not in window.message()
    assert window.state.results == []
