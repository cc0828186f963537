"""One-click presets reproducing figures of the pruning literature, each with a short on-screen caption.

A :class:`Preset` is three plain pieces: a job (a generator of core Steps; the jobs, titles and
captions live in :mod:`visualizer.core.lecture.presets`, run in a worker by the window or to the end
by tests and screenshots), the view that shows its result (here), and a caption saying what to
look at.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from visualizer.core.lecture.presets import PRESETS as SPECS
from visualizer.core.lecture.presets import caption_of  # noqa: F401 - the slides' caption rule
from visualizer.core.tasks import Step, run
from visualizer.ui.views.base import AnalysisView, set_title

# --------------------------------------------------------------------------------------------
# A small figure view for presets that are curves or mask pictures


@dataclass
class Line:
    """One curve of a FigureView: y against x, with optional markers and dashes."""

    x: Any
    y: Any
    label: str
    dashed: bool = False
    markers: bool = True
    line: bool = True
    width: float = 1.0  # multiplies the theme's line width


@dataclass
class Figure:
    """Curves (``lines``) or mask images (``images``: title -> 2D array), with axis labels."""

    title: str = ""
    lines: list[Line] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    x_label: str = ""
    y_label: str = ""
    log_x: bool = False
    note: str = ""
    legend: str = "bottom-right"  # or "top-right"


class FigureView(AnalysisView):
    """Line plots or side-by-side mask images; what the LTH, density-law and SNIP presets show."""

    title = "Preset"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.figure: Figure | None = None
        self.ready()

    def set_figure(self, figure: Figure) -> None:
        self.figure = figure
        self.redraw()

    def _equal_columns(self, n: int) -> None:
        """Every image column the same width, whatever its title: each plot fitted its image
        into a box of its own size, so the masks came out at different sizes. Equal boxes,
        equal shapes and the locked aspect give one scale; the axes are not linked, since
        pyqtgraph's links fight a locked aspect (rows were cut off)."""
        layout = self.canvas.ci.layout
        for col in range(n):
            layout.setColumnStretchFactor(col, 1)
        for plot in self._plots:
            # a long title's width was the plot's preferred width: when the row had less room
            # than all preferred widths, Qt shrank the columns towards their minimums and the
            # long-titled one kept the most
            plot.setPreferredWidth(1)

    def redraw(self) -> None:
        self.canvas.clear()
        self._plots = []
        fig = self.figure
        if fig is None:
            return
        theme = self.theme
        if fig.images:
            for col, (title, image) in enumerate(fig.images.items()):
                plot = self.add_plot(self.canvas, 0, col)
                plot.getViewBox().invertY(True)
                plot.getViewBox().setAspectLocked(True)
                img = np.asarray(image)
                if img.ndim == 2:
                    # kept = dark, pruned = light, like ink on paper
                    item = pg.ImageItem(img.astype(np.float32), levels=(0, 1), axisOrder="row-major")
                    item.setColorMap(pg.ColorMap([0.0, 1.0], [(255, 255, 255), (30, 30, 30)]))
                else:  # RGB(A) rows x cols x channels
                    item = pg.ImageItem(np.ascontiguousarray(img), axisOrder="row-major")
                plot.addItem(item)
                plot.setLabel("bottom", fig.x_label)
                plot.setLabel("left", fig.y_label)
                set_title(plot, title, theme)
            self._equal_columns(len(fig.images))
        else:
            plot = self.add_plot(self.canvas, 0, 0)
            plot.addLegend(offset=(-10, -10) if fig.legend == "bottom-right" else (-10, 10))
            plot.setLogMode(x=fig.log_x, y=False)
            if fig.log_x:  # pyqtgraph's minor labels run together at lecture font sizes
                from visualizer.ui.views.plots import DENSITY_TICKS

                plot.getAxis("bottom").setTicks([[(float(np.log10(d)), f"{d:g}") for d in DENSITY_TICKS], []])
            plot.showGrid(x=True, y=True, alpha=0.2)
            for i, line in enumerate(fig.lines):
                style = pg.QtCore.Qt.PenStyle.DashLine if line.dashed else pg.QtCore.Qt.PenStyle.SolidLine
                pen = self.pen(i, line.width, style=style) if line.line else None
                kw = {}
                if line.markers:
                    kw = dict(symbol="o", symbolSize=9 * theme.marker_scale,
                              symbolBrush=theme.color(i), symbolPen=None)
                plot.plot(np.asarray(line.x, float), np.asarray(line.y, float), pen=pen,
                          name=line.label, **kw)
            plot.setLabel("bottom", fig.x_label)
            plot.setLabel("left", fig.y_label)
            set_title(plot, fig.title, theme)
        for plot in self._plots:
            from visualizer.ui.views.base import style_plot

            style_plot(plot, theme)


