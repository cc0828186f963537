"""One-click presets reproducing figures of the pruning literature, each with a short on-screen caption.

A :class:`Preset` is three plain pieces: a job (a generator of core Steps calling core functions
on a bundled model, run in a worker by the window or to the end by tests and screenshots), the
view that shows its result, and a caption saying what to look at.

Presets: the LTH curve on the bundled MLP (ticket vs re-init vs random); SNIP vs magnitude masks
on the same layer; masked vs dense Hessian spectrum; DenseNet connections after group lasso;
Inception branches removed; the density law (1-alpha)^S over IMP rounds; time-to-train of dense,
unstructured and structured models; and the four theory labs of visualizer.core.labs (their
views in visualizer.ui.views.labs).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from visualizer.core.tasks import Step, run, sub
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


def _device_of(model) -> str:
    from visualizer.core.workspace import device_name

    return device_name(next(model.parameters()).device)


def _load(name: str, device: str = "auto"):
    """A bundled model on ``device`` (the window's device chooser; core.workspace.resolve_device)
    and its dataset: every core function then computes on the model's device."""
    from visualizer.core.data.sources import load_dataset
    from visualizer.core.models.loaders import load_model
    from visualizer.core.workspace import resolve_device

    loaded = load_model(name)
    loaded.model.to(resolve_device(device))
    return loaded, load_dataset(loaded.dataset)


# --- SNIP vs magnitude ------------------------------------------------------------------------


def snip_vs_magnitude_job(model: str = "lenet", layer: str = "fc1.weight", density: float = 0.1,
                          device: str = "auto"):
    """Magnitude |w| and SNIP |g * w| masks at the same global density; one layer compared.
    SNIP scores on the workspace's criterion batches, so its mask is the window's and the CLI's."""
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.workspace import Workspace
    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    net = loaded.model
    workspace = Workspace(net, data, model_ref=model)
    mag = yield from sub(workspace.scores("magnitude"), 0.05, 0.2, "magnitude: ")
    snip = yield from sub(workspace.scores("snip"), 0.2, 0.9, "snip: ")
    a = mask_from_scores(mag, density, criterion="magnitude")
    b = mask_from_scores(snip, density, criterion="snip")
    if layer not in a.masks:
        raise ValueError(f"no prunable layer {layer!r} in {model}")
    row = next(r for r in a.compare(b) if r["name"] == layer)
    yield Step("done", 1.0)
    return {"layer": layer, "density": density, "magnitude": a, "snip": b, "row": row,
            "all": a.compare(b)}


def _mask_image(mask) -> np.ndarray:
    m = mask.detach().cpu().numpy().astype(bool)
    return m.reshape(m.shape[0], -1)


def show_snip_vs_magnitude(view: FigureView, r: dict) -> None:
    a = _mask_image(r["magnitude"].masks[r["layer"]])
    b = _mask_image(r["snip"].masks[r["layer"]])
    # agreement picture: both kept (dark), only magnitude (blue), only SNIP (orange), neither
    # (white); the key is in the caption: in the title it overran the neighbouring titles
    rgb = np.full(a.shape + (3,), 255, dtype=np.uint8)
    rgb[a & b] = (40, 40, 40)
    rgb[a & ~b] = (0, 114, 178)
    rgb[~a & b] = (213, 94, 0)
    row = r["row"]
    view.set_figure(Figure(
        images={"magnitude |w|": a, "SNIP |g * w|": b,
                f"agreement, Jaccard {row['jaccard']:.2f}": rgb},
        x_label="input (fan-in)", y_label="output unit",
    ))


# --- masked vs dense spectrum -----------------------------------------------------------------


def spectrum_job(model: str = "lenet", density: float = 0.2, top_k: int = 5, probes: int = 4,
                 taus: tuple[int, ...] = (0, 25, 50, 100, 200), device: str = "auto"):
    """Dense and masked Hessian spectra at the same point theta = m * w (magnitude mask of the
    pretrained model), then the masked spectrum H_tau^m at rewind points tau of a fresh training
    run from the shipped initialisation (the mask taken from the end of that run, as IMP does)."""
    from visualizer.core.curvature.spectrum import (
        SpectrumOptions,
        dense_vs_masked,
        spectrum_over_rewinds,
    )
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.training.loop import TrainConfig
    from visualizer.core.training.lottery import rewind_points
    from visualizer.core.workspace import Workspace, curvature_batches

    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    net = loaded.model
    workspace = Workspace(net, data, model_ref=model)
    mags = yield from sub(workspace.scores("magnitude"), 0.01, 0.02)
    mask = mask_from_scores(mags, density, criterion="magnitude")
    evalset = curvature_batches(data)
    options = SpectrumOptions(top_k=top_k, density_probes=probes, trace_probes=20)
    pair = yield from sub(dense_vs_masked(net, evalset, mask, options), 0.02, 0.5, "spectra: ")
    run_ = yield from sub(rewind_points(net, model, data, taus, TrainConfig(device=device)), 0.5, 0.6, "training: ")
    final = yield from sub(workspace.scores("magnitude", run_.model), 0.6, 0.61)
    rewind_mask = mask_from_scores(final, density, criterion="magnitude")
    snapshots = [(f"tau={t}", run_.snapshots[t]) for t in taus]
    rewinds = yield from sub(
        spectrum_over_rewinds(net, snapshots, rewind_mask, evalset,
                              SpectrumOptions(top_k=2, bottom_k=2)), 0.61, 1.0, "rewinds: ")
    return {"pair": pair, "taus": list(taus), "rewinds": [r.spectrum for r in rewinds],
            "density": density}


def show_spectrum(view, r) -> None:
    from visualizer.ui.views.adapters import rewind_series, spectrum_data

    view.set_spectra([spectrum_data(r["pair"].dense, "dense"),
                      spectrum_data(r["pair"].masked, f"masked ({r['density']:.0%})")])
    view.set_rewind(rewind_series(r["taus"], r["rewinds"]))


# --- LTH curve and the density law -----------------------------------------------------------


def lth_job(model: str = "mlp", rounds: int = 5, rate: float = 0.5, epochs: int = 5, lr: float = 3e-3,
            device: str = "auto"):
    """IMP with rewinding to tau = 0 on the bundled MLP, with re-init and random-mask controls."""
    from visualizer.core.training.loop import TrainConfig
    from visualizer.core.training.lottery import (
        IMPConfig,
        initial_state,
        iterative_magnitude_pruning,
    )
    yield Step("loading", 0.0)
    loaded, data = _load(model)
    init, _ = initial_state(model, loaded.model)
    config = IMPConfig(rounds=rounds, rate=rate, controls=("reinit", "random-mask"),
                       train=TrainConfig(epochs=epochs, lr=lr, evaluate_each_epoch=False, device=device))
    result = yield from sub(
        iterative_magnitude_pruning(loaded.model, data, init, config), 0.02, 1.0)
    return result


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


def density_law_job(model: str = "mlp", rounds: int = 8, rate: float = 0.3, steps: int = 10,
                    device: str = "auto"):
    """IMP rounds: the measured density of each round's mask against (1 - alpha)^S."""
    from visualizer.core.training.loop import TrainConfig
    from visualizer.core.training.lottery import (
        IMPConfig,
        imp_density,
        initial_state,
        iterative_magnitude_pruning,
    )
    yield Step("loading", 0.0)
    loaded, data = _load(model)
    init, _ = initial_state(model, loaded.model)
    # the law is about the masks: a few training steps per round are enough to show it
    config = IMPConfig(rounds=rounds, rate=rate,
                       train=TrainConfig(epochs=1, max_steps=steps, evaluate_each_epoch=False, device=device))
    result = yield from sub(iterative_magnitude_pruning(loaded.model, data, init, config), 0.02, 1.0)
    measured = [m.density() for m in result.masks]
    law = [imp_density(rate, s) for s in range(len(measured))]
    return {"rate": rate, "measured": measured, "law": law}


def show_density_law(view: FigureView, r: dict) -> None:
    s = list(range(len(r["measured"])))
    view.set_figure(Figure(
        f"IMP density per round, alpha = {r['rate']:g}",
        [Line(s, r["law"], "(1 - alpha)^S", markers=False, width=3.0),
         Line(s, r["measured"], "measured density of the mask", line=False)],
        x_label="IMP round S", y_label="density", legend="top-right",
    ))


# --- sensitivity ----------------------------------------------------------------------------------


def sensitivity_job(model: str = "resnet-mini", levels: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05),
                    unit: str = "layer", criterion: str = "magnitude", device: str = "auto"):
    """Each layer (or coupled group) of a bundled model pruned alone at each density: the rows
    of core.training.sensitivity on the first 512 test images, and a one-line summary."""
    from types import SimpleNamespace

    from visualizer.core.training.sensitivity import SensitivityConfig
    from visualizer.core.training.sensitivity import sensitivity_job as analysis
    from visualizer.core.workspace import Workspace

    yield Step("loading", 0.0)
    loaded, data = _load(model, device)
    ws = Workspace(loaded.model, data, device=next(loaded.model.parameters()).device, model_ref=model)
    res = yield from sub(analysis(ws, SensitivityConfig(model, criterion, unit, tuple(levels), eval_batches=1)),
                         0.02, 1.0)
    low = min(levels)
    at_low = {r["unit"]: r["accuracy"] for r in res.rows if r["level"] == low}
    fragile, robust = min(at_low, key=at_low.get), max(at_low, key=at_low.get)
    text = (f"At {low:.0%} density alone: {fragile} falls to {at_low[fragile]:.0%}, {robust} keeps "
            f"{at_low[robust]:.0%} (dense {res.rows[0]['base_accuracy']:.0%}).")
    return SimpleNamespace(rows=res.rows, unit=unit, summary=lambda: text)


