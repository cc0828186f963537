"""CLI: sensitivity (rows as a JSON list, bad input as one line, resume) and prune --allocation."""

from __future__ import annotations

import json

import pytest

from visualizer.cli import main
from visualizer.core.pruning.ranking import kept_count


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sensitivity_json_is_a_list_of_rows(capsys):
    code, out, _ = run_cli(capsys, "sensitivity", "lenet", "--levels", "0.5,0.1", "--units", "conv1,fc3",
                           "--eval-batches", "1", "--json")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 4
    assert [(r["unit"], r["level"]) for r in rows] == [("conv1.weight", 0.5), ("conv1.weight", 0.1),
                                                      ("fc3.weight", 0.5), ("fc3.weight", 0.1)]
    assert rows[1]["kept"] == kept_count(0.1, 54) and rows[0]["method"] == "cached-prefix"


def test_sensitivity_table_and_resume_from_the_rows_file(capsys, tmp_path):
    out = tmp_path / "s.csv"
    args = ("sensitivity", "resnet-mini", "--levels", "0.3", "--unit", "group", "--eval-batches", "1",
            "--out", str(out))
    code, text, _ = run_cli(capsys, *args)
    assert code == 0 and "stem.0" in text and "cells computed, 0 reused" in text
    code, text, _ = run_cli(capsys, *args)
    assert code == 0 and "0 cells computed" in text


@pytest.mark.parametrize("argv, message", [
    (["--levels", "0,0.5"], "a level is a density in (0, 1], got '0'"),
    (["--levels", "1.2"], "a level is a density in (0, 1], got '1.2'"),
    (["--units", "conv9"], "no unit named 'conv9'"),
    (["--unit", "tensor"], "unknown unit 'tensor'"),
])
def test_sensitivity_bad_input_is_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, "sensitivity", "lenet", "--eval-batches", "1", *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pruneviz sensitivity: error: ") and message in lines[0]


def test_sensitivity_without_data_is_one_line(capsys, tmp_path):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    code, _, err = run_cli(capsys, "sensitivity", f"{src}:build")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "has no default dataset" in err


@pytest.mark.parametrize("allocation", ["uniform", "global", "erk", "owl", "sensitivity"])
def test_prune_allocation_keeps_the_exact_budget(capsys, allocation):
    code, out, _ = run_cli(capsys, "prune", "lenet", "--density", "0.1", "--allocation", allocation, "--json")
    assert code == 0
    res = json.loads(out)
    assert res["allocation"] == allocation and res["kept"] == kept_count(0.1, res["total"])
    assert sum(layer["kept"] for layer in res["layers"]) == res["kept"]


def test_prune_sensitivity_allocation_reads_rows_and_says_when_it_cannot_meet_the_budget(capsys, tmp_path):
    rows = tmp_path / "rows.csv"
    assert run_cli(capsys, "sensitivity", "lenet", "--levels", "0.5,0.2", "--eval-batches", "1", "--out", str(rows))[0] == 0
    code, out, _ = run_cli(capsys, "prune", "lenet", "--density", "0.3", "--allocation", "sensitivity",
                           "--sensitivity-rows", str(rows), "--json")
    assert code == 0 and json.loads(out)["kept"] == kept_count(0.3, json.loads(out)["total"])
    code, _, err = run_cli(capsys, "prune", "lenet", "--density", "0.05", "--allocation", "sensitivity",
                           "--sensitivity-rows", str(rows))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot meet the budget" in err
    code, _, err = run_cli(capsys, "prune", "lenet", "--density", "0.1", "--allocation", "erk,owl")
    assert code == 2 and "one --allocation" in err


def test_sweep_allocation_grid_and_bad_allocation(capsys, tmp_path):
    out = tmp_path / "sweep.csv"
    code, text, _ = run_cli(capsys, "sweep", "lenet", "--criteria", "magnitude", "--densities", "0.1",
                            "--allocation", "uniform,erk", "--out", str(out), "--json")
    assert code == 0
    rows = json.loads(text)["rows"]
    assert [r["allocation"] for r in rows] == ["uniform", "erk"]
    assert all(r["kept"] == kept_count(0.1, r["total"]) for r in rows)
    code, _, err = run_cli(capsys, "sweep", "lenet", "--densities", "0.1", "--allocation", "erk,magic",
                           "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown allocation 'magic'" in err
