"""Curvature of the loss: Hessian-vector products, the masked-subspace operator, Lanczos,
stochastic Lanczos quadrature (SLQ) and Hutchinson's trace.

Theory (docs/theory.md §10, "Curvature of the restricted landscape"): the restricted landscape
L_m(w) = L(w ⊙ m) has gradient P_m ∇L(θ) and Hessian P_m ∇²L(θ) P_m at θ = w ⊙ m, P_m = diag(m).
On the pruned coordinates P_m H P_m is identically zero, so its spectrum there is a block of
trivial zeros; we never form or report those. The operator here is the principal submatrix
H[S, S] over the active (kept) coordinates S, vectors are flat tensors of length |S|, and the
scatter into parameters goes through index tensors. With the same point θ the dense operator is
H over all coordinates of the same parameters, so by Cauchy interlacing
λ_max(H[S,S]) ≤ λ_max(H) and λ_min(H[S,S]) ≥ λ_min(H). The condition number (docs/theory.md §10) is
κ = λ_max / λ_min (meaningful when λ_min > 0; see :func:`summarize`).

Which parameters: by default the operator covers the prunable weights (those a MaskSet masks:
:func:`visualizer.core.models.loaders.prunable_parameters`); with ``include_other=True`` it also covers
every other parameter (biases, norm scales, embeddings) over all its coordinates, for the dense
and the masked operator alike (so the masked one stays a principal submatrix of the dense one).
Parameters outside the operator are held fixed at θ.

The loss is the mean cross entropy over a fixed evaluation set (:class:`EvalSet`: a chosen number
of batches of a split, in fixed order), with the model in eval mode (BatchNorm uses its running
statistics, dropout is off), so L is a deterministic function of θ. The model is never mutated:
everything goes through ``torch.func.functional_call`` over a dict of tensors; only the
train/eval flag is switched for the duration of each call and restored.

Everything long is a job (a generator yielding :class:`~visualizer.core.tasks.Step`).
PyHessian (GPL) was read about, not copied: the algorithms are the textbook ones
(Lanczos 1950; Paige 1971; Golub & Meurant for Gauss quadrature; Ubaru, Chen & Saad 2017 for SLQ;
Hutchinson 1989).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Job, Step, sub

HVP_METHODS = ("auto", "forward-over-reverse", "double-backward")
# Measured by tests/benchmarks/bench_curvature.py --threads 1 on the 2-core machine (lenet, one
# batch of 128): one gradient by torch.autograd.grad 2.63 ms (torch.func.grad 3.42 ms), an HVP by
# double backward 6.60 ms (2.51x the gradient), by forward-over-reverse 11.62 ms (4.42x):
# double backward is the default.
DEFAULT_HVP_METHOD = "double-backward"


# --- evaluation set -----------------------------------------------------------------------------


@dataclass
class EvalSet:
    """A fixed list of (x, y) batches: the loss is the mean over all their samples."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def n_samples(self) -> int:
        return int(sum(int(y.shape[0]) for _, y in self.batches))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> EvalSet:
        out = []
        for x, y in self.batches:
            x = x.to(device)
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            out.append((x, y.to(device)))
        return EvalSet(out)


def eval_batches(
    dataset: Any,
    n_batches: int | None = 1,
    batch_size: int = 128,
    split: str = "test",
) -> EvalSet:
    """The first ``n_batches`` batches of ``split`` in fixed order (None or 0: the whole split)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if n_batches is not None and n_batches < 0:
        raise ValueError(f"number of batches must be >= 0, got {n_batches}")
    x, y = dataset.split(split)
    n = x.shape[0]
    if n == 0:
        raise ValueError(f"the {split} split is empty")
    stop = n if not n_batches else min(n, n_batches * batch_size)
    return EvalSet([(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, stop, batch_size)])


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
    from visualizer.core.models.loaders import prunable_parameters

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
    no double backward). Numerically equivalent; used when the fast kernels refuse a second
    derivative, and from the start for recurrent models (:class:`HessianOperator`)."""
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


