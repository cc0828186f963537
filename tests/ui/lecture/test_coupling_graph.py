"""The coupling slide shows its group on the app's graph view: exactly core's layers highlighted,
each node's reason written under it, legible on a projector."""

import pytest
from PySide6.QtWidgets import QApplication

from visualizer.ui.lecture.legibility import problems
from visualizer.ui.lecture.presentation import Presentation
from visualizer.ui.lecture.presets import run_preset


@pytest.fixture(scope="module")
def coupling():
    QApplication.instance() or QApplication([])
    view, result = run_preset("explain-coupling")
    view.deleteLater()
    return result


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_the_coupling_slide_highlights_the_groups_layers_on_the_graph(qtbot, window, coupling, size):
    show = Presentation(window, deck=["explain-coupling"])
    qtbot.addWidget(show)
    show.resize(*size)
    show.show()
    qtbot.waitExposed(show)
    show.install_result(show.slides[1], coupling)
    show.show_slide(1)
    view = show.stack.currentWidget()
    graph = view.graph
    qtbot.waitUntil(lambda: bool(graph.drawn_texts()), timeout=5000)
    assert graph.isVisible() and view.shown == 1  # the graph from the first step on
    core_layers = {m.param.rsplit(".", 1)[0] for m in coupling.group.members if coupling.unit in m.units}
    assert graph.highlighted_layers() == core_layers  # exactly the group, the adds only labelled
    drawn = [text for text, _ in graph.drawn_texts()]
    for key, why in coupling.tags.items():  # every node readable: its title and its reason drawn
        assert graph.hierarchy.nodes[key].title() in drawn and why in drawn, key
    while show.index == 1 and view.shown < view.total:  # Space to the shapes and heatmaps
        show.next()
    QApplication.processEvents()
    assert graph.isVisible() and problems(view, show.caption) == []
    show.close()
