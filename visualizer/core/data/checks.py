"""Checks a dataset raises and a model must pass before it meets a dataset.

:class:`DataError` is every data failure's one-line message (a missing folder, an unreadable
image, a factory that returns the wrong thing). :func:`check_model_reads` runs a model on two
test inputs once, when it meets a dataset, so a mismatch is named there rather than as a shape
error inside a criterion or a training step.
"""

from __future__ import annotations

from typing import Any

import torch

from visualizer.core.device import model_device
from visualizer.core.errors import first_line


class DataError(Exception):
    """A dataset that cannot be loaded, with a message for the user."""



def check_model_reads(model: torch.nn.Module, data: Any, model_name: str = "the model") -> list[str]:
    """Raise DataError, in one line, unless ``model`` maps two of ``data``'s test inputs to
    (2, C) logits with C >= data.num_classes; return notes (a 1000-class head on a 3-class folder
    works: labels 0..2 read the first three outputs). Run once when a model meets a dataset, so
    a mismatch (LeNet given token sequences, ResNet-18 given one-channel 8x8 digits) is named
    there instead of as a shape error deep inside a criterion or a training step. The model is
    left as it was: evaluation mode and no_grad for the probe (BatchNorm statistics untouched)."""
    try:
        x = data.probe(2)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a sample that cannot be decoded
        raise DataError(f"cannot read a sample of {data.name}: {first_line(exc, limit=240)}") from exc
    device = model_device(model)
    own_check = getattr(data, "check_model", None)  # token data check logits their own way (core.data.text)
    if own_check is not None:
        try:
            return own_check(model, x.to(device), model_name)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is the mismatch
        expects = expected_input(model)
        hint = f"; the model expects {expects}" if expects else ""
        raise DataError(f"{model_name} cannot read {data.name} (inputs {tuple(x.shape[1:])}, "
                        f"{str(x.dtype).removeprefix('torch.')}{hint}): {first_line(exc, limit=200)}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"{model_name} on {data.name} gives {shape}, not (batch, classes) logits")
    if out.shape[1] < data.num_classes:
        raise DataError(f"{data.name} has class indices up to {data.num_classes - 1} but {model_name} "
                        f"outputs {out.shape[1]} classes (0..{out.shape[1] - 1})")
    if out.shape[1] > data.num_classes:
        return [f"{model_name} outputs {out.shape[1]} classes; {data.name} has {data.num_classes}: "
                f"its labels read the first {data.num_classes} outputs"]
    return []


def expected_input(model: torch.nn.Module) -> str:
    """What the model's first layer reads, in words ("3-channel images"), or "" when unknown."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return f"{m.in_channels}-channel inputs"
        if isinstance(m, torch.nn.Linear):
            return f"{m.in_features} features"
        if isinstance(m, torch.nn.RNNBase):
            return f"sequences of {m.input_size} features"
    return ""


def expected_channels(model: torch.nn.Module) -> int | None:
    """Input channels of the model's first 2-d convolution (1 or 3), else None."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return m.in_channels if m.in_channels in (1, 3) else None
        if isinstance(m, (torch.nn.Linear, torch.nn.RNNBase, torch.nn.Conv1d)):
            return None
    return None
