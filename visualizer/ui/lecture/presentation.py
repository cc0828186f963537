"""Presentation mode: the lecture hall's window, designed for a projector rather than scaled.

One slide fills the screen: the live mask heatmap of the loaded model, or a preset's figure
(see :mod:`visualizer.ui.lecture.presets`). Under it one caption line and a compact control strip:
model, criterion, density slider, Back / Play / Next and the deck position. Space and Right
step forward, Left back, Escape leaves. Presets run in the background with progress; a
finished slide is kept, so stepping back is instant.

Fonts, markers, lines and colour bars come from the teaching variant of a high-contrast light or
dark theme (:func:`visualizer.ui.lecture.teaching.teaching_variant`), sized for the back of the room.
The widget holds no numerics: it drives the main window through its public methods
(``request_load``, ``pruning_panel.set_settings`` / ``set_density``, ``jobs.submit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.lecture.strip import ControlStrip

LIVE = "live"  # the slide showing the loaded model's mask, driven by the control strip
PLAY_INTERVAL_MS = 12000  # Play: seconds per slide
# point sizes per screen height: a 720-line projector and a 1080-line one read alike from the back
CAPTION_PT_PER_LINE = 26 / 1080
STRIP_PT_PER_LINE = 17 / 1080


def enlarge_text(widget: QWidget, point_size: float) -> None:
    """Every plot text inside ``widget`` in ``point_size`` type: tick labels, axis titles and
    colour-bar axes, and value labels (bars, annotations); the views are drawn for a desk, a
    slide for the back row. Axes print plain numbers: no SI multiplier ("x0.001") on any axis."""
    import pyqtgraph as pg
    from PySide6.QtGui import QFont

    from visualizer.ui.views.base import plain_numbers

    font = QFont()
    font.setPointSizeF(point_size)
    for view in widget.findChildren(pg.GraphicsView):
        for item in view.scene().items():
            if isinstance(item, pg.AxisItem):
                plain_numbers(item)
                item.setStyle(tickFont=font, tickTextOffset=6)
                item.label.setFont(font)
            elif isinstance(item, pg.TextItem):
                item.setFont(font)
            elif hasattr(item, "set_text_pt"):  # a graph's node titles and notes
                item.set_text_pt(point_size)


@dataclass
class Slide:
    id: str
    title: str
    widget: QWidget | None = None  # built once; kept so stepping back is instant
    caption: str = ""
    error: str = ""


class Presentation(QWidget):
    """A top-level presentation window over a main window (see the module docstring)."""

    slide_changed = Signal(int)

    def __init__(self, window, deck: list[str] | None = None, scheme: str = "dark") -> None:
        super().__init__(None, Qt.WindowType.Window)
        from visualizer.ui.lecture.presets import PRESETS

        self.main = window  # the workbench (not QWidget.window(), which this must not shadow)
        self.setObjectName("presentation")
        self.setWindowTitle("Pruning Visualizer: presentation")
        ids = [LIVE, *(deck if deck is not None else PRESETS)]
        unknown = [i for i in ids if i != LIVE and i not in PRESETS]
        if unknown:
            raise ValueError(f"unknown presets in the deck: {', '.join(unknown)}")
        self.slides = [Slide(i, "Live: mask of the loaded model" if i == LIVE else PRESETS[i].title) for i in ids]
        self.index = -1
        self._scheme = scheme
        self._text_pt = 10.0  # plot text size of the slides, set with the fonts by _size_fonts

        self.stack = QStackedWidget(self)
        self.waiting = QLabel("", self)  # progress / error page of a slide still running
        self.waiting.setObjectName("slideWaiting")
        self.waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.waiting.setWordWrap(True)
        self.stack.addWidget(self.waiting)
        self.title = QLabel(self)
        self.title.setObjectName("slideTitle")
        self.caption = QLabel(self)
        self.caption.setObjectName("slideCaption")
        self.caption.setWordWrap(True)
        self.strip = self._build_strip()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(6)
        layout.addWidget(self.title)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.lab_slot)
        layout.addWidget(self.strip)

        self._play = QTimer(self)
        self._play.setInterval(PLAY_INTERVAL_MS)
        self._play.timeout.connect(self.next)
        for keys, slot in ((("Space", "Right", "PgDown"), self.next), (("Left", "PgUp", "Backspace"), self.back),
                           (("Escape",), self.close), (("P",), self.toggle_play)):
            for key in keys:
                sc = QShortcut(QKeySequence(key), self)
                sc.setContext(Qt.ShortcutContext.WindowShortcut)
                sc.activated.connect(slot)
        window.jobs.progress.connect(self._progress)
        window.state.masks_changed.connect(self._live_caption)
        window.state.model_changed.connect(self._live_caption)
        self.apply_theme()
        self.show_slide(0)

    # --- layout --------------------------------------------------------------------------------
    def _build_strip(self) -> QWidget:
        """The workbench's controls (model, criterion, density), the current lab's settings and
        the deck's buttons in one row."""
        strip = ControlStrip(self.main, self)
        strip.used.connect(self._go_live)
        self.model_box, self.criterion_box = strip.model_box, strip.criterion_box
        self.slider, self.density_label = strip.slider, strip.density_label
        # the current lab slide's settings: a row of their own above the strip (in the strip's row
        # they pushed the window past a 1280-pixel screen)
        self.lab_slot = QStackedWidget(self)
        self.lab_slot.hide()
        self.lab_controls: dict = {}
        self._lab_timer = QTimer(self)
        self._lab_timer.setSingleShot(True)
        self._lab_timer.setInterval(300)
        self._lab_timer.timeout.connect(self._rerun_lab)
        self.back_button = QPushButton("◀ Back", strip)
        self.play_button = QPushButton("▶ Play", strip)
        self.play_button.setCheckable(True)
        self.next_button = QPushButton("Next ▶", strip)
        self.position = QLabel(strip)
        self.progress = QProgressBar(strip)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumWidth(160)
        self.progress.hide()  # shown while a slide computes
        for w in (self.back_button, self.play_button, self.next_button, self.position,
                  self.progress):
            strip.row.addWidget(w)
        for w in (self.back_button, self.play_button, self.next_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space and the arrows always step the deck
        self.back_button.clicked.connect(self.back)
        self.next_button.clicked.connect(self.next)
        self.play_button.toggled.connect(self._set_playing)
        return strip

    def apply_theme(self, scheme: str | None = None) -> None:
        """High-contrast light or dark, with fonts sized to the window's height."""
        from visualizer.ui.lecture.teaching import theme_manager

        self._scheme = scheme or self._scheme
        manager = theme_manager()
        manager.set_scheme(self._scheme)
        manager.set_teaching(True)
        self._style_key = None
        self._size_fonts()

    def _size_fonts(self) -> None:
        """Colours and font sizes in one style sheet: a style sheet re-polishes every child when
        a slide's view is added, and would undo sizes given by setFont."""
        from visualizer.ui.lecture.teaching import theme_manager

        lines = max(self.height(), 480)
        caption = round(max(11.0, CAPTION_PT_PER_LINE * lines), 1)
        strip = round(max(10.0, STRIP_PT_PER_LINE * lines), 1)
        theme = theme_manager().theme()
        key = (caption, strip, theme.name)
        if key == getattr(self, "_style_key", None):
            return
        self._style_key = key
        self.setStyleSheet(
            f"QWidget#presentation, QStackedWidget {{ background: {theme.background}; }}"
            f" QLabel {{ color: {theme.foreground}; }}"
            f" QLabel#slideCaption, QLabel#slideWaiting {{ font-size: {caption}pt; }}"
            f" QLabel#slideTitle {{ font-size: {round(caption * 1.15, 1)}pt; font-weight: bold; }}"
            f" QWidget#controlStrip, QWidget#controlStrip * {{ font-size: {strip}pt; }}"
            f" QStackedWidget QLabel {{ font-size: {strip}pt; }}"
            f" QLabel#explainerSteps {{ font-size: {round(caption * 0.85, 1)}pt; }}")
        self._text_pt = strip
        for slide in getattr(self, "slides", []):
            if slide.widget is not None:
                enlarge_text(slide.widget, strip)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        """The deck keys also when the window is not the active one (a second screen)."""
        key = event.key()
        if key in (Qt.Key.Key_Space, Qt.Key.Key_Right, Qt.Key.Key_PageDown):
            self.next()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_PageUp, Qt.Key.Key_Backspace):
            self.back()
        elif key == Qt.Key.Key_Escape:
            self.close()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._size_fonts()

    def present(self) -> None:
        """Full screen on the screen the main window is on."""
        handle = self.main.windowHandle()
        screen = handle.screen() if handle is not None else None
        if screen is not None:
            self.setScreen(screen)
            self.setGeometry(screen.geometry())  # full size even where no window manager obeys
        self.showFullScreen()
        self.activateWindow()

    # --- the deck ------------------------------------------------------------------------------
    def next(self) -> None:
        """The slide's next step (an explainer reveals its numbers one by one), else the next slide."""
        widget = self.slides[self.index].widget
        if widget is not None and self.stack.currentWidget() is widget and getattr(widget, "advance", None):
            if widget.advance():
                enlarge_text(widget, self._text_pt)  # the step drew new plot texts
                return
        self.show_slide(self.index + 1)

    def back(self) -> None:
        widget = self.slides[self.index].widget
        if widget is not None and self.stack.currentWidget() is widget and getattr(widget, "retreat", None):
            if widget.retreat():
                enlarge_text(widget, self._text_pt)
                return
        self.show_slide(self.index - 1)

    def show_slide(self, index: int) -> None:
        index %= len(self.slides)
        self.index = index
        slide = self.slides[index]
        self.title.setText(slide.title)
        self.position.setText(f"{index + 1} / {len(self.slides)}")
        self._lab_settings(slide)
        if slide.id == LIVE:
            self._show_live(slide)
        elif slide.widget is not None:
            self._show_ready(slide)
        else:
            self._start(slide)
        self.slide_changed.emit(index)

    def _show_live(self, slide: Slide) -> None:
        self.progress.hide()
        if slide.widget is None:
            from visualizer.ui.views.heatmap import HeatmapView

            slide.widget = HeatmapView(self.main)
            self.stack.addWidget(slide.widget)
            self._style_key = None  # size its axes with the rest
            self._size_fonts()
        self.stack.setCurrentWidget(slide.widget)
        self._live_caption()

    def _show_ready(self, slide: Slide) -> None:
        self.stack.setCurrentWidget(slide.widget)
        from visualizer.ui.lecture.presets import PRESETS

        self.caption.setText(slide.caption or PRESETS[slide.id].caption)  # a lab still filling in
        self.progress.setVisible(self.main.jobs.is_running(self._kind(slide)))

    def _start(self, slide: Slide, settings: dict | None = None) -> None:
        """Run the preset's job in the background. A streaming slide (every preset's now) shows
        its figure at once and fills it as the job yields its figure so far; a slide that does
        not stream shows its progress until done."""
        from visualizer.core.labs.params import job_options
        from visualizer.core.lecture.presets import PRESETS as SPECS
        from visualizer.ui.lecture.presets import PRESETS

        preset = PRESETS[slide.id]
        streams = SPECS[slide.id].streams
        self.caption.setText(preset.caption)
        if streams and not slide.error:
            if slide.widget is None:
                slide.widget = preset.view()
                slide.widget.set_caption("")
                self.stack.addWidget(slide.widget)
                self._style_key = None
                self._size_fonts()
            self.stack.setCurrentWidget(slide.widget)
        else:
            self.stack.setCurrentWidget(self.waiting)
            self.waiting.setText(slide.error or f"{preset.title}: computing…")
        self.progress.setVisible(not slide.error)
        if slide.error or (settings is None and self.main.jobs.is_running(self._kind(slide))):
            return
        self.progress.setValue(0)

        def partial(result, slide=slide) -> None:
            if streams and slide.widget is not None:
                self.install_partial(slide, result)

        def done(result, slide=slide) -> None:
            self.install_result(slide, result)

        def failed(message: str, slide=slide) -> None:
            slide.error = f"{slide.title}: {message}"
            if self.slides[self.index] is slide:
                self.stack.setCurrentWidget(self.waiting)
                self.waiting.setText(slide.error)

        from visualizer.ui.shell.device_ui import job_device

        device = job_device(self.main)  # the status bar's device chooser, as for every job
        if device is None:
            return
        options = job_options(slide.id, settings) if settings is not None else {}  # a lab's settings
        self.main.jobs.submit(self._kind(slide), preset.title, lambda: preset.job(device=device, **options),
                              on_result=done, on_partial=partial, on_error=failed)

    @staticmethod
    def is_figure(partial) -> bool:
        """A partial result that is a figure's state so far (a lab's result, the circuit before
        the lasso, the rounds done, the spectrum's probes so far); the training loop's progress
        dicts and a sweep's rows are not one."""
        return partial is not None and not isinstance(partial, dict | list)

    def install_partial(self, slide: Slide, result) -> None:
        """A streaming slide's figure so far drawn into its view (made here if needed)."""
        from visualizer.ui.lecture.presets import PRESETS

        if not self.is_figure(result):
            return
        if slide.widget is None:
            slide.widget = PRESETS[slide.id].view()
            slide.widget.set_caption("")
            self.stack.addWidget(slide.widget)
        PRESETS[slide.id].show(slide.widget, result)
        enlarge_text(slide.widget, self._text_pt)

    def install_result(self, slide: Slide, result) -> None:
        """A slide's job result drawn into its view (made here unless the slide streams into one)."""
        from visualizer.ui.lecture.presets import PRESETS, caption_of

        preset = PRESETS[slide.id]
        view = slide.widget
        if view is None:
            view = slide.widget = preset.view()
            self.stack.addWidget(view)
        preset.show(view, result)
        enlarge_text(view, self._text_pt)  # the view's redraw made its texts anew
        slide.caption = caption_of(preset, result)
        view.set_caption("")  # the caption line below the slide says it, in large type
        if self.slides[self.index] is slide:
            self._show_ready(slide)

    def _lab_settings(self, slide: Slide) -> None:
        """The lab slide's controls sit in the strip; other slides hide them."""
        from visualizer.core.labs.params import LAB_PARAMS
        from visualizer.ui.views.labs import LabControls

        if slide.id not in LAB_PARAMS:
            self.lab_slot.hide()
            return
        controls = self.lab_controls.get(slide.id)
        if controls is None:
            controls = self.lab_controls[slide.id] = LabControls(slide.id, self.lab_slot)
            controls.changed.connect(lambda values, s=slide: self._lab_changed(s, values))
            self.lab_slot.addWidget(controls)
        self.lab_slot.setCurrentWidget(controls)
        self.lab_slot.show()

    def _lab_changed(self, slide: Slide, values: dict) -> None:
        """A lab setting moved: the theory curve at once, the lab again after a short pause."""
        from visualizer.core.labs.params import theory_curve

        curve = theory_curve(slide.id, values)
        if curve is not None and hasattr(slide.widget, "set_theory"):
            slide.widget.set_theory(*curve, n=values["n"], k=values["k"])
            enlarge_text(slide.widget, self._text_pt)
        slide.error = ""
        self._pending_lab = (slide, values)
        self._lab_timer.start()

    def _rerun_lab(self) -> None:
        slide, values = self._pending_lab
        if self.slides[self.index] is slide:
            self._start(slide, values)

    @staticmethod
    def _kind(slide: Slide) -> str:
        return f"slide:{slide.id}"  # one kind per slide: stepping on never cancels a slide still running

    def _progress(self, _job_id: int, stage: str, fraction: float) -> None:
        slide = self.slides[self.index]
        if slide.id != LIVE and slide.widget is None and not slide.error:
            self.progress.setValue(int(1000 * fraction))
            self.waiting.setText(f"{slide.title}: {stage}")

    def toggle_play(self) -> None:
        self.play_button.toggle()

    def _set_playing(self, on: bool) -> None:
        self.play_button.setText("❚❚ Pause" if on else "▶ Play")
        self._play.start() if on else self._play.stop()

    # --- the control strip ---------------------------------------------------------------------
    def _go_live(self) -> None:
        if self.slides[self.index].id != LIVE and self.slides[0].id == LIVE:
            self.show_slide(0)

    def _live_caption(self) -> None:
        if self.slides[self.index].id != LIVE:
            return
        s = self.main.state
        if s.loaded is None:
            self.caption.setText("no model loaded: choose one in the strip below")
            return
        criterion = self.criterion_box.currentText()
        self.caption.setText(f"{s.loaded.ref} pruned by {criterion}: {self.main.pruning_panel.density_text()}. "
                             "Drag the density slider below; Space steps to the next slide.")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        from visualizer.ui.lecture.teaching import theme_manager

        self._play.stop()
        if not getattr(self, "_closed", False):  # a second close (window teardown) has nothing left
            self._closed = True
            for slide in self.slides:
                self.main.jobs.cancel(self._kind(slide))
            try:
                self.main.jobs.progress.disconnect(self._progress)
                self.main.state.masks_changed.disconnect(self._live_caption)
                self.main.state.model_changed.disconnect(self._live_caption)
            except (RuntimeError, TypeError):  # already gone with the window
                pass
            theme_manager().set_teaching(False)
        super().closeEvent(event)
