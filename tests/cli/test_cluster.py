"""--cluster and --seeds on sweep and imp: the cluster's CSV equals the serial one; without Ray,
or with a bad address, one line says what to do."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from visualizer.cli import main
from visualizer.core.training.cluster import INSTALL_HINT


@pytest.fixture(scope="module")
def local_cluster():
    """One local Ray session for the module: --cluster joins it (and leaves it running)."""
    from visualizer.core.training.cluster import connect

    with connect("local:2") as r:
        yield r


SWEEP = ["sweep", "mlp", "--criteria", "magnitude,random", "--densities", "0.5,0.1", "--seeds", "0,1",
         "--retrain", "none"]


def csv_rows(path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_sweep_on_a_local_cluster_writes_the_serial_csv(capsys, tmp_path, local_cluster):
    assert main([*SWEEP, "--out", str(tmp_path / "serial.csv")]) == 0
    capsys.readouterr()
    assert main([*SWEEP, "--cluster", "local:2", "--out", str(tmp_path / "ray.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["computed"] == 8
    serial, cluster = csv_rows(tmp_path / "serial.csv"), csv_rows(tmp_path / "ray.csv")
    assert [r["seed"] for r in cluster] == ["0", "0", "1", "1"] * 2  # grid order on disk
    for s, c in zip(serial, cluster):
        assert {k: v for k, v in s.items() if k not in ("accuracy", "loss")} == \
               {k: v for k, v in c.items() if k not in ("accuracy", "loss")}
        assert float(c["accuracy"]) == pytest.approx(float(s["accuracy"]), abs=1e-6)
        assert float(c["loss"]) == pytest.approx(float(s["loss"]), abs=1e-6)


@pytest.mark.parametrize("command", [
    [*SWEEP, "--out", "{tmp}/x.csv"],
    ["imp", "mlp", "--rounds", "1", "--rate", "0.5", "--out", "{tmp}/imp"],
    ["lth-report", "mlp", "--rounds", "1", "--out", "{tmp}/lth"],
])
def test_cluster_without_ray_is_one_line_with_the_install_hint(capsys, tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    assert main([*argv, "--cluster", "local:2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and INSTALL_HINT in err and "pip install 'pruneviz[cluster]'" in err


@pytest.mark.parametrize("flag, value", [("--cluster", "somewhere"), ("--cluster", "local:0"), ("--seeds", "0,x")])
def test_bad_cluster_or_seeds_is_one_line(capsys, tmp_path, flag, value):
    assert main([*SWEEP, "--out", str(tmp_path / "x.csv"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and value in err


def test_imp_with_several_seeds_writes_one_folder_per_seed_and_the_cluster_the_same(capsys, tmp_path, local_cluster):
    imp = ["imp", "mlp", "--rounds", "1", "--rate", "0.5", "--epochs", "1", "--seeds", "0,1", "--json"]
    assert main([*imp, "--out", str(tmp_path / "serial")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in out["runs"]] == [0, 1]
    for s in (0, 1):
        assert (tmp_path / "serial" / f"seed{s}" / "mask_round1.safetensors").exists()
    serial = csv_rows(tmp_path / "serial" / "rounds.csv")
    assert sorted({r["seed"] for r in serial}) == ["0", "1"]
    assert main([*imp, "--cluster", "local:2", "--out", str(tmp_path / "ray")]) == 0
    capsys.readouterr()
    cluster = csv_rows(tmp_path / "ray" / "rounds.csv")
    assert [(r["seed"], r["round"], r["kept"]) for r in cluster] == [(r["seed"], r["round"], r["kept"]) for r in serial]
    for s, c in zip(serial, cluster):
        assert float(c["accuracy"]) == pytest.approx(float(s["accuracy"]), abs=1e-6)


def test_lth_report_seeds_on_the_cluster(capsys, tmp_path, local_cluster):
    assert main(["lth-report", "mlp", "--rounds", "1", "--rate", "0.5", "--epochs", "1", "--seeds", "0,1",
                 "--cluster", "local:2", "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {(r["seed"], r["kind"]) for r in out["rows"]} == {(s, k) for s in (0, 1) for k in ("ticket", "reinit", "random-mask")}
    assert (tmp_path / "lth.png").read_bytes()[:4] == b"\x89PNG"


def test_ctrl_c_cancels_the_tasks_and_keeps_the_finished_rows(capsys, tmp_path, monkeypatch, local_cluster):
    from visualizer.core.training import experiments

    add = experiments.RowFile.add
    calls = []

    def interrupted_after_two(self, row):
        add(self, row)
        calls.append(row)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl+C while rows stream in

    monkeypatch.setattr(experiments.RowFile, "add", interrupted_after_two)
    path = tmp_path / "rows.csv"
    assert main([*SWEEP, "--cluster", "local:2", "--out", str(path)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2 rows kept" in err
    assert len(csv_rows(path)) == 2
    monkeypatch.setattr(experiments.RowFile, "add", add)
    assert main([*SWEEP, "--cluster", "local:2", "--resume", "--out", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reused"] == 2 and out["computed"] == 6 and len(csv_rows(path)) == 8
