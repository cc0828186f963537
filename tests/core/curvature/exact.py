"""Shared references of the curvature tests: a tiny float64 model and its exact Hessian
(torch.autograd.functional.hessian of the mean cross entropy)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from visualizer.core.curvature import operator
from visualizer.core.pruning.masks import MaskSet

RTOL = 1e-4


class Tiny(nn.Module):
    """5 -> 10 -> 4 with tanh: 90 prunable weights, 14 biases."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyBN(nn.Module):
    """conv + BatchNorm + linear, to check that the Hessian is taken in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


def exact_hessian(model, ev, point, names):
    """Hessian of the mean loss w.r.t. the concatenation of ``names`` at ``point``."""
    shapes = [point[n].shape for n in names]
    flat0 = torch.cat([point[n].reshape(-1) for n in names])
    xs = torch.cat([x for x, _ in ev.batches])
    ys = torch.cat([y for _, y in ev.batches])

    def f(flat):
        p = dict(point)
        at = 0
        for n, s in zip(names, shapes):
            p[n] = flat[at : at + s.numel()].view(s)
            at += s.numel()
        was = model.training
        model.eval()
        try:
            out = functional_call(model, p, (xs,))
        finally:
            model.train(was)
        return nn.functional.cross_entropy(out, ys)

    return torch.autograd.functional.hessian(f, flat0)


def keep_vector(mask, names, point):
    return torch.cat([
        mask.masks[n].reshape(-1) if n in mask.masks else torch.ones(point[n].numel(), dtype=torch.bool)
        for n in names
    ])


def assert_close_rel(a, b, rtol=RTOL):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    assert torch.allclose(a, b, rtol=rtol, atol=1e-10), (a, b)


def make_tiny():
    """The Tiny model in float64, an evaluation set of two unequal batches, and a random mask."""
    torch.manual_seed(1)
    model = Tiny().double()
    x = torch.randn(48, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (48,))
    ev = operator.EvalSet([(x[:20], y[:20]), (x[20:], y[20:])])  # unequal batches: the mean must weight them
    masks = {
        "fc1.weight": torch.rand(10, 5) < 0.5,
        "fc2.weight": torch.rand(4, 10) < 0.5,
    }
    return model, ev, MaskSet(masks)


class MatrixOperator:
    """An explicit symmetric matrix as an :class:`Operator` (exact references in the tests)."""

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
