"""The Hessian-vector-product engine (core.curvature.operator) against the exact Hessian of a
tiny float64 model.

The reference is torch.autograd.functional.hessian of the mean cross entropy over the evaluation
set, as a function of the flat vector of the operator's parameters, and torch.linalg.eigvalsh.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from tests.core.curvature.exact import (
    MatrixOperator,
    TinyBN,
    exact_hessian,
    keep_vector,
)
from visualizer.core.curvature import lanczos, operator
from visualizer.core.pruning.masks import MaskError, MaskSet
from visualizer.core.tasks import run


@pytest.mark.parametrize("method", ["double-backward", "forward-over-reverse"])
def test_hvp_equals_exact_hessian_times_vector(tiny, method):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, masked=False, method=method)
    point = operator.masked_point(model)
    H = exact_hessian(model, ev, point, op.coords.names)
    v = torch.randn(op.dim, dtype=torch.float64)
    assert op.dim == 90
    assert torch.allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert op.hvps == 1


def test_masked_operator_is_the_exact_submatrix_at_theta(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    point = operator.masked_point(model, mask)  # theta = m * w
    names = ["fc1.weight", "fc2.weight"]
    H = exact_hessian(model, ev, point, names)
    keep = keep_vector(mask, names, point)
    assert op.dim == mask.kept()
    assert torch.allclose(op.to_dense(), H[keep][:, keep], rtol=1e-10, atol=1e-12)
    # the dense operator with a mask is taken at the same point theta
    dense = operator.hessian_operator(model, ev, mask, masked=False)
    assert torch.allclose(dense.to_dense(), H, rtol=1e-10, atol=1e-12)


def test_gradient_is_projected_gradient(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    point = operator.masked_point(model, mask)
    xs = torch.cat([x for x, _ in ev.batches])
    ys = torch.cat([y for _, y in ev.batches])
    p = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    loss = nn.functional.cross_entropy(functional_call(model, p, (xs,)), ys)
    loss.backward()
    full = {k: p[k].grad for k in ("fc1.weight", "fc2.weight")}
    assert torch.allclose(op.gradient(), op.coords.gather(full), rtol=1e-10, atol=1e-12)
    assert op.loss() == pytest.approx(float(loss.detach()), rel=1e-12)


def test_include_other_layer_and_group(tiny):
    model, ev, mask = tiny
    point = operator.masked_point(model, mask)
    names = [n for n, _ in model.named_parameters()]
    names = ["fc1.weight", "fc2.weight"] + [n for n in names if n not in ("fc1.weight", "fc2.weight")]
    H = exact_hessian(model, ev, point, names)
    keep = keep_vector(mask, names, point)
    op = operator.hessian_operator(model, ev, mask, include_other=True)
    assert op.coords.names == names
    assert torch.allclose(op.to_dense(), H[keep][:, keep], rtol=1e-10, atol=1e-12)
    # one layer, masked
    op = operator.hessian_operator(model, ev, mask, layer="fc2.weight")
    sl = slice(50, 90)
    k2 = mask.masks["fc2.weight"].reshape(-1)
    assert torch.allclose(op.to_dense(), H[sl, sl][k2][:, k2], rtol=1e-10, atol=1e-12)
    # a group: (param, flat indices), intersected with the mask
    idx = torch.tensor([0, 3, 7, 11, 20])
    op = operator.hessian_operator(model, ev, mask, group=[("fc1.weight", idx)])
    kept = idx[mask.masks["fc1.weight"].reshape(-1)[idx]]
    assert op.dim == kept.numel()
    assert torch.allclose(op.to_dense(), H[kept][:, kept], rtol=1e-10, atol=1e-12)


def test_scatter_gather_roundtrip(tiny):
    model, ev, mask = tiny
    op = operator.hessian_operator(model, ev, mask)
    v = torch.randn(op.dim, dtype=torch.float64)
    full = op.scatter(v)
    assert set(full) == {"fc1.weight", "fc2.weight"}
    for n, t in full.items():
        assert t.shape == dict(model.named_parameters())[n].shape
        assert torch.all(t[~mask.masks[n]] == 0)
    assert torch.equal(op.coords.gather(full), v)


def test_batchnorm_model_uses_eval_mode_and_is_not_mutated():
    torch.manual_seed(2)
    model = TinyBN().double()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
    model.train()  # the operator must still use running statistics and restore this flag
    x = torch.randn(16, 1, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    ev = operator.EvalSet([(x, y)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = operator.hessian_operator(model, ev)
    point = operator.masked_point(model)
    H = exact_hessian(model, ev, point, op.coords.names)
    assert torch.allclose(op.to_dense(), H, rtol=1e-9, atol=1e-11)
    assert model.training and model.bn.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_inputs(tiny):
    model, ev, mask = tiny
    empty = MaskSet({k: torch.zeros_like(m) for k, m in mask.masks.items()})
    with pytest.raises(ValueError, match="no active coordinates"):
        operator.hessian_operator(model, ev, empty)
    with pytest.raises(ValueError, match="no parameter"):
        operator.hessian_operator(model, ev, layer="nope.weight")
    with pytest.raises(MaskError):
        operator.hessian_operator(model, ev, MaskSet({"fc1.weight": torch.ones(3, 3, dtype=torch.bool)}))
    with pytest.raises(ValueError, match="out of range"):
        operator.hessian_operator(model, ev, group=[("fc1.weight", [999])])
    with pytest.raises(ValueError):
        operator.hessian_operator(model, operator.EvalSet([]))
    with pytest.raises(ValueError):
        operator.masked_point(model, None, {"fc1.weight": torch.zeros(10, 5)})
    with pytest.raises(ValueError):
        run(lanczos.slq(MatrixOperator(torch.eye(3)), probes=0))
    # density 1: the masked operator is the dense one
    full = MaskSet.for_model(model)
    assert operator.hessian_operator(model, ev, full).dim == 90


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0].mean(1))


@pytest.mark.parametrize("cls", [TinyLSTM, TinyAttention])
def test_hvp_of_recurrent_and_attention_models_is_exact(cls):
    torch.manual_seed(4)
    model = cls().double()
    x = torch.randn(6, 5, 3 if cls is TinyLSTM else 4, dtype=torch.float64)
    ev = operator.EvalSet([(x, torch.randint(0, 3, (6,)))])
    op = operator.hessian_operator(model, ev)
    with operator.second_order_compat():
        H = exact_hessian(model, ev, operator.masked_point(model), op.coords.names)
    # recurrent models start on the unfused kernels; attention switches to them on the first
    # refusal of its fused kernel
    assert op.compat == (cls is TinyLSTM)
    assert torch.allclose(op.to_dense(), H, rtol=1e-8, atol=1e-10)


class _OnceDifferentiable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class NoSecondOrder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return _OnceDifferentiable.apply(self.fc(x))


@pytest.mark.parametrize("method", ["auto", "double-backward", "forward-over-reverse"])
def test_op_without_second_derivative_is_a_one_line_error_not_a_zero_hvp(method):
    model = NoSecondOrder()
    ev = operator.EvalSet([(torch.randn(5, 3), torch.randint(0, 2, (5,)))])
    op = operator.hessian_operator(model, ev, method=method)
    with pytest.raises(ValueError, match="no second derivative") as info:
        op.matvec(torch.randn(op.dim))
    assert len(str(info.value).splitlines()) == 1


# --- the criteria's use of the engine --------------------------------------------------------------


@pytest.mark.parametrize("method", ["double-backward", "forward-over-reverse"])
def test_batch_average_is_the_mean_of_the_batch_hessians(tiny, method):
    """average='batches': H = (1/B) sum_b H_b with H_b the Hessian of batch b's mean loss; with
    unequal batches (20 and 28 samples) it differs from the sample average."""
    model, ev, _ = tiny
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    op = operator.criterion_operator(model, params, ev.batches)
    op.method, op.auto = method, False
    point = operator.masked_point(model)
    names = op.coords.names
    per_batch = [exact_hessian(model, operator.EvalSet([b]), point, names) for b in ev.batches]
    H = sum(per_batch) / len(per_batch)
    v = torch.randn(op.dim, dtype=torch.float64)
    assert torch.allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(H, exact_hessian(model, ev, point, names), rtol=1e-3)


def test_job_forms_yield_once_per_batch_and_leave_no_trace(tiny):
    model, ev, _ = tiny
    model.train()
    params = dict(model.named_parameters())
    model.fc2.weight.requires_grad_(False)
    op = operator.criterion_operator(model, params, ev.batches)
    job = op.hvp_steps({n: torch.ones_like(p) for n, p in params.items()}, "Hv")
    steps = []
    while True:
        try:
            steps.append(next(job))
        except StopIteration as stop:
            hv = stop.value
            break
        assert model.training  # nothing is switched while the job waits at a yield
    assert [s.stage for s in steps] == ["Hv 1/2", "Hv 2/2"]
    assert set(hv) == set(params) and op.hvps == 1
    g = run(op.gradient_steps())
    assert set(g) == set(params) and op.grads == 1
    assert all(p.grad is None for p in model.parameters())
    assert model.fc2.weight.requires_grad is False and model.fc1.weight.requires_grad is True


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.spare = nn.Linear(3, 2)  # registered, never called

    def forward(self, x):
        return self.fc(x)


def test_a_weight_the_loss_does_not_use_has_zero_gradient_and_hvp():
    model = Unused()
    params = {"fc.weight": model.fc.weight, "spare.weight": model.spare.weight}
    op = operator.criterion_operator(model, params, [(torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))])
    g = run(op.gradient_steps())
    hv = run(op.hvp_steps({n: torch.ones_like(p) for n, p in params.items()}))
    assert torch.equal(g["spare.weight"], torch.zeros(2, 3)) and torch.equal(hv["spare.weight"], torch.zeros(2, 3))
    assert g["fc.weight"].abs().sum() > 0 and hv["fc.weight"].abs().sum() > 0


def test_half_precision_model_gets_float32_products():
    model = nn.Sequential(nn.Linear(3, 2)).to(torch.bfloat16)
    ev = operator.EvalSet([(torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))])
    op = operator.hessian_operator(model, ev)
    assert op.dtype == torch.float32
    assert op.matvec(torch.ones(op.dim)).dtype == torch.float32
    assert operator.work_dtype(torch.float64) == torch.float64


def test_rademacher_probes_are_plus_minus_one_and_seeded():
    a = operator.rademacher(1000, torch.Generator().manual_seed(5), torch.float32)
    b = operator.rademacher(1000, torch.Generator().manual_seed(5), torch.float32)
    assert torch.equal(a, b) and set(a.tolist()) == {-1.0, 1.0}
    assert abs(float(a.mean())) < 0.1
