"""Masked training = projected gradient descent: pruned weights and their optimiser state stay 0."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.tasks import run
from visualizer.core.training.evaluate import evaluate
from visualizer.core.training.loop import (
    LoopHooks,
    MaskProjector,
    TrainConfig,
    distillation_term,
    fit,
    make_optimizer,
    prepare_copy,
    reinitialize,
    smoothed_targets,
    train,
    train_with_distillation,
    training_loss,
)
from visualizer.core.training.prox import hard_threshold_masks
from visualizer.core.workspace import evaluation_batches, resolve_device


def magnitude_masks(model: nn.Module, density: float) -> MaskSet:
    params = prunable_parameters(model)
    total = sum(p.numel() for p in params.values())
    return MaskSet(hard_threshold_masks(dict(params), int(density * total)))


def masked_entries_are_zero(model: nn.Module, masks: MaskSet) -> bool:
    params = dict(model.named_parameters())
    return all(bool((params[n].detach()[~m] == 0.0).all()) for n, m in masks.masks.items())


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-3)])
def test_masked_weights_and_optimizer_state_stay_exactly_zero(mlp, digits, optimizer, lr):
    masks = magnitude_masks(mlp, 0.1)
    config = TrainConfig(epochs=2, lr=lr, optimizer=optimizer, momentum=0.9, weight_decay=1e-4)
    work = prepare_copy(mlp, config)
    before = evaluate(work, evaluation_batches(digits, split="train"), masks).loss
    projector = MaskProjector(work, masks)
    checked = []

    def after_step(step, model, opt):
        # every step: pruned weights are exactly 0.0 and so are momentum / Adam moments
        assert masked_entries_are_zero(model, masks)
        params = dict(model.named_parameters())
        for name, m in masks.masks.items():
            state = opt.state[params[name]]
            keys = ["momentum_buffer"] if optimizer == "sgd" else ["exp_avg", "exp_avg_sq"]
            for k in keys:
                assert bool((state[k][~m] == 0.0).all()), (name, k)
        checked.append(step)

    run(fit(work, digits, config, projector, hooks=LoopHooks(after_step=after_step)))
    assert len(checked) == 2 * math.ceil(digits.x_train.shape[0] / 64)
    assert masked_entries_are_zero(work, masks)
    after = evaluate(work, evaluation_batches(digits, split="train")).loss
    assert after < 0.75 * before, (before, after)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_is_fused_on_cpu_and_matches_the_foreach_update(optimizer):
    """make_optimizer takes torch's fused kernels (cost independent of how many state entries are
    0); their update equals the reference foreach implementation's."""
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    config = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=1e-3)
    fused = make_optimizer(a, config)
    assert fused.defaults.get("fused") is True
    ref_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    extra = {"momentum": config.momentum} if optimizer == "sgd" else {}
    ref = ref_cls(b.parameters(), lr=0.05, weight_decay=1e-3, foreach=True, **extra)
    x = torch.randn(8, 5)
    for _ in range(3):
        for mod, opt in ((a, fused), (b, ref)):
            opt.zero_grad()
            mod(x).square().sum().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_project_state_zeroes_existing_optimizer_state():
    lin = nn.Linear(3, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.ones(4, 3)).sum().backward()
    opt.step()  # momentum buffers are now non-zero everywhere
    m = torch.tensor([[True, False, True], [False, True, False]])
    projector = MaskProjector(lin, MaskSet({"weight": m}))
    projector.project_state(opt)
    buf = opt.state[lin.weight]["momentum_buffer"]
    assert bool((buf[~m] == 0).all()) and bool((buf[m] != 0).all())


def test_train_works_on_a_copy_and_returns_masked_model(mlp, digits):
    masks = magnitude_masks(mlp, 0.3)
    original = {k: v.clone() for k, v in mlp.state_dict().items()}
    res = run(train(mlp, digits, masks, TrainConfig(epochs=1, lr=1e-3)))
    assert all(torch.equal(original[k], v) for k, v in mlp.state_dict().items())
    assert masked_entries_are_zero(res.model, masks)
    assert res.test.accuracy > 0.8  # fine-tuning a magnitude-pruned trained MLP at 30%
    assert res.history and {"epoch", "train_loss", "test_loss", "accuracy"} <= set(res.history[0])


