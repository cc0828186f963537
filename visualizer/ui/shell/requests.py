"""The main window's model, data and mask requests: load a model, choose a dataset, rank and
follow the density slider, install trained weights. Each starts a job on a snapshot of the
window's state (core.provenance); installing a new model or dataset retires the jobs of the old
one (JobRunner.retire, through AppState.origin_changed). A mixin of
:class:`visualizer.ui.shell.window.MainWindow`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from visualizer.ui.jobs import actions
from visualizer.ui.shell.status import TRAINING_KINDS
from visualizer.ui.views import sensitivity

COPY_MASK_LIMIT = 2_000_000  # above this many prunable weights the slider shows live mask views
MODEL_SUFFIXES = {".pt", ".pth", ".ts", ".jit", ".py"}


class ModelRequests:
    """Model, dataset, ranking and density requests of the main window (a mixin)."""

    def request_load(self, ref: str, weights: str = "", trust: bool = False, dataset: str = "",
                     on_done=None) -> None:
        """Load a model in the background; the current one stays until the new one is ready (its
        jobs too: installing the new model retires them, AppState.origin_changed)."""
        def done(result) -> None:
            self.install_model(*result)
            self.session_path = None
            self.update_title()
            if self.loaded_at is None:
                self.loaded_at = time.monotonic()
            self.banner.hide()
            if Path(ref).suffix in MODEL_SUFFIXES or ".py:" in ref:
                self.add_recent(ref.split(".py:")[0] + ".py" if ".py:" in ref else ref)
            # a torch.nn.utils.prune checkpoint's mask stays until the slider moves
            self.request_ranking(apply_mask=self.state.mask_source is None)
            if on_done is not None:
                on_done()

        shown = Path(ref).name if Path(ref).suffix in MODEL_SUFFIXES else ref
        settings = self.model_panel.load_settings()
        self.jobs.submit("load", f"loading {shown}",
                         lambda: actions.load_job(ref, weights or None, trust, dataset or None, **settings),
                         on_result=done)

    def install_model(self, loaded, data, info: dict) -> None:
        """Make a loaded model (from a file or a session) the current one. The jobs it starts
        (ranking, graph tracing) wait until the window has repainted (JobRunner.hold)."""
        self.jobs.hold()
        self.state.set_model(loaded, data, info)

    def request_dataset(self, name: str) -> None:
        def done(data) -> None:
            self.state.set_dataset(data)
            self.model_panel._rebuild()
            if data.notes:  # e.g. a 1000-class head on a 3-class folder
                self.show_info("; ".join(data.notes))
            self.request_ranking()

        loaded = self.state.loaded
        model, ref = (loaded.model, loaded.ref) if loaded is not None else (None, "the model")
        transform = getattr(loaded, "transform", None)
        options = self.model_panel.load_settings()["options"]
        shown = f"folder {Path(name[7:]).name}" if name.startswith("folder:") else name
        # checked against the model of its request: another model arriving meanwhile retires it
        origin = self.state.provenance(reads_data=False) if loaded is not None else None
        self.jobs.submit("data", f"loading {shown}",
                         lambda: actions.dataset_job(name, model, ref, options, transform), on_result=done,
                         on_error=lambda _message: self.model_panel.show_dataset(), origin=origin)

    def request_weights(self, path: str) -> None:
        """Weights for the current model (a weights file or a torch.nn.utils.prune checkpoint,
        whose mask then shows at once, dropped on the window)."""
        if self.state.loaded is None:
            self.show_error(f"{Path(path).name}: load a model first, then its weights")
            return
        ref = self.state.loaded.ref
        self.model_panel.weights_edit.setText(path)
        self.request_load(ref, path, self.model_panel.trust_box.isChecked(), self.state.dataset_name or "")

    def request_ranking(self, apply_mask: bool = True) -> None:
        """Rank once per (criterion, scope, structure) in the background, then follow the slider.

        ``apply_mask=False`` (opening a session) keeps the current mask until the slider moves."""
        s = self.state
        if s.loaded is None or not self.pruning_panel.criteria:
            return
        key = s.key
        if key in s.rankings:
            ranking, scores = s.rankings[key]
            s.scores = scores
            s.scores_changed.emit()
            if apply_mask:
                self.set_density(s.density, dirty=s.dirty or s.density < 1.0)
            return
        s.scores = None
        s.scores_changed.emit()
        from visualizer.core.pruning.criteria import CRITERIA

        info = CRITERIA.get(key[0])
        # the owl and sensitivity allocations read calibration data whatever the criterion
        snap = s.capture(reads_data=info is None or bool(info.needs_data) or key[1] in self.pruning_panel.DATA_ALLOCATIONS,
                         settings={"criterion": key[0], "scope": key[1], "structure": key[2]})

        def done(result) -> None:
            if not s.is_current(snap.provenance):
                return  # a different model or dataset arrived meanwhile
            rk, scores_np = result
            s.set_ranking(key, rk, scores_np)
            if s.key == key and apply_mask:
                # at 100% every ranking keeps everything: a model just loaded is not an unsaved
                # change (quitting right after start asked to save an untitled session)
                self.set_density(s.density, dirty=s.dirty or s.density < 1.0)
            else:
                self.pruning_panel.update_label()

        crit, scope, structure = key
        device = s.device
        # the sensitivity allocation's loss curves: measured in the job unless the sensitivity
        # view holds them for this model version, data and criterion; the measured rows go there
        previous = sensitivity.allocation_rows(self) if scope == "sensitivity" else []
        ref = str(s.loaded.ref)
        self.jobs.submit("rank", f"ranking by {crit} ({scope}, {structure})",
                         lambda: actions.rank_job(snap.model, snap.data, crit, scope, structure, device=device,
                                                  model_ref=ref, previous=previous),
                         on_result=done, on_partial=lambda rows: sensitivity.take_allocation_rows(
                             self, rows, snap.provenance),
                         origin=snap.provenance)
        self.pruning_panel.update_label()

    def set_density(self, density: float, dirty: bool = True) -> None:
        """The slider path: a threshold lookup in the cached ranking, no re-ranking."""
        s = self.state
        s.density = float(density)
        rk = s.current_ranking()
        if rk is None:
            self.pruning_panel.update_label()
            return
        # The Ranking is owned by this (GUI) thread: moving its cut only flips the entries between
        # the old and new cut. Large models get live views (no copy); consumers that keep a mask
        # (snapshot, sessions, training jobs) copy it.
        masks = rk.mask_at(density, copy=rk.total() <= COPY_MASK_LIMIT)
        totals = {n: math.prod(shape) for n, shape in zip(rk.names, rk.shapes)}
        s.set_masks(masks, dirty=dirty, counts=rk.layer_kept(), totals=totals)

    def _cancel_training(self) -> None:
        for kind in TRAINING_KINDS:
            self.jobs.cancel(kind)

    def install_trained_model(self, model) -> None:
        """Install a trained copy as a new model version (keep the mask; re-rank lazily). The
        old model object is never changed: jobs still reading it read what they started from."""
        from dataclasses import replace

        s = self.state
        model.train(s.loaded.model.training)
        s.install_weights(replace(s.loaded, model=model), actions.model_info(model)["params"])
        self.request_ranking(apply_mask=False)
