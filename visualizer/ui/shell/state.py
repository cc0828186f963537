"""The window's state: what is loaded, the current mask, rankings and results.

Views only listen to this object's signals and read its fields; panels change it through its
methods. Objects held here are replaced, never mutated in place, so a job working on an older
object in a worker thread is never disturbed (and a cancelled job changes nothing).

Every model installed (loaded, opened, or trained weights kept) and every dataset chosen gets a
new version number (core.provenance). A job starts from :meth:`AppState.capture`, a snapshot of
the current model version, data and a mask copy with its provenance; ``origin_changed`` tells the
window's job runner to retire the jobs of the old state (JobRunner.retire), and
:meth:`AppState.add_result` refuses rows of a state that is no longer shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from visualizer.core.provenance import Provenance, Snapshot, next_version, settings_items

RankKey = tuple[str, str, str]  # (criterion, scope, structure)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    prunable: bool


class AppState(QObject):
    model_changed = Signal()
    dataset_changed = Signal()  # a dataset chosen under Data (set_model emits model_changed)
    masks_changed = Signal()
    scores_changed = Signal()
    results_changed = Signal()
    snapshot_changed = Signal()
    selection_changed = Signal(str)
    pruning_changed = Signal()  # criterion / scope / structure / density settings
    dirty_changed = Signal(bool)
    origin_changed = Signal()  # a new model version or dataset: jobs of the old state retire
    model_diff_changed = Signal()  # a diff of two models computed (graph, overview) or cleared

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.loaded = None  # core.models.LoadedModel
        self.dataset = None  # core.data.Dataset
        self.dataset_name: str | None = None
        self.layers: list[LayerRow] = []
        self.prunable: list[str] = []
        self.params: dict[str, Any] = {}  # prunable name -> CPU numpy weights (read-only views)
        self.masks = None  # core.masks.MaskSet
        self.mask_source: str | None = None  # file name when the mask came from a file, not the slider
        self.layer_kept: dict[str, int] = {}  # kept per layer for self.masks (cheap read-outs)
        self.layer_total: dict[str, int] = {}
        self.snapshot = None  # MaskSet "A" to compare against
        self.scores: dict[str, Any] | None = None  # name -> numpy scores for the current key
        self.rankings: dict[RankKey, Any] = {}  # key -> (Ranking, scores-as-numpy)
        self.criterion = "magnitude"
        self.scope = "global"
        self.structure = "unstructured"
        self.density = 1.0
        self.selected: str | None = None
        self.results: list[dict] = []  # result rows (sweeps, evaluations, IMP rounds)
        self.baseline: float | None = None  # dense test accuracy reported with the model
        self.baseline_dataset: str | None = None  # the dataset self.baseline was measured on
        self.model_version = 0  # core.provenance.next_version() per installed model
        self.data_version = 0  # per chosen dataset
        self.view_settings: dict[str, Any] = {}
        self.device = "auto"  # the device every job runs on (ui.device_ui: the status-bar chooser)
        self.weights_modified = False  # model weights differ from the reference (training)
        self.previous_model = None  # the model version before the last kept training (diffs)
        self.model_diff = None  # core.structure.model_diff.ModelDiff of the shown model, or None
        self._dirty = False

    # --- model ----------------------------------------------------------------------------
    @property
    def model(self):
        return None if self.loaded is None else self.loaded.model

    @property
    def key(self) -> RankKey:
        return (self.criterion, self.scope, self.structure)

    def provenance(self, reads_data: bool = True, masks=None, settings: dict | None = None,
                   seed: int | None = None) -> Provenance:
        """The origin of a result computed now from the shown state (``reads_data`` False: a
        result that reads no data stays current across dataset changes)."""
        loaded = self.loaded
        return Provenance(
            model="" if loaded is None else str(loaded.ref),
            model_version=self.model_version,
            dataset=(self.dataset_name or "") if reads_data else "",
            data_version=self.data_version if reads_data else 0,
            # the shown mask's kept fraction, from the per-layer counts (no pass over the mask)
            density=None if masks is None else (self.kept() / self.total() if self.total() else 1.0),
            settings=settings_items(settings),
            device=str(self.device),
            seed=seed,
        )

    def capture(self, reads_data: bool = True, mask: bool = False, settings: dict | None = None,
                seed: int | None = None) -> Snapshot:
        """The immutable inputs of a job started now: the model version, the data, a copy of the
        mask when ``mask`` (the slider hands out live views of the ranking's mask on large
        models; a job must not see it move) and their provenance."""
        masks = self.masks.copy() if mask and self.masks is not None else None
        return Snapshot(self.model, self.dataset if reads_data else None, masks,
                        self.provenance(reads_data, masks, settings, seed))

    def is_current(self, origin: Provenance | None) -> bool:
        """Whether a result of ``origin`` still describes the shown state (None: no origin, yes)."""
        return origin is None or origin.current_under(self.provenance())

    def dense_baseline(self) -> float | None:
        """The dense accuracy on the dataset in use (core.training.experiments.dense_baseline):
        another dataset's figure is not shown as this one's."""
        from visualizer.core.training.experiments import dense_baseline

        return dense_baseline(self.results, self.dataset_name, (self.baseline_dataset, self.baseline))

    def set_model(self, loaded, dataset, info: dict) -> None:
        """Install a freshly loaded model (``info`` prepared in the loading job)."""
        self.loaded = loaded
        self.dataset = dataset
        self.dataset_name = None if dataset is None else dataset.name
        self.model_version, self.data_version = next_version(), next_version()
        self.origin_changed.emit()
        self.layers = info["layers"]
        self.prunable = info["prunable"]
        self.params = info["params"]
        self.masks = info["masks"]
        self.mask_source = info.get("mask_source")
        self.layer_total = {n: m.numel() for n, m in self.masks.masks.items()}
        kept = info.get("layer_kept")  # the loading job counts them off the GUI thread
        self.layer_kept = dict(kept) if kept is not None else {ld.name: ld.kept for ld in self.masks.layers()}
        self.snapshot = None
        self.scores = None
        self.rankings = {}
        total = sum(self.layer_total.values())
        self.density = sum(self.layer_kept.values()) / total if self.mask_source and total else 1.0
        self.results = []
        self.baseline = getattr(loaded, "accuracy", None)
        self.baseline_dataset = getattr(loaded, "dataset", None)
        self.weights_modified = False
        self.previous_model = None
        self.set_model_diff(None)
        self.selected = self.prunable[0] if self.prunable else None
        self.model_changed.emit()
        self.masks_changed.emit()
        self.scores_changed.emit()
        self.results_changed.emit()
        self.snapshot_changed.emit()
        if self.selected:
            self.selection_changed.emit(self.selected)
        self.set_dirty(False)

    def install_weights(self, loaded, params: dict) -> None:
        """Make ``loaded`` (the shown model's reference with trained weights: a new model object,
        never the old one changed in place) the current model version; mask and results stay,
        rankings are recomputed on demand. The replaced version stays as :attr:`previous_model`
        (the weights before training, for a diff)."""
        self.previous_model = None if self.loaded is None else self.loaded.model
        self.set_model_diff(None)
        self.loaded = loaded
        self.params = params
        self.model_version = next_version()
        self.origin_changed.emit()
        self.rankings = {}
        self.weights_modified = True
        self.model_changed.emit()
        self.set_dirty(True)

    def set_dataset(self, dataset) -> None:
        self.dataset = dataset
        self.dataset_name = dataset.name
        self.data_version = next_version()
        self.origin_changed.emit()
        self.rankings = {k: v for k, v in self.rankings.items() if not _needs_data(k[0])}
        self.set_dirty(True)
        self.dataset_changed.emit()

    def select(self, name: str) -> None:
        if name != self.selected and name in self.params:
            self.selected = name
            self.selection_changed.emit(name)

    # --- pruning --------------------------------------------------------------------------
    def set_masks(self, masks, dirty: bool = True, counts: dict[str, int] | None = None,
                  source: str | None = None, totals: dict[str, int] | None = None) -> None:
        """Install a mask. ``counts`` (kept per layer) and ``totals`` (weights per layer) come
        from the ranking, which maintains them without reading its masks (a large ranking's live
        masks are written per layer when read); otherwise they are counted here (core
        MaskSet.layers). ``source``: the file it was read from (None: the slider's ranking)."""
        self.masks = masks
        self.mask_source = source
        if masks is None:
            self.layer_kept, self.layer_total = {}, {}
        else:
            self.layer_total = dict(totals) if totals is not None else {n: m.numel() for n, m in masks.masks.items()}
            self.layer_kept = dict(counts) if counts is not None else {ld.name: ld.kept for ld in masks.layers()}
        self.masks_changed.emit()
        if dirty:
            self.set_dirty(True)

    def set_ranking(self, key: RankKey, ranking, scores_np: dict) -> None:
        self.rankings[key] = (ranking, scores_np)
        if key == self.key:
            self.scores = scores_np
            self.scores_changed.emit()

    def kept(self) -> int:
        return sum(self.layer_kept.values())

    def total(self) -> int:
        return sum(self.layer_total.values())

    def current_ranking(self):
        entry = self.rankings.get(self.key)
        return None if entry is None else entry[0]

    def set_model_diff(self, diff) -> None:
        """Install a diff of two models (None clears it; a new model version clears it too)."""
        if diff is not None or self.model_diff is not None:
            self.model_diff = diff
            self.model_diff_changed.emit()

    def set_snapshot(self, masks) -> None:
        self.snapshot = masks
        self.snapshot_changed.emit()

    # --- results --------------------------------------------------------------------------
    def add_result(self, row: dict, origin: Provenance | None = None) -> bool:
        """Add a result row; a row of a state no longer shown (``origin`` not current: another
        model version or dataset) is refused. Returns whether it was added."""
        if not self.is_current(origin):
            return False
        self.results = [*self.results, dict(row)]
        self.results_changed.emit()
        self.set_dirty(True)
        return True

    def set_results(self, rows: list[dict]) -> None:
        self.results = [dict(r) for r in rows]
        self.results_changed.emit()

    # --- dirty ----------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self._dirty

    def set_dirty(self, value: bool) -> None:
        if value != self._dirty:
            self._dirty = value
            self.dirty_changed.emit(value)


def _needs_data(criterion: str) -> bool:
    try:
        from visualizer.core.pruning.criteria import CRITERIA

        return bool(CRITERIA[criterion].needs_data)
    except (ImportError, KeyError):
        return True
