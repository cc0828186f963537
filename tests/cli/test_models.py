"""CLI: models and info (the JSON shapes scripts depend on)."""

from __future__ import annotations

import json

from visualizer.cli import main
from visualizer.core.models.loaders import read_manifest
from visualizer.core.models.zoo import ZOO


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_shape(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list(ZOO)
    manifest = read_manifest()
    for r in rows:
        assert set(r) == {"name", "params", "accuracy"}
        assert isinstance(r["params"], int) and r["params"] > 0
        assert r["accuracy"] == manifest[r["name"]]["accuracy"]


def test_models_table(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "resnet-mini" in out and "accuracy" in out


def test_info_json_and_table(capsys):
    code, out, _ = run_cli(capsys, "info", "resnet-mini", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["params"] == read_manifest()["resnet-mini"]["params"]
    first = info["layers"][0]
    assert set(first) == {"name", "kind", "shape", "params", "prunable"}
    assert first == {"name": "stem.0.weight", "kind": "Conv2d", "shape": [16, 1, 3, 3], "params": 144, "prunable": True}
    assert any(r["kind"] == "BatchNorm2d" and not r["prunable"] for r in info["layers"])
    code, out, _ = run_cli(capsys, "info", "rnn")
    assert code == 0 and "lstm.weight_hh_l0" in out and "LSTM" in out
