"""Sensitivity view: prune each layer (or coupled group) alone and watch the accuracy fall.

Left, Distiller-style curves: accuracy (or loss) against the density the unit keeps, one curve per
unit, on the curves view's log density axis; the list beside them selects which units are drawn.
Right, a unit x level heat table of the same numbers. The Rows box picks which analysis is drawn
(criterion and split): the view's own runs measure on the test split; the loss curves the
``sensitivity`` allocation measured for a ranking or a sweep of the window (on the training split,
:func:`visualizer.core.training.sensitivity.allocation_curves_job`) arrive here too, and are what
those jobs reuse while the model version is the same (a new model or trained weights clear the
view). The analysis is
:func:`visualizer.core.training.sensitivity.sensitivity_job`, run as a job (progress in the
status bar, Cancel keeps the rows that arrived, Run again computes only the missing cells);
rows stream in as each unit finishes. :func:`graph_values` gives the per-layer numbers the
dependency graph paints.
"""

from __future__ import annotations

import copy
import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.views import ViewSpec
from visualizer.ui.views.base import shrinkable
from visualizer.ui.views.curves import PALETTE, density_ticks

JOB_KIND = "sensitivity"
UNITS = ("layer", "group")  # core.training.sensitivity.UNITS (its module loads networkx: not at start-up)
METRICS = {"accuracy": "test accuracy", "loss": "test loss"}
# the window's evaluation sample of an in-memory dataset is its whole test split; the view reads
# at most this many batches of 512 so a run on the bundled models takes seconds
VIEW_EVAL_BATCHES = 2


def _core():
    """core.training.sensitivity, imported when the view first needs it: it brings the graph
    tracer and networkx, which the window's start-up leaves to the first job that needs them."""
    from visualizer.core.training import sensitivity

    return sensitivity


def graph_values(rows: list[dict], level: float | None = None, metric: str = "accuracy_drop") -> dict[str, float]:
    """{layer: value} for the dependency graph (the graph view paints it): ``metric`` at
    ``level`` (default: each unit's lowest density) from the view's rows."""
    return _core().layer_values(rows, level, metric)


