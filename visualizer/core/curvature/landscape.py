"""Loss landscapes: 1D interpolations between parameter vectors and 2D slices along random
filter-normalised directions, evaluated on a fixed evaluation set.

- Interpolation (Goodfellow et al. 2015; linear mode connectivity, Frankle et al. 2020):
  θ(α) = (1 - α) θ_A + α θ_B. Uses: init → trained, dense → pruned, ticket → re-initialisation,
  two IMP runs from the same rewind point. The error barrier is
  max_α [E(θ(α)) - ((1 - α) E(θ_A) + α E(θ_B))] over the α in [0, 1] on the grid (E = 1 - accuracy),
  the height of the path's error above the straight line between the endpoint errors; two
  networks are linearly mode connected when it is ~0. (Frankle et al. define instability with the
  mean of the endpoint errors; with α = ½ the two coincide, and the linear form is what the issue
  asks for.) The loss barrier is the same with the loss.
  Float buffers (BatchNorm running statistics) are interpolated like parameters; integer buffers
  (``num_batches_tracked``) are taken from θ_A.
- 2D slices (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"):
  f(α, β) = L(θ + α δ + β η), δ and η Gaussian, filter-normalised: for every parameter with ≥ 2
  dims, each filter (slice along dim 0: a conv output channel, a linear row, an LSTM gate row)
  is rescaled to the norm of the same filter of θ, δ_i ← δ_i ‖θ_i‖ / ‖δ_i‖. Parameters with ≤ 1
  dim (biases, BatchNorm/LayerNorm scales and shifts) get a zero direction, as Li et al. do
  ("ignore biasbn"); buffers are not moved. Restricted to the masked subspace: δ ← δ ⊙ m before
  normalising, θ = m ⊙ w, so every point of the slice has the same zeros as the ticket.
- Evaluation is batched over grid points: ``torch.func.vmap`` over ``functional_call`` with the
  moved parameters stacked along a new leading dimension (chunks of grid points at once); models
  whose ops have no batching rule (e.g. the LSTM) fall back to a loop over points. The model is
  never mutated; it is evaluated in eval mode (flags restored after each call).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from visualizer.core.curvature.operator import EvalSet, eval_mode, masked_point
from visualizer.core.data.text import logits_of, prediction_pairs
from visualizer.core.device import wide_float
from visualizer.core.errors import first_line
from visualizer.core.layers import private_view
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Job, Step

State = dict[str, torch.Tensor]

# Grid points evaluated per vmap call. A call carries chunk x batch samples through the model at
# once; past a few thousand the activations leave the cache and the time per point grows. On lenet
# over the full digits test split (one batch of 359) per-point cost, 2 threads:
# chunk 8: 1.95 ms, 32: 2.16 ms, 64: 3.90 ms, 128: 4.53 ms; loop over points 2.22 ms
# (ad-hoc profiling; bench_landscape.py compares the default with a fixed chunk of 128). By default
# chunk = clamp(CHUNK_SAMPLES // largest batch, 1, DEFAULT_CHUNK): 22 points for 359 samples.
DEFAULT_CHUNK = 128
CHUNK_SAMPLES = 8192


def auto_chunk(evalset: EvalSet, limit: int = DEFAULT_CHUNK) -> int:
    """Grid points per batched call so that points x batch samples stays near CHUNK_SAMPLES."""
    largest = max((int(y.shape[0]) for _, y in evalset.batches), default=1)
    return max(1, min(limit, CHUNK_SAMPLES // max(1, largest)))


@dataclass
class Landscape1D:
    """Loss and accuracy along θ(α) = base + α·direction (interpolation: base θ_A, direction θ_B - θ_A)."""

    alpha: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    kind: str  # 'interpolation' or 'direction'
    error_barrier: float | None = None
    loss_barrier: float | None = None
    method: str = ""


@dataclass
class Landscape2D:
    """loss[i, j] and accuracy[i, j] at θ + alpha[i] δ + beta[j] η."""

    alpha: np.ndarray
    beta: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    method: str = ""
    notes: list[str] = field(default_factory=list)


# --- directions -------------------------------------------------------------------------------


def filter_normalized_direction(
    model: nn.Module,
    point: Mapping[str, torch.Tensor],
    *,
    generator: torch.Generator | None = None,
    mask: MaskSet | None = None,
) -> State:
    """A Gaussian direction over the model's parameters, filter-normalised as in Li et al. (2018).

    For each parameter with ≥ 2 dims: d ~ N(0, I) (⊙ m when masked), then each filter
    d_i ← d_i · ‖θ_i‖ / ‖d_i‖ (filters along dim 0). ≤ 1-dim parameters: zero. Filters whose
    weights are all zero (fully pruned) get a zero direction.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    out: State = {}
    for name, p in model.named_parameters():
        theta = point[name]
        if p.ndim <= 1:
            out[name] = torch.zeros_like(theta)
            continue
        wide = wide_float(theta.device)  # float64 unless the model's device lacks it (MPS)
        d = torch.randn(p.shape, generator=gen, dtype=wide)
        if mask is not None and name in mask.masks:
            d = d * mask.masks[name].to(wide)
        t = theta.detach().to("cpu", wide)
        dn = d.reshape(d.shape[0], -1).norm(dim=1)
        tn = t.reshape(t.shape[0], -1).norm(dim=1)
        scale = torch.where(dn > 0, tn / dn.clamp_min(1e-300), torch.zeros_like(dn))
        d = d * scale.view(-1, *([1] * (d.ndim - 1)))
        out[name] = d.to(theta.device, theta.dtype)
    return out


