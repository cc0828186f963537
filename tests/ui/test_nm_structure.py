"""N:M from the Structure box: choosing 2:4 gives exactly 2 kept in every 4 inputs of each
eligible layer, leaves the others dense and names them in the banner; the slider rests."""

from __future__ import annotations

import torch

from tests.ui.conftest import wait_idle
from visualizer.core.pruning.nm import is_nm


def choose(window, qtbot, structure: str) -> None:
    box = window.pruning_panel.structure_box
    box.setCurrentIndex(box.findData(structure))
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.state.current_ranking() is not None, timeout=20000)
    wait_idle(qtbot, window)


def test_choosing_2_4_gives_exact_patterns_and_lists_skipped_layers(qtbot, window):
    s = window.state
    panel = window.pruning_panel
    assert panel.slider.isEnabled()
    choose(window, qtbot, "2:4")
    assert s.structure == "2:4" and not panel.slider.isEnabled() and not panel.spin.isEnabled()
    masks = s.masks
    # LeNet: conv1 (1·3·3 = 9 inputs) and conv2 (6·3·3 = 54) cannot carry 2:4; the linears can
    skipped = {"conv1.weight", "conv2.weight"}
    assert set(masks.masks) == set(s.prunable)
    for name, m in masks.masks.items():
        if name in skipped:
            assert bool(m.all()), name  # left dense, never a wrong pattern
        else:
            assert is_nm(m, 2, 4), name
            assert m.float().mean() == 0.5
    text = window.message()
    assert text.startswith("2:4: 2 layer(s) left dense:")
    assert "conv1.weight (input dimension 9 is not a multiple of 4)" in text
    assert "conv2.weight (input dimension 54 is not a multiple of 4)" in text
    # the kept entries are the top 2 magnitudes of each group of 4
    w = dict(window.state.model.named_parameters())["fc1.weight"].detach().abs()
    groups = w.reshape(w.shape[0], -1, 4)
    keep = masks["fc1.weight"].reshape(groups.shape)
    kept_min = torch.where(keep, groups, torch.inf).amin(-1)
    dropped_max = torch.where(keep, -torch.inf, groups).amax(-1)
    assert bool((kept_min >= dropped_max).all())

    choose(window, qtbot, "4:8")  # fc3 has 84 inputs: not a multiple of 8
    assert "fc3.weight (input dimension 84 is not a multiple of 8)" in window.message()
    assert is_nm(s.masks["fc1.weight"], 4, 8) and bool(s.masks["fc3.weight"].all())

    choose(window, qtbot, "unstructured")  # the slider works again
    assert panel.slider.isEnabled()
    window.set_density(0.25)
    wait_idle(qtbot, window)
    assert abs(s.masks.density() - 0.25) < 1e-3


def test_a_channel_criterion_with_2_4_is_one_line(qtbot, window):
    window.pruning_panel.set_settings(criterion="l1-norm", structure="2:4")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "N:M pattern" in window.message(), timeout=20000)
    assert "L1 norm (channel) scores whole channels" in window.message()