def show_sensitivity(view: FigureView, r) -> None:
    from visualizer.core.training.sensitivity import heat_table

    units, levels, values = heat_table(r.rows, "accuracy")
    lines = [Line(levels, row, name) for name, row in zip(units, values)]
    base = r.rows[0]["base_accuracy"]
    lines.append(Line([levels[-1], levels[0]], [base, base], "dense", dashed=True, markers=False))
    view.set_figure(Figure(f"Sensitivity: one {r.unit} pruned at a time", lines,
                           x_label="density the unit keeps (log scale)", y_label="test accuracy", log_x=True,
                           legend="bottom-right"))


# --- DenseNet and Inception after group lasso --------------------------------------------------


def _group_lasso(model: str, kind: str, lam: float | None = None, epochs: int | None = None,
                 finetune_epochs: int = 3, device: str = "auto"):
    """Group lasso + masked fine-tune of a bundled model, by default at the settings that show
    removal (LASSO_DEFAULTS)."""
    from visualizer.ui.jobs.analysis import LASSO_DEFAULTS, group_lasso_job

    loaded, data = _load(model, device)
    default_lam, default_epochs = LASSO_DEFAULTS[kind]
    return (yield from group_lasso_job(loaded.model, data, lam=default_lam if lam is None else lam,
                                       epochs=epochs or default_epochs, finetune_epochs=finetune_epochs,
                                       device=device))


