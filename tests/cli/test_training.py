"""CLI shapes of train, imp, dst, sweep and lth-report (tiny runs on the bundled models)."""

from __future__ import annotations

import csv
import json

import pytest

from visualizer.cli import main
from visualizer.core.io.mask_formats import read_mask, write_mask
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.masks import MaskSet


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_with_mask_and_options(capsys, tmp_path):
    model = load_model("mlp").model
    masks = MaskSet.for_model(model)
    for m in masks.masks.values():
        m[..., ::2] = False  # keep every other input column
    write_mask(masks, tmp_path / "m.safetensors")
    out = run_json(capsys, "train", "mlp", "--mask", str(tmp_path / "m.safetensors"), "--epochs", "1",
                   "--label-smoothing", "0.1", "--distill", "--seed", "3", "--out", str(tmp_path / "w.safetensors"))
    assert out["density"] == pytest.approx(0.5, abs=0.01)
    assert out["distill"] is True and out["label_smoothing"] == 0.1 and out["seed"] == 3
    assert {"accuracy", "loss", "history", "before"} <= set(out)
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "w.safetensors"))
    assert bool((w["fc1.weight"][:, ::2] == 0).all())


def test_imp_json_rounds_and_files(capsys, tmp_path):
    out = run_json(capsys, "imp", "mlp", "--rounds", "2", "--rate", "0.5", "--rewind", "1",
                   "--control", "reinit", "--out", str(tmp_path), "--epochs", "1", "--seed", "1")
    rounds = out["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["density"] == 1.0
    assert [r["density"] for r in rounds[1:]] == [0.5, 0.25]
    assert all({"round", "density", "accuracy", "reinit_accuracy"} <= set(r) for r in rounds)
    with open(tmp_path / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"model", "round", "density", "accuracy", "rate", "rewind"} <= set(rows[0])
    assert read_mask(tmp_path / "mask_round2.safetensors").density() == 0.25
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "trained_round2.safetensors"))
    mask = read_mask(tmp_path / "mask_round2.safetensors")
    assert bool((trained["fc1.weight"][~mask["fc1.weight"]] == 0).all())
    assert (tmp_path / "rewind_point.safetensors").exists()


def test_dst_json(capsys):
    out = run_json(capsys, "dst", "mlp", "--method", "set", "--density", "0.2", "--epochs", "1",
                   "--update-every", "5", "--seed", "2")
    assert out["achieved_density"] == pytest.approx(0.2, abs=1e-3)
    assert out["updates"] and all(u["density"] == out["achieved_density"] for u in out["updates"])
    assert out["distribution"] == "erk" and out["layer_density"]["fc3.weight"] > out["layer_density"]["fc1.weight"]
    out = run_json(capsys, "dst", "mlp", "--method", "rigl", "--density", "0.2", "--epochs", "1",
                   "--distribution", "uniform")
    assert all(d == pytest.approx(0.2, abs=1e-3) for d in out["layer_density"].values())


def test_prox_json(capsys, tmp_path):
    out = run_json(capsys, "prox", "inception-mini", "--method", "group-lasso", "--lam", "5", "--epochs", "1",
                   "--out", str(tmp_path / "m.safetensors"))
    assert out["optimizer"] == "sgd" and out["zero_groups"] > 0 and out["density"] < 1.0
    assert out["groups"] == 8  # the Inception branches
    out = run_json(capsys, "prox", "inception-mini", "--method", "group-lasso", "--groups", "channels",
                   "--lam", "0", "--epochs", "1")
    assert out["groups"] > 8 and out["zero_groups"] == 0
    out = run_json(capsys, "prox", "mlp", "--method", "iht", "--density", "0.2", "--epochs", "1")
    assert out["density"] == pytest.approx(0.2, abs=1e-4)


def test_sweep_csv_columns_and_resume(capsys, tmp_path):
    path = tmp_path / "results.csv"
    args = ["sweep", "lenet", "--criteria", "magnitude,random", "--densities", "1,0.1", "--retrain", "none",
            "--out", str(path)]
    out = run_json(capsys, *args)
    assert out["computed"] == 4 and len(out["rows"]) == 4
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert {"model", "criterion", "density", "retrain", "accuracy", "loss", "seed"} <= set(rows[0])
    assert json.loads(path.with_suffix(".json").read_text())["rows"][0]["criterion"] == "magnitude"
    again = run_json(capsys, *args)
    assert again["computed"] == 0 and again["reused"] == 4


def test_lth_report_writes_csv_and_png(capsys, tmp_path):
    out = run_json(capsys, "lth-report", "mlp", "--out", str(tmp_path), "--rounds", "1", "--rate", "0.5",
                   "--epochs", "1")
    assert (tmp_path / "lth.csv").exists() and (tmp_path / "lth.json").exists()
    png = (tmp_path / "lth.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert {r["kind"] for r in out["rows"]} == {"ticket", "reinit", "random-mask"}


def test_errors_are_one_line(capsys, tmp_path):
    assert main(["sweep", "lenet", "--criteria", "magnitude", "--densities", "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert "density" in capsys.readouterr().err
    assert main(["imp", "mlp", "--rounds", "1", "--rate", "1.5", "--out", str(tmp_path)]) == 2
    assert main(["train", "mlp", "--mask", str(tmp_path / "none.safetensors"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "rate" in err and "not found" in err
