"""Density profile: kept fraction per layer (or per coupled channel group) for the current mask,
beside other criteria, scopes and allocation rules at the same global density, with parameters,
FLOPs, the three sparsities and, on demand, the top Hessian eigenvalue of each unit's block.

Draws what :mod:`visualizer.core.pruning.profile` computes. A job after each load counts the
FLOPs per layer (one forward pass) and finds the coupled channel groups (for the input channels a
removed channel takes with it, and for the per-group rows); the comparisons (another criterion or
scope, or an allocation rule, at the current density) are ranked in a job, reusing the window's
cached rankings; ``owl`` and ``sensitivity`` gather their calibration inputs there
(:func:`visualizer.core.training.sensitivity.allocation_inputs_job`). "λ_max per layer" runs
:func:`visualizer.core.curvature.layerwise.unit_curvature` in a job and paints the result on the
dependency graph too. Export: PNG/SVG of the charts (File > Export or the buttons) and CSV of what
the table shows (in group mode the group rows, then the layer rows; a ``unit_kind`` column tells
them apart). A session keeps the unit mode, the comparisons and the λ_max columns that describe
its model and mask (:func:`session_state`).
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
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.views import ViewSpec
from visualizer.ui.views.base import shrinkable

COLUMNS = ("#", "layer", "shape", "weights", "FLOPs", "kept", "channel\nsparsity",
           "parameter\nsparsity", "FLOP\nsparsity", "λ_max")
GROUP_COLUMNS = ("#", "coupled group", "units", "weights", "kept", "unit\nsparsity", "λ_max", "layers")
UNIT_MODES = {"layer": "per layer", "group": "per coupled group"}
# graph overlays of the per-unit curvature (the dependency graph's overlay box lists them)
LAMBDA_OVERLAYS = {"layer": "λ_max per layer", "group": "λ_max per group"}
LANCZOS_STEPS = 40  # per unit; a block of dimension <= this is solved exactly
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
        self.group_series: dict[str, dict[str, float]] = {}  # label -> {group: kept fraction}
        self.mode = "layer"  # rows per layer or per coupled group
        self.group_rows: list | None = None  # core GroupRow per prunable group (group mode)
        self.curvature: dict[str, dict[str, float]] = {}  # unit kind -> {unit: λ_max}
        self._curvature_density: dict[str, float] = {}  # the density each was computed at
        # what each λ_max column was computed for: (model version, mask generation); the mask
        # generation counts masks_changed, so a column is current while neither has moved since
        self._curvature_origin: dict[str, tuple[int, int]] = {}
        self._mask_generation = 0

        self.compare_box = QComboBox()
        self.compare_box.setToolTip("Add another criterion or scope at the same global density")
        # as wide as a short entry: "allocation: sensitivity (magnitude)" must not widen the view
        # (its minimum width is the whole right dock area's, beside the panels at 1280x720)
        shrinkable(self.compare_box, chars=16)
        self.add_button = QPushButton("Compare")
        self.add_button.clicked.connect(lambda: self.add_comparison(self.compare_box.currentData()))
        self.clear_button = QPushButton("Clear comparisons")
        self.clear_button.clicked.connect(self.clear_comparisons)
        self.png_button = QPushButton("Export PNG/SVG…")
        self.png_button.clicked.connect(self._export_image_dialog)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self._export_csv_dialog)
        self.unit_box = QComboBox()
        for key, text in UNIT_MODES.items():
            self.unit_box.addItem(text, key)
        self.unit_box.setToolTip("rows per prunable tensor, or per coupled channel group (the units "
                                 "structured pruning removes together, across residual adds)")
        self.unit_box.currentIndexChanged.connect(lambda _i: self.set_mode(self.unit_box.currentData()))
        self.lambda_button = QPushButton("λ_max per layer")
        self.lambda_button.setToolTip("top Hessian eigenvalue of each unit's block at the current mask "
                                      "(Lanczos on a test sample); also painted on the dependency graph")
        self.lambda_button.clicked.connect(self.compute_curvature)
        self.note = QLabel("")  # one line: why a comparison or λ_max cannot run, or what it did
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # cut, never wider
        self.lambda_button.setMinimumWidth(0)
        # two rows: in one, the view's minimum width squeezed the panels beside it at 1280x720
        top = QHBoxLayout()
        top.addWidget(self.unit_box)
        top.addWidget(self.lambda_button)
        top.addStretch(1)
        top.addWidget(self.png_button)
        top.addWidget(self.csv_button)
        compare = QHBoxLayout()
        compare.addWidget(QLabel("Compare with"))
        compare.addWidget(self.compare_box)
        compare.addWidget(self.add_button)
        compare.addWidget(self.clear_button)
        compare.addWidget(self.note, 1)

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
        v.addLayout(compare)
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
        from visualizer.core.pruning.profile import SHAPE_ONLY_ALLOCATIONS, allocations_available

        self.compare_box.clear()
        crits = list(getattr(self.window.pruning_panel, "criteria", None) or ["magnitude", "random"])
        scopes = ("global", "layer")
        s = self.state
        for c in crits:
            for sc in scopes:
                if (c, sc) != (s.criterion, s.scope):
                    self.compare_box.addItem(f"{c} · {sc}", (c, sc))
        for name in allocations_available():  # every allocation rule, at the current criterion
            entry = ("allocation", name) if name in SHAPE_ONLY_ALLOCATIONS else (s.criterion, name)
            text = f"allocation: global ({s.criterion})" if name == "global" else _label(*entry)
            self.compare_box.addItem(text, entry)

    def _model_changed(self) -> None:
        s = self.state
        if s.loaded is None:
            return
        key = (id(s.loaded), id(s.params))
        if key == self._built_for:
            return
        self._built_for = key
        self.flops, self.groups, self.series, self._rankings = None, None, {}, {}
        self.group_rows, self.curvature, self._curvature_density = None, {}, {}
        self._curvature_origin = {}
        self._say("")
        self.window.jobs.cancel("profile-curvature")
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
            if "group" in self.curvature:  # restored from a session before the groups were known
                self._publish_curvature("group")
            self.refresh()

        self.window.jobs.submit("profile", "profile: FLOPs and channel groups", structure, on_result=done)
        self.refresh()

    def _masks_changed(self) -> None:
        self._mask_generation += 1
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
        """Compare with ``(criterion, scope)`` (ranked once in a job, or the window's ranking;
        ``scope`` may be an allocation rule: ``global``, ``owl``, ``sensitivity``) or
        ``("allocation", rule)`` for the shape-only rules; the series follows the density slider.
        ``owl`` and ``sensitivity`` without a dataset: one line in the view, nothing added."""
        from visualizer.core.pruning.profile import DATA_ALLOCATIONS

        if entry is None or self.state.loaded is None:
            return
        entry = tuple(entry)
        if entry[1] in DATA_ALLOCATIONS and self.state.dataset is None:
            self._say(f"the {entry[1]} allocation needs calibration data: this model has no "
                              "dataset (choose one under Data)")
            return
        self._say("")
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
        missing = [(c, sc, _structure(sc, structure)) for c, sc in self._wanted if c != "allocation"]
        missing = [k for k in missing if k not in self._rankings and k not in s.rankings]
        if not missing:
            self.refresh()
            return
        model, data, device, loaded = s.loaded.model, s.dataset, s.device, s.loaded
        # the sensitivity allocation's curves: those the sensitivity view holds for this model
        # version are reused, measured ones go there (as for the Scope box's ranking)
        from visualizer.ui.views import sensitivity

        previous = sensitivity.allocation_rows(self.window) if any(k[1] == "sensitivity" for k in missing) else []
        origin, ref = s.provenance(), str(loaded.ref)

        def rank_all():
            from visualizer.core.tasks import sub
            from visualizer.ui.jobs.actions import rank_job

            out = {}
            for i, (crit, scope, struct) in enumerate(missing):
                rk, _scores = yield from sub(rank_job(model, data, crit, scope, struct, device=device, model_ref=ref,
                                                      previous=previous),
                                             i / len(missing), (i + 1) / len(missing), f"{_label(crit, scope)}: ")
                out[(crit, scope, struct)] = rk
            return out

        def done(rankings) -> None:
            if s.loaded is loaded:
                self._rankings.update(rankings)
                self.refresh()

        self.window.jobs.submit("profile-compare", "profile: ranking the comparisons", rank_all, on_result=done,
                                on_partial=lambda rows: sensitivity.take_allocation_rows(self.window, rows, origin))

    def _update_series(self) -> None:
        """Each compared series at the current density: a ranking's per-layer kept counts after
        moving its cut (incremental, no mask copy), or an allocation rule's budgets."""
        from visualizer.core.pruning.profile import Series, allocation_series

        s = self.state
        series = {}
        masks: dict[str, object] = {}
        shapes = {n: tuple(p.shape) for n, p in s.params.items()}
        for crit, scope in self._wanted:
            label = _label(crit, scope)
            if crit == "allocation":
                series[label] = allocation_series(scope, s.density, shapes)
                continue
            key = (crit, scope, _structure(scope, s.structure))
            if key == s.key:  # the window's own cut: its counts as they are
                kept = dict(s.layer_kept)
                masks[label] = s.masks.masks
            else:
                rk = self._rankings.get(key) or s.rankings.get(key, (None,))[0]
                if rk is None:
                    continue  # still ranking
                # the window re-cuts its cached rankings whenever it uses one (set_density)
                rk.set_density(s.density)
                kept = rk.layer_kept()
                if self.mode == "group":  # live views of its mask, read at once by group_profile
                    masks[label] = rk.mask_at(s.density, copy=False).masks
            series[label] = Series(label, {n: kept[n] / t for n, t in s.layer_total.items() if t and n in kept},
                                   kept)
        self.series = series
        self.group_series = {}  # label -> {group: kept fraction}, for the rankings' masks
        if self.mode == "group" and self.groups is not None:
            from visualizer.core.pruning.profile import group_profile

            self.group_series = {label: {r.name: r.density for r in group_profile(self.groups, m)}
                                 for label, m in masks.items()}

    # --- drawing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        from visualizer.core.pruning.profile import density_profile

        s = self.state
        if s.masks is None or s.loaded is None:
            self.profile = None
            self._draw()
            return
        self.profile = density_profile(s.masks.masks, self.order, self.flops, self.groups)
        if self.mode == "group" and self.groups is not None:
            from visualizer.core.pruning.profile import group_profile

            self.group_rows = group_profile(self.groups, s.masks.masks)
        self._update_series()
        self._draw()

    def _say(self, text: str) -> None:
        """The view's one-line note (cut to the view's width; whole as its tooltip)."""
        self.note.setText(text)
        self.note.setToolTip(text)

    # --- layer | group -----------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Rows per layer or per coupled group (the toggle)."""
        if mode not in UNIT_MODES:
            raise ValueError(f"unknown profile unit {mode!r}; choose one of: {', '.join(UNIT_MODES)}")
        self.mode = mode
        self.unit_box.blockSignals(True)
        self.unit_box.setCurrentIndex(self.unit_box.findData(mode))
        self.unit_box.blockSignals(False)
        self.lambda_button.setText(f"λ_max {UNIT_MODES[mode]}")
        self.refresh()

    def rows(self) -> list:
        """The rows on screen: ProfileRow per layer, or GroupRow per coupled group."""
        if self.mode == "group":
            return list(self.group_rows or [])
        return [] if self.profile is None else list(self.profile.rows)

    # --- per-unit curvature ------------------------------------------------------------------
    def compute_curvature(self) -> None:
        """λ_max of each unit's Hessian block at the current mask, in a job (progress per
        Lanczos step); the column and the graph overlay follow when it ends."""
        s = self.state
        if s.loaded is None or s.masks is None:
            return
        if s.dataset is None:
            self._say("λ_max needs evaluation data: this model has no dataset (choose one under Data)")
            return
        mode = self.mode
        if mode == "group" and not self.groups:
            self._say("no coupled channel groups known for this model yet: λ_max per layer instead")
            return
        from visualizer.core.workspace import device_name, resolve_device
        from visualizer.ui.views.docks import IN_MEMORY_SAMPLES, sample_batches

        try:
            device = device_name(resolve_device(s.device))
        except ValueError as exc:
            self._say(f"device: {exc}")
            return
        model, data, masks, groups = s.loaded.model, s.dataset, s.masks.copy(), self.groups
        density, key = s.kept() / max(s.total(), 1), self._built_for
        origin = (s.model_version, self._mask_generation)
        n, size = sample_batches(IN_MEMORY_SAMPLES, data)

        def job():
            from visualizer.core.curvature.layerwise import unit_curvature
            from visualizer.core.tasks import Step
            from visualizer.core.workspace import curvature_batches, model_on

            yield Step("evaluation batches", 0.0)
            evalset = curvature_batches(data, n_batches=n, batch_size=size).to(device)
            work = model_on(model, device)
            return (yield from unit_curvature(work, evalset, masks, unit=mode, groups=groups,
                                              max_steps=LANCZOS_STEPS))

        def done(result) -> None:
            if self._built_for != key:
                return  # another model arrived meanwhile
            self.curvature[mode] = {name: u.lambda_max for name, u in result.items()}
            self._curvature_density[mode] = density
            self._curvature_origin[mode] = origin
            self._say(f"λ_max {UNIT_MODES[mode]} at density {density:.1%} ({len(result)} units, "
                              f"{n * size} test samples); on the Graph view as the overlay "
                              f"“{LAMBDA_OVERLAYS[mode]}”")
            self._publish_curvature(mode)
            self._draw()

        self._say(f"computing λ_max {UNIT_MODES[mode]} on {device}…")
        self.window.jobs.submit("profile-curvature", f"λ_max {UNIT_MODES[mode]}", job, on_result=done,
                                on_error=self._say)

    def _publish_curvature(self, mode: str) -> None:
        """Paint the per-unit λ_max on the dependency graph: a layer's own value, or the largest
        of the groups it belongs to."""
        from visualizer.ui.views.docks import publish_overlay

        values = self.curvature.get(mode, {})
        per_layer: dict[str, float] = {}
        if mode == "layer":
            for name, lam in values.items():
                per_layer[_layer(name)] = max(per_layer.get(_layer(name), float("-inf")), lam)
        else:
            from visualizer.core.pruning.profile import group_profile

            for row in group_profile(self.groups or [], self.state.masks.masks):
                if row.name in values:
                    for t in row.layers:
                        per_layer[_layer(t)] = max(per_layer.get(_layer(t), float("-inf")), values[row.name])
        publish_overlay(self.window, LAMBDA_OVERLAYS[mode], per_layer,
                        label=f"top Hessian eigenvalue of each {mode}'s block", source="profile")

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
        if self.mode == "group":
            self._draw_groups()
            return
        rows = prof.rows
        x = np.arange(len(rows), dtype=float)
        dens = np.array([r.density for r in rows])
        bars = pg.BarGraphItem(x=x, height=dens, width=0.8, brush=(31, 94, 168, 200), pen=None)
        self.density_plot.addItem(bars)
        self.legend.addItem(bars, f"current: {self.state.criterion} · {self.state.scope}")
        self.density_plot.setLabel("bottom", "")
        self.size_plot.setLabel("bottom", "layer (in the order the model runs)")
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
        self._headroom(1 + len(self.series))
        self._fill_table(rows)
        self._fill_summary(prof)

    def _draw_groups(self) -> None:
        """Group mode: the kept fraction of each coupled group's slices, and of every compared
        ranking's mask; the shape-only allocations (uniform, ERK) give counts per layer, not
        which weights, so they have no group line (the summary names them)."""
        rows = self.group_rows
        if rows is None:
            why = ("finding the coupled channel groups…" if self.groups is None and self._built_for
                   else "no coupled channel groups in this model")
            self.table.setRowCount(0)
            self.summary.setText(f"<i>{why}</i>")
            return
        x = np.arange(len(rows), dtype=float)
        bars = pg.BarGraphItem(x=x, height=np.array([r.density for r in rows]), width=0.8,
                               brush=(31, 94, 168, 200), pen=None)
        self.density_plot.addItem(bars)
        self.legend.addItem(bars, f"current: {self.state.criterion} · {self.state.scope} (per coupled group)")
        for label, dens in self.group_series.items():
            colour = SERIES_PENS[list(self.series).index(label) % len(SERIES_PENS)]
            self.density_plot.plot(x, np.array([dens.get(r.name, np.nan) for r in rows]),
                                   pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour,
                                   symbolPen=None, name=label)
        layer_only = [label for label in self.series if label not in self.group_series]
        target = self.state.kept() / self.state.total() if self.state.total() else 1.0
        self.density_plot.addItem(pg.InfiniteLine(pos=target, angle=0, pen=pg.mkPen((90, 90, 90), style=Qt.PenStyle.DashLine)))
        weights = np.log10(np.maximum([r.params for r in rows], 1))
        self.size_plot.addItem(pg.BarGraphItem(x=x, height=weights, width=0.6, brush=(120, 120, 120), pen=None))
        self.size_legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=0.1, brush=(120, 120, 120)),
                                 "weights in the group's slices")
        self.size_plot.setLabel("bottom", "coupled channel group")
        self.size_plot.setYRange(0, max(weights, default=1.0) * 1.45 + 0.5, padding=0)
        self.density_plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
        self._headroom(1 + len(self.group_series))
        self._set_ticks()
        lam = self.curvature.get("group", {})
        t = self.table
        t.setColumnCount(len(GROUP_COLUMNS))
        t.setHorizontalHeaderLabels(self._headers(GROUP_COLUMNS))
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            vals = [str(i + 1), r.name, f"{r.units}", f"{r.params:,}", f"{r.kept:,} ({r.density:.1%})",
                    f"{r.unit_sparsity:.1%} ({r.removed}/{r.units})", _lam(lam.get(r.name)),
                    ", ".join(_short(n) for n in r.layers)]
            for j, v in enumerate(vals):
                item = QTableWidgetItem(v)
                if j == 7:
                    item.setToolTip("\n".join(r.layers))  # the whole list; the cell may be cut
                if j not in (1, 7):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(i, j, item)
        params, kept = sum(r.params for r in rows), sum(r.kept for r in rows)
        units, removed = sum(r.units for r in rows), sum(r.removed for r in rows)
        self.summary.setText(
            f"{len(rows)} coupled groups: <b>{removed:,}</b> of {units:,} units removed "
            f"({removed / max(units, 1):.1%}) · {kept:,} of {params:,} weights in their slices kept "
            f"({kept / max(params, 1):.1%}; a weight read by two groups counts in both)"
            + (f" · per layer only (no weight order): {', '.join(layer_only)}" if layer_only else ""))

    def _headroom(self, entries: int) -> None:
        """Room above 1.0 for the legend's rows (three entries a row): a line at density 1 ran
        under a second legend row at 1280x720."""
        rows = -(-entries // 3)
        self.density_plot.setYRange(0, 1.12 + 0.14 * rows, padding=0)

    def _headers(self, columns) -> list[str]:
        """The column titles, λ_max with the density it was computed at."""
        at = self._curvature_density.get(self.mode)
        return [c if c != "λ_max" or at is None else f"λ_max\n(at {at:.1%})" for c in columns]

    def _set_ticks(self, *_args) -> None:
        """Unit names under the bars where each fits its bar's width, else the row numbers."""
        rows = self.rows()
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
        t.setColumnCount(len(COLUMNS))
        t.setHorizontalHeaderLabels(self._headers(COLUMNS))
        t.setRowCount(len(rows))
        lam = self.curvature.get("layer", {})
        for i, r in enumerate(rows):
            vals = [str(i + 1), r.name, "×".join(map(str, r.shape)), f"{r.params:,}",
                    "" if r.flops is None else f"{r.flops:,}", f"{r.kept:,} ({r.density:.1%})",
                    f"{r.channel_sparsity:.1%} ({r.removed_channels}/{r.channels})",
                    f"{r.parameter_sparsity:.1%}", f"{r.flop_sparsity:.1%}", _lam(lam.get(r.name))]
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
        rows = self.rows()
        if 0 <= row < len(rows):
            name = rows[row].layers[0] if self.mode == "group" and rows[row].layers else rows[row].name
            if name in self.state.prunable:
                self.state.select(name)

    # --- export ------------------------------------------------------------------------------
    def export_widget(self):
        return self.canvas

    def export_csv(self, path: str):
        from visualizer.core.pruning.profile import write_profile_csv

        if self.profile is None:
            raise ValueError("no profile: load a model first")
        lam = self.curvature.get("layer")
        groups = {}
        if self.mode == "group":  # what is shown: the group rows (then the layer rows, by unit_kind)
            if self.group_rows is None:
                raise ValueError("no coupled channel groups yet: export again once they are found")
            glam = self.curvature.get("group")
            groups = {"group_rows": self.group_rows, "group_series": self.group_series,
                      "group_extra": {"lambda_max": glam} if glam else None}
        return write_profile_csv(self.profile, path, list(self.series.values()),
                                 {"lambda_max": lam} if lam else None, **groups)

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
    """A tick label: a layer without ``.weight``, a group by its root (``stem.0 (channels: 16)``
    -> ``stem.0``)."""
    name = name.split(" (", 1)[0]
    return name[:-7] if name.endswith(".weight") else name


def _layer(param: str) -> str:
    """The graph node of a parameter: its module path."""
    return param.rsplit(".", 1)[0] if "." in param else param


def _lam(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _label(crit: str, scope: str) -> str:
    """A comparison's name: ``criterion · scope``, or the allocation rule (with its criterion
    when the rule reads scores or data)."""
    from visualizer.core.pruning.profile import allocations_available

    if crit == "allocation":
        return f"allocation: {scope}"
    if scope in allocations_available() and scope not in ("global", "layer"):
        return f"allocation: {scope} ({crit})"
    return f"{crit} · {scope}"


def _structure(scope: str, structure: str) -> str:
    """An allocation rule other than the plain scopes spreads single weights (unstructured)."""
    return structure if scope in ("global", "layer") else "unstructured"


def curvature_is_current(view: ProfileView, mode: str) -> bool:
    """Whether the λ_max column of ``mode`` was computed for the shown model version and mask
    (no mask change since its job started)."""
    origin = view._curvature_origin.get(mode)
    return origin is not None and origin == (view.state.model_version, view._mask_generation)


def session_state(window) -> dict | None:
    """What a session keeps of the view (None when the view was never built): the unit mode, the
    comparisons, and each λ_max column with its density and whether it describes the saved
    model and mask (``current``; a session restores only those)."""
    views = window.views
    if "profile" not in views or "profile" in getattr(views, "pending", ()):
        return None
    view = views["profile"]
    lam = {mode: {"values": dict(values), "density": view._curvature_density.get(mode),
                  "current": curvature_is_current(view, mode)}
           for mode, values in view.curvature.items()}
    return {"mode": view.mode, "comparisons": [list(e) for e in view._wanted], "lambda_max": lam}


def restore_session_state(window, saved) -> None:
    """Show a session's profile again: its unit mode, its comparisons (ranked again in a job)
    and the λ_max columns that were current when it was saved (the session restores that model
    and mask); one that was not is left out, and the view's note says so. Call it after the
    session's mask is installed: the columns count as current for that mask. A damaged entry is
    ignored."""
    if not isinstance(saved, dict):
        return
    view = window.views["profile"]
    if saved.get("mode") in UNIT_MODES:
        view.set_mode(saved["mode"])
    entries = [tuple(e) for e in saved.get("comparisons") or () if isinstance(e, list) and len(e) == 2
               and all(isinstance(x, str) for x in e)]
    stale = []
    view.curvature, view._curvature_density, view._curvature_origin = {}, {}, {}
    for mode, entry in (saved.get("lambda_max") or {}).items():
        if mode not in UNIT_MODES or not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
            continue
        if entry.get("current") is not True:
            stale.append(UNIT_MODES[mode])
            continue
        view.curvature[mode] = {str(k): float(v) for k, v in entry["values"].items() if isinstance(v, (int, float))}
        if isinstance(entry.get("density"), (int, float)):
            view._curvature_density[mode] = float(entry["density"])
        view._curvature_origin[mode] = (view.state.model_version, view._mask_generation)
        if mode == "layer" or view.groups is not None:  # group mode: published when the groups arrive
            view._publish_curvature(mode)
    view._wanted = []
    for entry in entries:
        view.add_comparison(entry)
    if stale:
        view._say(f"λ_max {' and '.join(stale)} in the session was computed for another mask or weights: "
                  "not restored (press λ_max to compute it for this one)")
    view.refresh()


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
