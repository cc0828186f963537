"""No command prints a traceback: bad folders, unwritable outputs and internal errors are one line
naming what failed and the user's path; --debug and PRUNEVIZ_DEBUG=1 bring the traceback back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imagefolders import TINY_CNN, write_digit_folder
from visualizer.cli import main
from visualizer.core.data.folder import scan_classes, stratified_split


@pytest.fixture()
def cnn(tmp_path) -> str:
    src = tmp_path / "cnn.py"
    src.write_text(TINY_CNN)
    return f"{src}:build"


def folder_with(tmp_path: Path, damage, which: str) -> tuple[Path, Path]:
    """A digit folder whose first training image (the one the image size is read from) or last
    test image (read late, in a DataLoader worker) is damaged by ``damage(path)``."""
    root = write_digit_folder(tmp_path / "digits", per_class=5, classes=3)
    _, samples = scan_classes(root)
    train, test = stratified_split(samples)
    bad = Path(train[0][0] if which == "first" else test[-1][0])
    damage(bad)
    return root, bad


def truncate_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:40])


def truncate_pixels(p: Path) -> None:  # the header survives, the pixel data is cut off
    from PIL import Image

    with Image.open(p) as img:
        img.convert("L").resize((64, 64)).save(p.with_suffix(".tmp.png"), compress_level=0)
    data = p.with_suffix(".tmp.png").read_bytes()
    p.with_suffix(".tmp.png").unlink()
    p.write_bytes(data[: len(data) // 2])


DAMAGES = {
    "truncated header": (truncate_header, "not an image"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty"),
    "not an image": (lambda p: p.write_text("hello"), "not an image"),
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name", list(DAMAGES))
def test_a_bad_first_image_is_one_line_naming_it(capsys, tmp_path, cnn, name):
    damage, reason = DAMAGES[name]
    root, bad = folder_with(tmp_path, damage, "first")
    code, _, err = run_cli(capsys, "prune", cnn, "--data", f"folder:{root}", "--workers", "0",
                           "--density", "0.5", "--eval")
    assert code == 2
    assert_one_line(err)
    assert str(bad) in err and reason in err


@pytest.mark.parametrize("damage", [truncate_header, truncate_pixels], ids=["header", "pixels"])
def test_a_bad_image_later_in_the_folder_is_named_from_a_worker_process(capsys, tmp_path, cnn, damage):
    root, bad = folder_with(tmp_path, damage, "last")
    code, _, err = run_cli(capsys, "prune", cnn, "--data", f"folder:{root}", "--workers", "1",
                           "--density", "0.5", "--eval")
    assert code == 2
    assert_one_line(err)
    assert "DataLoader worker" not in err
    assert f"cannot read image {bad}" in err
    if damage is truncate_pixels:
        assert "truncated" in err


def test_out_under_a_file_names_the_users_path(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "mask.safetensors"
    code, _, err = run_cli(capsys, "prune", "mlp", "--density", "0.5", "--out", str(out))
    assert code == 2
    assert_one_line(err)
    assert f"cannot write {out}: {tmp_path / 'afile'} is a file, not a folder" in err


class _Parser:
    """build_parser's stand-in: `models` whose command raises a KeyError (a bug, not bad input)."""

    def parse_args(self, argv):
        import argparse

        def broken(args):
            raise KeyError("boom")

        return argparse.Namespace(command="models", func=broken, debug="--debug" in argv)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr("visualizer.cli.build_parser", _Parser)
    monkeypatch.delenv("PRUNEVIZ_DEBUG", raising=False)
    code, _, err = run_cli(capsys, "models")
    assert code == 1
    assert_one_line(err)
    assert "KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["models", "--debug"])
    monkeypatch.setenv("PRUNEVIZ_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["models"])


def test_debug_is_accepted_before_and_after_the_command():
    from visualizer.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--debug", "models"]).debug
    assert parser.parse_args(["models", "--debug"]).debug
    assert not parser.parse_args(["models"]).debug
