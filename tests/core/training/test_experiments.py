"""Sweeps stream rows, reuse one ranking per criterion, and resume after a cancel."""

from __future__ import annotations

from dataclasses import replace

import pytest

import visualizer.core.workspace as workspace
from visualizer.core.models.loaders import load_model
from visualizer.core.tasks import Cancelled, run
from visualizer.core.training.experiments import (
    KEY_FIELDS,
    ROW_FIELDS,
    TRAIN_FIELDS,
    SweepConfig,
    lth_report,
    read_rows,
    row_key,
    sweep,
    write_rows,
)
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import initial_state

DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05)


def test_sweep_streams_rows_with_every_setting(lenet, digits, monkeypatch):
    calls = []
    original = workspace.score_job

    def counting(ws, criterion, *a, **k):
        calls.append(criterion)
        return (yield from original(ws, criterion, *a, **k))

    monkeypatch.setattr(workspace, "score_job", counting)
    streamed = []
    config = SweepConfig("lenet", ("magnitude", "random"), DENSITIES)
    res = run(sweep(lenet, digits, config), lambda s: streamed.append(s.partial) if isinstance(s.partial, dict) else None)
    assert calls == ["magnitude", "random"]  # one scoring (one ranking) per criterion serves every density
    assert len(streamed) == len(res.rows) == 10
    assert streamed == res.rows
    for row in res.rows:
        assert set(ROW_FIELDS) <= set(row)
        assert abs(row["achieved_density"] - row["density"]) <= 1.0 / row["total"]
    dense = [r for r in res.rows if r["density"] == 1.0]
    assert all(r["accuracy"] == pytest.approx(0.961, abs=1e-3) for r in dense)  # manifest accuracy
    mag = {r["density"]: r["accuracy"] for r in res.rows if r["criterion"] == "magnitude"}
    rnd = {r["density"]: r["accuracy"] for r in res.rows if r["criterion"] == "random"}
    assert mag[0.5] > rnd[0.5]  # magnitude beats random without retraining


def test_sweep_resumes_after_cancel_without_recomputing(lenet, digits, tmp_path):
    config = SweepConfig("lenet", ("magnitude", "random"), DENSITIES)
    got = []

    def on_step(step):
        if isinstance(step.partial, dict):
            got.append(step.partial)

    with pytest.raises(Cancelled):
        run(sweep(lenet, digits, config), on_step, should_stop=lambda: len(got) >= 3)
    assert len(got) == 3
    path = tmp_path / "partial.csv"
    write_rows(got, path)
    resumed = run(sweep(lenet, digits, config, previous=path))
    assert resumed.reused == 3 and resumed.computed == 7
    fresh = run(sweep(lenet, digits, config))
    assert [row_key(r) for r in resumed.rows] == [row_key(r) for r in fresh.rows]
    assert [r["accuracy"] for r in resumed.rows] == pytest.approx([r["accuracy"] for r in fresh.rows])
    # a finished sweep given its own rows recomputes nothing (JSON works as the cache too)
    write_rows(fresh.rows, tmp_path / "all.json")
    again = run(sweep(lenet, digits, config, previous=tmp_path / "all.json"))
    assert again.computed == 0 and again.reused == 10


def test_structured_criteria_prune_whole_channels(lenet, digits):
    res = run(sweep(lenet, digits, SweepConfig("lenet", ("l1-norm", "magnitude"), (0.5,))))
    by = {r["criterion"]: r for r in res.rows}
    assert by["l1-norm"]["structure"] == "channel" and by["magnitude"]["structure"] == "unstructured"
    channel = run(sweep(lenet, digits, SweepConfig("lenet", ("magnitude",), (0.5,), structure="channel")))
    assert channel.rows[0]["structure"] == "channel"


def test_rows_round_trip_csv_and_json(tmp_path):
    rows = [{"model": "m", "criterion": "snip", "density": 0.1, "scope": "global", "retrain": "none",
             "epochs": 0, "lr": 0.0, "seed": 0, "accuracy": 0.5, "loss": float("nan"), "kept": 1, "total": 10}]
    for name in ("r.csv", "r.json"):
        write_rows(rows, tmp_path / name)
        back = read_rows(tmp_path / name)
        assert row_key(back[0]) == row_key(rows[0])
        assert back[0]["accuracy"] == 0.5 and back[0]["loss"] is None
    assert read_rows(tmp_path / "missing.csv") == []
    assert set(KEY_FIELDS) <= set(ROW_FIELDS)


def test_sweep_with_retraining(lenet, digits):
    init, _ = initial_state("lenet", lenet)
    tc = TrainConfig(epochs=1, lr=1e-3, max_steps=5, evaluate_each_epoch=False)
    for retrain in ("finetune", "rewind", "init"):
        config = SweepConfig("lenet", ("magnitude",), (0.2,), retrain=retrain, train=tc)
        res = run(sweep(lenet, digits, config, init_state=init))
        (row,) = res.rows
        assert row["retrain"] == retrain and row["epochs"] == 1 and row["lr"] == 1e-3
    with pytest.raises(ValueError, match="init"):
        run(sweep(lenet, digits, SweepConfig("lenet", ("magnitude",), (0.2,), retrain="rewind")))
    with pytest.raises(ValueError, match="retrain"):
        run(sweep(lenet, digits, SweepConfig("lenet", retrain="sometimes")))


def test_lth_report_rows(digits):
    mlp = load_model("mlp").model
    init, _ = initial_state("mlp", mlp)
    tc = TrainConfig(epochs=1, lr=1e-3, max_steps=5, evaluate_each_epoch=False)
    streamed = []
    rows = run(lth_report(mlp, "mlp", digits, init, rounds=1, rate=0.5, config=tc),
               lambda s: streamed.extend(s.partial) if isinstance(s.partial, list) else None)
    assert streamed == rows
    assert {(r["kind"], r["round"]) for r in rows} == {(k, i) for k in ("ticket", "reinit", "random-mask") for i in (0, 1)}
    assert all(r["density"] == 0.5 for r in rows if r["round"] == 1)




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
