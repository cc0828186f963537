"""Summaries of the groups for the views: which groups touch a layer, layer-to-layer
connectivity (DenseNet) and the branches of concatenations (Inception)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from visualizer.core.structure.graph import ShapeRecorder, example_input, fx_trace, model_device
from visualizer.core.structure.groups.model import ChannelGroup
from visualizer.core.structure.groups.scores import _tensor


def layer_groups(groups: Iterable[ChannelGroup]) -> dict[str, list[int]]:
    """Module path -> ids of the groups that touch it (to colour graph nodes by group)."""
    out: dict[str, list[int]] = {}
    for g in groups:
        for m in g.members:
            layer = m.param.rpartition(".")[0]
            ids = out.setdefault(layer, [])
            if g.id not in ids:
                ids.append(g.id)
    return out


@dataclass
class Connectivity:
    """Layer-to-layer connections through coupled channels: ``strength[i, j]`` = the group norm
    ||W_j[:, S_i]||_2 of the weights of consumer layer j that read producer i's channels S_i
    (NaN where j does not read i). For a DenseNet this is the dense connectivity pattern
    (Huang et al. 2017); connections that group lasso drove to zero read 0."""

    producers: list[str]
    consumers: list[str]
    strength: np.ndarray
    groups: list[int]  # the group of each producer row

    def to_json(self) -> dict:
        return {"producers": self.producers, "consumers": self.consumers, "groups": self.groups,
                "strength": [[None if np.isnan(v) else float(v) for v in row] for row in self.strength]}


@torch.no_grad()
def connectivity(model: nn.Module, groups: Iterable[ChannelGroup]) -> Connectivity:
    rows: list[tuple[str, int, dict[str, float]]] = []
    consumers: list[str] = []
    for g in groups:
        if g.kind != "channel":
            continue
        prods = [m for m in g.producers() if m.param.endswith("weight")]
        if not prods:
            continue
        reads: dict[str, float] = {}
        for m in g.consumers():
            w = _tensor(model, m.param).detach()
            sl = w.index_select(m.dim, torch.tensor(m.indices, dtype=torch.long, device=w.device))
            layer = m.param.rpartition(".")[0]
            reads[layer] = float(sl.double().norm())
            if layer not in consumers:
                consumers.append(layer)
        rows.append((prods[0].param.rpartition(".")[0], g.id, reads))
    strength = np.full((len(rows), len(consumers)), np.nan)
    for i, (_, _, reads) in enumerate(rows):
        for layer, v in reads.items():
            strength[i, consumers.index(layer)] = v
    return Connectivity([r[0] for r in rows], consumers, strength, [r[1] for r in rows])


@dataclass
class Branch:
    index: int
    channels: tuple[int, int]  # [start, stop) of its slice of the concatenation
    layers: list[str]  # modules on the branch, input side first
    norm: float  # ||w_branch||_2 over all weights of the branch's layers (its group-lasso group)
    groups: list[int]  # channel groups that live entirely inside the branch


@dataclass
class ConcatModule:
    """A concatenation of parallel branches (an Inception module; a DenseNet layer is a concat of
    the identity and one branch)."""

    name: str
    kind: str  # "inception" (>= 2 branches with layers) or "dense" (identity + branch)
    branches: list[Branch]
    node: str = ""  # the torch.cat node of the fx graph (what branch removal rewrites)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "branches": [
            {"index": b.index, "channels": list(b.channels), "layers": b.layers, "norm": b.norm, "groups": b.groups}
            for b in self.branches]}


@torch.no_grad()
def branches(
    model: nn.Module, groups: Iterable[ChannelGroup] | None = None, example: torch.Tensor | None = None
) -> list[ConcatModule]:
    """Every ``torch.cat`` along channels in the fx graph with its branches: the layers between the
    point where the inputs fork and the concatenation, each branch's weight norm, and the groups
    that belong only to that branch (pruning all of them removes the branch's width)."""
    try:
        gm = fx_trace(model)
        ShapeRecorder(gm).propagate((example if example is not None else example_input(model)).to(model_device(model)))
    except Exception:  # untraceable: no branch summary (the graph view says why)
        return []
    groups = list(groups or [])
    modules = dict(model.named_modules())
    result = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
            continue
        ancestor_sets = [_ancestors(t) | {t} for t in tensors]
        common = set.intersection(*ancestor_sets)
        brs = []
        start = 0
        for i, t in enumerate(tensors):
            width = int(t.meta["tensor_meta"].shape[1])
            own = [n for n in gm.graph.nodes if n in ancestor_sets[i] and n not in common and n.op == "call_module"]
            layers = [str(n.target) for n in own]
            sq = 0.0
            for layer in layers:
                for p in modules[layer].parameters():
                    sq += float(p.double().pow(2).sum())
            layer_set = set(layers)
            gids = [g.id for g in groups if g.members and all(
                m.param.rpartition(".")[0] in layer_set for m in g.members if m.role != "in")]
            brs.append(Branch(i, (start, start + width), layers, sq ** 0.5, gids))
            start += width
        n_nonempty = sum(1 for b in brs if b.layers)
        owner = _common_owner([layer for b in brs for layer in b.layers])
        result.append(ConcatModule(owner or node.name, "inception" if n_nonempty >= 2 else "dense", brs, node.name))
    return result


def _ancestors(node) -> set:
    seen, stack = set(), list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return seen


def _common_owner(layers: list[str]) -> str:
    if not layers:
        return ""
    parts = [layer.split(".") for layer in layers]
    common = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common)
