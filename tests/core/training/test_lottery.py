"""IMP: density (1-alpha)^S within one weight per layer, rewound tickets equal m ⊙ w_tau exactly."""

from __future__ import annotations

import pytest
import torch

from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import kept_count, mask_from_scores
from visualizer.core.tasks import run
from visualizer.core.training.loop import TrainConfig, train

from visualizer.core.training.lottery import (  # isort: skip
    IMPConfig,
    imp_density,
    initial_state,
    iterative_magnitude_pruning,
    oneshot_finetune,
    prune_at_init,
    prune_remaining,
    random_mask_like,
    rewind_state,
)


@pytest.fixture(scope="module")
def init(mlp):
    state, source = initial_state("mlp", mlp)
    assert source == "mlp.init.safetensors"
    return state


FAST = TrainConfig(epochs=1, lr=1e-3, max_steps=6, evaluate_each_epoch=False)


def test_density_law():
    assert imp_density(0.2, 0) == 1.0
    assert imp_density(0.5, 3) == 0.125
    assert imp_density(0.2, 5) == pytest.approx(0.32768)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_imp_density_follows_law_within_one_weight(mlp, scope):
    # repeated rounds of prune_remaining on fixed random weights: the law holds at every round,
    # pruned weights never come back
    g = torch.Generator().manual_seed(1)
    weights = {n: torch.randn(p.shape, generator=g) for n, p in dict(mlp.named_parameters()).items() if n.endswith("weight")}
    masks = MaskSet.dense(weights)
    alpha = 0.3
    for s in range(1, 8):
        new = prune_remaining(weights, masks, imp_density(alpha, s), scope)
        assert bool((new.flat() <= masks.flat()).all())  # a subset of the previous mask
        masks = new
        if scope == "layer":
            for layer in masks.layers():
                assert abs(layer.kept - (1 - alpha) ** s * layer.total) < 1.0
        else:
            assert abs(masks.kept() - (1 - alpha) ** s * masks.total()) < 1.0


def test_imp_rewinding_ticket_equals_mask_times_w_tau(mlp, digits, init):
    tau = 4
    config = IMPConfig(rounds=3, rate=0.5, rewind=tau, scope="layer", train=FAST)
    rows = []
    res = run(iterative_magnitude_pruning(mlp, digits, init, config), lambda s: rows.append(s.partial) if s.partial and "round" in s.partial else None)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert [r["round"] for r in res.rows] == [0, 1, 2, 3]
    assert rows[0]["density"] == 1.0
    # w_tau is the dense run's weights after exactly tau steps from w_0
    direct = run(train(mlp, digits, None, TrainConfig(epochs=1, lr=1e-3, max_steps=tau, evaluate_each_epoch=False), start_state=init))
    assert all(torch.equal(direct.model.state_dict()[k].cpu(), res.w_tau[k]) for k in res.w_tau)
    assert not torch.equal(res.w_tau["fc1.weight"], init["fc1.weight"])
    for r in range(1, 4):
        masks = res.masks[r]
        expected = rewind_state(res.w_tau, masks)
        ticket = res.tickets[r]
        assert all(torch.equal(ticket[k], expected[k]) for k in expected)  # exactly m ⊙ w_tau
        for name, m in masks.masks.items():
            assert torch.equal(ticket[name], res.w_tau[name] * m)
        for layer in masks.layers():
            assert abs(layer.kept - 0.5**r * layer.total) < 1.0
        assert bool((masks.flat() <= res.masks[r - 1].flat()).all())


def test_imp_tau_zero_rewinds_to_init_and_controls(mlp, digits, init):
    original = {k: v.clone() for k, v in mlp.state_dict().items()}
    config = IMPConfig(rounds=1, rate=0.8, rewind=0, controls=("reinit", "random-mask"), train=FAST)
    res = run(iterative_magnitude_pruning(mlp, digits, init, config))
    assert all(torch.equal(res.w_tau[k], init[k]) for k in init)
    assert all(torch.equal(res.tickets[1][k], rewind_state(init, res.masks[1])[k]) for k in init)
    row = res.rows[1]
    assert {"reinit_accuracy", "random-mask_accuracy", "accuracy"} <= set(row)
    kinds = {r["kind"] for r in res.curve_rows()}
    assert kinds == {"ticket", "reinit", "random-mask"}
    assert all(torch.equal(original[k], v) for k, v in mlp.state_dict().items())  # caller's model untouched
    with pytest.raises(ValueError, match="control"):
        run(iterative_magnitude_pruning(mlp, digits, init, IMPConfig(controls=("nope",))))
    with pytest.raises(ValueError, match="rewind"):
        run(iterative_magnitude_pruning(mlp, digits, init, IMPConfig(rewind=10_000, train=FAST)))


