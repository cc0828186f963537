"""Loading models, dropping files on the window, sessions and exports, as a user does them."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt

from tests.ui.conftest import drop_file, wait_idle
from visualizer.core.io.mask_formats import read_mask
from visualizer.core.models.zoo import ZOO


@pytest.mark.parametrize("name", [n for n in ZOO if n != "lenet"])
def test_load_each_bundled_model(qtbot, window, name):
    panel = window.model_panel
    panel.model_box.setCurrentText(name)
    qtbot.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    s = window.state
    assert window.message() == ""
    assert s.loaded.ref == name and s.dataset_name == ZOO[name].dataset
    assert set(panel._items) == set(s.prunable) and s.prunable
    assert s.selected in s.params and window.views["heatmap"].image_array() is not None
    window.pruning_panel.set_density(0.1)
    assert s.masks.kept() == int(0.1 * s.masks.total())  # global magnitude ranking was built
    assert name in window.windowTitle()


@pytest.mark.parametrize("suffix, expect", [
    (".pt", "broken.pt: "),  # core says which: not a checkpoint, or one needing unpickling
    (".pviz", "not a pruneviz session"),
    (".safetensors", "not a readable safetensors file"),
])
def test_drop_corrupt_file_shows_message(qtbot, window, tmp_path, suffix, expect):
    bad = tmp_path / f"broken{suffix}"
    bad.write_bytes(b"\x00garbage, not a model\xff" * 10)
    masks_before = window.state.masks
    drop_file(window, bad)
    wait_idle(qtbot, window)
    assert expect in window.message() and "broken" in window.message()
    assert window.banner.isVisible()
    assert window.state.loaded.ref == "lenet" and window.state.masks is masks_before
    assert str(bad) in window.recent_files()  # offered again under File > Open recent


def test_drop_torchscript_model_loads_it(qtbot, window, tmp_path):
    model = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)))
    path = tmp_path / "tiny.pt"
    model.save(str(path))
    drop_file(window, path)
    wait_idle(qtbot, window)
    assert window.message() == ""
    assert window.state.loaded.ref == str(path)
    assert set(window.state.prunable) == {"0.weight", "2.weight"}


def test_save_and_reopen_session(qtbot, window, tmp_path):
    from visualizer.ui.shell.window import MainWindow

    s = window.state
    window.pruning_panel.set_settings(criterion="snip", scope="layer")
    wait_idle(qtbot, window)
    window.pruning_panel.set_density(0.3)
    window.views["heatmap"].take_snapshot()
    window.pruning_panel.set_density(0.05)
    s.select("fc1.weight")
    s.add_result({"criterion": "snip", "density": 0.05, "accuracy": 0.5, "retrain": "none"})
    assert s.dirty
    path = tmp_path / "s.pviz"
    window.session_path = path
    assert window.save_session(synchronous=True)
    assert not s.dirty and path.exists()

    other = MainWindow(restore_layout=False)
    other.ask_discard = lambda: "discard"
    qtbot.addWidget(other)
    other.open_session(str(path))
    wait_idle(qtbot, other)
    t = other.state
    assert other.message() == ""
    assert (t.loaded.ref, t.criterion, t.scope, t.density) == ("lenet", "snip", "layer", 0.05)
    assert other.pruning_panel.criterion_box.currentData() == "snip"
    for name in s.masks:
        assert torch.equal(s.masks[name], t.masks[name])
        assert torch.equal(s.snapshot[name], t.snapshot[name])
    assert t.results == s.results and t.selected == "fc1.weight"
    assert other.views["curves"].point_count() == 1
    assert other.views["heatmap"].mode == "compare"
    assert not t.dirty and other.session_path == path
    # the ranking arrives in the background and keeps the saved mask until the slider moves
    assert ("snip", "layer", "unstructured") in t.rankings
    assert t.masks.kept() == s.masks.kept()
    other.jobs.shutdown(1.0)


def test_unsaved_work_prompts_on_close(qtbot, window):
    window.pruning_panel.set_density(0.5)
    asked = []
    window.ask_discard = lambda: asked.append(1) or "cancel"
    assert not window.close()  # the user chose Cancel: the window stays
    assert asked and window.isVisible()
    window.ask_discard = lambda: "discard"
    assert window.close()


def test_results_autosaved_for_recovery(qtbot, window, tmp_path):
    from visualizer.core.io.session import load_session
    from visualizer.ui.shell.settings import recovery_path

    window.state.add_result({"criterion": "magnitude", "density": 0.1, "accuracy": 0.8})
    qtbot.waitUntil(lambda: recovery_path().exists(), timeout=5000)
    wait_idle(qtbot, window)
    assert load_session(recovery_path()).results[0]["accuracy"] == 0.8


def test_exports(qtbot, window, tmp_path):
    from visualizer.ui.files import export

    window.pruning_panel.set_density(0.2)
    window.state.add_result({"criterion": "magnitude", "density": 0.2, "accuracy": 0.9})
    for vid in window.views:
        for fmt in ("png", "svg"):
            out = export.export_view(window, vid, str(tmp_path / f"{vid}.{fmt}"))
            assert out.stat().st_size > 500
    assert (tmp_path / "heatmap.svg").read_text().lstrip().startswith("<?xml")
    export.export_results(window, str(tmp_path / "r.csv"))
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "criterion,density,accuracy"
    export.export_mask(window, str(tmp_path / "m.safetensors"), "safetensors")
    m = read_mask(tmp_path / "m.safetensors")
    assert m.kept() == window.state.masks.kept() and m.metadata["criterion"] == "magnitude"
    export.export_mask(window, str(tmp_path / "p.pt"), "prune")
    state = torch.load(tmp_path / "p.pt", weights_only=True)
    assert torch.equal(state["fc1.weight_mask"].bool(), window.state.masks["fc1.weight"])
    export.export_mask(window, str(tmp_path / "n.pt"), "nni")
    nni = torch.load(tmp_path / "n.pt", weights_only=True)
    assert torch.equal(nni["fc1"]["weight"].bool(), window.state.masks["fc1.weight"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    assert not window.safely(lambda: export.export_compare(window, str(tmp_path / "c.csv")))
    assert "snapshot" in window.message()
