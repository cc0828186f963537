"""Evaluation is a job too (a Step per batch, cancellable), and evaluating with masks leaves the
caller's model in the mode it was in (it used to come back in training mode)."""

from __future__ import annotations

import pytest
import torch

from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import Cancelled, run
from visualizer.core.training.evaluate import evaluate, evaluate_job
from visualizer.core.workspace import evaluation_batches


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