# --- evaluation ---------------------------------------------------------------------------------


def _host(t: torch.Tensor) -> np.ndarray:
    """A device tensor as a float64 numpy array (cast on the host: MPS has no float64)."""
    return t.cpu().numpy().astype(np.float64)


class _Evaluator:
    """Loss (mean cross entropy) and accuracy at many points base + a_g·d1 + b_g·d2 at once."""

    def __init__(
        self,
        model: nn.Module,
        evalset: EvalSet,
        base: Mapping[str, torch.Tensor],
        directions: list[Mapping[str, torch.Tensor]],
        chunk: int | None = None,
        batched: bool | None = None,
    ) -> None:
        self.model = private_view(model)  # parameters swapped per call: on a private view (core.layers.private_view), never the shown model
        self.base = dict(base)
        self.dev = next(iter(base.values())).device
        self.wide = wide_float(self.dev)  # the sums' precision: float64 unless the device lacks it
        self.evalset = evalset.to(self.dev)
        self.n = evalset.n_predictions
        moving = set()
        for d in directions:
            moving |= {k for k, v in d.items() if v.is_floating_point() and bool(v.any())}
        self.moving = sorted(moving)
        self.dirs = [{k: d.get(k, torch.zeros_like(self.base[k])) for k in self.moving} for d in directions]
        self.fixed = {k: v for k, v in self.base.items() if k not in moving}
        self.chunk = auto_chunk(evalset) if chunk is None else max(1, chunk)
        self.batched = batched  # None: try vmap, fall back to a loop on failure
        self.method = ""

    def _points(self, coefs: torch.Tensor) -> State:
        """Stacked parameters for G points: base + Σ_k coefs[:, k] · d_k (``coefs`` on the
        model's device, from :meth:`__call__`)."""
        out = {}
        for k in self.moving:
            b = self.base[k]
            acc = b.unsqueeze(0).expand(coefs.shape[0], *b.shape).clone()
            for j, d in enumerate(self.dirs):
                c = coefs[:, j].to(dtype=b.dtype).view(-1, *([1] * b.ndim))
                acc = acc + c * d[k]
            out[k] = acc
        return out

    def _stats(self, output, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the evaluation's loss: a transformers output's logits; token blocks predict each next token
        logits, targets = prediction_pairs(logits_of(output), y)
        loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
        correct = (logits.argmax(-1) == targets).sum()
        return loss, correct

    def _eval_batched(self, coefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = self._points(coefs)

        def one(params: State, x: torch.Tensor, y: torch.Tensor):
            logits = functional_call(self.model, {**self.fixed, **params}, (x,))
            return self._stats(logits, y)

        f = vmap(one, in_dims=(0, None, None))
        loss = torch.zeros(coefs.shape[0], dtype=self.wide, device=self.dev)
        correct = torch.zeros(coefs.shape[0], dtype=self.wide, device=self.dev)
        for x, y in self.evalset.batches:
            lb, cb = f(stacked, x, y)
            loss += lb.to(self.wide)
            correct += cb.to(self.wide)
        return loss / self.n, correct / self.n

    def _eval_loop(self, coefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = self._points(coefs)
        loss = torch.zeros(coefs.shape[0], dtype=self.wide, device=self.dev)
        correct = torch.zeros(coefs.shape[0], dtype=self.wide, device=self.dev)
        for g in range(coefs.shape[0]):
            params = {**self.fixed, **{k: v[g] for k, v in stacked.items()}}
            for x, y in self.evalset.batches:
                lb, cb = self._stats(functional_call(self.model, params, (x,)), y)
                loss[g] += lb.to(self.wide)
                correct[g] += cb.to(self.wide)
        return loss / self.n, correct / self.n

    def __call__(self, coefs: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        # the coefficients multiply directions on the model's device: put them there once, in
        # the device's wide precision (host float64 numpy never reaches a device without it)
        coefs = torch.as_tensor(coefs).to(self.dev, self.wide)
        with eval_mode(self.model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not self.moving:
                # Zero directions (identical endpoints): every point is the base point.
                loss, acc = self._eval_loop(coefs[:1])
                self.method = self.method or "loop"
                g = coefs.shape[0]
                return _host(loss).repeat(g), _host(acc).repeat(g)
            if self.batched is not False:
                try:
                    loss, acc = self._eval_batched(coefs)
                    self.batched, self.method = True, "vmap"
                    return _host(loss), _host(acc)
                except (RuntimeError, NotImplementedError) as exc:
                    if self.batched is True:
                        raise
                    self.batched = False
                    self.method = f"loop (vmap unavailable: {first_line(exc, limit=80)})"
            loss, acc = self._eval_loop(coefs)
            self.method = self.method or "loop"
            return _host(loss), _host(acc)

    def run(self, coefs: np.ndarray, label: str) -> Job[tuple[np.ndarray, np.ndarray]]:
        """Evaluate all rows of ``coefs`` in chunks, yielding progress after each chunk."""
        losses, accs = [], []
        total = coefs.shape[0]
        for start in range(0, total, self.chunk):
            lo, ac = self(coefs[start : start + self.chunk])
            losses.append(lo)
            accs.append(ac)
            done = min(total, start + self.chunk)
            yield Step(f"{label} {done}/{total}", done / total, partial=(start, lo, ac))
        return np.concatenate(losses), np.concatenate(accs)


# --- public jobs -------------------------------------------------------------------------------


def _full_state(model: nn.Module, state: Mapping[str, torch.Tensor] | None, mask: MaskSet | None) -> State:
    return masked_point(model, mask, state)


def interpolate(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    evalset: EvalSet,
    *,
    steps: int = 21,
    alphas: np.ndarray | None = None,
    chunk: int | None = None,
) -> Job[Landscape1D]:
    """Loss and accuracy along θ(α) = (1-α) θ_A + α θ_B (state dicts of the model), with the
    error and loss barriers over the α in [0, 1] (module docstring)."""
    if alphas is None:
        if steps < 2:
            raise ValueError("an interpolation needs at least 2 steps")
        alphas = np.linspace(0.0, 1.0, steps)
    alphas = np.asarray(alphas, dtype=np.float64)
    a = _full_state(model, start, None)
    b = _full_state(model, end, None)
    direction = {k: (b[k] - a[k]) if a[k].is_floating_point() else torch.zeros_like(a[k]) for k in a}
    ev = _Evaluator(model, evalset, a, [direction], chunk=chunk)
    coefs = alphas.reshape(-1, 1)  # host (numpy); the evaluator moves each chunk to the device
    loss, acc = yield from ev.run(coefs, "interpolation")
    # Barrier: needs the endpoint values themselves.
    (l0, l1), (a0, a1) = ev(np.array([[0.0], [1.0]]))
    inside = (alphas >= 0) & (alphas <= 1)
    err = 1 - acc
    line_err = (1 - alphas) * (1 - a0) + alphas * (1 - a1)
    line_loss = (1 - alphas) * l0 + alphas * l1
    e_bar = float(np.max(np.r_[0.0, (err - line_err)[inside]]))
    l_bar = float(np.max(np.r_[0.0, (loss - line_loss)[inside]]))
    return Landscape1D(alphas, loss, acc, "interpolation", e_bar, l_bar, ev.method)


def random_directions(
    model: nn.Module,
    point: Mapping[str, torch.Tensor],
    count: int = 2,
    *,
    seed: int = 0,
    mask: MaskSet | None = None,
) -> list[State]:
    gen = torch.Generator().manual_seed(seed)
    return [filter_normalized_direction(model, point, generator=gen, mask=mask) for _ in range(count)]


def slice_1d(
    model: nn.Module,
    evalset: EvalSet,
    *,
    steps: int = 51,
    span: float = 1.0,
    mask: MaskSet | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    direction: Mapping[str, torch.Tensor] | None = None,
    chunk: int | None = None,
) -> Job[Landscape1D]:
    """L(θ + α δ), α in [-span, span], δ filter-normalised (⊙ m when masked), θ = m ⊙ w."""
    if steps < 2:
        raise ValueError("a slice needs at least 2 steps")
    point = _full_state(model, state, mask)
    d = direction if direction is not None else random_directions(model, point, 1, seed=seed, mask=mask)[0]
    ev = _Evaluator(model, evalset, point, [d], chunk=chunk)
    alphas = np.linspace(-span, span, steps)
    loss, acc = yield from ev.run(alphas.reshape(-1, 1), "slice")
    return Landscape1D(alphas, loss, acc, "direction", method=ev.method)


def slice_2d(
    model: nn.Module,
    evalset: EvalSet,
    *,
    steps: int = 11,
    span: float = 1.0,
    mask: MaskSet | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    chunk: int | None = None,
    batched: bool | None = None,
) -> Job[Landscape2D]:
    """L(θ + α δ + β η) on a steps × steps grid over [-span, span]² (Li et al. 2018).

    Partial results: each finished chunk yields (first flat index, losses, accuracies) so a view
    can fill the image row by row.
    """
    if steps < 2:
        raise ValueError("a slice needs at least 2 steps")
    if not math.isfinite(span) or span <= 0:
        raise ValueError("span must be a positive number")
    point = _full_state(model, state, mask)
    dirs = list(directions) if directions is not None else random_directions(model, point, 2, seed=seed, mask=mask)
    ev = _Evaluator(model, evalset, point, dirs, chunk=chunk, batched=batched)
    grid = np.linspace(-span, span, steps)
    aa, bb = np.meshgrid(grid, grid, indexing="ij")
    coefs = np.stack([aa.ravel(), bb.ravel()], 1)
    loss, acc = yield from ev.run(coefs, "slice")
    return Landscape2D(grid, grid.copy(), loss.reshape(steps, steps), acc.reshape(steps, steps), ev.method)
