"""Traced graphs (torch.fx, torch.export, hooks, hierarchy) of the bundled and awkward models."""

from __future__ import annotations

import networkx as nx
import torch
from torch import nn

from visualizer.core.models.zoo import ZOO
from visualizer.core.structure.graph import build_graph, example_input
from visualizer.core.structure.groups import (
    find_groups,
)


def _zoo(name):
    m = ZOO[name].build().eval()
    return m, example_input(m, ZOO[name].dataset)


def test_fx_graph_has_shapes_and_parameter_counts():
    m, x = _zoo("resnet-mini")
    g = build_graph(m, x)
    assert g.method == "fx" and not g.notices
    assert g.graph.nodes["layer1.conv1"]["params"] == 16 * 16 * 9
    assert g.graph.nodes["layer1.conv1"]["module_type"] == "Conv2d"
    # the residual add reads both the block's bn2 output and the block input
    add = next(n for n, a in g.graph.nodes(data=True) if a["label"] == "add" and "layer1" in str(list(g.graph.predecessors(n))))
    assert g.graph.in_degree(add) == 2
    assert g.graph.edges["layer1.bn2", add]["shape"] == [2, 16, 8, 8]
    assert nx.is_directed_acyclic_graph(g.graph)
    total = sum(a["params"] for _, a in g.graph.nodes(data=True))
    assert total == sum(p.numel() for p in m.parameters())


def test_every_bundled_model_traces_with_fx():
    for name in ZOO:
        m, x = _zoo(name)
        g = build_graph(m, x)
        assert g.method == "fx", (name, g.notices)
        json = g.to_json()
        assert json["nodes"] and json["edges"]


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:  # data-dependent Python control flow: fx cannot trace it
            h = torch.relu(h)
        return self.b(h)


def test_data_dependent_model_falls_back_with_a_notice():
    m = DataDependent().eval()
    g = build_graph(m, torch.randn(2, 4))
    assert g.method in ("export", "hooks")
    assert any("torch.fx could not trace" in n for n in g.notices)
    assert g.graph.number_of_nodes() >= 3
    # Torch-Pruning runs the model (autograd tracing), so groups still exist
    r = find_groups(m, torch.randn(2, 4))
    assert [g.root for g in r.prunable()] == ["a"]


def test_hook_fallback_when_export_also_fails(monkeypatch):
    from visualizer.core.structure import graph

    def boom(*a, **k):
        raise RuntimeError("no export here")

    monkeypatch.setattr(graph, "_export_graph", boom)
    g = build_graph(DataDependent().eval(), torch.randn(2, 4))
    assert g.method == "hooks"
    assert any("execution order" in n for n in g.notices)
    assert list(g.graph.successors("input")) == ["a"]
    assert g.graph.edges["a", "b"]["shape"] == [2, 8]


def test_torchscript_module_gets_hierarchy_and_no_groups():
    ts = torch.jit.script(ZOO["lenet"].build().eval())
    g = build_graph(ts)
    assert g.method == "hierarchy" and "TorchScript" in g.notices[0]
    assert g.graph.nodes["conv1"]["params"] == 6 * 9 + 6
    r = find_groups(ts)
    assert r.groups == [] and "TorchScript" in r.notices[0]


def test_model_that_cannot_run_still_returns_a_graph():
    m = nn.Sequential(nn.Linear(3, 4))
    g = build_graph(m, torch.randn(2, 5))  # wrong input width
    assert g.method == "hierarchy" and g.notices


def test_graphml_roundtrip(tmp_path):
    m, x = _zoo("densenet-mini")
    g = build_graph(m, x)
    p = tmp_path / "g.graphml"
    g.write_graphml(p)
    back = nx.read_graphml(p)
    assert back.number_of_nodes() == g.graph.number_of_nodes()
    assert back.nodes["stem"]["shape"] == "2x16x8x8"


def test_graph_shapes_without_symbolic_shape_machinery():
    """ShapeRecorder gives the edges their shapes without importing sympy (fx's ShapeProp pulls in
    ~530 modules on first use, which froze the window when the graph job ran in a worker)."""
    import subprocess
    import sys

    code = ("import sys; from visualizer.core.models.loaders import load_model; "
            "from visualizer.core.structure.graph import build_graph; "
            "g = build_graph(load_model('densenet-mini').model).graph; "
            "shapes = [d.get('shape') for _, _, d in g.edges(data=True)]; "
            "assert sum(s is not None for s in shapes) >= len(shapes) // 2, shapes; "
            "print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