def test_cancel_stops_within_one_step_and_leaves_model_alone(mlp, digits):
    masks = magnitude_masks(mlp, 0.5)
    original = {k: v.clone() for k, v in mlp.state_dict().items()}
    mask_copy = masks.copy()
    steps = []
    config = TrainConfig(epochs=5, lr=1e-3)
    work = prepare_copy(mlp, config)
    job = fit(work, digits, config, MaskProjector(work, masks), hooks=LoopHooks(after_step=lambda s, m, o: steps.append(s)))
    for _ in range(3):
        next(job)
    job.close()
    assert len(steps) == 3  # one optimiser step per yield: closing stops at once
    # the public job never touches the caller's model or masks, even when closed midway
    job = train(mlp, digits, masks, config)
    for _ in range(5):
        next(job)
    job.close()
    assert all(torch.equal(original[k], v) for k, v in mlp.state_dict().items())
    assert all(torch.equal(mask_copy[n], masks[n]) for n in masks)


def test_same_seed_same_result_different_seed_different(mlp, digits):
    masks = magnitude_masks(mlp, 0.3)
    cfg = TrainConfig(epochs=1, lr=1e-3, seed=5)
    a = run(train(mlp, digits, masks, cfg)).model.state_dict()
    b = run(train(mlp, digits, masks, cfg)).model.state_dict()
    c = run(train(mlp, digits, masks, TrainConfig(epochs=1, lr=1e-3, seed=6))).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])


def test_label_smoothing_hand_worked():
    # p = softmax([ln 3, 0]) = [3/4, 1/4]; eps = 0.2, K = 2: q = [0.9, 0.1]
    # loss = -(0.9 ln 0.75 + 0.1 ln 0.25) = 0.25891386 + 0.13862944 = 0.39754330
    logits = torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([0])
    assert torch.allclose(smoothed_targets(y, 2, 0.2), torch.tensor([[0.9, 0.1]]))
    assert training_loss(logits, y, label_smoothing=0.2).item() == pytest.approx(0.39754330, abs=1e-6)
    assert training_loss(logits, y).item() == pytest.approx(0.28768207, abs=1e-6)  # -ln 0.75


def test_distillation_hand_worked():
    s = torch.tensor([[math.log(3.0), 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    # T = 1: KL([.5,.5] || [.75,.25]) = .5 ln(.5/.75) + .5 ln(.5/.25) = 0.14384104
    assert distillation_term(s, t, 1.0).item() == pytest.approx(0.14384104, abs=1e-6)
    # T = 2: p_s = softmax([ln3 / 2, 0]) = [0.6339746, 0.3660254];
    # KL = .5 ln(.5/.6339746) + .5 ln(.5/.3660254) = -0.1187004 + 0.1559527 = 0.0372523,
    # times T^2 = 4: 0.1490091
    assert distillation_term(s, t, 2.0).item() == pytest.approx(0.1490091, abs=1e-6)
    # a = 0.5: 0.5 * CE + 0.5 * KD = 0.5 * 0.28768207 + 0.5 * 0.1490091 = 0.2183456
    total = training_loss(s, torch.tensor([0]), teacher_logits=t, distill_weight=0.5, temperature=2.0)
    assert total.item() == pytest.approx(0.2183456, abs=1e-6)


def test_distillation_and_label_smoothing_train(mlp, digits):
    masks = magnitude_masks(mlp, 0.1)
    before = evaluate(mlp, evaluation_batches(digits), masks)
    res = run(train_with_distillation(mlp, digits, masks, TrainConfig(epochs=2, lr=1e-3, temperature=2.0, label_smoothing=0.1)))
    assert masked_entries_are_zero(res.model, masks)
    assert res.test.loss < before.loss
    with pytest.raises(ValueError, match="teacher"):
        run(train(mlp, digits, masks, TrainConfig(distill_weight=0.5)))


def test_evaluate_with_masks_equals_evaluating_masked_weights(mlp, digits):
    masks = magnitude_masks(mlp, 0.2)
    via_masks = evaluate(mlp, evaluation_batches(digits), masks)
    clone = prepare_copy(mlp, TrainConfig(device="cpu"))
    masks.apply(clone)
    direct = evaluate(clone, evaluation_batches(digits))
    assert via_masks.accuracy == direct.accuracy
    assert via_masks.loss == pytest.approx(direct.loss, rel=1e-6)
    assert evaluate(mlp, evaluation_batches(digits)).accuracy == pytest.approx(0.9805, abs=1e-3)  # manifest accuracy


def test_bad_settings_and_devices():
    with pytest.raises(ValueError, match="learning rate"):
        TrainConfig(lr=-1).validate()
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs").validate()
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")


def test_reinitialize_is_seeded_and_fresh(mlp):
    a, b, c = reinitialize(mlp, 1), reinitialize(mlp, 1), reinitialize(mlp, 2)
    assert torch.equal(a["fc1.weight"], b["fc1.weight"])
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])
    assert not torch.equal(a["fc1.weight"], mlp.state_dict()["fc1.weight"])


@pytest.mark.parametrize("name", ["transformer-mini", "rnn", "resnet-mini", "lenet"])
def test_reinitialize_leaves_no_trained_tensor(name):
    """Every parameter is re-drawn by its module's own init: nn.MultiheadAttention's
    in_proj_weight/in_proj_bias (its _reset_parameters; public reset_parameters alone missed
    them) and transformer-mini's free pos_embedding included. Before, the Lottery Ticket 'reinit'
    control on transformer-mini started from trained attention weights."""
    from visualizer.core.models.loaders import load_model

    model = load_model(name).model
    trained = {k: v.clone() for k, v in model.named_parameters()}
    fresh = reinitialize(model, 3)
    for k, t in trained.items():
        assert torch.isfinite(fresh[k]).all(), k
        assert not torch.equal(fresh[k], t), f"{k} kept its trained value"
        assert not torch.isclose(fresh[k], t).all(), k
    assert all(torch.equal(v, trained[k]) for k, v in model.named_parameters())  # the model is untouched
    if name == "transformer-mini":
        w = fresh["blocks.0.attn.in_proj_weight"]
        bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))  # xavier_uniform_, MHA's own init
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
        assert torch.equal(fresh["blocks.0.attn.in_proj_bias"], torch.zeros_like(w[:, 0]))
        assert 0.015 < float(fresh["pos_embedding"].std()) < 0.025  # N(0, 0.02²), its constructor's init
        assert torch.equal(fresh["pos_embedding"], reinitialize(model, 3)["pos_embedding"])  # seeded


