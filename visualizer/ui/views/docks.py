"""The analysis views inside the main window: each view plus a small toolbar, wired to the
window's state (model, masks, selection) and job runner. Compute runs only through jobs."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from visualizer.core import analysis as jobs
from visualizer.ui.panels.data_box import NEEDS_DATA
from visualizer.ui.views import adapters, diffs
from visualizer.ui.views.base import AnalysisView
from visualizer.ui.views.densenet import ConnectivityView
from visualizer.ui.views.graph import GraphView
from visualizer.ui.views.inception import BranchView
from visualizer.ui.views.landscape import LandscapeView
from visualizer.ui.views.spectrum import SpectrumView
from visualizer.ui.views.speed import SpeedView


def param_for_layer(state, layer: str) -> str | None:
    """The prunable parameter a graph node stands for (``layer.weight`` first)."""
    prunable = list(getattr(state, "prunable", []) or [])
    for name in (f"{layer}.weight", layer):
        if name in prunable:
            return name
    return next((p for p in prunable if p.startswith(layer + ".")), None)


# the sample a curvature view reads: one batch of 128 of a bundled (in-memory) dataset; two
# batches of 16 of a streamed one, which keeps a CPU preview of ResNet-50 to seconds
IN_MEMORY_SAMPLES, IN_MEMORY_BATCH = 128, 128
# (core.workspace.PREVIEW_BATCHES x PREVIEW_BATCH_SIZE, not imported: this module loads before torch)
STREAMED_SAMPLES, STREAMED_BATCH = 32, 16


def samples_box() -> QSpinBox:
    box = QSpinBox()
    box.setRange(1, 100_000)
    box.setValue(IN_MEMORY_SAMPLES)
    box.setPrefix("samples ")
    box.setToolTip("test samples the computation reads (the first ones, in fixed order): more is "
                   "closer to the whole split and slower")
    return box


def reset_samples(box: QSpinBox, state) -> None:
    """The default sample for the dataset in use (see IN_MEMORY_SAMPLES, STREAMED_SAMPLES)."""
    data = getattr(state, "dataset", None)
    box.setValue(STREAMED_SAMPLES if data is not None and not data.in_memory else IN_MEMORY_SAMPLES)


def follow_dataset(state, box: QSpinBox) -> None:
    """Reset ``box`` to the default sample whenever the model or the dataset changes."""
    state.model_changed.connect(lambda: reset_samples(box, state))
    if hasattr(state, "dataset_changed"):
        state.dataset_changed.connect(lambda: reset_samples(box, state))
    reset_samples(box, state)


def sample_batches(samples: int, data) -> tuple[int, int]:
    """(batches, batch size) that read ``samples`` test samples of ``data``."""
    size = STREAMED_BATCH if data is not None and not data.in_memory else IN_MEMORY_BATCH
    size = min(size, samples)
    return -(-samples // size), size


class AnalysisPanel(QWidget):
    """A view with a toolbar row (buttons, spin boxes, a status line) above it."""

    def __init__(self, window, view: AnalysisView) -> None:
        super().__init__()
        self.window = window
        self.view = view
        self.toolbar = QHBoxLayout()
        self.status = QLabel("")
        self.status.setObjectName("analysisStatus")
        # a long line must not widen the toolbar (and squeeze the docks): it is cut, in full as
        # the tooltip and in the window's status bar
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._data_buttons: list[tuple[QPushButton, str]] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.toolbar)
        layout.addWidget(view, 1)
        self._tail_added = False
        self._pending: dict[str, Callable[[], None]] = {}

    def when_visible(self, key: str, draw: Callable[[], None]) -> None:
        """Draw now if the panel is on screen, else when it is first shown (the latest ``draw``
        per ``key`` wins). Building a large graph's items takes a noticeable time on the GUI
        thread (docs/performance.md); a tab behind the heatmap should not spend it while the user
        waits for the model."""
        if self.on_screen():
            self._pending.pop(key, None)
            draw()
        else:
            self._pending[key] = draw

    def on_screen(self) -> bool:
        # a dock behind another tab stays isVisible() in Qt 6; its visible region is empty
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def dock_visibility_changed(self, visible: bool) -> None:
        """Connected by the window to the dock's visibilityChanged (a tab brought to front)."""
        if visible:
            self._flush()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.on_screen():
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for draw in pending.values():
            draw()

    def add_button(self, text: str, slot: Callable[[], None], tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda _=False: slot())
        self.toolbar.addWidget(button)
        return button

    def finish_toolbar(self) -> None:
        self.toolbar.addWidget(self.status, 1)

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)

    def needs_data(self, *buttons: QPushButton) -> None:
        """Keep ``buttons`` disabled, with the reason, while no dataset is chosen."""
        self._data_buttons.extend((b, b.toolTip()) for b in buttons)
        state = self.window.state
        state.model_changed.connect(self.update_data_buttons)
        dataset_changed = getattr(state, "dataset_changed", None)
        if dataset_changed is not None:
            dataset_changed.connect(self.update_data_buttons)
        self.update_data_buttons()

    def update_data_buttons(self) -> None:
        has_data = getattr(self.window.state, "dataset", None) is not None
        for button, tip in self._data_buttons:
            button.setEnabled(has_data)
            button.setToolTip(tip if has_data else f"{NEEDS_DATA}\n{tip}")
        if self._data_buttons:
            if not has_data and self.model() is not None:
                self.set_status(NEEDS_DATA)
            elif self.status.text() == NEEDS_DATA:
                self.set_status("")

    def state(self):
        return self.window.state

    def model(self):
        loaded = getattr(self.window.state, "loaded", None)
        return None if loaded is None else loaded.model

    def device(self) -> str | None:
        """The window's device for a job requested now, or None (with the reason shown here)."""
        from visualizer.core.workspace import device_name, resolve_device

        try:
            return device_name(resolve_device(getattr(self.window.state, "device", "auto")))
        except ValueError as exc:
            self.status.setText(f"device: {exc}")
            return None

    def submit(self, kind: str, title: str, factory, on_result, origin=None) -> None:
        """Run a job for this view. ``origin`` (core.provenance.Provenance of the snapshot the
        job reads): a model or dataset change retires the job, and a result whose origin is no
        longer the shown state is discarded, never drawn under another model's name."""
        def failed(message: str) -> None:
            # the message itself goes to the window's status bar (JobRunner.failed)
            self.set_status(f"{title} failed: {message}")

        def done(result) -> None:
            state = self.window.state
            if origin is not None and hasattr(state, "is_current") and not state.is_current(origin):
                self.set_status(f"{title}: discarded (computed on {origin.label()})")
                return
            self.set_status("")
            on_result(result)

        self.set_status(f"{title}…")
        self.window.jobs.submit(kind, title, factory, on_result=done, on_error=failed, origin=origin)

    def snapshot(self, reads_data: bool = True, mask: bool = False, settings: dict | None = None):
        """The window state's snapshot for a job (AppState.capture), or None without a model."""
        state = self.window.state
        if getattr(state, "loaded", None) is None:
            return None
        if not hasattr(state, "capture"):  # a bare host (a screenshot script): no provenance
            from visualizer.core.provenance import Snapshot

            masks = getattr(state, "masks", None)
            return Snapshot(state.loaded.model, getattr(state, "dataset", None),
                            masks.copy() if mask and masks is not None else None)
        return state.capture(reads_data=reads_data, mask=mask, settings=settings)


