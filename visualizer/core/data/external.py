"""Streaming sources from outside the package: torchvision's MNIST / FashionMNIST / CIFAR-10
(``--data-root DIR``, ``--download``) and the user's ``file.py:factory`` returning
``(train, test)`` or ``(train, test, num_classes)`` torch Datasets.

A factory's datasets are often instances of a class defined in the user's file, which is
imported under a private module name no other process can import: pickled by value they cannot
reach DataLoader workers started with ``spawn`` (the default on macOS and Windows). Each split is
therefore wrapped in a :class:`FactorySplit` that pickles by reference, as the file's path, the
factory's name and the split; a worker re-imports the file and calls the factory once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset as TorchDataset

from visualizer.core.data.checks import DataError, expected_channels
from visualizer.core.data.folder import ConvertThen, Preprocess
from visualizer.core.data.streaming import StreamSource
from visualizer.core.data.text import model_block, model_folder
from visualizer.core.errors import first_line
from visualizer.core.optional import import_torchvision
from visualizer.core.userfiles import import_callable

DEFAULT_ROOT = "~/.cache/pruneviz/data"
TORCHVISION_DATASETS = {"mnist": ("MNIST", 1), "fashion-mnist": ("FashionMNIST", 1), "cifar10": ("CIFAR10", 3)}
# a factory's dataset without a class count or ``classes``/``targets`` is scanned for its labels
# only up to this size (beyond it, the user is asked to return the count)
LABEL_SCAN_LIMIT = 50_000


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is found and read: ``root`` and ``download`` for torchvision's datasets;
    ``image_size``, ``normalize`` ('none' or 'imagenet') and ``channels`` (1 or 3; None: the
    dataset's own) for images; ``transform`` (a torchvision weights' own preprocessing) wins over
    those three; ``seed`` draws the split of a single class-folder tree; ``workers`` DataLoader
    processes (None: ``min(4, cpus - 1)``); ``tokenizer`` (a model folder or tokenizer.json) and
    ``block`` (tokens per sequence) for ``text:FILE``."""

    root: str | None = None
    download: bool = False
    image_size: int | None = None
    normalize: str | None = None  # None: "none", unless a model's own transform applies
    channels: int | None = None
    transform: Callable | None = None
    seed: int = 0
    workers: int | None = None
    tokenizer: str | None = None
    block: int | None = None

    def preprocess(self, default_channels: int = 3):
        return Preprocess(self.image_size, self.channels or default_channels, self.normalize or "none")


def options_for_model(options: DataOptions, model: torch.nn.Module, transform: Callable | None = None) -> DataOptions:
    """``options`` completed from the model: its pretrained weights' own preprocessing
    (``transform``, e.g. torchvision's resize-256/crop-224/ImageNet statistics) unless an image
    size or a normalisation was given, and the input channels its first convolution reads."""
    channels = options.channels or expected_channels(model)
    options = replace(options, tokenizer=options.tokenizer or model_folder(model),
                      block=options.block or model_block(model))
    if transform is not None and options.transform is None and options.image_size is None and options.normalize is None:
        return replace(options, channels=channels, transform=ConvertThen("RGB", transform))
    return replace(options, channels=channels)


def load_torchvision_dataset(name: str, options: DataOptions) -> StreamSource:
    """``mnist``, ``fashion-mnist`` or ``cifar10`` from ``options.root`` (downloaded there with
    ``options.download``), decoded per sample by the options' preprocessing."""
    cls_name, channels = TORCHVISION_DATASETS[name]
    datasets = import_torchvision("datasets", f"dataset {name!r}", DataError)
    cls = getattr(datasets, cls_name)
    root = Path(options.root or DEFAULT_ROOT).expanduser()
    transform = options.transform or options.preprocess(channels)
    try:
        train = cls(str(root), train=True, download=options.download, transform=transform)
        test = cls(str(root), train=False, download=options.download, transform=transform)
    except RuntimeError as exc:
        if options.download:
            raise DataError(f"{name}: download into {root} failed ({first_line(exc)})") from exc
        raise DataError(f"{name}: not found under {root}; pass --download (window: Download) when "
                        f"online, or --data-root DIR where it is") from exc
    shape = tuple(test[0][0].shape)
    return StreamSource(name, train, test, len(train.classes), shape,
                        f"torchvision {cls_name} from {root}, inputs {shape}",
                        classes=list(train.classes), workers=options.workers)


