"""Sensitivity analysis: per-unit pruning at each level, the cached-prefix fast path, group
faithfulness (a coupled group's row is the accuracy of physically shrinking it), resume."""

import pytest
import torch

from visualizer.core.data.text import TokenDataset
from visualizer.core.device import conv_layout, in_layout
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.allocation import layer_budgets
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.groups import find_groups, group_scores
from visualizer.core.structure.shrink import select_units, structured_prune
from visualizer.core.tasks import run
from visualizer.core.training.evaluate import evaluate
from visualizer.core.training.sensitivity import (
    SensitivityConfig,
    check_levels,
    heat_table,
    layer_values,
    list_units,
    loss_curves,
    read_rows,
    select,
    sensitivity_job,
    split_model,
    trace,
    unit_masks,
)
from visualizer.core.workspace import Workspace


@pytest.fixture(scope="module")
def resnet():
    return load_model("resnet-mini").model


def _config(**kw):
    base = dict(levels=(0.5, 0.1), eval_batches=1, eval_batch_size=128)
    return SensitivityConfig(**{**base, **kw})


@pytest.mark.parametrize("unit", ["layer", "group"])
def test_cached_prefix_gives_the_whole_model_numbers(resnet, digits, unit):
    ws = Workspace(resnet, digits, model_ref="resnet-mini")
    fast = run(sensitivity_job(ws, _config(unit=unit)))
    slow = run(sensitivity_job(ws, _config(unit=unit, fast=False)))
    assert {r["method"] for r in fast.rows} == {"cached-prefix"}
    assert {r["method"] for r in slow.rows} == {"whole-model"}
    for a, b in zip(fast.rows, slow.rows):
        assert (a["unit"], a["level"], a["loss"], a["accuracy"]) == (b["unit"], b["level"], b["loss"], b["accuracy"])


def test_layer_row_is_the_masked_model_evaluated(lenet, digits):
    ws = Workspace(lenet, digits, model_ref="lenet")
    res = run(sensitivity_job(ws, _config(units=("conv2",), levels=(0.2,))))
    (row,) = res.rows
    w = lenet.conv2.weight.detach().abs().reshape(-1)
    k = int(0.2 * w.numel())
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[torch.argsort(w, descending=True, stable=True)[:k]] = True
    masks = MaskSet.for_model(lenet)
    masks.masks["conv2.weight"] = mask.reshape(lenet.conv2.weight.shape)
    ev = evaluate(lenet, ws.evaluation_batches(1, 128), masks)
    # the analysis runs conv nets channels-last on the CPU: the loss differs by float rounding only
    assert row["kept"] == k and row["accuracy"] == ev.accuracy and row["loss"] == pytest.approx(ev.loss, rel=1e-6)
    assert row["accuracy_drop"] == row["base_accuracy"] - ev.accuracy


def test_residual_group_sensitivity_equals_pruning_that_group(resnet, digits):
    """The stem's group couples the stem conv with both residual blocks' conv2 (one residual
    stream): its row at 0.5 is the accuracy of the structured pruner's smaller model."""
    groups = find_groups(resnet).groups
    g = next(g for g in groups if g.root == "stem.0")
    assert {"layer1.conv2.weight", "layer2.conv2.weight"} <= {m.param for m in g.members}
    ws = Workspace(resnet, digits, model_ref="resnet-mini")
    res = run(sensitivity_job(ws, _config(unit="group", units=("stem.0",), levels=(0.5,), criterion="group-l2"),
                              groups=groups))
    (row,) = res.rows
    scores = group_scores(resnet, groups, "group-l2")
    plan = select_units([g], {g.id: scores[g.id]}, 0.5, "layer")
    pruned = structured_prune(resnet, groups, scores, 0.5, torch.randn(2, 1, 8, 8), plan=plan)
    assert pruned.shrunk.model.stem[0].out_channels == 8
    ev = evaluate(pruned.shrunk.model, ws.evaluation_batches(1, 128))
    assert row["accuracy"] == ev.accuracy
    assert row["loss"] == pytest.approx(ev.loss, rel=1e-5)
    assert row["accuracy"] < row["base_accuracy"]


def test_split_runs_less_of_the_network_for_later_layers(resnet):
    gm = trace(resnet)
    early, late = split_model(gm, ["stem.0.weight"]), split_model(gm, ["fc.weight"])
    assert late.ratio < early.ratio
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(late.rest(late.prefix(x), {}), resnet.eval()(x))


def test_cancelled_analysis_keeps_its_rows_and_resumes(lenet, digits, tmp_path):
    ws = Workspace(lenet, digits, model_ref="lenet")
    out = tmp_path / "rows.csv"
    job = sensitivity_job(ws, _config(), out=out)
    for step in job:
        if isinstance(step.partial, list):  # the first unit finished: cancel
            job.close()
            break
    kept = read_rows(out)
    assert [r["unit"] for r in kept] == ["conv1.weight", "conv1.weight"]
    res = run(sensitivity_job(ws, _config(), previous=out, out=out))
    assert res.reused == 2 and res.computed == len(res.rows) - 2
    assert len(read_rows(out)) == len(res.rows)


