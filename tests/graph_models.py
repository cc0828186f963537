"""Deep models for the graph's tests and benchmark: many identical blocks (what folds), token-id
input (what a float example cannot trace) and a synthetic graph of any size."""

from __future__ import annotations

import networkx as nx
import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention written out (q/k/v projections, scaled dot product)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q = self.q(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.k(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.v(x).view(b, t, h, d // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, dim=-1)
        return self.out((a @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenTransformer(nn.Module):
    """``blocks`` pre-norm transformer blocks on token ids (an Embedding first: a float example
    input cannot run it)."""

    def __init__(self, blocks: int = 48, dim: int = 16, heads: int = 2, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.head(self.norm(self.blocks(self.embed(ids))))


def token_ids(batch: int = 1, length: int = 8, vocab: int = 50) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class DeepResNet(nn.Module):
    """A residual CNN of ``sum(stages)`` bottleneck blocks; within a stage all blocks but the
    first are identical (the first changes width or stride)."""

    def __init__(self, stages=(25, 25, 25, 25), width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4 * width, 3, padding=1, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU())
        layers, c = [], 4 * width
        for i, n in enumerate(stages):
            out = 4 * width * 2 ** i
            blocks = [Bottleneck(c, out // 4, out, 1 if i == 0 else 2)]
            blocks += [Bottleneck(out, out // 4, out) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            c = out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def synthetic_graph(n: int = 10_000, stages: int = 10, ops: int = 20) -> tuple[nx.DiGraph, dict, dict]:
    """A traced-graph-like DiGraph of ``n`` nodes: ``stages`` stages of blocks of ``ops`` nodes
    each (a chain with a skip edge per block); every other block differs (an extra node), so
    some runs fold and some do not. Returns (graph, owners, module types)."""
    g = nx.DiGraph()
    owners: dict[str, str] = {}
    types: dict[str, str] = {}
    per_stage = max(1, n // (stages * ops))
    prev = "input"
    g.add_node(prev, kind="input", label="input", params=0, target="")
    owners[prev] = ""
    count = 1
    for s in range(stages):
        types[f"s{s}"] = "Stage"
        for b in range(per_stage):
            block = f"s{s}.b{b}"
            types[block] = "Block" if b % 7 else "Block+"
            width = ops + (1 if b % 7 == 0 else 0)
            first = prev
            for o in range(width):
                if count >= n - 1:
                    break
                name = f"{block}.op{o}"
                kind = "layer" if o % 3 == 0 else "function"
                g.add_node(name, kind=kind, label=name if kind == "layer" else "add" if o % 3 == 2 else "relu",
                           params=100 * (o + 1) if kind == "layer" else 0, target=name if kind == "layer" else "",
                           module_type="Linear" if kind == "layer" else "")
                owners[name] = _parent(name) if kind == "layer" else block
                if kind == "layer":  # a leaf module: its own container is the block
                    owners[name] = block
                g.add_edge(prev, name)
                prev = name
                count += 1
            if prev != first:
                g.add_edge(first, prev)  # the block's skip connection
    g.add_node("output", kind="output", label="output", params=0, target="")
    owners["output"] = ""
    g.add_edge(prev, "output")
    return g, owners, types


def _parent(name: str) -> str:
    return name.rpartition(".")[0]
