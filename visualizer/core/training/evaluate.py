"""Evaluate a classifier: mean cross-entropy loss and accuracy over a dataset split.

Kept small and separate so the CLI, the GUI and the training module can share it.
"""

from __future__ import annotations

from collections.abc import Generator

import torch
from torch import nn

from visualizer.core.tasks import Step, run


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    amp: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on (x, y), in eval mode and without grad
    (:func:`evaluate_job` run to the end).

    The model's train/eval flag is restored afterwards; its parameters are not touched.
    Raises ValueError on an empty split or a non-positive batch size.
    """
    return run(evaluate_job(model, x, y, batch_size, device, amp))


def evaluate_job(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    amp: bool = False,
) -> Generator[Step, None, tuple[float, float]]:
    """Job form of :func:`evaluate`: yields after every batch, so a large split (CIFAR-10 on a
    big model) can be cancelled; closing it restores the model's train/eval flag. Grad mode is
    switched off around each forward pass only (it is per thread, never held across a yield).
    Loss and correct counts are summed on the device and read once at the end; ``amp`` runs the
    forward passes under bf16 autocast on CUDA (:func:`visualizer.core.training.loop.autocast`)."""
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    from visualizer.core.training.loop import autocast

    device = torch.device(device)
    # float64 sums where the device has it (MPS has no float64)
    total_loss = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            with torch.no_grad(), autocast(amp, device):
                out = model(xb).float()
                total_loss += nn.functional.cross_entropy(out, yb, reduction="sum")
                correct += (out.argmax(1) == yb).sum()
            done = min(start + batch_size, n)
            yield Step(f"evaluating {done}/{n}", done / n)
    finally:
        model.train(was_training)
    return float(total_loss) / n, int(correct) / n
