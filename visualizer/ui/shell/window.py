"""The main window: panels and views as dock widgets, the job runner, the status bar.

Everything long runs through :class:`visualizer.ui.jobs.runner.JobRunner`; results are installed into
:class:`visualizer.ui.shell.state.AppState` on the GUI thread, and views redraw from the state. The
menus are built by :mod:`visualizer.ui.shell.menus`, the dialogs live in :mod:`visualizer.ui.shell.dialogs`,
session files in :mod:`visualizer.ui.files.sessions` and retraining in :mod:`visualizer.ui.jobs.training`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, QTimer
from PySide6.QtWidgets import QMainWindow, QSizePolicy, QWidget

from visualizer.ui.files import opening as files
from visualizer.ui.files import sessions
from visualizer.ui.jobs import training as training_ui
from visualizer.ui.jobs.runner import JobRunner, user_message
from visualizer.ui.panels.model_panel import ModelPanel
from visualizer.ui.panels.pruning_panel import PruningPanel
from visualizer.ui.panels.training_panel import TrainingPanel
from visualizer.ui.shell import dialogs, menus
from visualizer.ui.shell.banner import MessageBanner
from visualizer.ui.shell.docking import DockLayout, fit_to_screen
from visualizer.ui.shell.requests import ModelRequests
from visualizer.ui.shell.settings import add_recent_file, recent_files, recovery_path, settings  # noqa: F401
from visualizer.ui.shell.state import AppState
from visualizer.ui.shell.status import StatusBar
from visualizer.ui.views.analysis import install_analysis


class MainWindow(DockLayout, StatusBar, ModelRequests, QMainWindow):
    """The window: its state, job runner, panels, views and menus; the dock layout, status bar
    and model requests are its mixins (docking, status, requests)."""

    def __init__(self, synchronous: bool = False, restore_layout: bool = True,
                 persist_settings: bool = True) -> None:
        super().__init__()
        # headless runs (pruneviz screenshot) never write the person's layout or recent files
        self.persist_settings = persist_settings
        self._redock_pending = False
        self.setWindowTitle("Pruning Visualizer")
        self.setObjectName("MainWindow")
        self.resize(fit_to_screen(self, QSize(1400, 880)))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.state = AppState(self)
        self.jobs = JobRunner(self, synchronous=synchronous)
        self.session_path: Path | None = None
        self.ask_discard = lambda: dialogs.ask_discard(self)  # tests replace this to answer the prompt
        self.loaded_at: float | None = None  # monotonic time the first model was shown

        # central: an empty area (the views are docks); messages go to the status bar's banner
        self.banner = MessageBanner()
        self.banner.label.setWordWrap(False)
        # a long message is cut, never widening the window (its tooltip has it whole)
        self.banner.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        central = QWidget()
        # no room at all: a central widget takes every pixel a resize adds, so a maximized or
        # teaching-mode (full screen) window showed a blank band between panels and views
        central.setMaximumSize(0, 0)
        self._central = central
        self.setCentralWidget(central)

        # panels
        self.model_panel = ModelPanel(self.state)
        self.pruning_panel = PruningPanel(self.state)
        self.training_panel = TrainingPanel(self.state)
        self.model_panel.load_requested.connect(self.request_load)
        self.model_panel.open_file_requested.connect(self.open_model_dialog)
        self.model_panel.dataset_requested.connect(self.request_dataset)
        self.pruning_panel.ranking_requested.connect(self.request_ranking)
        self.pruning_panel.density_changed.connect(self.set_density)
        self.training_panel.cancel_requested.connect(self._cancel_training)
        self.training_panel.run_requested.connect(lambda s: training_ui.run_training(self, s))
        self.training_panel.sweep_requested.connect(lambda s: training_ui.run_sweep(self, s))
        self.training_panel.evaluate_requested.connect(lambda: training_ui.evaluate_mask(self))
        self._build_docks()
        self.unelide_tab_bars()
        self._build_status_bar()
        menus.build_menus(self)
        install_analysis(self)  # teaching mode, themes and the Presets menu
        self.jobs.started.connect(self._job_started)
        self.jobs.progress.connect(self._job_progress)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(lambda _k, msg: self.show_error(msg))
        # one rule for every job of the old state: a model or dataset change retires them
        self.state.origin_changed.connect(lambda: self.jobs.retire(self.state.provenance()))
        self.state.dirty_changed.connect(self.update_title)
        self.state.results_changed.connect(self._schedule_autosave)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(1000)
        self._autosave_timer.timeout.connect(self.autosave)
        self._default_state = self.saveState()
        if restore_layout:
            self._restore_settings()
        self.update_title()

    # --- recent files -----------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        return recent_files()

    def add_recent(self, path: str) -> None:
        if not self.persist_settings:
            return
        add_recent_file(path)
        menus.fill_recent(self)

    def update_title(self, *_args) -> None:
        name = self.session_path.name if self.session_path else "untitled"
        star = "*" if self.state.dirty else ""
        model = f" — {self.state.loaded.ref}" if self.state.loaded is not None else ""
        self.setWindowTitle(f"{name}{star}{model} — Pruning Visualizer")

    # --- files -----------------------------------------------------------------------------
    def open_model_dialog(self) -> None:
        path = dialogs.choose_model_file(self)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        """Open any file the user hands over (menu, recent list, drag and drop), by content."""
        files.open_any(self, path)

    def open_mask_dialog(self, compare: bool = False) -> None:
        files.open_mask_dialog(self, compare)

    # --- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.add_recent(url.toLocalFile())
                self.open_path(url.toLocalFile())
                event.acceptProposedAction()
                return

    # --- sessions (visualizer.ui.files.sessions) ------------------------------------------------------
    def open_session_dialog(self) -> None:
        path = dialogs.choose_session_to_open(self)
        if path:
            self.open_session(path)

    def open_session(self, path: str, trust: bool = False) -> None:
        sessions.open_session(self, path, trust)

    def save_session(self, synchronous: bool | None = None) -> bool:
        if self.session_path is None:
            return self.save_session_as(synchronous)
        return sessions.save_session(self, self.session_path, synchronous)

    def save_session_as(self, synchronous: bool | None = None) -> bool:
        path = dialogs.choose_session_to_save(self)
        if path is None:
            return False
        return sessions.save_session(self, Path(path), synchronous)

    def _schedule_autosave(self) -> None:
        if self.state.results:
            self._autosave_timer.start()

    def autosave(self) -> None:
        sessions.autosave(self)

    def recover(self) -> None:
        path = recovery_path()
        if not path.exists():
            self.show_info("no autosaved results to recover")
            return
        self.open_session(str(path))

    # --- quick actions ------------------------------------------------------------------------
    def safely(self, fn, done_text: str = "") -> bool:
        """Run a quick action; a failure becomes a message, never a crash."""
        try:
            fn()
        except Exception as exc:  # any failure is shown, the app keeps working
            self.show_error(user_message(exc))
            return False
        if done_text:
            self.statusBar().showMessage(done_text, 4000)
        return True

    # --- closing ---------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        if self.state.dirty:
            answer = self.ask_discard()
            if answer == "cancel" or (answer == "save" and not self.save_session(synchronous=True)):
                event.ignore()
                return
        self.jobs.shutdown(wait=1.5)
        self.save_settings()
        event.accept()
