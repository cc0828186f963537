"""Views of the theory labs (visualizer.core.labs) and the Labs dock that runs them.

Each view draws what a lab measured next to what the theory predicts, from plain sequences
(no numerics here): the exact-support probability of magnitude pruning at initialisation with
Monte Carlo error bars; the phase-transition heatmap under the Donoho-Tanner l1 curve; A-optimal
vs magnitude errors around y = x with the subsets' overlap; and the four accuracies of the
random-labels lab inside the binomial band around chance. See docs/theory.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.views.base import AnalysisView, density_colormap, set_title, style_plot


def _legend_below(canvas: pg.GraphicsLayoutWidget, plot: pg.PlotItem, row: int, col: int) -> None:
    """The plot's legend in the layout cell under it, never over the data: anchored in a corner
    of the plot it covered the Monte Carlo points, the heatmap and the scatter. Named curves
    still land in it, since PlotItem adds them to ``plot.legend``."""
    legend = pg.LegendItem(offset=None, colCount=1)
    canvas.addItem(legend, row=row, col=col)
    plot.legend = legend


def _plain_axes(plot: pg.PlotItem) -> None:
    """Probabilities and rates read as they are: no "(x0.001)" SI rescaling of the axes."""
    for name in ("left", "bottom"):
        plot.getAxis(name).enableAutoSIPrefix(False)


class _OnePlotView(AnalysisView):
    """A lab view with one plot (plain axes) that draws ``self.data`` once ``set_data`` gives it."""

    has_legend = True  # under the plot

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.plot = self.add_plot(self.canvas, 0, 0)
        if self.has_legend:
            _legend_below(self.canvas, self.plot, 1, 0)
        _plain_axes(self.plot)
        self.data: dict | None = None
        self.ready()


class MaskProbabilityView(_OnePlotView):
    """p(t / sigma) of the formula as a curve, the Monte Carlo estimates as points with
    +- 2 standard-error bars."""

    title = "Mask probability"

    def set_data(self, ratios: Sequence[float], monte_carlo: Sequence[float], stderr: Sequence[float],
                 curve_x: Sequence[float], curve_formula: Sequence[float], n: int, k: int, trials: int) -> None:
        """Monte Carlo estimates at ``ratios`` (t / sigma) and the formula along ``curve_x``."""
        self.data = dict(x=np.asarray(ratios, float), cx=np.asarray(curve_x, float),
                         formula=np.asarray(curve_formula, float),
                         mc=np.asarray(monte_carlo, float), se=np.asarray(stderr, float),
                         n=n, k=k, trials=trials)
        self.redraw()

    def set_theory(self, curve_x: Sequence[float], curve_formula: Sequence[float], n: int, k: int) -> None:
        """Only the formula's curve (a control moved): drawn at once, the Monte Carlo points
        of the old settings are dropped until the new run streams in."""
        self.data = dict(x=np.zeros(0), cx=np.asarray(curve_x, float),
                         formula=np.asarray(curve_formula, float), mc=np.zeros(0), se=np.zeros(0),
                         n=n, k=k, trials=0)
        self.redraw()

    def redraw(self) -> None:
        plot, theme, d = self.plot, self.theme, self.data
        plot.clear()
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "threshold t / sigma")
        plot.setLabel("left", "P(mask = true support)")
        plot.getAxis("left").enableAutoSIPrefix(False)
        if d is None:
            return
        plot.plot(d["cx"], d["formula"], pen=self.pen(0, 1.5),
                  name="[2(1 - Phi(t/sigma))]^k [2 Phi(t/sigma) - 1]^(n-k)")
        if d["trials"]:  # none yet right after a control moved
            plot.addItem(pg.ErrorBarItem(x=d["x"], y=d["mc"], height=4 * d["se"],
                                         pen=pg.mkPen(theme.color(1), width=theme.line_width), beam=0.04))
            plot.plot(d["x"], d["mc"], pen=None, symbol="o", symbolSize=8 * theme.marker_scale,
                      symbolBrush=theme.color(1), symbolPen=None,
                      name=f"Monte Carlo ({d['trials']} draws) +- 2 s.e.")
        set_title(plot, f"Magnitude pruning at init recovers a {d['k']}-sparse support in n = {d['n']}",
                  theme)
        style_plot(plot, theme)  # the legend entries added above take the theme's colours


class PhaseTransitionView(_OnePlotView):
    """Success probability over (delta = m/n, rho = k/m) as a heatmap, with the l1 weak threshold
    rho_W(delta) on top."""

    title = "Phase transition"

    bar: pg.ColorBarItem | None = None  # added on the first draw with data

    def set_data(self, deltas: Sequence[float], rhos: Sequence[float], success, curve_delta: Sequence[float],
                 curve_rho: Sequence[float], solver: str, n: int, trials: int) -> None:
        """``success[i][j]``: the success rate at rho = rhos[i], delta = deltas[j]."""
        self.data = dict(deltas=np.asarray(deltas, float), rhos=np.asarray(rhos, float),
                         z=np.asarray(success, float), cd=np.asarray(curve_delta, float),
                         cr=np.asarray(curve_rho, float), solver=solver, n=n, trials=trials)
        self.redraw()

    @staticmethod
    def _edges(centres: np.ndarray) -> np.ndarray:
        """Cell edges halfway between the grid's centres (the grid need not be uniform)."""
        if centres.size == 1:
            return np.array([centres[0] - 0.05, centres[0] + 0.05])
        mid = (centres[1:] + centres[:-1]) / 2
        return np.concatenate([[centres[0] - (mid[0] - centres[0])], mid, [centres[-1] + (centres[-1] - mid[-1])]])

    def redraw(self) -> None:
        plot, theme, d = self.plot, self.theme, self.data
        plot.clear()
        plot.setLabel("bottom", "delta = m / n (measurements per unknown)")
        plot.setLabel("left", "rho = k / m (nonzeros per measurement)")
        if d is None:
            return
        xe, ye = self._edges(d["deltas"]), self._edges(d["rhos"])
        X, Y = np.meshgrid(xe, ye)
        mesh = pg.PColorMeshItem(X, Y, d["z"], colorMap=density_colormap(), levels=(0.0, 1.0))
        plot.addItem(mesh)
        if self.bar is None:
            self.bar = pg.ColorBarItem(values=(0, 1), colorMap=density_colormap(), label="success rate",
                                       interactive=False)
            self.canvas.addItem(self.bar, 0, 1)
        plot.plot(d["cd"], d["cr"], pen=pg.mkPen("#ffffff", width=theme.line_width * 2.5))
        plot.plot(d["cd"], d["cr"], pen=pg.mkPen(theme.color(1), width=theme.line_width * 1.5),
                  name="l1 weak threshold (Donoho & Tanner 2009)")
        plot.setXRange(xe[0], xe[-1], padding=0)
        plot.setYRange(ye[0], ye[-1], padding=0)
        set_title(plot, f"{d['solver'].upper()}, n = {d['n']}, {d['trials']} trials per cell; "
                        "success: relative error below 1e-2", theme)
        style_plot(plot, theme)