class MatrixOperator:
    """An explicit symmetric matrix as an :class:`Operator` (tests, exact references)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError("matrix must be square")
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.hvps = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.hvps += 1
        return self.matrix @ v


def cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y, reduction="sum")


class HessianOperator:
    """v ↦ H[S,S] v for the loss on an :class:`EvalSet` at the point θ.

    ``method``: 'forward-over-reverse' (torch.func.jvp of torch.func.grad) or 'double-backward'
    (autograd.grad of <∇L, t>); 'auto' takes :data:`DEFAULT_HVP_METHOD` and falls back to kernels
    with second derivatives (:func:`second_order_compat`), then to double backward, when an op
    refuses. ``hvps`` and ``grads`` count the products and gradients computed. Double backward
    treats a weight that its gradient does not depend on as an op without a second derivative
    (:class:`NoSecondDerivative`): true for cross entropy, whose softmax couples every logit to
    every weight; a custom ``loss_fn`` that is linear in the logits would trip it.
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
    ) -> None:
        if method not in HVP_METHODS:
            raise ValueError(f"unknown HVP method {method!r}; choose one of {', '.join(HVP_METHODS)}")
        if not evalset.batches:
            raise ValueError("the evaluation set has no batches")
        self.model = model
        ref = point[coords.names[0]]
        self.dtype = dtype or ref.dtype
        self.device = ref.device
        self.coords = coords.to(self.device)
        self.dim = coords.dim
        self.evalset = evalset.to(self.device, self.dtype)
        self.n = evalset.n_samples
        self.loss_fn = loss_fn
        free = set(coords.names)
        cast = {k: (v.to(self.dtype) if v.is_floating_point() else v) for k, v in point.items()}
        self.free = {k: cast[k] for k in coords.names}
        self.fixed = {k: v for k, v in cast.items() if k not in free}
        self.method = DEFAULT_HVP_METHOD if method == "auto" else method
        self.auto = method == "auto"
        # Recurrent layers: the fused kernels have no double backward (cuDNN) or a slow one
        # (oneDNN's LSTM on CPU: an rnn HVP took 30.9 ms with it, 23.8 ms without, ad-hoc profiling;
        # bench_curvature.py --model rnn prints the cost), so start on the unfused kernels.
        self.compat = any(isinstance(m, nn.RNNBase) for m in model.modules())
        self.hvps = 0
        self.grads = 0

    # functional pieces
    def _batch_loss(self, free: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, {**self.fixed, **free}, (x,))
        return self.loss_fn(out, y) / self.n

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
                        first = str(exc).strip().splitlines()[0]
                        raise ValueError(f"an operation of this model has no second derivative: {first}") from exc

    def loss(self) -> float:
        with eval_mode(self.model), torch.no_grad():
            total = sum(self._batch_loss(self.free, x, y) for x, y in self.evalset.batches)
        return float(total)

    def gradient(self) -> torch.Tensor:
        """∇L on S (the projected gradient P_m ∇L(θ) of docs/theory.md §8, active entries only)."""

        def run():
            g = {k: torch.zeros_like(v) for k, v in self.free.items()}
            for x, y in self.evalset.batches:
                gb = grad(self._batch_loss)(self.free, x, y)
                for k in g:
                    g[k] += gb[k]
            return g

        g = self._with_fallback(run)
        self.grads += 1
        return self.coords.gather(g)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H[S,S] v: scatter v into parameter shapes (zeros off S), one HVP, gather on S."""
        if v.shape != (self.dim,):
            raise ValueError(f"vector of shape {tuple(v.shape)}, operator dimension {self.dim}")
        tangent = self.coords.scatter(v.to(self.device, self.dtype))

        def run():
            if self.method == "forward-over-reverse":
                return self._hvp_forward_over_reverse(tangent)
            return self._hvp_double_backward(tangent)

        hv = self._with_fallback(run)
        self.hvps += 1
        return self.coords.gather(hv)

    def _hvp_forward_over_reverse(self, tangent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] | None = None
        for x, y in self.evalset.batches:
            _, hv = jvp(lambda p, x=x, y=y: grad(self._batch_loss)(p, x, y), (self.free,), (tangent,))
            total = hv if total is None else {k: total[k] + hv[k] for k in total}
        assert total is not None
        return total

    def _hvp_double_backward(self, tangent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.free.items()}
        names = list(leaves)
        total = [torch.zeros_like(leaves[k]) for k in names]
        for x, y in self.evalset.batches:
            loss = self._batch_loss(leaves, x, y)
            g = torch.autograd.grad(loss, [leaves[k] for k in names], create_graph=True)
            dot = sum((gi * tangent[k]).sum() for gi, k in zip(g, names))
            hv = torch.autograd.grad(dot, [leaves[k] for k in names], allow_unused=True)
            # Every weight reaches the loss through the softmax, so the gradient of each depends
            # on every weight: a missing path means a backward that is not differentiable.
            dead = [k for k, h in zip(names, hv) if h is None]
            if dead:
                raise NoSecondDerivative(
                    f"the gradient does not depend on {dead[0]} (an op whose backward is "
                    "not differentiable, e.g. an autograd.Function marked once_differentiable)"
                )
            for i, h in enumerate(hv):
                total[i] += h.detach()
        return dict(zip(names, total))

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


# --- Lanczos ---------------------------------------------------------------------------------------


@dataclass
class LanczosResult:
    """Ritz pairs of the extreme ends of the spectrum.

    top: the largest eigenvalues, descending; bottom: the smallest, ascending. ``*_vectors`` are
    (k, dim) flat vectors on S. ``*_errors``: the residual error bounds |λ - θ| used to stop.
    ``exhausted``: the Krylov space is the whole space, so ``ritz_values`` are all eigenvalues.
    """

    top: torch.Tensor
    bottom: torch.Tensor
    top_vectors: torch.Tensor
    bottom_vectors: torch.Tensor
    top_errors: torch.Tensor
    bottom_errors: torch.Tensor
    ritz_values: torch.Tensor
    steps: int
    hvps: int
    converged: bool
    exhausted: bool
    basis_bytes: int


def _tridiagonal(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    return np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)


def _eigh_tridiagonal(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the symmetric tridiagonal T (ascending), by LAPACK's tridiagonal solver.

    Not np.linalg.eigh of the dense T: that goes through threaded OpenBLAS, which on the shared
    2-core machine took 22-124 ms for a 90x90 T against 0.8 ms here (measured while torch's own
    threads were busy), and Lanczos solves T after every step."""
    return scipy.linalg.eigh_tridiagonal(np.ascontiguousarray(alphas), np.ascontiguousarray(betas))


