"""The one Hessian-vector-product engine: the evaluation set, the coordinates and point the
operator lives on, and :class:`HessianOperator` (v ↦ H v by double backward or forward-over-reverse).
The curvature code (Lanczos, SLQ, Hutchinson trace: :mod:`.lanczos`; spectra: :mod:`.spectrum`;
landscapes: :mod:`.landscape`) and the second-order pruning criteria (GraSP and OBD in
:mod:`visualizer.core.pruning.criteria`) all take their gradients and HVPs from here.

Theory (Frankle et al. 2020; docs/theory.md §8 and §10, "Curvature of the restricted
landscape"): the restricted landscape L_m(w) = L(w ⊙ m) has gradient P_m ∇L(θ) and Hessian
P_m ∇²L(θ) P_m at θ = w ⊙ m, P_m = diag(m). On the pruned coordinates P_m H P_m is identically
zero, so its spectrum there is a block of trivial zeros; we never form or report those. The
operator here is the principal submatrix H[S, S] over the active (kept) coordinates S, vectors
are flat tensors of length |S|, and the scatter into parameters goes through index tensors. With
the same point θ the dense operator is H over all coordinates of the same parameters, so by
Cauchy interlacing λ_max(H[S,S]) ≤ λ_max(H) and λ_min(H[S,S]) ≥ λ_min(H).

Which parameters: by default the operator covers the prunable weights (those a MaskSet masks:
:func:`visualizer.core.pruning.prunable.prunable_parameters`); with ``include_other=True`` it also covers
every other parameter (biases, norm scales, embeddings) over all its coordinates, for the dense
and the masked operator alike (so the masked one stays a principal submatrix of the dense one).
Parameters outside the operator are held fixed at θ.

The loss is cross entropy over a fixed list of batches (:class:`EvalSet`), with the model in eval
mode (BatchNorm uses its running statistics, dropout is off), so L is a deterministic function of
θ. Two averages: ``average='samples'`` (the curvature views) is the mean over all samples;
``average='batches'`` (the criteria) is the mean of the per-batch means, L = (1/B) Σ_b L_b. The
model is never mutated and ``.grad`` is never written: everything goes through
``torch.func.functional_call`` over detached tensors; only the train/eval flag is switched for
the duration of each call and restored. Products are computed in float32 or float64 (a half or
bfloat16 model is lifted to float32).

Hessian-vector products are Pearlmutter's (1994) R-operator, by reverse-over-reverse (double
backward) or forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from visualizer.core.data.text import logits_of, prediction_count, prediction_pairs
from visualizer.core.device import wide_float
from visualizer.core.errors import first_line
from visualizer.core.layers import private_view
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.tasks import Job, Step

HVP_METHODS = ("auto", "forward-over-reverse", "double-backward")
# double backward is the default: it was the faster HVP in tests/benchmarks/bench_curvature.py
# (the numbers are in docs/performance.md)
DEFAULT_HVP_METHOD = "double-backward"


# --- evaluation set -----------------------------------------------------------------------------


@dataclass
class EvalSet:
    """A fixed list of (x, y) batches: the loss is the mean over all their predictions (one per
    sample; one per next token of a token block, :func:`visualizer.core.data.text.prediction_pairs`)."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def n_samples(self) -> int:
        return int(sum(int(y.shape[0]) for _, y in self.batches))

    @property
    def n_predictions(self) -> int:
        """The loss's denominator: samples, or predicted tokens for token blocks."""
        return sum(prediction_count(y) for _, y in self.batches)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> EvalSet:
        out = []
        for x, y in self.batches:
            x = x.to(device)
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            out.append((x, y.to(device)))
        return EvalSet(out)


# --- coordinates: which entries of which parameters span the operator -----------------------------