class AOptimalView(AnalysisView):
    """Left: each trial's magnitude-heuristic error against the A-optimal error, with y = x
    (points on the line: the heuristic found an optimal subset). Right: the subsets' overlap."""

    title = "A-optimal"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.scatter_plot = self.add_plot(self.canvas, 0, 0)
        self.overlap_plot = self.add_plot(self.canvas, 0, 1)
        _legend_below(self.canvas, self.scatter_plot, 1, 0)
        _plain_axes(self.scatter_plot)
        _plain_axes(self.overlap_plot)
        self.data: dict | None = None
        self.ready()

    def set_data(self, a_optimal_error: Sequence[float], magnitude_error: Sequence[float],
                 overlap: Sequence[float], m: int, d: int, k: int) -> None:
        self.data = dict(opt=np.asarray(a_optimal_error, float), mag=np.asarray(magnitude_error, float),
                         overlap=np.asarray(overlap, float), m=m, d=d, k=k)
        self.redraw()

    def redraw(self) -> None:
        sp, op, theme, d = self.scatter_plot, self.overlap_plot, self.theme, self.data
        sp.clear()
        op.clear()
        sp.showGrid(x=True, y=True, alpha=0.2)
        sp.setLabel("bottom", "A-optimal error  trace((A_S^T A_S)^-1)")
        sp.setLabel("left", "magnitude-heuristic error")
        op.setLabel("bottom", "trial")
        op.setLabel("left", "overlap |S_opt ∩ S_mag| / k")
        if d is None:
            return
        finite = np.isfinite(d["mag"])
        hi = float(max(d["opt"].max(), d["mag"][finite].max() if finite.any() else d["opt"].max()))
        lo = float(min(d["opt"].min(), d["mag"][finite].min() if finite.any() else d["opt"].min()))
        sp.plot([lo, hi], [lo, hi], pen=self.pen(2, 1.0, style=Qt.PenStyle.DashLine),
                name="y = x (heuristic optimal)")
        sp.plot(d["opt"][finite], d["mag"][finite], pen=None, symbol="o",
                symbolSize=9 * theme.marker_scale, symbolBrush=theme.color(0), symbolPen=None,
                name="one random A per point")
        set_title(sp, f"keep k = {d['k']} of m = {d['m']} rows, d = {d['d']}", theme)
        x = np.arange(len(d["overlap"]))
        op.addItem(pg.BarGraphItem(x=x, height=d["overlap"], width=0.7, brush=theme.color(0), pen=None))
        op.setYRange(0, 1.05, padding=0)
        set_title(op, f"mean overlap {d['overlap'].mean():.2f}", theme)
        style_plot(sp, theme)


