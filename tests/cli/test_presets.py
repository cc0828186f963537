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


def test_deck_pdf_handout_has_a_page_per_slide(capsys, tmp_path):
    import re

    pdf = tmp_path / "handout.pdf"
    assert main(["deck", "--pdf", str(pdf), "--only", "mask-probability,a-optimal", "--size", "700x450"]) == 0
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 2
    assert len(re.findall(rb"/Subtype\s*/Image", data)) == 2  # each slide's figure is on its page
    assert capsys.readouterr().out.strip() == str(pdf)
    assert list(tmp_path.iterdir()) == [pdf]  # the images went to a temporary folder


def test_deck_index_steps_with_the_arrow_keys(tmp_path):
    from visualizer.ui.lecture.deck import Slide, deck_html

    page = deck_html([Slide("a", "A", "first", "a.png", 0.1), Slide("b", "B", "second", "", 0.1, "boom")])
    assert 'addEventListener("keydown"' in page and "ArrowRight" in page and "ArrowLeft" in page
    assert page.index('<section id="a">') < page.index('<section id="b">') < page.index("<script>")


def test_deck_needs_a_destination(capsys):
    assert main(["deck", "--only", "a-optimal"]) == 2
    assert "--out" in capsys.readouterr().err
