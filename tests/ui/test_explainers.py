"""The explainer slides: Space reveals one step at a time, then the slide turns; the numbers
shown are the explanation's."""

from PySide6.QtCore import Qt

from visualizer.ui.lecture.presentation import Presentation


def test_space_steps_through_a_criterion_explainer_then_turns_the_slide(qtbot, window):
    show = Presentation(window, deck=["explain-snip", "mask-probability"])
    qtbot.addWidget(show)
    show.resize(1280, 720)
    show.show()
    qtbot.waitExposed(show)
    show.show_slide(1)
    qtbot.waitUntil(lambda: show.slides[1].widget is not None, timeout=60000)
    view = show.slides[1].widget
    e = view.result.explanation
    assert view.shown == 1 and not view.canvas.isVisible()
    steps = view.total
    for i in range(2, steps + 1):
        qtbot.keyClick(show, Qt.Key.Key_Space)
        assert show.index == 1 and view.shown == i
    assert view.canvas.isVisible()  # the layer's histogram with the cut, last
    text = view.text.text()
    assert e.substituted.split("=")[-1].strip() in text and f"rank {e.rank}" in text
    qtbot.keyClick(show, Qt.Key.Key_Left)  # back one step, not one slide
    assert show.index == 1 and view.shown == steps - 1
    qtbot.keyClick(show, Qt.Key.Key_Space)
    qtbot.keyClick(show, Qt.Key.Key_Space)  # everything shown: the next slide
    assert show.index == 2
    show.close()


def test_coupling_slide_lists_the_reasons_then_the_shapes(qtbot):
    from visualizer.ui.lecture.presets import run_preset

    view, r = run_preset("explain-coupling")
    qtbot.addWidget(view)
    view.show_all()
    text = view.text.text()
    assert "residual add" in text and "→" in text
    assert all(s["param"] in text for s in r.shapes if len(s["before"]) >= 2)
