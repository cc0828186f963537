"""Proximal operators against their closed forms; SET/RigL keep the target density."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import visualizer.core.training.dst as dst
from visualizer.core.data.sources import Dataset, load_dataset
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
    hard_threshold_masks,
    output_channel_groups,
    proximal_training,
    soft_threshold,
)

# --- proximal operators, hand-worked ------------------------------------------------------------


def test_soft_threshold_closed_form():
    # sign(w) max(|w| - 1, 0): 3 -> 2, -0.5 -> 0, 1 -> 0, -2 -> -1, 0 -> 0
    w = torch.tensor([3.0, -0.5, 1.0, -2.0, 0.0])
    assert torch.equal(soft_threshold(w, 1.0), torch.tensor([2.0, 0.0, 0.0, -1.0, 0.0]))
    assert torch.equal(soft_threshold(w, 0.0), w)
    with pytest.raises(ValueError):
        soft_threshold(w, -1.0)


def hard_threshold(w: torch.Tensor, k: int) -> torch.Tensor:
    """H_k(w) = w ⊙ (the mask IHT applies): keep the k largest |w_i|, zero the others."""
    return w * hard_threshold_masks({"w": w}, k)["w"].to(w.device, w.dtype)


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


floats = st.floats(-10, 10, allow_nan=False, width=32)
vectors = st.lists(floats, min_size=1, max_size=12)
lams = st.floats(0, 5, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(v=vectors, lam=lams)
def test_soft_threshold_satisfies_the_l1_prox_optimality_conditions(v, lam):
    """w = argmin 1/2 ||w - v||^2 + lam ||w||_1  <=>  0 in w - v + lam * d|w|: for w_i != 0,
    w_i = v_i - lam sign(w_i); for w_i = 0, |v_i| <= lam."""
    v64 = torch.tensor(v, dtype=torch.float64)
    w = soft_threshold(v64, lam)
    for wi, vi in zip(w.tolist(), v64.tolist()):
        if wi != 0.0:
            assert wi == pytest.approx(vi - lam * math.copysign(1.0, wi), abs=1e-12)
            assert math.copysign(1.0, wi) == math.copysign(1.0, vi)
        else:
            assert abs(vi) <= lam + 1e-12


@settings(max_examples=60, deadline=None)
@given(v=vectors, lam=lams)
def test_block_soft_threshold_satisfies_the_group_prox_optimality_conditions(v, lam):
    """w = argmin 1/2 ||w - v||^2 + lam ||w||_2: w = 0 iff ||v|| <= lam, else w - v + lam w/||w|| = 0."""
    v64 = torch.tensor(v, dtype=torch.float64)
    w = block_soft_threshold(v64, lam)
    norm_v = float(v64.norm())
    if norm_v < lam * (1 - 1e-12):
        assert torch.equal(w, torch.zeros_like(v64))
    elif norm_v <= lam:  # on the boundary two norm routines may differ in the last bit (found: 2e-16)
        assert float(w.abs().max()) <= 1e-12 * max(1.0, norm_v)
    else:
        residual = w - v64 + lam * w / w.norm()
        assert float(residual.abs().max()) <= 1e-9 * max(1.0, norm_v)


@settings(max_examples=40, deadline=None)
@given(v=vectors, k=st.integers(0, 12))
def test_hard_threshold_is_the_l0_projection(v, k):
    """H_k(v) = argmin ||w - v|| s.t. ||w||_0 <= k: keeps v on its support, and the error is the
    sum of the smallest d - k squared entries."""
    v64 = torch.tensor(v, dtype=torch.float64)
    w = hard_threshold(v64, k)
    kept = w != 0
    assert int(kept.sum()) <= k and torch.equal(w[kept], v64[kept])
    err = float(((w - v64) ** 2).sum())
    smallest = sorted(x * x for x in v)[: max(len(v) - k, 0)]
    assert err == pytest.approx(sum(smallest), abs=1e-9)


def test_vectorised_group_prox_equals_the_per_group_closed_form():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.1, 3.0, 6).view(6, 1, 1, 1))
    params = dict(conv.named_parameters())
    expected = {}
    for c in range(6):
        block = torch.cat([conv.weight[c].reshape(-1), conv.bias[c : c + 1]]).detach()
        expected[c] = block_soft_threshold(block, 0.4)
    zeroed = apply_block_soft_threshold(params, output_channel_groups(conv), 0.4)
    for c in range(6):
        got = torch.cat([conv.weight[c].reshape(-1), conv.bias[c : c + 1]]).detach()
        assert torch.allclose(got, expected[c], atol=1e-6)
    assert zeroed == sum(1 for c in range(6) if float(expected[c].abs().max()) == 0.0)


def _tiny_data(n=16, d=6, k=3):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)
    return Dataset("tiny", x, y, x.clone(), y.clone(), k)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


@pytest.mark.parametrize("method", ["l1", "group-lasso", "iht"])
def test_one_proximal_step_is_exactly_prox_of_a_gradient_step(method):
    """One step on one full batch (the mean loss does not depend on the batch order):
    w+ = prox_{eta lam}(w - eta grad L(w)) for the prunable weights; biases take the plain step
    (group lasso: biases belong to their channel's group)."""
    data = _tiny_data()
    torch.manual_seed(0)
    model = TwoLayer()
    eta, lam, density = 0.5, 0.3, 0.4
    tc = TrainConfig(epochs=1, lr=eta, optimizer="sgd", momentum=0.0, batch_size=64, max_steps=1,
                     evaluate_each_epoch=False, device="cpu")
    res = run(proximal_training(model, data, ProxConfig(method, lam=lam, density=density, train=tc)))
    loss = nn.functional.cross_entropy(model(data.x_train), data.y_train)
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    step = {n: (p - eta * grads[n]).detach() for n, p in model.named_parameters()}
    if method == "l1":
        expected = {n: soft_threshold(v, eta * lam) if n.endswith("weight") else v for n, v in step.items()}
    elif method == "iht":
        flat = torch.cat([step["fc1.weight"].reshape(-1), step["fc2.weight"].reshape(-1)])
        # by hand: the k = floor(0.4 * 45) = 18 entries of largest |w| survive, the rest are 0
        # (continuous random weights: no ties)
        k = 18
        kept = torch.zeros_like(flat)
        top = sorted(range(flat.numel()), key=lambda i: -abs(float(flat[i])))[:k]
        kept[top] = flat[top]
        assert int((kept != 0).sum()) == k
        expected = dict(step)
        expected["fc1.weight"] = kept[:30].reshape(5, 6)
        expected["fc2.weight"] = kept[30:].reshape(3, 5)
    else:
        expected = dict(step)
        for layer, rows in (("fc1", 5), ("fc2", 3)):
            for c in range(rows):
                block = torch.cat([step[f"{layer}.weight"][c], step[f"{layer}.bias"][c : c + 1]])
                out = block_soft_threshold(block, eta * lam)
                expected[f"{layer}.weight"][c] = out[:-1]
                expected[f"{layer}.bias"][c] = out[-1]
    got = dict(res.model.named_parameters())
    for n, v in expected.items():
        assert torch.allclose(got[n].detach(), v, atol=1e-6), n
    if method == "l1":
        assert res.masks.kept() < res.masks.total()  # soft thresholding produced exact zeros


def test_dst_regrows_connections_at_exactly_zero(monkeypatch):
    """SET and RigL regrow at 0 (RigL's convention, also the default of its authors' SET code):
    at every update the newly grown entries hold exactly 0.0 and no optimiser state."""
    data = _tiny_data(n=64)
    seen = []
    original = dst.drop_and_grow

    def recording(weight, mask, n, method, grad=None, generator=None):
        new = original(weight, mask, n, method, grad=grad, generator=generator)
        grown = new & ~mask.bool().cpu()
        seen.append((int(grown.sum()), weight.detach().cpu()[grown].clone()))
        return new

    monkeypatch.setattr(dst, "drop_and_grow", recording)
    for method in ("set", "rigl"):
        seen.clear()
        torch.manual_seed(0)
        tc = TrainConfig(epochs=6, lr=1e-2, batch_size=8, evaluate_each_epoch=False, device="cpu")
        res = run(dynamic_sparse_training(TwoLayer(), data, DSTConfig(method, density=0.5, zeta=0.5, update_every=4, train=tc)))
        assert len(res.updates) >= 3 and sum(c for c, _ in seen) > 0
        for _, values in seen:
            assert torch.equal(values, torch.zeros_like(values))