def _class_count(ds, label: str) -> int:
    classes = getattr(ds, "classes", None)
    if classes is not None:
        return len(classes)
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return int(torch.as_tensor(targets).max()) + 1
    n = len(ds)
    if n > LABEL_SCAN_LIMIT:
        raise DataError(f"{label}: cannot tell the class count of {n} samples; return "
                        "(train, test, num_classes)")
    return max(int(ds[i][1]) for i in range(n)) + 1


class FactorySplit(TorchDataset):
    """One split of a ``file.py:factory`` dataset, pickled by reference (spec and split), so
    spawn-started DataLoader workers rebuild it by re-importing the file. Attributes the caller
    reads (``classes``, ``targets``) come from the wrapped dataset."""

    def __init__(self, spec: str, which: int, dataset) -> None:
        self.spec, self.which, self.dataset = spec, which, dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]

    def __getattr__(self, name: str):
        if name in ("spec", "which", "dataset") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __reduce__(self):
        return _factory_split, (self.spec, self.which)


# spec -> the factory's output, in a process that rebuilt splits from their references (a worker
# calls the factory once for both splits)
_REBUILT: dict[str, tuple] = {}


def _call_factory(spec: str):
    """``func()`` of ``file.py:func``; any failure is one DataError line."""
    func = import_callable(spec, DataError, what="data")
    try:
        return func()
    except Exception as exc:  # user code: any error becomes a message
        raise DataError(f"{_factory_label(spec)} failed: {first_line(exc)}") from exc


def _factory_split(spec: str, which: int) -> FactorySplit:
    if spec not in _REBUILT:
        _REBUILT[spec] = tuple(_call_factory(spec))
    return FactorySplit(spec, which, _REBUILT[spec][which])


def _factory_label(spec: str) -> str:
    return f"{Path(spec.rpartition(':')[0]).name}:{spec.rpartition(':')[2]}()"


def load_factory_dataset(spec: str, options: DataOptions) -> StreamSource:
    """``file.py:func``: ``func()`` returns ``(train, test)`` or ``(train, test, num_classes)``
    torch Datasets of (input tensor, integer label) pairs. Any failure is one DataError line."""
    label = _factory_label(spec)
    file, _, func = spec.rpartition(":")
    out = _call_factory(spec)
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise DataError(f"{label} returned {type(out).__name__}; return (train, test) or "
                        "(train, test, num_classes) torch Datasets")
    train, test = out[0], out[1]
    for which, ds in (("train", train), ("test", test)):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise DataError(f"{label}: the {which} split is {type(ds).__name__}, not a torch Dataset")
        if len(ds) == 0:
            raise DataError(f"{label}: the {which} split is empty")
    try:
        x0, y0 = test[0]
        shape = tuple(torch.as_tensor(x0).shape)
        int(y0)
        classes = int(out[2]) if len(out) == 3 else max(_class_count(train, label), _class_count(test, label))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - user datasets fail in any way
        raise DataError(f"{label}: samples must be (input tensor, integer label): {first_line(exc)}") from exc
    # by reference for spawn workers: an absolute path, whatever the worker's folder
    ref = f"{Path(file).expanduser().resolve()}:{func}"
    train, test = FactorySplit(ref, 0, train), FactorySplit(ref, 1, test)
    return StreamSource(f"{spec}", train, test, classes, shape,
                        f"{label}: {len(train)} train / {len(test)} test samples, {classes} classes, "
                        f"inputs {shape}", workers=options.workers)
