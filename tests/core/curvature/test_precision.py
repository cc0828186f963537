"""Precision on a device without float64 (Apple's MPS): curvature and landscapes compute in float32
there, decided by one helper (core.device.supports_float64 / wide_float).

No MPS is needed: the device capability is monkeypatched so that the CPU "lacks" float64, and a
dispatch mode fails any torch operation that produces a float64 tensor. Host-side sums of the
results (Ritz values, quadrature nodes) are numpy float64, which no device is asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tests.core.curvature.exact import Tiny
from visualizer.core import device as workspace  # the precision rule's home
from visualizer.core.curvature import lanczos, landscape, operator
from visualizer.core.tasks import run


class NoFloat64(TorchDispatchMode):
    """Raise on every operation whose result is a float64 tensor (what MPS refuses), except
    ``lift_fresh``: torch.from_numpy wrapping a host numpy result, which never reaches a device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.lift_fresh.default:
            return out
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                raise AssertionError(f"{func} produced a float64 tensor on a device without float64")
        return out


def test_the_mode_catches_float64():
    """The check above can fail: a float64 zeros or a .double() is refused."""
    with pytest.raises(AssertionError, match="float64"), NoFloat64():
        torch.zeros(3, dtype=torch.float64)
    with pytest.raises(AssertionError, match="float64"), NoFloat64():
        torch.ones(2).double()


def test_wide_float_follows_the_device_capability(monkeypatch):
    assert workspace.wide_float("cpu") == torch.float64
    assert workspace.wide_float("mps") == torch.float32  # MPS has no float64
    assert not workspace.supports_float64(torch.device("mps"))
    monkeypatch.setattr(workspace, "supports_float64", lambda device: False)
    assert workspace.wide_float("cpu") == torch.float32
    assert operator.work_dtype(torch.float64, "cpu") == torch.float32


def _tiny32():
    torch.manual_seed(1)
    model = Tiny()
    x = torch.randn(48, 5)
    y = torch.randint(0, 4, (48,))
    return model, operator.EvalSet([(x[:20], y[:20]), (x[20:], y[20:])])


def test_curvature_and_landscapes_avoid_float64_where_the_device_lacks_it(monkeypatch):
    model, ev = _tiny32()
    # reference: the same computations where float64 is available
    ref_op = operator.hessian_operator(model, ev, dtype=torch.float64)
    assert ref_op.dtype == torch.float64
    ref_top = float(run(lanczos.lanczos(ref_op, 1, 1, max_steps=60, tol=1e-8)).top[0])
    direction = landscape.random_directions(model, operator.masked_point(model), 1, seed=0)[0]
    ref_slice = run(landscape.slice_1d(model, ev, steps=5, direction=direction))

    monkeypatch.setattr(workspace, "supports_float64", lambda device: False)
    with NoFloat64():
        op = operator.hessian_operator(model, ev, dtype=torch.float64)  # `--float64` asked for
        assert op.dtype == torch.float32
        lz = run(lanczos.lanczos(op, 1, 1, max_steps=60, tol=1e-5))
        sl = run(lanczos.slq(op, probes=2, steps=8))
        tr = run(lanczos.hutchinson(op, probes=3))
        one = run(landscape.slice_1d(model, ev, steps=5, direction=direction))
        run(landscape.slice_1d(model, ev, steps=3, seed=1))  # drawing its own direction
        two = run(landscape.slice_2d(model, ev, steps=3, seed=0))
        line = run(landscape.interpolate(model, dict(model.named_parameters()),
                                         {k: v * 0.5 for k, v in model.named_parameters()}, ev, steps=3))
    assert float(lz.top[0]) == pytest.approx(ref_top, rel=1e-4)
    assert torch.isfinite(sl.nodes).all() and np.isfinite(tr.estimate)
    np.testing.assert_allclose(one.loss, ref_slice.loss, rtol=1e-5)
    assert np.isfinite(two.loss).all() and np.isfinite(line.loss).all() and line.loss.dtype == np.float64
