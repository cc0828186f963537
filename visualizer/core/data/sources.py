"""Datasets held in memory as tensors, with fixed splits and seeds.

Bundled and offline:
- ``digits``: the UCI optical-recognition digits (1,797 8x8 grey images, 10 classes; the copy
  scikit-learn ships, stored in ``resources/data/digits.npz``), as 1x8x8 images in [0, 1].
- ``digits-rows``: the same images read row by row, as sequences of 8 steps x 8 features.
- ``sequence``: a synthetic sequence task: 16 one-hot symbols from an alphabet of 8; the label is
  the most frequent symbol (ties to the smallest). It needs memory over time, so it exercises
  recurrent and attention models.

With torchvision installed (``pip install pruneviz[zoo]``): ``mnist``, ``fashion-mnist``,
``cifar10`` from a local folder (``root``), downloaded when ``download=True`` and online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visualizer.core.resources import resource_path

SPLIT_SEED = 0


@dataclass
class Dataset:
    """A classification dataset with a fixed train/test split, all tensors in memory."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    description: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        raise ValueError(f"unknown split {which!r} (use 'train' or 'test')")

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.num_classes,
            self.description,
        )


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


_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_torchvision(name: str, root: str | Path = "~/.cache/pruneviz/data", download: bool = False) -> Dataset:
    """MNIST, FashionMNIST or CIFAR-10 from ``root`` (downloaded there if ``download``)."""
    from visualizer.core.optional import import_torchvision

    datasets = import_torchvision("datasets", f"dataset {name!r}", DataError)
    cls = getattr(datasets, _TORCHVISION[name])
    root = Path(root).expanduser()
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        raise DataError(f"{name}: not found under {root}; pass download=True when online ({exc})") from exc

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        data = torch.as_tensor(np.asarray(ds.data))
        x = data.float() / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    xtr, ytr = tensors(train)
    xte, yte = tensors(test)
    return Dataset(name, xtr, ytr, xte, yte, 10, f"torchvision {_TORCHVISION[name]}")


class DataError(Exception):
    """A dataset that cannot be loaded, with a message for the user."""


BUNDLED = {
    "digits": load_digits,
    "digits-rows": load_digits_rows,
    "sequence": make_sequence_task,
}

_CACHE: dict[str, Dataset] = {}


def check_model_reads(model: torch.nn.Module, data: Dataset, model_name: str = "the model") -> None:
    """Raise DataError, in one line, unless ``model`` maps two of ``data``'s test inputs to
    (2, C) logits with C >= data.num_classes. Run once when a model meets a dataset, so a
    mismatch (LeNet given token sequences, ResNet-18 given one-channel 8x8 digits) is named
    there instead of as a shape error deep inside a criterion or a training step. The model is
    left as it was: evaluation mode and no_grad for the probe (BatchNorm statistics untouched)."""
    x = data.x_test[:2]
    try:
        device = next(iter(model.parameters())).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is the mismatch
        from visualizer.core.tasks import first_line

        raise DataError(f"{model_name} cannot read {data.name} (inputs {tuple(x.shape[1:])}, "
                        f"{str(x.dtype).removeprefix('torch.')}): {first_line(exc, limit=240)}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"{model_name} on {data.name} gives {shape}, not (batch, classes) logits")
    if out.shape[1] < data.num_classes:
        raise DataError(f"{model_name} outputs {out.shape[1]} classes but {data.name} has {data.num_classes}")


def dataset_names() -> list[str]:
    return list(BUNDLED) + list(_TORCHVISION)


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a dataset by name (bundled ones are cached: they are small and immutable)."""
    if name in BUNDLED:
        if name not in _CACHE:
            _CACHE[name] = BUNDLED[name]()
        return _CACHE[name]
    if name in _TORCHVISION:
        return load_torchvision(name, root or "~/.cache/pruneviz/data", download)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