def densenet_job(**options):
    return (yield from _group_lasso("densenet-mini", "densenet", **options))


def show_densenet(view, r) -> None:
    from visualizer.ui.views.adapters import connectivity_input

    view.set_connectivity(connectivity_input(r.before_connectivity), connectivity_input(r.after_connectivity))


def inception_job(**options):
    return (yield from _group_lasso("inception-mini", "inception", **options))


def show_inception(view, r) -> None:
    from visualizer.ui.views.adapters import branch_modules

    view.set_modules(branch_modules(r.after_branches))


# --- time to train ----------------------------------------------------------------------------


def time_to_train_job(model: str = "lenet", density: float = 0.25, steps_dense: int = 1000,
                      steps_sparse: int | None = None, device: str = "auto"):
    """Measured latency, FLOPs and eta of dense, unstructured and structured (shrunk) models,
    and time to train = steps x time per step (the time-to-train paradox; Hoefler et al. 2021)."""
    from visualizer.core.structure.speed import measure_speed
    yield Step("loading", 0.0)
    loaded, _ = _load(model, device)
    report = yield from sub(measure_speed(loaded.model, density=density, device=_device_of(loaded.model)),
                            0.02, 1.0)
    return {"report": report, "steps": {"dense": steps_dense},
            "steps_sparse": steps_sparse or steps_dense}


