"""Proximal operators against their closed forms; SET/RigL keep the target density."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.ranking import kept_count
from visualizer.core.tasks import run
from visualizer.core.training.dst import (
    DSTConfig,
    drop_and_grow,
    dynamic_sparse_training,
    erk_densities,
    kept_counts,
    random_masks,
    update_fraction,
)
from visualizer.core.training.loop import TrainConfig, reinitialize
from visualizer.core.training.prox import (
    Group,
    GroupSlice,
    ProxConfig,
    apply_block_soft_threshold,
    block_soft_threshold,
    group_norm,
    hard_threshold,
    hard_threshold_masks,
    output_channel_groups,
    proximal_training,
    soft_threshold,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mlp():
    return load_model("mlp").model


@pytest.fixture(scope="module")
def lenet():
    return load_model("lenet").model


# --- proximal operators, hand-worked ------------------------------------------------------------


def test_soft_threshold_closed_form():
    # sign(w) max(|w| - 1, 0): 3 -> 2, -0.5 -> 0, 1 -> 0, -2 -> -1, 0 -> 0
    w = torch.tensor([3.0, -0.5, 1.0, -2.0, 0.0])
    assert torch.equal(soft_threshold(w, 1.0), torch.tensor([2.0, 0.0, 0.0, -1.0, 0.0]))
    assert torch.equal(soft_threshold(w, 0.0), w)
    with pytest.raises(ValueError):
        soft_threshold(w, -1.0)


def test_hard_threshold_keeps_top_k():
    w = torch.tensor([0.1, -3.0, 2.0, 0.5])
    assert torch.equal(hard_threshold(w, 2), torch.tensor([0.0, -3.0, 2.0, 0.0]))
    assert torch.equal(hard_threshold(w, 0), torch.zeros(4))
    assert torch.equal(hard_threshold(w, 10), w)
    # global over several tensors, ties broken by position: exactly k kept
    masks = hard_threshold_masks({"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 5.0])}, 2)
    assert masks["a"].tolist() == [True, False] and masks["b"].tolist() == [False, True]


def test_block_soft_threshold_closed_form():
    # ||(3, 4)|| = 5: lam = 1 scales by 1 - 1/5 = 0.8 -> (2.4, 3.2); lam >= 5 zeroes the group
    w = torch.tensor([3.0, 4.0])
    assert torch.allclose(block_soft_threshold(w, 1.0), torch.tensor([2.4, 3.2]))
    assert torch.equal(block_soft_threshold(w, 5.0), torch.zeros(2))
    assert torch.equal(block_soft_threshold(w, 7.0), torch.zeros(2))
    assert torch.equal(block_soft_threshold(torch.zeros(3), 1.0), torch.zeros(3))


def test_group_prox_on_layer_groups():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0], [0.6, 0.0]]))
        lin.bias.copy_(torch.tensor([4.0, 0.8]))
    groups = output_channel_groups(lin)
    assert [g.name for g in groups] == ["weight[0]", "weight[1]"]
    params = dict(lin.named_parameters())
    # group 0 = (3, 0, 4): norm 5 -> scale 1 - 2/5 = 0.6; group 1 = (0.6, 0, 0.8): norm 1 -> 0
    assert group_norm(params, groups[0]) == pytest.approx(5.0)
    zeroed = apply_block_soft_threshold(params, groups, 2.0)
    assert zeroed == 1
    assert torch.allclose(lin.weight, torch.tensor([[1.8, 0.0], [0.0, 0.0]]))
    assert torch.allclose(lin.bias, torch.tensor([2.4, 0.0]))
    # an arbitrary group spec: a column block (an input "connection") across the weight
    col = Group("in0", (GroupSlice("weight", 1, 0, 1),))
    apply_block_soft_threshold(params, [col], 0.8)  # column (1.8, 0) -> (1.0, 0)
    assert lin.weight[0, 0].item() == pytest.approx(1.0)


def test_proximal_training_methods_sparsify(mlp, digits):
    tc = TrainConfig(epochs=1, optimizer="sgd", momentum=0.0, lr=0.05)
    iht = run(proximal_training(mlp, digits, ProxConfig("iht", density=0.1, train=tc)))
    assert iht.masks.kept() == kept_count(0.1, iht.masks.total())
    l1 = run(proximal_training(mlp, digits, ProxConfig("l1", lam=0.5, train=tc)))
    assert l1.masks.density() < 0.9  # soft thresholding produces exact zeros
    gl = run(proximal_training(mlp, digits, ProxConfig("group-lasso", lam=2.0, train=tc)))
    assert gl.zero_groups > 0 and gl.groups == 410
    assert all(torch.equal(a, b) for a, b in zip(mlp.state_dict().values(), load_model("mlp").model.state_dict().values()))


# --- dynamic sparse training -------------------------------------------------------------------


def test_cosine_update_fraction():
    assert update_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert update_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert update_fraction(100, 0.3, 100) == 0.0
    assert update_fraction(25, 0.4, 100) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)))


def test_drop_and_grow_hand_worked():
    w = torch.tensor([0.5, -0.1, 2.0, 0.0, 0.0, 0.0])
    m = torch.tensor([True, True, True, False, False, False])
    g = torch.tensor([9.0, 9.0, 9.0, 0.1, -3.0, 1.0])
    new = drop_and_grow(w, m, 1, "rigl", grad=g)
    # drop the smallest active |w| (index 1), grow the largest inactive |grad| (index 4)
    assert new.tolist() == [True, False, True, False, True, False]
    gen = torch.Generator().manual_seed(0)
    new = drop_and_grow(w, m, 2, "set", generator=gen)
    assert int(new.sum()) == 3 and not new[1] and not new[0] and new[2]


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_keeps_target_density_after_every_update(mlp, digits, method):
    init = reinitialize(mlp, 0)
    config = DSTConfig(method, density=0.1, zeta=0.5, update_every=5, train=TrainConfig(epochs=2, lr=3e-3))
    res = run(dynamic_sparse_training(mlp, digits, config, start_state=init))
    target = kept_counts({n: m for n, m in res.masks.masks.items()}, 0.1, config.distribution)
    assert config.distribution == "erk" and res.masks.metadata["distribution"] == "erk"
    assert len(res.updates) >= 3
    for u in res.updates:
        assert u["kept"] == target  # exactly the same count in every layer after every update
    assert sum(sum(u["moved"].values()) for u in res.updates) > 0  # the mask did move
    assert res.masks.kept() == sum(target.values())
    params = dict(res.model.named_parameters())
    for name, m in res.masks.masks.items():
        assert bool((params[name].detach()[~m] == 0).all())
    assert res.test.accuracy > 0.2  # learns (chance is 0.1) in 2 epochs from scratch at 10%


def test_erk_densities_hand_worked():
    # A 10x10: r = 20/100 = 0.2; B 100x10: r = 110/1000 = 0.11. D = 0.2 keeps 220 of 1100:
    # eps (0.2*100 + 0.11*1000) = 130 eps = 220, eps = 22/13, d_A = 4.4/13, d_B = 2.42/13
    d = erk_densities({"A": (10, 10), "B": (100, 10)}, 0.2)
    assert d["A"] == pytest.approx(4.4 / 13) and d["B"] == pytest.approx(2.42 / 13)
    # a 2x2 layer has r = 1: at D = 0.5 (52 of 104) eps would be 52/24 > 1, so it is made dense
    # (4 kept) and the other 48 go to the 10x10 layer: 20 eps = 48, d = 0.48
    d = erk_densities({"small": (2, 2), "big": (10, 10)}, 0.5)
    assert d == pytest.approx({"small": 1.0, "big": 0.48})
    # conv kernels count their spatial dims: (6, 1, 3, 3) has r = 13/54
    d = erk_densities({"conv": (6, 1, 3, 3), "fc": (10, 100)}, 0.1)
    n_kept = d["conv"] * 54 + d["fc"] * 1000
    assert n_kept == pytest.approx(0.1 * 1054) and d["conv"] / d["fc"] == pytest.approx((13 / 54) / (110 / 1000))
    assert erk_densities({"A": (10, 10), "B": (3, 4)}, 1.0) == pytest.approx({"A": 1.0, "B": 1.0})
    assert erk_densities({"A": (10, 10), "B": (3, 4)}, 0.0) == {"A": 0.0, "B": 0.0}


def test_kept_counts_erk_total_is_exact_and_uniform_floors_per_layer():
    params = {"A": torch.zeros(10, 10), "B": torch.zeros(100, 10)}
    counts = kept_counts(params, 0.2, "erk")  # exact 33.85 and 186.15 -> 34 + 186
    assert counts == {"A": 34, "B": 186} and sum(counts.values()) == 220
    assert kept_counts(params, 0.25, "uniform") == {"A": 25, "B": 250}
    assert kept_counts({"s": torch.zeros(2, 2), "b": torch.zeros(10, 10)}, 0.5, "erk") == {"s": 4, "b": 48}
    masks = random_masks(params, 0.2, torch.Generator().manual_seed(0), "erk")
    assert {n: int(m.sum()) for n, m in masks.masks.items()} == counts
    with pytest.raises(ValueError, match="distribution"):
        kept_counts(params, 0.2, "normal")


def test_erk_start_lets_lenet_learn_where_uniform_stays_at_chance(lenet, digits):
    """At 20% a uniform mask leaves LeNet's first conv ~2 of 9 weights per filter; from the
    initialisation the network stays at chance, ERK keeps that layer dense and it learns."""
    init = reinitialize(lenet, 0)
    acc = {}
    for dist in ("uniform", "erk"):
        tc = TrainConfig(epochs=3, lr=3e-3, device="cpu", evaluate_each_epoch=False)
        res = run(dynamic_sparse_training(lenet, digits, DSTConfig("set", density=0.2, train=tc, distribution=dist),
                                          start_state=init))
        assert res.masks.density() == pytest.approx(0.2, abs=1e-3)
        acc[dist] = res.test.accuracy
    assert acc["erk"] > acc["uniform"] + 0.15, acc


def test_dst_rejects_bad_settings(mlp, digits):
    with pytest.raises(ValueError, match="method"):
        run(dynamic_sparse_training(mlp, digits, DSTConfig("magic")))
    with pytest.raises(ValueError, match="density"):
        run(dynamic_sparse_training(mlp, digits, DSTConfig("set", density=1.5)))
    with pytest.raises(ValueError, match="distribution"):
        run(dynamic_sparse_training(mlp, digits, DSTConfig("set", distribution="normal")))
    masks = random_masks({"w": torch.zeros(10, 10)}, 0.0, torch.Generator())
    assert masks.kept() == 0 and isinstance(masks, MaskSet)


def test_branch_and_connection_groups_from_structure():
    from visualizer.core.training.prox import (
        _ranges,
        branch_groups,
        check_groups,
        default_groups,
    )

    assert _ranges([5, 0, 1, 2]) == [(0, 3), (5, 6)]
    inc = load_model("inception-mini").model
    groups = branch_groups(inc)
    check_groups(inc, groups)
    assert [g.name for g in groups][:4] == ["inc1/branch0", "inc1/branch1", "inc1/branch2", "inc1/branch3"]
    # block soft thresholding with lam above a branch's norm removes exactly that whole branch
    params = dict(inc.named_parameters())
    norms = [group_norm(params, g) for g in groups]
    smallest = min(range(len(groups)), key=norms.__getitem__)
    lam = (sorted(norms)[0] + sorted(norms)[1]) / 2
    assert apply_block_soft_threshold(params, groups, lam) == 1
    assert group_norm(params, groups[smallest]) == 0.0
    dense = load_model("densenet-mini").model
    kind, conns = default_groups(dense)
    check_groups(dense, conns)
    assert kind == "connections" and conns[0].name == "stem -> consumers"
    assert all(s.dim == 1 for g in conns for s in g.slices if s.param.endswith("conv.weight"))


def test_channel_cut_after_group_lasso_drops_zero_channels_first():
    """Hand-worked: output channels with norms (0, 3, 1, 2) at density 0.5 keep channels 1 and 3
    (k = floor(0.5 * 4) = 2 channels by ||w_c||_2), and the cut is evaluated under that mask."""
    from visualizer.core.training.prox import prune_channels_by_norm

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Linear(4, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        for row, norm in ((1, 3.0), (2, 1.0), (3, 2.0)):
            model[1].weight[row, 0] = norm
    data = load_dataset("digits")
    cut = run(prune_channels_by_norm(model, data, 0.5, scope="layer"))
    kept_rows = cut.masks["1.weight"].all(dim=1).tolist()
    assert kept_rows == [False, True, False, True]
    assert int(cut.masks["1.weight"].sum()) == 2 * 64 and int(cut.masks["2.weight"].sum()) == 5 * 4
    assert 0.0 <= cut.test.accuracy <= 1.0


def test_group_lasso_then_finetune_keeps_zero_groups_zero():
    """densenet-mini's connection groups (the readers' conv slices and norm scales): at lambda 0.3
    for 20 epochs at least one group reaches exactly zero, the masked fine-tune keeps its conv
    slices zero and recovers the accuracy (measured 1 of 8, 0.797 -> 0.992, dense 0.992)."""
    from visualizer.core.training.prox import connection_groups, group_lasso_then_finetune

    model = load_model("densenet-mini").model
    data = load_dataset("digits")
    groups = connection_groups(model)
    out = run(group_lasso_then_finetune(model, data, lam=0.3, epochs=20, groups=groups))
    assert out.lasso.zero_groups >= 1
    params = {n: p.detach() for n, p in out.model.named_parameters()}
    lasso_params = {n: p.detach() for n, p in out.lasso.model.named_parameters()}
    for g in groups:
        if all(float(lasso_params[s.param].narrow(s.dim, s.start, s.stop - s.start).abs().sum()) == 0 for s in g.slices):
            convs = [s for s in g.slices if s.param.endswith("conv.weight") or s.param == "fc.weight"]
            assert convs and all(float(params[s.param].narrow(s.dim, s.start, s.stop - s.start).abs().sum()) == 0
                                 for s in convs)
    assert out.test.accuracy >= out.dense.accuracy - 0.02
