"""The CLI on Hugging Face folders: info counts Conv1D weights, graph takes --example-input, bad
folders are one line on stderr."""

from __future__ import annotations

import json

import pytest

from visualizer.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_on_gpt2(capsys, hf_gpt2):
    code, out, _ = run_cli(capsys, "info", f"hf:{hf_gpt2}", "--json")
    info = json.loads(out)
    assert code == 0 and info["weights"] == "pretrained: model.safetensors"
    assert info["prunable"] == 2 * (32 * 96 + 32 * 32 + 32 * 64 + 64 * 32) + 96 * 32
    layers = {row["name"]: row for row in info["layers"]}
    assert layers["transformer.wte.weight"]["prunable"] and "lm_head.weight" not in layers  # tied: one row


def test_graph_with_an_example_input(capsys, hf_gpt2):
    code, out, err = run_cli(capsys, "graph", f"hf:{hf_gpt2}", "--example-input", "1x8:long", "--json")
    assert code == 0, err
    graph = json.loads(out)
    assert graph["nodes"] and any(n.get("shape") == [1, 8] for n in graph["nodes"] if n["kind"] == "input")


def test_bad_input_is_one_line(capsys, hf_gpt2, tmp_path):
    for argv, says in [(["info", f"hf:{tmp_path}"], "no config.json"),
                       (["graph", f"hf:{hf_gpt2}", "--example-input", "2xq"], "whole numbers")]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and says in err and err.count("\n") == 1, (argv, err)


def test_shrink_llama_by_heads_and_neurons(capsys, hf_llama, tmp_path):
    code, out, err = run_cli(capsys, "shrink", f"hf:{hf_llama}", "--density", "0.5", "--json",
                             "--out", str(tmp_path / "small.pt"))
    assert code == 0, err
    result = json.loads(out)
    assert result["max_output_diff"] <= 1e-5 and result["units_removed"] == 2 * (1 + 32)
    assert result["params_after"] < result["params_before"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_shrunk_gpt2_as_export_and_torchscript_archives(capsys, hf_gpt2, tmp_path):
    """Archives of a transformers model return its logits, so they load without transformers'
    output classes."""
    import torch

    code, _, err = run_cli(capsys, "shrink", f"hf:{hf_gpt2}", "--density", "0.5",
                           "--export", str(tmp_path / "small.pt2"), "--torchscript", str(tmp_path / "small.jit"))
    assert code == 0, err
    ids = torch.randint(0, 96, (2, 16))
    exported = torch.export.load(str(tmp_path / "small.pt2")).module()
    scripted = torch.jit.load(str(tmp_path / "small.jit"))
    with torch.no_grad():
        assert torch.allclose(exported(ids), scripted(ids), atol=1e-5)
