"""Layered left-to-right layout of a dependency graph (the numerics behind the graph view).

A Sugiyama-style layout, kept simple enough to run on a DenseNet-121-sized graph (about 1000
nodes) in a fraction of a second:

1. Layering: x(v) = topological generation of v (``networkx.topological_generations``), so every
   edge points left to right. A graph with cycles (a hand-built fallback graph) first loses the
   edges that point backwards in a depth-first order, which breaks every cycle.
2. Ordering: the nodes of each layer start in trace order, then alternate sweeps move each node
   to the barycentre (mean position) of its neighbours in the layers already placed
   (left-to-right sweeps use predecessors, right-to-left sweeps successors). Long edges (DenseNet
   concatenations span many layers) count with their far endpoint's position; no dummy nodes are
   inserted, which keeps the cost O(sweeps * edges).
3. The best ordering seen (fewest crossings between adjacent layers) is kept.

Pure numpy/networkx: no Qt. The GUI runs :func:`layout_job` in a worker for large graphs.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from visualizer.core.tasks import Step, run

if TYPE_CHECKING:  # networkx costs ~200 ms to import: the window starts without it
    import networkx as nx


@dataclass
class GraphLayout:
    """Node positions of a layered layout.

    nodes: node keys, in the row order of ``positions``.
    positions: (n, 2) float array; column 0 is the layer (x), column 1 the slot within the layer,
        centred on 0 (y).
    edges: (m, 2) int array of (source row, target row) for every edge of the graph (including
        edges dropped to break cycles, so the view still draws them).
    layers: node keys per layer, top to bottom.
    crossings: edge crossings between adjacent layers in the final ordering.
    initial_crossings: the same count for the trace order before barycentric sweeps.
    """

    nodes: list[Hashable]
    positions: np.ndarray
    edges: np.ndarray
    layers: list[list[Hashable]]
    crossings: int
    initial_crossings: int

    def index(self) -> dict[Hashable, int]:
        """Map node key -> row of ``positions``."""
        return {n: i for i, n in enumerate(self.nodes)}


def acyclic_edges(graph: nx.DiGraph) -> list[tuple[Hashable, Hashable]]:
    """Edges of ``graph`` minus those pointing backwards in a DFS preorder (self-loops dropped).

    Every cycle has at least one edge going backwards in any linear order, so the result is a DAG.
    """
    import networkx as nx

    if nx.is_directed_acyclic_graph(graph):
        return list(graph.edges())
    order = {n: i for i, n in enumerate(nx.dfs_preorder_nodes(graph))}
    return [(u, v) for u, v in graph.edges() if order[u] < order[v]]


def layer_assignment(graph: nx.DiGraph) -> list[list[Hashable]]:
    """Topological generations of the graph (after breaking cycles), each in insertion order."""
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(graph.nodes())
    dag.add_edges_from(acyclic_edges(graph))
    rank = {n: i for i, n in enumerate(graph.nodes())}
    return [sorted(gen, key=rank.__getitem__) for gen in nx.topological_generations(dag)]


def count_crossings(layers: list[list[Hashable]], graph: nx.DiGraph) -> int:
    """Edge crossings between adjacent layers for the given ordering.

    Two edges (a->b), (c->d) between layers i and i+1 cross iff (pos a - pos c) and
    (pos b - pos d) have opposite signs: the inversions of the target positions once the edges
    are sorted by source position, counted with a Fenwick tree in O(m log m).
    """
    total = 0
    for left, right in zip(layers, layers[1:]):
        pos_l = {n: i for i, n in enumerate(left)}
        pos_r = {n: i for i, n in enumerate(right)}
        pairs = sorted(
            (pos_l[u], pos_r[v]) for u in left for v in graph.successors(u) if v in pos_r
        )
        total += _inversions([p[1] for p in pairs], len(right))
    return total


def _inversions(seq: list[int], size: int) -> int:
    """Number of pairs i < j with seq[i] > seq[j] (Fenwick tree over values 0..size-1)."""
    tree = [0] * (size + 1)
    seen = 0
    inv = 0
    for value in seq:
        # count earlier values <= value, the rest of the seen ones are inversions
        i, le = value + 1, 0
        while i > 0:
            le += tree[i]
            i -= i & -i
        inv += seen - le
        i = value + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
        seen += 1
    return inv


def _barycentre_sweep(
    layers: list[list[Hashable]],
    neighbours,
    order: range,
    slot: dict[Hashable, float],
) -> None:
    """Reorder each layer in ``order`` by the mean slot of its neighbours in other layers.

    Nodes without such neighbours keep their current slot, so they stay where they were; ties
    keep the current order, which keeps the sweeps deterministic.
    """
    for li in order:
        layer = layers[li]
        members = set(layer)
        keys = []
        for n in layer:
            near = [slot[m] for m in neighbours(n) if m not in members]
            keys.append(sum(near) / len(near) if near else slot[n])
        ranked = sorted(range(len(layer)), key=lambda i: (keys[i], slot[layer[i]]))
        layers[li] = [layer[i] for i in ranked]
        _set_slots(layers[li], slot)


def _set_slots(layer: list[Hashable], slot: dict[Hashable, float]) -> None:
    """Centred slots: a layer of n nodes occupies -(n-1)/2 .. (n-1)/2."""
    half = (len(layer) - 1) / 2.0
    for i, n in enumerate(layer):
        slot[n] = i - half


def layout_job(graph: nx.DiGraph, sweeps: int = 8,
               budget_s: float | None = None) -> Generator[Step, None, GraphLayout]:
    """Compute the layered layout of ``graph`` as a job (see module docstring for the method).

    Yields one Step per sweep (fractions 0..1); returns a :class:`GraphLayout`. ``sweeps`` is the
    number of left-to-right + right-to-left passes; the ordering with the fewest crossings wins.
    With ``budget_s``, no sweep starts after that many seconds (the best ordering so far is
    kept), so a huge graph gets a rougher layout instead of a long wait.
    An empty graph gives empty arrays.
    """
    import time

    t0 = time.perf_counter()
    if sweeps < 0:
        raise ValueError(f"sweeps must be >= 0, got {sweeps}")
    nodes = list(graph.nodes())
    if not nodes:
        yield Step("layout", 1.0)
        return GraphLayout([], np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64), [], 0, 0)
    yield Step("layering", 0.0)
    layers = layer_assignment(graph)
    slot: dict[Hashable, float] = {}
    for layer in layers:
        _set_slots(layer, slot)
    initial = count_crossings(layers, graph)
    best = ([list(layer) for layer in layers], initial)
    forward = range(1, len(layers))
    backward = range(len(layers) - 2, -1, -1)
    for s in range(sweeps):
        if best[1] == 0 or (budget_s is not None and time.perf_counter() - t0 > budget_s):
            break
        _barycentre_sweep(layers, graph.predecessors, forward, slot)
        _barycentre_sweep(layers, graph.successors, backward, slot)
        crossings = count_crossings(layers, graph)
        if crossings < best[1]:
            best = ([list(layer) for layer in layers], crossings)
        yield Step(f"layout sweep {s + 1}/{sweeps}", (s + 1) / max(sweeps, 1))
    layers, crossings = best
    return _finish(graph, nodes, layers, crossings, initial)


def _finish(graph, nodes, layers, crossings, initial) -> GraphLayout:
    """Turn the chosen ordering into position and edge arrays."""
    index = {n: i for i, n in enumerate(nodes)}
    positions = np.zeros((len(nodes), 2), dtype=np.float64)
    for x, layer in enumerate(layers):
        half = (len(layer) - 1) / 2.0
        for i, n in enumerate(layer):
            positions[index[n]] = (x, i - half)
    edges = np.array(
        [(index[u], index[v]) for u, v in graph.edges() if u != v], dtype=np.int64
    ).reshape(-1, 2)
    return GraphLayout(nodes, positions, edges, layers, crossings, initial)


def layered_layout(graph: nx.DiGraph, sweeps: int = 8) -> GraphLayout:
    """Run :func:`layout_job` to the end (CLI, tests, small graphs on the GUI thread)."""
    return run(layout_job(graph, sweeps))


def edge_segments(
    positions: np.ndarray, edges: np.ndarray, bend: float = 0.35, samples: int = 10
) -> np.ndarray:
    """Line segments drawing ``edges`` (rows into ``positions``), as a (2k, 2) array of pairs.

    Edges between adjacent layers are straight. An edge spanning s > 1 layers is a quadratic
    Bezier arc bulging by ``bend * (s - 1)`` slots towards negative y (drawn upwards with an
    inverted y axis), so skip connections (residual adds, DenseNet concatenations) are not hidden
    behind the chain of layers they jump over. ``samples`` is the number of segments per arc.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(edges) == 0:
        return np.zeros((0, 2))
    a = positions[edges[:, 0]]
    b = positions[edges[:, 1]]
    span = np.abs(b[:, 0] - a[:, 0])
    straight = span <= 1.0
    parts = [np.stack([a[straight], b[straight]], axis=1).reshape(-1, 2)]
    if (~straight).any():
        a2, b2, s2 = a[~straight], b[~straight], span[~straight]
        ctrl = (a2 + b2) / 2.0
        ctrl[:, 1] = np.minimum(a2[:, 1], b2[:, 1]) - bend * (s2 - 1.0)
        t = np.linspace(0.0, 1.0, samples + 1)[None, :, None]
        curve = (
            (1 - t) ** 2 * a2[:, None, :]
            + 2 * (1 - t) * t * ctrl[:, None, :]
            + t**2 * b2[:, None, :]
        )  # (k, samples+1, 2)
        pairs = np.stack([curve[:, :-1], curve[:, 1:]], axis=2)  # (k, samples, 2, 2)
        parts.append(pairs.reshape(-1, 2))
    return np.concatenate(parts, axis=0)
