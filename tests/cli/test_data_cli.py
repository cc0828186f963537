"""CLI on data it did not ship with: a file.py:factory CNN on an image folder (the streaming and
folder code paths, without torchvision), the pretrained/random-init line, and one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.imagefolders import TINY_CNN, write_digit_folder
from visualizer.cli import main


@pytest.fixture
def setup(tmp_path):
    src = tmp_path / "tiny.py"
    src.write_text(TINY_CNN)
    root = write_digit_folder(tmp_path / "digits", per_class=5, classes=3)
    return src, root


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prune_a_factory_model_on_an_image_folder(capsys, setup):
    src, root = setup
    common = ["--data", f"folder:{root}", "--workers", "0", "--density", "0.5", "--json"]
    code, out, err = run_cli(capsys, "prune", f"{src}:build", "--criterion", "snip", "--eval",
                             "--batches", "1", "--batch-size", "4", *common)
    assert code == 0, err
    result = json.loads(out)
    assert 0.0 <= result["accuracy"] <= 1.0 and abs(result["density"] - 0.5) < 0.05
    # a sample of the test split: the first batch of 2 of the 3 held-out images
    code, out, _ = run_cli(capsys, "prune", f"{src}:build", "--eval", "--eval-batches", "1",
                           "--image-size", "8", *common)
    assert code == 0 and "accuracy" in json.loads(out)
    code, out, err = run_cli(capsys, "prune", f"{src}:wide", "--eval", *common)
    assert code == 0 and "note: " in err and "outputs 1000 classes" in err


def test_train_streams_a_folder(capsys, setup):
    src, root = setup
    code, out, err = run_cli(capsys, "train", f"{src}:build", "--data", f"folder:{root}", "--workers", "0",
                             "--epochs", "1", "--batch-size", "4", "--eval-batches", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 3 and len(result["history"]) == 1  # 12 training images, batches of 4


def test_data_errors_are_one_line(capsys, setup, tmp_path):
    src, root = setup
    cases = [
        (["prune", f"{src}:narrow", "--data", f"folder:{root}", "--density", "0.5", "--eval"],
         "class indices up to 2 but"),
        (["prune", f"{src}:build", "--data", f"folder:{tmp_path / 'absent'}", "--density", "0.5", "--eval"],
         "image folder not found"),
        (["prune", f"{src}:build", "--density", "0.5", "--eval"], "has no default dataset; pass --data NAME"),
        (["prune", f"{src}:build", "--data", f"folder:{root}", "--image-size", "0", "--density", "0.5", "--eval"],
         "--image-size must be at least 1"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)


def test_info_says_which_weights(capsys):
    code, out, _ = run_cli(capsys, "info", "lenet")
    assert code == 0 and "pretrained: lenet.safetensors" in out
    code, out, _ = run_cli(capsys, "info", "lenet", "--no-pretrained", "--json")
    assert code == 0 and json.loads(out)["weights"] == "random init"
