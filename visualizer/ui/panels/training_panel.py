"""The Training panel: retraining settings and Evaluate / Run / Sweep / Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.panels.data_box import NEEDS_DATA

RETRAIN_MODES = [
    ("none", "none (prune only)"),
    ("finetune", "fine-tune the masked model"),
    ("imp", "iterative magnitude pruning (rewind to tau)"),
    ("set", "dynamic sparse: SET"),
    ("rigl", "dynamic sparse: RigL"),
    ("group-lasso", "group lasso (then prune channels)"),
]


class TrainingPanel(QWidget):
    """Retraining settings and Evaluate / Run / Sweep / Cancel."""

    run_requested = Signal(dict)
    sweep_requested = Signal(dict)
    evaluate_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, state) -> None:
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
        self.seeds_edit = QLineEdit()
        self.seeds_edit.setPlaceholderText("0")
        self.seeds_edit.setToolTip("Comma-separated seeds (e.g. 0, 1, 2): a sweep computes every point once per "
                                   "seed, IMP runs once per seed; empty = seed 0")
        self.run_on_box = QComboBox()
        self.run_on_box.addItem("this machine", "here")
        self.run_on_box.addItem("Ray cluster at", "ray")
        self.run_on_box.setToolTip("Where sweeps and IMP seeds run: here, one after another, or as Ray tasks in "
                                   "parallel (needs pip install 'pruneviz[cluster]')")
        self.cluster_address = QLineEdit("local:2")
        self.cluster_address.setPlaceholderText("local:N, ray://HOST:PORT or auto")
        self.cluster_address.setToolTip("local:N starts N workers on this machine; ray://HOST:PORT connects to a "
                                        "cluster's head; auto joins RAY_ADDRESS or the cluster running here")
        self.run_on_box.currentIndexChanged.connect(
            lambda: self.cluster_address.setEnabled(self.run_on_box.currentData() == "ray"))
        self.cluster_address.setEnabled(False)
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
        # one row: the panel shares its dock column with the layer tree, which must keep its height
        run_on = QHBoxLayout()
        run_on.setContentsMargins(0, 0, 0, 0)
        run_on.addWidget(self.run_on_box)
        run_on.addWidget(self.cluster_address, 1)
        run_on.addWidget(QLabel("seeds"))
        run_on.addWidget(self.seeds_edit)
        self.seeds_edit.setMaximumWidth(60)
        self.cluster_address.setMinimumWidth(110)
        form.addRow("Run on", run_on)
        form.addRow("", self.keep_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.eval_button)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.sweep_button)
        buttons.addWidget(self.cancel_button)
        self.group = QGroupBox("Retraining")
        self.group.setLayout(form)
        layout = QVBoxLayout(self)
        layout.addWidget(self.group)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()
        self._tips = {b: b.toolTip() for b in (self.eval_button, self.run_button, self.sweep_button)}
        state.model_changed.connect(self.update_data)
        if hasattr(state, "dataset_changed"):
            state.dataset_changed.connect(self.update_data)
        self.update_data()

    def update_data(self) -> None:
        """Evaluate, Run and Sweep need a dataset: disabled, with the reason, until there is one."""
        has_data = getattr(self.state, "dataset", None) is not None
        for button, tip in self._tips.items():
            button.setEnabled(has_data)
            button.setToolTip(tip if has_data else "\n".join(t for t in (NEEDS_DATA, tip) if t))

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
            "seeds": self.seeds_edit.text().strip(),
            "cluster": (self.cluster_address.text().strip() or "auto") if self.run_on_box.currentData() == "ray" else "",
        }