def show_time_to_train(view, r) -> None:
    from visualizer.ui.views.adapters import speed_entries

    entries = speed_entries(r["report"])
    for e in entries:
        steps = r["steps"].get(e.label, r["steps_sparse"])
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


def _lab_preset(lab: str, title: str, caption: str) -> Preset:
    """A theory lab as a preset: its core job with default settings, its view from lab_views."""
    from visualizer.core.labs import lab_job

    def view():
        from visualizer.ui.views.labs import LAB_VIEWS

        return LAB_VIEWS[lab][1]()

    def show(v, result) -> None:
        from visualizer.ui.views.labs import LAB_VIEWS

        LAB_VIEWS[lab][2](v, result)

    def job(**options):
        import inspect

        fn = lab_job(lab)
        if "device" not in inspect.signature(fn).parameters:  # only the training lab has a device
            options.pop("device", None)
        return (yield from fn(**options))

    return Preset(lab, title, caption, view, job, show, f"docs/theory.md, Theory labs ({lab})")


LAB_PRESETS = [
    _lab_preset(
        "mask-probability", "Lab: a winning mask by chance",
        "Weights drawn w0 ~ N(0, sigma^2), a mask keeping |w0| >= t: the chance it is exactly the "
        "true k-sparse support is [2(1 - Phi(t/sigma))]^k [2 Phi(t/sigma) - 1]^(n-k). The curve is "
        "the formula, the points a Monte Carlo count with error bars; even at the best threshold "
        "the chance is small (docs/theory.md)."),
    _lab_preset(
        "phase-transition", "Lab: sparse recovery phase transition",
        "Recovering a k-sparse x from m random measurements (OMP; Tropp & Gilbert 2007): the "
        "success rate over delta = m/n and rho = k/m drops sharply near the l1 weak threshold of "
        "Donoho & Tanner (2009), drawn as the curve (computed by the formula of Donoho, Maleki & "
        "Montanari 2009; docs/theory.md)."),
    _lab_preset(
        "a-optimal", "Lab: magnitude pruning vs A-optimal design",
        "Keeping k of m sensor rows: the exhaustive A-optimal subset (min trace((A_S^T A_S)^-1); "
        "Kiefer 1959) against keeping the k largest rows, as magnitude pruning does. Points on "
        "y = x are trials where the heuristic is optimal; the bars show how many rows both "
        "keep (docs/theory.md)."),
    _lab_preset(
        "random-labels", "Lab: no free lunch with random labels",
        "The MLP trained dense and as an IMP ticket (Frankle & Carbin 2019) on true and on shuffled "
        "digits labels: with labels that carry no information every learner stays inside the "
        "binomial band around chance 1/K (Wolpert 1996; Zhang et al. 2017; docs/theory.md)."),
]


