"""The Data and Weights choices of the Model panel: which dataset (a bundled one, torchvision's,
an image folder opened with "Open folder…", or the model's own), how images are read, and
whether a model gets its pretrained weights (and may download them)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

OWN = "(model's own)"
NEEDS_DATA = "needs a dataset: choose one under Data"  # the reason data actions are disabled
NO_SIZE = 0  # the image-size box's "auto" value


class DataBox(QWidget):
    """Dataset combo + "Open folder…" + image size + normalisation + "Download" (for torchvision's
    datasets and weights). ``dataset_requested(name)`` fires when the user picks a dataset."""

    dataset_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        from visualizer.core.data.sources import dataset_names

        self.combo = QComboBox()
        self.combo.addItem(OWN, "")
        for n in dataset_names():
            self.combo.addItem(n, n)
        self.combo.setToolTip("The dataset the data criteria, evaluation, training and the curvature "
                              "views read. Image folders and file.py:FUNCTION datasets stream from disk.")
        self.combo.activated.connect(self._chosen)
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.setToolTip("An image folder: FOLDER/train/CLASS/*.png|jpg with FOLDER/val/ "
                                      "(or test/), or one FOLDER/CLASS/ tree split 80/20 per class")
        self.folder_button.clicked.connect(self.choose_folder)
        self.size_box = QSpinBox()
        self.size_box.setRange(NO_SIZE, 1024)
        self.size_box.setSpecialValueText("size: auto")
        self.size_box.setPrefix("size ")
        self.size_box.setToolTip("Resize the shorter side and crop the centre to this many pixels "
                                 "(auto: a torchvision model's own preprocessing, else the first image's size)")
        self.normalize_box = QComboBox()
        for text, value in (("normalise: auto", ""), ("ImageNet statistics", "imagenet"), ("none", "none")):
            self.normalize_box.addItem(text, value)
        self.download_box = QCheckBox("Download")
        self.download_box.setToolTip("Allow downloading torchvision's pretrained weights (into torch's "
                                     "cache) and mnist / fashion-mnist / cifar10")
        # two rows: in one, the Data box made the panel column ~620 px wide, half a 1280 screen
        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(2)
        first, second = QHBoxLayout(), QHBoxLayout()
        first.addWidget(self.combo, 1)
        first.addWidget(self.folder_button)
        second.addWidget(self.size_box)
        second.addWidget(self.normalize_box, 1)
        second.addWidget(self.download_box)
        rows.addLayout(first)
        rows.addLayout(second)

    def current(self) -> str:
        return self.combo.currentData() or ""

    def options(self):
        """core.data DataOptions from the controls."""
        from visualizer.core.data.external import DataOptions

        size = self.size_box.value()
        return DataOptions(download=self.download_box.isChecked(), image_size=size or None,
                           normalize=self.normalize_box.currentData() or None)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder")
        if path:
            self.select(f"folder:{path}", emit=True)

    def select(self, name: str, emit: bool = False) -> None:
        """Show ``name`` (added to the list when new: a folder, a factory); with ``emit``, ask for it."""
        index = self.combo.findData(name)
        if index < 0:
            label = f"folder: {Path(name[7:]).name}" if name.startswith("folder:") else name
            self.combo.addItem(label, name)
            self.combo.setItemData(self.combo.count() - 1, name, 3)  # ToolTipRole: the full path
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)
        if emit:
            self._chosen()

    def _chosen(self) -> None:
        name = self.current()
        if name:
            self.dataset_requested.emit(name)


class WeightsChoice(QWidget):
    """"Pretrained weights" (bundled and torchvision:NAME models; off: random init)."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_box = QCheckBox("Pretrained weights")
        self.pretrained_box.setChecked(True)
        self.pretrained_box.setToolTip("Off: random initialisation. torchvision:NAME reads its DEFAULT "
                                       "weights from torch's cache; tick Download under Data to fetch them.")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.pretrained_box)
        row.addStretch(1)

    def pretrained(self) -> bool:
        return self.pretrained_box.isChecked()
