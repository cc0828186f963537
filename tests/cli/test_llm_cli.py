"""CLI: prune a language model on token data (wanda, sparsegpt, N:M) and the one-line errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tests.llm import PROSE, llama_folder  # noqa: E402
from visualizer.cli import main  # noqa: E402
from visualizer.core.io.mask_formats import read_mask  # noqa: E402
from visualizer.core.pruning.nm import is_nm  # noqa: E402

FACTORY = """
from transformers import LlamaForCausalLM
from transformers.utils import logging

logging.disable_progress_bar()

def build():
    return LlamaForCausalLM.from_pretrained({folder!r}).eval()
"""


@pytest.fixture(scope="module")
def model_ref(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    llama_folder(folder)
    file = folder / "llm.py"
    file.write_text(FACTORY.format(folder=str(folder)), encoding="utf-8")
    return f"{file}:build"


def run_cli(capsys, *argv: str):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_wanda_with_perplexity(capsys, model_ref):
    code, out, err = run_cli(capsys, "prune", model_ref, "--trust", "--data", f"text:{PROSE}", "--criterion", "wanda",
                             "--density", "0.5", "--calibration", "16", "--eval", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["density"] == pytest.approx(0.5, abs=1e-3)
    assert res["perplexity"] > 1


def test_wanda_2_4_writes_an_exact_pattern(capsys, model_ref, tmp_path):
    mask_file = tmp_path / "m.safetensors"
    code, out, err = run_cli(capsys, "prune", model_ref, "--trust", "--data", f"text:{PROSE}", "--criterion", "wanda",
                             "--structure", "2:4", "--density", "0.5", "--calibration", "8", "--out", str(mask_file),
                             "--json")
    assert code == 0, err
    res = json.loads(out)
    masks = read_mask(mask_file)
    linear = [n for n in masks.masks if "layers" in n]
    assert linear and all(is_nm(masks[n], 2, 4) for n in linear)
    assert res["skipped"] == {}


def test_sparsegpt_updates_weights_and_reports_perplexity(capsys, model_ref):
    code, out, err = run_cli(capsys, "prune", model_ref, "--trust", "--data", f"text:{PROSE}", "--criterion",
                             "sparsegpt", "--density", "0.5", "--calibration", "8", "--eval")
    assert code == 0, err
    assert "test perplexity of the pruned model" in out
    assert "sparsegpt updated the kept weights" in out
    assert "sequential over" in out  # a GPT-2's blocks are pruned one after another


def test_calibrated_criterion_without_data_is_one_line(capsys, model_ref):
    code, out, err = run_cli(capsys, "prune", model_ref, "--trust", "--criterion", "sparsegpt", "--density", "0.5")
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "--data" in err


def test_2_4_skips_and_lists_layers_whose_inputs_do_not_fit(capsys):
    # LeNet's convolutions read 1·3·3 = 9 and 6·3·3 = 54 inputs per output: not multiples of 4
    code, out, err = run_cli(capsys, "prune", "lenet", "--structure", "2:4", "--density", "0.5", "--json")
    assert code == 0
    res = json.loads(out)
    assert set(res["skipped"]) == {"conv1.weight", "conv2.weight"}
    assert "conv1.weight skipped: input dimension 9 is not a multiple of 4" in err
    dense = {ld["name"]: ld["density"] for ld in res["layers"]}
    assert dense["conv1.weight"] == 1.0 and dense["fc1.weight"] == 0.5


def test_bad_nm_structure_is_one_line(capsys):
    code, _out, err = run_cli(capsys, "prune", "lenet", "--structure", "5:4", "--density", "0.5")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "N:M" in err


def test_sweep_rows_carry_perplexity(capsys, model_ref, tmp_path):
    out = tmp_path / "rows.csv"
    code, stdout, err = run_cli(capsys, "sweep", model_ref, "--trust", "--data", f"text:{PROSE}", "--criteria",
                                "magnitude,wanda", "--densities", "1,0.5", "--out", str(out))
    assert code == 0, err
    assert "perplexity" in stdout.splitlines()[0]
    header = out.read_text().splitlines()[0].split(",")
    assert "perplexity" in header
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert len(rows) == 4 and all(r["perplexity"] > 1 for r in rows)