class RandomLabelsView(_OnePlotView):
    """Test accuracy of dense and ticket networks on true and random labels, with the chance
    level 1/K and its binomial band."""

    title = "Random labels"
    has_legend = False  # bars labelled on the axis, the band in the title

    def set_data(self, accuracies: dict[str, float], chance: float, band: tuple[float, float],
                 test_size: int, z: float) -> None:
        self.data = dict(acc=dict(accuracies), chance=chance, band=band, n=test_size, z=z)
        self.redraw()

    def redraw(self) -> None:
        plot, theme, d = self.plot, self.theme, self.data
        plot.clear()
        plot.setLabel("left", "test accuracy")
        plot.getAxis("left").enableAutoSIPrefix(False)
        if d is None:
            return
        labels = list(d["acc"])
        # NaN: still training (a partial figure): no bar yet, "..." above its place
        measured = [d["acc"][k] for k in labels]
        heights = [h if np.isfinite(h) else 0.0 for h in measured]
        # true-label bars in the first colour, random-label bars in the second
        brushes = [theme.color(1 if "random" in k else 0) for k in labels]
        x = np.arange(len(labels))
        plot.addItem(pg.BarGraphItem(x=x, height=heights, width=0.6, brushes=brushes, pen=None))
        low, high = d["band"]
        band = pg.LinearRegionItem(values=(low, high), orientation="horizontal", movable=False,
                                   brush=pg.mkBrush(theme.muted + "66"), pen=pg.mkPen(None))
        band.setZValue(-10)  # behind the bars
        plot.addItem(band)
        plot.addItem(pg.InfiniteLine(pos=d["chance"], angle=0,
                                     pen=pg.mkPen(theme.foreground, width=theme.line_width,
                                                  style=Qt.PenStyle.DashLine)))
        for i, (h, m) in enumerate(zip(heights, measured, strict=True)):
            text = pg.TextItem(f"{m:.3f}" if np.isfinite(m) else "...", color=theme.foreground,
                               anchor=(0.5, 1.0))
            text.setPos(i, h)
            plot.addItem(text)
        plot.getAxis("bottom").setTicks([[(i, k) for i, k in enumerate(labels)]])
        plot.setYRange(0, 1.08, padding=0)
        plot.setXRange(-0.6, len(labels) - 0.4, padding=0)
        set_title(plot, f"chance 1/K = {d['chance']:.2f}, band +- {d['z']:g} s.e. on {d['n']} test points "
                        "(grey)", theme)
        style_plot(plot, theme)


