"""The lecture control strip: model, criterion and the density slider in one compact row, for
the screens that hide the panels (presentation mode, teaching mode), so a lecturer changes what
is shown without leaving them. It drives the workbench's own panels, so the window, the strip
and every view agree."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from visualizer.ui.panels.density import SLIDER_STEPS, density_to_slider, slider_to_density


class ControlStrip(QWidget):
    """Model, criterion, density of the main window ``main``; ``used`` fires on every change a
    person makes here (presentation mode goes back to its live slide then)."""

    used = Signal()

    def __init__(self, main, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from visualizer.core.models.zoo import ZOO
        from visualizer.core.pruning.criteria import CRITERIA

        self.main = main
        self.setObjectName("controlStrip")
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.model_box = QComboBox(self)
        self.model_box.addItems(list(ZOO))
        self.model_box.setToolTip("model")
        self.criterion_box = QComboBox(self)
        for cid, info in CRITERIA.items():
            self.criterion_box.addItem(info.title, cid)
        self.criterion_box.setToolTip("pruning criterion")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("presentationDensity")
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("density: the fraction of weights kept (log scale)")
        self.slider.setMinimumWidth(220)
        self.density_label = QLabel(self)
        for w, stretch in ((self.model_box, 0), (self.criterion_box, 0), (self.slider, 1),
                           (self.density_label, 0)):
            self.row.addWidget(w, stretch)
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the lecture keys always reach the window
        self.sync()
        self.model_box.activated.connect(lambda _i: self._choose_model())
        self.criterion_box.activated.connect(lambda _i: self._choose_criterion())
        self.slider.valueChanged.connect(self._slider_moved)
        main.state.masks_changed.connect(self.sync)
        main.state.model_changed.connect(self.sync)
        self.destroyed.connect(self._disconnect)

    def _disconnect(self) -> None:
        try:
            self.main.state.masks_changed.disconnect(self.sync)
            self.main.state.model_changed.disconnect(self.sync)
        except (RuntimeError, TypeError):  # already gone with the window
            pass

    def sync(self) -> None:
        """Show the workbench's model, criterion and density."""
        s = self.main.state
        ref = s.loaded.ref if s.loaded is not None else ""
        if ref and self.model_box.findText(ref) < 0:
            self.model_box.addItem(ref)
        self.model_box.setCurrentText(ref)
        idx = self.criterion_box.findData(self.main.pruning_panel.criterion_box.currentData())
        if idx >= 0:
            self.criterion_box.setCurrentIndex(idx)
        self.slider.blockSignals(True)
        self.slider.setValue(density_to_slider(s.density))
        self.slider.blockSignals(False)
        self.density_label.setText(f"{100 * s.density:.1f}% kept")

    def _choose_model(self) -> None:
        ref = self.model_box.currentText()
        if self.main.state.loaded is None or ref != self.main.state.loaded.ref:
            self.main.request_load(ref)
        self.used.emit()

    def _choose_criterion(self) -> None:
        self.main.pruning_panel.set_settings(criterion=self.criterion_box.currentData())
        self.used.emit()

    def _slider_moved(self, value: int) -> None:
        self.main.pruning_panel.set_density(slider_to_density(value))
        self.used.emit()
