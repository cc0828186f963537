"""The long structure calls are cancellable jobs (generators of Step driven by tasks.run)
with convenience wrappers that return the same result."""

from __future__ import annotations

import pytest
import torch

from visualizer.core.models.zoo import ZOO
from visualizer.core.structure.graph import build_graph, build_graph_job, example_input
from visualizer.core.structure.groups import find_groups, find_groups_job, group_scores
from visualizer.core.structure.shrink import structured_prune, structured_prune_job
from visualizer.core.tasks import Cancelled, Step, run


def _zoo(name):
    m = ZOO[name].build()
    return m, example_input(m, ZOO[name].dataset)


def _summary(groups):
    return [(g.id, g.root, g.size, g.prunable, [(m.param, m.dim, m.indices, m.units) for m in g.members])
            for g in groups]


def _steps(job):
    steps: list[Step] = []
    result = run(job, steps.append)
    return steps, result


@pytest.mark.parametrize("name", ["resnet-mini", "transformer-mini"])
def test_find_groups_job_reports_progress_and_equals_the_wrapper(name):
    m, x = _zoo(name)
    steps, res = _steps(find_groups_job(m, x))
    assert len(steps) >= 3
    fractions = [s.fraction for s in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(isinstance(s.stage, str) and s.stage for s in steps)
    assert _summary(res.groups) == _summary(find_groups(m, x).groups)
    assert res.notices == find_groups(m, x).notices


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_find_groups_job_cancelled_restores_train_flag(stop_after):
    m, x = _zoo("densenet-mini")
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    seen = []
    with pytest.raises(Cancelled):
        run(find_groups_job(m, x), seen.append, should_stop=lambda: len(seen) >= stop_after)
    assert m.training and all(mod.training for mod in m.modules())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    # a fresh job after the cancel still gives the full answer
    assert _summary(find_groups(m, x).groups) == _summary(find_groups(m.eval(), x).groups)


def test_find_groups_job_on_torchscript_is_one_step():
    m, x = _zoo("mlp")
    ts = torch.jit.trace(m.eval(), x)
    steps, res = _steps(find_groups_job(ts, x))
    assert res.groups == [] and "TorchScript" in res.notices[0]
    assert steps[-1].fraction == 1.0


def test_build_graph_job_progress_cancel_and_wrapper():
    m, x = _zoo("inception-mini")
    steps, g = _steps(build_graph_job(m, x))
    assert g.method == "fx" and steps[0].fraction == 0.0
    ref = build_graph(m, x)
    assert sorted(g.graph.nodes) == sorted(ref.graph.nodes) and sorted(g.graph.edges) == sorted(ref.graph.edges)
    m.train()
    with pytest.raises(Cancelled):
        run(build_graph_job(m, x), should_stop=lambda: True)
    assert m.training


def test_structured_prune_job_cancel_changes_nothing_and_wrapper_matches():
    m, x = _zoo("resnet-mini")
    m.eval()
    groups = find_groups(m, x).groups
    scores = group_scores(m, groups, "l1-norm")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    seen = []
    with pytest.raises(Cancelled):
        run(structured_prune_job(m, groups, scores, 0.5, x), seen.append, should_stop=lambda: len(seen) >= 2)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    steps, res = _steps(structured_prune_job(m, groups, scores, 0.5, x))
    ref = structured_prune(m, groups, scores, 0.5, x)
    assert [s.fraction for s in steps] == sorted(s.fraction for s in steps) and steps[-1].fraction == 1.0
    assert res.plan.removed == ref.plan.removed and res.params_after == ref.params_after < res.params_before
    assert res.max_output_diff <= 1e-5
