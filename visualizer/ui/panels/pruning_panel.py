"""The Pruning panel: criterion, scope, structure and the log density slider."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from visualizer.core.pruning.allocation import ALLOCATION_TITLES
from visualizer.core.pruning.criteria import CRITERIA
from visualizer.ui.panels.data_box import NEEDS_DATA
from visualizer.ui.panels.density import (
    MIN_DENSITY,
    SLIDER_STEPS,
    DensitySlider,
    density_to_slider,
    slider_to_density,
)


class PruningPanel(QWidget):
    """Criterion, scope, structure and the density slider (log scale)."""

    ranking_requested = Signal()  # criterion / scope / structure changed
    density_changed = Signal(float)

    def __init__(self, state) -> None:
        super().__init__()
        self.state = state
        self._updating = False
        self.criterion_box = QComboBox()
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.explanation.setTextFormat(Qt.TextFormat.RichText)
        self.explanation.setMinimumHeight(60)
        self.scope_box = QComboBox()
        self.scope_box.addItem("global (one threshold for all layers)", "global")
        self.scope_box.addItem("per layer (same density in every layer)", "layer")
        self._fill_allocations()
        self.structure_box = QComboBox()
        self.structure_box.addItem("unstructured (single weights)", "unstructured")
        self.structure_box.addItem("channel (whole output channels)", "channel")
        self._fill_criteria()

        self.slider = DensitySlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setSingleStep(10)  # arrow key: x 0.933
        self.slider.setPageStep(100)  # PageUp/Down: about a factor 2
        self.slider.setTracking(True)
        self.slider.setToolTip("Density on a log scale: 100% (left) to 0.1% (right).\n"
                               "Arrow keys step finely; PageDown halves, PageUp doubles; Home/End: 100% / 0.1%.")
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(MIN_DENSITY * 100, 100.0)
        self.spin.setDecimals(2)
        self.spin.setSuffix(" %")
        self.spin.setKeyboardTracking(False)
        self.spin.setValue(100.0)
        self.spin.setToolTip("Density: percentage of prunable weights kept")
        self.density_label = QLabel()
        self.density_label.setTextFormat(Qt.TextFormat.RichText)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(self._spin_changed)
        self.criterion_box.currentIndexChanged.connect(self._settings_changed)
        self.scope_box.currentIndexChanged.connect(self._settings_changed)
        self.structure_box.currentIndexChanged.connect(self._settings_changed)

        form = QFormLayout()
        form.addRow("Criterion", self.criterion_box)
        form.addRow("", self.explanation)
        form.addRow("Scope", self.scope_box)
        form.addRow("Structure", self.structure_box)
        srow = QHBoxLayout()
        srow.addWidget(QLabel("100%"))
        srow.addWidget(self.slider, 1)
        srow.addWidget(QLabel("0.1%"))
        srow.addWidget(self.spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Density (kept fraction)"))
        layout.addLayout(srow)
        layout.addWidget(self.density_label)
        layout.addStretch(1)
        state.masks_changed.connect(self.update_label)
        state.model_changed.connect(self._model_changed)
        state.model_changed.connect(self.update_data)
        if hasattr(state, "dataset_changed"):
            state.dataset_changed.connect(self.update_data)
        self.update_label()
        self.update_data()

    # the allocations of core.pruning.allocation that the two scopes above do not already offer:
    # each spreads the density over the layers and keeps exactly floor(density x weights)
    ALLOCATION_TIPS = {
        "uniform": "Every layer at the target density (±1 weight, so the total is exact).",
        "erk": "Erdős–Rényi-Kernel (Evci et al. 2020): density ∝ (fan-in + fan-out + kernel) / size; "
               "small layers stay denser, capped at 100%.",
        "owl": "Outlier-weighted layerwise sparsity (Yin et al. 2024): layers with more |W|·‖X‖ outliers "
               "keep more, within ±λ of the target. Reads a few training batches.",
        "sensitivity": "Measures each layer's loss increase at several densities (on training batches), "
                       "then keeps the densities with the least summed increase (knapsack).",
    }
    DATA_ALLOCATIONS = ("owl", "sensitivity")

    def _fill_allocations(self) -> None:
        self.scope_box.insertSeparator(self.scope_box.count())
        for aid, tip in self.ALLOCATION_TIPS.items():
            self.scope_box.addItem(f"allocation: {ALLOCATION_TITLES[aid]}", aid)
            self.scope_box.setItemData(self.scope_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)

    def _fill_criteria(self) -> None:
        self.criteria = CRITERIA
        for cid, info in CRITERIA.items():
            self.criterion_box.addItem(info.title, cid)
            tip = f"{info.title}: {info.formula}\n{info.meaning}"
            if info.needs_data:
                tip += "\n(uses a few training batches)"
            self.criterion_box.setItemData(self.criterion_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self._explain()

    def update_data(self) -> None:
        """Data criteria (SNIP, GraSP, Taylor, OBD) are greyed out, with the reason in their
        tooltip, while no dataset is chosen."""
        has_data = getattr(self.state, "dataset", None) is not None
        model = self.criterion_box.model()
        for i in range(self.criterion_box.count()):
            info = self.criteria.get(self.criterion_box.itemData(i) or "")
            if info is None or not info.needs_data:
                continue
            item = model.item(i)
            item.setEnabled(has_data)
            tip = f"{info.title}: {info.formula}\n{info.meaning}\n(uses a few training batches)"
            item.setToolTip(tip if has_data else f"{NEEDS_DATA}\n{tip}")
        scopes = self.scope_box.model()
        for i in range(self.scope_box.count()):
            aid = self.scope_box.itemData(i)
            if aid in self.DATA_ALLOCATIONS:
                item = scopes.item(i)
                item.setEnabled(has_data)
                tip = self.ALLOCATION_TIPS[aid]
                item.setToolTip(tip if has_data else f"{NEEDS_DATA}\n{tip}")

    def _explain(self) -> None:
        info = self.criteria.get(self.criterion_box.currentData() or "")
        if info is None:
            self.explanation.setText("")
            return
        kind = "structured (whole channels)" if info.structured else "per weight"
        data = "uses training batches" if info.needs_data else "needs no data"
        self.explanation.setText(
            f"<b>{info.title}</b> &nbsp;<code>{info.formula}</code><br>{info.meaning}"
            f"<br><span style='color:gray'>{kind}; {data}; higher score = kept</span>"
        )
        self.criterion_box.setToolTip(f"{info.title}: {info.formula}\n{info.meaning}")

    def _settings_changed(self) -> None:
        if self._updating:
            return
        self._explain()
        s = self.state
        s.criterion = self.criterion_box.currentData() or s.criterion
        s.scope = self.scope_box.currentData()
        s.structure = self.structure_box.currentData()
        s.pruning_changed.emit()
        self.ranking_requested.emit()

    def set_settings(self, criterion: str | None = None, scope: str | None = None,
                     structure: str | None = None) -> None:
        """Programmatic change (sessions, screenshots): one ranking request at the end."""
        self._updating = True
        try:
            for box, val in ((self.criterion_box, criterion), (self.scope_box, scope),
                             (self.structure_box, structure)):
                if val is not None:
                    i = box.findData(val)
                    if i < 0:
                        raise ValueError(f"unknown choice {val!r}")
                    box.setCurrentIndex(i)
        finally:
            self._updating = False
        self._settings_changed()

    def _slider_moved(self, value: int) -> None:
        if self._updating:
            return
        d = slider_to_density(value)
        self._set_spin(d * 100)
        self.density_changed.emit(d)

    def _spin_changed(self, percent: float) -> None:
        if self._updating:
            return
        d = percent / 100.0
        self._set_slider(d)
        self.density_changed.emit(d)

    def _set_spin(self, percent: float) -> None:
        self._updating = True
        try:
            self.spin.setValue(percent)
        finally:
            self._updating = False

    def _set_slider(self, density: float) -> None:
        self._updating = True
        try:
            self.slider.setValue(density_to_slider(density))
        finally:
            self._updating = False

    def set_density(self, density: float) -> None:
        """Move slider and spin box to ``density`` and request the mask."""
        self._set_slider(density)
        self._set_spin(density * 100)
        self.density_changed.emit(density)

    def _model_changed(self) -> None:
        self._set_slider(1.0)
        self._set_spin(100.0)
        self.update_label()

    def update_label(self) -> None:
        masks = self.state.masks
        if masks is None:
            self.density_label.setText("<i>no model</i>")
            return
        kept, total = self.state.kept(), self.state.total()
        d = kept / total if total else 0.0
        ranked = self.state.current_ranking() is not None
        note = "" if ranked or self.state.density >= 1.0 else " <span style='color:#b36b00'>(ranking…)</span>"
        if self.state.mask_source:  # a mask read from a file, not the slider's ranking
            note += f" · <b>mask from file</b> {html.escape(self.state.mask_source)}"
        self.density_label.setText(
            f"density <b>{d:.2%}</b> · kept <b>{kept:,}</b> of {total:,} prunable weights{note}"
        )

    def density_text(self) -> str:
        return self.density_label.text()
