"""The window's one device chooser: it lists the devices present, every job runs on its choice,
sessions keep it, and a device that is not there is one line while the model stays loaded."""

from __future__ import annotations

import pytest
import torch

from tests.ui.conftest import wait_idle
from visualizer.core.workspace import available_devices
from visualizer.ui.jobs import actions
from visualizer.ui.jobs import training as training_ui
from visualizer.ui.shell.device_ui import device_choices


def _choose(window, value: str) -> None:
    box = window.device_selector.box
    box.setCurrentIndex(box.findData(value))


def test_chooser_lists_the_devices_present(window):
    box = window.device_selector.box
    values = [box.itemData(i) for i in range(box.count())]
    assert values == ["auto", *available_devices()]
    assert box.itemText(0).startswith("auto (")
    assert [v for v, _ in device_choices()] == values
    _choose(window, "cpu")
    assert window.state.device == "cpu"


def test_ranking_with_a_data_criterion_runs_on_the_chosen_device(qtbot, window, monkeypatch):
    seen = []
    real = actions.rank_job

    def recording(model, dataset, criterion, *args, **kwargs):
        seen.append((criterion, kwargs.get("device")))
        return (yield from real(model, dataset, criterion, *args, **kwargs))

    monkeypatch.setattr(actions, "rank_job", recording)
    _choose(window, "cpu")
    window.pruning_panel.set_settings(criterion="snip")
    wait_idle(qtbot, window, timeout=60000)
    assert ("snip", "cpu") in seen
    assert ("snip", "global", "unstructured") in window.state.rankings
    # the shown model stays on the host whatever the device
    assert all(p.device.type == "cpu" for p in window.state.loaded.model.parameters())


def test_training_rows_record_the_device(qtbot, window):
    _choose(window, "cpu")
    window.pruning_panel.set_density(0.3)
    training_ui.evaluate_mask(window)
    wait_idle(qtbot, window, timeout=60000)
    assert window.state.results[-1]["device"] == "cpu"
    training_ui.run_sweep(window, {"retrain": "none"}, densities=(0.5,))
    wait_idle(qtbot, window, timeout=60000)
    swept = [r for r in window.state.results if r.get("retrain") == "none" and "score_batches" in r]
    assert swept and {r["device"] for r in swept} == {"cpu"}


def test_a_missing_device_is_one_line_and_nothing_starts(qtbot, window):
    missing = f"cuda:{torch.cuda.device_count() + 7}"
    window.device_selector.set_device(missing)
    box = window.device_selector.box
    assert box.currentData() == missing and "not available" in box.currentText()
    loaded, results = window.state.loaded, list(window.state.results)
    window.pruning_panel.set_density(0.3)
    training_ui.run_training(window, {"retrain": "finetune", "epochs": 1})
    assert not window.jobs.is_running("train")
    msg = window.message()
    assert msg.startswith("device: ") and missing in msg and "\n" not in msg
    assert window.state.loaded is loaded and window.state.results == results
    # the analysis tabs say it in their own status line
    spectrum = window.views["spectrum"]
    spectrum.compute()
    assert not window.jobs.is_running("analysis-spectrum")
    assert spectrum.status.text().startswith("device: ") and missing in spectrum.status.text()


def test_sessions_keep_the_device(qtbot, window, tmp_path):
    from visualizer.core.io.session import load_session
    from visualizer.ui.files.sessions import save_session

    _choose(window, "cpu")
    path = tmp_path / "s.pviz"
    assert save_session(window, path, synchronous=True)
    assert load_session(path).device == "cpu"


@pytest.mark.parametrize("value", ["auto", "cpu"])
def test_session_device_is_restored(qtbot, window, tmp_path, value):
    from visualizer.ui.files.sessions import open_session, save_session

    _choose(window, value)
    path = tmp_path / "s.pviz"
    assert save_session(window, path, synchronous=True)
    _choose(window, "cpu" if value == "auto" else "auto")
    open_session(window, str(path))
    wait_idle(qtbot, window, timeout=60000)
    assert window.state.device == value
    assert window.device_selector.box.currentData() == value