PRESETS: dict[str, Preset] = {p.id: p for p in [
    Preset("lth", "Lottery ticket on the MLP",
           "Winning ticket vs re-initialised vs random mask. Look at the gap: the same sparse "
           "structure trained from its original initialisation keeps its accuracy to low density; "
           "re-initialised or random masks fall off earlier.",
           FigureView, lth_job, show_lth,
           "Frankle & Carbin 2019; docs/theory.md, Lottery tickets"),
    Preset("snip-vs-magnitude", "SNIP vs magnitude masks",
           "The same layer pruned to 10% by |w| and by SNIP's |g * w|. Agreement: dark cells are kept "
           "by both, blue ones only by |w|, orange ones only by SNIP: where a data-driven criterion "
           "disagrees with plain magnitude.",
           FigureView, snip_vs_magnitude_job, show_snip_vs_magnitude,
           "Lee, Ajanthan & Torr 2019; docs/theory.md, Criteria"),
    Preset("spectrum", "Masked vs dense Hessian spectrum",
           "Hessian of the loss at theta = m * w: dense vs restricted to the kept weights (P_m H P_m). "
           "By interlacing, the masked lambda_max is never above the dense one; a smaller "
           "lambda_max allows a larger stable learning rate.",
           _spectrum_view, spectrum_job, show_spectrum,
           "Cauchy interlacing; Lanczos 1950; Frankle et al. 2020; docs/theory.md, The masked Hessian"),
    Preset("densenet", "DenseNet connections after group lasso",
           "Each cell: how strongly a layer reads an earlier layer's features. Group lasso drives "
           "all outgoing connections of a layer to zero together (an empty column); a short masked "
           "fine-tune brings the accuracy back: what is left is the circuit the network uses.",
           _densenet_view, densenet_job, show_densenet,
           "Yuan & Lin 2006; Huang et al. 2017; docs/theory.md, Group lasso"),
    Preset("inception", "Inception branches removed",
           "Group norm of every parallel branch. A group penalty makes an all-or-nothing decision "
           "per branch: grey bars are branches driven to zero and removed; a short masked fine-tune "
           "recovers the accuracy without them.",
           _branch_view, inception_job, show_inception,
           "Yuan & Lin 2006; Szegedy et al. 2015; docs/theory.md, Group lasso"),
    Preset("density-law", "The density law (1 - alpha)^S",
           "Pruning a fraction alpha of the remaining weights each round leaves (1 - alpha)^S after "
           "S rounds: the measured mask density sits on the geometric law.",
           FigureView, density_law_job, show_density_law,
           "Frankle & Carbin 2019; docs/theory.md, Iterative magnitude pruning"),
    Preset("time-to-train", "Time to train: dense vs unstructured vs structured",
           "Fewer FLOPs are not less time: unstructured sparsity runs at a low hardware "
           "efficiency eta, while a structurally shrunk model stays dense and fast.",
           _speed_view, time_to_train_job, show_time_to_train,
           "docs/theory.md, The speed model"),
    Preset("sensitivity", "Sensitivity: which layers can lose how much",
           "Each layer of the residual network pruned alone by magnitude, everything else dense. "
           "The stem and the first blocks break first; the last layers barely notice: a uniform cut "
           "spends its budget where it hurts most, and a sensitivity allocation does not.",
           FigureView, sensitivity_job, show_sensitivity,
           "Han et al. 2015; Distiller's sensitivity analysis; docs/theory.md, Group-faithful sensitivity"),
    *LAB_PRESETS,
]}


def run_preset(preset_id: str, view: AnalysisView | None = None, on_step=None, **options):
    """Run a preset to the end (tests, screenshots) and show it; returns (view, result)."""
    preset = PRESETS[preset_id]
    result = run(preset.job(**options), on_step)
    view = view or preset.view()
    preset.show(view, result)
    view.set_caption(caption_of(preset, result))
    return view, result


def caption_of(preset: Preset, result) -> str:
    """The preset's fixed caption, and under it the run's measured summary when it has one."""
    summary = getattr(result, "summary", None)
    return f"{preset.caption}\n{summary()}" if callable(summary) else preset.caption