class SensitivityView(QWidget):
    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.state = window.state
        self.rows: list[dict] = []
        self._hidden: set[str] = set()
        self.unit_box = QComboBox()
        for u in UNITS:
            self.unit_box.addItem({"layer": "layer (one weight tensor)",
                                   "group": "group (coupled channels, as shrink removes them)"}[u], u)
        shrinkable(self.unit_box, chars=12)
        self.levels_edit = QLineEdit(",".join(f"{x:g}" for x in _core().DEFAULT_LEVELS))
        self.levels_edit.setToolTip("densities the unit keeps, comma-separated, each in (0, 1]")
        self.metric_box = QComboBox()
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.rows_box = QComboBox()  # which analysis is drawn: (criterion, split)
        self.rows_box.setToolTip("the analysis drawn: the view's own runs (test split) or the loss curves "
                                 "the sensitivity allocation measured (training split)")
        shrinkable(self.rows_box, chars=14)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("prune each unit alone at each density: Run")
        self.status.setWordWrap(True)
        controls = QHBoxLayout()
        for label, widget in (("Unit", self.unit_box), ("Densities", self.levels_edit), ("Show", self.metric_box),
                              ("Rows", self.rows_box)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget, 1 if widget is self.levels_edit else 0)
        self.levels_edit.setMinimumWidth(self.levels_edit.fontMetrics().horizontalAdvance(self.levels_edit.text()) + 16)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)

        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLogMode(x=True, y=False)
        for side in ("bottom", "left"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setTicks([density_ticks()])
        self.plot.setLabel("bottom", "density the unit keeps (log scale)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.getViewBox().invertX(True)
        self.baseline = pg.InfiniteLine(angle=0, pen=pg.mkPen((90, 90, 90), width=1.5, style=Qt.PenStyle.DashLine),
                                        label="dense {value:.3g}", labelOpts={"position": 0.1, "color": (60, 60, 60)})
        self.baseline.setVisible(False)
        self.plot.addItem(self.baseline)
        self.units_list = QListWidget()
        self.units_list.setToolTip("tick the units whose curves are drawn")
        self.units_list.setMaximumWidth(200)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("unit x density: the metric with only that unit pruned (darker = worse)")
        self._items: dict[str, pg.PlotDataItem] = {}

        left = QWidget()
        left_layout = QHBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.plot_widget, 1)
        left_layout.addWidget(self.units_list)
        # curves above the table: side by side, a 1280x720 window left the curves a strip and the
        # table a scroll (seen under X)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(left)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 400])  # scaled to the view's height: the table gets two fifths
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.metric_box.currentIndexChanged.connect(self.redraw)
        self.rows_box.currentIndexChanged.connect(self.redraw)
        self.units_list.itemChanged.connect(self._toggled)
        self.state.model_changed.connect(self.clear)
        self.window.jobs.finished.connect(self._job_finished)
        self.redraw()

    # --- the job ---------------------------------------------------------------------------------
    def config(self):
        """The analysis the controls describe (a ValueError in one line for bad densities)."""
        core = _core()
        levels = core.check_levels([t.strip() for t in self.levels_edit.text().split(",") if t.strip()])
        return core.SensitivityConfig(self.state.loaded.ref if self.state.loaded else "", self.state.criterion,
                                 self.unit_box.currentData(), levels, eval_batches=VIEW_EVAL_BATCHES)

    def run(self) -> None:
        """Start (or resume: rows already here are reused) the analysis as a job."""
        s = self.state
        if s.loaded is None:
            return
        if s.dataset is None:
            self._say("sensitivity needs a dataset: choose one under Data")
            return
        try:
            config = self.config()
            config.validate()
        except ValueError as exc:
            self._say(str(exc))
            return
        from visualizer.core.workspace import Workspace

        model, data, device, ref = s.loaded.model, s.dataset, s.device, s.loaded.ref
        previous = list(self.rows)

        def factory():
            # a copy: the job reads its own model, never the one the window shows
            ws = Workspace(copy.deepcopy(model), data, device=device, model_ref=ref)
            return _core().sensitivity_job(ws, config, previous)

        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"measuring {config.unit}s at {len(config.levels)} densities ({config.criterion})…")
        self.window.jobs.submit(JOB_KIND, f"sensitivity ({config.unit}, {config.criterion})", factory,
                                on_result=self._done, on_partial=self.add_rows,
                                on_error=self.status.setText)  # the window's banner shows it too

    def cancel(self) -> None:
        self.window.jobs.cancel(JOB_KIND)

    def _job_finished(self, _job_id: int, kind: str, status: str) -> None:
        if kind != JOB_KIND:
            return
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if status == "cancelled":
            self.status.setText(f"cancelled: {len(self.rows)} rows kept; Run computes only the rest")

    def _done(self, result) -> None:
        self.rows = _merge(self.rows, result.rows)
        self._fill_sets()
        self.redraw()
        self._paint_graph()
        note = "; ".join(result.notices)
        self.status.setText(f"{result.computed} cells measured, {result.reused} reused"
                            + (f" · {note}" if note else "") + " · hover a curve for its unit")

    def _say(self, message: str) -> None:
        self.status.setText(message)
        self.window.show_error(message)

    def add_rows(self, partial, show: bool = True) -> None:
        """Rows of a finished unit, as the job streams them; ``show``: draw their analysis (the
        Rows box turns to it)."""
        if is_rows(partial):
            self.rows = _merge(self.rows, partial)
            self._fill_sets(_set_of(partial[0]) if show else None)
            self.redraw()
            self._paint_graph()

    def shown_rows(self) -> list[dict]:
        """The rows of the analysis the Rows box picks (all rows when it is empty)."""
        chosen = self.rows_box.currentData()
        return [r for r in self.rows if chosen is None or _set_of(r) == tuple(chosen)]

    def _fill_sets(self, choose: tuple[str, str] | None = None) -> None:
        """One Rows entry per (criterion, split) among the rows; keep the choice unless
        ``choose`` names one."""
        keep = tuple(choose or self.rows_box.currentData() or ())
        sets = list(dict.fromkeys(_set_of(r) for r in self.rows))
        self.rows_box.blockSignals(True)
        self.rows_box.clear()
        for crit, split in sets:
            self.rows_box.addItem(f"{crit} · {'train (allocation)' if split == 'train' else split}", [crit, split])
        index = sets.index(keep) if keep in sets else len(sets) - 1
        self.rows_box.setCurrentIndex(index)
        self.rows_box.blockSignals(False)

    def _paint_graph(self) -> None:
        """The accuracy drop at each unit's lowest density, as an overlay of the dependency graph."""
        from visualizer.ui.views.docks import publish_overlay

        if self.rows:
            publish_overlay(self.window, "sensitivity (accuracy drop)", graph_values(self.shown_rows()),
                            label="accuracy drop, the unit pruned alone to its lowest density",
                            source="sensitivity")

    def clear(self) -> None:
        self.rows = []
        self._hidden = set()
        self._fill_sets()
        self.redraw()

    # --- drawing ---------------------------------------------------------------------------------
    def shown_metric(self) -> str:
        return self.metric_box.currentData()

    def _toggled(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._hidden.discard(name)
        else:
            self._hidden.add(name)
        self._draw_curves()

    def redraw(self) -> None:
        self._fill_units()
        self._draw_curves()
        self._fill_table()

    def _fill_units(self) -> None:
        self.units_list.blockSignals(True)
        self.units_list.clear()
        rows = self.shown_rows()
        units, _levels, _ = _core().heat_table(rows, self.shown_metric()) if rows else ([], [], [])
        for i, name in enumerate(units):
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if name in self._hidden else Qt.CheckState.Checked)
            item.setForeground(QBrush(QColor(*PALETTE[i % len(PALETTE)])))
            self.units_list.addItem(item)
        self.units_list.blockSignals(False)

    def _draw_curves(self) -> None:
        metric = self.shown_metric()
        self.plot.setLabel("left", f"{METRICS[metric]} (one unit pruned)")
        for item in self._items.values():
            self.plot.removeItem(item)
        self._items = {}
        rows = self.shown_rows()
        if not rows:
            self.baseline.setVisible(False)
            return
        units, levels, values = _core().heat_table(rows, metric)
        for i, (name, row) in enumerate(zip(units, values)):
            if name in self._hidden:
                continue
            pts = [(lv, v) for lv, v in zip(levels, row) if math.isfinite(v)]
            colour = PALETTE[i % len(PALETTE)]
            item = pg.PlotDataItem([p[0] for p in pts], [p[1] for p in pts], pen=pg.mkPen(colour, width=2),
                                   symbol="o", symbolSize=6, symbolBrush=pg.mkBrush(colour), name=name)
            item.setToolTip(name)
            item.sigClicked.connect(lambda _item, n=name: self.status.setText(f"unit {n}"))
            self.plot.addItem(item)
            self._items[name] = item
        base = rows[0].get(f"base_{metric}")
        self.baseline.setVisible(base is not None)
        if base is not None:
            self.baseline.setValue(float(base))
        low = min(levels)
        self.plot.setXRange(math.log10(low), 0.0, padding=0.03)

    def _fill_table(self) -> None:
        metric = self.shown_metric()
        rows = self.shown_rows()
        units, levels, values = _core().heat_table(rows, metric) if rows else ([], [], [])
        self.table.clear()
        self.table.setRowCount(len(units))
        self.table.setColumnCount(len(levels))
        self.table.setHorizontalHeaderLabels([f"{lv:.3g}" for lv in levels])
        self.table.setVerticalHeaderLabels(units)
        finite = [v for row in values for v in row if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        cmap = pg.colormap.get("viridis")
        for r, row in enumerate(values):
            for c, v in enumerate(row):
                text = "" if not math.isfinite(v) else (f"{100 * v:.1f}%" if metric == "accuracy" else f"{v:.3g}")
                cell = QTableWidgetItem(text)
                if math.isfinite(v):
                    t = (v - lo) / (hi - lo) if hi > lo else 1.0
                    good = t if metric == "accuracy" else 1.0 - t
                    colour = cmap.map(good, mode="qcolor")
                    cell.setBackground(QBrush(colour))
                    cell.setForeground(QBrush(QColor("black" if good > 0.5 else "white")))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()

    def curve_count(self) -> int:
        return len(self._items)

    def export_widget(self):
        return self


def is_rows(partial) -> bool:
    """Whether a job's partial result is a list of sensitivity rows (one unit's)."""
    return isinstance(partial, list) and bool(partial) and isinstance(partial[0], dict) and "unit" in partial[0]


def _set_of(row: dict) -> tuple[str, str]:
    """The analysis a row belongs to in the Rows box: (criterion, split)."""
    return str(row.get("criterion", "")), str(row.get("split") or "test")


def _cell(r: dict) -> tuple:
    """A row's cell in the view: unit kind, unit, level, criterion, split (the allocation's
    training-split rows never replace the view's test-split ones)."""
    return (r.get("unit_kind"), r.get("unit"), float(r.get("level", 0)), r.get("criterion"), r.get("split") or "test")


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with ``new`` rows added or replacing those of the same cell (:func:`_cell`)."""
    out = {_cell(r): r for r in old}
    for r in new:
        out[_cell(r)] = r
    return list(out.values())


def session_state(window) -> dict | None:
    """What a session keeps of the view: its rows and settings (None when the view was never
    opened or has no rows: nothing is built for it)."""
    views = window.views
    if "sensitivity" not in views or "sensitivity" in getattr(views, "pending", ()):
        return None
    view = views["sensitivity"]
    if not view.rows:
        return None
    return {"rows": [dict(r) for r in view.rows], "unit": view.unit_box.currentData(),
            "levels": view.levels_edit.text(), "metric": view.shown_metric(), "shown": view.rows_box.currentData()}


def restore_session_state(window, saved) -> None:
    """Show a session's sensitivity rows again (a damaged entry is ignored)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list):
        return
    view = window.views["sensitivity"]
    for box, key in ((view.unit_box, "unit"), (view.metric_box, "metric")):
        i = box.findData(saved.get(key))
        if i >= 0:
            box.setCurrentIndex(i)
    if isinstance(saved.get("levels"), str):
        view.levels_edit.setText(saved["levels"])
    view.rows = [dict(r) for r in saved["rows"] if isinstance(r, dict) and "unit" in r and "level" in r]
    shown = saved.get("shown")
    view._fill_sets(tuple(shown) if isinstance(shown, list) and len(shown) == 2 else None)
    view.redraw()


def allocation_rows(window) -> list[dict]:
    """The rows a sensitivity-allocation job may reuse: the view's, all of the shown model
    version (a new model or trained weights clear the view); the job keeps those of its own key
    (model, dataset, criterion, training split, sample, seed, device). None before the view is built."""
    views = window.views
    if "sensitivity" not in views or "sensitivity" in getattr(views, "pending", ()):
        return []
    return [dict(r) for r in views["sensitivity"].rows]


def take_allocation_rows(window, partial, origin) -> bool:
    """Show the loss-curve rows a ranking or sweep job measured for the ``sensitivity``
    allocation (a job's partial result), if the state they were measured on (``origin``) is still
    the one shown. Returns whether ``partial`` was such rows."""
    if not is_rows(partial):
        return False
    if window.state.is_current(origin):
        view = window.views["sensitivity"]
        shown = {_cell(r) for r in view.rows}
        if all(_cell(r) in shown for r in partial):  # reused: the view has them, its choice stays
            view.add_rows(partial, show=False)
            return True
        view.add_rows(partial)
        crit = partial[0].get("criterion")
        view.status.setText(f"loss curves of the sensitivity allocation ({crit}, training split): "
                            f"{len(view.shown_rows())} cells; the allocation reuses them for this model")
    return True


def _prepare(window, options) -> None:
    """Screenshot hook: run the analysis on the loaded model to the end (synchronous jobs)."""
    view = window.views["sensitivity"]
    if window.state.dataset is None:
        return
    view.levels_edit.setText("0.5,0.2,0.1,0.05")
    view.run()


VIEW = ViewSpec("sensitivity", "Sensitivity", SensitivityView, prepare=_prepare, lazy=True,
                description="each layer or coupled group pruned alone: accuracy per density (curves and table)")
