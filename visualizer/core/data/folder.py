"""Image folders (``folder:PATH``) in torchvision's ImageFolder layout, decoded with Pillow.

Layouts:
- ``PATH/train/CLASS/*.png|jpg`` with ``PATH/val/CLASS/...`` (or ``PATH/test/CLASS/...``): the
  given split; class indices follow the sorted class-folder names of ``train/``.
- ``PATH/CLASS/*.png|jpg`` (one class tree): split into train/test by a seeded, stratified draw
  (:func:`stratified_split`: every class keeps ``test_fraction`` of its images for testing).

Images are decoded one at a time, in DataLoader workers, by :class:`ImageFiles`; the folder is
only listed up front (paths and labels), never loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from visualizer.core.data.checks import DataError
from visualizer.core.data.streaming import StreamSource
from visualizer.core.errors import first_line

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
TEST_SPLITS = ("val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZE = ("none", "imagenet")


@dataclass(frozen=True)
class Preprocess:
    """Pillow image -> float tensor (C, size, size) in [0, 1], optionally standardised.

    Resize the shorter side to ``size`` (bilinear) and crop the centre square; ``size`` None
    keeps the image's own size. ``channels`` 1 reads grey ('L'), 3 reads RGB. ``normalize``
    'imagenet' subtracts the ImageNet channel means and divides by their deviations (the
    statistics torchvision's pretrained weights were trained with); grey images use the means of
    the three. Picklable, so DataLoader workers can run it.
    """

    size: int | None = None
    channels: int = 3
    normalize: str = "none"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DataError(f"images are read with 1 or 3 channels, not {self.channels}")
        if self.normalize not in NORMALIZE:
            raise DataError(f"unknown normalisation {self.normalize!r} (use {' or '.join(NORMALIZE)})")
        if self.size is not None and self.size < 1:
            raise DataError(f"image size must be at least 1, got {self.size}")

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        image = image.convert("L" if self.channels == 1 else "RGB")
        if self.size is not None:
            w, h = image.size
            scale = self.size / min(w, h)
            if (w, h) != (self.size, self.size):
                nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
                image = image.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - self.size) // 2, (nh - self.size) // 2
                image = image.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(image, dtype=np.uint8)
        x = torch.from_numpy(arr.copy())
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        x = x.float().div_(255.0)
        if self.normalize == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if self.channels == 1:
                mean, std = (sum(mean) / 3,), (sum(std) / 3,)
            x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
        return x


@dataclass(frozen=True)
class ConvertThen:
    """Convert a Pillow image to ``mode`` ('RGB', 'L'), then apply ``transform`` (a pretrained
    model's own preprocessing expects RGB even when the folder holds grey images)."""

    mode: str
    transform: Callable

    def __call__(self, image) -> torch.Tensor:
        return self.transform(image.convert(self.mode))


class ImageFiles(TorchDataset):
    """(path, label) pairs, decoded on access: ``transform(PIL image)`` and the label."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return read_image(path, self.transform), label


def read_image(path: str, use: Callable):
    """``use(PIL image)`` of the image at ``path``; a file Pillow cannot open or decode (empty,
    truncated, not an image) is a DataError naming the file and the reason. Runs in DataLoader
    workers too: the caller's one-line formatter unwraps the worker's re-raised message."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return use(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        # Pillow raises SyntaxError/ValueError from some plugins' header parsers
        raise DataError(f"cannot read image {path}: {_image_problem(path, exc)}") from exc


def _image_problem(path: str, exc: BaseException) -> str:
    """Why Pillow could not read ``path``: empty, not an image, or its own reason (truncated)."""
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "the file is empty"
    except OSError as err:
        return err.strerror or str(err)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (or its header is cut off)"
    return first_line(exc)


def _images(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.path for e in it if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def scan_classes(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, label) pairs of a class tree ``root/CLASS/*``; with ``classes``
    given, labels follow that list and an unknown class folder is an error."""
    found = [c for c in _class_dirs(root) if _images(root / c)]
    if classes is None:
        classes = found
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for c in found:
        if c not in index:
            raise DataError(f"{root}: class folder {c!r} is not among the training classes")
        samples.extend((p, index[c]) for p in _images(root / c))
    return classes, samples


def stratified_split(samples: Sequence[tuple[str, int]], test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split per class: each class's (sorted) images are shuffled by ``default_rng(seed)`` and
    ``round(n * test_fraction)`` of them (at least one when the class has two or more) are held
    out for testing. Deterministic for a given folder and seed."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[tuple[str, int]]] = {}
    for s in sorted(samples):
        by_class.setdefault(s[1], []).append(s)
    train, test = [], []
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_test = int(round(len(items) * test_fraction))
        if len(items) >= 2:
            n_test = min(max(n_test, 1), len(items) - 1)
        test.extend(items[i] for i in order[:n_test])
        train.extend(items[i] for i in order[n_test:])
    return train, test


def first_image_size(path: str) -> tuple[int, int]:
    return read_image(path, lambda img: img.size)


def load_folder(path: str | Path, preprocess: Preprocess | None = None, transform: Callable | None = None,
                seed: int = 0, test_fraction: float = 0.2, workers: int | None = None) -> StreamSource:
    """An image folder as a :class:`StreamSource`. ``transform`` (e.g. a torchvision weights'
    own transforms) wins over ``preprocess``; with neither, images are read as RGB at the first
    image's size. Raises DataError in one line for a missing or empty folder."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise DataError("image folders need Pillow: pip install pillow") from exc
    test_dir = next((root / s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if (root / "train").is_dir():
        classes, train = scan_classes(root / "train")
        if test_dir is None:
            raise DataError(f"{root}: has train/ but no val/ or test/ folder next to it")
        _, test = scan_classes(test_dir, classes)
        layout = f"train/ and {test_dir.name}/"
    else:
        classes, samples = scan_classes(root)
        train, test = stratified_split(samples, test_fraction, seed)
        layout = f"one class tree, {round(100 * test_fraction)}% of each class held out (seed {seed})"
    if not train:
        raise DataError(f"{root}: no images found (expected {root}/CLASS/*.png|jpg or {root}/train/CLASS/...)")
    if not test:
        raise DataError(f"{root}: no test images (add {root}/val/CLASS/... or more images per class)")
    if transform is None:
        pre = preprocess or Preprocess()
        if pre.size is None:  # one size for every image, or they cannot share a batch
            pre = Preprocess(min(first_image_size(train[0][0])), pre.channels, pre.normalize)
        transform = pre
    train_ds, test_ds = ImageFiles(train, transform), ImageFiles(test, transform)
    shape = tuple(test_ds[0][0].shape)
    return StreamSource(
        name=f"folder:{root}",
        train=train_ds,
        test=test_ds,
        num_classes=len(classes),
        input_shape=shape,
        description=f"image folder {root.name}: {len(classes)} classes, {len(train)} train / "
                    f"{len(test)} test images ({layout}), inputs {shape}",
        classes=classes,
        workers=workers,
    )
