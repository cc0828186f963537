"""The main window's status bar: one-line messages (the banner), the running job's stage and
progress, and the Cancel button (Esc). A mixin of :class:`visualizer.ui.shell.window.MainWindow`."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton

TRAINING_KINDS = ("train", "sweep", "eval")  # the jobs the Training panel's Cancel button stops


class StatusBar:
    """Messages, job progress and cancel in the main window's status bar (a mixin)."""

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