def test_bad_input_is_one_line(lenet, digits):
    with pytest.raises(ValueError, match=r"in \(0, 1\], got 1.5"):
        check_levels([0.5, 1.5])
    with pytest.raises(ValueError, match=r"in \(0, 1\], got 0"):
        check_levels([0])
    ws = Workspace(lenet, digits)
    with pytest.raises(ValueError, match="no unit named 'conv9'"):
        run(sensitivity_job(ws, _config(units=("conv9",))))
    with pytest.raises(ValueError, match="needs a dataset"):
        run(sensitivity_job(Workspace(lenet, None), _config()))


def test_read_outs_feed_the_allocation_and_the_graph(lenet, digits):
    ws = Workspace(lenet, digits, model_ref="lenet")
    rows = run(sensitivity_job(ws, _config(levels=(0.5, 0.05)))).rows
    curves = loss_curves(rows)
    assert set(curves) == {u.name for u in list_units(lenet, "layer")}
    shapes = {n: tuple(p.shape) for n, p in lenet.named_parameters() if n in curves}
    kept = layer_budgets("sensitivity", 0.3, shapes, curves=curves)
    assert sum(kept.values()) == int(0.3 * sum(p.numel() for n, p in lenet.named_parameters() if n in curves))
    values = layer_values(rows, level=0.05)
    assert set(values) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    assert values["conv1"] == next(r["accuracy_drop"] for r in rows if r["unit"] == "conv1.weight" and r["level"] == 0.05)
    units, levels, table = heat_table(rows)
    assert levels == [0.5, 0.05] and len(table) == len(units) == 5


def test_allocation_curves_are_measured_when_missing_and_reused_by_key(lenet, digits):
    """The one "measure the curves if missing" rule (CLI and window): given curves are used as
    they are, missing ones are measured on the training split, and rows of the same key (model,
    dataset, criterion, split, sample, seed, device) are reused, not measured again; another
    criterion is another key."""
    from visualizer.core.training.sensitivity import allocation_curves_job

    ws = Workspace(lenet, digits, model_ref="lenet")
    given = {"conv1.weight": {0.5: 0.25}}
    first = run(allocation_curves_job(ws, ("magnitude", "random"), {"random": given}, levels=(0.5, 0.1)))
    assert first.curves["random"] == given  # given: nothing measured for it
    assert {r["criterion"] for r in first.rows} == {"magnitude"} and {r["split"] for r in first.rows} == {"train"}
    assert first.curves["magnitude"] == loss_curves(first.rows, "magnitude")
    assert set(first.curves["magnitude"]) == {u.name for u in list_units(lenet, "layer")}
    assert first.computed == len(first.rows) and first.reused == 0
    streamed = []
    again = allocation_curves_job(ws, ("magnitude", "random"), previous=first.rows, levels=(0.5, 0.1))
    result = run(again, lambda step: streamed.extend(step.partial) if isinstance(step.partial, list) else None)
    assert result.curves["magnitude"] == first.curves["magnitude"]
    assert result.reused == len(first.rows)  # magnitude: every cell reused
    assert result.computed == len(result.rows) - len(first.rows) > 0  # random: measured now
    assert streamed == result.rows  # each unit's rows stream as it finishes


@pytest.mark.slow
def test_cluster_rows_equal_serial_rows_and_resume_by_key(lenet, digits, tmp_path):
    from visualizer.core.training.cluster import connect
    from visualizer.core.training.sensitivity import sensitivity_on_cluster

    ws = Workspace(lenet, digits, model_ref="lenet")
    config = _config(units=("conv1", "conv2", "fc3"))
    serial = run(sensitivity_job(ws, config)).rows
    out = tmp_path / "rows.json"
    with connect("local:2"):
        res = run(sensitivity_on_cluster(ws, config, previous=serial[:2], out=out))
    assert res.reused == 2 and res.computed == 4
    strip = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in res.rows] == \
        [{k: v for k, v in r.items() if k not in strip} for r in serial]
    assert len(read_rows(out)) == 6


class _Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(64, 16)
        self.b = torch.nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.a(x.flatten(1)))
        if h.sum() > 0:
            h = h * 1.0
        return self.b(h)


def test_an_untraceable_model_is_evaluated_whole_and_says_so(digits):
    ws = Workspace(_Branchy(), digits, model_ref="branchy")
    res = run(sensitivity_job(ws, _config()))
    assert {r["method"] for r in res.rows} == {"whole-model"}
    assert any("cannot be traced" in n for n in res.notices)