# --------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    caption: str
    view: Callable[[], AnalysisView]
    job: Callable[..., Generator[Step, None, Any]]
    show: Callable[[AnalysisView, Any], None]
    source: str = ""  # the literature it reproduces, and its section of docs/theory.md


def _mask_image(mask) -> np.ndarray:
    m = mask.detach().cpu().numpy().astype(bool)
    return m.reshape(m.shape[0], -1)


def show_snip_vs_magnitude(view: FigureView, r) -> None:
    """The two masks and where they agree; while SNIP still scores, the magnitude mask alone."""
    a = _mask_image(r.magnitude.masks[r.layer])
    if r.snip is None:
        view.set_figure(Figure(images={"magnitude |w|": a}, x_label="input (fan-in)", y_label="output unit"))
        return
    b = _mask_image(r.snip.masks[r.layer])
    # agreement picture: both kept (dark), only magnitude (blue), only SNIP (orange), neither
    # (white); the key is in the caption: in the title it overran the neighbouring titles
    rgb = np.full(a.shape + (3,), 255, dtype=np.uint8)
    rgb[a & b] = (40, 40, 40)
    rgb[a & ~b] = (0, 114, 178)
    rgb[~a & b] = (213, 94, 0)
    row = r.row
    view.set_figure(Figure(
        images={"magnitude |w|": a, "SNIP |g * w|": b,
                f"agreement, Jaccard {row['jaccard']:.2f}": rgb},
        x_label="input (fan-in)", y_label="output unit",
    ))


def show_spectrum(view, r) -> None:
    """Dense and masked spectra (the dense density filling probe by probe while it computes),
    then lambda_max and kappa over the rewind points done so far."""
    from visualizer.ui.views.adapters import rewind_series, spectrum_data

    spectra = [spectrum_data(r.dense, "dense")]
    if r.masked is not None:
        spectra.append(spectrum_data(r.masked, f"masked ({r.density:.0%})"))
    view.set_spectra(spectra)
    left = len(r.taus) - len(r.rewinds)
    view.set_rewind(rewind_series(r.taus[:len(r.rewinds)], r.rewinds) if r.rewinds else None,
                    pending=f"computing the rewind series:\n{len(r.rewinds)} of {len(r.taus)} points" if left else None)


def show_lth(view: FigureView, result) -> None:
    """IMP rows: ``accuracy`` (the ticket) and ``<control>_accuracy`` per round's density."""
    rows = sorted(result.rows, key=lambda r: -r["density"])
    x = [r["density"] for r in rows]
    lines = []
    for key, label in (("accuracy", "winning ticket (mask + original init)"),
                       ("reinit_accuracy", "same mask, re-initialised"),
                       ("random-mask_accuracy", "random mask, same density")):
        if all(key in r for r in rows):
            lines.append(Line(x, [r[key] for r in rows], label, dashed=key != "accuracy"))
    dense = next((r["accuracy"] for r in result.rows if r["round"] == 0), None)
    if dense is not None:
        lines.append(Line([x[-1], x[0]], [dense, dense], "dense baseline", dashed=True, markers=False))
    view.set_figure(Figure("Lottery ticket on the MLP: accuracy vs density", lines,
                           x_label="density (log scale)", y_label="test accuracy", log_x=True))


def show_density_law(view: FigureView, r) -> None:
    view.set_figure(Figure(
        f"IMP density per round, alpha = {r.rate:g}",
        [Line(list(range(len(r.law))), r.law, "(1 - alpha)^S", markers=False, width=3.0),
         Line(list(range(len(r.measured))), r.measured, "measured density of the mask", line=False)],
        x_label="IMP round S", y_label="density", legend="top-right",
    ))


