"""Every result is bound to what produced it, driven as a user would: a model or dataset change
retires the jobs of the old state (their rows and spectra never land under the new one), a job
reads a mask copy (the slider moving meanwhile changes nothing in it), curves keep datasets and
seeds apart, and the dense baseline is its dataset's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from tests.imagefolders import write_digit_folder
from tests.ui.conftest import wait_idle
from visualizer.core.tasks import Step


def _choose(box, data) -> None:
    box.setCurrentIndex(box.findData(data))


@pytest.fixture
def gated_spectrum(monkeypatch):
    """Core's dense-vs-masked spectrum held at its start until ``gate`` is set (yielding, so other
    jobs keep stepping); ``seen`` records the density of the mask it was handed, before and after."""
    import visualizer.core.analysis as analysis  # the spectrum job reads it from here

    original = analysis.dense_vs_masked
    gate, started, seen = threading.Event(), threading.Event(), []

    def gated(model, evalset, masks, *args, **kwargs):
        seen.append(masks.density())
        started.set()
        while not gate.is_set():
            yield Step("held by the test", 0.0)
            time.sleep(0.002)
        seen.append(masks.density())
        return (yield from original(model, evalset, masks, *args, **kwargs))

    monkeypatch.setattr(analysis, "dense_vs_masked", gated)
    yield gate, started, seen
    gate.set()


def test_a_model_change_during_a_sweep_keeps_the_old_models_rows_out(qtbot, window):
    panel = window.training_panel
    _choose(panel.mode_box, "finetune")
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.state.results) >= 1, timeout=60000)
    assert window.jobs.is_running("sweep")
    window.request_load("mlp")
    wait_idle(qtbot, window, timeout=60000)
    assert window.state.loaded.ref == "mlp"
    assert [r for r in window.state.results if r.get("model") != "mlp"] == []
    assert window.views["curves"].point_count() == 0


def test_a_spectrum_started_on_one_model_is_not_drawn_under_the_next(qtbot, window, gated_spectrum):
    gate, started, _seen = gated_spectrum
    window.pruning_panel.set_density(0.2)
    panel = window.views["spectrum"]
    panel.top_k.setValue(2)
    panel.probes.setValue(2)
    panel.compute()
    qtbot.waitUntil(started.is_set, timeout=20000)
    window.request_load("mlp")
    qtbot.waitUntil(lambda: window.state.loaded.ref == "mlp", timeout=20000)
    gate.set()
    wait_idle(qtbot, window, timeout=60000)
    assert panel.view.spectra == []  # lenet's spectra under mlp's name: never drawn


def test_a_spectrum_reads_the_mask_of_its_start_while_the_slider_moves(qtbot, window, gated_spectrum, monkeypatch):
    # a model above COPY_MASK_LIMIT weights: the slider hands out live views of the ranking's mask
    import visualizer.ui.shell.requests as window_module

    monkeypatch.setattr(window_module, "COPY_MASK_LIMIT", 0)
    gate, started, seen = gated_spectrum
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    panel = window.views["spectrum"]
    panel.top_k.setValue(2)
    panel.probes.setValue(2)
    panel.compute()
    qtbot.waitUntil(started.is_set, timeout=20000)
    window.pruning_panel.set_density(0.1)  # the slider moves while the job runs
    assert window.state.masks.density() == pytest.approx(0.1, abs=1e-3)
    gate.set()
    wait_idle(qtbot, window, timeout=120000)
    assert seen[0] == pytest.approx(0.5, abs=1e-3) and seen[1] == seen[0]
    assert len(panel.view.spectra) == 2


def test_a_dataset_change_keeps_datasets_apart_and_the_baseline_with_its_own(qtbot, window, tmp_path):
    view = window.views["curves"]
    window.pruning_panel.set_density(0.5)
    window.training_panel.evaluate_requested.emit()
    wait_idle(qtbot, window, timeout=60000)
    assert view.baseline.isVisible() and view.baseline.value() == pytest.approx(0.961, abs=1e-3)
    root = write_digit_folder(tmp_path / "digits", per_class=4, classes=3, size=8)
    window.request_dataset(f"folder:{root}")
    wait_idle(qtbot, window, timeout=60000)
    assert not view.baseline.isVisible()  # digits' 0.961 is not the folder's dense accuracy
    window.training_panel.evaluate_requested.emit()
    wait_idle(qtbot, window, timeout=60000)
    datasets = [r.get("dataset") for r in window.state.results]
    assert datasets == ["digits", f"folder:{root}"]
    assert len(view._series) == 2  # one line per dataset, not one line through both
    window.request_dataset("digits")
    wait_idle(qtbot, window, timeout=60000)
    assert view.baseline.isVisible() and view.baseline.value() == pytest.approx(0.961, abs=1e-3)


def test_a_multi_seed_sweep_is_one_line_per_criterion_with_a_band(qtbot, window):
    panel = window.training_panel
    panel.seeds_edit.setText("0, 1")
    qtbot.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    view = window.views["curves"]
    rows = window.state.results
    assert {r["seed"] for r in rows} == {0, 1}
    assert len(view._series) == 2  # magnitude and random
    for item, series_rows in view._series.values():
        x, _y = item.getData()
        assert len(x) == len(set(np.round(x, 9)))  # one point per density: no zig-zag through seeds
        assert len(series_rows) == 2 * len(x)
    assert view.band_count() == 2  # the seeds' spread around each mean
    qtbot.wait(50)
    assert all(not fill.path().isEmpty() for _low, _high, fill in view._bands.values())  # drawn


def test_kept_trained_weights_install_as_a_new_model_version(qtbot, window):
    """Keeping a fine-tune's weights replaced them in place: a job still reading the old model
    saw its weights change under it. Now the trained copy is a new model object and version,
    and the old one is left as it was."""
    panel = window.training_panel
    window.pruning_panel.set_density(0.2)
    wait_idle(qtbot, window)
    old_model, old_version = window.state.loaded.model, getattr(window.state, "model_version", None)
    before = {k: v.clone() for k, v in old_model.state_dict().items()}
    _choose(panel.mode_box, "finetune")
    panel.epochs.setValue(1)
    panel.keep_box.setChecked(True)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert window.state.loaded.model is not old_model
    assert all(torch.equal(v, old_model.state_dict()[k]) for k, v in before.items())
    assert window.state.model_version != old_version
    assert window.state.weights_modified and window.state.results[0]["model"] == "lenet"
