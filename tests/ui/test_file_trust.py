"""The window asks (default No) before opening a session whose model could run code; a file's own
"trust": true grants nothing; answering Yes runs it."""

from __future__ import annotations

from tests.ui.conftest import wait_idle
from tests.untrusted import evil_weights
from visualizer.core.io.session import Session, TrustRequired, save_session
from visualizer.ui.files import sessions


def malicious_session(tmp_path):
    weights, marker = evil_weights(tmp_path)
    path = tmp_path / "s.pviz"
    save_session(Session(model_ref="mlp", weights_path=str(weights), trust=True), path)
    return path, marker


def test_open_job_refuses_without_trust_and_runs_with_it(tmp_path):
    from visualizer.core.models.loaders import ModelLoadError
    from visualizer.core.tasks import run

    path, marker = malicious_session(tmp_path)
    try:
        run(sessions.open_job(str(path)))
        raise AssertionError("opened without trust")
    except TrustRequired as exc:
        assert "evil.pt" in str(exc) and "\n" not in str(exc)
    assert not marker.exists()
    try:
        run(sessions.open_job(str(path), trust=True))
    except ModelLoadError:
        pass  # the payload is no state dict; what matters is that it ran because the person said yes
    assert marker.exists()


def test_window_asks_and_no_means_nothing_runs(qtbot, window, tmp_path, monkeypatch):
    path, marker = malicious_session(tmp_path)
    asked = []

    def answer(value):
        def ask(_window, p, reason):
            asked.append((p, reason))
            return value
        return ask

    monkeypatch.setattr(sessions, "ask_trust", answer(False))
    window.open_session(str(path))
    wait_idle(qtbot, window)
    assert asked and asked[0][0] == str(path) and "evil.pt" in asked[0][1]
    assert not marker.exists()
    assert "not opened" in window.message()
    monkeypatch.setattr(sessions, "ask_trust", answer(True))
    window.open_session(str(path))
    wait_idle(qtbot, window)
    assert marker.exists()


def test_the_question_names_the_file_and_defaults_to_no(window, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    box = sessions.trust_question(window, str(tmp_path / "s.pviz"), "evil.pt needs full unpickling")
    assert "s.pviz" in box.text() and "evil.pt" in box.text()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    assert box.escapeButton() is box.button(QMessageBox.StandardButton.No)


def test_a_dropped_session_is_read_off_the_gui_thread_and_asked_about_after(qtbot, window, tmp_path,
                                                                            monkeypatch):
    """Classifying the dropped file and deciding whether the session needs trust read the file
    (a checkpoint can be gigabytes): both run in jobs; the question comes when they return."""
    import threading

    from tests.ui.conftest import drop_file
    from visualizer.core.io import mask_formats

    path, marker = malicious_session(tmp_path)
    readers: list[str] = []
    detect, load = mask_formats.detect_kind, sessions.load_session

    def detect_kind(p, *args, **kwargs):
        readers.append(threading.current_thread().name)
        return detect(p, *args, **kwargs)

    def load_session(p, *args, **kwargs):
        readers.append(threading.current_thread().name)
        return load(p, *args, **kwargs)

    asked = []

    def ask(_window, p, reason):
        asked.append((threading.current_thread() is threading.main_thread(), list(readers)))
        return False

    monkeypatch.setattr(mask_formats, "detect_kind", detect_kind)
    monkeypatch.setattr(sessions, "load_session", load_session)
    monkeypatch.setattr(sessions, "ask_trust", ask)
    drop_file(window, path)
    wait_idle(qtbot, window)
    assert len(readers) >= 2  # the kind, then the session
    assert all(name != threading.main_thread().name for name in readers), readers
    assert asked == [(True, readers)]  # asked on the GUI thread, once both reads were done
    assert not marker.exists() and "not opened" in window.message()
