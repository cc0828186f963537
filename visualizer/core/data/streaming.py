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
  memory when CUDA is present, so the copy to the GPU can overlap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, default_collate
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

    in_memory = False

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
        return StreamBatches(self.split_dataset(split), indices, batch_size, self.workers)


def _collate(samples: list) -> Batch:
    """torch's default collate (in a worker it stacks straight into shared memory, where a plain
    torch.stack would allocate the batch twice), as an (inputs, int64 labels) pair."""
    xs, ys = default_collate([(s[0], s[1]) for s in samples])
    return xs, torch.as_tensor(ys).long()


class StreamBatches:
    """Mini-batches of ``dataset`` at ``indices`` (in that order), decoded on demand.

    Re-iterable (each pass runs a fresh DataLoader); ``len`` is the number of batches and
    :attr:`samples` the number of samples, so progress can be shown without reading ahead.
    """

    def __init__(self, dataset: TorchDataset, indices: Sequence[int], batch_size: int,
                 workers: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.indices = indices
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else max(0, int(workers))

    @property
    def samples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def loader(self) -> DataLoader:
        # never more workers than batches: a 1-batch preview should not fork four decoders
        workers = min(self.workers, len(self))
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.indices,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=2 if workers else None,
            # the workers' base seed comes from this private generator: reading batches never
            # advances torch's global RNG (which dropout and initialisation draw from), as the
            # in-memory path does not
            generator=torch.Generator().manual_seed(0),
        )

    def __iter__(self) -> Iterator[Batch]:
        if len(self.indices) == 0:
            return iter(())
        return iter(self.loader())


def seeded_order(n: int, seed: int | torch.Generator) -> torch.Tensor:
    """``torch.randperm(n)`` from ``seed`` (or from the given generator, advancing it)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)
