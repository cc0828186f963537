"""The Model panel: which model and data, and the layer tree with per-layer density."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.panels.data_box import DataBox, WeightsChoice
from visualizer.ui.panels.density import density_colour

C_DENSITY, C_PARAMS = 1, 2
TREE_REFRESH_MS = 80
NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # full parameter name of a layer row


def density_text(d: float) -> str:
    """One format for every row: three decimals, "<0.001" for a tiny non-zero density (it
    would read as zero), "0" for an empty layer."""
    if d <= 0.0:
        return "0"
    if d < 0.0005:  # rounds to 0.000
        return "<0.001"
    return f"{d:.3f}"


def _set_density(item: QTreeWidgetItem, kept: int, total: int) -> None:
    d = kept / total if total else 0.0
    text = density_text(d)
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
            "A bundled model, torchvision:NAME, hf:FOLDER or hf:NAME (a Hugging Face model folder or\n"
            "cached model), a TorchScript file or path/to/file.py:factory.\n"
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
