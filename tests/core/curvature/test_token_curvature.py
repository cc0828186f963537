"""Curvature on token data: the loss the Hessian and the landscape differentiate is the
evaluation's mean next-token cross-entropy (predict token t+1 from the tokens up to t), on a
tiny Llama read from a folder with its own tokenizer and the prose that ships with the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tests.llm import PROSE, llama_folder  # noqa: E402
from visualizer.core.curvature.landscape import slice_1d  # noqa: E402
from visualizer.core.curvature.operator import (  # noqa: E402
    EvalSet,
    hessian_operator,
    second_order_compat,
)
from visualizer.core.data.text import load_text  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training.evaluate import evaluate  # noqa: E402


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-text")
    model = llama_folder(folder).double()
    data = load_text(PROSE, folder, block=12)
    x = data.x_test[:3]
    return model, EvalSet([(x, x)])


def by_hand_loss(model, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean over the 3 x 11 next-token predictions of -log softmax(logits)[next token], written out."""
    logits = torch.func.functional_call(model, params, (x,)).logits  # (3, 12, V)
    logp = torch.log_softmax(logits, -1)
    terms = [-logp[b, t, x[b, t + 1]] for b in range(x.shape[0]) for t in range(x.shape[1] - 1)]
    return torch.stack(terms).mean()


def test_hessian_loss_and_gradient_are_the_next_token_cross_entropy(lm):
    model, ev = lm
    op = hessian_operator(model, ev, masked=False, layer="model.layers.0.mlp.down_proj.weight")
    x = ev.batches[0][0]
    assert ev.n_predictions == 3 * 11
    # the evaluation reads float32 logits: equal to float32 precision
    assert op.loss() == pytest.approx(evaluate(model, ev.batches).loss, rel=1e-6)
    params = dict(model.named_parameters())
    name = "model.layers.0.mlp.down_proj.weight"
    w = params[name].detach().clone().requires_grad_(True)
    loss = by_hand_loss(model, {**params, name: w}, x)
    assert op.loss() == pytest.approx(float(loss.detach()), rel=1e-10)
    (g_hand,) = torch.autograd.grad(loss, [w])
    assert torch.allclose(op.gradient(), g_hand.reshape(-1), rtol=1e-8, atol=1e-12)
    # H v against the double derivative of the by-hand loss (math attention kernel: the fused
    # one has no second derivative; the operator switches to it by itself)
    v = torch.randn(w.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with second_order_compat():
        _, hv = torch.autograd.functional.hvp(lambda w_: by_hand_loss(model, {**params, name: w_}, x),
                                              w.detach(), v.reshape(w.shape))
    assert torch.allclose(op.matvec(v), hv.reshape(-1), rtol=0, atol=1e-6 * float(hv.abs().max()))


def test_landscape_loss_at_the_point_is_the_evaluation_loss(lm):
    model, ev = lm
    land = run(slice_1d(model, ev, steps=3, span=0.5, seed=0))
    assert land.alpha[1] == 0.0
    res = evaluate(model, ev.batches)
    assert land.loss[1] == pytest.approx(res.loss, rel=1e-6)  # float32 logits in the evaluation
    assert land.accuracy[1] == pytest.approx(res.accuracy)
    assert np.isfinite(land.loss).all()