def test_imp_cancel_leaves_model_alone(mlp, digits, init):
    original = {k: v.clone() for k, v in mlp.state_dict().items()}
    job = iterative_magnitude_pruning(mlp, digits, init, IMPConfig(rounds=2, rate=0.5, train=FAST))
    for _ in range(10):
        next(job)
    job.close()
    assert all(torch.equal(original[k], v) for k, v in mlp.state_dict().items())


def test_random_mask_like_keeps_layer_counts(mlp):
    masks = prune_remaining(dict(mlp.named_parameters()), MaskSet.for_model(mlp), 0.1, "global")
    rnd = random_mask_like(masks, seed=3)
    assert [lay.kept for lay in rnd.layers()] == [lay.kept for lay in masks.layers()]
    assert rnd.compare(masks)[0]["jaccard"] < 0.5


@pytest.mark.parametrize("criterion", ["snip", "random"])
def test_prune_at_init_trains_from_masked_init(mlp, digits, init, criterion):
    masks, res = run(prune_at_init(mlp, digits, init, 0.2, criterion, config=FAST))
    assert masks.kept() == int(0.2 * masks.total())
    params = dict(res.model.named_parameters())
    assert all(bool((params[n].detach()[~m] == 0).all()) for n, m in masks.masks.items())


def test_oneshot_finetune(mlp, digits):
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    masks, res = run(oneshot_finetune(mlp, digits, 0.1, "magnitude", config=FAST))
    assert masks.kept() == kept_count(0.1, masks.total())
    expected = mask_from_scores({n: p.detach().abs() for n, p in prunable_parameters(mlp).items()}, 0.1)
    assert all(torch.equal(masks[n], expected[n]) for n in expected.masks)  # the trained weights were scored
    assert res.test.accuracy > 0.5
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())  # the caller's model is untouched
    params = dict(res.model.named_parameters())
    assert all(bool((params[n].detach()[~m] == 0).all()) for n, m in masks.masks.items())
    assert res.model is not mlp and any(  # fine-tuned: the kept weights moved
        not torch.equal(params[n].detach().cpu(), before[n]) for n in masks.masks)


def test_rewind_points_keep_w_tau_from_the_shipped_init():
    """rewind_points trains a copy from w_0 and keeps w_tau: tau = 0 is the shipped init exactly,
    later points differ from it, and the caller's model is untouched."""
    from visualizer.core.tasks import run
    from visualizer.core.training.lottery import initial_state, rewind_points

    model = load_model("mlp").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = run(rewind_points(model, "mlp", load_dataset("digits"), [5, 0]))
    assert sorted(out.snapshots) == [0, 5]
    init, _ = initial_state("mlp", model)
    assert all(torch.equal(out.snapshots[0][k], init[k]) for k in init)
    assert any(not torch.equal(out.snapshots[5][k], init[k]) for k in init)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("retrain,criterion", [("finetune", "snip"), ("init", "grasp")])
def test_oneshot_and_prune_at_init_are_the_sweeps_retrain_rows(mlp, digits, init, retrain, criterion):
    """One-shot fine-tuning and pruning at initialisation are the sweep's ``finetune`` and ``init``
    cells: same scores (the workspace's batches), same mask, same training, same accuracy."""
    from visualizer.core.training.experiments import SweepConfig, sweep

    if retrain == "finetune":
        masks, res = run(oneshot_finetune(mlp, digits, 0.2, criterion, config=FAST))
    else:
        masks, res = run(prune_at_init(mlp, digits, init, 0.2, criterion, config=FAST))
    (row,) = run(sweep(mlp, digits, SweepConfig("mlp", (criterion,), (0.2,), retrain=retrain, train=FAST),
                       init_state=init)).rows
    assert row["kept"] == masks.kept() and row["accuracy"] == res.test.accuracy and row["loss"] == res.test.loss
