"""Image folders for tests: the bundled digits upscaled and written as PNG files, and the source of
a tiny user CNN file (``file.py:factory``) that reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A user's model file for ``file.py:factory`` references: ``build`` reads the 1-channel digit
# folders; ``wide`` (1000 classes) and ``narrow`` (2 classes) disagree with their class count.
TINY_CNN = """
from torch import nn

def build(classes=3):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, classes))

def wide():
    return build(1000)

def narrow():
    return build(2)
"""


def write_digit_folder(root: Path, per_class: int = 4, classes: int = 3, size: int = 16,
                       split: bool = False, suffix: str = ".png", mode: str = "L") -> Path:
    """``root/CLASS/*.png`` (or ``root/train/CLASS`` + ``root/val/CLASS`` with ``split``): the
    first ``per_class`` bundled digits of each of the first ``classes`` classes, upscaled to
    ``size`` x ``size`` (nearest neighbour) and written as images."""
    from PIL import Image

    from visualizer.core.resources import resource_path

    with np.load(resource_path("data", "digits.npz")) as z:
        images, target = z["images"], z["target"]
    for c in range(classes):
        picks = np.flatnonzero(target == c)[: per_class * (2 if split else 1)]
        for k, i in enumerate(picks):
            part = ("train" if k < per_class else "val") if split else ""
            folder = root / part / f"digit{c}"
            folder.mkdir(parents=True, exist_ok=True)
            arr = (images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(arr, "L").resize((size, size), Image.NEAREST).convert(mode)
            img.save(folder / f"{i:04d}{suffix}")
    return root
