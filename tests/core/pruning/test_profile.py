"""Density profile: kept fractions and the three sparsities against hand counts; CSV round trip."""

import numpy as np
import pytest
import torch

from visualizer.core.pruning.profile import (
    Series,
    density_profile,
    flops_by_parameter,
    read_profile_csv,
    write_profile_csv,
)
from visualizer.core.structure.groups import ChannelGroup, Member


def tiny_masks():
    # conv a: 4 output channels of 2x1x1 weights; channels 0 and 1 pruned entirely
    a = torch.ones(4, 2, 1, 1, dtype=torch.bool)
    a[0] = False
    a[1] = False
    # linear b reads a's 4 channels: 3 x 4 weights, one more weight pruned at (2, 3)
    b = torch.ones(3, 4, dtype=torch.bool)
    b[2, 3] = False
    return {"a.weight": a, "b.weight": b}


def chain_group():
    """a's output channels feed b's input columns (the coupled group of a conv -> linear chain)."""
    return ChannelGroup(0, "channel", "a", 4, [
        Member("a.weight", 0, (0, 1, 2, 3), (0, 1, 2, 3), "out"),
        Member("b.weight", 1, (0, 1, 2, 3), (0, 1, 2, 3), "in"),
    ])


def test_kept_fractions_and_channel_sparsity_by_hand():
    prof = density_profile(tiny_masks(), order=["b.weight", "a.weight"])
    assert [r.name for r in prof.rows] == ["b.weight", "a.weight"]
    b, a = prof.rows
    assert (a.params, a.kept, a.density) == (8, 4, 0.5)
    assert (b.params, b.kept) == (12, 11) and b.density == pytest.approx(11 / 12)
    assert a.channel_sparsity == 0.5 and (a.removed_channels, a.channels) == (2, 4)
    assert b.channel_sparsity == 0.0
    # no groups: FLOP sparsity counts the pruned weights only
    assert b.flop_sparsity == pytest.approx(1 / 12) and a.flop_sparsity == 0.5


def test_flop_sparsity_counts_the_inputs_a_removed_channel_takes_with_it():
    flops = {"a.weight": 2 * 8 * 25, "b.weight": 2 * 12}  # a runs on 5x5 positions, b once
    prof = density_profile(tiny_masks(), flops=flops, groups=[chain_group()])
    a, b = prof.rows
    # b: columns 0 and 1 read a's removed channels (6 weights); of the other 6, (2, 3) is pruned
    assert b.live == 5 and b.flop_sparsity == pytest.approx(7 / 12)
    assert b.parameter_sparsity == pytest.approx(1 / 12)
    assert a.live == 4 and a.flop_sparsity == 0.5
    tot = prof.totals()
    assert tot.parameter_sparsity == pytest.approx(1 - 15 / 20)
    kept_flops = 400 * 4 / 8 + 24 * 5 / 12
    assert tot.flop_sparsity == pytest.approx(1 - kept_flops / 424)
    assert tot.channel_sparsity == pytest.approx(2 / 7)


def test_a_channel_is_removed_only_when_every_producer_prunes_it():
    masks = tiny_masks()
    masks["c.weight"] = torch.ones(4, 3, dtype=torch.bool)  # a second producer (a residual add)
    group = chain_group()
    group.members.append(Member("c.weight", 0, (0, 1, 2, 3), (0, 1, 2, 3), "out"))
    prof = density_profile(masks, groups=[group])
    b = next(r for r in prof.rows if r.name == "b.weight")
    assert b.live == 11  # c still produces channels 0 and 1: b's columns stay live


def test_flops_are_mapped_from_modules_to_their_parameters():
    assert flops_by_parameter({"a": 10, "b.c": 7}, ["a.weight", "b.c.weight", "d.weight"]) == \
        {"a.weight": 10, "b.c.weight": 7}


def test_csv_round_trip(tmp_path):
    prof = density_profile(tiny_masks(), flops={"a.weight": 400}, groups=[chain_group()])
    series = [Series("random · global", {"a.weight": 0.25, "b.weight": 0.5})]
    path = write_profile_csv(prof, tmp_path / "profile.csv", series)
    rows = read_profile_csv(path)
    assert [r["name"] for r in rows] == ["a.weight", "b.weight"]
    for row, r in zip(rows, prof.rows):
        assert row["shape"] == r.shape and row["params"] == r.params and row["kept"] == r.kept
        assert row["density"] == r.density and row["flop_sparsity"] == r.flop_sparsity
        assert row["channel_sparsity"] == r.channel_sparsity
    assert rows[0]["flops"] == 400 and rows[1]["flops"] is None
    assert rows[0]["density[random · global]"] == 0.25


def test_numpy_masks_work_too():
    prof = density_profile({"w": np.array([[True, False], [False, False]])})
    assert prof.rows[0].density == 0.25 and prof.rows[0].removed_channels == 1


def test_allocation_series_divides_each_layers_budget_by_its_size(monkeypatch):
    """The hook for the allocation rules: their per-layer budgets k_l as kept fractions k_l / d_l
    (a stand-in module here; the real rules are tested with their module)."""
    import importlib.machinery
    import sys
    import types

    from visualizer.core.pruning import profile

    fake = types.ModuleType(profile.ALLOCATION_MODULE)
    fake.__spec__ = importlib.machinery.ModuleSpec(profile.ALLOCATION_MODULE, None)
    fake.layer_budgets = lambda allocation, density, shapes: {"a": 3, "b": 10}
    monkeypatch.setitem(sys.modules, profile.ALLOCATION_MODULE, fake)
    assert profile.allocations_available() == profile.SHAPE_ONLY_ALLOCATIONS
    ser = profile.allocation_series("erk", 0.5, {"a": (2, 3), "b": (4, 5)})
    assert ser.label == "allocation: erk" and ser.densities == {"a": 0.5, "b": 0.5}
