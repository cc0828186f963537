"""The in-memory dataset: a classification dataset with a fixed train/test split. Its own module,
so the sources (bundled, torchvision, folders, text) and the token data all build on it without
importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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

    in_memory = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def notes(self) -> list[str]:
        return []

    def split_size(self, which: str) -> int:
        return int(self.split(which)[0].shape[0])

    def split_dataset(self, which: str) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(*self.split(which))

    def probe(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` test inputs (what a model is checked against)."""
        return self.x_test[:n]

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        if which == "train":
            return self.x_train, self.y_train
        if which in ("test", "val"):
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
