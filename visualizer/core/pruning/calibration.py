"""Calibration statistics: the input-feature norms that activation-aware criteria read.

For a layer y = W x, the norm of input feature j over every calibration token (or every conv
patch position) is ``‖X_j‖₂ = sqrt(Σ_t x_{t,j}²)``. Wanda (Sun et al., 2024) scores a weight
``|W_ij|·‖X_j‖₂``; OWL (Yin et al., 2024) counts a layer's outliers on the same product. Both
read the norms from here, so the same calibration sample gives the same numbers everywhere
(docs/theory.md, "Activation-aware criteria").
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from visualizer.core.layers import is_conv1d
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


def input_norms(model: nn.Module, batches: Iterable, weights: dict[str, str] | None = None,
                forward: Callable[[nn.Module, object], object] | None = None
                ) -> Generator[Step, None, dict[str, torch.Tensor]]:
    """``‖X_j‖₂`` for every linear/conv weight (name -> tensor broadcastable to the weight).

    ``weights`` maps parameter names to their module names (default: every Linear, Conv2d and
    Conv1D ``<module>.weight``). ``forward(model, batch)`` runs one batch (default: ``model(x)``
    on the first element of a (x, y) batch). Squares are summed in float32 on the model's device.
    """
    modules = dict(model.named_modules())
    if weights is None:
        weights = {f"{n}.weight" if n else "weight": n for n, m in modules.items()
                   if isinstance(m, nn.Linear | nn.Conv2d) or is_conv1d(m)}
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def hook_for(param_name: str, module: nn.Module):
        def hook(_m, args):
            cols = _columns(module, args[0].detach())
            if cols is None:
                return
            sq = cols.float().pow(2).sum(0)
            sums[param_name] = sums[param_name] + sq if param_name in sums else sq
        return hook

    for pname, mname in weights.items():
        hooks.append(modules[mname].register_forward_pre_hook(hook_for(pname, modules[mname])))
    batches = list(batches)
    run = forward or (lambda m, b: m(b[0] if isinstance(b, tuple | list) else b))
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                run(model, batch)
                yield Step("calibration", (i + 1) / max(len(batches), 1))
    finally:
        for h in hooks:
            h.remove()
    params = dict(model.named_parameters())
    return {p: _shaped(s.sqrt(), modules[weights[p]], params[p]) for p, s in sums.items()}
