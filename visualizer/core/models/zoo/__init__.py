"""Architectures of the bundled sample models.

Each is small enough to train in seconds on a CPU and shows one structure a pruning tool must
understand: plain layers (mlp, lenet), residual additions (resnet-mini), dense concatenation
(densenet-mini), parallel branches (inception-mini), squeeze-and-excitation gates (se-cnn),
weights tied over time (rnn, an LSTM) and multi-head attention (transformer-mini).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from visualizer.core.models.zoo.convnets import (
    SECNN,
    DenseNetMini,
    InceptionMini,
    LeNet,
    ResNetMini,
)
from visualizer.core.models.zoo.mlp import MLP
from visualizer.core.models.zoo.sequence import LSTMClassifier, TransformerMini


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[..., nn.Module]
    dataset: str
    description: str
    structure: str  # what the model shows

    def build(self, num_classes: int | None = None) -> nn.Module:
        return self.factory() if num_classes is None else self.factory(num_classes=num_classes)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("mlp", MLP, "digits", "LeNet-300-100 shape: 64-300-100-10", "fully connected"),
        ZooEntry("lenet", LeNet, "digits", "LeNet-5 style CNN", "conv + fc, flatten"),
        ZooEntry("resnet-mini", ResNetMini, "digits", "ResNet with 3 basic blocks", "residual adds"),
        ZooEntry("densenet-mini", DenseNetMini, "digits", "DenseNet, 2 dense blocks", "dense concatenation"),
        ZooEntry("inception-mini", InceptionMini, "digits", "GoogLeNet style, 2 Inception modules", "parallel branches"),
        ZooEntry("se-cnn", SECNN, "digits", "CNN with squeeze-and-excitation gates", "SE gates"),
        ZooEntry("rnn", LSTMClassifier, "sequence", "one-layer LSTM classifier", "weights tied over time"),
        ZooEntry("transformer-mini", TransformerMini, "sequence", "2-layer transformer encoder, 4 heads", "multi-head attention"),
    ]
}

DEFAULT_MODEL = "lenet"