class _InPlaceResidual(torch.nn.Module):
    """A residual add written in place into the branch that does not read the unit (the
    torchvision ResNet pattern out += identity, with the unit on the identity side)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(64, 32)
        self.skip = torch.nn.Linear(64, 32)
        self.out = torch.nn.Linear(32, 10)
        self.relu = torch.nn.ReLU(inplace=True)

    def forward(self, x):
        x = x.flatten(1)
        h = self.a(x)
        h += self.skip(x)
        return self.out(self.relu(h))


def test_a_rest_that_writes_in_place_gets_fresh_copies_of_the_cache(digits):
    model = _InPlaceResidual()
    ws = Workspace(model, digits, model_ref="inplace")
    split = split_model(trace(model), ["skip.weight"])
    assert split._copy  # the cached h is added into in place: each level needs its own copy
    fast = run(sensitivity_job(ws, _config(units=("skip",))))
    slow = run(sensitivity_job(ws, _config(units=("skip",), fast=False)))
    assert [r["method"] for r in fast.rows] == ["cached-prefix"] * 2
    assert [(r["loss"], r["accuracy"]) for r in fast.rows] == [(r["loss"], r["accuracy"]) for r in slow.rows]
    assert not split_model(trace(load_model("lenet").model), ["fc1.weight"])._copy


def test_several_batches_give_the_whole_model_numbers(lenet, digits):
    ws = Workspace(lenet, digits, model_ref="lenet")
    several = dict(eval_batches=None, eval_batch_size=128)  # 359 samples: three batches
    fast = run(sensitivity_job(ws, _config(**several)))
    slow = run(sensitivity_job(ws, _config(fast=False, **several)))
    assert {r["method"] for r in fast.rows} == {"cached-prefix"} and fast.rows[0]["samples"] == 359
    assert [(r["loss"], r["accuracy"]) for r in fast.rows] == [(r["loss"], r["accuracy"]) for r in slow.rows]


def _masked_evaluation(ws, model, row, batches, criterion="magnitude"):
    """evaluate() of the whole model with the row's unit masked at its level (the plain loop)."""
    unit = select(list_units(model, "layer"), [row["unit"]])[0]
    masks = MaskSet.for_model(model)
    masks.masks.update(unit_masks(unit, row["level"], run(ws.scores(criterion))))
    return evaluate(model, batches, masks)


def test_conv_nets_run_channels_last_with_the_plain_loops_numbers(resnet, mlp, digits):
    """The layout is used (a one-channel input gets its strides too, which contiguous() leaves
    alone) and changes the numbers by float rounding only: accuracy equal, loss within 1e-6."""
    assert conv_layout(resnet, "cpu") is torch.channels_last and conv_layout(mlp, "cpu") is None
    assert in_layout(torch.zeros(2, 1, 8, 8), torch.channels_last).stride() == (64, 1, 8, 1)
    ws = Workspace(resnet, digits, model_ref="resnet-mini")
    res = run(sensitivity_job(ws, _config(units=("stem.0", "layer2.conv2"))))
    assert {r["method"] for r in res.rows} == {"cached-prefix"}
    for row in res.rows:
        ev = _masked_evaluation(ws, resnet, row, ws.evaluation_batches(1, 128))
        assert row["accuracy"] == ev.accuracy and row["loss"] == pytest.approx(ev.loss, rel=1e-6)


class _TinyLM(torch.nn.Module):
    """Embedding, one hidden layer, next-token logits (B, L, V): a token model fx traces."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(32, 8)
        self.hidden = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 32)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(self.embed(x))))


def _token_data(vocab=32, blocks=24, block=12):
    x = torch.randint(0, vocab, (blocks, block), generator=torch.Generator().manual_seed(0))
    return TokenDataset("tokens", x, x, x, x, vocab, f"{blocks} random blocks of {block}", block=block)


def test_token_model_rows_are_per_token_evaluations():
    """Token blocks are scored per predicted token, as evaluate() scores them (the cells used to
    feed (B, L, V) logits to a per-sample cross-entropy and fail)."""
    model, data = _TinyLM().eval(), _token_data()
    ws = Workspace(model, data, model_ref="tiny-lm")
    several = dict(units=("hidden", "head"), eval_batches=None, eval_batch_size=10)  # 24 blocks: three batches
    fast = run(sensitivity_job(ws, _config(**several)))
    slow = run(sensitivity_job(ws, _config(fast=False, **several)))
    assert {r["method"] for r in fast.rows} == {"cached-prefix"} and fast.rows[0]["samples"] == 24
    assert [(r["loss"], r["accuracy"]) for r in fast.rows] == [(r["loss"], r["accuracy"]) for r in slow.rows]
    batches = ws.evaluation_batches(None, 10)
    for row in fast.rows:
        ev = _masked_evaluation(ws, model, row, batches)
        assert ev.tokens == 24 * 11 and (row["loss"], row["accuracy"]) == (ev.loss, ev.accuracy)


def test_a_transformers_language_model_is_analysed_whole():
    """A transformers causal LM (an output object holding the logits; fx cannot trace it):
    every level evaluates the whole model, per token."""
    from tests.hfmodels import VOCAB, build_hf_model

    model, data = build_hf_model("gpt2"), _token_data(VOCAB, 8, 16)
    ws = Workspace(model, data, model_ref="gpt2")
    res = run(sensitivity_job(ws, _config(units=("transformer.h.0.mlp.c_fc",), levels=(0.3,))))
    (row,) = res.rows
    ev = _masked_evaluation(ws, model, row, ws.evaluation_batches(1, 128))
    assert row["method"] == "whole-model" and (row["loss"], row["accuracy"]) == (ev.loss, ev.accuracy)
