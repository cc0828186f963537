"""Result rows are bound to what produced them: the row cache's key holds the evaluation sample,
the data and the weights; a sweep's stream holds its rows only; curves are one series per
(criterion, retraining, kind, dataset) with seeds folded into a mean and a band; the dense
baseline belongs to its dataset."""

from __future__ import annotations

import copy

import pytest
import torch

from visualizer.core.tasks import run
from visualizer.core.training.experiments import (
    SweepConfig,
    curve_series,
    dense_baseline,
    row_key,
    sweep,
)
from visualizer.core.training.loop import TrainConfig


def test_preview_sample_rows_are_not_reused_as_whole_split_rows(lenet, digits):
    """The window evaluates a streamed source on a 32-sample preview; those rows were reused by
    a whole-split sweep of the same settings (0.6875 shown where the whole split gives 0.3133)."""
    preview = SweepConfig("lenet", ("magnitude",), (0.5, 0.1), train=TrainConfig(eval_batches=2, eval_batch_size=16))
    rows = run(sweep(lenet, digits, preview)).rows
    whole = run(sweep(lenet, digits, SweepConfig("lenet", ("magnitude",), (0.5, 0.1)), previous=rows))
    assert whole.reused == 0 and whole.computed == 2
    assert {r["eval_sample"] for r in rows} == {"2x16"}
    again = run(sweep(lenet, digits, preview, previous=rows))
    assert again.reused == 2  # the same sample is the same number


def test_rows_of_other_weights_under_the_same_name_are_not_reused(lenet, digits):
    config = SweepConfig("lenet", ("magnitude",), (0.5,))
    rows = run(sweep(lenet, digits, config)).rows
    trained = copy.deepcopy(lenet)
    with torch.no_grad():
        trained.fc1.weight.mul_(0.5)  # "keep the trained weights": same reference, other weights
    res = run(sweep(trained, digits, config, previous=rows))
    assert res.reused == 0 and rows[0]["weights"] != res.rows[0]["weights"]


def test_a_retraining_sweep_streams_its_rows_only(mlp, digits):
    """The training loop's progress dicts (with accuracy, final, test_loss) passed through the
    sweep as if they were rows: the serial file got an extra row and two extra columns."""
    streamed = []
    config = SweepConfig("mlp", ("magnitude",), (0.5,), retrain="finetune", train=TrainConfig(epochs=1))
    res = run(sweep(mlp, digits, config), lambda s: streamed.append(s.partial) if s.partial is not None else None)
    assert streamed == res.rows and len(streamed) == 1
    assert "final" not in streamed[0] and "test_loss" not in streamed[0]


def _row(seed, density, accuracy, dataset="digits", criterion="magnitude"):
    return {"model": "lenet", "dataset": dataset, "criterion": criterion, "retrain": "none", "seed": seed,
            "density": density, "accuracy": accuracy}


def test_seeds_fold_into_one_series_with_a_band():
    rows = [_row(s, d, a) for s, acc in ((0, (0.9, 0.5)), (1, (0.8, 0.3)), (2, (0.7, 0.4)))
            for d, a in zip((0.5, 0.1), acc)]
    (series,) = curve_series(rows)
    assert series.densities == [0.5, 0.1]  # one point per density, not a zig-zag through seeds
    assert series.mean == pytest.approx([0.8, 0.4])
    assert series.low == pytest.approx([0.7, 0.3]) and series.high == pytest.approx([0.9, 0.5])
    assert series.seeds == 3 and len(series.rows) == 6


def test_each_dataset_is_its_own_series():
    rows = [_row(0, 0.5, 0.9), _row(0, 0.1, 0.5), _row(0, 0.5, 0.4, "folder:/x"), _row(0, 0.1, 0.2, "folder:/x")]
    series = curve_series(rows)
    assert len(series) == 2 and {s.dataset for s in series} == {"digits", "folder:/x"}
    assert all(s.seeds == 1 and s.low == s.mean == s.high for s in series)


def test_the_dense_baseline_belongs_to_its_dataset():
    reported = ("digits", 0.961)
    assert dense_baseline([], "digits", reported) == 0.961
    assert dense_baseline([], "folder:/x", reported) is None
    rows = [_row(0, 1.0, 0.42, "folder:/x"), _row(1, 1.0, 0.44, "folder:/x"), _row(0, 1.0, 0.9, "digits")]
    assert dense_baseline(rows, "folder:/x", reported) == pytest.approx(0.43)


def test_row_key_reads_the_new_fields_from_csv_text():
    row = {"eval_sample": "2x16", "weights": "abc", "data_id": "d1"}
    assert row_key(row) == row_key(dict(row))
    assert row_key(row) != row_key({**row, "eval_sample": "all"})


def test_provenance_is_current_for_its_model_version_and_the_data_it_read():
    from visualizer.core.provenance import Provenance, next_version

    m, d = next_version(), next_version()
    shown = Provenance("lenet", m, "digits", d)
    reads = Provenance("lenet", m, "digits", d, density=0.2)
    weights_only = Provenance("lenet", m)
    assert reads.current_under(shown) and weights_only.current_under(shown)
    new_data = Provenance("lenet", m, "folder:/x", next_version())
    assert not reads.current_under(new_data) and weights_only.current_under(new_data)
    assert not weights_only.current_under(Provenance("lenet", next_version(), "digits", d))
    assert reads.label() == "lenet on digits at 20.0% density"


def test_identities_follow_content(lenet, digits):
    from visualizer.core.provenance import data_id, weights_id

    assert weights_id(lenet) == weights_id(copy.deepcopy(lenet))
    assert data_id(digits) == data_id(digits) and len(data_id(digits)) == 12


def test_rows_of_other_weights_are_another_series():
    """Trained weights kept under the same model name: their rows are not joined to the old ones."""
    rows = [{**_row(0, 0.5, 0.9), "weights": "aaa"}, {**_row(0, 0.5, 0.95), "weights": "bbb"}]
    assert [s.weights for s in curve_series(rows)] == ["aaa", "bbb"]


def test_window_rows_record_the_weights_they_started_from(mlp, digits):
    from visualizer.core.provenance import weights_id
    from visualizer.core.pruning.masks import MaskSet
    from visualizer.core.training.workflows import evaluate_job

    masks = MaskSet.dense({n: p for n, p in mlp.named_parameters() if n.endswith("weight")})
    row = run(evaluate_job(mlp, digits, masks, {"model": "mlp"}))
    assert row["weights"] == weights_id(mlp)
