"""The main window: panels and views as dock widgets, the job runner, the status bar.

Everything long runs through :class:`visualizer.ui.jobs.runner.JobRunner`; results are installed into
:class:`visualizer.ui.shell.state.AppState` on the GUI thread, and views redraw from the state. The
menus are built by :mod:`visualizer.ui.shell.menus`, the dialogs live in :mod:`visualizer.ui.shell.dialogs`,
session files in :mod:`visualizer.ui.files.sessions` and retraining in :mod:`visualizer.ui.jobs.training`.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTabBar,
    QWidget,
)

from visualizer.ui.files import opening as files
from visualizer.ui.files import sessions
from visualizer.ui.jobs import actions
from visualizer.ui.jobs import training as training_ui
from visualizer.ui.jobs.runner import JobRunner, user_message
from visualizer.ui.panels.model_panel import ModelPanel
from visualizer.ui.panels.pruning_panel import PruningPanel
from visualizer.ui.panels.training_panel import TrainingPanel
from visualizer.ui.shell import dialogs, menus
from visualizer.ui.shell.banner import MessageBanner
from visualizer.ui.shell.settings import add_recent_file, recent_files, recovery_path, settings
from visualizer.ui.shell.state import AppState
from visualizer.ui.shell.view_registry import ViewRegistry
from visualizer.ui.views import available_views
from visualizer.ui.views.analysis import install_analysis, register_themes

COPY_MASK_LIMIT = 2_000_000  # above this many prunable weights the slider shows live mask views
MODEL_SUFFIXES = {".pt", ".pth", ".ts", ".jit", ".py"}
TRAINING_KINDS = ("train", "sweep", "eval")


def scrolled(panel: QWidget) -> QScrollArea:
    """``panel`` in a frameless scroll area that scrolls only when the dock is too short."""
    area = QScrollArea()
    area.setObjectName(f"scroll-{panel.objectName() or type(panel).__name__}")
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def fit_to_screen(window: QWidget, wanted: QSize) -> QSize:
    """``wanted``, or 85% of the available area of the screen the window opens on when that is
    larger (a 1920x1080 desktop), never more than 95% of it (a 1280x720 projector)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return wanted
    room = screen.availableGeometry().size()
    return wanted.expandedTo(room * 0.85).boundedTo(room * 0.95)


