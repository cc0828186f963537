"""The window's control panels: model, pruning and training.

Panels turn user input into requests on the window (which submits jobs) and show the state;
they never compute anything themselves.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.data_box import DataBox, WeightsChoice

# --- density <-> slider (log scale, 100% .. 0.1%) ---------------------------------------------
SLIDER_STEPS = 1000
MIN_DENSITY = 1e-3
DECADES = -math.log10(MIN_DENSITY)  # 3


def slider_to_density(value: int) -> float:
    """Slider position 0..SLIDER_STEPS -> density 1 .. 1e-3, logarithmically."""
    return 10.0 ** (-DECADES * value / SLIDER_STEPS)


def density_to_slider(density: float) -> int:
    density = min(max(density, MIN_DENSITY), 1.0)
    return int(round(-math.log10(density) / DECADES * SLIDER_STEPS))


def density_colour(density: float) -> QColor:
    """Red (nearly all pruned) -> amber -> green (dense), for the layer list."""
    d = min(max(density, 0.0), 1.0)
    t = math.log10(max(d, MIN_DENSITY)) / DECADES + 1.0  # 0 at 0.1%, 1 at 100%
    hue = 120.0 * t  # 0 red .. 120 green
    return QColor.fromHsvF(hue / 360.0, 0.45, 1.0)


class DensitySlider(QSlider):
    """Horizontal log-density slider, left = 100%, right = 0.1%.

    Keys follow the density, not Qt's defaults: Right/Down step to a lower density, Left/Up to
    a higher one, PageDown/PageUp halve/double it, Home = 100%, End = 0.1%.
    """

    KEYS = {
        Qt.Key.Key_Right: QSlider.SliderAction.SliderSingleStepAdd,
        Qt.Key.Key_Down: QSlider.SliderAction.SliderSingleStepAdd,
        Qt.Key.Key_Left: QSlider.SliderAction.SliderSingleStepSub,
        Qt.Key.Key_Up: QSlider.SliderAction.SliderSingleStepSub,
        Qt.Key.Key_PageDown: QSlider.SliderAction.SliderPageStepAdd,
        Qt.Key.Key_PageUp: QSlider.SliderAction.SliderPageStepSub,
        Qt.Key.Key_Home: QSlider.SliderAction.SliderToMinimum,
        Qt.Key.Key_End: QSlider.SliderAction.SliderToMaximum,
    }

    def event(self, event) -> bool:
        # With the slider focused its own keys win over window shortcuts bound to the same keys
        # (teaching mode binds PgUp/PgDown to one density step for presentation clickers).
        if (event.type() == QEvent.Type.ShortcutOverride and event.modifiers() == Qt.KeyboardModifier.NoModifier
                and Qt.Key(event.key()) in self.KEYS):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        action = self.KEYS.get(Qt.Key(event.key()))
        if action is None:
            super().keyPressEvent(event)
            return
        self.triggerAction(action)
        event.accept()


C_DENSITY, C_PARAMS = 1, 2
TREE_REFRESH_MS = 80
NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # full parameter name of a layer row


def _set_density(item: QTreeWidgetItem, kept: int, total: int) -> None:
    d = kept / total if total else 0.0
    text = f"{d:.3f}" if d >= 0.01 else f"{d:.2e}"
    if item.text(C_DENSITY) == text:
        return
    item.setText(C_DENSITY, text)
    item.setData(C_DENSITY, Qt.ItemDataRole.UserRole, d)
    item.setToolTip(C_DENSITY, f"kept {kept:,} of {total:,}")
    item.setBackground(C_DENSITY, QBrush(density_colour(d)))


class _SortItem(QTreeWidgetItem):
    """Sorts numeric columns by value (stored in UserRole), text columns by text."""

    def __lt__(self, other) -> bool:
        col = self.treeWidget().sortColumn() if self.treeWidget() else 0
        a = self.data(col, Qt.ItemDataRole.UserRole)
        b = other.data(col, Qt.ItemDataRole.UserRole)
        if a is not None and b is not None:
            try:
                return a < b
            except TypeError:
                pass
        return self.text(col) < other.text(col)


# --- model panel ------------------------------------------------------------------------------
class ModelPanel(QWidget):
    """Which model and data; the layer tree with per-layer density."""

    load_requested = Signal(str, str, bool, str)  # ref, weights ('' = none), trust, dataset ('' = default)
    open_file_requested = Signal()
    dataset_requested = Signal(str)

    COLUMNS = ["layer", "density", "params", "shape", "kind"]

    def __init__(self, state) -> None:
        super().__init__()
        self.state = state
        from visualizer.core.models.zoo import ZOO

        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        for name, entry in ZOO.items():
            self.model_box.addItem(name)
            self.model_box.setItemData(self.model_box.count() - 1, f"{entry.description} — {entry.structure}",
                                       Qt.ItemDataRole.ToolTipRole)
        self.model_box.setToolTip(
            "A bundled model, torchvision:NAME, a TorchScript file or path/to/file.py:factory.\n"
            "You can also drop a file onto the window."
        )
        self.model_box.lineEdit().returnPressed.connect(self._load_clicked)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open a TorchScript file, a model.py (with a factory) or weights")
        self.open_button.clicked.connect(self.open_file_requested)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("weights (optional): .safetensors / .pt")
        self.trust_box = QCheckBox("Trust this file (allow unpickling; runs code)")
        self.data = DataBox()
        self.data_box = self.data.combo
        self.data.dataset_requested.connect(self._data_chosen)
        self.weights_choice = WeightsChoice()
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._load_clicked)

        row = QHBoxLayout()
        row.addWidget(self.model_box, 1)
        row.addWidget(self.open_button)
        row.addWidget(self.load_button)
        form = QFormLayout()
        form.addRow("Model", row)
        form.addRow("Weights", self.weights_edit)
        form.addRow("", self.trust_box)
        form.addRow("", self.weights_choice)
        form.addRow("Data", self.data)

        self.summary = QLabel("no model loaded")
        self.summary.setWordWrap(True)
        self.show_all_box = QCheckBox("show biases / norms (not pruned)")
        self.show_all_box.toggled.connect(lambda _on: self._rebuild())
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(self.COLUMNS)
        self.tree.setRootIsDecorated(True)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setToolTip("Prunable weights grouped by module; density = kept / total, coloured "
                             "red (0.1%) to green (100%). Click a column to sort, a layer to show it.")
        # Interactive, sized once per model: ResizeToContents re-measures every row on each
        # density change (1.6 ms per setText), far too slow for a slider.
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tree.header().setStretchLastSection(True)
        self.tree.currentItemChanged.connect(self._item_changed)
        self._items: dict[str, QTreeWidgetItem] = {}
        self._groups: dict[str, tuple[QTreeWidgetItem, list[str]]] = {}

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.show_all_box)

        state.model_changed.connect(self._rebuild)
        # During a slider drag the layer list refreshes at once and then at most every
        # TREE_REFRESH_MS: a ViT-B's 150 rows cost ~16 ms of Qt calls per refresh, a third of a
        # drag step on that model; the heatmap and the density line still follow every step.
        self._densities_pending = False
        self._density_cooldown = QTimer(self)
        self._density_cooldown.setSingleShot(True)
        self._density_cooldown.setInterval(TREE_REFRESH_MS)
        self._density_cooldown.timeout.connect(self._cooldown_over)
        state.masks_changed.connect(self._masks_changed)
        state.selection_changed.connect(self._select)

    def _load_clicked(self) -> None:
        ref = self.model_box.currentText().strip()
        if ref:
            self.load_requested.emit(ref, self.weights_edit.text().strip(), self.trust_box.isChecked(),
                                     self.data_box.currentData() or "")

    def _data_chosen(self, name: str = "") -> None:
        name = name or self.data_box.currentData()
        if name and self.state.loaded is not None:
            self.dataset_requested.emit(name)

    def load_settings(self) -> dict:
        """pretrained / download / data options for a load or a dataset job."""
        return {"pretrained": self.weights_choice.pretrained(), "download": self.data.download_box.isChecked(),
                "options": self.data.options()}

    def show_dataset(self) -> None:
        """Point the Data box at the dataset in use ("(model's own)" when it is the model's)."""
        loaded, data = self.state.loaded, self.state.dataset
        name = "" if data is None or (loaded is not None and data.name == loaded.dataset) else data.name
        if name and self.data_box.findData(name) < 0:
            self.data.select(name)  # a folder or a factory: added to the list
        index = self.data_box.findData(name)
        self.data_box.setCurrentIndex(max(index, 0))

    def set_model_text(self, ref: str) -> None:
        self.model_box.setCurrentText(ref)

    def _rebuild(self) -> None:
        s = self.state
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        self._items = {}
        loaded = s.loaded
        if loaded is None:
            self.summary.setText("no model loaded")
            return
        self.set_model_text(loaded.ref)
        total = sum(r.params for r in s.layers)
        pr = sum(r.params for r in s.layers if r.prunable)
        acc = f" · test accuracy {loaded.accuracy:.1%}" if loaded.accuracy is not None else ""
        data = f" · data: {s.dataset_name}" if s.dataset_name else " · no dataset"
        data = f" · {loaded.weights_line}{data}" if hasattr(loaded, "weights_line") else data
        notes = ("<br><i>" + "; ".join(loaded.notes) + "</i>") if loaded.notes else ""
        self.summary.setText(f"<b>{loaded.ref}</b>: {total:,} parameters, {pr:,} prunable{acc}{data}{notes}")
        show_all = self.show_all_box.isChecked()
        self._groups = {}
        for i, r in enumerate(s.layers):
            if not r.prunable and not show_all:
                continue
            group = r.name.split(".")[0] if "." in r.name else ""
            parent = self.tree.invisibleRootItem()
            if group:
                if group not in self._groups:
                    g = _SortItem([group, "", "", "", ""])
                    g.setData(0, Qt.ItemDataRole.UserRole, i)
                    g.setData(C_PARAMS, Qt.ItemDataRole.UserRole, 0)
                    g.setData(C_DENSITY, Qt.ItemDataRole.UserRole, 1.0)
                    g.setFlags(g.flags() & ~Qt.ItemFlag.ItemIsSelectable)
                    g.setTextAlignment(C_PARAMS, Qt.AlignmentFlag.AlignRight)
                    g.setTextAlignment(C_DENSITY, Qt.AlignmentFlag.AlignRight)
                    f = g.font(0)
                    f.setBold(True)
                    g.setFont(0, f)
                    self.tree.addTopLevelItem(g)
                    self._groups[group] = (g, [])
                g, members = self._groups[group]
                parent = g
                if r.prunable:
                    members.append(r.name)
                g.setData(C_PARAMS, Qt.ItemDataRole.UserRole, g.data(C_PARAMS, Qt.ItemDataRole.UserRole) + r.params)
                g.setText(C_PARAMS, f"{g.data(C_PARAMS, Qt.ItemDataRole.UserRole):,}")
            label = r.name[len(group) + 1:] if group else r.name
            item = _SortItem([label, "1.000" if r.prunable else "—", f"{r.params:,}", "×".join(map(str, r.shape)), r.kind])
            item.setData(0, Qt.ItemDataRole.UserRole, i)  # model order when sorting by name column
            item.setData(0, NAME_ROLE, r.name)
            item.setToolTip(0, r.name)
            item.setData(C_PARAMS, Qt.ItemDataRole.UserRole, r.params)
            item.setData(C_DENSITY, Qt.ItemDataRole.UserRole, 1.0 if r.prunable else 2.0)
            item.setTextAlignment(C_PARAMS, Qt.AlignmentFlag.AlignRight)
            item.setTextAlignment(C_DENSITY, Qt.AlignmentFlag.AlignRight)
            if not r.prunable:
                for c in range(len(self.COLUMNS)):
                    item.setForeground(c, QBrush(QColor(150, 150, 150)))
                item.setToolTip(0, f"{r.name}: not pruned (bias / normalisation / embedding)")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            if parent is self.tree.invisibleRootItem():
                self.tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            if r.prunable:
                self._items[r.name] = item
        self.tree.expandAll()
        self.tree.setSortingEnabled(True)
        self._update_densities()
        for c in range(len(self.COLUMNS)):
            self.tree.resizeColumnToContents(c)
        self.tree.setColumnWidth(C_DENSITY, max(self.tree.columnWidth(C_DENSITY), 64))
        if s.selected:
            self._select(s.selected)

    def _masks_changed(self) -> None:
        if self._density_cooldown.isActive():
            self._densities_pending = True
            return
        self._update_densities()
        self._density_cooldown.start()

    def _cooldown_over(self) -> None:
        if self._densities_pending:
            self._update_densities()
            self._density_cooldown.start()

    def flush_densities(self) -> None:
        """Apply a refresh still waiting for the cool-down (readers that need the list now)."""
        if self._densities_pending:
            self._update_densities()

    def _update_densities(self) -> None:
        self._densities_pending = False
        if self.state.masks is None:
            return
        sorting = self.tree.isSortingEnabled()
        self.tree.setSortingEnabled(False)  # no re-sort per item while the slider moves
        kept_by_layer, totals = self.state.layer_kept, self.state.layer_total
        for name, kept in kept_by_layer.items():
            item = self._items.get(name)
            if item is not None:
                _set_density(item, kept, totals[name])
        for g, members in self._groups.values():
            if members:
                _set_density(g, sum(kept_by_layer.get(n, 0) for n in members),
                             sum(totals.get(n, 0) for n in members))
        self.tree.setSortingEnabled(sorting)

    def _item_changed(self, current, _previous) -> None:
        name = None if current is None else current.data(0, NAME_ROLE)
        if name:
            self.state.select(name)

    def _select(self, name: str) -> None:
        item = self._items.get(name)
        if item is not None and self.tree.currentItem() is not item:
            self.tree.setCurrentItem(item)

    def layer_density_text(self, name: str) -> str:
        self.flush_densities()
        item = self._items.get(name)
        return "" if item is None else item.text(C_DENSITY)


# --- pruning panel ----------------------------------------------------------------------------
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
        self.update_label()

    def _fill_criteria(self) -> None:
        try:
            from visualizer.core.pruning.criteria import CRITERIA
        except ImportError:  # engine not merged yet
            CRITERIA = {}
        self.criteria = CRITERIA
        for cid, info in CRITERIA.items():
            self.criterion_box.addItem(info.title, cid)
            tip = f"{info.title}: {info.formula}\n{info.meaning}"
            if info.needs_data:
                tip += "\n(uses a few training batches)"
            self.criterion_box.setItemData(self.criterion_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if not CRITERIA:
            self.criterion_box.addItem("(criteria not available)", "")
            self.criterion_box.setEnabled(False)
        self._explain()

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
        self.density_label.setText(
            f"density <b>{d:.2%}</b> · kept <b>{kept:,}</b> of {total:,} prunable weights{note}"
        )

    def density_text(self) -> str:
        return self.density_label.text()


# --- training panel ---------------------------------------------------------------------------
RETRAIN_MODES = [
    ("none", "none (prune only)"),
    ("finetune", "fine-tune the masked model"),
    ("imp", "iterative magnitude pruning (rewind to tau)"),
    ("set", "dynamic sparse: SET"),
    ("rigl", "dynamic sparse: RigL"),
    ("group-lasso", "group lasso (then prune channels)"),
]


class TrainingPanel(QWidget):
    """Retraining settings and Run / Cancel. Enabled once core training is available."""

    run_requested = Signal(dict)
    sweep_requested = Signal(dict)
    evaluate_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, state, available: bool, note: str = "") -> None:
        super().__init__()
        self.state = state
        self.mode_box = QComboBox()
        for key, text in RETRAIN_MODES:
            self.mode_box.addItem(text, key)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(2)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 10.0)
        self.lr.setSingleStep(1e-3)
        self.lr.setValue(1e-3)
        self.rewind = QSpinBox()
        self.rewind.setRange(0, 100000)
        self.rewind.setToolTip("IMP rewind point tau (iterations); 0 = original initialisation")
        self.rounds = QSpinBox()
        self.rounds.setRange(1, 30)
        self.rounds.setValue(3)
        self.rounds.setToolTip("IMP rounds; each prunes a fraction of the remaining weights")
        self.rate = QDoubleSpinBox()
        self.rate.setRange(0.05, 0.9)
        self.rate.setSingleStep(0.05)
        self.rate.setValue(0.4)
        self.rate.setToolTip("IMP: fraction alpha of the remaining weights pruned each round; "
                             "after S rounds the density is (1 - alpha)^S")
        self.lam = QDoubleSpinBox()
        self.lam.setDecimals(5)
        self.lam.setRange(0.0, 1.0)
        self.lam.setSingleStep(1e-3)
        self.lam.setValue(1e-3)
        self.lam.setToolTip("Group lasso penalty lambda (block soft threshold lr * lambda per step)")
        self.distribution_box = QComboBox()
        self.distribution_box.addItem("Erdős–Rényi-Kernel (small layers denser)", "erk")
        self.distribution_box.addItem("uniform (every layer at the density)", "uniform")
        self.distribution_box.setToolTip(
            "SET/RigL: per-layer densities of the random starting mask. ERK (RigL's default) keeps "
            "small layers such as a first conv dense or nearly so; uniform gives every layer the "
            "slider's density")
        self.keep_box = QCheckBox("keep the trained weights (fine-tune)")
        self.keep_box.setToolTip("Replace the model's weights by the fine-tuned ones; otherwise the "
                                 "run only adds a point to the curves")
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.0, 0.5)
        self.smoothing.setSingleStep(0.05)
        self.distill = QCheckBox("distil from the dense model")
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda", "mps"])
        self.run_button = QPushButton("Run")
        self.sweep_button = QPushButton("Sweep densities")
        self.sweep_button.setToolTip("Accuracy at 8 densities from 100% to 1% for the current criterion and "
                                     "random (with fine-tuning when that mode is chosen); points stream in")
        self.eval_button = QPushButton("Evaluate mask")
        self.eval_button.setToolTip("Test accuracy of the model under the current mask: one point on the curve")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(lambda: self.run_requested.emit(self.settings()))
        self.sweep_button.clicked.connect(lambda: self.sweep_requested.emit(self.settings()))
        self.eval_button.clicked.connect(self.evaluate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)

        form = QFormLayout()
        form.addRow("Retrain", self.mode_box)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.lr)
        form.addRow("IMP rounds", self.rounds)
        form.addRow("Prune per round", self.rate)
        form.addRow("Rewind tau", self.rewind)
        form.addRow("Group lasso λ", self.lam)
        form.addRow("Layer densities", self.distribution_box)
        form.addRow("Label smoothing", self.smoothing)
        form.addRow("", self.distill)
        form.addRow("Device", self.device_box)
        form.addRow("", self.keep_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.eval_button)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.sweep_button)
        buttons.addWidget(self.cancel_button)
        self.note = QLabel(note)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a5a00")
        self.group = QGroupBox("Retraining")
        self.group.setLayout(form)
        layout = QVBoxLayout(self)
        layout.addWidget(self.group)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.set_available(available, note)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()

    def set_available(self, available: bool, note: str = "") -> None:
        self.available = available
        for w in (self.group, self.run_button, self.sweep_button, self.eval_button):
            w.setEnabled(available)
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def _mode_changed(self) -> None:
        mode = self.mode_box.currentData()
        self.rewind.setEnabled(mode == "imp")
        self.rounds.setEnabled(mode == "imp")
        self.rate.setEnabled(mode == "imp")
        self.lam.setEnabled(mode == "group-lasso")
        self.distribution_box.setEnabled(mode in ("set", "rigl"))
        self.keep_box.setEnabled(mode == "finetune")

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)

    def settings(self) -> dict:
        return {
            "retrain": self.mode_box.currentData(),
            "epochs": self.epochs.value(),
            "lr": self.lr.value(),
            "rounds": self.rounds.value(),
            "rewind": self.rewind.value(),
            "rate": self.rate.value(),
            "lam": self.lam.value(),
            "distribution": self.distribution_box.currentData(),
            "keep": self.keep_box.isChecked(),
            "label_smoothing": self.smoothing.value(),
            "distill": self.distill.isChecked(),
            "device": self.device_box.currentText(),
        }
