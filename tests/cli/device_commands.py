"""The computing commands with a quick argument list each, shared by the device plumbing tests
(tests/cli/test_device.py) and the CUDA suite (tests/cuda/)."""

from __future__ import annotations

import json
from pathlib import Path

from visualizer.cli import main

# every command that computes on a model takes --device (the CLI's one rule)
COMPUTING = ("prune", "train", "imp", "dst", "prox", "sweep", "lth-report", "hessian", "landscape",
             "graph", "shrink", "speed", "sensitivity", "lab random-labels")


def quick_args(command: str, model: str, tmp: Path) -> list[str]:
    """A small but real run of ``command`` on ``model`` (seconds on the bundled mlp)."""
    return {
        "prune": ["prune", model, "-c", "snip", "-d", "0.3", "--batches", "1", "--eval"],
        "train": ["train", model, "--epochs", "1"],
        "imp": ["imp", model, "--rounds", "1", "--rate", "0.5", "--epochs", "1", "--out", str(tmp / "imp")],
        "dst": ["dst", model, "--method", "rigl", "--density", "0.3", "--epochs", "1", "--update-every", "5"],
        "prox": ["prox", model, "--method", "iht", "--density", "0.3", "--epochs", "1"],
        "sweep": ["sweep", model, "--criteria", "magnitude,snip", "--densities", "0.5,0.2",
                  "--out", str(tmp / "sweep.csv")],
        "lth-report": ["lth-report", model, "--rounds", "1", "--epochs", "1", "--out", str(tmp / "lth")],
        "hessian": ["hessian", model, "--top-k", "1", "--max-steps", "30"],
        "landscape": ["landscape", model, "--dims", "1", "--steps", "3", "--batches", "1", "--out", str(tmp / "l.npz")],
        "graph": ["graph", model],
        "shrink": ["shrink", model, "--density", "0.5"],
        "speed": ["speed", model, "--density", "0.5", "--repeats", "1", "--batch", "4"],
        "sensitivity": ["sensitivity", model, "--levels", "0.5"],
        # the lab trains its own model (the bundled MLP)
        "lab random-labels": ["lab", "random-labels", "--rounds", "1", "--epochs", "1"],
    }[command]


def run_json(capsys, argv: list[str]) -> tuple[int, dict, str]:
    """Run the CLI with --json; (exit code, parsed stdout, stderr)."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def devices_recorded(command: str, result: dict | list) -> set[str]:
    """Every device a command's JSON result records (rows included; sensitivity prints a list)."""
    if isinstance(result, list):
        result = {"rows": result}
    found = {result["device"]} if "device" in result else set()
    for key in ("rows", "rounds"):  # lists of result rows (the lab's "rounds" is a count)
        rows = result.get(key)
        for row in rows if isinstance(rows, list) else []:
            if "device" in row:
                found.add(row["device"])
    return found
