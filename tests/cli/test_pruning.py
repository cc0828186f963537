"""CLI: prune (the JSON shape scripts depend on), and errors as one stderr line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visualizer.cli import main
from visualizer.core.io.mask_formats import read_mask
from visualizer.core.models.loaders import read_manifest
from visualizer.core.models.zoo import ZOO

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", list(ZOO))
def test_prune_json_on_every_bundled_model(capsys, name):
    code, out, _ = run_cli(capsys, "prune", name, "--criterion", "magnitude", "--density", "0.3", "--json")
    assert code == 0
    res = json.loads(out)
    assert set(res) == {"density", "kept", "total", "device", "layers"}
    assert res["kept"] == int(0.3 * res["total"]) or res["kept"] == (3 * res["total"]) // 10
    assert isinstance(res["density"], float) and res["density"] == res["kept"] / res["total"]
    assert sum(layer["kept"] for layer in res["layers"]) == res["kept"]
    assert sum(layer["total"] for layer in res["layers"]) == res["total"]
    for layer in res["layers"]:
        assert set(layer) == {"name", "density", "kept", "total"}
        assert layer["density"] == pytest.approx(layer["kept"] / layer["total"])


@pytest.mark.parametrize("criterion", ["random", "snip", "grasp", "taylor", "obd", "l1-norm", "l2-norm", "bn-scale"])
def test_prune_every_criterion_on_resnet_mini(capsys, criterion):
    code, out, err = run_cli(
        capsys, "prune", "resnet-mini", "-c", criterion, "-d", "0.5", "--probes", "1", "--batch-size", "16", "--json"
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["kept"] == res["total"] // 2


def test_prune_eval_out_and_layer_scope(capsys, tmp_path):
    path = tmp_path / "m.safetensors"
    code, out, _ = run_cli(
        capsys, "prune", "lenet", "-c", "magnitude", "-d", "0.5", "--scope", "layer", "--eval", "--out", str(path), "--json"
    )
    assert code == 0
    res = json.loads(out)
    assert 0.0 <= res["accuracy"] <= 1.0 and res["accuracy"] > 0.5
    for layer in res["layers"]:
        assert layer["kept"] == layer["total"] // 2
    masks = read_mask(path)
    assert masks.kept() == res["kept"] and masks.metadata["criterion"] == "magnitude"
    # density 1 keeps everything and leaves the manifest accuracy
    code, out, _ = run_cli(capsys, "prune", "mlp", "-d", "1", "--eval", "--json")
    res = json.loads(out)
    assert res["density"] == 1.0 and res["accuracy"] == pytest.approx(read_manifest()["mlp"]["accuracy"], abs=3e-3)


def test_prune_channel_structure(capsys):
    code, out, _ = run_cli(capsys, "prune", "se-cnn", "-c", "l2-norm", "-d", "0.5", "--structure", "channel", "--json")
    assert code == 0
    res = json.loads(out)
    assert 0 < res["kept"] < res["total"]


def test_prune_text_output(capsys):
    code, out, _ = run_cli(capsys, "prune", "mlp", "-d", "0.1", "--eval")
    assert code == 0 and "fc1.weight" in out and "test accuracy" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["prune", "mlp", "-c", "bn-scale", "-d", "0.5"], "BatchNorm"),
        (["prune", "mlp", "-d", "1.5"], "density"),
        (["prune", "mlp", "-c", "nope", "-d", "0.5"], "unknown criterion"),
        (["prune", "mlp", "-d", "0.5", "--scope", "net"], "unknown scope"),
        (["prune", "mlp", "-d", "0.5", "--structure", "x"], "unknown structure"),
        (["prune", "no-such-model", "-d", "0.5"], "unknown model"),
        (["info", "missing.pt"], "not found"),
        (["prune", "mlp", "-c", "snip", "-d", "0.5", "--batches", "0"], "--batches"),
        (["prune", "lenet", "-c", "snip", "-d", "0.5", "--data", "sequence"], "lenet cannot read sequence"),
        (["train", "rnn", "--data", "digits-rows", "--epochs", "1"], "rnn outputs 8 classes"),
    ],
)
def test_errors_exit_nonzero_with_one_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_subprocess_error_has_no_traceback(tmp_path):
    pickled = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), pickled)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "visualizer", "info", str(pickled)], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "refused" in proc.stderr


def test_trusted_pickle_in_process(capsys, tmp_path):
    pickled = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), pickled)
    code, out, _ = run_cli(capsys, "info", str(pickled), "--trust", "--json")
    assert code == 0 and json.loads(out)["layers"][0]["name"] == "0.weight"
