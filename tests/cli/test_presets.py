"""CLI shapes of `pruneviz preset` and `pruneviz deck` (offscreen; the quick lab presets)."""

from __future__ import annotations

import json

from visualizer.cli import main


def test_preset_list_json_and_table(capsys):
    assert main(["preset", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"lth", "mask-probability", "phase-transition", "a-optimal", "random-labels"} <= names
    assert all(r["title"] and len(r["caption"]) > 40 and "docs/theory.md" in r["source"] for r in rows)
    assert main(["preset", "--list"]) == 0
    assert "Lab: a winning mask by chance" in capsys.readouterr().out


def test_preset_renders_one_png(capsys, tmp_path):
    out = tmp_path / "fig.png"
    assert main(["preset", "a-optimal", "--out", str(out), "--size", "800x500"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PySide6.QtGui import QImage

    assert QImage(str(out)).size().width() == 800


def test_deck_writes_images_and_index(capsys, tmp_path):
    assert main(["deck", "--out", str(tmp_path), "--only", "mask-probability,a-optimal", "--size", "700x450"]) == 0
    assert (tmp_path / "mask-probability.png").stat().st_size > 5000
    assert (tmp_path / "a-optimal.png").stat().st_size > 5000
    index = (tmp_path / "index.html").read_text()
    assert '<img src="mask-probability.png"' in index and '<img src="a-optimal.png"' in index
    assert "Lab: a winning mask by chance" in index and "best t/sigma" in index  # caption + measured line


def test_bad_preset_input_is_one_line(capsys, tmp_path):
    for argv, message in ((["preset", "nope", "--out", str(tmp_path / "x.png")], "unknown preset"),
                          (["preset", "a-optimal"], "--out"),
                          (["preset"], "give a preset name"),
                          (["deck", "--out", str(tmp_path), "--only", "a-optimal,nope"], "unknown preset"),
                          (["preset", "a-optimal", "--out", str(tmp_path / "x.png"), "--size", "big"], "--size")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
