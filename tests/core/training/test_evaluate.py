"""Evaluation is a job too (a Step per batch, cancellable), and evaluating with masks leaves the
caller's model in the mode it was in (it used to come back in training mode)."""

from __future__ import annotations

import pytest
import torch

from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Cancelled, run
from visualizer.core.training.evaluate import (
    evaluate,
    evaluate_job,
    inference_layout,
    masked_parameters,
)
from visualizer.core.training.sensitivity import SensitivityConfig, sensitivity_job
from visualizer.core.workspace import Workspace, evaluation_batches


def test_evaluate_job_steps_per_batch_and_equals_evaluate(digits):
    m = load_model("lenet").model
    steps = []
    res = run(evaluate_job(m, evaluation_batches(digits, batch_size=100)), steps.append)
    assert [s.fraction for s in steps] == pytest.approx([100 / 359, 200 / 359, 300 / 359, 1.0])
    ref = evaluate(m, evaluation_batches(digits))
    assert res.accuracy == ref.accuracy == pytest.approx(0.961, abs=1e-3)
    assert res.loss == pytest.approx(ref.loss, rel=1e-6) and res.n == 359


@pytest.mark.parametrize("training", [False, True])
def test_masked_evaluation_keeps_the_callers_mode_and_batchnorm_stats(digits, training):
    m = load_model("resnet-mini").model  # has BatchNorm: train mode would update running stats
    m.train(training)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    masks = MaskSet.for_model(m)
    evaluate(m, evaluation_batches(digits), masks)
    assert m.training == training and all(mod.training == training for mod in m.modules())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_cancelled_evaluation_restores_the_mode(digits):
    m = load_model("lenet").model.train()
    with pytest.raises(Cancelled):
        run(evaluate_job(m, evaluation_batches(digits, batch_size=50)), should_stop=lambda: True)
    assert m.training


class _ViewNet(torch.nn.Module):
    """A conv net written the way many users write one: ``x.view(n, -1)`` after the convolution,
    which raises on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def _default_layout(model, batches, masks=None):
    """Loss and accuracy summed in the default (NCHW) layout: the numbers before the layout rule."""
    over = masked_parameters(model, masks)
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            out = torch.func.functional_call(model, over, (x,), strict=False)
            loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    return loss / n, correct / n


def test_conv_nets_evaluate_channels_last_with_the_default_layouts_numbers(digits):
    """resnet-mini on the CPU runs channels-last (about half the time per pass) and gives the
    default layout's accuracy and loss to float rounding, with and without masks."""
    m = load_model("resnet-mini").model.eval()
    batches = evaluation_batches(digits)
    masks = MaskSet.for_model(m)
    masks.masks["layer1.conv1.weight"][:, :, 0, 0] = False
    for mk in (None, masks):
        assert inference_layout(m, batches[0][0][:2], masked_parameters(m, mk)) is torch.channels_last
        res = evaluate(m, batches, mk)
        loss, acc = _default_layout(m, batches, mk)
        assert res.accuracy == acc and res.loss == pytest.approx(loss, rel=1e-6)


def test_a_model_that_cannot_run_channels_last_is_evaluated_as_it_is(digits):
    """``x.view`` after a convolution raises on a channels-last tensor: the probe sees it and the
    evaluation (and the sensitivity analysis, same rule) runs in the default layout."""
    m = _ViewNet().eval()
    batches = evaluation_batches(digits)
    assert inference_layout(m, batches[0][0][:2], {}) is None
    res = evaluate(m, batches)
    loss, acc = _default_layout(m, batches)
    assert res.accuracy == acc and res.loss == pytest.approx(loss, rel=1e-6)
    ws = Workspace(m, digits, model_ref="viewnet")
    rows = run(sensitivity_job(ws, SensitivityConfig(criterion="magnitude", levels=(0.5,)))).rows
    assert {r["unit"] for r in rows} == {"conv.weight", "fc.weight"}


def test_a_model_pruned_with_torch_prune_evaluates(digits):
    """torch.nn.utils.prune keeps the computed weight as a plain non-leaf tensor attribute, which
    deepcopy refuses: the private view shares it (evaluation crashed on such a model)."""
    m = load_model("lenet").model.eval()
    from torch.nn.utils import prune

    prune.l1_unstructured(m.conv1, "weight", amount=0.5)
    batches = evaluation_batches(digits)
    out = torch.cat([m(x) for x, _ in batches]).detach()  # with grad: conv1.weight is now a non-leaf
    y = torch.cat([y for _, y in batches])
    plain = float((out.argmax(1) == y).float().mean())
    assert evaluate(m, batches).accuracy == pytest.approx(plain)
