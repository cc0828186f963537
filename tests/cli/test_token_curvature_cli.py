"""`pruneviz hessian` and `landscape` on a language model with --data text:FILE (the mean
next-token cross-entropy), and hessian's --example-input for the coupled groups it traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tests.llm import PROSE, llama_folder  # noqa: E402
from visualizer.cli import main  # noqa: E402
from visualizer.core.data.text import load_text, model_block  # noqa: E402
from visualizer.core.training.evaluate import evaluate  # noqa: E402
from visualizer.core.workspace import curvature_batches as eval_batches  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama-cli")
    model = llama_folder(path)
    return path, model


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_hessian_and_landscape_on_text_data(capsys, folder, tmp_path):
    path, model = folder
    data = ["--data", f"text:{PROSE}", "--batches", "1", "--batch-size", "2"]
    code, out, err = run_cli(capsys, "hessian", f"hf:{path}", *data, "--top-k", "1", "--max-steps", "3", "--json")
    assert code == 0, err
    dense = json.loads(out)["dense"]
    # the same first test batch, evaluated as `prune --eval` does: mean next-token cross-entropy
    ev = eval_batches(load_text(PROSE, path, block=model_block(model)), 1, 2)
    assert dense["loss"] == pytest.approx(evaluate(model, ev.batches).loss, rel=1e-5)
    assert np.isfinite(dense["lambda_max"])
    npz = tmp_path / "slice.npz"
    code, out, err = run_cli(capsys, "landscape", f"hf:{path}", *data, "--dims", "1", "--steps", "3",
                             "--out", str(npz), "--json")
    assert code == 0, err
    loss = np.load(npz)["loss"]
    assert loss[1] == pytest.approx(dense["loss"], rel=1e-5)  # alpha = 0: the model itself


def test_per_group_curvature_traces_the_token_input(capsys, folder):
    path, _ = folder
    args = ["hessian", f"hf:{path}", "--data", f"text:{PROSE}", "--batches", "1", "--batch-size", "2",
            "--per-layer", "group", "--max-steps", "2", "--json"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    units = [u["unit"] for u in json.loads(out)["units"]]
    assert "model.layers.0.self_attn (heads: 2)" in units  # key/value heads of grouped-query attention
    code, out, err = run_cli(capsys, *args, "--example-input", "1x8:long")
    assert code == 0, err
    assert [u["unit"] for u in json.loads(out)["units"]] == units


def test_example_input_mistakes_are_one_line(capsys, folder):
    path, _ = folder
    base = ["hessian", f"hf:{path}", "--data", f"text:{PROSE}", "--batches", "1", "--batch-size", "2"]
    code, _, err = run_cli(capsys, *base, "--per-layer", "group", "--example-input", "2xq")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "whole numbers" in err
    code, _, err = run_cli(capsys, *base, "--example-input", "1x8:long")
    assert code == 2 and "--per-layer group" in err and len(err.strip().splitlines()) == 1
