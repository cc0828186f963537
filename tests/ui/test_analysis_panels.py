"""The Spectrum, Landscape and Speed tabs end to end: the button's job runs in the window's job
runner on the loaded model and mask, and the view shows its result; the model is left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.ui.conftest import wait_idle


def _pruned(qtbot, window, density: float = 0.2) -> dict[str, torch.Tensor]:
    window.pruning_panel.set_density(density)
    wait_idle(qtbot, window)
    assert window.state.masks.density() == pytest.approx(density, abs=1e-3)
    return {k: v.clone() for k, v in window.state.loaded.model.state_dict().items()}


def _unchanged(window, before: dict[str, torch.Tensor]) -> bool:
    after = window.state.loaded.model.state_dict()
    return all(torch.equal(after[k], v) for k, v in before.items())


def _compute(qtbot, window, panel) -> None:
    """Press the tab's compute button and wait for its job: no error in the window or the tab."""
    panel.compute()
    wait_idle(qtbot, window, timeout=120000)
    assert window.message() == "" and panel.status.text() == ""


def test_spectrum_tab_computes_dense_and_masked_spectra(qtbot, window):
    weights = _pruned(qtbot, window)
    panel = window.views["spectrum"]
    panel.top_k.setValue(2)
    panel.probes.setValue(2)
    _compute(qtbot, window, panel)
    dense, masked = panel.view.spectra
    assert (dense.label, masked.label) == ("dense", "masked")
    assert len(dense.top) == 2 and len(masked.top) == 2
    # Cauchy interlacing: the masked operator P_m H P_m has lambda_max <= H's (docs/theory.md)
    assert max(masked.top) <= max(dense.top) * (1 + 1e-3) + 1e-6
    assert dense.grid is not None and len(dense.grid) == len(dense.density)
    assert _unchanged(window, weights)


def test_landscape_tab_computes_the_dense_to_pruned_path_and_plane(qtbot, window):
    weights = _pruned(qtbot, window)
    panel = window.views["landscape"]
    panel.steps.setValue(5)
    _compute(qtbot, window, panel)
    (curve,) = panel.view.curves
    assert curve.label == "dense -> pruned"
    assert curve.alpha[0] == pytest.approx(0.0) and curve.alpha[-1] == pytest.approx(1.0)
    assert np.all(np.isfinite(curve.values))
    surface = panel.view.surface
    assert np.asarray(surface.loss).shape == (5, 5) and np.all(np.isfinite(surface.loss))
    assert dict(surface.points) == {"trained": (0.0, 0.0), "pruned": (1.0, 0.0)}
    assert _unchanged(window, weights)


def test_speed_tab_measures_dense_masked_and_shrunk(qtbot, window):
    weights = _pruned(qtbot, window)
    panel = window.views["speed"]
    panel.density.setValue(0.5)
    _compute(qtbot, window, panel)
    by = {e.label: e for e in panel.view.entries}
    assert list(by) == ["dense", "masked", "shrunk"]
    assert by["shrunk"].flops < by["dense"].flops and by["shrunk"].params < by["dense"].params
    assert all(e.latency_ms > 0 for e in by.values())
    assert _unchanged(window, weights)


def test_structure_tabs_show_a_trace_made_before_they_were_opened(qtbot, window):
    """Opened after the graph was traced, the Inception tab stayed blank and its Group lasso
    trained a copy for half a minute before saying the model (lenet) has no Inception modules;
    the DenseNet tab stayed blank instead of showing lenet's layer-to-layer connections."""
    window.views["graph"]
    wait_idle(qtbot, window)
    inception = window.views["inception"]
    assert inception.status.text() == "no Inception modules in this model"
    inception.group_lasso()
    assert not window.jobs.is_running()
    assert "load densenet-mini or inception-mini" in inception.status.text()
    window.docks["densenet"].raise_()
    densenet = window.views["densenet"]
    qtbot.waitUntil(lambda: densenet.view.before is not None, timeout=5000)
    assert densenet.view.before.sources[0] == "conv1"
