"""Which weights pruning acts on: the pruning policy every mask, criterion and trainer shares.

Matrices and kernels of linear, conv, recurrent and attention layers are prunable; biases,
normalisation scales and positional embeddings stay dense (the usual convention: they are few,
and pruning them hurts accuracy without saving compute).
"""

from __future__ import annotations

import torch
from torch import nn

from visualizer.core.layers import is_conv1d, untie

_PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Bilinear)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights pruning acts on: matrices and kernels of linear (transformers' Conv1D
    included), conv, recurrent and attention layers. Biases, normalisation scales and positional
    embeddings are left dense (the usual convention: they are few and pruning them hurts without
    saving compute). A tied parameter appears once, under its owner's name
    (:func:`visualizer.core.layers.untie`)."""
    out: dict[str, nn.Parameter] = {}
    if isinstance(model, torch.jit.ScriptModule):
        for name, p in model.named_parameters():
            if p.ndim >= 2 and name.rsplit(".", 1)[-1].startswith("weight"):
                out[name] = p
        return out
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, _PRUNABLE_MODULES) or is_conv1d(module):
            if module.weight is not None:
                out[prefix + "weight"] = module.weight
        elif isinstance(module, nn.RNNBase):
            for pname, p in module.named_parameters(recurse=False):
                if pname.startswith("weight_"):
                    out[prefix + pname] = p
        elif isinstance(module, nn.MultiheadAttention):
            for pname in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                p = getattr(module, pname, None)
                if p is not None:
                    out[prefix + pname] = p
    return untie(model, out)
