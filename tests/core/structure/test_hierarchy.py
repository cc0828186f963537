"""The traced graph nested by the module tree: containers, folded runs, lifted edges, nested layout."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from tests.graph_models import DeepResNet, TokenTransformer, synthetic_graph, token_ids
from visualizer.core.models.zoo import ZOO
from visualizer.core.structure.graph import build_graph
from visualizer.core.structure.hierarchy import (
    ROOT,
    bar_values,
    build_hierarchy,
    leaf_values,
    model_hierarchy,
    node_values,
    order,
    place,
    summarise,
)
from visualizer.core.structure.layout import layout_job


def resnet_mini():
    m = ZOO["resnet-mini"].build()
    return model_hierarchy(m, build_graph(m))


def test_containers_nest_the_traced_nodes_by_module():
    h = resnet_mini()
    assert h.nodes["layer3"].kind == "module" and h.nodes["layer3"].module_type == "BasicBlock"
    assert h.nodes["layer3.conv1"].parent == "layer3"
    assert h.nodes["layer3.shortcut.0"].parent == "layer3.shortcut"
    # the functional residual add runs inside the block (fx's module stack), not at the top
    adds = [k for k in h.nodes["layer3"].children if h.nodes[k].label == "add"]
    assert len(adds) == 1
    # every traced node is in exactly one place, and container sums add up
    assert sorted(h.leaf_order) == sorted(str(n) for n in build_graph(ZOO["resnet-mini"].build()).graph)
    assert h.root.leaves == len(h.leaf_order)
    assert h.nodes["layer3"].params == sum(p.numel() for p in ZOO["resnet-mini"].build().layer3.parameters())


def test_edges_are_lifted_to_the_visible_nodes():
    h = resnet_mini()
    closed = {(a, b) for a, b, _ in h.visible_edges({ROOT})}
    assert ("stem", h.representative("layer1.conv1", {ROOT})) in closed
    assert h.representative("layer3.conv1", {ROOT}) == "layer3"
    # opening layer3 replaces its edges with edges to its children; nothing inside a closed box
    opened = {(a, b) for a, b, _ in h.visible_edges({ROOT, "layer3"})}
    assert ("layer3.conv1", "layer3.bn1") in opened
    assert not any(a == "layer3" or b == "layer3" for a, b in opened)
    # the bundled count: a closed block's internal edges cost nothing and appear nowhere
    assert all(h.representative(a, {ROOT}) == a for a, _, _ in h.visible_edges({ROOT}))


def test_sixteen_identical_blocks_fold_into_one_run():
    m = DeepResNet(stages=(16,), width=2)
    h = model_hierarchy(m, build_graph(m, torch.randn(1, 3, 8, 8)))
    runs = [n for n in h.nodes.values() if n.kind == "run"]
    assert len(runs) == 1
    run = runs[0]
    assert run.repeat == 16 and run.first == "stages.0.0" and run.module_type == "Bottleneck"
    assert run.children == [f"stages.0.{i}" for i in range(16)]
    assert run.title() == "Bottleneck × 16"
    # closed: one node; unfolded: its 16 blocks, each still closed
    vis = h.visible({ROOT, "stages", "stages.0"})
    assert run.key in vis and "stages.0.3" not in vis
    vis = h.visible({ROOT, "stages", "stages.0", run.key})
    assert [k for k in vis if k.startswith("stages.0.")] == run.children


def test_a_different_first_block_stays_out_of_the_run():
    m = DeepResNet(stages=(2, 5), width=2)
    h = model_hierarchy(m, build_graph(m, torch.randn(1, 3, 8, 8)))
    runs = {n.first: n.repeat for n in h.nodes.values() if n.kind == "run"}
    # stage 1's first block changes stride and width (a downsample): 4 identical blocks follow it
    assert runs == {"stages.0.0": 2, "stages.1.1": 4}
    assert h.nodes["stages.1"].children[0] == "stages.1.0"


def test_json_lists_containers_with_children_and_runs_with_repeat():
    m = TokenTransformer(blocks=4)
    h = model_hierarchy(m, build_graph(m, token_ids()))
    js = h.to_json()
    by_id = {c["id"]: c for c in js["containers"]}
    run = by_id["blocks.0..blocks.3"]
    assert run["kind"] == "run" and run["repeat"] == 4 and run["first"] == "blocks.0"
    assert by_id["blocks"]["children"] == ["blocks.0..blocks.3"]
    assert "blocks.0.attn" in by_id["blocks.0"]["children"]
    assert by_id[""]["children"][:2] == ["ids", "embed"]


def test_an_untraceable_model_still_shows_its_module_tree_with_one_line_why():
    m = TokenTransformer(blocks=3)  # a float example cannot run an Embedding
    traced = build_graph(m)
    assert traced.method == "hierarchy"
    h = model_hierarchy(m, traced)
    assert h.edge_kind == "order"
    assert "--example-input" in h.notices[0] and "\n" not in h.notices[0]
    assert "could not trace" in h.notices[0]
    assert h.nodes["blocks.0..blocks.2"].repeat == 3
    assert h.visible({ROOT}) == ["embed", "blocks", "norm", "head"]


def test_nested_placement_boxes_contain_their_children_and_do_not_overlap():
    h = resnet_mini()
    opened = {ROOT, "layer3", "layer3.shortcut"}
    orders = {k: order(h, k) for k in opened}
    p = place(h, opened, orders)
    assert set(p.boxes) == opened
    assert set(p.visible) == set(h.visible(opened))
    for key in p.visible + p.boxes:
        if key == ROOT:
            continue
        px, py, pw, ph = p.rects[h.nodes[key].parent]
        x, y, w, hh = p.rects[key]
        assert px <= x and x + w <= px + pw + 1e-9 and py <= y and y + hh <= py + ph + 1e-9
    for parent in p.boxes:
        kids = [p.rects[c] for c in h.nodes[parent].children]
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                apart = a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
                assert apart
    # a container opened without its order yet is drawn closed
    p2 = place(h, {ROOT, "layer3"}, {ROOT: orders[ROOT]})
    assert "layer3" in p2.visible


def test_overlay_values_summaries_and_colour_bars_by_hand():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "d")])
    for n in g:
        g.nodes[n].update(kind="layer", target=n, params=1)
    h = build_hierarchy(g, {"a": "", "b": "blk", "c": "blk", "d": ""}, fold=False)
    vals = leaf_values(h, {"b.weight": 0.2, "c": 0.6, "d": 1.0})
    assert np.isnan(vals[0]) and list(vals[1:]) == [0.2, 0.6, 1.0]
    s = summarise(h, vals, "blk")
    assert (s.mean, s.min, s.max, s.count) == (pytest.approx(0.4), 0.2, 0.6, 2)
    assert list(bar_values(h, vals, "blk")) == [0.2, 0.6]
    assert list(bar_values(h, vals, ROOT, bins=2)) == [pytest.approx(0.2), pytest.approx(0.8)]
    assert node_values(h, vals, ["blk", "d"]).tolist() == [pytest.approx(0.4), 1.0]


def test_synthetic_ten_thousand_nodes_open_collapsed_and_fold():
    g, owners, types = synthetic_graph(2000, stages=4, ops=10)
    h = build_hierarchy(g, owners, types)
    # three identical stages fold; the last one is cut short by the node count
    assert h.visible({ROOT}) == ["input", "s0..s2", "s3", "output"]
    blocks = [n for n in h.nodes.values() if n.kind == "run" and n.module_type == "Block"]
    assert all(n.repeat == 6 for n in blocks if n.parent != "s3")  # blocks 1..6 of every 7 are identical


def test_layout_job_stops_sweeping_after_its_budget():
    g = nx.gnp_random_graph(60, 0.1, seed=1, directed=True)
    g = nx.DiGraph([(u, v) for u, v in g.edges() if u < v])
    steps = []
    gen = layout_job(g, sweeps=50, budget_s=0.0)
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        lay = stop.value
    assert len([s for s in steps if "sweep" in s.stage]) <= 1
    assert sorted(lay.nodes) == sorted(g.nodes)