def test_reinitialize_runs_a_parents_init_after_its_childrens():
    """nn.Transformer's own init is a Xavier pass over all its matrices after its layers are
    built: run children first, it must win (a linear layer's default init is narrower)."""
    model = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64)
    fresh = reinitialize(model, 0)
    w = fresh["encoder.layers.0.linear1.weight"]  # 64 x 16
    xavier = math.sqrt(6.0 / (64 + 16))
    assert float(w.abs().max()) > 1.0 / math.sqrt(16)  # beyond nn.Linear's kaiming bound 1/sqrt(fan_in)
    assert float(w.abs().max()) <= xavier


def test_projection_masks_every_gradient_and_skips_layers_without_one():
    """g <- m ⊙ g on each layer with a gradient; a layer the loss does not reach (grad None)
    is left alone instead of failing the step."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False))
    m0 = torch.tensor([[True, False, True], [False, True, False]])
    m1 = torch.tensor([[True, True], [False, True]])
    projector = MaskProjector(model, MaskSet({"0.weight": m0, "1.weight": m1}))
    model[0].weight.grad = torch.arange(1.0, 7.0).reshape(2, 3)
    model[1].weight.grad = torch.full((2, 2), 5.0)
    projector.project_grads()
    assert model[0].weight.grad.tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 0.0]]
    assert model[1].weight.grad.tolist() == [[5.0, 5.0], [0.0, 5.0]]
    model[0].weight.grad = None
    model[1].weight.grad = torch.full((2, 2), 7.0)
    projector.project_grads()
    assert model[0].weight.grad is None and model[1].weight.grad.tolist() == [[7.0, 7.0], [0.0, 7.0]]


def test_models_with_auxiliary_heads_train_on_their_main_logits():
    """torchvision's GoogLeNet returns (logits, aux2, aux1) in training mode: training uses the
    main head's logits (a named tuple's .logits, else the first element) and still learns."""
    from collections import namedtuple

    from visualizer.core.data.sources import Dataset
    from visualizer.core.training.loop import main_logits

    Outputs = namedtuple("Outputs", ["logits", "aux"])

    class WithAux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 3)
            self.aux = nn.Linear(4, 3)

        def forward(self, x):
            return Outputs(self.body(x), self.aux(x)) if self.training else self.body(x)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x[:, :3].argmax(1)
    data = Dataset("toy", x, y, x, y, 3)
    model = WithAux()
    res = run(train(model, data, config=TrainConfig(epochs=30, lr=0.05, batch_size=16, device="cpu")))
    assert res.test.accuracy > 0.8
    t = torch.ones(2, 3)
    assert main_logits(t) is t and main_logits((t, t * 2)) is t and main_logits(Outputs(t, None)) is t
    with pytest.raises(TypeError, match="not logits"):
        main_logits({"a": t})
