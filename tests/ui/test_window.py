"""The window driven as a user would: slider, keyboard, layer list."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.ui.conftest import wait_idle
from visualizer.ui.panels.density import density_to_slider, slider_to_density
from visualizer.ui.views import render


def test_slider_updates_heatmap_and_density_label(qtbot, window):
    panel = window.pruning_panel
    wait_idle(qtbot, window)
    assert window.state.current_ranking() is not None
    panel.slider.setValue(density_to_slider(0.1))  # as a drag would: valueChanged with tracking
    d = slider_to_density(panel.slider.value())
    masks = window.state.masks
    total = masks.total()
    assert masks.kept() == int(d * total) or abs(masks.kept() - d * total) <= len(masks)
    assert f"{masks.kept():,}" in panel.density_text()
    assert f"{masks.density():.2%}" in panel.density_text()
    view = window.views["heatmap"]
    name = window.state.selected
    img = view.image_array()
    pruned_pixels = int((img == render.PRUNED).sum())
    layer_mask = masks[name]
    assert pruned_pixels == int((~layer_mask).sum())


def test_keyboard_steps_the_slider(qtbot, window):
    panel = window.pruning_panel
    panel.slider.setFocus()
    before = window.state.masks.kept()
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageDown)
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageDown)
    assert panel.slider.value() == 2 * panel.slider.pageStep()
    assert window.state.masks.kept() < before
    assert abs(window.state.density - slider_to_density(200)) < 1e-12


def test_layer_tree_click_selects_and_shows_density(qtbot, window):
    from PySide6.QtCore import Qt as _Qt

    panel = window.model_panel
    window.pruning_panel.set_density(0.1)
    item = panel._items["fc2.weight"]
    rect = panel.tree.visualItemRect(item)
    qtbot.mouseClick(panel.tree.viewport(), _Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.state.selected == "fc2.weight"
    # the heatmap draws the new layer on the next event-loop pass
    qtbot.waitUntil(lambda: window.views["heatmap"].title.text().startswith("<b>fc2.weight</b>"), timeout=2000)
    kept, total = window.state.layer_kept["fc2.weight"], window.state.layer_total["fc2.weight"]
    assert kept == int(window.state.masks["fc2.weight"].sum())
    assert panel.layer_density_text("fc2.weight") == f"{kept / total:.3f}"
    fc = panel._groups["fc2"][0]  # module group row: aggregated over its prunable weights
    assert fc.text(1) == f"{kept / total:.3f}"
    # sort by density: the sparsest layer row first
    panel.tree.sortByColumn(1, _Qt.SortOrder.AscendingOrder)
    firsts = [panel.tree.topLevelItem(i).text(1) for i in range(panel.tree.topLevelItemCount())]
    assert [float(x) for x in firsts] == sorted(float(x) for x in firsts)


def test_no_stale_dock_tab_bar_is_drawn(qtbot, window):
    """Every dock title shows in exactly one visible tab bar, also after floating a view and
    docking it back (Qt 6.12 left a retired bar drawn over the status bar)."""
    from PySide6.QtWidgets import QTabBar

    def titles():
        bars = [b for b in window.findChildren(QTabBar) if b.parent() is window and b.isVisible()]
        return [b.tabText(i) for b in bars for i in range(b.count())]

    qtbot.waitUntil(lambda: len(titles()) == len(set(titles())), timeout=2000)
    assert "Mask heatmap" in titles()
    dock = window.docks["curves"]
    dock.setFloating(True)
    dock.setFloating(False)
    qtbot.waitUntil(lambda: len(titles()) == len(set(titles())), timeout=2000)


def test_hidden_graph_tab_draws_when_first_shown(qtbot, window):
    """The graph of a freshly loaded model is traced in the background but drawn only when its
    tab comes to the front (drawing is GUI-thread work the heatmap user should not wait for)."""
    panel = window.views["graph"]
    qtbot.waitUntil(lambda: panel.result is not None and not window.jobs.is_running(), timeout=20000)
    assert not panel.on_screen() and panel.view.graph is None
    window.docks["graph"].raise_()
    qtbot.waitUntil(lambda: panel.view.graph is not None, timeout=3000)
    assert panel.view.graph.number_of_nodes() == panel.result.graph.number_of_nodes()


def test_window_module_leaves_slow_optional_imports_to_the_jobs():
    """Start-up imports only what the first window needs: networkx (~200 ms here) and scipy come
    in with the first graph layout or spectrum, in a worker."""
    import os
    import subprocess
    import sys

    code = ("import sys; import visualizer.ui.shell.window; "
            "print(sorted(m for m in ('networkx', 'scipy', 'sympy') if m in sys.modules))")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_analysis_views_are_built_when_their_tab_comes_to_the_front(qtbot, window):
    """Tabs nobody opened cost neither start-up nor a graph trace per load; bringing one to the
    front (a click on its tab) builds it, themed, and it computes for the loaded model."""
    from visualizer.ui.lecture.teaching import theme_manager
    from visualizer.ui.views.docks import GraphPanel

    assert {"graph", "spectrum", "landscape"} <= window.views.pending
    assert not window.findChildren(GraphPanel)
    assert not window.jobs.is_running("analysis-graph")
    window.docks["graph"].raise_()  # what clicking the tab does
    qtbot.waitUntil(lambda: "graph" not in window.views.pending, timeout=3000)
    panel = window.docks["graph"].widget()
    assert isinstance(panel, GraphPanel) and window.views["graph"] is panel
    assert panel.view.theme == theme_manager().theme()
    wait_idle(qtbot, window)
    assert panel.result is not None and panel.result.graph.number_of_nodes() > 0
    assert "spectrum" in window.views.pending  # still behind its tab


def test_asking_for_a_deferred_view_builds_it(qtbot, window):
    panel = window.views.get("densenet")  # builds it, and the graph panel it listens to
    assert panel is window.docks["densenet"].widget()
    assert "densenet" not in window.views.pending and "graph" not in window.views.pending
    assert "missing" not in window.views and window.views.get("missing") is None


def test_graph_shows_the_selection_on_the_new_models_graph(qtbot, window, monkeypatch):
    """After a model change the selection is marked on the new model's graph once it arrives,
    never on a node of the old graph still on screen while the trace runs."""
    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not None and panel.view.selected is not None, timeout=5000)
    assert panel.view.selected == window.state.selected.rsplit(".", 1)[0]
    old_graph = panel.view.graph
    marked = []
    monkeypatch.setattr(panel.view, "select_layer", lambda layer: marked.append((panel.view.graph, layer)))
    window.request_load("mlp")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not old_graph, timeout=5000)
    assert window.state.loaded.ref == "mlp" and marked
    assert all(graph is not old_graph for graph, _ in marked)  # never on lenet's graph
    assert marked[-1][1] == window.state.selected.rsplit(".", 1)[0]


def test_graph_nodes_follow_the_slider_and_a_new_model(qtbot, window):
    """Node colours are the layers' densities: after a slider move, and after a model change
    (drawn with the new graph, not first on the old one)."""
    from visualizer.ui.panels.density import density_to_slider

    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not None, timeout=5000)

    def shown(layer: str) -> float:
        return panel.view.value_of(layer)

    window.pruning_panel.slider.setValue(density_to_slider(0.2))
    wait_idle(qtbot, window)
    masks = window.state.masks
    expected = {ld.name: ld.density for ld in masks.layers()}["fc1.weight"]
    qtbot.waitUntil(lambda: shown("fc1") == pytest.approx(expected), timeout=3000)
    assert shown("fc1") < 1.0
    old_graph = panel.view.graph
    window.request_load("mlp")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not old_graph, timeout=5000)
    assert all(shown(layer) == 1.0 for layer in ("fc1", "fc2", "fc3"))  # the new model is dense


def test_layer_list_follows_a_drag_at_a_bounded_rate(qtbot, window, monkeypatch):
    """A drag's many density changes refresh the layer list at once and then at most every
    TREE_REFRESH_MS; it always ends on the last density (the heatmap follows every step)."""
    from visualizer.ui.panels import model_panel as panels_mod

    panel = window.model_panel
    calls = []
    real = panel._update_densities
    wait_idle(qtbot, window)
    qtbot.wait(3 * panels_mod.TREE_REFRESH_MS)  # the load's refresh and its cool-down are over
    monkeypatch.setattr(panel, "_update_densities", lambda: (calls.append(1), real())[1])
    for d in np.geomspace(0.9, 0.05, 12):  # twelve steps within one cool-down
        window.pruning_panel.set_density(float(d))
    assert len(calls) == 1
    kept, total = window.state.layer_kept["fc2.weight"], window.state.layer_total["fc2.weight"]
    qtbot.waitUntil(lambda: panel._items["fc2.weight"].text(1) == f"{kept / total:.3f}", timeout=2000)
    assert len(calls) == 2


def test_graph_panel_does_not_keep_a_replaced_model_alive(qtbot, window):
    import gc
    import weakref

    window.docks["graph"].raise_()
    panel = window.views["graph"]
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.view.graph is not None, timeout=5000)
    old = weakref.ref(window.state.loaded.model)
    window.docks["heatmap"].raise_()  # the Graph tab hidden: the new graph is not drawn yet
    window.request_load("mlp")
    wait_idle(qtbot, window)
    gc.collect()
    assert old() is None


def test_the_window_fits_a_1280x720_projector(window):
    """Stacked at full height the panels made the minimum 1029x770: taller than the screen."""
    hint = window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720 - 40, hint  # 40 px for a task bar
    assert window.width() <= window.screen().availableGeometry().width()


def test_tests_never_touch_the_users_settings(tmp_path):
    """The autouse fixture points QSettings at tmp: settings() must honour it (the (org, app)
    constructor ignored the default format and wrote to ~/.config)."""
    from visualizer.ui.shell.settings import settings

    assert settings().fileName().startswith(str(tmp_path)), settings().fileName()


def test_dock_tabs_show_whole_titles_on_a_projector(qtbot, window):
    """At 1280x720 Qt elided the nine view tabs to 'G…', 'S…', 'L…'; they scroll instead,
    also for the tab group Qt makes anew after a view is floated and docked back."""
    from PySide6.QtWidgets import QTabBar

    window.resize(1216, 684)
    dock = window.docks["speed"]
    dock.setFloating(True)
    dock.setFloating(False)
    qtbot.wait(50)

    def clipped() -> list[str]:
        bars = [b for b in window.findChildren(QTabBar) if b.parent() is window and b.isVisible()]
        return [b.tabText(i) for b in bars for i in range(b.count())
                if b.tabRect(i).width() < b.fontMetrics().horizontalAdvance(b.tabText(i))]

    qtbot.waitUntil(lambda: not clipped(), timeout=2000)


def test_a_wider_window_widens_the_views_not_a_blank_band(qtbot, window):
    """The empty central widget took every pixel a resize added: maximized, or full screen in
    teaching mode, a blank band ~500 px wide sat between the panels and the views (Xvfb
    1920x1080, F11). The panel column keeps its width; the views take the rest."""
    window.resize(1216, 684)
    qtbot.wait(50)
    column = window.docks["model"].width()
    window.resize(1900, 1000)
    model, views = window.docks["model"], window.docks["overview"]
    # no band, and the column not shared out equally either (QMainWindow's way without one)
    qtbot.waitUntil(lambda: views.x() - model.geometry().right() < 20
                    and model.width() <= column + 20, timeout=2000)
    assert views.geometry().right() >= window.width() - 5


def test_a_model_just_loaded_is_not_an_unsaved_change(qtbot, window):
    """The ranking applied after every load marked the session dirty: the title read
    'untitled* — lenet' at start and quitting at once asked to save (Xvfb)."""
    assert not window.state.dirty and "*" not in window.windowTitle()
    window.pruning_panel.set_density(0.5)
    wait_idle(qtbot, window)
    assert window.state.dirty and "*" in window.windowTitle()


def test_a_restored_layout_shows_the_density_slider(qtbot, window):
    """A layout saved on a large screen, restored in a 1280x720 window, left the pruning panel
    a few rows tall: the density slider was scrolled out of sight (Xvfb)."""
    from visualizer.ui.shell.settings import settings
    from visualizer.ui.shell.window import MainWindow

    window.resize(1216, 684)
    qtbot.wait(50)
    window.resizeDocks([window.docks["model"], window.docks["pruning"]], [520, 120], Qt.Orientation.Vertical)
    qtbot.wait(50)
    assert window.docks["pruning"].height() < window.pruning_panel.sizeHint().height()
    settings().setValue("windowState", window.saveState())
    settings().setValue("geometry", window.saveGeometry())
    again = MainWindow(restore_layout=True)
    qtbot.addWidget(again)
    again.show()
    want = again.pruning_panel.sizeHint().height()
    qtbot.waitUntil(lambda: again.docks["pruning"].height() >= want, timeout=2000)
    again.jobs.shutdown(1.0)


def test_the_panel_column_leaves_the_views_most_of_a_1280_screen(window):
    """The Data row on one line made the panels' natural width ~620 px, half of a 1280 screen."""
    assert window.model_panel.sizeHint().width() <= 520
