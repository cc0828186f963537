"""core.workspace: the one home of the batch rules and of scoring.

The consistency test is the user's report turned round: SNIP at 5% density gave one mask in the
window and another from ``pruneviz prune``, and ``prune --eval`` reported one accuracy where
``pruneviz sweep`` reported another. With the same settings, every path must now give the SAME
mask and the SAME accuracy: the window's rank job (+ its evaluate job), ``prune --json --eval``,
the sweep at retrain none, and the preset that scores.
"""

from __future__ import annotations

import json

import pytest
import torch

import visualizer.core.training.experiments as experiments
from visualizer.cli import main
from visualizer.core.data.sources import Dataset
from visualizer.core.io.mask_formats import read_mask
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.ranking import kept_count
from visualizer.core.tasks import run
from visualizer.core.workspace import (
    SCORE_BATCH_SIZE,
    SCORE_BATCHES,
    Workspace,
    criterion_batches,
    curvature_batches,
    evaluation_batches,
    score_job,
    training_batches,
)

DENSITY = 0.05
DATA_CRITERIA = ("snip", "grasp", "taylor", "obd")


def _toy(n: int = 10) -> Dataset:
    x = torch.arange(float(n)).unsqueeze(1)
    y = torch.arange(n)
    return Dataset("toy", x, y, x[: n // 2].clone(), y[: n // 2].clone(), n)


# --- the batch rules -----------------------------------------------------------------------------


def test_training_batches_cover_the_split_once_in_a_seeded_order():
    d = _toy()
    a = [b[1].tolist() for b in training_batches(d, 3, 5)]
    again = [b[1].tolist() for b in training_batches(d, 3, torch.Generator().manual_seed(5))]
    other = [b[1].tolist() for b in training_batches(d, 3, 6)]
    assert a == again and a != other
    assert [len(b) for b in a] == [3, 3, 3, 1]
    assert sorted(sum(a, [])) == list(range(10)) and sum(a, []) != list(range(10))
    # the order is torch.randperm of the seeded generator (what training used before)
    assert sum(a, []) == torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    for xb, yb in training_batches(d, 4, 1):
        assert torch.equal(xb[:, 0].long(), yb)  # x and y stay paired


def test_a_shared_generator_continues_to_the_next_epoch():
    d = _toy()
    g = torch.Generator().manual_seed(2)
    first = [b[1].tolist() for b in training_batches(d, 10, g)]
    second = [b[1].tolist() for b in training_batches(d, 10, g)]
    assert first != second and sorted(second[0]) == list(range(10))


def test_criterion_batches_are_the_first_batches_of_the_seeded_shuffle():
    d = _toy(20)
    got = criterion_batches(d, 2, 4, seed=3)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(3)).tolist()
    assert [b[1].tolist() for b in got] == [order[:4], order[4:8]]
    assert len(criterion_batches(d, 99, 8)) == 3  # never more than one epoch
    with pytest.raises(ValueError, match="at least one batch"):
        criterion_batches(d, 0)
    with pytest.raises(ValueError, match="batch size"):
        criterion_batches(d, 1, 0)


def test_evaluation_batches_fixed_order_and_whole_split():
    d = _toy()
    assert [b[1].tolist() for b in evaluation_batches(d, batch_size=2)] == [[0, 1], [2, 3], [4]]
    assert [b[1].tolist() for b in evaluation_batches(d, 1, 2)] == [[0, 1]]
    assert sum(len(b[1]) for b in evaluation_batches(d, split="train", batch_size=3)) == 10
    empty = Dataset("empty", d.x_train, d.y_train, d.x_test[:0], d.y_test[:0], 10)
    with pytest.raises(ValueError, match="test split of empty is empty"):
        evaluation_batches(empty)


def test_score_job_gives_data_criteria_the_workspace_batches(monkeypatch):
    import visualizer.core.workspace as workspace

    seen = {}

    def spy(criterion, model, batches=None, *, seed=0, probes=8):
        seen.update(criterion=criterion, batches=batches, seed=seed, probes=probes)
        yield from ()
        return {}

    monkeypatch.setattr(workspace, "score", spy)  # the criteria's score, as score_job calls it
    d = _toy(300)
    ws = Workspace(torch.nn.Linear(1, 2), d, seed=4)
    run(score_job(ws, "snip", probes=3))
    expected = criterion_batches(d, SCORE_BATCHES, SCORE_BATCH_SIZE, 4)
    assert seen["seed"] == 4 and seen["probes"] == 3
    assert [torch.equal(a[1], b[1]) for a, b in zip(seen["batches"], expected)] == [True] * len(expected)
    run(ws.scores("magnitude"))
    assert seen["batches"] is None  # a weight-only criterion reads no data
    with pytest.raises(ValueError, match="unknown criterion"):
        run(ws.scores("nope"))
    with pytest.raises(ValueError, match="needs data"):
        run(Workspace(torch.nn.Linear(1, 2), None).scores("snip"))


# --- same settings, same mask, same accuracy, on every path ---------------------------------------


def _window(model, data, criterion):
    from visualizer.core.analysis import rank_job
    from visualizer.core.training.workflows import evaluate_job

    ranking, _ = run(rank_job(model, data, criterion, "global", "unstructured"))
    masks = ranking.mask_at(DENSITY)
    row = run(evaluate_job(model, data, masks, {}))
    return masks, row["accuracy"]


def _cli(capsys, tmp_path, criterion):
    path = tmp_path / f"{criterion}.safetensors"
    code = main(["prune", "mlp", "--criterion", criterion, "--density", str(DENSITY), "--json", "--eval",
                 "--out", str(path)])
    out, _ = capsys.readouterr()
    assert code == 0
    return read_mask(path), json.loads(out)["accuracy"]


def _sweep(model, data, criterion, monkeypatch):
    """The sweep's row, and the mask it evaluated (caught on its way to the evaluation)."""
    seen = []
    original = experiments.evaluate_job

    def spy(model, batches, masks=None):
        seen.append(masks)
        return original(model, batches, masks)

    monkeypatch.setattr(experiments, "evaluate_job", spy)
    res = run(experiments.sweep(model, data, experiments.SweepConfig("mlp", (criterion,), (DENSITY,))))
    (row,) = res.rows
    (masks,) = seen
    assert row["retrain"] == "none" and row["score_batches"] == SCORE_BATCHES
    return masks, row["accuracy"]


def _same(a: MaskSet, b: MaskSet) -> bool:
    return set(a.masks) == set(b.masks) and all(torch.equal(a[n], b[n]) for n in a.masks)


@pytest.mark.parametrize("criterion", DATA_CRITERIA)
def test_same_settings_give_the_same_mask_and_accuracy_everywhere(criterion, digits, capsys, tmp_path, monkeypatch):
    model = load_model("mlp").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    window_mask, window_acc = _window(model, digits, criterion)
    cli_mask, cli_acc = _cli(capsys, tmp_path, criterion)
    sweep_mask, sweep_acc = _sweep(model, digits, criterion, monkeypatch)
    assert window_mask.kept() == cli_mask.kept() == sweep_mask.kept() == kept_count(DENSITY, window_mask.total())
    assert _same(window_mask, cli_mask) and _same(window_mask, sweep_mask)
    assert window_acc == cli_acc == sweep_acc
    # a pruned network at 5% is not the dense one: the accuracies compared are real ones
    assert window_acc < 0.9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing wrote the model


def test_the_snip_preset_scores_like_the_window_and_the_cli(digits, capsys, tmp_path):
    from visualizer.core.lecture.presets import snip_vs_magnitude_job

    preset = run(snip_vs_magnitude_job("mlp", "fc1.weight", DENSITY))
    window_mask, _ = _window(load_model("mlp").model, digits, "snip")
    cli_mask, _ = _cli(capsys, tmp_path, "snip")
    assert _same(preset.snip, window_mask) and _same(preset.snip, cli_mask)


def test_the_batches_decide_the_mask(digits):
    """The check above can fail: a different batch choice (the window's old first-4-unshuffled
    rule) gives a different SNIP mask at 5%."""
    from visualizer.core.pruning.criteria import score
    from visualizer.core.pruning.ranking import mask_from_scores

    model = load_model("mlp").model
    ours = mask_from_scores(run(Workspace(model, digits).scores("snip")), DENSITY)
    old = [(digits.x_train[i : i + 128], digits.y_train[i : i + 128]) for i in range(0, 512, 128)]
    theirs = mask_from_scores(run(score("snip", model, old)), DENSITY)
    assert not _same(ours, theirs)


def test_curvature_batches_fixed_order():
    class D:
        def split(self, which):
            return torch.arange(10.0)[:, None], torch.arange(10)

    ev = curvature_batches(D(), 2, 3)
    assert [int(y[0]) for _, y in ev.batches] == [0, 3] and ev.n_samples == 6
    assert curvature_batches(D(), 0, 4).n_samples == 10
    assert curvature_batches(D(), 99, 4).n_samples == 10
    with pytest.raises(ValueError):
        curvature_batches(D(), 1, 0)
