"""The window driven as a user would: slider, keyboard, layer list."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle
from visualizer.ui import render
from visualizer.ui.panels import density_to_slider, slider_to_density


def test_slider_updates_heatmap_and_density_label(qtbot, window):
    panel = window.pruning_panel
    wait_idle(qtbot, window)
    assert window.state.current_ranking() is not None
    panel.slider.setValue(density_to_slider(0.1))  # as a drag would: valueChanged with tracking
    d = slider_to_density(panel.slider.value())
    masks = window.state.masks
    total = masks.total()
    assert masks.kept() == int(d * total) or abs(masks.kept() - d * total) <= len(masks)
    assert f"{masks.kept():,}" in panel.density_text()
    assert f"{masks.density():.2%}" in panel.density_text()
    view = window.views["heatmap"]
    name = window.state.selected
    img = view.image_array()
    pruned_pixels = int((img == render.PRUNED).sum())
    layer_mask = masks[name]
    assert pruned_pixels == int((~layer_mask).sum())


def test_keyboard_steps_the_slider(qtbot, window):
    panel = window.pruning_panel
    panel.slider.setFocus()
    before = window.state.masks.kept()
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageDown)
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageDown)
    assert panel.slider.value() == 2 * panel.slider.pageStep()
    assert window.state.masks.kept() < before
    assert abs(window.state.density - slider_to_density(200)) < 1e-12
