"""--device on every computing command (CPU plumbing): accepted, recorded, and a missing device
rejected in one line with exit 2."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.cli.device_commands import COMPUTING, devices_recorded, quick_args, run_json
from visualizer.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command, nested ones as "lab random-labels" (aliases once)."""
    parser = parser or build_parser()
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            nested = _commands(sub, f"{prefix}{name} ")
            out.update(nested or {f"{prefix}{name}": sub})
    return out


def test_every_computing_command_has_the_device_option():
    subs = _commands()
    with_device = {name for name, p in subs.items() if any("--device" in a.option_strings for a in p._actions)}
    assert with_device == set(COMPUTING)
    for name in COMPUTING:
        opt = next(a for a in subs[name]._actions if "--device" in a.option_strings)
        assert opt.default == "auto", name


@pytest.mark.parametrize("command", COMPUTING)
def test_device_cpu_runs_and_is_recorded(command, capsys, tmp_path):
    code, result, err = run_json(capsys, [*quick_args(command, "mlp", tmp_path), "--device", "cpu"])
    assert code == 0, err
    recorded = devices_recorded(command, result)
    assert recorded == {"cpu"}, (command, recorded)


def _absent_devices() -> list[str]:
    out = ["tpu", "cuda:x", f"cuda:{torch.cuda.device_count() + 7}"]
    if not torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        out.append("mps")
    return out


@pytest.mark.parametrize("device", _absent_devices())
@pytest.mark.parametrize("command", COMPUTING)
def test_missing_device_is_one_line_exit_2(command, device, capsys, tmp_path):
    code = main([*quick_args(command, "mlp", tmp_path), "--device", device])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pruneviz {command.split()[0]}: error: "), err
    assert "Traceback" not in err
    assert device.split(":")[0] in lines[0]
    # nothing was computed: the device is checked before the model loads
    assert not any(tmp_path.iterdir())


def test_amp_is_ignored_with_a_note_off_cuda(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("--amp is active on CUDA: this checks the CPU note")
    argv = ["train", "mlp", "--epochs", "1", "--device", "cpu"]
    code, plain, _ = run_json(capsys, argv)
    code_amp, amp, err = run_json(capsys, [*argv, "--amp"])
    assert code == code_amp == 0
    assert "--amp is ignored on cpu" in err
    assert amp["accuracy"] == plain["accuracy"] and amp["loss"] == plain["loss"]


def test_cuda_out_of_memory_is_one_line_naming_what_to_lower(capsys, monkeypatch):
    import visualizer.cli.curvature as curvature

    def oom(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")

    monkeypatch.setattr(curvature, "cmd_hessian", oom)
    code = main(["hessian", "mlp", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "out of GPU memory" in lines[0] and "--batches" in lines[0] and "Lanczos" in lines[0]
