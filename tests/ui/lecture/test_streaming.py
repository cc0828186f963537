"""Slides that fill in while they compute: the spectrum (the density probe by probe, then the
rewind points), the density law (a point per IMP round), time to train and masked speed (the bars
after the first timing round), SNIP vs magnitude (the magnitude mask while SNIP scores) and the
explainers (the layer's histogram, the coupled group on the graph) are on screen before their
jobs end, and end on the figure the finished job draws."""

import dataclasses

import pytest

from visualizer.ui.lecture.presentation import Presentation

FAST = {"spectrum": dict(top_k=2, probes=3, taus=(0, 10)), "density-law": dict(rounds=3, steps=2),
        "time-to-train": {}, "snip-vs-magnitude": {}, "explain-masked-speed": dict(model="lenet", repeats=3),
        "explain-snip": dict(model="mlp"), "explain-wanda": dict(model="mlp"), "explain-coupling": {}}


def _drawn(pid: str, view):
    """What a slide shows now, in the terms a viewer would count."""
    if pid == "spectrum":
        return (len(view.spectra), 0 if view.rewind is None else len(view.rewind.tau), view.rewind_pending is not None)
    if pid == "density-law":
        return len(view.figure.lines[1].x)
    if pid == "snip-vs-magnitude":
        return len(view.figure.images)
    if pid in ("time-to-train", "explain-masked-speed"):
        return len(view.entries)
    if pid == "explain-coupling":
        return (len(view.graph.highlighted_layers()), not view.canvas.isHidden() and bool(view.result.pictures))
    return (not view.canvas.isHidden(), view.result.explanation is not None)  # a criterion's histogram


def _run_slide(qtbot, window, monkeypatch, pid):
    """Open the slide as a lecturer does (Space from the live slide) and record what it draws at
    every result it is given: the partial ones while it runs, then the final one."""
    from visualizer.ui.lecture import presets

    real = presets.PRESETS[pid]
    seen = []

    def show(view, result):
        real.show(view, result)
        seen.append(_drawn(pid, view))

    monkeypatch.setitem(presets.PRESETS, pid, dataclasses.replace(
        real, job=lambda **o: real.job(**FAST[pid], **o), show=show))
    slide_show = Presentation(window, deck=[pid])
    qtbot.addWidget(slide_show)
    slide_show.resize(1280, 720)
    slide_show.show()
    slide_show.next()
    slide = slide_show.slides[1]
    assert slide.widget is not None and slide_show.stack.currentWidget() is slide.widget  # up at once
    qtbot.waitUntil(lambda: slide.caption != "", timeout=180000)
    slide_show.close()
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("pid", list(FAST))
def test_a_computing_slide_shows_its_partial_figure_as_it_fills(qtbot, window, monkeypatch, pid):
    seen = _run_slide(qtbot, window, monkeypatch, pid)
    partial, final = seen[:-1], seen[-1]
    assert partial, "nothing drawn before the job ended"
    if pid == "spectrum":
        assert partial[0] == (1, 0, True)  # the dense spectrum while its density probes run
        # both, then the rewind points one by one, said to be computing (not "missing") until done
        assert (2, 1, True) in partial and final == (2, 2, False)
    elif pid == "density-law":
        assert partial[0] < final and partial == sorted(partial) and final == 4  # a point per round
    elif pid == "snip-vs-magnitude":
        assert partial[0] == 1 and final == 3  # the magnitude mask while SNIP scores
    elif pid in ("time-to-train", "explain-masked-speed"):
        assert partial[0] == 3 and final == 3  # dense, masked and shrunk after the first round
    elif pid == "explain-coupling":
        assert partial[0][0] == final[0] > 1 and not partial[0][1]  # the group on the graph, then its heatmaps
    else:
        assert partial[0] == (True, False)  # the layer's histogram while the weight's numbers come
        assert final == (False, True)  # done: the steps from the first, Space reveals the figure