# --- results -> views (the lab presets and the Labs dock share these) --------------------------


def show_mask_probability(view: MaskProbabilityView, r) -> None:
    view.set_data(r.t_over_sigma, r.monte_carlo, r.stderr, r.curve_t_over_sigma, r.curve_formula,
                  r.n, r.k, r.trials)


def show_phase_transition(view: PhaseTransitionView, r) -> None:
    deltas, rhos, z = r.grid()
    view.set_data(deltas, rhos, z, r.curve_delta, r.curve_rho, r.solver, r.n, r.trials)


def show_a_optimal(view: AOptimalView, r) -> None:
    view.set_data([t["a_optimal_error"] for t in r.trials], [t["magnitude_error"] for t in r.trials],
                  [t["overlap"] for t in r.trials], r.m, r.d, r.k)


def show_random_labels(view: RandomLabelsView, r) -> None:
    view.set_data(r.accuracies(), r.chance, (r.band_low, r.band_high), r.test_size, r.band_z)


# lab name -> (menu title, view class, show function)
LAB_VIEWS = {
    "mask-probability": ("Mask probability at initialisation", MaskProbabilityView, show_mask_probability),
    "phase-transition": ("Sparse recovery phase transition", PhaseTransitionView, show_phase_transition),
    "a-optimal": ("A-optimal vs magnitude rows", AOptimalView, show_a_optimal),
    "random-labels": ("Random labels vs chance", RandomLabelsView, show_random_labels),
}