def publish_overlay(window, name: str, values, **kw) -> None:
    """Paint ``values`` ({layer: value}) on the dependency graph as the overlay ``name`` (``kw``:
    :meth:`OverlayRegistry.set`'s label, unit, diverging, source): at once when the Graph view is
    built, else when it is (the overlay waits with the window, for the model it was computed on;
    a new model's graph starts without it)."""
    loaded = getattr(getattr(window, "state", None), "loaded", None)
    model = getattr(loaded, "model", None)
    store = window.__dict__.setdefault("_published_overlays", {})
    store[name] = (weakref.ref(model) if model is not None else (lambda: None), dict(values), kw)
    views = getattr(window, "views", None) or {}
    if "graph" in views and "graph" not in getattr(views, "pending", set()):
        panel = views["graph"]
        if isinstance(panel, GraphPanel):
            panel.overlays.set(name, values, **kw)


class GraphPanel(AnalysisPanel):
    """Dependency graph of the loaded model, nested by its module tree; follows masks and
    selection both ways and paints any overlay in :attr:`overlays` (other analyses add theirs
    with ``panel.overlays.set(name, {layer: value})``)."""

    def __init__(self, window) -> None:
        from visualizer.core.structure.overlays import OverlayRegistry

        self.overlays = OverlayRegistry()
        super().__init__(window, GraphView(overlays=self.overlays))
        self.result: jobs.GraphResult | None = None
        # the graph on screen is another model's while a new model's trace runs: selections
        # then wait for the new graph instead of highlighting a node of the old one. Held
        # weakly: a hidden Graph tab must not keep a replaced model (and its weights) alive.
        self._traced = lambda: None
        self._result_model = lambda: None  # the model self.result was traced from (weakly)
        self._reference: dict | None = None  # weights at load, for "parameter change"
        self.view.run_job = self._run_layout_job
        self.add_button("Re-trace", self.refresh, "trace the model and build its graph again")
        self.add_button("Open all", self.view.open_all, "open every block (small models)")
        self.export_button = self.add_button("Export…", self.export, "the graph as PNG or SVG at any "
                                             "size, or as JSON with the hierarchy and overlays")
        self.add_button("Masked vs shrunk", self.compare_shrunk,
                        "parameters, memory, FLOPs and measured latency of the dense, masked and "
                        "physically shrunk model at the current density")
        self.diff_box = diffs.diff_box()
        self.diff_box.activated.connect(lambda _i: self.request_diff(self.diff_box.currentData()))
        self.toolbar.addWidget(self.diff_box)
        self.finish_toolbar()
        state = window.state
        self._show_diff_next = False  # a diff asked for here: paint it when it arrives
        state.model_diff_changed.connect(self._model_diff_overlays)
        state.model_changed.connect(self.refresh)
        state.masks_changed.connect(self.update_densities)
        state.selection_changed.connect(self._selected_elsewhere)
        for sig in ("snapshot_changed", "scores_changed"):
            getattr(state, sig).connect(self._derived_overlays)
        self.view.layerSelected.connect(self._clicked)
        self.view.layerActivated.connect(self._show_heatmap)
        self.listeners: list[Callable[[jobs.GraphResult], None]] = []
        if self.model() is not None:
            self.refresh()

    def _run_layout_job(self, kind: str, title: str, factory, done) -> None:
        self.window.jobs.submit(kind, title, factory, on_result=done,
                                on_error=lambda msg: self.set_status(f"{title} failed: {msg}"))

    def refresh(self) -> None:
        snap = self.snapshot(reads_data=False)
        if snap is None:
            return
        model = snap.model
        traced = weakref.ref(model)
        self.overlays.overlays.clear()
        for name, (of, values, kw) in getattr(self.window, "_published_overlays", {}).items():
            if of() is model:  # what other views computed for this model (publish_overlay)
                self.overlays.set(name, values, **kw)
        state = self.window.state
        if self._reference is None or not getattr(state, "weights_modified", False):
            # the weights at load: kept across kept fine-tunes (each one a new model version)
            self._reference = {k: v.copy() for k, v in (getattr(state, "params", None) or {}).items()}

        def done(result: jobs.GraphResult) -> None:
            self._result_model = traced
            self.show_result(result)

        self.submit("analysis-graph", "tracing the graph", lambda: jobs.graph_job(model), done,
                    snap.provenance)

    def current_result(self) -> jobs.GraphResult | None:
        """The last trace when it is of the loaded model (drawn or not), else None."""
        model = self.model()
        return self.result if model is not None and self._result_model() is model else None

    def show_result(self, result: jobs.GraphResult) -> None:
        self.result = result
        self.set_status("; ".join(result.notices))

        def draw() -> None:
            if result.hierarchy is not None:
                self.view.set_hierarchy(result.hierarchy, graph=result.graph)
            else:
                self.view.set_graph(result.graph)
            self._draw_densities()
            self._set_groups()
            model = self.model()
            self._traced = (lambda: None) if model is None else weakref.ref(model)
            if self.window.state.selected:
                self._selected_elsewhere(self.window.state.selected)
            if result.hierarchy is None or result.hierarchy.method != "hierarchy":
                self._flops_overlay()  # a model that did not run on the example has no FLOPs
            self._derived_overlays()
            self._model_diff_overlays()

        self.when_visible("graph", draw)
        for listener in self.listeners:
            listener(result)

    def _set_groups(self) -> None:
        """Coupled groups with the reason for each member and the units the mask keeps."""
        from visualizer.core.structure.overlays import coupling_reasons, units_kept
        from visualizer.ui.views.graph import CoupledGroup

        r = self.result
        if r is None:
            return
        if not r.group_objects:
            self.view.set_groups(r.groups)
            return
        masks = getattr(self.window.state, "masks", None)
        out = []
        for g in r.group_objects:
            reasons, layers = [], []
            for param, _role, why in coupling_reasons(g, r.graph, self.model()):
                layer = param.rsplit(".", 1)[0]
                if layer not in layers:  # one line per layer: its weight's reason (biases and
                    layers.append(layer)  # running statistics go with it)
                    reasons.append((layer, why))
            kept = int(units_kept(g, masks).sum()) if masks is not None else None
            note = "" if g.prunable else f" (not prunable: {g.reason})"
            out.append(CoupledGroup(g.id, f"#{g.id} {g.kind}s of {g.root}{note}", layers, reasons, g.size, kept))
        self.view.set_groups(out)

    def update_densities(self) -> None:
        # a new model's masks on the old model's graph would only recolour nothing (3-8 ms of
        # GUI thread during the load); the new graph is drawn with them
        if self.result is not None and self._shows_current_model():
            self.when_visible("densities", self._draw_densities)
            self.when_visible("derived", self._derived_overlays)

    def _draw_densities(self) -> None:
        state = self.window.state
        masks = getattr(state, "masks", None)
        if masks is not None and self.result is not None:
            kept, total = getattr(state, "layer_kept", {}), getattr(state, "layer_total", {})
            if kept and total:  # the window's cheap read-outs, no pass over the masks
                self.view.set_densities({k: kept[k] / total[k] for k in kept if total.get(k)})
            else:
                self.view.set_densities({ld.name: ld.density for ld in masks.layers()})
            self._refresh_kept()

    def _refresh_kept(self) -> None:
        """The units the new mask keeps, for the groups on screen only (the list of the
        selected layer and the highlighted group): a slider move must not rescan every group."""
        from visualizer.core.structure.overlays import units_kept

        v, r = self.view, self.result
        masks = getattr(self.window.state, "masks", None)
        if r is None or masks is None or not r.group_objects:
            return
        shown = {g.id for g in v.groups_of(v._layer_of(v.selected))} if v.groups_tree.isVisible() else set()
        if v.active_group is not None:
            shown.add(v.active_group.id)
        if not shown:
            return
        by_id = {g.id: g for g in r.group_objects}
        for g in v.groups:
            if g.id in shown and g.id in by_id:
                g.kept = int(units_kept(by_id[g.id], masks).sum())
        if v.groups_tree.isVisible():
            v._show_groups()

    def _flops_overlay(self) -> None:
        from visualizer.core.structure import overlays as ov

        model = self.model()
        if model is None:
            return

        def done(flops: dict) -> None:
            self.overlays.set("FLOPs", flops, label="FLOPs per forward (1 sample)", source="speed")
            self._derived_overlays()

        self.window.jobs.submit("graph-flops", "FLOPs per layer", lambda: ov.computed(ov.layer_flops, model),
                                on_result=done, on_error=lambda msg: None)

    def _derived_overlays(self) -> None:
        """A/B compare (the snapshot against the current mask), score statistics and the
        parameter change since the model was loaded, in a job."""
        from visualizer.core.structure import overlays as ov

        state = self.window.state
        a, b = getattr(state, "snapshot", None), getattr(state, "masks", None)
        scores = getattr(state, "scores", None)
        ref = self._reference if getattr(state, "weights_modified", False) else None
        params = dict(getattr(state, "params", None) or {})
        flops = self.overlays.get("FLOPs")
        flops = flops.values if flops is not None else None

        def compute():
            import torch

            out = {}
            if a is not None and b is not None:
                for name, values in ov.diff_overlays(ov.mask_diff(a, b), flops).items():
                    out[name] = (values, name.startswith("Δ"))
            if scores:
                for name, values in ov.score_statistics(scores).items():
                    out[name] = (values, False)
            if ref:
                before = {k: torch.from_numpy(v) for k, v in ref.items()}
                after = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
                out["parameter change"] = (ov.parameter_change(before, after), False)
            return out

        def done(out: dict) -> None:
            for name in [n for n in self.overlays.names() if n.startswith(("A/B", "Δ"))]:
                if name not in out:
                    self.overlays.remove(name)
            for name, (values, diverging) in out.items():
                fraction = name.startswith("A/B")
                self.overlays.set(name, values, diverging=diverging, source="graph",
                                  bounds=(0.0, 1.0) if fraction else None)

        self.window.jobs.submit("graph-overlays", "graph overlays", lambda: ov.computed(compute),
                                on_result=done, on_error=lambda msg: None)

    def request_diff(self, kind: str) -> None:
        """Diff the shown model with B (``kind``: "shrunk" or "training", see ui.views.diffs)."""
        self.diff_box.setCurrentIndex(0)  # a choice is an action: choosing it again recomputes
        if not kind:
            return
        self._show_diff_next = True
        if diffs.request_model_diff(self.window, kind, self.set_status):
            self._show_diff_next = False

    def _model_diff_overlays(self) -> None:
        """The overlays of the state's model diff (Δ params, Δ FLOPs, weight change); removed
        when the diff is cleared."""
        diff = getattr(self.window.state, "model_diff", None)
        fresh = diff.overlays() if diff is not None else {}
        for name in [n for n in self.overlays.names() if n.startswith("models:") and n not in fresh]:
            self.overlays.remove(name)
        for name, (values, label, diverging, bounds) in fresh.items():
            self.overlays.set(name, values, label=label, diverging=diverging, source="model diff", bounds=bounds)
        if fresh and self._show_diff_next:
            self._show_diff_next = False
            main = diff.main_overlay()
            self.view.set_overlay(main if main in fresh else next(iter(fresh)))
            totals = diff.totals()
            text = f"B = {diff.label_b}, A = {diff.label_a}"
            if diff.kind == "shrunk" and totals["params_a"]:
                text += f": {totals['params_b']:,.0f} of {totals['params_a']:,.0f} parameters"
                if totals["flops_a"]:
                    text += f", {totals['flops_b'] / totals['flops_a']:.0%} of the FLOPs"
            self.set_status("; ".join([text, *diff.notices]))

    def compare_shrunk(self) -> None:
        """The before/after table: dense vs masked vs shrunk at the slider's density (the
        shrunk model of the shown diff when there is one), latency measured in a job."""
        state = self.window.state
        snap = self.snapshot(reads_data=False, settings={"table": "masked vs shrunk"})
        device = self.device()
        if snap is None or device is None:
            return
        model = snap.model
        density = float(getattr(state, "density", 0.5) or 0.5)
        diff = getattr(state, "model_diff", None)
        shrunk = diff.model_b if diff is not None and diff.kind == "shrunk" else None
        what = diff.label_b if shrunk is not None else f"shrunk to {density:.0%} of each group's units (group L2)"
        masks = getattr(state, "masks", None)
        prunable = masks.total() if masks is not None else 0
        self.submit("analysis-speed", f"dense vs masked vs shrunk on {device}",
                    lambda: jobs.speed_job(model, density, device=device, shrunk=shrunk),
                    lambda rep: self.show_before_after(rep, prunable, what), snap.provenance)

    def show_before_after(self, report, prunable: int, what: str = "") -> None:
        from visualizer.core.structure.overlays import before_after
        from visualizer.ui.views.graph import BeforeAfterTable

        rows, note = before_after(report, prunable)
        head = (f"shrunk = {what}; masked = the same number of weights kept by global magnitude. "
                if what else "")
        timing = f"Latency: median of {report.repeats} forward passes (batch {report.batch}) on {report.device}."
        self.before_after = BeforeAfterTable(rows, f"{head}{timing}\n{note}", self)
        self.before_after.show()

    def export(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Export graph", "graph.png",
                                              "PNG image (*.png);;SVG drawing (*.svg);;JSON (*.json)")
        if path:
            self.export_to(path)

    def export_to(self, path: str, width: int = 2400, height: int = 1350) -> None:
        """Write the graph by the file's extension: .png, .svg or .json."""
        try:
            if path.endswith(".svg"):
                self.view.export_svg(path, width, height)
            elif path.endswith(".json"):
                self.view.export_json(path)
            else:
                self.view.export_png(path, width, height)
            self.set_status(f"wrote {path}")
        except OSError as exc:
            self.set_status(f"could not write {path}: {exc}")

    def _shows_current_model(self) -> bool:
        model = self.model()
        return model is not None and self._traced() is model

    def _clicked(self, layer: str) -> None:
        name = param_for_layer(self.window.state, layer)
        if name is not None:
            self.window.state.select(name)

    def _show_heatmap(self, layer: str) -> None:
        """A double click on a layer: select it and bring its mask heatmap to the front."""
        self._clicked(layer)
        dock = getattr(self.window, "docks", {}).get("heatmap")
        if dock is not None:
            dock.raise_()

    def _selected_elsewhere(self, name: str) -> None:
        if not self._shows_current_model():
            return  # drawn with the new graph (show_result)
        self.view.select_layer(name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name)


