"""The live explainer: click a weight in the heatmap and see how the current criterion
scores it, step by step, on the loaded model and data at the current density (the numbers of
visualizer.core.lecture.explainers, computed in a job on a snapshot of the model)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from visualizer.ui.views import ViewSpec
from visualizer.ui.views.explainer import CriterionExplainerView


class ExplainerPanel(QWidget):
    """The explainer of the weight last clicked in the heatmap (Space / → next step,
    ← back); it explains nothing until a weight is picked."""

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.view = CriterionExplainerView(self)
        self.status = QLabel("click a weight in the mask heatmap to see how the criterion scores it")
        self.status.setWordWrap(True)
        self.back_button = QPushButton("◀ Back")
        self.next_button = QPushButton("Next step ▶")
        self.back_button.clicked.connect(self.view.retreat)
        self.next_button.clicked.connect(self.view.advance)
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.back_button)
        bar.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        for key, slot in (("Space", self.view.advance), ("Right", self.view.advance), ("Left", self.view.retreat)):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        heatmap = window.views.get("heatmap") if hasattr(window.views, "get") else None
        if heatmap is not None and hasattr(heatmap, "weight_picked"):
            heatmap.weight_picked.connect(self.explain)

    def explain(self, layer: str, index: tuple) -> None:
        """Explain weight ``layer[index]`` under the window's criterion and density, in a job."""
        from visualizer.core.lecture.explainers import live_explainer_job
        from visualizer.core.pruning.explain import EXPLAINED
        from visualizer.ui.shell.device_ui import job_device

        window = self.window
        criterion = window.pruning_panel.criterion_box.currentData()
        if criterion not in EXPLAINED:
            self.status.setText(f"{criterion} scores whole channels: pick an element criterion "
                                f"({', '.join(EXPLAINED)}) to explain one weight")
            return
        if window.state.loaded is None:
            return
        device = job_device(window)
        if device is None:
            return
        snap = window.state.capture(reads_data=True)
        ref, density = window.state.loaded.ref, window.state.density
        self.status.setText(f"explaining {layer}[{', '.join(map(str, index))}] by {criterion}…")
        self._bring_to_front()

        def done(result) -> None:
            self.view.set_result(result)
            self.status.setText(result.summary())

        window.jobs.submit(
            "explain", f"explain {layer}",
            lambda: live_explainer_job(criterion, snap.model, ref, snap.data, layer, index, density, device),
            on_result=done, on_error=self.status.setText, origin=snap.provenance)

    def _bring_to_front(self) -> None:
        dock = getattr(self.window, "docks", {}).get("explainer")
        if dock is not None:
            dock.show()
            dock.raise_()


VIEW = ViewSpec("explainer", "Explainer", ExplainerPanel,
                description="how the criterion scores the weight clicked in the heatmap, step by step")
