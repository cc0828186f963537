"""Devices: which one a computation runs on, and where a model's tensors are.

:func:`resolve_device` is the one place a device is chosen (``auto``: CUDA, then MPS, then
CPU); a device that is not there is a ValueError in one line. :func:`model_device` is where a
model lives; :func:`model_on` moves a copy only when a job runs elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(preference: str | torch.device | None = "auto") -> torch.device:
    """The one home of device choice: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``. A device that is not there raises ValueError in one line (the CLI
    prints it and exits 2; the window shows it in the status bar)."""
    text = "auto" if preference is None else str(preference).strip().lower()
    if text in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {text!r}: use {DEVICE_CHOICES}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{text} requested but torch.cuda.is_available() is False")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{text} does not exist ({count} device{'s' if count != 1 else ''})")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError("mps not available")
        return torch.device("mps")
    raise ValueError(f"unknown device {text!r}: use {DEVICE_CHOICES}")


def supports_float64(device: str | torch.device) -> bool:
    """Whether ``device`` computes in float64: every device but Apple's MPS, which has no float64
    tensors. The one place this is decided (:func:`wide_float`)."""
    return torch.device(device).type != "mps"


def wide_float(device: str | torch.device) -> torch.dtype:
    """The precision of sums, curvature and landscapes on ``device``: float64 where the device
    has it (:func:`supports_float64`), else float32."""
    return torch.float64 if supports_float64(device) else torch.float32


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices present, in the order ``auto`` prefers them last-to-first: ``cpu``, then
    ``cuda:0`` ... ``cuda:N-1``, then ``mps``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def device_memory(device: str | torch.device) -> str:
    """A short memory note for a device chooser: ``"1.2/80.0 GiB"`` for CUDA (allocated by this
    process / total), empty for CPU and MPS."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return ""
    _free, total = torch.cuda.mem_get_info(dev)
    used = torch.cuda.memory_allocated(dev)
    return f"{used / 2**30:.1f}/{total / 2**30:.1f} GiB"


def device_key(device: str | torch.device) -> str:
    """The device a result row records: resolved here when it can be (``auto`` -> ``cpu``,
    ``cuda`` -> ``cuda:0``), else by its name (a Ray worker's GPU that this machine lacks:
    ``cuda`` -> ``cuda:0``, the task's one visible GPU)."""
    try:
        return device_name(resolve_device(device))
    except ValueError:
        dev = torch.device(str(device))
        return f"{dev.type}:{dev.index or 0}" if dev.type == "cuda" else str(dev)


def model_on(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` itself when its parameters are already on ``device``, else a copy there: a job
    on another device never moves the caller's model (the window's stays on the host)."""
    dev = torch.device(device)
    here = model_device(model)
    if here.type == dev.type and (dev.index is None or here.index == dev.index):
        return model
    import copy

    return copy.deepcopy(model).to(dev)


def device_name(device: torch.device) -> str:
    """What result rows record: ``cpu``, ``cuda:0``, ``mps`` (a bare ``cuda`` gets its index)."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def conv_layout(model: nn.Module, device: str | torch.device) -> torch.memory_format | None:
    """``torch.channels_last`` for a model with 4-d (2-d convolution) weights on the CPU, None
    otherwise. oneDNN runs NHWC convolutions without reordering every input to its blocked
    layout and back (docs/performance.md, "Sensitivity analysis", has the times). Whether a given
    model may run so is :func:`visualizer.core.training.evaluate.inference_layout`'s probe. The numbers differ from the default
    layout's by float rounding only (another summation order). Not measured on CUDA or MPS, so
    not used there."""
    if torch.device(device).type != "cpu":
        return None
    return torch.channels_last if any(p.dim() == 4 for p in model.parameters()) else None


def in_layout(t: torch.Tensor, layout: torch.memory_format | None) -> torch.Tensor:
    """``t`` in ``layout`` when it is a 4-d tensor and a layout is given; else ``t`` itself.
    ``to`` sets the layout's strides even where a size-1 dimension makes the tensor count as
    contiguous in both (one input channel, 1x1 kernels), which ``contiguous`` leaves alone: the
    convolution reads the layout from those strides."""
    return t.to(memory_format=layout) if layout is not None and t.dim() == 4 else t
