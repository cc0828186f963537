"""Presentation mode: nothing clipped at projector sizes, the deck steps with the keyboard, a
finished slide comes back at once, and the control strip drives the workbench."""

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QWidget

from tests.ui.conftest import wait_idle
from visualizer.ui.lecture.presentation import LIVE, Presentation
from visualizer.ui.panels.density import density_to_slider as value_of
from visualizer.ui.panels.density import slider_to_density as density_of


def _visible_children(root: QWidget) -> list[QWidget]:
    return [w for w in root.findChildren(QWidget) if w.isVisibleTo(root) and QWidget.window(w) is root]


def _clipped(root: QWidget) -> list[str]:
    """Visible widgets that stick out of the window, and texts wider than their widget (after
    the layout has settled: it runs on the event loop)."""
    from PySide6.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()
    bad = []
    frame = QRect(QPoint(0, 0), root.size())
    for w in _visible_children(root):
        rect = QRect(w.mapTo(root, QPoint(0, 0)), w.size())
        if not frame.contains(rect):
            bad.append(f"{type(w).__name__} {w.objectName()!r} at {rect} outside {frame}")
        text = w.text() if isinstance(w, (QLabel, QAbstractButton)) else \
            w.currentText() if isinstance(w, QComboBox) else ""
        if not text or (isinstance(w, QLabel) and w.wordWrap()):
            if isinstance(w, QLabel) and w.wordWrap() and text:
                need = w.heightForWidth(w.width())
                if need > w.height() + 2:
                    bad.append(f"label {w.objectName()!r} needs {need} px, has {w.height()}")
            continue
        if isinstance(w, QAbstractButton):  # the style's own padding is in the size hint
            if w.width() < w.sizeHint().width():
                bad.append(f"button {text!r} is {w.width()} px wide, needs {w.sizeHint().width()}")
            continue
        width = QFontMetrics(w.font()).horizontalAdvance(text)
        room = w.contentsRect().width() - (28 if isinstance(w, QComboBox) else 0)
        if width > room + 1:
            bad.append(f"{type(w).__name__} text {text!r} is {width} px in {room} px")
    return bad


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_nothing_is_clipped_at_projector_sizes(qtbot, window, size, scheme):
    show = Presentation(window, deck=["snip-vs-magnitude"], scheme=scheme)
    qtbot.addWidget(show)
    show.resize(*size)
    show.show()
    qtbot.waitExposed(show)
    assert show.size().width() == size[0] and show.size().height() == size[1]
    assert _clipped(show) == []
    # the live slide's heatmap fills most of the screen; caption and strip are large type
    assert show.stack.height() > 0.6 * size[1]
    assert show.caption.font().pointSizeF() >= 17 * size[1] / 1080
    assert show.slider.width() >= 200  # a density slider one can hit from the lectern
    import pyqtgraph as pg

    axes = [i for v in show.slides[0].widget.findChildren(pg.GraphicsView) for i in v.scene().items()
            if isinstance(i, pg.AxisItem)]
    assert axes and all(a.style["tickFont"].pointSizeF() >= 10 * size[1] / 1080 for a in axes)
    show.next()  # the preset slide while it computes, then when it is shown
    assert _clipped(show) == []
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=60000)
    assert show.stack.currentWidget() is show.slides[1].widget
    assert _clipped(show) == []
    assert show.caption.font().pointSizeF() >= 17 * size[1] / 1080  # a new view kept the sizes
    show.close()


def test_keys_step_the_deck_and_a_finished_slide_comes_back_at_once(qtbot, window):
    show = Presentation(window, deck=["snip-vs-magnitude"])
    qtbot.addWidget(show)
    show.resize(1280, 720)
    show.show()
    qtbot.waitExposed(show)
    assert show.slides[show.index].id == LIVE
    qtbot.keyClick(show, Qt.Key.Key_Space)
    assert show.slides[show.index].id == "snip-vs-magnitude"
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=60000)
    assert "SNIP" in show.caption.text() or "magnitude" in show.caption.text()
    qtbot.keyClick(show, Qt.Key.Key_Left)
    assert show.slides[show.index].id == LIVE and show.stack.currentWidget() is show.slides[0].widget
    submitted = []
    window.jobs.started.connect(lambda _id, kind, _t: submitted.append(kind))
    qtbot.keyClick(show, Qt.Key.Key_Right)
    assert show.stack.currentWidget() is show.slides[1].widget  # instant: no job ran again
    assert submitted == []
    qtbot.keyClick(show, Qt.Key.Key_Right)  # wraps around to the first slide
    assert show.index == 0
    show.close()


def test_the_strip_drives_the_workbench(qtbot, window):
    show = Presentation(window, deck=[])
    qtbot.addWidget(show)
    show.show()
    wait_idle(qtbot, window)
    show.slider.setValue(value_of(0.05))
    assert window.state.density == pytest.approx(density_of(value_of(0.05)))
    assert abs(window.state.density - 0.05) < 0.002
    assert "5.0% kept" in show.density_label.text() or "4.9% kept" in show.density_label.text()
    assert window.state.loaded.ref in show.caption.text()
    index = show.criterion_box.findData("random")
    show.criterion_box.setCurrentIndex(index)
    show.criterion_box.activated.emit(index)
    assert window.pruning_panel.criterion_box.currentData() == "random"
    show.close()


def test_an_unknown_preset_in_a_deck_is_refused(window):
    with pytest.raises(ValueError, match="nope"):
        Presentation(window, deck=["nope"])


def test_the_presets_menu_opens_a_slide(qtbot, window):
    window.populate_presets()
    titles = [a.text() for a in window.presets_menu.actions()]
    assert titles[0] == "Present all (deck)"
    show = window.open_presentation("density-law")
    qtbot.addWidget(show)
    assert show.slides[show.index].id == "density-law"
    show.close()


