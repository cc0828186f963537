"""Calibration statistics: the input-feature norms that activation-aware criteria read.

For a layer y = W x, the norm of input feature j over every calibration token (or every conv
patch position) is ``‖X_j‖₂ = sqrt(Σ_t x_{t,j}²)``. Wanda (Sun et al., 2024) scores a weight
``|W_ij|·‖X_j‖₂``; OWL (Yin et al., 2024) counts a layer's outliers on the same product. Both
read the norms from here, so the same calibration sample gives the same numbers everywhere
(docs/theory.md, "Activation-aware criteria").
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from visualizer.core.layers import is_conv1d, private_view
from visualizer.core.tasks import Step


def _columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The layer's input as rows of its weight's input features: (tokens, features)."""
    if isinstance(module, nn.Linear) or is_conv1d(module):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        if module.groups != 1:  # features of one group: the weight's in-dimension is per group
            n, ck, length = cols.shape
            cols = cols.reshape(n, module.groups, ck // module.groups, length).transpose(1, 2)
            return cols.transpose(1, 3).reshape(-1, ck // module.groups)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return None


def _shaped(norms: torch.Tensor, module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """Norms arranged to broadcast against the stored weight (Conv1D stores (in, out))."""
    if is_conv1d(module):
        return norms.reshape(-1, 1)
    return norms.reshape(1, *weight.shape[1:])


class StopForward(Exception):
    """Raised by a forward hook to end a calibration pass once the modules it reads have run."""


def stop_after(module: nn.Module, calls: int, forward: Callable[[nn.Module, object], object]
               ) -> tuple[Callable[[nn.Module, object], object], Callable[[], None]]:
    """A forward that ends a batch once ``module`` has run ``calls`` times in it (what comes
    later cannot change the inputs read so far), and the function that removes the stop."""
    seen = [0]

    def stop(_m, _args, _out):
        seen[0] += 1
        if seen[0] >= calls:
            raise StopForward

    handle = module.register_forward_hook(stop)

    def run_until(model: nn.Module, batch) -> None:
        seen[0] = 0
        try:
            forward(model, batch)
        except StopForward:
            pass

    return run_until, handle.remove


def input_statistics(model: nn.Module, batches: Iterable, weights: Mapping[str, str],
                     statistic: Callable[[torch.Tensor], torch.Tensor],
                     forward: Callable[[nn.Module, object], object] | None = None
                     ) -> Generator[Step, None, dict[str, torch.Tensor]]:
    """``Σ statistic(X)`` over the batches for each weight of ``weights`` (param -> module name),
    X its layer's input as (tokens, features) rows in float32: the one calibration pass that input
    norms (Wanda, OWL) and Gram matrices (SparseGPT) share. Evaluation mode, no gradients; the
    model's own mode and hooks are restored. ``forward(model, batch)`` runs one batch (default:
    ``model(x)`` on the first element of a (x, y) batch). The hooks and the flag are set on a
    private view of ``model`` (core.layers.private_view): other jobs run the model meanwhile.

    The first batch runs the whole forward and records the order the hooked layers run in; every
    later batch stops once the last of them has run as often (:func:`stop_after`): what follows
    (a language model's output head, ~30 % of GPT-2 124M's forward) cannot change what the hooks
    read. This assumes the layers run in the same order for every batch, as a model without
    input-dependent control flow does."""
    model = private_view(model)
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    order: list[str] = []  # the hooked modules in call order, first batch only
    recording = [True]

    def hook_for(param_name: str, module_name: str, module: nn.Module):
        def hook(_m, args):
            if recording[0]:
                order.append(module_name)
            cols = _columns(module, args[0].detach())
            if cols is not None:
                value = statistic(cols.float())
                if param_name in sums:
                    sums[param_name] += value
                else:
                    sums[param_name] = value
        return hook

    hooks = [modules[m].register_forward_pre_hook(hook_for(p, m, modules[m])) for p, m in weights.items()]
    batches = list(batches)
    run = forward or (lambda m, b: m(b[0] if isinstance(b, tuple | list) else b))
    was = model.training
    model.eval()
    release = None
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                run(model, batch)
                if i == 0 and order:
                    recording[0] = False
                    run, release = stop_after(modules[order[-1]], order.count(order[-1]), run)
                yield Step("calibration", (i + 1) / max(len(batches), 1))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
        if release is not None:
            release()
    return sums


def _squares(x: torch.Tensor) -> torch.Tensor:
    """``Σ_t x_{t,j}²`` of (tokens, features) rows: the squares summed by a matrix-vector product
    (one BLAS reduction; ``x.pow(2).sum(0)`` made a second elementwise pass and, on a loaded
    2-core host, a stalled two-thread reduction per hook: docs/performance.md, Wanda)."""
    return torch.ones(x.shape[0], dtype=x.dtype, device=x.device) @ (x * x)


def input_norms(model: nn.Module, batches: Iterable, weights: Mapping[str, str] | None = None,
                forward: Callable[[nn.Module, object], object] | None = None
                ) -> Generator[Step, None, dict[str, torch.Tensor]]:
    """``‖X_j‖₂`` for every linear/conv weight (name -> tensor broadcastable to the weight).

    ``weights`` maps parameter names to their module names (default: every Linear, Conv2d and
    Conv1D ``<module>.weight``); ``forward`` as for :func:`input_statistics`. Squares are summed
    in float32 on the model's device.
    """
    modules = dict(model.named_modules())
    if weights is None:
        weights = {f"{n}.weight" if n else "weight": n for n, m in modules.items()
                   if isinstance(m, nn.Linear | nn.Conv2d) or is_conv1d(m)}
    sums = yield from input_statistics(model, batches, weights, _squares, forward)
    params = dict(model.named_parameters())
    return {p: _shaped(s.sqrt(), modules[weights[p]], params[p]) for p, s in sums.items()}
