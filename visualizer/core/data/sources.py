"""Data sources: the bundled in-memory datasets, and the one entry point that loads any source.

A source has train and test splits, a class count and an input shape. Two kinds share that
interface: :class:`Dataset` (small, bundled, held as tensors: the batch rules slice them
directly, which keeps their exact batch order) and
:class:`visualizer.core.data.streaming.StreamSource` (image folders, torchvision datasets, a
user's factory: read through DataLoaders, never held whole).

Bundled and offline:
- ``digits``: the UCI optical-recognition digits (1,797 8x8 grey images, 10 classes; the copy
  scikit-learn ships, stored in ``resources/data/digits.npz``), as 1x8x8 images in [0, 1].
- ``digits-rows``: the same images read row by row, as sequences of 8 steps x 8 features.
- ``sequence``: a synthetic sequence task: 16 one-hot symbols from an alphabet of 8; the label is
  the most frequent symbol (ties to the smallest). It needs memory over time, so it exercises
  recurrent and attention models.

Streaming (see :func:`load_dataset`): ``folder:PATH`` (an ImageFolder tree, decoded with Pillow),
``file.py:factory`` (the user's torch Datasets) and, with torchvision installed
(``pip install pruneviz[zoo]``), ``mnist``, ``fashion-mnist``, ``cifar10`` from ``--data-root``
(downloaded with ``--download``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visualizer.core.data.checks import (  # noqa: F401
    DataError,
    check_model_reads,
    expected_channels,
    expected_input,
)

# DataError and the model/data checks live in data.checks (external and folder raise them too);
# importable from here, the data package's entry point
from visualizer.core.data.dataset import Dataset  # noqa: F401 - re-exported: the package's entry point
from visualizer.core.data.external import (
    TORCHVISION_DATASETS,
    DataOptions,
    load_factory_dataset,
    load_torchvision_dataset,
)
from visualizer.core.data.folder import load_folder
from visualizer.core.data.text import BLOCK, load_text
from visualizer.core.resources import resource_path

SPLIT_SEED = 0


def _split(n: int, test_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return perm[n_test:], perm[:n_test]


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with np.load(resource_path("data", "digits.npz")) as z:
        return z["images"].astype(np.float32) / 16.0, z["target"].astype(np.int64)


def load_digits() -> Dataset:
    """UCI optical digits, 1x8x8 images scaled to [0, 1]; 80/20 split with seed 0."""
    images, target = _digits_arrays()
    tr, te = _split(len(target), 0.2)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(target)
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 10, "UCI optical digits, 8x8, 10 classes")


def load_digits_rows() -> Dataset:
    """The digits as sequences: 8 time steps (rows) of 8 features (pixels)."""
    d = load_digits()
    return Dataset(
        "digits-rows",
        d.x_train.squeeze(1),
        d.y_train,
        d.x_test.squeeze(1),
        d.y_test,
        10,
        "UCI optical digits read row by row: 8 steps x 8 features",
    )


def make_sequence_task(
    n_train: int = 4000, n_test: int = 1000, length: int = 16, symbols: int = 8, seed: int = 0
) -> Dataset:
    """Synthetic majority-symbol task: one-hot sequences, label = most frequent symbol."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    tokens = torch.randint(0, symbols, (n, length), generator=g)
    counts = torch.nn.functional.one_hot(tokens, symbols).sum(1)
    # argmax returns the first maximum: ties go to the smallest symbol, deterministically.
    labels = counts.argmax(1)
    x = torch.nn.functional.one_hot(tokens, symbols).float()
    return Dataset(
        "sequence",
        x[:n_train],
        labels[:n_train],
        x[n_train:],
        labels[n_train:],
        symbols,
        f"synthetic: most frequent of {length} one-hot symbols ({symbols} classes)",
    )


BUNDLED = {
    "digits": load_digits,
    "digits-rows": load_digits_rows,
    "sequence": make_sequence_task,
}

_CACHE: dict[str, Dataset] = {}


STREAMING_HINT = "folder:PATH, file.py:FUNCTION, text:FILE"


def dataset_names() -> list[str]:
    return list(BUNDLED) + list(TORCHVISION_DATASETS)


def load_dataset(name: str, options: Any = None, *, root: str | Path | None = None,
                 download: bool = False) -> Any:
    """Load a data source by name: a bundled one (cached: small and immutable), ``mnist`` /
    ``fashion-mnist`` / ``cifar10`` (torchvision), ``folder:PATH`` or ``file.py:FUNCTION``.
    ``options`` is a :class:`visualizer.core.data.external.DataOptions` (root, download, image
    size, normalisation, channels, transform, seed, workers); ``root``/``download`` are kept
    as shorthands. Raises DataError in one line."""
    if options is None:
        options = DataOptions(root=str(root) if root else None, download=download)
    name = name.strip()
    if name in BUNDLED:
        if name not in _CACHE:
            _CACHE[name] = BUNDLED[name]()
        return _CACHE[name]
    if name in TORCHVISION_DATASETS:
        return load_torchvision_dataset(name, options)
    if name.startswith("folder:"):
        path = name.removeprefix("folder:")
        pre = None if options.transform else options.preprocess(options.channels or 3)
        return load_folder(path, pre, options.transform, seed=options.seed, workers=options.workers)
    if name.startswith("text:"):
        try:
            return load_text(name.removeprefix("text:"), options.tokenizer, options.block or BLOCK,
                             seed=options.seed)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
    if ".py:" in name:
        return load_factory_dataset(name, options)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}, {STREAMING_HINT}")
