"""The workspace: what a computation depends on, and the rules derived from it.

A :class:`Workspace` holds the model, the data, the device and the seed. Every caller (CLI
commands, window actions, presets, sweeps, IMP, cluster tasks) takes its batches from here, so
the same settings give the same mask and the same accuracy everywhere:

- :func:`criterion_batches`: the batches a data-driven criterion (SNIP, GraSP, Taylor, OBD)
  scores on: the first ``n`` mini-batches of a seeded shuffle of the training split.
- :func:`evaluation_batches`: the batches evaluation and curvature read: the first ``n``
  mini-batches of a split in fixed order (all of them when ``n`` is None); :func:`curvature_batches`
  holds them as the Hessian operator's evaluation set.
- :func:`training_batches`: one epoch of seeded shuffled mini-batches of the training split.

Each rule is one function; nothing else in the code base slices a dataset. The rules read both
kinds of source (:mod:`visualizer.core.data.sources`): an in-memory dataset is sliced as tensors;
a streaming source (image folder, torchvision dataset, a user's factory) is decoded through
DataLoaders (:mod:`visualizer.core.data.streaming`) at the same sample indices, so a seed picks
the same samples from either. Scoring has one entry point too: :func:`score_job`
(``Workspace.scores``) gives a criterion the workspace's criterion batches and seed, whether the
window, a CLI command, a sweep, a preset or IMP asks; :func:`reconstruct_job` is the entry point of
the masks that are not a ranking (SparseGPT on the calibration sample, N:M cuts of a criterion).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn

from visualizer.core.curvature.operator import EvalSet
from visualizer.core.data.sources import Dataset
from visualizer.core.data.streaming import StreamBatches, StreamSource, seeded_order

# the device rules' home is core.device; re-exported for the callers that import them from here
from visualizer.core.device import (  # noqa: F401
    DEVICE_CHOICES,
    available_devices,
    device_key,
    device_memory,
    device_name,
    model_on,
    resolve_device,
)
from visualizer.core.pruning.criteria import CRITERIA, score
from visualizer.core.pruning.llm_criteria import CALIBRATED, SparseGPTResult, sparsegpt_job
from visualizer.core.pruning.nm import nm_masks, transposed_weights
from visualizer.core.tasks import Step, sub

Source = Dataset | StreamSource

Batch = tuple[torch.Tensor, torch.Tensor]

# The defaults of the rules (the CLI's flags and the window's controls start from these).
SCORE_BATCHES = 4  # mini-batches a data criterion scores on
SCORE_BATCH_SIZE = 128
EVAL_BATCH_SIZE = 512
CURVATURE_BATCHES = 1  # mini-batches of the test split the Hessian and landscape read by default
CURVATURE_BATCH_SIZE = 128
OBD_PROBES = 8  # Hutchinson probes of the obd criterion
# the window's sample of a streamed source (an image folder): a data criterion or a curvature
# view on ResNet-50 then reads 32 images, which keeps a CPU preview to seconds
PREVIEW_BATCHES = 2
PREVIEW_BATCH_SIZE = 16
# the calibration sample of the activation-aware criteria (Wanda, SparseGPT): 128 sequences, the
# sample both papers use, read in mini-batches of 8
CALIBRATION_SEQUENCES = 128
CALIBRATION_BATCH_SIZE = 8


def streamed(data) -> bool:
    """Whether ``data`` is read through DataLoaders (a StreamSource) rather than sliced."""
    return not getattr(data, "in_memory", True)


def window_evaluation(data: Source) -> tuple[int | None, int]:
    """The window's evaluation sample of ``data`` as (batches, batch size) for
    :func:`evaluation_batches`: a streamed source (an image folder, a factory) reads the preview
    sample (PREVIEW_BATCHES x PREVIEW_BATCH_SIZE, so a CPU epoch-end evaluation of ResNet-50 takes
    seconds, not minutes); an in-memory dataset is small and keeps its whole test split."""
    if streamed(data):
        return PREVIEW_BATCHES, PREVIEW_BATCH_SIZE
    return None, EVAL_BATCH_SIZE


def evaluation_sample_size(data: Source, n: int | None, batch_size: int = EVAL_BATCH_SIZE,
                           split: str = "test") -> int:
    """How many samples :func:`evaluation_batches` reads for ``n`` batches of ``batch_size``."""
    size = data.split_size(split) if streamed(data) else int(data.split(split)[0].shape[0])
    return size if not n else min(size, n * batch_size)


def criterion_batches(data: Source, n: int = SCORE_BATCHES, batch_size: int = SCORE_BATCH_SIZE,
                      seed: int = 0) -> list[Batch]:
    """The first ``n`` mini-batches of a shuffle of the training split drawn from
    ``torch.Generator().manual_seed(seed)``: what every data criterion scores on."""
    if n < 1:
        raise ValueError(f"a data criterion needs at least one batch, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if streamed(data):
        # the same indices as the in-memory path: the first n batches of randperm(seed)
        order = seeded_order(data.split_size("train"), seed)[: n * batch_size]
        return list(data.batches("train", order.tolist(), batch_size))
    out = []
    for b in training_batches(data, batch_size, seed):
        out.append(b)
        if len(out) == n:
            break
    return out


def calibration_batches(data: Source, n: int = CALIBRATION_SEQUENCES, seed: int = 0,
                        batch_size: int = CALIBRATION_BATCH_SIZE) -> list[Batch]:
    """The calibration sample of Wanda and SparseGPT: the first ``n`` samples (token blocks for
    text data) of :func:`criterion_batches`' seeded shuffle of the training split, in batches of
    ``batch_size`` (the last one shorter when ``n`` is not a multiple)."""
    if n < 1:
        raise ValueError(f"the calibration sample needs at least one sequence, got {n}")
    batches = criterion_batches(data, -(-n // batch_size), batch_size, seed)
    out, left = [], n
    for x, y in batches:
        out.append((x[:left], y[:left]))
        left -= int(x[:left].shape[0])
        if left <= 0:
            break
    return out


def evaluation_batches(data: Source, n: int | None = None, batch_size: int = EVAL_BATCH_SIZE,
                       split: str = "test") -> list[Batch] | StreamBatches:
    """The first ``n`` mini-batches of ``split`` in fixed order (``n`` None or 0: the whole split).

    A list of tensors, except for the whole split of a streaming source: that is a
    :class:`StreamBatches` (re-iterable, ``len`` = batches, ``.samples``) decoded while it is
    read, so evaluating a 1.2M-image folder never holds it. A bounded sample (``n`` given) is a
    list even when streamed: curvature reads the same batches many times."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if n is not None and n < 0:
        raise ValueError(f"number of batches must be >= 0, got {n}")
    if streamed(data):
        size = data.split_size(split)
    else:
        x, y = data.split(split)
        size = int(x.shape[0])
    if size == 0:
        raise ValueError(f"the {split} split of {getattr(data, 'name', 'the dataset')} is empty")
    stop = size if not n else min(size, n * batch_size)
    if streamed(data):
        stream = data.batches(split, range(stop), batch_size)
        return list(stream) if n else stream
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, stop, batch_size)]