class MainWindow(QMainWindow):
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
        self.docks: dict[str, QDockWidget] = {}
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        # in scroll areas: stacked at their full height the panels made the window's minimum
        # height 770 px, taller than a 1280x720 projector
        self._add_dock("model", "Model", scrolled(self.model_panel), left)
        self._add_dock("pruning", "Pruning", scrolled(self.pruning_panel), left)
        self._add_dock("training", "Training", scrolled(self.training_panel), left)
        self.tabifyDockWidget(self.docks["pruning"], self.docks["training"])
        self.docks["pruning"].raise_()

        # views
        self.views = ViewRegistry(self._build_view)
        self.view_specs = available_views()
        first = None
        for vid, spec in self.view_specs.items():
            if spec.lazy:
                widget = QWidget()  # placeholder until the dock first comes to the front
                self.views.defer(vid, widget)
            else:
                widget = spec.factory(self)
                self.views[vid] = widget
            dock = self._add_dock(vid, spec.title, widget, Qt.DockWidgetArea.RightDockWidgetArea)
            if spec.lazy:
                dock.visibilityChanged.connect(lambda visible, v=vid: self._lazy_dock_visible(v, visible))
            if first is None:
                first = dock
            else:
                self.tabifyDockWidget(first, dock)
        if first is not None:
            first.raise_()
        # the panels at their natural width (no horizontal scrolling), the views take the rest
        panels = max(w.sizeHint().width() for w in (self.model_panel, self.pruning_panel, self.training_panel))
        # + the vertical scroll bar + the dock separator, which on xcb came out of the dock's
        # width: the training panel scrolled sideways by 2 px at 1920x1080
        metric = self.style().pixelMetric
        pm = self.style().PixelMetric
        left = panels + metric(pm.PM_ScrollBarExtent) + metric(pm.PM_DockWidgetSeparatorExtent) + 4
        self._left_width = self._default_left = left  # the panel column; kept on resizes
        self._window_width = self.width()
        self.docks["model"].installEventFilter(self)
        self.resizeDocks([self.docks["model"], first], [left, max(self.width() - left, 400)],
                         Qt.Orientation.Horizontal)
        # the pruning panel (criterion, density slider) whole; the model's layer list takes the rest
        pruning = self.pruning_panel.sizeHint().height() + 56  # + title bar and the Pruning|Training tabs
        self.resizeDocks([self.docks["model"], self.docks["pruning"]],
                         [max(self.height() - pruning - 60, 200), pruning], Qt.Orientation.Vertical)

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

    # --- construction ----------------------------------------------------------------------
    def _add_dock(self, key: str, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{key}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        self.docks[key] = dock
        self._connect_view(dock, widget)
        dock.dockLocationChanged.connect(self._schedule_tab_bar_cleanup)
        dock.topLevelChanged.connect(self._schedule_tab_bar_cleanup)
        return dock

    @staticmethod
    def _connect_view(dock: QDockWidget, widget: QWidget) -> None:
        if hasattr(widget, "dock_visibility_changed"):  # analysis panels draw when first in front
            dock.visibilityChanged.connect(widget.dock_visibility_changed)

    def _lazy_dock_visible(self, vid: str, visible: bool) -> None:
        if visible and vid in self.views.pending:
            QTimer.singleShot(0, lambda: self._build_if_shown(vid))  # after the tab switch's layout

    def _build_if_shown(self, vid: str) -> None:
        # visibilityChanged(True) also reaches docks behind a tab; their region is empty
        placeholder = self.docks[vid].widget()
        if vid in self.views.pending and placeholder.isVisible() and not placeholder.visibleRegion().isEmpty():
            self.views.materialize(vid)

    def _build_view(self, vid: str) -> QWidget:
        """Build a deferred view (ViewRegistry) and put it in its dock, themed like the rest."""
        widget = self.view_specs[vid].factory(self)
        dock = self.docks[vid]
        old = dock.widget()
        dock.setWidget(widget)
        if old is not None:
            old.deleteLater()
        self._connect_view(dock, widget)
        if getattr(self, "teaching", None) is not None:  # views built after install_analysis
            register_themes(widget, self.teaching.manager)
        return widget

    def _schedule_tab_bar_cleanup(self, *_args) -> None:
        QTimer.singleShot(0, self.hide_stale_tab_bars)
        QTimer.singleShot(0, self.unelide_tab_bars)

    def unelide_tab_bars(self) -> None:
        """Dock tabs show their whole titles and scroll when they do not fit.

        Qt elides them by default: at 1280x720 the nine view tabs read 'G…', 'S…', 'L…', which
        a lecturer cannot find a view by. Called again after every regrouping, since Qt makes a
        new tab bar for each new tab group."""
        for bar in self.findChildren(QTabBar):
            if bar.parent() is self:
                bar.setElideMode(Qt.TextElideMode.ElideNone)
                bar.setUsesScrollButtons(True)

    def hide_stale_tab_bars(self) -> int:
        """Hide dock tab bars Qt left visible after regrouping; returns how many it hid.

        Qt 6.12's main-window layout leaves a retired tab bar shown when a second tab group is
        formed (reproduced with plain QDockWidgets: two tabified groups give three visible bars),
        drawn over the status bar. A bar is stale when it is empty or every title it shows is
        also in a bar with more tabs (the live group)."""
        bars = [b for b in self.findChildren(QTabBar) if b.parent() is self and b.isVisible()]
        titles = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
        hidden = 0
        for bar in bars:
            stale = not titles[bar] or any(
                other is not bar and len(titles[other]) > len(titles[bar]) and titles[bar] <= titles[other]
                for other in bars)
            if stale:
                bar.hide()
                hidden += 1
        return hidden

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt API)
        # the model dock resized with a mouse button down while the window kept its width:
        # the person dragged the separator; that is the column width to keep
        if event.type() == QEvent.Type.Resize and obj is self.docks.get("model") \
                and QGuiApplication.mouseButtons() & Qt.MouseButton.LeftButton \
                and self.width() == self._window_width and not obj.isFloating():
            self._left_width = obj.width()
        return super().eventFilter(obj, event)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Without a central widget to absorb it, QMainWindow shares a resize out between the
        left and right dock areas; the panels keep their column and the views take the rest."""
        super().resizeEvent(event)
        self._window_width = self.width()
        QTimer.singleShot(0, self._keep_left_width)

    def fit_pruning_panel(self) -> None:
        """The pruning panel (criterion, density slider) whole, the layer list giving way: a
        layout saved on a large screen and restored on a 1280x720 projector left the slider
        scrolled out of sight under a tall layer list."""
        model = self.docks["model"]
        group = next((d for d in (self.docks["pruning"], self.docks["training"]) if d.isVisible()), None)
        if group is None or not model.isVisible() or model.isFloating() or group.isFloating() \
                or model.x() != group.x():
            return
        want = self.pruning_panel.sizeHint().height() + 24
        total = model.height() + group.height()
        if group.height() < want and total - want >= 200:
            self.resizeDocks([model, group], [total - want, want], Qt.Orientation.Vertical)

    def _keep_left_width(self) -> None:
        model = self.docks["model"]
        if model.isVisible() and not model.isFloating() and model.width() != self._left_width:
            # both sides named: QMainWindow ignores a one-sided resizeDocks here
            views = next((d for vid, d in self.docks.items() if vid in self.views
                          and d.isVisible() and not d.isFloating()), None)
            if views is not None:
                self.resizeDocks([model, views], [self._left_width, max(self.width() - self._left_width, 1)],
                                 Qt.Orientation.Horizontal)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        QTimer.singleShot(0, self._keep_left_width)
        QTimer.singleShot(0, self.fit_pruning_panel)
        self._schedule_tab_bar_cleanup()
        if self._redock_pending:  # once shown, the restored floating docks have their real places
            self._redock_pending = False
            QTimer.singleShot(0, lambda: files.redock_stray_docks(self))

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        # permanent: a passing "done" message must not hide an error the user has not read
        bar.addPermanentWidget(self.banner, 1)
        self.stage_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc); nothing changes")
        self.cancel_button.clicked.connect(self.cancel_jobs)
        for w in (self.progress, self.cancel_button):
            w.hide()
        bar.addPermanentWidget(self.stage_label)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        from visualizer.ui.shell.device_ui import install_device_selector

        install_device_selector(self)  # the one device every job runs on

    # --- settings / recent ------------------------------------------------------------------
    def _restore_settings(self) -> None:
        st = settings()
        geo = st.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        layout = st.value("windowState")
        if layout is not None:
            self.restoreState(layout)
            width = st.value("panelWidth")
            if width is not None and int(width) > 0:
                self._left_width = int(width)
            self._redock_pending = True

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        self._left_width = self._default_left
        self._keep_left_width()

    def save_settings(self) -> None:
        if not self.persist_settings:
            return
        st = settings()
        st.setValue("geometry", self.saveGeometry())
        st.setValue("panelWidth", self._left_width)
        st.setValue("windowState", self.saveState())
        st.sync()

    def recent_files(self) -> list[str]:
        return recent_files()

    def add_recent(self, path: str) -> None:
        if not self.persist_settings:
            return
        add_recent_file(path)
        menus.fill_recent(self)

    # --- messages and progress -------------------------------------------------------------
    def show_error(self, text: str) -> None:
        self._show_message(text, error=True)

    def show_info(self, text: str) -> None:
        self._show_message(text, error=False)

    def _show_message(self, text: str, error: bool) -> None:
        """One line in the status bar (the whole text as its tooltip): a message never opens
        space between the docks (it used to grow the central area and squeeze them)."""
        line = text.strip().splitlines()[0] if text.strip() else ""
        self.banner.show_message(line, error=error)
        self.banner.setToolTip(text)

    def message(self) -> str:
        return self.banner.text()

    def _job_started(self, _id: int, _kind: str, title: str) -> None:
        self.stage_label.setText(title)
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        if _kind in TRAINING_KINDS:
            self.training_panel.set_running(True)

    def _job_progress(self, _id: int, stage: str, fraction: float) -> None:
        self.stage_label.setText(stage)
        self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))

    def _job_finished(self, _id: int, kind: str, status: str) -> None:
        if kind in TRAINING_KINDS:
            self.training_panel.set_running(any(self.jobs.is_running(k) for k in TRAINING_KINDS))
        running = self.jobs.running()
        if running:
            job = running[-1]
            self.stage_label.setText(job.stage or job.title)
            self.progress.setValue(int(1000 * job.fraction))
            return
        self.progress.hide()
        self.cancel_button.hide()
        self.stage_label.setText({"ok": "", "cancelled": "cancelled", "error": "failed"}.get(status, ""))

    def cancel_jobs(self) -> None:
        """Esc: cancel the running jobs; with none running, leave teaching mode. Both want Esc
        and two actions on one key are ambiguous (Qt fires neither), so teaching mode's own
        Esc was never bound and a lecturer could leave it only with F11."""
        teaching = getattr(self, "teaching", None)
        if not self.jobs.is_running() and teaching is not None and teaching.active:
            teaching.set_active(False)
            return
        self.jobs.cancel()

    def update_title(self, *_args) -> None:
        name = self.session_path.name if self.session_path else "untitled"
        star = "*" if self.state.dirty else ""
        model = f" — {self.state.loaded.ref}" if self.state.loaded is not None else ""
        self.setWindowTitle(f"{name}{star}{model} — Pruning Visualizer")

    # --- model -----------------------------------------------------------------------------
    def request_load(self, ref: str, weights: str = "", trust: bool = False, dataset: str = "",
                     on_done=None) -> None:
        """Load a model in the background; the current one stays until the new one is ready (its
        jobs too: installing the new model retires them, AppState.origin_changed)."""
        def done(result) -> None:
            self.install_model(*result)
            self.session_path = None
            self.update_title()
            if self.loaded_at is None:
                self.loaded_at = time.monotonic()
            self.banner.hide()
            if Path(ref).suffix in MODEL_SUFFIXES or ".py:" in ref:
                self.add_recent(ref.split(".py:")[0] + ".py" if ".py:" in ref else ref)
            # a torch.nn.utils.prune checkpoint's mask stays until the slider moves
            self.request_ranking(apply_mask=self.state.mask_source is None)
            if on_done is not None:
                on_done()

        shown = Path(ref).name if Path(ref).suffix in MODEL_SUFFIXES else ref
        settings = self.model_panel.load_settings()
        self.jobs.submit("load", f"loading {shown}",
                         lambda: actions.load_job(ref, weights or None, trust, dataset or None, **settings),
                         on_result=done)

    def install_model(self, loaded, data, info: dict) -> None:
        """Make a loaded model (from a file or a session) the current one. The jobs it starts
        (ranking, graph tracing) wait until the window has repainted (JobRunner.hold)."""
        self.jobs.hold()
        self.state.set_model(loaded, data, info)

    def request_dataset(self, name: str) -> None:
        def done(data) -> None:
            self.state.set_dataset(data)
            self.model_panel._rebuild()
            if data.notes:  # e.g. a 1000-class head on a 3-class folder
                self.show_info("; ".join(data.notes))
            self.request_ranking()

        loaded = self.state.loaded
        model, ref = (loaded.model, loaded.ref) if loaded is not None else (None, "the model")
        transform = getattr(loaded, "transform", None)
        options = self.model_panel.load_settings()["options"]
        shown = f"folder {Path(name[7:]).name}" if name.startswith("folder:") else name
        self.jobs.submit("data", f"loading {shown}",
                         lambda: actions.dataset_job(name, model, ref, options, transform), on_result=done,
                         on_error=lambda _message: self.model_panel.show_dataset())

    def open_model_dialog(self) -> None:
        path = dialogs.choose_model_file(self)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        """Open any file the user hands over (menu, recent list, drag and drop), by content."""
        files.open_any(self, path)

    def open_mask_dialog(self, compare: bool = False) -> None:
        files.open_mask_dialog(self, compare)

    def request_weights(self, path: str) -> None:
        """Weights for the current model (a weights file or a torch.nn.utils.prune checkpoint,
        whose mask then shows at once, dropped on the window)."""
        if self.state.loaded is None:
            self.show_error(f"{Path(path).name}: load a model first, then its weights")
            return
        ref = self.state.loaded.ref
        self.model_panel.weights_edit.setText(path)
        self.request_load(ref, path, self.model_panel.trust_box.isChecked(), self.state.dataset_name or "")

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

    # --- pruning ---------------------------------------------------------------------------
    def request_ranking(self, apply_mask: bool = True) -> None:
        """Rank once per (criterion, scope, structure) in the background, then follow the slider.

        ``apply_mask=False`` (opening a session) keeps the current mask until the slider moves."""
        s = self.state
        if s.loaded is None or not self.pruning_panel.criteria:
            return
        key = s.key
        if key in s.rankings:
            ranking, scores = s.rankings[key]
            s.scores = scores
            s.scores_changed.emit()
            if apply_mask:
                self.set_density(s.density, dirty=s.dirty or s.density < 1.0)
            return
        s.scores = None
        s.scores_changed.emit()
        from visualizer.core.pruning.criteria import CRITERIA

        info = CRITERIA.get(key[0])
        snap = s.capture(reads_data=info is None or bool(info.needs_data),
                         settings={"criterion": key[0], "scope": key[1], "structure": key[2]})

        def done(result) -> None:
            if not s.is_current(snap.provenance):
                return  # a different model or dataset arrived meanwhile
            rk, scores_np = result
            s.set_ranking(key, rk, scores_np)
            if s.key == key and apply_mask:
                # at 100% every ranking keeps everything: a model just loaded is not an unsaved
                # change (quitting right after start asked to save an untitled session)
                self.set_density(s.density, dirty=s.dirty or s.density < 1.0)
            else:
                self.pruning_panel.update_label()

        crit, scope, structure = key
        device = s.device
        self.jobs.submit("rank", f"ranking by {crit} ({scope}, {structure})",
                         lambda: actions.rank_job(snap.model, snap.data, crit, scope, structure, device=device),
                         on_result=done, origin=snap.provenance)
        self.pruning_panel.update_label()

    def set_density(self, density: float, dirty: bool = True) -> None:
        """The slider path: a threshold lookup in the cached ranking, no re-ranking."""
        s = self.state
        s.density = float(density)
        rk = s.current_ranking()
        if rk is None:
            self.pruning_panel.update_label()
            return
        # The Ranking is owned by this (GUI) thread: moving its cut only flips the entries between
        # the old and new cut. Large models get live views (no copy); consumers that keep a mask
        # (snapshot, sessions, training jobs) copy it.
        masks = rk.mask_at(density, copy=rk.total() <= COPY_MASK_LIMIT)
        s.set_masks(masks, dirty=dirty, counts=rk.layer_kept())

    # --- training (visualizer.ui.jobs.training) --------------------------------------------------
    def _cancel_training(self) -> None:
        for kind in TRAINING_KINDS:
            self.jobs.cancel(kind)

    def install_trained_model(self, model) -> None:
        """Install a trained copy as a new model version (keep the mask; re-rank lazily). The
        old model object is never changed: jobs still reading it read what they started from."""
        from dataclasses import replace

        s = self.state
        model.train(s.loaded.model.training)
        s.install_weights(replace(s.loaded, model=model), actions.model_info(model)["params"])
        self.request_ranking(apply_mask=False)

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
