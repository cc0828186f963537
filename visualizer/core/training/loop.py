"""Masked training (projected gradient descent), label smoothing and distillation.

Training a pruned network is constrained optimisation over the subspace of surviving weights
(docs/theory.md §8, "Training under a mask: projected gradient descent"): with the
projection P_m = diag(m),

    w_{t+1} = P_m (w_t - eta * P_m grad L(w_t)),

so every pruned weight is exactly 0 after every step. Optimisers with state must be projected
too: gradients are masked *before* ``optimizer.step()`` so SGD momentum buffers and Adam's
``exp_avg``/``exp_avg_sq`` receive no signal on pruned coordinates, their state is masked
whenever the mask is (re)installed, and the weights are projected again after each step. A
pruned weight therefore never comes back (also with weight decay, whose term is wd * 0 = 0).

Cancellation and copies: every training job here works on a *copy* of the caller's model
(``copy.deepcopy``) and never modifies the caller's model or MaskSet. Closing the generator at
any yield (the GUI's cancel) just drops the copy, so the caller's model and masks stay exactly
as they were; the trained copy comes back in :class:`TrainResult.model` when the job finishes.
A job yields after every optimiser step, so a cancel takes effect within one training step.

Losses (Szegedy et al. 2016; Hinton et al. 2015; docs/theory.md §15):
- label smoothing with eps: targets q = (1 - eps) * onehot(y) + eps / K, loss = -sum q log p;
- knowledge distillation from a teacher (the dense model) at temperature T with weight a:
  L = (1 - a) * CE(y, p) + a * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))  (Hinton et al.).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from visualizer.core.data.sources import Dataset
from visualizer.core.device import model_device
from visualizer.core.models.outputs import main_logits
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Step, import_unlocked
from visualizer.core.training.evaluate import EvalResult, autocast, evaluate_job
from visualizer.core.workspace import (
    EVAL_BATCH_SIZE,
    evaluation_batches,
    resolve_device,
    streamed,
    training_batches,
)

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. ``seed`` fixes the batch order (and any re-initialisation
    derived from it), so two runs with the same config and starting weights are identical."""

    epochs: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 64
    label_smoothing: float = 0.0
    distill_weight: float = 0.0  # a in L = (1-a) CE + a T^2 KL; 0 turns distillation off
    temperature: float = 4.0
    seed: int = 0
    device: str = "auto"  # resolved by core.workspace.resolve_device
    amp: bool = False  # bf16 autocast of forward passes on CUDA (ignored elsewhere: evaluate.amp_enabled)
    max_steps: int | None = None  # stop after this many optimiser steps (None: all epochs)
    report_every: int = 10  # a partial metrics row every this many steps
    evaluate_each_epoch: bool = True
    eval_batches: int | None = None  # test mini-batches each evaluation reads (None: the whole split)
    eval_batch_size: int = EVAL_BATCH_SIZE  # their size (the window's preview sample: core.workspace.window_evaluation)

    def validate(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.eval_batches is not None and self.eval_batches < 0:
            raise ValueError(f"evaluation batches must be >= 0, got {self.eval_batches}")
        if self.eval_batch_size < 1:
            raise ValueError(f"evaluation batch size must be >= 1, got {self.eval_batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (use {', '.join(OPTIMIZERS)})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distillation weight must be in [0, 1], got {self.distill_weight}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")


def config_evaluation_batches(data: Dataset, config: TrainConfig):
    """The test batches every evaluation under ``config`` reads: its ``eval_batches`` mini-batches
    of ``eval_batch_size`` (:func:`visualizer.core.workspace.evaluation_batches`)."""
    return evaluation_batches(data, config.eval_batches, config.eval_batch_size)


@dataclass
class TrainResult:
    """What a training job returns.

    model: the trained copy (on the training device); masks: the MaskSet it was trained under
    (None for dense training); history: the partial rows yielded along the way; test: final
    evaluation; steps: optimiser steps taken; snapshots: {step: state_dict copy} for the steps
    asked for in ``capture_steps`` (step 0 = the starting weights), used for late rewinding.
    """

    model: nn.Module
    masks: MaskSet | None
    history: list[dict]
    test: EvalResult
    steps: int
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


# --- losses ------------------------------------------------------------------------------------


def smoothed_targets(y: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """q = (1 - eps) * onehot(y) + eps / K (label smoothing, Szegedy et al. 2016)."""
    return (1.0 - eps) * F.one_hot(y, num_classes).float() + eps / num_classes


def distillation_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (T * T)


def training_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    label_smoothing: float = 0.0,
    teacher_logits: torch.Tensor | None = None,
    distill_weight: float = 0.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """(1 - a) * CE_eps(y, softmax(z)) + a * T^2 * KL(teacher_T || student_T); a = 0 without teacher."""
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if teacher_logits is None or distill_weight == 0.0:
        return ce
    kd = distillation_term(logits, teacher_logits, temperature)
    return (1.0 - distill_weight) * ce + distill_weight * kd


# --- the projection ------------------------------------------------------------------------------


class MaskProjector:
    """P_m for one model and mask: projects weights, gradients and optimiser state.

    Masks are held on the model's device in the parameter dtype, in one list, so each projection
    is a single fused ``torch._foreach_mul_`` (this is what keeps a masked step close to a dense one).
    """

    def __init__(self, model: nn.Module, masks: MaskSet) -> None:
        masks.check(model)
        params = dict(model.named_parameters())
        self.names = list(masks.masks)
        self.params = [params[n] for n in self.names]
        self.masks = [masks.masks[n].to(p.device, p.dtype) for n, p in zip(self.names, self.params)]

    def set_mask(self, name: str, mask: torch.Tensor) -> None:
        """Replace one layer's mask (dynamic sparse training)."""
        i = self.names.index(name)
        p = self.params[i]
        self.masks[i] = mask.to(p.device, p.dtype)

    @torch.no_grad()
    def project_weights(self) -> None:
        """w <- m ⊙ w."""
        if self.params:
            torch._foreach_mul_(self.params, self.masks)

    def project_grads(self) -> None:
        """g <- m ⊙ g: the projected gradient P_m ∇L (docs/theory.md §8).

        Runs every step, so it is kept to one foreach call: no ``no_grad`` wrapper (gradients
        from a plain backward do not require grad, so nothing is recorded, and the context
        manager's cost showed in a small model's step) and no per-step pairing unless a gradient
        is missing."""
        grads, masks = [p.grad for p in self.params], self.masks
        if not all(g is not None for g in grads):  # a layer the loss does not reach
            masks = [m for g, m in zip(grads, masks) if g is not None]
            grads = [g for g in grads if g is not None]
        if grads:
            torch._foreach_mul_(grads, masks)

    @torch.no_grad()
    def project_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the optimiser state (momentum, Adam moments) of pruned coordinates."""
        for p, m in zip(self.params, self.masks):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(m)

    def mask_set(self, metadata: dict[str, str] | None = None) -> MaskSet:
        return MaskSet({n: m.detach().bool().cpu() for n, m in zip(self.names, self.masks)}, dict(metadata or {}))


FUSED_DEVICES = ("cpu", "cuda")


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused SGD/Adam kernels take floating-point parameters on one CPU or CUDA device."""
    return (
        bool(params)
        and all(p.is_floating_point() for p in params)
        and len({p.device for p in params}) == 1
        and params[0].device.type in FUSED_DEVICES
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam, on torch's fused kernels where they exist.

    Fused, not foreach: one pass per parameter instead of one per arithmetic op, and it does not
    go through the vectorised sqrt that is slow on exact zeros, which a masked network's
    exp_avg_sq holds at every pruned coordinate (so foreach Adam slowed down as the mask got
    sparser; the numbers are in docs/performance.md). Updates of zero coordinates (zero
    gradient, state and weight) stay exactly 0 either way."""
    import_unlocked("torch._dynamo")  # the first optimiser imports it (seconds, once): not under the step lock
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if _fused_ok(params) else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, **fused
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fused)


# --- the loop ------------------------------------------------------------------------------------


@dataclass
class LoopHooks:
    """Extension points of :func:`fit` used by dynamic sparse training and proximal methods.

    on_dense_grads(step, model, optimizer): after backward, before the gradient is masked (RigL
    reads the dense gradient here). after_step(step, model, optimizer): after the optimiser step
    and the projection (mask updates, proximal operators). Both run with the model on the
    training device; ``step`` counts from 0.
    """

    on_dense_grads: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None
    after_step: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size)) if n else 0


def total_steps(data: Dataset, config: TrainConfig) -> int:
    steps = config.epochs * steps_per_epoch(data.split_size("train"), config.batch_size)
    return steps if config.max_steps is None else min(steps, config.max_steps)


@torch.enable_grad()
def _one_step(
    work: nn.Module,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    config: TrainConfig,
    projector: MaskProjector | None,
    teacher: nn.Module | None,
    hooks: LoopHooks,
    step: int,
) -> torch.Tensor:
    """One projected gradient step; returns the batch loss as a detached tensor on the training
    device (reading it as a float would wait for the GPU every step: :func:`fit` adds the
    losses up on the device and reads the sum per progress tick). Grad mode is set here, per
    call, never held across a yield (grad mode is per thread).

    Only the gradient is projected per step. The weights and the optimiser state are projected
    once when training starts (and by whoever changes the mask, as dynamic sparse training
    does); after that SGD (momentum, dampening, Nesterov, weight decay) and Adam (L2 weight
    decay) compute an update of exactly 0 at every coordinate whose gradient, state and weight
    are 0, so pruned weights stay exactly 0.0 without a second pass over every weight (tested
    after every step in tests/core/training/test_loop.py)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(config.amp, xb.device):
        logits = main_logits(work(xb))
        teacher_logits = None
        if teacher is not None and config.distill_weight > 0:
            with torch.no_grad():
                teacher_logits = main_logits(teacher(xb))
        loss = training_loss(logits.float(), yb, config.label_smoothing,
                             None if teacher_logits is None else teacher_logits.float(),
                             config.distill_weight, config.temperature)
    loss.backward()
    if hooks.on_dense_grads is not None:
        hooks.on_dense_grads(step, work, optimizer)
    if projector is not None:
        projector.project_grads()
    optimizer.step()
    if hooks.after_step is not None:
        hooks.after_step(step, work, optimizer)
    return loss.detach()


def _read_mean(running: torch.Tensor, n: int, step: int) -> float:
    """The mean of the accumulated batch losses, read from the device (one synchronisation)."""
    value = float(running) / n
    if not math.isfinite(value):
        raise ValueError(f"training diverged by step {step} (loss {value}); lower the learning rate")
    return value



def evaluation_steps(model: nn.Module, batches, amp: bool, prefix: str,
                     fraction: float) -> Generator[Step, None, EvalResult]:
    """The evaluation of ``model`` on ``batches`` one batch per step (core.training.evaluate's
    job), reported at the training job's ``fraction``: an end-of-epoch evaluation made as one
    step held the window's job-step lock for seconds, and every other job waited behind it."""
    job = evaluate_job(model, batches, amp=amp)
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        yield Step(prefix + step.stage, fraction)

def fit(
    work: nn.Module,
    data: Dataset,
    config: TrainConfig,
    projector: MaskProjector | None = None,
    teacher: nn.Module | None = None,
    hooks: LoopHooks | None = None,
    capture_steps: Iterable[int] = (),
    stage: str = "train",
    extra: Callable[[], dict] | None = None,
) -> Generator[Step, None, tuple[list[dict], int, dict[int, dict[str, torch.Tensor]]]]:
    """Train ``work`` IN PLACE (callers pass a copy) with projected gradient steps.

    Yields a Step after every optimiser step (partial metrics every ``report_every`` steps and at
    each epoch end) and returns (history, steps taken, snapshots). The batch losses are summed on
    the training device and read only at those ticks, so a GPU never waits for the host between
    steps (a divergence is caught at the next tick). ``extra()`` adds fields to the
    partial rows (e.g. the current density of a dynamic mask).
    """
    config.validate()
    hooks = hooks or LoopHooks()
    device = model_device(work)
    optimizer = make_optimizer(work, config)
    if projector is not None:
        projector.project_weights()
        projector.project_state(optimizer)
    capture = set(int(s) for s in capture_steps)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    if 0 in capture:
        snapshots[0] = _snapshot(work)
    n_total = total_steps(data, config)
    generator = torch.Generator().manual_seed(int(config.seed))
    history: list[dict] = []
    step = 0
    running, running_n = torch.zeros((), device=device), 0
    if n_total == 0:
        return history, 0, snapshots
    teacher = teacher.to(device).eval() if teacher is not None else None
    # an accelerator gets an in-memory training split once, not one host-to-device copy per step;
    # a streamed one (an image folder) arrives batch by batch from pinned memory
    source = data if device.type == "cpu" or streamed(data) else data.to(device)
    for epoch in range(config.epochs):
        work.train()
        for xb, yb in training_batches(source, config.batch_size, generator):
            if step >= n_total:
                break
            loss = _one_step(work, optimizer, xb.to(device), yb.to(device), config, projector, teacher, hooks, step)
            step += 1
            running += loss
            running_n += 1
            if step in capture:
                snapshots[step] = _snapshot(work)
            partial = None
            if step % max(1, config.report_every) == 0:
                partial = {"epoch": epoch + 1, "step": step, "train_loss": _read_mean(running, running_n, step)}
                if extra is not None:
                    partial.update(extra())
            yield Step(f"{stage} epoch {epoch + 1}/{config.epochs}", step / n_total, partial)
        if running_n and config.evaluate_each_epoch:
            train_loss = _read_mean(running, running_n, step)
            ev = yield from evaluation_steps(work, config_evaluation_batches(data, config), config.amp,
                                             f"{stage} epoch {epoch + 1}/{config.epochs}: ", step / n_total)
            row = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "test_loss": ev.loss, "accuracy": ev.accuracy}
            if extra is not None:
                row.update(extra())
            history.append(row)
            running, running_n = torch.zeros((), device=device), 0
            yield Step(f"{stage} epoch {epoch + 1}/{config.epochs}: accuracy {ev.accuracy:.3f}", step / n_total, row)
        if step >= n_total:
            break
    work.eval()
    return history, step, snapshots


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def prepare_copy(model: nn.Module, config: TrainConfig, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A deep copy of ``model`` on the configured device, optionally loaded with ``state``."""
    work = copy.deepcopy(model)
    if state is not None:
        work.load_state_dict({k: v.clone() for k, v in state.items()})
    return work.to(resolve_device(config.device))


def train(
    model: nn.Module,
    data: Dataset,
    masks: MaskSet | None = None,
    config: TrainConfig | None = None,
    teacher: nn.Module | None = None,
    start_state: dict[str, torch.Tensor] | None = None,
    capture_steps: Iterable[int] = (),
    stage: str = "train",
) -> Generator[Step, None, TrainResult]:
    """Masked (projected-gradient) training of a copy of ``model``; see the module docstring.

    masks: train only the kept weights (None: dense). teacher: a model to distil from (used when
    ``config.distill_weight > 0``; :func:`train_with_distillation` builds it from the dense model).
    start_state: weights to start from instead of the model's (e.g. a rewound init). The caller's
    model and masks are never modified; the trained copy is returned.
    """
    config = config or TrainConfig()
    config.validate()
    if config.distill_weight > 0 and teacher is None:
        raise ValueError("distillation needs a teacher model")
    if masks is not None:
        masks.check(model)
    work = prepare_copy(model, config, start_state)
    if teacher is not None:  # a frozen copy: moving it to the device must not touch the caller's
        teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    projector = MaskProjector(work, masks) if masks is not None else None
    history, steps, snapshots = yield from fit(
        work, data, config, projector, teacher=teacher, capture_steps=capture_steps, stage=stage
    )
    test = yield from evaluation_steps(work, config_evaluation_batches(data, config), config.amp, f"{stage}: ", 1.0)
    yield Step(f"{stage}: accuracy {test.accuracy:.3f}", 1.0, {"final": True, "test_loss": test.loss, "accuracy": test.accuracy})
    return TrainResult(work, masks.copy() if masks is not None else None, history, test, steps, snapshots)


def train_with_distillation(
    model: nn.Module,
    data: Dataset,
    masks: MaskSet,
    config: TrainConfig | None = None,
) -> Generator[Step, None, TrainResult]:
    """Fine-tune the masked network with the dense ``model`` as its teacher.

    Uses ``config.distill_weight`` (0.5 when left at 0) and ``config.temperature``.
    """
    config = config or TrainConfig()
    if config.distill_weight == 0:
        config = replace(config, distill_weight=0.5)
    return (yield from train(model, data, masks, config, teacher=model, stage="distil"))


# --- initialisations -----------------------------------------------------------------------------


# std of the fallback init of a free parameter (one no module's own init covers): the learned
# position embeddings of BERT (Devlin et al. 2019) and ViT (Dosovitskiy et al. 2021), and
# transformer-mini's pos_embedding, are drawn from N(0, 0.02²)
FREE_PARAMETER_STD = 0.02


def _reset_method(module: nn.Module) -> Callable[[], None] | None:
    """A module's own initialiser: ``reset_parameters`` (Linear, Conv, LSTM, Embedding, norms),
    else the private ``_reset_parameters`` of nn.MultiheadAttention (in_proj_weight, in_proj_bias,
    out_proj bias, bias_k/v) and nn.Transformer (Xavier on every matrix of the whole model)."""
    for name in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, name, None)
        if callable(reset):
            return reset
    return None


def _post_order(module: nn.Module) -> Iterable[nn.Module]:
    """Children before their parent: the order constructors run in, so a parent's initialiser
    (nn.Transformer's Xavier pass) overrides its children's as it does when the model is built."""
    for child in module.children():
        yield from _post_order(child)
    yield module


def reinitialize(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A fresh random initialisation of ``model``'s architecture (as a state dict), reproducible
    from ``seed``. The model itself is not changed (a copy is re-initialised).

    Every module's own initialiser runs (:func:`_reset_method`), children before parents, under a
    generator seeded with ``seed``; BatchNorm's also resets its running statistics. Before that
    every parameter is set to NaN, so one that no initialiser touched is found afterwards: such a
    free parameter (an ``nn.Parameter`` owned directly by a module without an initialiser, e.g.
    transformer-mini's ``pos_embedding``) is drawn from N(0, FREE_PARAMETER_STD²). No trained
    parameter value survives; buffers other than normalisation statistics (constants) are kept."""
    clone = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        for p in clone.parameters():
            if p.is_floating_point() or p.is_complex():
                p.fill_(float("nan"))
        for module in _post_order(clone):
            reset = _reset_method(module)
            if reset is not None:
                reset()
        for p in clone.parameters():
            untouched = torch.isnan(p)
            if untouched.any():
                p[untouched] = torch.randn(int(untouched.sum()), dtype=p.dtype) * FREE_PARAMETER_STD
    return {k: v.detach().clone() for k, v in clone.state_dict().items()}

