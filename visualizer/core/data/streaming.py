"""Streaming data sources: train and test splits as ``torch.utils.data.Dataset`` objects, read
through DataLoaders one mini-batch at a time, so nothing holds a whole image dataset in memory.

A :class:`StreamSource` is what an image folder (:mod:`visualizer.core.data.folder`), a
torchvision dataset or a user's ``file.py:factory`` becomes. The batch rules of
:mod:`visualizer.core.workspace` read it through :class:`StreamBatches`:

- the sample order is an explicit index list: a seeded ``torch.randperm`` for criterion and
  training batches (the same permutation the in-memory sources use, so a seed means the same
  sample order for both kinds), ``0..n-1`` for evaluation; DataLoader workers only decode, so
  the order does not depend on the number of workers;
- only the asked-for samples are decoded (a 2-batch preview of a 1.2M-image folder reads 2
  batches, not the worker prefetch of a whole shuffle);
- workers: ``min(4, cpus - 1)`` by default (0 = decode in the calling thread); pinned host
  memory when CUDA is present, so the copy to the GPU can overlap;
- the workers persist: a source keeps one DataLoader per (split, batch size) with
  ``persistent_workers=True`` and a sampler whose index list is set before each pass, so the
  next evaluation of the same source reuses the processes instead of starting new ones (a
  start per pass dominated short evaluations; docs/performance.md). A pass that finds that
  loader busy (two jobs reading one source at once) uses a loader of its own for that pass.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Sampler, default_collate
from torch.utils.data import Dataset as TorchDataset

Batch = tuple[torch.Tensor, torch.Tensor]


def default_workers() -> int:
    """DataLoader worker processes by default: ``min(4, cpus - 1)``, at least 0."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class StreamSource:
    """A classification dataset whose splits are read sample by sample (never all in memory).

    ``test`` is the evaluation split (a folder's ``val/`` or ``test/``, or the held-out part of a
    single class tree); ``classes`` names the labels 0..num_classes-1 when known.
    """

    name: str
    train: TorchDataset
    test: TorchDataset
    num_classes: int
    input_shape: tuple[int, ...]
    description: str = ""
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workers: int | None = None  # None: default_workers()
    # (split, batch size) -> the persistent loader of that pass shape; never pickled or copied
    _loaders: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _loaders_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                          compare=False)

    in_memory = False

    def __getstate__(self) -> dict:
        # worker processes and locks stay with this process: a pickled or deep-copied source
        # (Ray tasks, spawn workers) starts its own loaders when it first reads
        state = dict(self.__dict__)
        state["_loaders"], state["_loaders_lock"] = {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._loaders_lock = threading.Lock()

    def persistent_loader(self, split: str, batch_size: int, workers: int) -> PersistentLoader:
        """The source's one loader for passes over ``split`` in batches of ``batch_size``."""
        key = (split, batch_size, workers)
        with self._loaders_lock:
            pool = self._loaders.get(key)
            if pool is None:
                pool = self._loaders[key] = PersistentLoader(self.split_dataset(split), batch_size, workers)
            return pool

    def close_loaders(self) -> None:
        """Stop the persistent worker processes now (they also stop when the source is freed)."""
        with self._loaders_lock:
            pools, self._loaders = list(self._loaders.values()), {}
        for pool in pools:
            pool.close()

    def split_dataset(self, which: str) -> TorchDataset:
        if which == "train":
            return self.train
        if which in ("test", "val"):
            return self.test
        raise ValueError(f"unknown split {which!r} (use 'train' or 'test')")

    def split_size(self, which: str) -> int:
        return len(self.split_dataset(which))  # type: ignore[arg-type]

    def probe(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` test inputs stacked (what a model is checked against)."""
        ds = self.split_dataset("test")
        count = min(n, len(ds))  # type: ignore[arg-type]
        if count == 0:
            raise ValueError(f"the test split of {self.name} is empty")
        return torch.stack([torch.as_tensor(ds[i][0]) for i in range(count)])

    def batches(self, split: str, indices: Sequence[int], batch_size: int) -> StreamBatches:
        return StreamBatches(self.split_dataset(split), indices, batch_size, self.workers,
                             source=self, split=split)


def _collate(samples: list) -> Batch:
    """torch's default collate (in a worker it stacks straight into shared memory, where a plain
    torch.stack would allocate the batch twice), as an (inputs, int64 labels) pair."""
    xs, ys = default_collate([(s[0], s[1]) for s in samples])
    return xs, torch.as_tensor(ys).long()


class _IndexList(Sampler):
    """A sampler whose index list is set before each pass (a persistent DataLoader keeps its
    sampler object; its iterator reads the list anew at each ``iter``)."""

    def __init__(self) -> None:
        self.indices: Sequence[int] = ()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _make_loader(dataset: TorchDataset, batch_size: int, workers: int, sampler,
                 persistent: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=2 if workers else None,
        persistent_workers=persistent and workers > 0,
        # the workers' base seed comes from this private generator: reading batches never
        # advances torch's global RNG (which dropout and initialisation draw from), as the
        # in-memory path does not
        generator=torch.Generator().manual_seed(0),
    )


class PersistentLoader:
    """One DataLoader whose worker processes outlive a pass; one pass at a time (``lock``)."""

    def __init__(self, dataset: TorchDataset, batch_size: int, workers: int) -> None:
        self.sampler = _IndexList()
        self.loader = _make_loader(dataset, batch_size, workers, self.sampler, persistent=True)
        self.lock = threading.Lock()

    def passes(self, indices: Sequence[int], fallback) -> Iterator[Batch]:
        """The batches of ``indices`` on the persistent workers; while another pass holds them,
        the batches of ``fallback()`` (a loader of this pass alone). The lock is taken when the
        pass starts and let go when it ends or its consumer drops it (close or garbage
        collection); a pass left half way is fine: the next ``iter`` drains the old one's
        prefetched batches."""
        if not self.lock.acquire(blocking=False):
            yield from fallback()
            return
        try:
            self.sampler.indices = indices
            yield from self.loader
        finally:
            self.lock.release()

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()
            self.loader._iterator = None


class StreamBatches:
    """Mini-batches of ``dataset`` at ``indices`` (in that order), decoded on demand.

    Re-iterable; ``len`` is the number of batches and :attr:`samples` the number of samples, so
    progress can be shown without reading ahead. With ``source`` given, passes with workers run
    on the source's persistent loader for ``split``.
    """

    def __init__(self, dataset: TorchDataset, indices: Sequence[int], batch_size: int,
                 workers: int | None = None, source: StreamSource | None = None,
                 split: str = "test") -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.indices = indices
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.source = source
        self.split = split

    @property
    def samples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def loader(self) -> DataLoader:
        """A DataLoader of this pass alone (its workers end with it)."""
        # never more workers than batches: a 1-batch preview should not fork four decoders
        workers = min(self.workers, len(self))
        return _make_loader(self.dataset, self.batch_size, workers, self.indices, persistent=False)

    def __iter__(self) -> Iterator[Batch]:
        if len(self.indices) == 0:
            return iter(())
        if self.source is not None and self.workers > 0:
            # a preview shorter than the worker count shares the full loader only once it exists
            key = (self.split, self.batch_size, self.workers)
            if len(self) >= self.workers or key in self.source._loaders:
                pool = self.source.persistent_loader(self.split, self.batch_size, self.workers)
                return pool.passes(self.indices, self.loader)
        return iter(self.loader())


def seeded_order(n: int, seed: int | torch.Generator) -> torch.Tensor:
    """``torch.randperm(n)`` from ``seed`` (or from the given generator, advancing it)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)
