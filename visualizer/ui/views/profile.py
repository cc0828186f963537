"""Density profile: kept fraction per layer for the current mask, beside other criteria and scopes
at the same global density, with parameters, FLOPs and the three sparsities per layer.

Draws what :mod:`visualizer.core.pruning.profile` computes. A job after each load counts the
FLOPs per layer (one forward pass) and finds the coupled channel groups (for the input channels a
removed channel takes with it); the comparisons (another criterion or scope at the current
density) are ranked in a job, reusing the window's cached rankings. Export: PNG/SVG of the charts
(File > Export or the buttons) and CSV of the table.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.views import ViewSpec

COLUMNS = ("#", "layer", "shape", "weights", "FLOPs", "kept", "channel\nsparsity",
           "parameter\nsparsity", "FLOP\nsparsity")
SERIES_PENS = [(214, 95, 48), (46, 160, 67), (148, 103, 189), (140, 86, 75), (227, 119, 194)]


class ProfileView(QWidget):
    """Bars: the current mask's kept fraction per layer; lines: the comparisons."""

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.state = window.state
        self.profile = None  # core Profile of the current mask
        self.series: dict[str, object] = {}  # label -> core Series
        self.flops: dict[str, int] | None = None
        self.groups = None
        self.order: list[str] = []
        self._built_for = None
        self._wanted: list[tuple[str, str]] = []  # compared (criterion, scope) or ("allocation", rule)
        self._rankings: dict = {}  # (criterion, scope, structure) -> Ranking this view owns

        self.compare_box = QComboBox()
        self.compare_box.setToolTip("Add another criterion or scope at the same global density")
        self.add_button = QPushButton("Compare")
        self.add_button.clicked.connect(lambda: self.add_comparison(self.compare_box.currentData()))
        self.clear_button = QPushButton("Clear comparisons")
        self.clear_button.clicked.connect(self.clear_comparisons)
        self.png_button = QPushButton("Export PNG/SVG…")
        self.png_button.clicked.connect(self._export_image_dialog)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self._export_csv_dialog)
        top = QHBoxLayout()
        top.addWidget(QLabel("Compare with"))
        top.addWidget(self.compare_box)
        top.addWidget(self.add_button)
        top.addWidget(self.clear_button)
        top.addStretch(1)
        top.addWidget(self.png_button)
        top.addWidget(self.csv_button)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground("w")
        self.density_plot = self.canvas.addPlot(row=0, col=0)
        self.density_plot.setLabel("left", "kept fraction")
        self.density_plot.getAxis("left").enableAutoSIPrefix(False)
        self.density_plot.setYRange(0, 1.25, padding=0)  # headroom: the legend sits above the bars
        self.density_plot.getAxis("left").setTicks([[(v, f"{v:.1f}") for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]])
        self.density_plot.showGrid(False, True, 0.3)
        self.density_plot.setMouseEnabled(x=True, y=False)
        self.legend = self.density_plot.addLegend(offset=(-10, 2), labelTextColor=(30, 30, 30), colCount=3)
        self.size_plot = self.canvas.addPlot(row=1, col=0)
        self.size_plot.setLabel("left", "log10 count")
        self.size_plot.setLabel("bottom", "layer (in the order the model runs)")
        self.size_plot.setXLink(self.density_plot)
        self.size_plot.setMouseEnabled(x=True, y=False)
        self.size_legend = self.size_plot.addLegend(offset=(-10, 2), labelTextColor=(30, 30, 30), colCount=2)
        self.density_plot.getViewBox().sigResized.connect(self._set_ticks)
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.cellDoubleClicked.connect(self._row_double_clicked)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.summary.setToolTip(
            "channel sparsity: output channels with every weight pruned; parameter sparsity: pruned "
            "weights; FLOP sparsity: forward FLOPs of pruned weights and of weights that read a "
            "removed channel (Torch-Pruning's 'pruning ratio' is a channel ratio)")

        upper = QWidget()
        uv = QVBoxLayout(upper)
        uv.setContentsMargins(0, 0, 0, 0)
        uv.addWidget(self.canvas, 1)
        uv.addWidget(self.summary)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        v = QVBoxLayout(self)
        v.setContentsMargins(2, 2, 2, 2)
        v.addLayout(top)
        v.addWidget(split, 1)

        self._timer = QTimer(self)  # the table follows the slider, coalesced
        self._timer.setSingleShot(True)
        self._timer.setInterval(80)
        self._timer.timeout.connect(self.refresh)

        s = self.state
        s.model_changed.connect(self._model_changed)
        s.masks_changed.connect(self._masks_changed)
        s.pruning_changed.connect(self._fill_compare_box)
        self._fill_compare_box()
        if s.loaded is not None:
            self._model_changed()

    # --- state -> view ---------------------------------------------------------------------
    def _fill_compare_box(self) -> None:
        self.compare_box.clear()
        crits = list(getattr(self.window.pruning_panel, "criteria", None) or ["magnitude", "random"])
        scopes = ("global", "layer")
        s = self.state
        for c in crits:
            for sc in scopes:
                if (c, sc) != (s.criterion, s.scope):
                    self.compare_box.addItem(f"{c} · {sc}", (c, sc))
        from visualizer.core.pruning.profile import allocations_available

        for name in allocations_available():  # the allocation rules, where installed
            self.compare_box.addItem(f"allocation: {name}", ("allocation", name))

    def _model_changed(self) -> None:
        s = self.state
        if s.loaded is None:
            return
        key = (id(s.loaded), id(s.params))
        if key == self._built_for:
            return
        self._built_for = key
        self.flops, self.groups, self.series, self._rankings = None, None, {}, {}
        self.order = list(s.prunable)
        model, names, dataset = s.loaded.model, list(s.prunable), s.dataset_name

        def structure():
            from visualizer.core.pruning.overview import execution_order
            from visualizer.core.pruning.profile import flops_by_parameter
            from visualizer.core.structure.graph import example_input
            from visualizer.core.structure.groups import find_groups_job
            from visualizer.core.structure.speed import count_flops
            from visualizer.core.tasks import Step

            yield Step("profile: FLOPs per layer", 0.0)
            try:
                example = example_input(model, dataset, batch=1)
                _total, per_module = count_flops(model, example)
                flops = flops_by_parameter(per_module, names)
            except Exception:  # a model that does not run on a guessed input: no FLOP column
                example, flops = None, None
            order = execution_order(model, names, example)
            yield Step("profile: coupled channel groups", 0.3)
            try:
                groups = (yield from find_groups_job(model, example)).prunable()
            except Exception:
                groups = None
            return flops, groups, order

        def done(result) -> None:
            if self._built_for != key:
                return
            self.flops, self.groups, self.order = result
            self.refresh()

        self.window.jobs.submit("profile", "profile: FLOPs and channel groups", structure, on_result=done)
        self.refresh()

    def _masks_changed(self) -> None:
        if self.isVisible():
            self._timer.start()
        else:  # behind another tab: counted again when it comes to the front
            self._stale = True

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if getattr(self, "_stale", False):
            self._stale = False
            self._timer.start()

    # --- comparisons -------------------------------------------------------------------------
    def add_comparison(self, entry) -> None:
        """Compare with ``(criterion, scope)`` (ranked once in a job, or the window's ranking) or
        ``("allocation", rule)``; the series follows the density slider."""
        if entry is None or self.state.loaded is None:
            return
        entry = tuple(entry)
        if entry not in self._wanted:
            self._wanted.append(entry)
        self._rank_missing()

    def clear_comparisons(self) -> None:
        self._wanted = []
        self.series = {}
        self.window.jobs.cancel("profile-compare")
        self.refresh()

    def _rank_missing(self) -> None:
        """Rank the compared criteria the window has no ranking for (a job), then draw."""
        s = self.state
        structure = s.structure
        missing = [(c, sc) for c, sc in self._wanted if c != "allocation"
                   and (c, sc, structure) not in self._rankings and (c, sc, structure) not in s.rankings]
        if not missing:
            self.refresh()
            return
        model, data, device, loaded = s.loaded.model, s.dataset, s.device, s.loaded

        def rank_all():
            from visualizer.core.tasks import sub
            from visualizer.ui.jobs.actions import rank_job

            out = {}
            for i, (crit, scope) in enumerate(missing):
                rk, _scores = yield from sub(rank_job(model, data, crit, scope, structure, device=device),
                                             i / len(missing), (i + 1) / len(missing), f"{crit} · {scope}: ")
                out[(crit, scope, structure)] = rk
            return out

        def done(rankings) -> None:
            if s.loaded is loaded:
                self._rankings.update(rankings)
                self.refresh()

        self.window.jobs.submit("profile-compare", "profile: ranking the comparisons", rank_all, on_result=done)

    def _update_series(self) -> None:
        """Each compared series at the current density: a ranking's per-layer kept counts after
        moving its cut (incremental, no mask copy), or an allocation rule's budgets."""
        from visualizer.core.pruning.profile import Series, allocation_series

        s = self.state
        series = {}
        shapes = {n: tuple(p.shape) for n, p in s.params.items()}
        for crit, scope in self._wanted:
            label = f"{crit}: {scope}" if crit == "allocation" else f"{crit} · {scope}"
            if crit == "allocation":
                series[label] = allocation_series(scope, s.density, shapes)
                continue
            key = (crit, scope, s.structure)
            if key == s.key:  # the window's own cut: its counts as they are
                dens = {n: s.layer_kept[n] / t for n, t in s.layer_total.items() if t}
            else:
                rk = self._rankings.get(key) or s.rankings.get(key, (None,))[0]
                if rk is None:
                    continue  # still ranking
                # the window re-cuts its cached rankings whenever it uses one (set_density)
                rk.set_density(s.density)
                dens = rk.layer_densities()
            series[label] = Series(label, dens)
        self.series = series

    # --- drawing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        from visualizer.core.pruning.profile import density_profile

        s = self.state
        if s.masks is None or s.loaded is None:
            self.profile = None
            self._draw()
            return
        self.profile = density_profile(s.masks.masks, self.order, self.flops, self.groups)
        self._update_series()
        self._draw()

    def _draw(self) -> None:
        self.density_plot.clear()
        self.size_plot.clear()
        self.legend.clear()
        self.size_legend.clear()
        prof = self.profile
        if prof is None:
            self.table.setRowCount(0)
            self.summary.setText("<i>load a model</i>")
            return
        rows = prof.rows
        x = np.arange(len(rows), dtype=float)
        dens = np.array([r.density for r in rows])
        bars = pg.BarGraphItem(x=x, height=dens, width=0.8, brush=(31, 94, 168, 200), pen=None)
        self.density_plot.addItem(bars)
        self.legend.addItem(bars, f"current: {self.state.criterion} · {self.state.scope}")
        for i, ser in enumerate(self.series.values()):
            y = np.array([ser.densities.get(r.name, np.nan) for r in rows])
            colour = SERIES_PENS[i % len(SERIES_PENS)]
            item = self.density_plot.plot(x, y, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                                          symbolBrush=colour, symbolPen=None, name=ser.label)
            del item
        target = self.state.kept() / self.state.total() if self.state.total() else 1.0
        self.density_plot.addItem(pg.InfiniteLine(pos=target, angle=0, pen=pg.mkPen((90, 90, 90), style=Qt.PenStyle.DashLine)))
        weights = np.log10(np.maximum([r.params for r in rows], 1))
        self.size_plot.addItem(pg.BarGraphItem(x=x - 0.2, height=weights, width=0.4, brush=(120, 120, 120), pen=None))
        self.size_legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=0.1, brush=(120, 120, 120)), "weights")
        if any(r.flops is not None for r in rows):
            fl = np.log10(np.maximum([r.flops or 1 for r in rows], 1))
            self.size_plot.addItem(pg.BarGraphItem(x=x + 0.2, height=fl, width=0.4, brush=(230, 150, 40), pen=None))
            self.size_legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=0.1, brush=(230, 150, 40)),
                                     "FLOPs (one example)")
        self._set_ticks()
        top = max([*weights, *(fl if any(r.flops is not None for r in rows) else [])], default=1.0)
        self.size_plot.setYRange(0, top * 1.45 + 0.5, padding=0)
        self.density_plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
        self._fill_table(rows)
        self._fill_summary(prof)

    def _set_ticks(self, *_args) -> None:
        """Layer names under the bars where each fits its bar's width, else the row numbers."""
        rows = [] if self.profile is None else self.profile.rows
        if not rows:
            return
        metrics = QFontMetrics(self.density_plot.getAxis("bottom").style.get("tickFont") or self.font())
        per_bar = self.density_plot.getViewBox().width() / max(len(rows), 1)
        names = [_short(r.name) for r in rows]
        fits = max(metrics.horizontalAdvance(n) for n in names) + 8 <= per_bar
        ticks = [(i, names[i] if fits else str(i + 1)) for i in range(len(rows))]
        step = 1 if fits else max(1, -(-len(rows) * 28 // max(int(self.density_plot.getViewBox().width()), 1)))
        for plot in (self.density_plot, self.size_plot):
            plot.getAxis("bottom").setTicks([ticks[::step]])

    def _fill_table(self, rows) -> None:
        t = self.table
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            vals = [str(i + 1), r.name, "×".join(map(str, r.shape)), f"{r.params:,}",
                    "" if r.flops is None else f"{r.flops:,}", f"{r.kept:,} ({r.density:.1%})",
                    f"{r.channel_sparsity:.1%} ({r.removed_channels}/{r.channels})",
                    f"{r.parameter_sparsity:.1%}", f"{r.flop_sparsity:.1%}"]
            for j, v in enumerate(vals):
                item = QTableWidgetItem(v)
                if j != 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(i, j, item)

    def _fill_summary(self, prof) -> None:
        tot = prof.totals()
        fs = tot.flop_sparsity
        flop = "FLOPs not counted yet" if fs is None else \
            f"FLOP sparsity <b>{fs:.1%}</b> (of {tot.flops:,} FLOPs per example)"
        note = "" if self.groups is not None else " · channel groups not known yet: FLOP sparsity counts pruned weights only"
        self.summary.setText(
            f"whole model: channel sparsity <b>{tot.channel_sparsity:.1%}</b> "
            f"({tot.removed_channels:,} of {tot.channels:,} output channels removed) · parameter sparsity "
            f"<b>{tot.parameter_sparsity:.1%}</b> ({tot.params - tot.kept:,} of {tot.params:,} weights) · "
            f"{flop}{note}")

    def _row_double_clicked(self, row: int, _col: int) -> None:
        if self.profile is not None and 0 <= row < len(self.profile.rows):
            self.state.select(self.profile.rows[row].name)

    # --- export ------------------------------------------------------------------------------
    def export_widget(self):
        return self.canvas

    def export_csv(self, path: str):
        from visualizer.core.pruning.profile import write_profile_csv

        if self.profile is None:
            raise ValueError("no profile: load a model first")
        return write_profile_csv(self.profile, path, list(self.series.values()))

    def export_image(self, path: str):
        from visualizer.ui.files.export import export_view

        return export_view(self.window, "profile", path)

    def _export_image_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export profile chart", "profile.png",
                                              "PNG image (*.png);;SVG image (*.svg)")
        if path:
            self.window.safely(lambda: self.export_image(path), f"wrote {path}")

    def _export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export profile table", "profile.csv", "CSV (*.csv)")
        if path:
            self.window.safely(lambda: self.export_csv(path), f"wrote {path}")


def _short(name: str) -> str:
    return name[:-7] if name.endswith(".weight") else name


def _prepare(window, options) -> None:
    view = window.views["profile"]
    view.refresh()


VIEW = ViewSpec(
    "profile",
    "Density profile",
    ProfileView,
    prepare=_prepare,
    description="kept fraction per layer beside other criteria; channel, parameter and FLOP sparsity",
    lazy=True,
)