@dataclass
class Coordinates:
    """The active coordinates S: for each parameter in the operator, the flat indices kept.

    A vector over S is one flat tensor of length ``dim``: parameter i owns the slice
    ``offsets[i]:offsets[i+1]``; ``index[i]`` maps that slice into ``param.reshape(-1)``
    (None = every coordinate, in order).
    """

    names: list[str]
    shapes: list[torch.Size]
    index: list[torch.Tensor | None]
    offsets: list[int]

    @property
    def dim(self) -> int:
        return self.offsets[-1]

    def sizes(self) -> list[int]:
        return [b - a for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def to(self, device: torch.device | str) -> Coordinates:
        return Coordinates(
            list(self.names),
            list(self.shapes),
            [None if i is None else i.to(device) for i in self.index],
            list(self.offsets),
        )

    def scatter(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full-size tensors, zero off S: the parameter-shaped form of P_m v."""
        out = {}
        for name, shape, idx, a, b in zip(self.names, self.shapes, self.index, self.offsets[:-1], self.offsets[1:]):
            if idx is None:
                out[name] = v[a:b].view(shape)
            else:
                full = v.new_zeros(shape.numel())
                full.index_copy_(0, idx, v[a:b])
                out[name] = full.view(shape)
        return out

    def gather(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The entries on S of full-size tensors, as one flat vector."""
        parts = []
        for name, idx in zip(self.names, self.index):
            t = tensors[name].reshape(-1)
            parts.append(t if idx is None else t.index_select(0, idx))
        return torch.cat(parts) if parts else torch.zeros(0)


def build_coordinates(
    model: nn.Module,
    mask: MaskSet | None = None,
    *,
    layer: str | None = None,
    group: Sequence[tuple[str, Sequence[int] | torch.Tensor]] | None = None,
    include_other: bool = False,
) -> Coordinates:
    """The coordinates of the (masked) operator.

    Default: every coordinate of the prunable weights, restricted to the mask's kept entries when
    a mask is given. ``include_other`` adds all other parameters densely. ``layer`` keeps one
    parameter; ``group`` is a list of (parameter name, flat indices) (intersected with the mask).
    """
    params = dict(model.named_parameters())
    prunable = prunable_parameters(model)
    if mask is not None:
        mask.check(model)
    names = list(prunable)
    if include_other:
        names += [n for n in params if n not in prunable]
    if not names:
        raise ValueError("the model has no parameters to build a Hessian over")

    wanted: dict[str, torch.Tensor | None] = {n: None for n in names}
    if layer is not None:
        if layer not in params:
            raise ValueError(f"no parameter named {layer!r}")
        wanted = {layer: None}
    if group is not None:
        wanted = {}
        for name, idx in group:
            if name not in params:
                raise ValueError(f"group names unknown parameter {name!r}")
            idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
            n = params[name].numel()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValueError(f"group indices out of range for {name} ({n} entries)")
            prev = wanted.get(name)
            wanted[name] = idx if prev is None else torch.cat([prev, idx])

    out_names, shapes, index, offsets = [], [], [], [0]
    for name, idx in wanted.items():
        p = params[name]
        keep = torch.ones(p.numel(), dtype=torch.bool)
        if idx is not None:
            keep = torch.zeros(p.numel(), dtype=torch.bool)
            keep[idx] = True
        if mask is not None and name in mask.masks:
            keep &= mask.masks[name].reshape(-1).cpu()
        k = int(keep.sum())
        if k == 0:
            continue
        out_names.append(name)
        shapes.append(p.shape)
        index.append(None if k == p.numel() else keep.nonzero().reshape(-1))
        offsets.append(offsets[-1] + k)
    if offsets[-1] == 0:
        raise ValueError("no active coordinates: the mask prunes every selected weight (density 0)")
    return Coordinates(out_names, shapes, index, offsets)


# --- the point θ -----------------------------------------------------------------------------------


def masked_point(
    model: nn.Module,
    mask: MaskSet | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """θ = m ⊙ w as a dict of detached copies of every parameter and buffer (docs/theory.md §8).

    ``state``: a state dict to take w from instead of the model (a rewind snapshot).
    """
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    src = own if state is None else state
    missing = [k for k in own if k not in src]
    if missing:
        raise ValueError(f"state dict lacks {len(missing)} entries of the model (e.g. {missing[0]})")
    point = {}
    for k, ref in own.items():
        t = src[k].detach()
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"state dict entry {k} has shape {tuple(t.shape)}, model {tuple(ref.shape)}")
        point[k] = t.to(ref.device).clone()
    if mask is not None:
        mask.check(model)
        for k, m in mask.masks.items():
            point[k].mul_(m.to(point[k].device, point[k].dtype))
    return point


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Switch every module to eval for the block, then restore each module's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, f in flags:
            m.training = f


@contextlib.contextmanager
def second_order_compat():
    """Kernels with full (double / forward-mode) derivatives: the math SDPA kernel instead of the
    fused flash/efficient attention, no oneDNN (mkldnn) fused LSTM and no cuDNN (whose RNN has
    no double backward and refuses backward in eval mode). Numerically equivalent; used when the
    fast kernels refuse a second derivative, and from the start for recurrent models. The one
    such switch: every gradient and HVP of :class:`HessianOperator` (curvature and criteria
    alike) runs under it when needed."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with (
            sdpa_kernel([SDPBackend.MATH]),
            torch.backends.mkldnn.flags(enabled=False),
            torch.backends.cudnn.flags(enabled=False),
        ):
            yield


def _needs_compat(exc: BaseException) -> bool:
    """An op refused a second (double-backward or forward-mode) derivative."""
    text = str(exc)
    return isinstance(exc, NoSecondDerivative) or (isinstance(exc, (NotImplementedError, RuntimeError)) and (
        "derivative" in text
        or "forward AD" in text
        or "not implemented" in text.lower()
        or "differentiate twice" in text
        or "functorch transforms" in text  # an autograd.Function without setup_context (jvp/grad)
    ))


class NoSecondDerivative(RuntimeError):
    """Double backward found no path from the gradient back to the weights: an op's backward is
    not itself differentiable (e.g. an autograd.Function marked once_differentiable), so the HVP
    would silently be 0. Raised as a RuntimeError so :meth:`HessianOperator._with_fallback` tries
    the kernels with second derivatives first."""


# --- the operator ---------------------------------------------------------------------------------


class Operator(Protocol):
    """A symmetric linear map on flat vectors: what Lanczos, SLQ and Hutchinson need."""

    dim: int
    dtype: torch.dtype
    device: torch.device
    hvps: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


def cross_entropy_sum(output: Any, y: torch.Tensor) -> torch.Tensor:
    """Σ cross_entropy over a batch's predictions: the model's logits (a transformers output's
    ``logits``) against ``y``; token blocks predict each next token (the evaluation's loss,
    :func:`visualizer.core.data.text.prediction_pairs`)."""
    logits, targets = prediction_pairs(logits_of(output), y)
    return nn.functional.cross_entropy(logits, targets, reduction="sum")


AVERAGES = ("samples", "batches")


def work_dtype(dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.dtype:
    """The precision of HVPs and Lanczos: float64 stays where ``device`` has it
    (:func:`visualizer.core.device.wide_float`; MPS has none), anything else (float32, half,
    bfloat16, or float64 on a device without it) is computed in float32, where the second
    derivatives are meaningful."""
    return wide_float(device) if dtype == torch.float64 else torch.float32


def rademacher(n: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """z with n i.i.d. entries ±1 (probability 1/2 each), drawn on the CPU from ``generator`` (so a
    seed gives the same probes on every device) and moved to ``device``."""
    z = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8) * 2 - 1
    return z.to(device, dtype)


def _drain(job: Generator[Step, None, Any]) -> Any:
    """Run a job to its end without looking at its steps (a product inside Lanczos)."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


class HessianOperator:
    """v ↦ H[S,S] v for the loss on an :class:`EvalSet` at the point θ.

    ``method``: 'forward-over-reverse' (torch.func.jvp of torch.func.grad) or 'double-backward'
    (autograd.grad of <∇L, t>); 'auto' takes :data:`DEFAULT_HVP_METHOD` and falls back to kernels
    with second derivatives (:func:`second_order_compat`), then to double backward, when an op
    refuses. ``average``: 'samples' (L = mean over all samples) or 'batches' (L = mean of the
    batch means, the criteria's convention). ``hvps`` and ``grads`` count the products and
    gradients computed. A weight the loss does not use at all has zero gradient and zero HVP.
    Double backward treats a used weight that its gradient does not depend on as an op without
    a second derivative (:class:`NoSecondDerivative`): true for cross entropy, whose softmax
    couples every logit to every weight; a custom ``loss_fn`` that is linear in the logits
    would trip it.

    The job forms :meth:`gradient_steps` and :meth:`hvp_steps` work on parameter-shaped dicts and
    yield after every batch (progress, cancellation); :meth:`gradient` and :meth:`matvec` are the
    flat forms on S that Lanczos, SLQ and Hutchinson use.
    """

    def __init__(
        self,
        model: nn.Module,
        evalset: EvalSet,
        coords: Coordinates,
        point: Mapping[str, torch.Tensor],
        *,
        method: str = "auto",
        dtype: torch.dtype | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_sum,
        average: str = "samples",
    ) -> None:
        if method not in HVP_METHODS:
            raise ValueError(f"unknown HVP method {method!r}; choose one of {', '.join(HVP_METHODS)}")
        if average not in AVERAGES:
            raise ValueError(f"unknown average {average!r}; choose one of {', '.join(AVERAGES)}")
        if not evalset.batches:
            raise ValueError("the evaluation set has no batches")
        self.model = private_view(model)  # parameters swapped per call: on a private view (core.layers.private_view), never the shown model
        ref = point[coords.names[0]]
        self.dtype = work_dtype(dtype or ref.dtype, ref.device)
        self.device = ref.device
        self.coords = coords.to(self.device)
        self.dim = coords.dim
        self.evalset = evalset.to(self.device, self.dtype)
        self.n = evalset.n_predictions
        n_batches = len(self.evalset.batches)
        # loss_fn sums over a batch's predictions; the scale turns the sum into the chosen average
        self.scales = [
            1.0 / self.n if average == "samples" else 1.0 / (n_batches * prediction_count(y))
            for _, y in self.evalset.batches
        ]
        self.loss_fn = loss_fn
        free = set(coords.names)
        cast = {k: (v.to(self.dtype) if v.is_floating_point() else v) for k, v in point.items()}
        self.free = {k: cast[k] for k in coords.names}
        self.fixed = {k: v for k, v in cast.items() if k not in free}
        self.method = DEFAULT_HVP_METHOD if method == "auto" else method
        self.auto = method == "auto"
        # Recurrent layers: the fused kernels have no double backward (cuDNN; cuDNN's RNN also
        # refuses backward in eval mode) or a slow one (oneDNN's LSTM on CPU: an rnn HVP took
        # 30.9 ms with it, 23.8 ms without, ad-hoc profiling; bench_curvature.py --model rnn
        # prints the cost), so start on the unfused kernels.
        self.compat = any(isinstance(m, nn.RNNBase) for m in model.modules())
        self.hvps = 0
        self.grads = 0

    # functional pieces
    def _batch_loss(self, free: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        out = functional_call(self.model, {**self.fixed, **free}, (x,))
        return self.loss_fn(out, y) * scale

    def _batches(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        return [(x, y, s) for (x, y), s in zip(self.evalset.batches, self.scales)]

    def _context(self):
        return second_order_compat() if self.compat else contextlib.nullcontext()

    def _with_fallback(self, fn):
        """Run ``fn`` in eval mode with grad on. If an op has no second derivative, switch once to
        kernels that have one (:func:`second_order_compat`), then (under 'auto') to double
        backward; if it still fails, raise a one-line ValueError."""
        with eval_mode(self.model), torch.enable_grad():
            while True:
                try:
                    with self._context():
                        return fn()
                except (NotImplementedError, RuntimeError) as exc:
                    if not _needs_compat(exc):
                        raise
                    if not self.compat:
                        self.compat = True
                    elif self.auto and self.method != "double-backward":
                        self.method = "double-backward"
                    else:
                        raise ValueError("an operation of this model has no second derivative: "
                                         f"{first_line(exc)}") from exc

    def loss(self) -> float:
        with eval_mode(self.model), torch.no_grad(), self._context():
            total = sum(self._batch_loss(self.free, x, y, s) for x, y, s in self._batches())
        return float(total)

    def gradient_steps(self, stage: str = "gradient") -> Job[dict[str, torch.Tensor]]:
        """∇L as parameter-shaped tensors (a job: one Step per batch). Zero for a weight the
        loss does not use."""
        batches = self._batches()
        total = {k: torch.zeros_like(v) for k, v in self.free.items()}
        for b, (x, y, s) in enumerate(batches):
            g = self._with_fallback(lambda x=x, y=y, s=s: self._gradient_batch(x, y, s))
            for k, gk in g.items():
                total[k] += gk
            yield Step(f"{stage} {b + 1}/{len(batches)}", (b + 1) / len(batches))
        self.grads += 1
        return total

    def _gradient_batch(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.free.items()}
        names = list(leaves)
        g = torch.autograd.grad(self._batch_loss(leaves, x, y, scale), [leaves[k] for k in names], allow_unused=True)
        return {k: torch.zeros_like(leaves[k]) if gk is None else gk.detach() for k, gk in zip(names, g)}

    def gradient(self) -> torch.Tensor:
        """∇L on S (the projected gradient P_m ∇L(θ), active entries only)."""
        return self.coords.gather(_drain(self.gradient_steps()))

    def hvp_steps(self, tangent: Mapping[str, torch.Tensor], stage: str = "Hv") -> Job[dict[str, torch.Tensor]]:
        """H t for parameter-shaped ``tangent`` over the operator's parameters (a job: one Step
        per batch): Σ_b H_b t, H_b the Hessian of batch b's share of the loss."""
        t = {k: tangent[k].to(self.device, self.dtype) for k in self.free}
        batches = self._batches()
        total = {k: torch.zeros_like(v) for k, v in self.free.items()}
        for b, (x, y, s) in enumerate(batches):
            hv = self._with_fallback(lambda x=x, y=y, s=s: self._hvp_batch(t, x, y, s))
            for k, hk in hv.items():
                total[k] += hk
            yield Step(f"{stage} {b + 1}/{len(batches)}", (b + 1) / len(batches))
        self.hvps += 1
        return total

    def _hvp_batch(self, tangent: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
        # read inside the fallback loop: 'auto' may switch the method after a refusal
        if self.method == "forward-over-reverse":
            return self._hvp_forward_over_reverse(tangent, x, y, scale)
        return self._hvp_double_backward(tangent, x, y, scale)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H[S,S] v: scatter v into parameter shapes (zeros off S), one HVP, gather on S."""
        if v.shape != (self.dim,):
            raise ValueError(f"vector of shape {tuple(v.shape)}, operator dimension {self.dim}")
        tangent = self.coords.scatter(v.to(self.device, self.dtype))
        return self.coords.gather(_drain(self.hvp_steps(tangent)))

    def _hvp_forward_over_reverse(self, tangent: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                                  scale: float) -> dict[str, torch.Tensor]:
        _, hv = jvp(lambda p: grad(self._batch_loss)(p, x, y, scale), (self.free,), (tangent,))
        return {k: h.detach() for k, h in hv.items()}

    def _hvp_double_backward(self, tangent: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                             scale: float) -> dict[str, torch.Tensor]:
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.free.items()}
        names = list(leaves)
        loss = self._batch_loss(leaves, x, y, scale)
        g = torch.autograd.grad(loss, [leaves[k] for k in names], create_graph=True, allow_unused=True)
        used = [k for k, gk in zip(names, g) if gk is not None]
        dot = sum((gk * tangent[k]).sum() for gk, k in zip(g, names) if gk is not None)
        if not used:  # no weight reaches this loss: H = 0
            return {k: torch.zeros_like(leaves[k]) for k in names}
        if not (isinstance(dot, torch.Tensor) and dot.requires_grad):
            raise NoSecondDerivative(
                "the gradient does not depend on the weights (an op whose backward is not "
                "differentiable, e.g. an autograd.Function marked once_differentiable)"
            )
        hv = torch.autograd.grad(dot, [leaves[k] for k in used], allow_unused=True)
        # Every used weight reaches the loss through the softmax, so its gradient depends on
        # every used weight: a missing path means a backward that is not differentiable.
        dead = [k for k, h in zip(used, hv) if h is None]
        if dead:
            raise NoSecondDerivative(
                f"the gradient does not depend on {dead[0]} (an op whose backward is "
                "not differentiable, e.g. an autograd.Function marked once_differentiable)"
            )
        out = {k: torch.zeros_like(leaves[k]) for k in names}
        out.update({k: h.detach() for k, h in zip(used, hv)})
        return out

    def to_dense(self) -> torch.Tensor:
        """The explicit matrix H[S,S] by ``dim`` HVPs (small operators only: tests)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], 1)

    def scatter(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A vector on S as full-size parameter tensors (e.g. an eigenvector to draw as a heatmap)."""
        return {k: t.detach().clone() for k, t in self.coords.scatter(v).items()}


def hessian_operator(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet | None = None,
    *,
    masked: bool = True,
    state: Mapping[str, torch.Tensor] | None = None,
    layer: str | None = None,
    group: Sequence[tuple[str, Sequence[int] | torch.Tensor]] | None = None,
    include_other: bool = False,
    method: str = "auto",
    dtype: torch.dtype | None = None,
) -> HessianOperator:
    """The Hessian operator at θ = m ⊙ w (w from ``state`` or the model).

    ``masked=True``: the submatrix over the mask's kept coordinates; ``masked=False``: the dense
    operator over all coordinates of the same parameters, at the same point θ.
    """
    point = masked_point(model, mask, state)
    coords = build_coordinates(
        model, mask if masked else None, layer=layer, group=group, include_other=include_other
    )
    return HessianOperator(model, evalset, coords, point, method=method, dtype=dtype)


def dense_coordinates(params: Mapping[str, torch.Tensor]) -> Coordinates:
    """Every coordinate of the given parameters, in their order (no mask)."""
    names, shapes, offsets = [], [], [0]
    for name, p in params.items():
        names.append(name)
        shapes.append(p.shape)
        offsets.append(offsets[-1] + p.numel())
    if not names:
        raise ValueError("no parameters to build a Hessian over")
    return Coordinates(names, shapes, [None] * len(names), offsets)


def criterion_operator(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> HessianOperator:
    """The operator of the saliency criteria (:mod:`visualizer.core.pruning.criteria`): gradient
    and Hessian of L = (1/B) Σ_b cross_entropy_b (each batch's mean) with respect to ``params``
    only, everything else held at the model's current values, at the model's own weights (read,
    not copied), in eval mode."""
    point = {k: v.detach() for k, v in model.named_parameters()}
    point.update({k: v.detach() for k, v in model.named_buffers()})
    return HessianOperator(model, EvalSet(list(batches)), dense_coordinates(params), point, average="batches")
