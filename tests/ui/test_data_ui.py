"""The window on data it did not ship with: actions that need data are disabled with the reason
until a dataset is chosen, an image folder streams into the curvature views (a small default
sample), and a failed analysis job is one line in the status bar, not a box in the docks."""

from __future__ import annotations

from tests.imagefolders import TINY_CNN, write_digit_folder
from tests.ui.conftest import wait_idle
from visualizer.core.tasks import Step
from visualizer.ui.views.docks import NEEDS_DATA, STREAMED_SAMPLES


def test_spectrum_waits_for_a_dataset_then_reads_a_folder(window, qtbot, tmp_path, monkeypatch):
    src = tmp_path / "tiny.py"
    src.write_text(TINY_CNN)
    window.request_load(f"{src}:build")
    wait_idle(qtbot, window)
    assert window.state.dataset is None
    panel = window.views["spectrum"]
    button = next(b for b in panel.findChildren(type(panel.toolbar.itemAt(0).widget()))
                  if b.text() == "Compute spectrum")
    assert not button.isEnabled() and NEEDS_DATA in button.toolTip() and panel.status.text() == NEEDS_DATA
    training = window.training_panel
    assert not training.eval_button.isEnabled() and NEEDS_DATA in training.eval_button.toolTip()
    criteria = window.pruning_panel.criterion_box
    snip = criteria.model().item(criteria.findData("snip"))
    assert not snip.isEnabled() and NEEDS_DATA in snip.toolTip()
    assert criteria.model().item(criteria.findData("magnitude")).isEnabled()

    assert "random init" in window.model_panel.summary.text()
    root = write_digit_folder(tmp_path / "digits", per_class=4, classes=3, size=8)
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(root))
    window.model_panel.data.folder_button.click()  # Data > Open folder…
    wait_idle(qtbot, window)
    assert window.model_panel.data_box.currentData() == f"folder:{root}"
    assert window.model_panel.data_box.currentText() == "folder: digits"
    assert window.state.dataset is not None and not window.state.dataset.in_memory
    assert button.isEnabled() and panel.status.text() == ""
    assert training.eval_button.isEnabled() and snip.isEnabled() and NEEDS_DATA not in snip.toolTip()
    from visualizer.core.workspace import PREVIEW_BATCH_SIZE, PREVIEW_BATCHES

    assert panel.samples.value() == STREAMED_SAMPLES == PREVIEW_BATCHES * PREVIEW_BATCH_SIZE
    panel.probes.setValue(0)
    panel.top_k.setValue(2)
    button.click()
    wait_idle(qtbot, window, timeout=60000)
    assert window.message() == "" and "failed" not in panel.status.text()


def test_a_failed_analysis_job_is_one_line_in_the_status_bar(window, qtbot):
    panel = window.views["landscape"]

    def broken():
        yield Step("start", 0.0)
        raise ValueError("the loss landscape needs something it did not get")

    panel.submit("analysis-landscape", "loss landscape", broken, lambda _r: None)
    wait_idle(qtbot, window)
    assert window.message() == "loss landscape: the loss landscape needs something it did not get"
    assert window.centralWidget().height() == 0  # no message box between the docks
    assert panel.status.text().startswith("loss landscape failed")
    assert panel.status.sizePolicy().horizontalPolicy().name == "Ignored"  # never widens the docks


def test_a_wide_head_on_a_small_folder_is_a_note(window, qtbot, tmp_path):
    src = tmp_path / "tiny.py"
    src.write_text(TINY_CNN)
    window.request_load(f"{src}:wide")
    wait_idle(qtbot, window)
    root = write_digit_folder(tmp_path / "digits", per_class=3, classes=3, size=8)
    window.request_dataset(f"folder:{root}")
    wait_idle(qtbot, window)
    assert window.state.dataset is not None
    assert "outputs 1000 classes" in window.message() and "has 3" in window.message()