def curvature_batches(
    dataset: Source,
    n_batches: int | None = CURVATURE_BATCHES,
    batch_size: int = CURVATURE_BATCH_SIZE,
    split: str = "test",
) -> EvalSet:
    """The batches the Hessian operator and the loss landscape read: :func:`evaluation_batches`
    as an :class:`~visualizer.core.curvature.operator.EvalSet`, the first ``n_batches`` batches
    of ``split`` in fixed order (None or 0: the whole split)."""
    if not n_batches and not getattr(dataset, "in_memory", True):
        # the operator reads its batches at every Hessian-vector product: held in memory, a
        # streamed split (an image folder) would be held whole
        raise ValueError(f"curvature on {dataset.name} reads a sample: give a number of batches "
                         "(--batches N, or 'samples' in the window), not the whole split")
    return EvalSet(list(evaluation_batches(dataset, n_batches, batch_size, split)))


def training_batches(data: Source, batch_size: int, seed: int | torch.Generator) -> Iterator[Batch]:
    """One epoch of the training split in mini-batches, shuffled by a seeded generator (pass the
    same ``torch.Generator`` on to get the next epoch's order)."""
    if streamed(data):
        yield from data.batches("train", seeded_order(data.split_size("train"), seed).tolist(), batch_size)
        return
    x, y = data.x_train, data.y_train
    # the permutation goes to the data's device once per epoch: a copy per batch would make a
    # GPU wait for the host at every training step
    order = seeded_order(int(x.shape[0]), seed).to(x.device)
    for start in range(0, int(x.shape[0]), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


@dataclass(frozen=True)
class Workspace:
    """A model, its data, the device and the seed: the inputs every computation shares."""

    model: nn.Module
    data: Source | None
    device: torch.device = torch.device("cpu")
    seed: int = 0
    model_ref: str = ""
    score_batches: int = SCORE_BATCHES
    score_batch_size: int = SCORE_BATCH_SIZE
    calibration: int = CALIBRATION_SEQUENCES

    def needs_data(self, what: str = "this") -> Source:
        if self.data is None:
            raise ValueError(f"{what} needs a dataset: choose one (--data NAME, or Data in the window)")
        return self.data

    def criterion_batches(self) -> list[Batch]:
        return criterion_batches(self.needs_data("a data criterion"), self.score_batches,
                                 self.score_batch_size, self.seed)

    def evaluation_batches(self, n: int | None = None, batch_size: int = EVAL_BATCH_SIZE,
                           split: str = "test") -> list[Batch]:
        return evaluation_batches(self.needs_data("evaluation"), n, batch_size, split)

    def with_model(self, model: nn.Module) -> Workspace:
        return replace(self, model=model)

    def scores(self, criterion: str, model: nn.Module | None = None,
               probes: int = OBD_PROBES) -> Generator[Step, None, dict[str, torch.Tensor]]:
        """:func:`score_job` on this workspace."""
        return score_job(self, criterion, model, probes=probes)


def score_job(workspace: Workspace, criterion: str, model: nn.Module | None = None, *,
              probes: int = OBD_PROBES) -> Generator[Step, None, dict[str, torch.Tensor]]:
    """Scores of ``criterion`` on ``model`` (default: the workspace's): the one scoring entry
    point. A data criterion (SNIP, GraSP, Taylor, OBD) reads :meth:`Workspace.criterion_batches`;
    the workspace's seed also seeds the random criterion and the OBD probes. Raises ValueError for
    an unknown criterion, or a data criterion without data."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r} (use {', '.join(CRITERIA)})")
    info = CRITERIA[criterion]
    batches = None
    if info.needs_data:
        if workspace.data is None:
            raise ValueError(f"{info.title} needs data: choose a dataset first")
        batches = (calibration_batches(workspace.data, workspace.calibration, workspace.seed)
                   if criterion in CALIBRATED else workspace.criterion_batches())
    target = workspace.model if model is None else model
    return (yield from score(criterion, target, batches, seed=workspace.seed, probes=probes))


def reconstruct_job(workspace: Workspace, criterion: str, density: float,
                    nm: tuple[int, int] | None = None, *, probes: int = 8
                    ) -> Generator[Step, None, SparseGPTResult]:
    """The mask of a pruning that is not a ranking: SparseGPT at ``density`` (or N:M) on the
    workspace's calibration sample, or an elementwise criterion's scores cut to N:M (the kept
    weights then unchanged). The one entry point of ``prune --structure N:M`` and
    ``prune --criterion sparsegpt``."""
    if criterion == "sparsegpt":
        if workspace.data is None:
            raise ValueError("SparseGPT needs calibration data: choose a dataset (--data text:FILE)")
        batches = calibration_batches(workspace.data, workspace.calibration, workspace.seed)
        model = workspace.model
        return (yield from sparsegpt_job(model, batches, density, nm=nm))
    if nm is None:
        raise ValueError(f"{criterion} is a ranking criterion: build a ranking for unstructured or channel masks")
    scores = yield from sub(workspace.scores(criterion, probes=probes), 0.0, 0.9)
    result = nm_masks(scores, *nm, transposed=transposed_weights(workspace.model))
    result.masks.metadata.update(criterion=criterion)
    yield Step("N:M masks", 1.0)
    return SparseGPTResult(result.masks, {}, result.skipped)
