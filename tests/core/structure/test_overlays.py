"""Graph overlays: registry, kept fractions, A/B mask diffs, coupling reasons and kept units, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visualizer.core.models.zoo import ZOO
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.graph import build_graph
from visualizer.core.structure.groups import ChannelGroup, Member, find_groups
from visualizer.core.structure.overlays import (
    OverlayRegistry,
    coupling_reasons,
    diff_overlays,
    kept_fraction,
    mask_diff,
    parameter_change,
    score_statistics,
    units_kept,
)


def test_registry_notifies_and_gives_the_legend_range():
    reg = OverlayRegistry()
    heard = []
    reg.listeners.append(heard.append)
    reg.set("lambda_max", {"a": 2.0, "b": 8.0})
    reg.set("delta", {"a": -3.0, "b": 1.0}, diverging=True)
    assert reg.names() == ["lambda_max", "delta"] and heard == ["lambda_max", "delta"]
    assert reg.get("lambda_max").range() == (2.0, 8.0)
    assert reg.get("delta").range() == (-3.0, 3.0)  # symmetric around 0
    reg.remove("delta")
    assert heard[-1] == "" and "delta" not in reg


def _masks(**tensors):
    return MaskSet({k.replace("_", "."): torch.tensor(v, dtype=torch.bool) for k, v in tensors.items()})


def test_kept_fraction_and_ab_diff_by_hand():
    a = _masks(l1_weight=[1, 1, 0, 0], l1_bias=[1, 0], l2_weight=[1, 1, 1, 1])
    b = _masks(l1_weight=[1, 0, 1, 0], l1_bias=[1, 1], l2_weight=[0, 0, 0, 1])
    assert kept_fraction(a) == {"l1": 3 / 6, "l2": 1.0}
    d = mask_diff(a, b)
    # l1: both {w0, b0}, only A {w1}, only B {w2, b1}
    assert (d["l1"].both, d["l1"].only_a, d["l1"].only_b, d["l1"].total) == (2, 1, 2, 6)
    assert d["l1"].delta == 1 and d["l2"].delta == -3
    ov = diff_overlays(d, {"l1": 600, "l2": 400})
    assert ov["A/B kept by both"]["l1"] == pytest.approx(2 / 6)
    assert ov["A/B only A"]["l2"] == pytest.approx(3 / 4)
    assert ov["Δ params (B − A)"] == {"l1": 1.0, "l2": -3.0}
    # useful FLOPs scale with the kept fraction: 600 * (+1/6) and 400 * (-3/4)
    assert ov["Δ FLOPs (B − A)"] == {"l1": pytest.approx(100.0), "l2": pytest.approx(-300.0)}


def test_score_statistics_and_parameter_change():
    stats = score_statistics({"l.weight": np.array([1.0, 3.0])})
    assert stats["score mean"] == {"l": 2.0} and stats["score std"] == {"l": 1.0}
    before = {"l.weight": torch.tensor([3.0, 4.0]), "l.bias": torch.tensor([1.0])}
    after = {"l.weight": torch.tensor([3.0, 4.5]), "l.bias": torch.tensor([9.0])}
    assert parameter_change(before, after) == {"l": pytest.approx(0.5 / 5.0)}  # biases are not layers' weights


def test_units_kept_reads_the_producers_masks():
    g = ChannelGroup(0, "channel", "c1", 3, [
        Member("c1.weight", 0, (0, 1, 2), (0, 1, 2), "out"),
        Member("c2.weight", 1, (0, 1, 2), (0, 1, 2), "in"),
    ])
    w = torch.ones(3, 2, dtype=torch.bool)
    w[1] = False  # every weight of output channel 1 pruned
    masks = MaskSet({"c1.weight": w, "c2.weight": torch.zeros(4, 3, dtype=torch.bool)})
    assert units_kept(g, masks).tolist() == [True, False, True]
    assert units_kept(g, None).tolist() == [True, True, True]


def test_coupling_reasons_on_resnet_mini_name_the_residual_add():
    m = ZOO["resnet-mini"].build()
    graph = build_graph(m).graph
    groups = find_groups(m).groups
    stem = next(g for g in groups if g.root == "stem.0")
    reasons = {p: why for p, _role, why in coupling_reasons(stem, graph)}
    # the stem's channels are summed with layer1's (and layer2's) residual branch
    assert "residual add" in reasons["stem.0.weight"]
    assert "residual add" in reasons["layer1.conv2.weight"]
    assert reasons["stem.1.weight"].startswith("normalisation")
    assert reasons["layer1.conv1.weight"] == "reads these channels"


def test_coupling_reasons_of_a_concatenation_and_of_attention_heads():
    m = ZOO["densenet-mini"].build()
    graph = build_graph(m).graph
    groups = find_groups(m).groups
    stem = next(g for g in groups if g.root == "stem")
    reasons = {p: why for p, _r, why in coupling_reasons(stem, graph, m)}
    # block1.1 reads the stem's 16 channels as the first slice of cat(stem, block1.0)
    assert reasons["block1.1.conv.weight"] == "reads these channels (channels 0–15 of 24: a concatenation)"
    assert reasons["block1.0.conv.weight"] == "reads these channels"  # the stem's output alone
    t = ZOO["transformer-mini"].build()
    heads = [g for g in find_groups(t).groups if g.kind == "head"]
    assert heads and all("attention head" in why for g in heads for _p, _r, why in coupling_reasons(g))


def test_before_after_table_says_masked_weights_save_nothing():
    from visualizer.core.structure.overlays import before_after
    from visualizer.core.structure.speed import SpeedEntry, SpeedReport

    rep = SpeedReport([SpeedEntry("dense", 1000, 2000, 2000, 0.010, 0.0, 2e5, 1.0),
                       SpeedEntry("masked", 300, 600, 2000, 0.010, 0.0, 6e4, 0.3),
                       SpeedEntry("shrunk", 300, 600, 600, 0.004, 0.0, 1.5e5, 0.75)], "cpu", 1, 1, 1)
    rows, note = before_after(rep, prunable=800)
    by = {r[0]: r[1:] for r in rows}
    assert by["parameters stored"] == [1000, 1000, 300]
    assert by["weight memory (MB)"] == [pytest.approx(0.004), pytest.approx(0.0048), pytest.approx(0.0012)]
    assert by["FLOPs executed"] == [2000, 2000, 600]
    assert by["latency (ms)"] == [pytest.approx(10.0), pytest.approx(10.0), pytest.approx(4.0)]
    assert "30% of the weights nonzero" in note and "1.20× the dense memory" in note
    assert "executes 1.00× its FLOPs" in note and "save nothing by themselves" in note
    assert "shrunk: 0.30× the memory, 0.30× the FLOPs, 0.40× the time" in note
