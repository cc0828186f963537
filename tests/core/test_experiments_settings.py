"""Issue 3: sweep rows carry every setting that produced them, and a cached row is reused only
when all of those settings agree (a different optimizer, data set or step budget recomputes)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from visualizer.core.tasks import run
from visualizer.core.training.experiments import (
    KEY_FIELDS,
    ROW_FIELDS,
    TRAIN_FIELDS,
    SweepConfig,
    read_rows,
    row_key,
    sweep,
    write_rows,
)
from visualizer.core.training.loop import TrainConfig

TC = TrainConfig(epochs=1, lr=1e-3, optimizer="adam", batch_size=32, max_steps=2, evaluate_each_epoch=False)


def test_rows_record_data_training_and_scoring_settings(mlp, digits):
    config = SweepConfig("mlp", ("magnitude", "snip"), (0.5,), retrain="finetune", train=TC)
    rows = run(sweep(mlp, digits, config)).rows
    by = {r["criterion"]: r for r in rows}
    for r in rows:
        assert set(ROW_FIELDS) <= set(r) and set(KEY_FIELDS) <= set(r)
        assert r["dataset"] == "digits" and r["optimizer"] == "adam" and r["batch_size"] == 32
        assert r["max_steps"] == 2 and r["label_smoothing"] == 0.0 and r["distill_weight"] == 0.0
    assert by["snip"]["score_batches"] == 4 and by["magnitude"]["score_batches"] == 0
    # without retraining no training setting applies: they are recorded as empty
    plain = run(sweep(mlp, digits, SweepConfig("mlp", ("magnitude",), (0.5,), train=TC))).rows[0]
    assert all(plain[f] is None for f in TRAIN_FIELDS) and plain["epochs"] == 0


@pytest.mark.parametrize("name", ["r.csv", "r.json"])
def test_cache_reuses_only_rows_with_identical_settings(mlp, digits, tmp_path, name):
    config = SweepConfig("mlp", ("magnitude",), (0.5, 0.2), retrain="finetune", train=TC)
    first = run(sweep(mlp, digits, config))
    path = tmp_path / name
    write_rows(first.rows, path)
    assert [row_key(r) for r in read_rows(path)] == [row_key(r) for r in first.rows]
    same = run(sweep(mlp, digits, config, previous=path))
    assert same.reused == 2 and same.computed == 0
    for change in ({"optimizer": "sgd"}, {"max_steps": 3}, {"batch_size": 16}, {"label_smoothing": 0.1}):
        other = replace(config, train=replace(TC, **change))
        res = run(sweep(mlp, digits, other, previous=path))
        assert res.reused == 0 and res.computed == 2, change
    # another data set with the same model reference is another experiment
    renamed = replace(digits, name="digits-copy")
    assert run(sweep(mlp, renamed, config, previous=path)).reused == 0


def test_rows_without_the_new_columns_are_recomputed_not_misread(mlp, digits, tmp_path):
    config = SweepConfig("mlp", ("magnitude",), (0.5,))
    row = run(sweep(mlp, digits, config)).rows[0]
    old = {k: row[k] for k in ("model", "criterion", "density", "scope", "retrain", "epochs", "lr", "seed",
                               "accuracy", "loss", "kept", "total")}
    old["accuracy"] = -1.0  # a stale row from an older file: must not be taken for this setting
    res = run(sweep(mlp, digits, config, previous=[old]))
    assert res.reused == 0 and res.rows[0]["accuracy"] == row["accuracy"]