class SpectrumPanel(AnalysisPanel):
    def __init__(self, window) -> None:
        super().__init__(window, SpectrumView())
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 50)
        self.top_k.setValue(5)
        self.top_k.setPrefix("top-k ")
        self.probes = QSpinBox()
        self.probes.setRange(0, 50)
        self.probes.setValue(4)
        self.probes.setPrefix("SLQ probes ")
        compute = self.add_button("Compute spectrum", self.compute,
                                  "Lanczos top/bottom eigenvalues, SLQ density and Hutchinson trace, "
                                  "dense and masked at theta = m * w")
        self.samples = samples_box()
        self.toolbar.addWidget(self.top_k)
        self.toolbar.addWidget(self.probes)
        self.toolbar.addWidget(self.samples)
        self.finish_toolbar()
        self.needs_data(compute)
        follow_dataset(window.state, self.samples)

    def compute(self) -> None:
        device = self.device()
        k, probes = self.top_k.value(), self.probes.value()
        # a mask copy: the slider moving meanwhile must not change the mask under the job
        snap = self.snapshot(mask=True, settings={"top_k": k, "probes": probes, "samples": self.samples.value()})
        if snap is None or device is None:
            return
        n, size = sample_batches(self.samples.value(), snap.data)
        self.submit("analysis-spectrum", f"Hessian spectrum on {device}",
                    lambda: jobs.spectrum_job(snap.model, snap.data, snap.masks, top_k=k, density_probes=probes,
                                              n_batches=n, batch_size=size, device=device),
                    lambda r: self.show_result(r, snap.provenance), snap.provenance)

    def show_result(self, result, origin=None) -> None:
        self.view.set_spectra([adapters.spectrum_data(result.dense, "dense"),
                               adapters.spectrum_data(result.masked, "masked")])
        self.origin = origin  # what the drawn spectra were computed from (core.provenance)