def _error_bounds(theta: np.ndarray, resid: np.ndarray, bound: str) -> np.ndarray:
    """|λ - θ_i| ≤ r_i (any symmetric matrix); with ``bound='gap'`` also ≤ r_i² / δ_i where δ_i is
    the distance from θ_i to the rest of the spectrum, estimated conservatively by the nearest
    other Ritz value minus its own residual (Parlett, The Symmetric Eigenvalue Problem, §11.7)."""
    if bound == "residual" or theta.size < 2:
        return resid
    order = np.argsort(theta)
    t, r = theta[order], resid[order]
    gaps = np.full(t.size, np.inf)
    left = t[1:] - t[:-1] - r[:-1]
    right = t[1:] - t[:-1] - r[1:]
    gaps[1:] = np.minimum(gaps[1:], left)
    gaps[:-1] = np.minimum(gaps[:-1], right)
    with np.errstate(divide="ignore", invalid="ignore"):
        quad = np.where(gaps > 0, r**2 / gaps, np.inf)
    out = np.empty_like(resid)
    out[order] = np.minimum(r, quad)
    return out


def lanczos(
    op: Operator,
    k_top: int = 1,
    k_bottom: int = 0,
    *,
    max_steps: int = 100,
    tol: float = 1e-3,
    bound: str = "gap",
    seed: int = 0,
    v0: torch.Tensor | None = None,
    want_vectors: bool = True,
    check_every: int = 1,
) -> Job[LanczosResult]:
    """Lanczos with full reorthogonalisation for the ``k_top`` largest and ``k_bottom`` smallest
    eigenpairs of a symmetric operator.

    A V_j = V_j T_j + β_j v_{j+1} e_jᵀ; the Ritz pair (θ_i, V_j s_i) has residual
    ‖A x - θ x‖ = |β_j s_{j,i}|. We stop when every wanted pair has an error bound (residual, or
    residual²/gap, :func:`_error_bounds`) below ``tol · max|θ|`` — the residual, not the change of
    the estimate. Each new vector is orthogonalised twice against the whole basis (classical
    Gram-Schmidt twice is enough, Giraud et al. 2005). Vectors stay on the operator's device; the
    tridiagonal coefficients go to the CPU once per check (``check_every`` steps).
    """
    n = op.dim
    if n < 1:
        raise ValueError("empty operator")
    k_top = max(0, min(k_top, n))
    k_bottom = max(0, min(k_bottom, n))
    if k_top + k_bottom == 0:
        raise ValueError("ask for at least one eigenvalue")
    steps_cap = max(1, min(max_steps, n))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dev, dt = op.device, op.dtype
    V = torch.zeros(steps_cap + 1, n, dtype=dt, device=dev)
    q = v0.to(dev, dt).clone() if v0 is not None else torch.randn(n, generator=gen, dtype=dt).to(dev)
    V[0] = q / q.norm()
    alphas = torch.zeros(steps_cap, dtype=dt, device=dev)
    betas = torch.zeros(steps_cap, dtype=dt, device=dev)
    hvps0 = op.hvps
    j = 0
    converged = False
    exhausted = False
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    errors = np.zeros(0)
    for j in range(steps_cap):
        w = op.matvec(V[j])
        alpha = torch.dot(w, V[j])
        alphas[j] = alpha
        w = w - alpha * V[j]
        if j > 0:
            w = w - betas[j - 1] * V[j - 1]
        basis = V[: j + 1]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        beta = w.norm()
        betas[j] = beta
        m = j + 1
        last = m == steps_cap
        if m % check_every == 0 or last or m == n:
            a = alphas[:m].double().cpu().numpy()
            b = betas[:m].double().cpu().numpy()
            theta, S = _eigh_tridiagonal(a, b[:-1])
            resid = np.abs(b[-1] * S[-1, :])
            errors = _error_bounds(theta, resid, bound)
            scale = max(float(np.max(np.abs(theta))), np.finfo(np.float64).tiny)
            want = np.r_[np.arange(m - min(k_top, m), m), np.arange(min(k_bottom, m))]
            beta_f = float(b[-1])
            if m == n:
                exhausted = True
                converged = True
                errors = np.zeros_like(errors)
                break
            if m >= k_top + k_bottom and np.all(errors[want] <= tol * scale):
                converged = True
                break
            if beta_f <= 1e-12 * scale:
                # Invariant subspace: T is exact on it. Continue with a fresh random vector
                # orthogonal to the basis (the off-diagonal entry is 0).
                betas[j] = 0
                r = torch.randn(n, generator=gen, dtype=dt).to(dev)
                for _ in range(2):
                    r = r - basis.T @ (basis @ r)
                V[j + 1] = r / r.norm()
                yield Step(f"lanczos {m}/{steps_cap}", m / steps_cap)
                continue
        if not last:
            V[j + 1] = w / beta
        yield Step(f"lanczos {m}/{steps_cap}", m / steps_cap)
    m = len(theta)
    kt, kb = min(k_top, m), min(k_bottom, m)
    top_idx = np.arange(m - 1, m - 1 - kt, -1)
    bot_idx = np.arange(kb)
    Vm = V[:m]

    def vecs(idx: np.ndarray) -> torch.Tensor:
        if not want_vectors or idx.size == 0:
            return torch.zeros(idx.size, n if want_vectors else 0, dtype=dt, device=dev)
        s = torch.as_tensor(S[:, idx], dtype=dt, device=dev)
        return (Vm.T @ s).T.contiguous()

    tt = torch.as_tensor(theta, dtype=torch.float64)
    return LanczosResult(
        top=tt[top_idx.copy()],
        bottom=tt[bot_idx],
        top_vectors=vecs(top_idx),
        bottom_vectors=vecs(bot_idx),
        top_errors=torch.as_tensor(errors[top_idx.copy()]),
        bottom_errors=torch.as_tensor(errors[bot_idx]),
        ritz_values=tt,
        steps=m,
        hvps=op.hvps - hvps0,
        converged=converged,
        exhausted=exhausted,
        basis_bytes=V.numel() * V.element_size(),
    )