def test_training_on_a_folder_evaluates_the_preview_sample(window, qtbot, tmp_path):
    """Fine-tuning and sweeps started in the window evaluate a streamed source on the preview
    sample (2 x 16 of 60 test images here) and say so; bundled in-memory data keeps its split."""
    from visualizer.core.workspace import PREVIEW_BATCH_SIZE, PREVIEW_BATCHES
    from visualizer.ui.jobs import training as training_ui
    from visualizer.ui.views.curves import describe_row

    src = tmp_path / "tiny.py"
    src.write_text(TINY_CNN + "\n\ndef ten():\n    return build(10)\n")  # fits the folder and the digits
    window.request_load(f"{src}:ten")
    wait_idle(qtbot, window)
    root = write_digit_folder(tmp_path / "digits", per_class=20, classes=3, size=8, split=True)
    window.request_dataset(f"folder:{root}")
    wait_idle(qtbot, window)
    assert window.state.dataset.split_size("test") == 60
    sample = PREVIEW_BATCHES * PREVIEW_BATCH_SIZE
    window.pruning_panel.set_density(0.5)
    training_ui.run_training(window, {"retrain": "finetune", "epochs": 1, "max_steps": 1})
    wait_idle(qtbot, window, timeout=60000)
    row = window.state.results[-1]
    assert row["retrain"] == "finetune" and row["eval_samples"] == sample
    assert window.statusBar().currentMessage().endswith(f"on {sample} test samples")
    assert f"on {sample} test samples" in describe_row(row)
    training_ui.run_sweep(window, {"retrain": "none"}, densities=(1.0, 0.5))
    wait_idle(qtbot, window, timeout=60000)
    swept = [r for r in window.state.results if "score_batches" in r or r.get("criterion") == "random"]
    assert swept and {r.get("eval_samples") for r in swept} == {sample}
    config = training_ui.train_config({"epochs": 1}, "cpu", window.state.dataset)
    assert (config.eval_batches, config.eval_batch_size) == (PREVIEW_BATCHES, PREVIEW_BATCH_SIZE)
    # the bundled digits are in memory: the whole test split, as before
    window.request_dataset("digits")
    wait_idle(qtbot, window)
    assert window.state.dataset.in_memory
    assert training_ui.train_config({"epochs": 1}, "cpu", window.state.dataset).eval_batches is None
    before = len(window.state.results)
    training_ui.run_training(window, {"retrain": "none"})
    wait_idle(qtbot, window, timeout=60000)
    assert len(window.state.results) == before + 1 and "eval_samples" not in window.state.results[-1]
    status = window.statusBar().currentMessage()
    assert status.startswith("accuracy ") and "test samples" not in status


def _fresh_window(qtbot):
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(restore_layout=False)
    w.ask_discard = lambda: "discard"
    qtbot.addWidget(w)
    return w


def test_a_session_reopens_with_its_data_options(window, qtbot, tmp_path, monkeypatch):
    """Saved in one window, opened in a fresh one: the same folder, image size, normalisation and
    pretrained choice, and the same images; the factory model is asked about, never trusted by the file."""
    from visualizer.ui.files import sessions

    src = tmp_path / "tiny.py"
    src.write_text(TINY_CNN)
    window.model_panel.weights_choice.pretrained_box.setChecked(False)
    window.request_load(f"{src}:build")
    wait_idle(qtbot, window)
    root = write_digit_folder(tmp_path / "digits", per_class=4, classes=3, size=8)
    data = window.model_panel.data
    data.size_box.setValue(6)
    data.normalize_box.setCurrentIndex(data.normalize_box.findData("none"))
    window.request_dataset(f"folder:{root}")
    wait_idle(qtbot, window)
    first = window.state.dataset
    assert first.input_shape == (1, 6, 6)
    path = tmp_path / "s.pviz"
    assert sessions.save_session(window, path, synchronous=True)

    other = _fresh_window(qtbot)
    asked = []
    monkeypatch.setattr(sessions, "ask_trust", lambda _w, p, reason: asked.append(reason) or True)
    other.open_session(str(path))
    wait_idle(qtbot, other, timeout=60000)
    assert asked and "tiny.py" in asked[0]
    panel = other.model_panel
    assert other.state.loaded.ref == f"{src}:build"
    assert other.state.dataset_name == f"folder:{root}" and panel.data_box.currentData() == f"folder:{root}"
    assert not panel.weights_choice.pretrained()
    assert panel.data.size_box.value() == 6 and panel.data.normalize_box.currentData() == "none"
    x0, y0 = next(iter(first.batches("test", range(first.split_size("test")), 64)))
    again = other.state.dataset
    x1, y1 = next(iter(again.batches("test", range(again.split_size("test")), 64)))
    assert x1.shape == x0.shape and bool((x0 == x1).all()) and bool((y0 == y1).all())
    other.jobs.shutdown(1.0)


def test_a_session_with_a_factory_dataset_asks_first(window, qtbot, tmp_path, monkeypatch):
    """A zoo model on a file.py:factory dataset: opening asks, and No runs nothing."""
    from visualizer.core.io.session import Session, save_session
    from visualizer.ui.files import sessions

    marker = tmp_path / "ran"
    src = tmp_path / "mydata.py"
    src.write_text(f"""
import pathlib
import torch

def data():
    pathlib.Path({str(marker)!r}).write_text("ran")
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    return torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y)
""")
    path = save_session(Session(model_ref="lenet", dataset=f"{src}:data", trust=True), tmp_path / "f.pviz")
    asked = []
    monkeypatch.setattr(sessions, "ask_trust", lambda _w, p, reason: asked.append(reason) or False)
    window.open_session(str(path))
    wait_idle(qtbot, window)
    assert asked == [f"the dataset is built by running the Python file {src.with_suffix('')}.py"]
    assert not marker.exists() and "not opened" in window.message()
    monkeypatch.setattr(sessions, "ask_trust", lambda _w, p, reason: True)
    window.open_session(str(path))
    wait_idle(qtbot, window, timeout=60000)
    assert marker.exists() and window.state.dataset_name == f"{src}:data"
