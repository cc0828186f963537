"""Allocation as a sweep grid dimension and in IMP rounds: exact global counts, the same masks
as the one allocation function, resume by key."""

from visualizer.core.pruning.allocation import allocation_mask, cap_budgets
from visualizer.core.pruning.ranking import kept_count
from visualizer.core.tasks import run
from visualizer.core.training.evaluate import evaluate
from visualizer.core.training.experiments import SweepConfig, row_key, sweep
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import IMPConfig, iterative_magnitude_pruning
from visualizer.core.workspace import evaluation_batches


def test_cap_budgets_by_hand():
    # a may keep at most 4: its fifth weight goes to b, the only layer with room
    assert cap_budgets({"a": 5, "b": 3}, {"a": 4, "b": 10}, 8) == {"a": 4, "b": 4}


def test_sweep_takes_allocation_as_a_grid_dimension(lenet, digits):
    curves = {"magnitude": {n: {0.05: 3.0, 0.2: 1.0, 0.5: 0.1} for n, p in lenet.named_parameters()
                            if p.ndim > 1}}
    config = SweepConfig("lenet", ("magnitude",), (0.1,), allocations=("uniform", "erk", "owl", "sensitivity"),
                         curves=curves)
    rows = run(sweep(lenet, digits, config)).rows
    assert [r["allocation"] for r in rows] == ["uniform", "erk", "owl", "sensitivity"]
    assert all(r["kept"] == kept_count(0.1, r["total"]) for r in rows)
    assert len({row_key(r) for r in rows}) == 4
    scores = {n: p.detach().abs() for n, p in lenet.named_parameters() if p.ndim > 1}
    erk = allocation_mask(scores, 0.1, "erk")
    ev = evaluate(lenet, evaluation_batches(digits, None, 512), erk)
    assert rows[1]["accuracy"] == ev.accuracy
    again = run(sweep(lenet, digits, config, previous=rows))
    assert again.reused == 4 and again.computed == 0


def test_a_scope_that_names_an_allocation_is_that_allocation(lenet, digits):
    rows = run(sweep(lenet, digits, SweepConfig("lenet", ("magnitude",), (0.2,), scope="erk"))).rows
    assert rows[0]["allocation"] == "erk" and rows[0]["kept"] == kept_count(0.2, rows[0]["total"])


def test_imp_rounds_follow_the_allocation_without_reviving_weights(mlp, digits):
    config = IMPConfig(rounds=2, rate=0.5, allocation="erk",
                       train=TrainConfig(epochs=1, max_steps=3, batch_size=64))
    init = {k: v.clone() for k, v in mlp.state_dict().items()}
    res = run(iterative_magnitude_pruning(mlp, digits, init, config))
    for r, (prev, cur) in enumerate(zip(res.masks, res.masks[1:]), start=1):
        assert cur.kept() == kept_count(0.5 ** r, cur.total())
        assert all(not (cur[n] & ~prev[n]).any() for n in cur)  # nothing revived
    assert res.masks[-1].metadata["scope"] == "erk"
