"""CLI shapes of `pruneviz lab NAME` (small runs)."""

from __future__ import annotations

import json

import pytest

from visualizer.cli import main


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mask_probability_json_and_table(capsys):
    out = run_json(capsys, "lab", "mask-probability", "--n", "4", "--k", "1", "--threshold", "1",
                   "--trials", "20000", "--seed", "2")
    assert out["t_over_sigma"] == [1.0]
    assert abs(out["monte_carlo"][0] - out["formula"][0]) <= 4 * out["stderr"][0]
    assert main(["lab", "mask_probability", "--n", "4", "--k", "1", "--trials", "1000"]) == 0
    text = capsys.readouterr().out
    assert "formula" in text and "monte carlo" in text and "best t/sigma" in text


def test_phase_transition_json(capsys):
    out = run_json(capsys, "lab", "phase-transition", "--n", "20", "--trials", "2", "--solver", "iht")
    deltas = {c["delta"] for c in out["cells"]}
    rhos = {c["rho"] for c in out["cells"]}
    assert out["solver"] == "iht" and len(out["cells"]) == len(deltas) * len(rhos) >= 25
    assert all({"delta", "rho", "success"} <= set(c) for c in out["cells"])
    assert len(out["curve_delta"]) == len(out["curve_rho"])


def test_a_optimal_json(capsys):
    out = run_json(capsys, "lab", "a-optimal", "--m", "8", "--d", "2", "--k", "4", "--trials", "3")
    assert len(out["trials"]) == 3
    assert all(t["a_optimal_error"] <= t["magnitude_error"] + 1e-12 for t in out["trials"])


@pytest.mark.parametrize("argv, message", [
    (["lab", "a-optimal", "--m", "40", "--k", "20"], "exhaustive limit"),
    (["lab", "mask-probability", "--k", "30"], "k must be in"),
    (["lab", "mask-probability", "--threshold", "-1"], "--threshold"),
    (["lab", "random-labels", "--rounds", "0"], "rounds must be"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_random_labels_table(capsys):
    assert main(["lab", "random-labels", "--rounds", "1", "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    for name in ("dense, true labels", "dense, random labels", "ticket, true labels", "ticket, random labels"):
        assert name in text
    assert "inside chance band" in text and "chance 0.100" in text
