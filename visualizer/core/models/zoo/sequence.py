"""Sequence models on (batch, time, features) inputs."""

from __future__ import annotations

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    """One-layer LSTM; the same weights act at every time step; classify from the last state."""

    def __init__(self, num_classes: int = 8, in_features: int = 8, hidden: int = 48) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(self.norm2(x))))


class TransformerMini(nn.Module):
    def __init__(
        self,
        num_classes: int = 8,
        in_features: int = 8,
        dim: int = 32,
        heads: int = 4,
        layers: int = 2,
        max_len: int = 32,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, dim)
        self.pos_embedding = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.pos_embedding, std=0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, 2 * dim) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) + self.pos_embedding[:, : x.shape[1]]
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))
