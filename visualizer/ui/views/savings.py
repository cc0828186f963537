"""Real savings of the current mask: parameters, memory as stored (dense, CSR, 2:4) and which
layers 2:4 kernels can run, with the reason for each that cannot (docs/theory.md §20).

Core computes the table (``core.pruning.savings``) in a job; this view lists it.
"""

from __future__ import annotations

import torch
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.core.pruning.nm import nm_masks, transposed_weights
from visualizer.core.pruning.savings import savings_table, totals
from visualizer.core.tasks import Step
from visualizer.ui.views import ViewSpec

HEADERS = ["layer", "shape", "dtype", "kept", "density", "dense", "CSR", "2:4", "2:4 kernel"]


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def savings_job(model, masks):
    """The savings rows of ``masks`` on ``model`` (worker side), as a one-step job."""
    rows = savings_table(model, masks)
    yield Step("savings", 1.0)
    return rows, totals(rows)


def nm_job(model, scores, n: int = 2, m: int = 4):
    """The N:M masks of ``scores`` and their savings rows (worker side), as a one-step job."""
    result = nm_masks({k: torch.as_tensor(v) for k, v in scores.items()}, n, m, transposed_weights(model))
    rows = savings_table(model, result.masks)
    yield Step("2:4 masks", 1.0)
    return result, rows, totals(rows)


class SavingsView(QWidget):
    title = "Real savings"

    def __init__(self, window=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self.refresh_button = QPushButton("Measure this mask")
        self.refresh_button.setToolTip("What the current mask saves as stored, and which layers can run on "
                                       "2:4 sparse tensor cores")
        self.refresh_button.clicked.connect(self.refresh)
        self.make_button = QPushButton("Make it 2:4")
        self.make_button.setToolTip("Keep the 2 best of every 4 inputs by the current criterion's scores "
                                    "(layers whose inputs are not a multiple of 4 stay dense and are listed)")
        self.make_button.clicked.connect(self.make_2_4)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        top = QHBoxLayout()
        top.addWidget(self.refresh_button)
        top.addWidget(self.make_button)
        top.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

    def refresh(self) -> None:
        state = getattr(self.window, "state", None)
        if state is None or state.model is None or state.masks is None:
            self.summary.setText("load a model and prune it first")
            return
        model, masks = state.model, state.masks.copy()
        self.summary.setText("measuring…")
        self.window.jobs.submit("savings", "real savings", lambda: savings_job(model, masks),
                                on_result=lambda r: self.set_rows(*r), on_error=self.summary.setText)

    def make_2_4(self) -> None:
        state = getattr(self.window, "state", None)
        if state is None or state.model is None or not state.scores:
            self.summary.setText("load a model and wait for its criterion's scores first")
            return
        model, scores, loaded = state.model, dict(state.scores), state.loaded

        def done(out) -> None:
            result, rows, total = out
            if state.loaded is not loaded:
                return
            state.set_masks(result.masks, source="2:4")
            self.set_rows(rows, total)
            if result.skipped:
                self.summary.setText(self.summary.text() + "; left dense: " + ", ".join(
                    f"{n} ({why})" for n, why in result.skipped.items()))

        self.summary.setText("2:4 masks…")
        self.window.jobs.submit("savings", "2:4 masks", lambda: nm_job(model, scores), on_result=done,
                                on_error=self.summary.setText)

    def set_rows(self, rows, total) -> None:
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            kernel = "eligible" + (f" ({r.reason})" if r.reason else "") if r.eligible else r.reason
            cells = [r.name, f"{r.rows}×{r.cols}", r.dtype, f"{r.kept:,}", f"{100 * r.density:.1f}%",
                     fmt_bytes(r.dense_bytes), fmt_bytes(r.csr_bytes), fmt_bytes(r.semi_bytes), kernel]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(i, j, item)
        self.summary.setText(
            f"kept {total.kept:,} of {total.total:,} weights; stored dense {fmt_bytes(total.dense_bytes)}, "
            f"as CSR {fmt_bytes(total.csr_bytes)}, each layer in its smallest format {fmt_bytes(total.best_bytes)}; "
            f"{total.eligible_params:,} weights in layers 2:4 kernels can run")



def _prepare(window, options) -> None:
    """Screenshot hook: compute now (the window's jobs are synchronous then)."""
    window.views["savings"].refresh()


VIEW = ViewSpec("savings", "Real savings", SavingsView, prepare=_prepare, lazy=True,
                description="parameters and memory as stored (dense, CSR, 2:4) and 2:4 kernel eligibility")