def show_sensitivity(view: FigureView, r) -> None:
    from visualizer.core.training.sensitivity import heat_table

    units, levels, values = heat_table(r.rows, "accuracy")
    lines = [Line(levels, row, name) for name, row in zip(units, values)]
    base = r.rows[0]["base_accuracy"]
    lines.append(Line([levels[-1], levels[0]], [base, base], "dense", dashed=True, markers=False))
    view.set_figure(Figure(f"Sensitivity: one {r.unit} pruned at a time", lines,
                           x_label="density the unit keeps (log scale)", y_label="test accuracy", log_x=True,
                           legend="bottom-right"))


def show_densenet(view, r) -> None:
    from visualizer.ui.views.adapters import connectivity_input

    view.set_connectivity(connectivity_input(r.before_connectivity), connectivity_input(r.after_connectivity))


def show_inception(view, r) -> None:
    from visualizer.ui.views.adapters import branch_modules

    view.set_modules(branch_modules(r.after_branches))


def show_time_to_train(view, r) -> None:
    from visualizer.ui.views.adapters import speed_entries

    entries = speed_entries(r.report)
    for e in entries:
        steps = r.steps.get(e.label, r.steps_sparse)
        # time per training step ~ 3x a forward pass (forward + backward); shown as bars only
        e.train_time_s = steps * 3 * e.latency_ms / 1e3
    view.set_entries(entries)


# --------------------------------------------------------------------------------------------


def _spectrum_view():
    from visualizer.ui.views.spectrum import SpectrumView

    return SpectrumView()


def _speed_view():
    from visualizer.ui.views.speed import SpeedView

    return SpeedView()


def _densenet_view():
    from visualizer.ui.views.densenet import ConnectivityView

    return ConnectivityView()


def _branch_view():
    from visualizer.ui.views.inception import BranchView

    return BranchView()




def _explainer_view():
    from visualizer.ui.views.explainer import CriterionExplainerView

    return CriterionExplainerView()


def _coupling_view():
    from visualizer.ui.views.explainer import CouplingView

    return CouplingView()


def show_explainer(view, r) -> None:
    view.set_result(r)


def show_masked_speed(view, r) -> None:
    from visualizer.ui.views.adapters import speed_entries

    view.set_entries(speed_entries(r.report))


def _lab_view(lab: str):
    def view():
        from visualizer.ui.views.labs import LAB_VIEWS

        return LAB_VIEWS[lab][1]()

    def show(v, result) -> None:
        from visualizer.ui.views.labs import LAB_VIEWS

        LAB_VIEWS[lab][2](v, result)

    return view, show


# preset id -> (its view, how a result is shown in it); the jobs, titles and captions are core's
VIEWS: dict[str, tuple[Callable[[], AnalysisView], Callable[[AnalysisView, Any], None]]] = {
    "lth": (FigureView, show_lth),
    "snip-vs-magnitude": (FigureView, show_snip_vs_magnitude),
    "spectrum": (_spectrum_view, show_spectrum),
    "densenet": (_densenet_view, show_densenet),
    "inception": (_branch_view, show_inception),
    "density-law": (FigureView, show_density_law),
    "time-to-train": (_speed_view, show_time_to_train),
    "sensitivity": (FigureView, show_sensitivity),
    **{f"explain-{c}": (_explainer_view, show_explainer)
       for c in ("magnitude", "snip", "grasp", "taylor", "obd")},
    "explain-wanda": (_explainer_view, show_explainer),
    "explain-coupling": (_coupling_view, show_explainer),
    "explain-masked-speed": (_speed_view, show_masked_speed),
    **{lab: _lab_view(lab) for lab in ("mask-probability", "phase-transition", "a-optimal", "random-labels")},
}

PRESETS: dict[str, Preset] = {
    s.id: Preset(s.id, s.title, s.caption, VIEWS[s.id][0], s.job, VIEWS[s.id][1], s.source) for s in SPECS.values()
}


def run_preset(preset_id: str, view: AnalysisView | None = None, on_step=None, **options):
    """Run a preset to the end (tests, screenshots) and show it; returns (view, result)."""
    preset = PRESETS[preset_id]
    result = run(preset.job(**options), on_step)
    view = view or preset.view()
    preset.show(view, result)
    view.set_caption(caption_of(preset, result))
    return view, result


