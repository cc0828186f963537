"""The window's jobs on a CUDA GPU: with the device chooser on cuda:0, ranking by a data
criterion, evaluation, fine-tuning, a sweep, the spectrum, landscape and speed tabs all finish,
record cuda:0, and agree with the CPU (evaluation accuracy within 1e-3).

Runs only where ``torch.cuda.is_available()`` (the CPU side of the same plumbing is
tests/ui/test_device_ui.py)."""

from __future__ import annotations

import pytest
import torch

from tests.ui.conftest import _isolated_settings, wait_idle, window  # noqa: F401 (fixtures)
from visualizer.ui.jobs import training as training_ui

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)"),
]


def _choose(window, value: str) -> None:  # noqa: F811
    box = window.device_selector.box
    i = box.findData(value)
    assert i >= 0, value
    box.setCurrentIndex(i)


def test_chooser_lists_the_gpu_with_its_memory(window):  # noqa: F811
    box = window.device_selector.box
    labels = [box.itemText(i) for i in range(box.count())]
    assert any(t.startswith("cuda:0 · ") and t.endswith("GiB") for t in labels), labels
    assert labels[0] == "auto (cuda:0)"


def test_window_jobs_on_cuda_match_the_cpu(qtbot, window):  # noqa: F811
    s = window.state
    window.pruning_panel.set_density(0.2)
    accuracy = {}
    for dev in ("cpu", "cuda:0"):
        _choose(window, dev)
        training_ui.evaluate_mask(window)
        wait_idle(qtbot, window, timeout=120000)
        assert window.message() == ""
        row = s.results[-1]
        assert row["device"] == dev
        accuracy[dev] = row["accuracy"]
    assert abs(accuracy["cpu"] - accuracy["cuda:0"]) <= 1e-3

    _choose(window, "cuda:0")
    window.pruning_panel.set_settings(criterion="snip")
    wait_idle(qtbot, window, timeout=120000)
    assert ("snip", "global", "unstructured") in s.rankings and window.message() == ""
    assert all(p.device.type == "cpu" for p in s.loaded.model.parameters())  # the shown model stays

    training_ui.run_training(window, {"retrain": "finetune", "epochs": 1})
    wait_idle(qtbot, window, timeout=300000)
    assert window.message() == "" and s.results[-1]["device"] == "cuda:0"

    training_ui.run_sweep(window, {"retrain": "none"}, densities=(0.5, 0.1))
    wait_idle(qtbot, window, timeout=300000)
    swept = [r for r in s.results if "score_batches" in r]
    assert swept and {r["device"] for r in swept} == {"cuda:0"}

    for tab in ("spectrum", "landscape", "speed"):
        panel = window.views[tab]
        panel.compute()
        wait_idle(qtbot, window, timeout=300000)
        assert panel.status.text() == "", (tab, panel.status.text())
    assert window.state.loaded is not None and window.message() == ""
