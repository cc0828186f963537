from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """LeNet-300-100 shape on 8x8 inputs: 64 -> 300 -> 100 -> classes."""

    def __init__(self, num_classes: int = 10, in_features: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
