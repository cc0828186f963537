"""`pruneviz screenshot`: the window offscreen at a given state, one view (or all of it) to a PNG of
the asked size; bad options are one line on stderr and exit status 2."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QImage

from visualizer.cli import main


def _distinct_colours(img: QImage) -> int:
    return len({img.pixel(x, y) for x in range(0, img.width(), 5) for y in range(0, img.height(), 5)})


def _has_colour(img: QImage, rgb: tuple[int, int, int], tol: int = 12) -> bool:
    for y in range(img.height()):
        for x in range(0, img.width(), 2):
            c = img.pixelColor(x, y)
            if abs(c.red() - rgb[0]) <= tol and abs(c.green() - rgb[1]) <= tol and abs(c.blue() - rgb[2]) <= tol:
                return True
    return False


@pytest.mark.parametrize("view", ["heatmap", "curves", "graph", "overview", "profile"])
def test_screenshot_of_a_view_is_a_png_of_the_asked_size(view, tmp_path, capsys, qapp):
    out = tmp_path / f"{view}.png"
    rc = main(["screenshot", "--view", view, "--out", str(out), "--model", "lenet",
               "--density", "0.2", "--size", "800x500"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    img = QImage(str(out))
    assert not img.isNull() and (img.width(), img.height()) == (800, 500)
    assert _distinct_colours(img) > 8  # drawn, not a blank widget
    if view == "curves":  # the screenshot's sweep drew its two curves (magnitude, random)
        from visualizer.ui.views.curves import PALETTE

        assert all(_has_colour(img, c) for c in PALETTE[:2])


def test_screenshot_of_the_window(tmp_path, capsys, qapp):
    out = tmp_path / "window.png"
    assert main(["screenshot", "--view", "window", "--out", str(out), "--model", "lenet",
                 "--criterion", "magnitude", "--density", "0.2", "--size", "1200x800"]) == 0
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1200, 800)
    assert _distinct_colours(img) > 8


@pytest.mark.parametrize("argv, message", [
    (["--view", "nope"], "unknown view 'nope'; choose one of: window, overview, heatmap, curves"),
    (["--layer", "fc9.weight"], "no prunable layer 'fc9.weight'"),
    (["--density", "0"], "--density must be in (0, 1]"),
    (["--size", "big"], "--size must look like 1200x800"),
])
def test_screenshot_bad_options_are_one_line(argv, message, tmp_path, capsys, qapp):
    rc = main(["screenshot", "--out", str(tmp_path / "x.png"), "--model", "lenet", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("pruneviz screenshot: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_screenshot_of_a_factory_model_asks_for_trust(tmp_path, capsys, qapp):
    """A file.py:factory runs the file's code: without --trust nothing runs and one line asks."""
    marker = tmp_path / "ran"
    src = tmp_path / "net.py"
    src.write_text(f"from pathlib import Path\nfrom torch import nn\n\n"
                   f"def build():\n    Path({str(marker)!r}).write_text('x')\n"
                   f"    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    out = tmp_path / "x.png"
    argv = ["screenshot", "--out", str(out), "--model", f"{src}:build", "--data", "digits",
            "--size", "400x300"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--trust" in err and "net.py" in err and err.count("\n") == 1
    assert not marker.exists() and not out.exists()
    assert main([*argv, "--trust"]) == 0
    assert marker.exists() and out.exists()
