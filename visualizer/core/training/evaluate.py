"""Evaluate a classifier: mean cross-entropy loss and accuracy over a list of batches.

The one evaluation of the code base: the CLI (``prune --eval``, ``train``), the window, sweeps,
training epochs and sparse training all call :func:`evaluate_job` (or :func:`evaluate`, the same
job run to the end) on batches from :func:`visualizer.core.workspace.evaluation_batches`, so a
criterion at a density reports the same accuracy wherever it is asked for.

With ``masks`` the model is read as m ⊙ w through ``torch.func.functional_call``: the weights
themselves are never changed. A conv net on the CPU is evaluated channels-last
(:func:`inference_layout`), which changes the numbers by float rounding only.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.data.text import logits_of, perplexity, prediction_pairs
from visualizer.core.device import conv_layout, in_layout, model_device, wide_float
from visualizer.core.layers import private_view
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Step, run

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy ``loss`` and ``accuracy`` over ``n`` samples. For token blocks (a
    language model: labels are (batch, tokens)) the loss and accuracy are per predicted token,
    ``tokens`` counts them and :attr:`perplexity` is the metric (docs/theory.md §20)."""

    loss: float
    accuracy: float
    n: int
    tokens: int = 0

    @property
    def perplexity(self) -> float | None:
        """``exp(loss)`` for a language model, None for a classifier."""
        return perplexity(self.loss) if self.tokens else None


