"""What a model's forward pass returns, reduced to the logits every loss and comparison reads.

Models differ in what ``forward`` returns: a tensor, a named tuple with auxiliary heads
(torchvision's GoogLeNet and Inception v3 in training mode), or an output object with a
``logits`` field (Hugging Face models). Training, distillation and the shrunk-model check all read
the main head through :func:`main_logits`.
"""

from __future__ import annotations

import torch


def main_logits(out) -> torch.Tensor:
    """The main head's logits of a forward pass. torchvision's GoogLeNet and Inception v3 return
    a named tuple in training mode, (logits, aux...); the auxiliary heads are not trained here
    (the pruned network is judged by its main head alone)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}, not logits")