def test_a_preset_slide_opens_at_the_screens_size(qtbot, window):
    """Without a window manager to maximize it (a bare X server) the slide window opened at its
    size hint, 1057x275, with the figure squeezed to a 40 px strip."""
    show = window.open_presentation("density-law")
    qtbot.addWidget(show)
    room = window.screen().availableGeometry()
    assert show.width() >= 0.9 * room.width() and show.height() >= 0.9 * room.height()
    show.close()


def test_slides_run_on_the_windows_device(qtbot, window, monkeypatch):
    """A slide's preset runs on the device chosen in the status bar, like every other job."""
    import dataclasses

    from visualizer.ui.lecture import presets

    seen = []
    real = presets.PRESETS["density-law"]

    def job(**options):
        seen.append(options.get("device"))
        return (yield from real.job(rounds=2, steps=2, **options))

    monkeypatch.setitem(presets.PRESETS, "density-law", dataclasses.replace(real, job=job))
    window.state.device = "cpu"
    show = Presentation(window, deck=["density-law"])
    qtbot.addWidget(show)
    show.next()
    qtbot.waitUntil(lambda: show.slides[1].widget is not None, timeout=60000)
    assert seen == ["cpu"]
    window.state.device = "cuda:7"  # not there: one line in the status bar, nothing runs
    show2 = Presentation(window, deck=["lth"])
    qtbot.addWidget(show2)
    show2.next()
    assert not window.jobs.is_running("slide:lth")
    show.close()
    show2.close()


def test_every_model_preset_takes_a_device():
    import inspect

    from visualizer.ui.lecture.presets import PRESETS

    for preset in PRESETS.values():
        params = inspect.signature(preset.job).parameters
        assert "device" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()), preset.id


def test_a_lab_slide_fills_in_and_its_settings_sit_in_the_strip(qtbot, window):
    """The lab's figure is up before its job ends (the points stream in); its settings are in the
    strip, and a change re-runs the slide with them; other slides hide them."""
    show = Presentation(window, deck=["snip-vs-magnitude", "mask-probability"])
    qtbot.addWidget(show)
    show.resize(1280, 720)
    show.show()
    qtbot.waitExposed(show)
    assert show.lab_slot.isHidden()
    show.show_slide(2)
    slide = show.slides[2]
    assert slide.widget is not None and show.stack.currentWidget() is slide.widget  # not the waiting page
    assert not show.lab_slot.isHidden()
    controls = show.lab_controls["mask-probability"]
    qtbot.waitUntil(lambda: slide.caption != "", timeout=60000)
    controls.boxes["k"].setValue(3)
    assert slide.widget.data["k"] == 3 and slide.widget.data["trials"] == 0  # the theory curve at once
    qtbot.waitUntil(lambda: slide.widget.data["trials"] > 0, timeout=60000)
    assert slide.widget.data["k"] == 3
    assert _clipped(show) == []
    assert show.minimumSizeHint().width() <= 1280  # the settings never widen the window past the screen
    show.show_slide(1)
    assert show.lab_slot.isHidden()
    show.close()


def test_a_group_lasso_slide_shows_the_starting_circuit_while_it_trains(qtbot, window, monkeypatch):
    """The DenseNet slide was blank while its group lasso ran: it shows the connections before
    the penalty at once, and the after side when the job ends."""
    import dataclasses

    from visualizer.ui.lecture import presets

    real = presets.PRESETS["densenet"]
    monkeypatch.setitem(presets.PRESETS, "densenet", dataclasses.replace(
        real, job=lambda **o: real.job(lam=1.0, epochs=4, finetune_epochs=1, **o)))
    show = Presentation(window, deck=["densenet"])
    qtbot.addWidget(show)
    shown_before_the_end = []
    window.jobs.progress.connect(lambda *_: shown_before_the_end.append(
        show.slides[1].widget is not None and show.stack.currentWidget() is show.slides[1].widget
        and not show.slides[1].caption))
    show.next()
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=120000)
    assert any(shown_before_the_end)  # the figure was up while the job still ran
    show.close()


def test_the_lottery_ticket_slide_draws_each_round_as_it_finishes(qtbot, window, monkeypatch):
    import dataclasses

    from visualizer.ui.lecture import presets

    real = presets.PRESETS["lth"]
    monkeypatch.setitem(presets.PRESETS, "lth", dataclasses.replace(
        real, job=lambda **o: real.job(rounds=2, epochs=1, **o)))
    show = Presentation(window, deck=["lth"])
    qtbot.addWidget(show)
    drawn = []
    show.next()
    view = show.slides[1].widget
    assert view is not None and show.stack.currentWidget() is view  # up before any round ends
    original = view.set_figure
    view.set_figure = lambda fig: (drawn.append(len(fig.lines[0].x) if fig.lines else 0), original(fig))
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=120000)
    assert drawn[0] < drawn[-1]  # the curve grew point by point
    show.close()


def test_the_sensitivity_slide_draws_each_unit_as_it_finishes(qtbot, window, monkeypatch):
    import dataclasses

    from visualizer.ui.lecture import presets

    real = presets.PRESETS["sensitivity"]
    monkeypatch.setitem(presets.PRESETS, "sensitivity", dataclasses.replace(
        real, job=lambda **o: real.job(levels=(0.5, 0.1), **o)))
    show = Presentation(window, deck=["sensitivity"])
    qtbot.addWidget(show)
    show.next()
    view = show.slides[1].widget
    assert view is not None and show.stack.currentWidget() is view
    curves = []
    original = view.set_figure
    view.set_figure = lambda fig: (curves.append(len(fig.lines)), original(fig))
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=120000)
    assert curves[0] < curves[-1]  # unit after unit
    show.close()