class MetricSums:
    """The running sums of the evaluation rule, one batch at a time: the summed cross-entropy
    (float32 per batch into a float64 total where the device has float64; MPS has not) and the
    correct count, kept on the device and read once by :meth:`result`. Token blocks (labels
    (B, L)) count next-token predictions (:func:`prediction_pairs`): the loss and accuracy are
    per predicted token. :func:`evaluate_job` and the sensitivity analysis's levels
    (:func:`visualizer.core.training.sensitivity.unit_levels_job`) both add into it, so a cell of
    the analysis is scored by the same rule as any evaluation."""

    def __init__(self, device: torch.device | str) -> None:
        self.loss = torch.zeros((), dtype=wide_float(device), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.tokens = 0

    def add(self, output: object, y: torch.Tensor) -> None:
        """Add one batch: ``output`` is the model's (logits, or an output holding them)."""
        out = logits_of(output).float()
        out, target = prediction_pairs(out, y)  # token blocks: predict t+1 from <= t
        if y.dim() == 2:
            self.tokens += int(target.numel())
        self.loss += nn.functional.cross_entropy(out, target, reduction="sum")
        self.correct += (out.argmax(1) == target).sum()

    def result(self, n: int) -> EvalResult:
        """The means over ``n`` samples (per predicted token for token blocks)."""
        per = self.tokens or n
        return EvalResult(float(self.loss) / per, int(self.correct) / per, n, self.tokens)


def masked_parameters(model: nn.Module, masks: MaskSet | None) -> dict[str, torch.Tensor]:
    """{name: m ⊙ w} for the masked parameters (for torch.func.functional_call)."""
    if masks is None:
        return {}
    params = dict(model.named_parameters())
    out = {}
    for name, m in masks.masks.items():
        p = params[name]
        out[name] = p.detach() * m.to(p.device, p.dtype)
    return out


class _MaskedView(nn.Module):
    """Runs ``model`` with m ⊙ w through torch.func.functional_call, leaving its weights alone."""

    def __init__(self, model: nn.Module, overrides: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.overrides = overrides
        # mirror the wrapped model's mode: evaluation restores *this* flag on exit, recursively,
        # and a fresh Module is in training mode (which used to flip an eval model to train)
        self.train(model.training)

    def forward(self, x: torch.Tensor):
        return torch.func.functional_call(self.model, self.overrides, (x,), strict=False)


def amp_enabled(amp: bool, device: torch.device | str) -> bool:
    """Mixed precision (bf16 autocast) runs on CUDA only; on CPU and MPS ``--amp`` is a no-op
    (the CLI prints a note). bf16 keeps float32's exponent range, so no loss scaling is needed
    (Kalamkar et al. 2019)."""
    return bool(amp) and torch.device(device).type == "cuda"


def autocast(amp: bool, device: torch.device | str):
    """``torch.autocast`` to bf16 when :func:`amp_enabled`, else a context that does nothing.
    Only forward passes and losses go under it; optimiser steps, HVPs and Lanczos never do."""
    if not amp_enabled(amp, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def evaluate(model: nn.Module, batches: Sequence[Batch], masks: MaskSet | None = None,
             amp: bool = False) -> EvalResult:
    """:func:`evaluate_job` run to the end."""
    return run(evaluate_job(model, batches, masks, amp))


def laid_out(model: nn.Module, overrides: dict[str, torch.Tensor],
             layout: torch.memory_format | None) -> dict[str, torch.Tensor]:
    """``overrides`` (m ⊙ w of the masked weights) with every 4-d weight of ``model`` in
    ``layout``, masked or not; ``overrides`` itself when there is no layout."""
    if layout is None:
        return overrides
    out = {n: in_layout(p.detach(), layout) for n, p in model.named_parameters() if p.dim() == 4}
    out.update({n: in_layout(t, layout) for n, t in overrides.items()})
    return out


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its probed layout


def inference_layout(model: nn.Module, x: torch.Tensor,
                     overrides: dict[str, torch.Tensor]) -> torch.memory_format | None:
    """The memory layout every evaluation of ``model`` runs in: :func:`conv_layout`'s
    (channels-last for a conv net on the CPU, where oneDNN skips reordering each input; see
    docs/performance.md) when a forward pass of the sample ``x`` in it runs and agrees with the
    default layout to float rounding, else None (the default). The probe catches models whose code
    assumes contiguous NCHW tensors, e.g. ``x.view(n, -1)`` after a convolution, which raises on a
    channels-last tensor. It runs once per model object (the answer depends on the model's code,
    not on its weights). One rule: evaluation and the sensitivity analysis both call it."""
    layout = conv_layout(model, x.device)
    if layout is None:
        return None
    if model in _LAYOUTS:
        return _LAYOUTS[model]
    view = private_view(model).eval()  # the flag and the swapped weights stay on this copy
    try:
        with torch.inference_mode():
            ref = logits_of(torch.func.functional_call(view, overrides, (x,), strict=False)).float()
            got = logits_of(torch.func.functional_call(view, laid_out(model, overrides, layout),
                                                       (in_layout(x, layout),), strict=False)).float()
        found = layout if torch.allclose(got, ref, rtol=1e-4, atol=1e-5) else None
    except Exception:  # noqa: BLE001 - a model that cannot run channels-last runs as it is
        found = None
    _LAYOUTS[model] = found
    return found


def evaluate_job(
    model: nn.Module, batches: Sequence[Batch], masks: MaskSet | None = None, amp: bool = False
) -> Generator[Step, None, EvalResult]:
    """(mean cross-entropy, accuracy) of ``model`` (m ⊙ w with ``masks``) over ``batches``, in
    eval mode and without grad, on the model's device.

    Yields after every batch, so a large split (CIFAR-10 on a big model) can be cancelled. The
    model itself is only read: the eval flag, the masked weights and the layout of
    :func:`inference_layout` go on a private view (:func:`private_view`). Grad mode is switched off around each
    forward pass only (it is per thread, never held across a yield). Raises ValueError when the
    batches hold no sample. Loss and correct counts are summed on the device and read once at the
    end (no host round trip per batch); ``amp`` runs the forward passes under bf16 autocast on
    CUDA (:func:`autocast`). A lazy sequence of batches that knows its ``samples`` (a streamed
    split, :class:`visualizer.core.data.streaming.StreamBatches`) is read once, batch by batch,
    never held whole.
    """
    n = getattr(batches, "samples", None)
    if n is None:
        batches = list(batches)
        n = sum(int(y.shape[0]) for _, y in batches)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    device = model_device(model)
    if masks is not None:
        masks.check(model)
    masked = masked_parameters(model, masks)
    sums = MetricSums(device)
    done, view, layout = 0, None, None
    for xb, yb in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if view is None:  # decided on the first batch: a streamed split is read only once
            layout = inference_layout(model, xb[:2], masked)
            # functional_call swaps the parameters of the modules it runs, and eval() flips a
            # flag: both on a private view, never on the model other jobs read
            over = laid_out(model, masked, layout)
            view = (_MaskedView(private_view(model), over) if over
                    else private_view(model) if model.training else model)
            if view.training:
                view.eval()
        with torch.no_grad(), autocast(amp, device):
            sums.add(view(in_layout(xb, layout)), yb)
        done += int(yb.shape[0])
        yield Step(f"evaluating {done}/{n}", done / n)
    return sums.result(n)
