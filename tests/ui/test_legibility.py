"""Legibility is a tested property: every preset's slide, at 1280x720 and 1920x1080, has no text
under 60% of the caption's height, no two texts overlapping and no SI multiplier on an axis,
read off the items' scene geometry (visualizer.ui.lecture.legibility)."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from visualizer.ui.lecture.legibility import problems, texts
from visualizer.ui.lecture.presentation import Presentation
from visualizer.ui.lecture.presets import PRESETS, run_preset

# each preset at settings that finish in seconds: legibility is about the drawing, not the numbers
FAST = {"lth": dict(rounds=2, epochs=1), "spectrum": dict(top_k=2, probes=2, taus=(0, 10)),
        "densenet": dict(lam=1.0, epochs=4, finetune_epochs=1), "density-law": dict(rounds=3, steps=2),
        "random-labels": dict(rounds=1, epochs=1), "mask-probability": dict(trials=5000),
        "phase-transition": dict(trials=2), "a-optimal": dict(trials=6),
        "sensitivity": dict(levels=(0.5, 0.1)), "explain-masked-speed": dict(model="lenet", repeats=2),
        **{f"explain-{c}": dict(model="mlp") for c in ("magnitude", "snip", "grasp", "taylor", "obd", "wanda")}}


@pytest.fixture(scope="module")
def runs():
    """Each preset's final result, and the first and last figure it streamed while it ran."""
    QApplication.instance() or QApplication([])
    out, partials = {}, {}
    for pid in PRESETS:
        figures = []
        view, out[pid] = run_preset(pid, on_step=lambda step, figures=figures: Presentation.is_figure(
            step.partial) and figures.append(step.partial), **FAST.get(pid, {}))
        partials[pid] = figures[:1] + figures[1:][-1:]
        view.deleteLater()
    return out, partials


@pytest.fixture(scope="module")
def results(runs):
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_every_slide_is_legible(qtbot, window, results, size):
    show = Presentation(window, deck=list(PRESETS))
    qtbot.addWidget(show)
    show.resize(*size)
    show.show()
    qtbot.waitExposed(show)
    found = {}
    for i, pid in enumerate(PRESETS, start=1):
        show.install_result(show.slides[i], results[pid])
        show.show_slide(i)
        while show.index == i and getattr(show.stack.currentWidget(), "shown", 0) < getattr(
                show.stack.currentWidget(), "total", 0):  # an explainer: Space to its last step
            show.next()
        for _ in range(5):
            QApplication.processEvents()
        assert texts(show.stack.currentWidget()), pid  # the checker sees the slide's texts
        found[pid] = problems(show.stack.currentWidget(), show.caption)
    assert {pid: p for pid, p in found.items() if p} == {}
    show.close()


def test_the_checker_finds_small_overlapping_and_scaled_text(qtbot):
    root = QWidget()
    qtbot.addWidget(root)
    caption = QLabel("caption")
    caption.setStyleSheet("font-size: 24pt")
    canvas = pg.GraphicsLayoutWidget()
    plot = canvas.addPlot(title="a title")
    plot.setLabel("left", "accuracy")
    plot.plot([0, 1], [0.0005, 0.0009])
    for text in ("tiny", "tiny too"):
        item = pg.TextItem(text, anchor=(0, 0))
        item.setPos(0.5, 0.0007)
        plot.addItem(item)
    layout = QVBoxLayout(root)
    layout.addWidget(canvas)
    layout.addWidget(caption)
    root.resize(800, 600)
    root.show()
    qtbot.waitExposed(root)
    QApplication.processEvents()
    found = problems(root, caption)
    assert any("'tiny' is" in p for p in found)
    assert any("overlaps" in p and "'tiny'" in p and "'tiny too'" in p for p in found)
    assert any("left axis 'accuracy' scaled by" in p for p in found)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_every_slide_is_legible_while_it_fills(qtbot, window, runs, size):
    """A computing slide shows its figure so far: that one is read from the back row too."""
    partials = runs[1]
    streaming = [pid for pid in PRESETS if partials[pid]]
    assert {"spectrum", "density-law", "time-to-train", "snip-vs-magnitude", "explain-coupling", "random-labels",
            "explain-masked-speed", *(f"explain-{c}" for c in ("magnitude", "snip", "grasp", "taylor", "obd",
                                                               "wanda"))} <= set(streaming)
    found = {}
    for n in (0, -1):  # the first figure streamed and the last before the result
        show = Presentation(window, deck=streaming)
        qtbot.addWidget(show)
        show.resize(*size)
        show.show()
        qtbot.waitExposed(show)
        for i, pid in enumerate(streaming, start=1):
            show.install_partial(show.slides[i], partials[pid][n])
            show.index = i
            show.stack.setCurrentWidget(show.slides[i].widget)
            for _ in range(5):
                QApplication.processEvents()
            found[(pid, n)] = problems(show.stack.currentWidget(), show.caption)
        show.close()
    assert {key: p for key, p in found.items() if p} == {}
