"""The layered layout: edges point left to right, barycentric sweeps remove crossings."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from visualizer.core.structure.layout import (
    count_crossings,
    layer_assignment,
    layered_layout,
    layout_job,
)
from visualizer.core.tasks import Step


def test_chain_is_one_row():
    g = nx.DiGraph([("a", "b"), ("b", "c")])
    lay = layered_layout(g)
    assert lay.nodes == ["a", "b", "c"]
    np.testing.assert_array_equal(lay.positions, [[0, 0], [1, 0], [2, 0]])
    np.testing.assert_array_equal(lay.edges, [[0, 1], [1, 2]])
    assert lay.crossings == 0


def test_layers_are_topological_generations_and_centred():
    # diamond with a skip edge: a -> (b, c) -> d, a -> d
    g = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")])
    lay = layered_layout(g)
    assert [sorted(layer) for layer in lay.layers] == [["a"], ["b", "c"], ["d"]]
    idx = lay.index()
    ys = sorted(lay.positions[[idx["b"], idx["c"]], 1])
    assert ys == [-0.5, 0.5]  # centred slots
    for u, v in g.edges():
        assert lay.positions[idx[u], 0] < lay.positions[idx[v], 0]


def test_hand_worked_crossings_and_their_removal():
    # Layer 0 = [a, b], layer 1 = [c, d] in trace order; a->d and b->c cross exactly once.
    g = nx.DiGraph()
    g.add_nodes_from(["a", "b", "c", "d"])
    g.add_edges_from([("a", "d"), ("b", "c")])
    assert layer_assignment(g) == [["a", "b"], ["c", "d"]]
    assert count_crossings([["a", "b"], ["c", "d"]], g) == 1
    assert count_crossings([["a", "b"], ["d", "c"]], g) == 0
    lay = layered_layout(g)
    assert lay.initial_crossings == 1
    assert lay.crossings == 0


def test_complete_bipartite_crossings_formula():
    # K_{2,3} in any order has C(2,2) * C(3,2) = 3 crossings: every pair of sources with every
    # pair of targets crosses once.
    g = nx.DiGraph([(u, v) for u in "ab" for v in "xyz"])
    assert count_crossings([["a", "b"], ["x", "y", "z"]], g) == 3


def test_barycentre_never_worse_on_random_dags():
    rng = np.random.default_rng(0)
    for trial in range(5):
        g = nx.gnp_random_graph(60, 0.08, seed=trial, directed=True)
        g = nx.DiGraph([(u, v) for u, v in g.edges() if u < v])
        order = list(rng.permutation(60))
        h = nx.DiGraph()
        h.add_nodes_from(int(n) for n in order)
        h.add_edges_from(g.edges())
        lay = layered_layout(h)
        assert lay.crossings <= lay.initial_crossings
        idx = lay.index()
        assert all(lay.positions[idx[u], 0] < lay.positions[idx[v], 0] for u, v in h.edges())
        # every slot in a layer is used once
        for layer in lay.layers:
            ys = sorted(lay.positions[[idx[n] for n in layer], 1])
            assert np.allclose(np.diff(ys), 1.0)


def test_cycles_are_broken_not_fatal():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "c")])
    lay = layered_layout(g)
    assert len(lay.nodes) == 3
    assert len(lay.edges) == 3  # self-loop dropped; the back edge is still drawn
    assert lay.positions[:, 0].tolist() == [0, 1, 2]


def test_empty_graph_and_job_protocol():
    lay = layered_layout(nx.DiGraph())
    assert lay.positions.shape == (0, 2) and lay.edges.shape == (0, 2)
    steps = []
    gen = layout_job(nx.DiGraph([(i, i + 1) for i in range(5)] + [(0, 3)]), sweeps=3)
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        assert stop.value.positions.shape == (6, 2)
    assert all(isinstance(s, Step) for s in steps) and steps[-1].fraction <= 1.0
    with pytest.raises(ValueError, match="sweeps"):
        layered_layout(nx.DiGraph([(0, 1)]), sweeps=-1)


def test_densenet_like_graph_is_fast_enough_to_run():
    # a dense block of 60 layers: every layer reads every earlier one (O(L^2) edges)
    g = nx.DiGraph([(i, j) for j in range(60) for i in range(j)])
    lay = layered_layout(g, sweeps=2)
    assert lay.positions[:, 0].max() == 59


def test_edge_segments_straight_and_arcs():
    from visualizer.core.structure.layout import edge_segments

    g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    lay = layered_layout(g)
    seg = edge_segments(lay.positions, lay.edges, bend=0.5, samples=4)
    # 2 straight edges (2 points each) + one arc of 4 segments (8 points)
    assert seg.shape == (2 * 2 + 4 * 2, 2)
    arc = seg[4:]
    np.testing.assert_allclose(arc[0], [0, 0])
    np.testing.assert_allclose(arc[-1], [2, 0])
    # the arc's middle point is the Bezier midpoint: y = 0.5 * ctrl_y = 0.5 * (-0.5 * 1)
    np.testing.assert_allclose(arc[3], [1.0, -0.25])
    empty = layered_layout(nx.DiGraph())
    assert edge_segments(empty.positions, empty.edges).shape == (0, 2)