def power_iteration(
    op: Operator,
    *,
    max_iter: int = 1000,
    tol: float = 1e-3,
    seed: int = 0,
    history: list[float] | None = None,
) -> tuple[float, int]:
    """The peer for the benchmark: power iteration on H with the stopping rule PyHessian uses
    (relative change of the Rayleigh quotient below ``tol``; ``tol < 0`` never stops early).
    Returns (estimate, HVPs); ``history`` receives every Rayleigh quotient.
    Converges to the eigenvalue of largest modulus."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(op.dim, generator=gen, dtype=op.dtype).to(op.device)
    v = v / v.norm()
    est = None
    for i in range(max_iter):
        hv = op.matvec(v)
        new = float(torch.dot(hv, v))
        if history is not None:
            history.append(new)
        v = hv / hv.norm()
        if est is not None and abs(new - est) / (abs(est) + 1e-6) < tol:
            return new, i + 1
        est = new
    return float(est), max_iter


# --- SLQ density and Hutchinson trace ----------------------------------------------------------------


@dataclass
class SLQResult:
    """Gauss quadrature of each probe: nodes θ_pj (Ritz values of T_p) and weights τ_pj² (the
    squared first components of T_p's eigenvectors, summing to 1 per probe).

    The spectral measure μ = (1/n) Σ_i δ(λ - λ_i) is estimated by (1/P) Σ_p Σ_j τ_pj² δ(λ - θ_pj):
    for each probe v̂ = v/‖v‖ and f polynomial of degree ≤ 2m-1, Σ_j τ_pj² f(θ_pj) = v̂ᵀ f(H) v̂
    exactly; with Rademacher probes n·E[v̂ᵀ f(H) v̂] = tr f(H).
    """

    nodes: torch.Tensor  # (P, m)
    weights: torch.Tensor  # (P, m)
    dim: int
    hvps: int
    basis_bytes: int

    def moment(self, k: int) -> float:
        """Estimate of (1/n) tr H^k."""
        return float((self.weights * self.nodes**k).sum(1).mean())

    def trace(self) -> float:
        """n · first moment: the SLQ trace estimate (equal to Hutchinson's on the same probes)."""
        return self.dim * self.moment(1)

    def negative(self, zero_tol: float) -> tuple[float, float]:
        """(count, mass) of eigenvalues below -zero_tol: n·μ(λ<-t) and n·∫_{λ<-t} |λ| dμ."""
        neg = self.nodes < -zero_tol
        count = self.dim * float((self.weights * neg).sum(1).mean())
        mass = self.dim * float((self.weights * self.nodes.abs() * neg).sum(1).mean())
        return count, mass


@dataclass
class Density:
    """A spectral density on a grid: values integrate to 1 (trapezoid) over ``grid``."""

    grid: np.ndarray
    values: np.ndarray
    sigma: float


def _lanczos_fixed(op: Operator, v: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos steps from v with full reorthogonalisation: (alphas, betas) of T.
    Stops early (exactly) on an invariant subspace."""
    n = op.dim
    steps = min(steps, n)
    V = torch.zeros(steps, n, dtype=op.dtype, device=op.device)
    V[0] = v / v.norm()
    alphas = torch.zeros(steps, dtype=op.dtype, device=op.device)
    betas = torch.zeros(steps, dtype=op.dtype, device=op.device)
    for j in range(steps):
        w = op.matvec(V[j])
        alphas[j] = torch.dot(w, V[j])
        w = w - alphas[j] * V[j]
        if j > 0:
            w = w - betas[j - 1] * V[j - 1]
        basis = V[: j + 1]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        betas[j] = w.norm()
        if j + 1 < steps:
            V[j + 1] = w / betas[j]
    a = alphas.double().cpu().numpy()
    b = betas.double().cpu().numpy()
    # An invariant subspace (β ≈ 0) ends the Krylov space: the quadrature is exact there.
    scale = max(float(np.max(np.abs(a))), 1e-300)
    small = np.nonzero(b[:-1] <= 1e-12 * scale)[0]
    m = int(small[0]) + 1 if small.size else steps
    return a[:m], b[: m - 1]


def _rademacher(n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1


def slq(
    op: Operator,
    probes: int = 10,
    steps: int = 30,
    *,
    seed: int = 0,
    probe_vectors: torch.Tensor | None = None,
) -> Job[SLQResult]:
    """Stochastic Lanczos quadrature: ``probes`` Rademacher probes, ``steps`` Lanczos steps each.
    ``probe_vectors`` (P, n) replaces the random probes (e.g. the identity's columns, for which
    the estimate of μ is exact once steps ≥ n)."""
    n = op.dim
    if probe_vectors is not None:
        probes = probe_vectors.shape[0]
    if probes < 1 or steps < 1:
        raise ValueError("SLQ needs at least one probe and one Lanczos step")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    m_max = min(steps, n)
    nodes = torch.zeros(probes, m_max, dtype=torch.float64)
    weights = torch.zeros(probes, m_max, dtype=torch.float64)
    hvps0 = op.hvps
    for p in range(probes):
        if probe_vectors is not None:
            v = probe_vectors[p].to(op.device, op.dtype)
        else:
            v = _rademacher(n, gen, op.dtype).to(op.device)
        a, b = _lanczos_fixed(op, v, steps)
        theta, S = _eigh_tridiagonal(a, b)
        k = theta.size
        nodes[p, :k] = torch.from_numpy(theta)
        weights[p, :k] = torch.from_numpy(S[0, :] ** 2)
        yield Step(f"slq probe {p + 1}/{probes}", (p + 1) / probes)
    basis_bytes = m_max * n * torch.empty(0, dtype=op.dtype).element_size()
    return SLQResult(nodes, weights, n, op.hvps - hvps0, basis_bytes)


def spectral_density(
    result: SLQResult,
    *,
    sigma: float | None = None,
    points: int = 1000,
    grid: np.ndarray | None = None,
) -> Density:
    """ρ(t) = (1/P) Σ_p Σ_j τ_pj² N(t; θ_pj, σ²), on a grid reaching 5σ past the extreme nodes.

    Default σ: 1% of the nodes' range. It integrates to 1 and its first moment is the mean node
    (the trace estimate / n), up to the grid's quadrature error.
    """
    nodes = result.nodes.numpy()
    w = result.weights.numpy() / result.nodes.shape[0]
    live = w > 0
    lo, hi = float(nodes[live].min()), float(nodes[live].max())
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-8 * max(abs(lo), abs(hi), 1.0))
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
    t = np.asarray(grid, dtype=np.float64)[:, None]
    dens = np.exp(-0.5 * ((t - nodes[live][None, :]) / sigma) ** 2) @ w[live]
    dens /= sigma * math.sqrt(2 * math.pi)
    return Density(np.asarray(grid, dtype=np.float64), dens, float(sigma))


@dataclass
class TraceEstimate:
    """Hutchinson: tr H ≈ (1/P) Σ_p z_pᵀ H z_p, z Rademacher; stderr = std / √P."""

    estimate: float
    stderr: float
    probes: int
    samples: np.ndarray


def hutchinson(op: Operator, probes: int = 100, *, seed: int = 0) -> Job[TraceEstimate]:
    if probes < 1:
        raise ValueError("Hutchinson needs at least one probe")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    samples = torch.zeros(probes, dtype=op.dtype, device=op.device)
    for p in range(probes):
        z = _rademacher(op.dim, gen, op.dtype).to(op.device)
        samples[p] = torch.dot(z, op.matvec(z))
        yield Step(f"hutchinson {p + 1}/{probes}", (p + 1) / probes)
    s = samples.double().cpu().numpy()
    stderr = float(s.std(ddof=1) / math.sqrt(probes)) if probes > 1 else float("nan")
    return TraceEstimate(float(s.mean()), stderr, probes, s)


# --- summaries ---------------------------------------------------------------------------------------


@dataclass
class Spectrum:
    """What the views and the CLI show about one operator.

    ``condition_number``: the κ = λ_max/λ_min when λ_min > zero_tol; otherwise κ₊ =
    λ_max / (smallest positive eigenvalue), the condition number of the positive part, when that
    eigenvalue is known (all eigenvalues computed, or a computed bottom eigenvalue is positive —
    the bottom-k are the k smallest, so the smallest positive among them is the global one);
    else None (then more than k eigenvalues are ≤ 0: ask for more). Eigenvalues with
    |λ| ≤ zero_tol = 1e-6·|λ|_max count as zero, neither negative nor positive.
    ``negative_count``/``negative_mass`` (Σ_{λ<0} |λ|): exact from the eigenvalues when Lanczos
    exhausted the space, else from the SLQ measure when probes were run
    (``negative_source='slq'``), else a lower bound from the bottom-k (``'bottom-k'``).
    """

    dim: int
    top_eigenvalues: list[float]
    bottom_eigenvalues: list[float]
    top_errors: list[float]
    bottom_errors: list[float]
    lambda_max: float
    lambda_min: float
    condition_number: float | None
    condition_kind: str
    negative_count: float
    negative_mass: float
    negative_source: str
    trace: float | None
    trace_stderr: float | None
    trace_source: str | None
    hvps: int
    lanczos_steps: int
    converged: bool
    loss: float
    density: dict | None = None
    top_vectors: torch.Tensor | None = field(default=None, repr=False)
    parameters: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("top_vectors",)}
        return out


def summarize(
    lz: LanczosResult,
    *,
    dim: int,
    hvps: int,
    loss: float,
    slq_result: SLQResult | None = None,
    density: Density | None = None,
    trace: TraceEstimate | None = None,
    parameters: Sequence[str] = (),
) -> Spectrum:
    top = lz.top.tolist()
    bottom = lz.bottom.tolist()
    allvals = lz.ritz_values.numpy()
    lam_max = float(allvals.max())
    lam_min = float(allvals.min())
    scale = max(abs(lam_max), abs(lam_min))
    zero_tol = 1e-6 * scale
    if lz.exhausted:
        known = allvals
    else:
        known = np.asarray(bottom)
    if lam_min > zero_tol:
        kappa, kind = lam_max / lam_min, "lambda_max/lambda_min"
    else:
        pos = known[known > zero_tol]
        if pos.size and (lz.exhausted or pos.size < len(known) or np.all(known > zero_tol)):
            kappa, kind = lam_max / float(pos.min()), "positive part: lambda_max/min positive"
        else:
            kappa, kind = None, "unknown: more than k eigenvalues <= 0"
    if lz.exhausted:
        neg = allvals[allvals < -zero_tol]
        ncount, nmass, nsrc = float(neg.size), float(np.abs(neg).sum()), "eigenvalues"
    elif slq_result is not None:
        ncount, nmass = slq_result.negative(zero_tol)
        nsrc = "slq"
    else:
        neg = np.asarray(bottom)
        neg = neg[neg < -zero_tol]
        ncount, nmass, nsrc = float(neg.size), float(np.abs(neg).sum()), "bottom-k"
    if trace is not None:
        tr, tr_se, tr_src = trace.estimate, trace.stderr, "hutchinson"
    elif lz.exhausted:
        tr, tr_se, tr_src = float(allvals.sum()), 0.0, "eigenvalues"
    elif slq_result is not None:
        tr, tr_se, tr_src = slq_result.trace(), None, "slq"
    else:
        tr, tr_se, tr_src = None, None, None
    dens = None
    if density is not None:
        dens = {"grid": density.grid.tolist(), "values": density.values.tolist(), "sigma": density.sigma}
        if slq_result is not None:
            dens.update(probes=int(slq_result.nodes.shape[0]), steps=int(slq_result.nodes.shape[1]))
    return Spectrum(
        dim=dim,
        top_eigenvalues=top,
        bottom_eigenvalues=bottom,
        top_errors=lz.top_errors.tolist(),
        bottom_errors=lz.bottom_errors.tolist(),
        lambda_max=lam_max,
        lambda_min=lam_min,
        condition_number=kappa,
        condition_kind=kind,
        negative_count=ncount,
        negative_mass=nmass,
        negative_source=nsrc,
        trace=tr,
        trace_stderr=tr_se,
        trace_source=tr_src,
        hvps=hvps,
        lanczos_steps=lz.steps,
        converged=lz.converged,
        loss=loss,
        density=dens,
        top_vectors=lz.top_vectors,
        parameters=list(parameters),
    )


@dataclass
class SpectrumOptions:
    """Knobs of :func:`operator_spectrum`, shared by the comparisons."""

    top_k: int = 5
    bottom_k: int | None = None  # None: same as top_k
    max_steps: int = 100
    tol: float = 1e-3
    density_probes: int = 0
    density_steps: int = 30
    sigma: float | None = None
    density_points: int = 500
    trace_probes: int = 0
    seed: int = 0


def operator_spectrum(op: HessianOperator | Operator, options: SpectrumOptions | None = None) -> Job[Spectrum]:
    """Lanczos (top-k, bottom-k), then optionally SLQ density and Hutchinson trace."""
    o = options or SpectrumOptions()
    bottom_k = o.top_k if o.bottom_k is None else o.bottom_k
    parts = 1 + (o.density_probes > 0) + (o.trace_probes > 0)
    span = 1.0 / parts
    hv0 = op.hvps
    lz = yield from sub(
        lanczos(op, o.top_k, bottom_k, max_steps=o.max_steps, tol=o.tol, seed=o.seed), 0.0, span, "eigen: "
    )
    at = span
    slq_res = dens = tr = None
    if o.density_probes > 0:
        slq_res = yield from sub(slq(op, o.density_probes, o.density_steps, seed=o.seed + 1), at, at + span, "density: ")
        dens = spectral_density(slq_res, sigma=o.sigma, points=o.density_points)
        at += span
    if o.trace_probes > 0:
        tr = yield from sub(hutchinson(op, o.trace_probes, seed=o.seed + 2), at, at + span, "trace: ")
    loss = op.loss() if isinstance(op, HessianOperator) else float("nan")
    params = op.coords.names if isinstance(op, HessianOperator) else []
    return summarize(
        lz, dim=op.dim, hvps=op.hvps - hv0, loss=loss, slq_result=slq_res, density=dens, trace=tr, parameters=params
    )


def hessian_spectrum(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet | None = None,
    options: SpectrumOptions | None = None,
    *,
    masked: bool = True,
    state: Mapping[str, torch.Tensor] | None = None,
    layer: str | None = None,
    group: Sequence[tuple[str, Sequence[int] | torch.Tensor]] | None = None,
    include_other: bool = False,
    method: str = "auto",
    dtype: torch.dtype | None = None,
) -> Job[Spectrum]:
    """Spectrum of H[S,S] at θ = m ⊙ w (see :func:`hessian_operator`)."""
    op = hessian_operator(
        model, evalset, mask, masked=masked, state=state, layer=layer, group=group,
        include_other=include_other, method=method, dtype=dtype,
    )
    return (yield from operator_spectrum(op, options))


@dataclass
class DenseVsMasked:
    """Both spectra at the same point θ = m ⊙ w; interlacing: masked.λ_max ≤ dense.λ_max."""

    dense: Spectrum
    masked: Spectrum


def dense_vs_masked(
    model: nn.Module,
    evalset: EvalSet,
    mask: MaskSet,
    options: SpectrumOptions | None = None,
    **kw: Any,
) -> Job[DenseVsMasked]:
    """The dense Hessian and its masked principal submatrix, both at θ = m ⊙ w."""
    dense = yield from sub(hessian_spectrum(model, evalset, mask, options, masked=False, **kw), 0.0, 0.5, "dense ")
    masked = yield from sub(hessian_spectrum(model, evalset, mask, options, masked=True, **kw), 0.5, 1.0, "masked ")
    return DenseVsMasked(dense, masked)


@dataclass
class RewindSpectrum:
    label: str
    spectrum: Spectrum


def _labelled(snapshots: Any) -> list[tuple[str, Mapping[str, torch.Tensor]]]:
    if isinstance(snapshots, Mapping) and snapshots and all(isinstance(v, Mapping) for v in snapshots.values()):
        return [(str(k), v) for k, v in snapshots.items()]
    out = []
    for i, s in enumerate(snapshots):
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[1], Mapping):
            out.append((str(s[0]), s[1]))
        elif isinstance(s, Mapping):
            out.append((f"snapshot {i}", s))
        else:
            raise ValueError("snapshots must be state dicts, (label, state dict) pairs or a dict label -> state dict")
    return out


def spectrum_over_rewinds(
    model: nn.Module,
    snapshots: Iterable[Mapping[str, torch.Tensor]] | Mapping[str, Mapping[str, torch.Tensor]],
    mask: MaskSet,
    evalset: EvalSet,
    options: SpectrumOptions | None = None,
    **kw: Any,
) -> Job[list[RewindSpectrum]]:
    """Spectrum of the masked Hessian H^m_τ at each rewind point θ_τ = m ⊙ w_τ (Frankle et al. 2020;
    rewinding to τ* may give a smaller λ_max and κ). ``snapshots``: plain state dicts (labels
    'snapshot i'), (label, state dict) pairs, or a dict label -> state dict, e.g. τ = 0, k1, k2.
    Each finished snapshot is yielded as a partial result."""
    items = _labelled(snapshots)
    if not items:
        raise ValueError("no snapshots given")
    out: list[RewindSpectrum] = []
    for i, (label, state) in enumerate(items):
        spec = yield from sub(
            hessian_spectrum(model, evalset, mask, options, masked=True, state=state, **kw),
            i / len(items), (i + 1) / len(items), f"{label}: ",
        )
        out.append(RewindSpectrum(label, spec))
        yield Step(f"{label} done", (i + 1) / len(items), partial=out[-1])
    return out
