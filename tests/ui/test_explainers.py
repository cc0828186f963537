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
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=60000)  # done (it streams: up at once)
    view = show.slides[1].widget
    e = view.result.explanation
    assert view.shown == 1 and not view.canvas.isVisible()
    steps = view.total
    for i in range(2, steps + 1):
        qtbot.keyClick(show, Qt.Key.Key_Space)
        assert show.index == 1 and view.shown == i
    assert view.canvas.isVisible()  # the layer's histogram with the cut, last
    from PySide6.QtCore import QPoint

    corner = view.scroll.mapTo(show, QPoint(view.scroll.width() - 4, view.scroll.height() - 4))
    image = show.grab().toImage()  # the steps sit on the slide's background (not a grey panel)
    assert image.pixelColor(corner) == image.pixelColor(QPoint(3, show.height() // 2))
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

    view, r = run_preset("explain-coupling", unit=3)
    qtbot.addWidget(view)
    assert r.unit == 3 and all(m["index"] is not None for m in r.members)
    view.show_all()
    text = view.text.text()
    assert "residual add" in text and "→" in text
    assert not view.canvas.isHidden() and r.pictures  # the layers' heatmaps with the slice marked
    for pic in r.pictures:
        kind, first, end = pic["span"]
        size = pic["image"].shape[0 if kind == "row" else 1]
        assert 0 <= first < end <= size
    assert all(s["param"] in text for s in r.shapes if len(s["before"]) >= 2)


def test_clicking_a_weight_in_the_heatmap_explains_it_live(qtbot, window):
    """The lecturer clicks one weight of the loaded model: the explainer shows how the
    current criterion scores that weight, with the window's density."""
    from PySide6.QtCore import QPointF

    from tests.ui.conftest import wait_idle

    window.pruning_panel.set_settings(criterion="snip")
    wait_idle(qtbot, window)
    heat = window.views["heatmap"]
    window.docks["heatmap"].show()
    window.docks["heatmap"].raise_()
    window.state.select("fc2.weight")
    qtbot.waitUntil(lambda: heat.weight_at(3, 5) is not None, timeout=10000)
    target = heat.weight_at(3, 5)
    view_box = heat.plot.getViewBox()
    scene = view_box.mapViewToScene(QPointF(5.5, 3.5))
    at = heat.canvas.mapFromScene(scene)
    qtbot.mouseClick(heat.canvas.viewport(), Qt.MouseButton.LeftButton, pos=at)
    panel = window.views["explainer"]
    qtbot.waitUntil(lambda: panel.view.result is not None, timeout=60000)
    e = panel.view.result.explanation
    assert (e.layer, e.index, e.criterion) == ("fc2.weight", target, "snip")
    assert e.density == window.state.density
    assert "fc2.weight" in panel.status.text()


def test_the_coupling_slide_takes_a_channel_from_the_strip(qtbot, window):
    show = Presentation(window, deck=["explain-coupling"])
    qtbot.addWidget(show)
    show.resize(1280, 720)
    show.show()
    show.show_slide(1)
    qtbot.waitUntil(lambda: show.slides[1].caption != "", timeout=60000)
    controls = show.lab_controls["explain-coupling"]
    controls.boxes["unit"].setValue(5)
    qtbot.waitUntil(lambda: show.slides[1].widget.result.unit == 5 and show.slides[1].widget.result.complete,
                    timeout=60000)
    show.close()
