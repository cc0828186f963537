"""Density profile: kept fractions and the three sparsities against hand counts; CSV round trip."""

import numpy as np
import pytest
import torch

from visualizer.core.pruning.profile import (
    Series,
    density_profile,
    flops_by_parameter,
    group_profile,
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


def test_csv_names_the_unit_kind_and_the_three_sparsities_apart(tmp_path):
    prof = density_profile(tiny_masks(), flops={"a.weight": 400}, groups=[chain_group()])
    rows = read_profile_csv(write_profile_csv(prof, tmp_path / "layers.csv"))
    assert {r["unit_kind"] for r in rows} == {"layer"}
    assert {"channel_sparsity", "parameter_sparsity", "flop_sparsity"} <= set(rows[0])
    a = rows[0]
    assert (a["channel_sparsity"], a["parameter_sparsity"], a["flop_sparsity"]) == (0.5, 0.5, 0.5)


def test_csv_with_group_rows_writes_them_first_then_the_layer_rows(tmp_path):
    """Group mode's export: one row per coupled group (its unit sparsity, kept fraction, the
    comparisons of the group mode and the per-group λ_max), then the tensors, told apart by
    ``unit_kind``; a comparison known per layer only is empty in the group rows."""
    masks = tiny_masks()
    prof = density_profile(masks, groups=[chain_group()])
    groups = group_profile([chain_group()], masks)
    name = groups[0].name  # the group's label, "a (channels: 4)"
    series = [Series("random · global", {"a.weight": 0.25, "b.weight": 0.5}),
              Series("allocation: erk", {"a.weight": 0.75, "b.weight": 0.5})]
    path = write_profile_csv(prof, tmp_path / "groups.csv", series, {"lambda_max": {"a.weight": 2.0}},
                             group_rows=groups, group_series={"random · global": {name: 0.4}},
                             group_extra={"lambda_max": {name: 3.5}})
    rows = read_profile_csv(path)
    assert [(r["unit_kind"], r["name"]) for r in rows] == [("group", name), ("layer", "a.weight"),
                                                           ("layer", "b.weight")]
    g = rows[0]
    # a's rows 0, 1 pruned: 2 of 4 units removed; slices: a's 8 weights (4 kept) + b's 12 (11 kept)
    assert (g["units"], g["removed_units"], g["unit_sparsity"]) == (4, 2, 0.5)
    assert (g["params"], g["kept"], g["density"]) == (20, 15, 0.75)
    assert g["layers"] == "a.weight;b.weight" and g["group_kind"] == "channel"
    assert g["density[random · global]"] == 0.4 and g["density[allocation: erk]"] is None
    assert g["lambda_max"] == 3.5 and g["channel_sparsity"] is None and g["flop_sparsity"] is None
    assert rows[1]["density[allocation: erk]"] == 0.75 and rows[1]["lambda_max"] == 2.0
    assert rows[1]["units"] is None and rows[2]["lambda_max"] is None


def test_numpy_masks_work_too():
    prof = density_profile({"w": np.array([[True, False], [False, False]])})
    assert prof.rows[0].density == 0.25 and prof.rows[0].removed_channels == 1


def test_allocation_series_divides_each_layers_budget_by_its_size():
    """Every rule is offered; a shape-only rule's series is its budgets k_l over d_l, and the
    budgets sum to exactly floor(rho * d)."""
    from visualizer.core.pruning import profile
    from visualizer.core.pruning.allocation import ALLOCATIONS
    from visualizer.core.pruning.ranking import kept_count

    assert profile.allocations_available() == ALLOCATIONS
    shapes = {"a": (2, 3), "b": (4, 5)}  # 6 + 20 weights
    ser = profile.allocation_series("uniform", 0.5, shapes)
    assert ser.label == "allocation: uniform" and ser.kept == {"a": 3, "b": 10}
    assert ser.densities == {"a": 0.5, "b": 0.5}
    for rule in profile.SHAPE_ONLY_ALLOCATIONS:
        for rho in (0.9, 0.37, 0.05):
            ser = profile.allocation_series(rule, rho, shapes)
            assert sum(ser.kept.values()) == kept_count(rho, 26)
            assert all(ser.densities[n] == ser.kept[n] / d for n, d in (("a", 6), ("b", 20)))


def residual_group():
    """conv a and conv c both write the 3 channels a residual add joins; linear b reads them, and
    a BatchNorm n normalises a's output (a per-channel weight: masked too)."""
    return ChannelGroup(5, "channel", "a", 3, [
        Member("a.weight", 0, (0, 1, 2), (0, 1, 2), "out"),
        Member("n.weight", 0, (0, 1, 2), (0, 1, 2), "norm"),
        Member("n.running_mean", 0, (0, 1, 2), (0, 1, 2), "norm", buffer=True),
        Member("c.weight", 0, (0, 1, 2), (0, 1, 2), "out"),
        Member("c.bias", 0, (0, 1, 2), (0, 1, 2), "out"),  # not masked: not counted
        Member("b.weight", 1, (0, 1, 2), (0, 1, 2), "in"),
    ])


def test_group_profile_counts_every_members_slice_by_hand():
    from visualizer.core.pruning.profile import group_profile

    a = torch.ones(3, 2, dtype=torch.bool)
    a[0] = False  # channel 0 gone from a ...
    c = torch.ones(3, 4, dtype=torch.bool)
    c[0] = False  # ... and from c: unit 0 is removed
    c[1, :3] = False  # unit 1 keeps one weight of c: alive
    n = torch.tensor([True, True, False])  # the norm's weight of unit 2 masked: not a producer
    b = torch.ones(5, 3, dtype=torch.bool)
    b[:, 0] = False
    masks = {"a.weight": a, "c.weight": c, "n.weight": n, "b.weight": b, "other.weight": torch.zeros(7, dtype=torch.bool)}
    (row,) = group_profile([residual_group()], masks)
    # weights: a 6 + n 3 + c 12 + b 15 = 36; kept: a 4 + n 2 + c 5 + b 10 = 21
    assert (row.params, row.kept) == (36, 21) and row.density == pytest.approx(21 / 36)
    assert (row.units, row.removed) == (3, 1) and row.unit_sparsity == pytest.approx(1 / 3)
    assert row.name == "a (channels: 3)" and row.layers == ("a.weight", "n.weight", "c.weight", "b.weight")


def test_group_names_get_the_id_where_labels_coincide():
    from visualizer.core.pruning.profile import group_profile, group_unit_names

    g1, g2 = residual_group(), residual_group()
    g2.id = 6
    assert group_unit_names([g1, g2]) == {5: "a (channels: 3)#5", 6: "a (channels: 3)#6"}
    g2.prunable = False
    assert group_unit_names([g1, g2]) == {5: "a (channels: 3)"}
    assert [r.name for r in group_profile([g1, g2], {})] == ["a (channels: 3)"]


def test_group_profile_on_a_traced_residual_model():
    """A tiny residual model (two convs joined by an add): the traced group's kept fraction is
    the hand count over its members' slices."""
    from torch import nn

    from visualizer.core.pruning.profile import group_profile
    from visualizer.core.structure.groups import find_groups

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 1, bias=False)
            self.body = nn.Conv2d(4, 4, 1, bias=False)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            y = self.stem(x)
            y = y + self.body(y)
            return self.head(y.mean((2, 3)))

    torch.manual_seed(0)
    model = Res()
    groups = find_groups(model, torch.randn(1, 1, 4, 4)).prunable()
    res = [g for g in groups if {m.param for m in g.producers()} >= {"stem.weight", "body.weight"}]
    assert len(res) == 1  # the add couples stem's and body's output channels
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    masks["stem.weight"][1] = False  # channel 1 out of stem (1 weight) and of body (4 weights)
    masks["body.weight"][1] = False
    masks["body.weight"][2, :2] = False
    (row,) = group_profile(res, masks)
    members = sorted((m.param, m.dim, m.role) for m in res[0].members if not m.buffer)
    assert members == [("body.weight", 0, "out"), ("body.weight", 1, "in"), ("head.weight", 1, "in"),
                       ("stem.weight", 0, "out")]
    # slices: stem rows 4x1, body rows 4x4, body columns 4x4, head columns 2x4 = 44 weights;
    # kept: stem 3, body 16 - 4 - 2 = 10 (counted as rows and again as columns), head 8
    assert (row.params, row.kept) == (44, 3 + 10 + 10 + 8)
    assert (row.units, row.removed) == (4, 1)  # channel 1: every producer row pruned