class LandscapePanel(AnalysisPanel):
    def __init__(self, window) -> None:
        super().__init__(window, LandscapeView())
        self.steps = QSpinBox()
        self.steps.setRange(5, 101)
        self.steps.setValue(21)
        self.steps.setPrefix("grid ")
        compute = self.add_button("Compute landscape", self.compute,
                                  "dense -> pruned interpolation and the 2D plane through both points")
        self.samples = samples_box()
        self.toolbar.addWidget(self.steps)
        self.toolbar.addWidget(self.samples)
        self.finish_toolbar()
        self.needs_data(compute)
        follow_dataset(window.state, self.samples)

    def compute(self) -> None:
        steps, device = self.steps.value(), self.device()
        snap = self.snapshot(mask=True, settings={"steps": steps, "samples": self.samples.value()})
        if snap is None or device is None:
            return
        n, size = sample_batches(self.samples.value(), snap.data)
        self.submit("analysis-landscape", f"loss landscape on {device}",
                    lambda: jobs.landscape_job(snap.model, snap.data, snap.masks, steps_2d=steps, n_batches=n,
                                               batch_size=size, device=device),
                    lambda r: self.show_result(r, snap.provenance), snap.provenance)

    def show_result(self, r: jobs.LandscapeResult, origin=None) -> None:
        self.view.set_curves([adapters.curve_1d(r.curve, "dense -> pruned")])
        self.view.set_surface(adapters.surface_2d(r.surface, r.points))
        self.origin = origin  # what the drawn landscape was computed from (core.provenance)