class LabControls(QWidget):
    """One lab's settings as spin boxes (arrow keys and PgUp/PgDn step them), built from
    core.labs.params.LAB_PARAMS. ``changed`` carries the clamped settings; a value that had to
    change is said in ``note`` (clamped, never an error from inside the job)."""

    changed = Signal(dict)

    def __init__(self, lab: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from visualizer.core.labs.params import LAB_PARAMS

        self.lab = lab
        self.boxes: dict[str, QSpinBox | QDoubleSpinBox] = {}
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for p in LAB_PARAMS[lab]:
            box = QSpinBox(self) if p.integer else QDoubleSpinBox(self)
            if not p.integer:
                box.setDecimals(2)
            # the range is wider than the lab's: out-of-range values reach clamp() and get a note
            box.setRange(0, p.hi * 10) if p.integer else box.setRange(0.0, p.hi * 10)
            box.setSingleStep(p.step)
            box.setValue(p.default)
            box.setKeyboardTracking(False)  # typing "150" asks once, not for 1, 15 and 150
            box.setObjectName(f"lab_{p.name}")
            box.setToolTip(f"{p.label}: {p.lo:g} to {p.hi:g}")
            label = QLabel(p.label, self)
            label.setBuddy(box)
            row.addWidget(label)
            row.addWidget(box)
            box.valueChanged.connect(lambda _v: self._emit())
            self.boxes[p.name] = box
        self.note = QLabel("", self)
        self.note.setObjectName("labNote")
        self.note.setWordWrap(True)
        row.addWidget(self.note, 1)

    def values(self) -> dict[str, float]:
        return {name: box.value() for name, box in self.boxes.items()}

    def settings(self) -> dict[str, float]:
        """The clamped settings; shows the clamp notes, if any."""
        from visualizer.core.labs.params import clamp

        values, notes = clamp(self.lab, self.values())
        self.note.setText("; ".join(notes))
        return values

    def _emit(self) -> None:
        self.changed.emit(self.settings())


class LabsPanel(QWidget):
    """The Labs dock: pick a lab, set its parameters, see its view fill in as the Monte Carlo
    points and grid cells arrive (the CLI's ``pruneviz lab NAME`` runs the same jobs with flags).
    A change of a setting redraws the theory curve at once and re-runs the lab after a short pause
    (the new job supersedes the old one)."""

    DEBOUNCE_MS = 300

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.chooser = QComboBox()
        for name, (title, _, _) in LAB_VIEWS.items():
            self.chooser.addItem(title, name)
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("run the chosen lab with the settings below")
        self.run_button.clicked.connect(lambda _=False: self.compute())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setObjectName("analysisStatus")
        self.stack = QStackedWidget()
        self.controls_stack = QStackedWidget()
        self.views: dict[str, AnalysisView] = {}
        self.controls: dict[str, LabControls] = {}
        for name, (_, view_cls, _) in LAB_VIEWS.items():
            self.views[name] = view_cls()
            self.stack.addWidget(self.views[name])
            self.controls[name] = LabControls(name)
            self.controls[name].changed.connect(lambda values, lab=name: self._changed(lab, values))
            self.controls_stack.addWidget(self.controls[name])
        self.chooser.currentIndexChanged.connect(self._chosen)
        self._rerun = QTimer(self)
        self._rerun.setSingleShot(True)
        self._rerun.setInterval(self.DEBOUNCE_MS)
        self._rerun.timeout.connect(self.compute)
        bar = QHBoxLayout()
        bar.addWidget(self.chooser)
        bar.addWidget(self.run_button)
        bar.addWidget(self.progress)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.controls_stack)
        layout.addWidget(self.stack, 1)
        self.results: dict[str, object] = {}
        self._job_id = -1
        window.jobs.progress.connect(self._progress)

    def current(self) -> str:
        return self.chooser.currentData()

    def _chosen(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.controls_stack.setCurrentIndex(index)

    def _changed(self, lab: str, values: dict) -> None:
        """A setting moved: the theory curve now, the Monte Carlo after the debounce."""
        from visualizer.core.labs.params import theory_curve

        curve = theory_curve(lab, values)
        view = self.views[lab]
        if curve is not None and hasattr(view, "set_theory"):
            view.set_theory(*curve, **{k: values[k] for k in ("n", "k")})
        self._rerun.start()

    def _progress(self, job_id: int, stage: str, fraction: float) -> None:
        if job_id == self._job_id:
            self.progress.setValue(int(1000 * fraction))

    def compute(self) -> None:
        """Run the chosen lab with its settings through the window's job runner; partial results
        (the estimate so far) are drawn as they arrive."""
        from visualizer.core.labs import lab_job
        from visualizer.core.labs.params import job_options

        name = self.current()
        title, _, show = LAB_VIEWS[name]
        job = lab_job(name)
        options = job_options(name, self.controls[name].settings())
        view = self.views[name]

        def partial(result) -> None:
            if result is not None and type(result).__name__.endswith("Result"):
                show(view, result)

        def done(result) -> None:
            self.results[name] = result
            show(view, result)
            view.set_caption(result.summary())
            self.status.setText("")
            self.progress.hide()

        def failed(message: str) -> None:
            self.status.setText(message)
            self.progress.hide()

        if "device" in inspect.signature(job).parameters:  # the training lab: the window's device
            from visualizer.ui.shell.device_ui import job_device

            device = job_device(self.window)
            if device is None:
                return
            options["device"] = device
        self.status.setText(f"{title}…")
        self.progress.setValue(0)
        self.progress.show()
        self._job_id = self.window.jobs.submit("lab", title, lambda: job(**options), on_result=done,
                                               on_partial=partial, on_error=failed).id
