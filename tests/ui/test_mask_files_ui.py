"""The window tells masks, weights, sessions and models apart by content; opens masks (current or
compare A); a torch.nn.utils.prune checkpoint shows its mask at once; headless runs leave the
person's settings alone; a restored layout never hides the app behind a stray floating dock."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune

from tests.ui.conftest import drop_file, wait_idle
from visualizer.core.io.mask_formats import write_mask
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet


def _lenet_mask() -> MaskSet:
    model = load_model("lenet").model
    masks = MaskSet.for_model(model)
    gen = torch.Generator().manual_seed(3)
    for name, m in masks.masks.items():
        masks.masks[name] = torch.rand(m.shape, generator=gen) < 0.3
    return masks


def test_a_dropped_mask_safetensors_is_a_mask_not_weights(qtbot, window, tmp_path):
    masks = _lenet_mask()
    path = tmp_path / "lenet_mask.safetensors"
    write_mask(masks, path)
    weights_before = {k: v.clone() for k, v in window.state.loaded.model.state_dict().items()}
    drop_file(window, path)
    wait_idle(qtbot, window)
    s = window.state
    assert window.message() == ""
    assert all(torch.equal(s.masks[n], masks[n]) for n in masks.masks)
    assert s.mask_source == "lenet_mask.safetensors"
    assert "mask from file" in window.pruning_panel.density_text()
    assert abs(s.density - masks.density()) < 1e-12
    after = s.loaded.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights_before.items())  # weights untouched
    assert str(path) in window.recent_files()
    window.pruning_panel.set_density(0.5)  # the slider takes over again
    assert s.mask_source is None and "mask from file" not in window.pruning_panel.density_text()


def test_a_dropped_torch_prune_checkpoint_shows_its_mask_at_once(qtbot, window, tmp_path):
    model = load_model("lenet").model
    prune.l1_unstructured(model.fc1 if hasattr(model, "fc1") else list(model.modules())[-1], "weight", amount=0.8)
    name = next(k[:-5] for k in model.state_dict() if k.endswith("_mask"))
    expected = model.state_dict()[name + "_mask"].bool()
    torch.save({"epoch": 1, "model_state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    drop_file(window, tmp_path / "ckpt.pth")
    wait_idle(qtbot, window)
    s = window.state
    assert window.message() == ""
    assert torch.equal(s.masks[name], expected)
    assert all(bool(m.all()) for n, m in s.masks.masks.items() if n != name)  # dense elsewhere
    assert s.mask_source == "ckpt.pth" and "mask from file" in window.pruning_panel.density_text()
    assert s.loaded.weights == str(tmp_path / "ckpt.pth")
    wait_idle(qtbot, window)  # the background ranking does not replace the file's mask
    assert torch.equal(s.masks[name], expected)


def test_open_mask_to_compare_diffs_it_in_the_heatmap(qtbot, window, tmp_path):
    from visualizer.ui.files import opening as files

    masks = _lenet_mask()
    # an NNI-style dict of float masks: read by content whatever its name
    nni = {}
    for n, m in masks.masks.items():
        module, _, pname = n.rpartition(".")
        nni.setdefault(module, {})[pname] = m.float()
    torch.save(nni, tmp_path / "nni_masks.bin")
    window.pruning_panel.set_density(0.2)
    files.request_mask(window, str(tmp_path / "nni_masks.bin"), compare=True)
    wait_idle(qtbot, window)
    s = window.state
    assert window.message() == ""
    assert all(torch.equal(s.snapshot[n], masks[n]) for n in masks.masks)
    assert window.views["heatmap"].mode == "compare"
    assert s.mask_source is None  # the current mask is still the slider's


def test_a_mask_for_another_model_is_one_line(qtbot, window, tmp_path):
    from visualizer.ui.files import opening as files

    mlp = load_model("mlp").model
    write_mask(MaskSet.for_model(mlp), tmp_path / "mlp.safetensors")
    before = window.state.masks
    files.request_mask(window, str(tmp_path / "mlp.safetensors"))
    wait_idle(qtbot, window)
    assert "does not fit" in window.message() and "\n" not in window.message()
    assert window.state.masks is before


def test_dropped_session_and_weights_are_told_apart_by_content(qtbot, window, tmp_path):
    from safetensors.torch import save_file

    # weights saved under a misleading name still load as weights
    state = {k: v.contiguous() for k, v in load_model("lenet").model.state_dict().items()}
    save_file(state, str(tmp_path / "looks_like_a.mask"))
    drop_file(window, tmp_path / "looks_like_a.mask")
    wait_idle(qtbot, window)
    assert window.message() == "" and window.state.loaded.weights == str(tmp_path / "looks_like_a.mask")


@pytest.fixture
def private_settings(tmp_path, monkeypatch):
    """A settings store of this test alone (the shared test organisation's file may hold values
    other runs wrote)."""
    monkeypatch.setenv("PRUNEVIZ_SETTINGS_ORG", f"pruneviz-test-{os.getpid()}-{tmp_path.name}")
    from visualizer.ui.shell.window import settings

    path = Path(settings().fileName())
    yield settings
    settings().clear()
    settings().sync()
    for p in (path, path.parent):
        try:
            p.unlink() if p.is_file() else p.rmdir()
        except OSError:
            pass


def test_screenshot_never_writes_the_persons_settings(qtbot, tmp_path, private_settings):
    from visualizer.ui.files.screenshot import render_screenshot

    options = argparse.Namespace(view="heatmap", out=str(tmp_path / "h.png"), model="mlp", data=None,
                                 criterion="magnitude", scope="global", structure="unstructured", density=0.2,
                                 layer=None, heatmap_mode=None, kernels=False)
    render_screenshot(options, (640, 480))
    assert (tmp_path / "h.png").stat().st_size > 0
    st = private_settings()
    assert st.value("windowState") is None and st.value("geometry") is None and not st.value("recentFiles")


def _restart(qtbot):
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow()
    w.ask_discard = lambda: "discard"
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_a_restored_floating_dock_covering_the_window_is_docked_again(qtbot, private_settings):
    """The screenshot bug: a floating view dock the size of the window, saved as the layout, hid
    the app on the next launch."""
    from visualizer.ui.shell.window import MainWindow

    first = MainWindow(restore_layout=False)
    first.ask_discard = lambda: "discard"
    qtbot.addWidget(first)
    first.show()
    dock = first.docks["curves"]
    dock.setFloating(True)
    dock.setGeometry(first.geometry())
    dock.show()
    first.save_settings()
    first.close()
    again = _restart(qtbot)
    qtbot.waitUntil(lambda: not again.docks["curves"].isFloating(), timeout=5000)
    again.close()


def test_floating_docks_off_screen_are_docked_and_a_small_one_beside_stays(qtbot, window):
    from visualizer.ui.files import opening as files

    off, beside = window.docks["curves"], window.docks["heatmap"]
    for dock in (off, beside):
        dock.setFloating(True)
        dock.show()
    off.setGeometry(-20000, -20000, 400, 300)
    main = window.frameGeometry()
    beside.setGeometry(100, 100, 200, 150)  # on screen, over a small part of the window
    assert files.stray_reason(off, main) == "off-screen"
    assert files.stray_reason(beside, main) is None
    moved = files.redock_stray_docks(window)
    assert moved == [off.windowTitle()]
    assert not off.isFloating() and beside.isFloating()