class SpeedPanel(AnalysisPanel):
    def __init__(self, window) -> None:
        super().__init__(window, SpeedView())
        self.density = QDoubleSpinBox()
        self.density.setRange(0.05, 1.0)
        self.density.setSingleStep(0.05)
        self.density.setValue(0.5)
        self.density.setPrefix("channel density ")
        self.add_button("Measure speed", self.compute,
                        "latency of dense, masked (same parameter count) and shrunk models")
        self.toolbar.addWidget(self.density)
        self.finish_toolbar()

    def compute(self) -> None:
        d, device = self.density.value(), self.device()
        snap = self.snapshot(reads_data=False, settings={"channel_density": d})
        if snap is None or device is None:
            return
        self.submit("analysis-speed", f"measuring speed on {device}",
                    lambda: jobs.speed_job(snap.model, d, device=device), self.show_result, snap.provenance)

    def show_result(self, report) -> None:
        self.view.set_entries(adapters.speed_entries(report))


class StructurePanel(AnalysisPanel):
    """DenseNet connectivity and Inception branches of the loaded model (from the graph job)."""

    def __init__(self, window, view: AnalysisView) -> None:
        super().__init__(window, view)
        self.lasso_button = self.add_button(
            "Group lasso", self.group_lasso,
            "Train a copy with the group-lasso penalty (block soft thresholding; Wen et al. 2016) on this "
            "model's DenseNet connections / Inception branches and show what it removed")
        self.lam = QDoubleSpinBox()
        self.lam.setDecimals(3)
        self.lam.setRange(0.001, 1.0)
        self.lam.setSingleStep(0.01)
        lam, epochs = jobs.LASSO_DEFAULTS["densenet" if isinstance(view, ConnectivityView) else "inception"]
        self.lam.setValue(lam)
        self.lam.setPrefix("λ ")
        self.lam.setToolTip("group-lasso penalty λ: larger removes more groups")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 50)
        self.epochs.setValue(epochs)
        self.epochs.setSuffix(" epochs")
        self.toolbar.addWidget(self.lam)
        self.toolbar.addWidget(self.epochs)
        self.finish_toolbar()
        self.needs_data(self.lasso_button)
        graph = getattr(window, "views", {}).get("graph")
        self.graph = graph if isinstance(graph, GraphPanel) else None
        if self.graph is not None:
            self.graph.listeners.append(self.show_result)
            if self.graph.result is not None:  # traced before this tab was first opened
                self.show_result(self.graph.result)

    def _missing(self, r: jobs.GraphResult) -> str:
        """Why this view has nothing to show for the traced model, or ''."""
        if isinstance(self.view, ConnectivityView):
            conn = None if r.connectivity is None else adapters.connectivity_input(r.connectivity)
            return "" if conn is not None and conn.sources and conn.readers else \
                "no concatenation connections in this model"
        return "" if adapters.branch_modules(r.branches) else "no Inception modules in this model"

    def compute(self) -> None:
        """Screenshot hook: the before/after picture."""
        self.group_lasso()

    def group_lasso(self) -> None:
        state = self.window.state
        model, data = self.model(), getattr(state, "dataset", None)
        if model is None or data is None:
            self.set_status(NEEDS_DATA)
            return
        device = self.device()
        if device is None:
            return
        traced = None if self.graph is None else self.graph.current_result()
        if traced is not None:
            missing = self._missing(traced)
            if missing:  # say so now, not after training a copy for half a minute
                self.status.setText(f"{missing}: load densenet-mini or inception-mini")
                return
        lam, epochs = self.lam.value(), self.epochs.value()
        kind = "analysis-densenet" if isinstance(self.view, ConnectivityView) else "analysis-inception"
        snap = self.snapshot(settings={"lam": lam, "epochs": epochs})
        self.submit(kind, f"group lasso (λ = {lam:g}, {epochs} epochs)",
                    lambda: jobs.group_lasso_job(snap.model, snap.data, lam=lam, epochs=epochs, device=device),
                    self.show_lasso, snap.provenance)

    def show_lasso(self, r: jobs.GroupLassoResult) -> None:
        zeroed = r.summary()
        if isinstance(self.view, ConnectivityView):
            conn = None if r.before_connectivity is None else adapters.connectivity_input(r.before_connectivity)
            if conn is None or not conn.sources or not conn.readers:
                self.status.setText("no concatenation connections in this model")
                return
            self.view.set_connectivity(adapters.connectivity_input(r.before_connectivity),
                                       adapters.connectivity_input(r.after_connectivity))
        else:
            modules = adapters.branch_modules(r.after_branches)
            if not modules:
                self.status.setText("no Inception modules in this model")
                return
            self.view.set_modules(modules)
        self.status.setText(zeroed)

    def show_result(self, r: jobs.GraphResult) -> None:
        missing = self._missing(r)
        self.status.setText(missing)
        if isinstance(self.view, ConnectivityView):
            if missing:
                return
            conn = adapters.connectivity_input(r.connectivity)
            self.when_visible("structure", lambda: self.view.set_connectivity(conn))
        else:
            modules = adapters.branch_modules(r.branches)
            self.when_visible("structure", lambda: self.view.set_modules(modules))


def densenet_panel(window) -> StructurePanel:
    return StructurePanel(window, ConnectivityView())


def inception_panel(window) -> StructurePanel:
    return StructurePanel(window, BranchView())
