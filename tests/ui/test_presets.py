"""Every preset runs to its end on its bundled model and its view shows the result; the Presets
menu offers exactly these presets, all enabled, and runs one into the Preset dock."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.conftest import wait_idle
from tests.ui.test_analysis_views import not_blank
from visualizer.ui.lecture.presets import PRESETS, FigureView, run_preset

# the four theory-lab presets (mask-probability, phase-transition, a-optimal) run in
# tests/ui/test_lab_views.py; random-labels runs here
PRESET_IDS = {"lth", "snip-vs-magnitude", "spectrum", "densenet", "inception", "density-law", "time-to-train",
              "sensitivity", "mask-probability", "phase-transition", "a-optimal", "random-labels",
              "explain-magnitude", "explain-snip", "explain-grasp", "explain-taylor", "explain-obd", "explain-wanda",
              "explain-coupling", "explain-masked-speed"}


def test_the_presets_are_exactly_these():
    assert set(PRESETS) == PRESET_IDS
    for preset in PRESETS.values():
        assert len(preset.caption) > 40 and preset.title
        assert "docs/theory.md" in preset.source, preset.id  # each cites its section


def test_the_presets_menu_offers_every_preset_enabled(window):
    window.populate_presets()
    actions = [a for a in window.presets_menu.actions() if not a.isSeparator()]
    assert [a.text() for a in actions] == ["Present all (deck)", *(p.title for p in PRESETS.values())]
    assert all(a.isEnabled() for a in actions)


def test_a_preset_from_the_menu_runs_and_shows_as_a_slide(qtbot, window):
    window.populate_presets()
    action = next(a for a in window.presets_menu.actions() if a.text() == PRESETS["density-law"].title)
    action.trigger()
    show = window.presentation
    qtbot.addWidget(show)
    wait_idle(qtbot, window, timeout=60000)
    slide = show.slides[show.index]
    assert slide.id == "density-law" and slide.error == ""
    view = slide.widget
    assert isinstance(view, FigureView) and show.stack.currentWidget() is view
    law, measured = view.figure.lines
    assert len(measured.y) == 9  # rounds 0..8 at the preset's defaults
    np.testing.assert_allclose(measured.y, law.y, atol=0.01)
    assert show.caption.text().startswith(PRESETS["density-law"].caption)
    show.close()


def _show(qtbot, view, size=(1000, 450)):
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    assert not_blank(view)


def test_lth_preset_ticket_reinit_and_random_mask(qtbot):
    view, result = run_preset("lth", rounds=2, rate=0.5, epochs=1)
    _show(qtbot, view)
    rows = result.rows
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["density"] for r in rows] == pytest.approx([1.0, 0.5, 0.25], abs=1e-3)
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in ("accuracy", "reinit_accuracy", "random-mask_accuracy"))
    labels = [line.label for line in view.figure.lines]
    assert labels == ["winning ticket (mask + original init)", "same mask, re-initialised",
                      "random mask, same density", "dense baseline"]
    ticket = view.figure.lines[0]
    assert list(ticket.x) == [r["density"] for r in rows]
    assert list(ticket.y) == [r["accuracy"] for r in rows]
    assert view.caption.text().startswith(PRESETS["lth"].caption)


def test_snip_vs_magnitude_preset_runs_and_shows_its_result(qtbot):
    steps = []
    view, result = run_preset("snip-vs-magnitude", on_step=steps.append)
    _show(qtbot, view)
    assert isinstance(view, FigureView)
    assert view.caption.text() == PRESETS["snip-vs-magnitude"].caption
    # real masks: both keep 10% of all prunable weights globally, the layer is compared exactly
    assert result.magnitude.density() == pytest.approx(0.1, abs=1e-3)
    assert result.snip.density() == pytest.approx(0.1, abs=1e-3)
    row = result.row
    a = result.magnitude.masks["fc1.weight"]
    b = result.snip.masks["fc1.weight"]
    assert row["overlap"] == int((a & b).sum())
    assert len(view._plots) == 3 and steps[-1].fraction == 1.0
    assert f"Jaccard {row['jaccard']:.2f}" in list(view.figure.images)[2]


def test_spectrum_preset_masked_lambda_max_is_below_the_dense_one(qtbot):
    """Cauchy interlacing: P_m H P_m's largest eigenvalue is at most H's (docs/theory.md)."""
    view, result = run_preset("spectrum", top_k=2, probes=2, taus=(0, 10))
    _show(qtbot, view)
    dense, masked = result.dense, result.masked
    assert masked.lambda_max <= dense.lambda_max * (1 + 1e-3) + 1e-6
    assert [s.label for s in view.spectra] == ["dense", "masked (20%)"]
    assert max(view.spectra[0].top) == pytest.approx(dense.lambda_max, rel=1e-6)
    assert list(view.rewind.tau) == [0, 10] and len(view.rewind.lambda_max) == 2
    assert all(np.isfinite(view.rewind.lambda_max))


def test_densenet_preset_group_lasso_removes_a_connection_group(qtbot):
    # smaller than the preset's defaults (lambda 0.3, 20 epochs: ~25 s here), same picture
    view, r = run_preset("densenet", lam=1.0, epochs=4, finetune_epochs=1)
    _show(qtbot, view)
    assert r.zero_groups >= 1 and r.groups == 8
    assert r.accuracy_final >= r.accuracy_dense - 0.05
    assert view.before is not None and view.after is not None
    assert view.after.strength.shape == view.before.strength.shape
    assert np.nansum(view.after.strength) < np.nansum(view.before.strength)
    assert f"zeroed {r.zero_groups} of {r.groups}" in view.caption.text()


def test_inception_preset_removes_branches_and_keeps_accuracy(qtbot):
    """On the bundled inception-mini the group penalty zeroes whole branches (drawn grey) and a
    short masked fine-tune recovers the accuracy without them (Yuan & Lin 2006; Wen et al. 2016)."""
    view, r = run_preset("inception")
    _show(qtbot, view)
    assert r.zero_groups >= 1
    removed = [b for m in r.after_branches for b in m.branches if b.norm <= 1e-8]
    assert len(removed) == r.zero_groups
    assert r.accuracy_final >= r.accuracy_dense - 0.02
    assert f"zeroed {r.zero_groups} of {r.groups}" in view.caption.text()


def test_density_law_preset_measured_masks_follow_the_geometric_law(qtbot):
    view, r = run_preset("density-law", rounds=3, rate=0.3, steps=2)
    _show(qtbot, view)
    assert r.law == pytest.approx([1.0, 0.7, 0.49, 0.343])
    np.testing.assert_allclose(r.measured, r.law, atol=1e-3)
    law, measured = view.figure.lines
    assert list(measured.y) == r.measured and list(law.x) == [0, 1, 2, 3]


def test_time_to_train_preset_shows_dense_masked_and_shrunk(qtbot):
    view, r = run_preset("time-to-train")
    _show(qtbot, view)
    assert [e.label for e in view.entries] == ["dense", "masked", "shrunk"]
    by = {e.label: e for e in view.entries}
    assert by["shrunk"].flops < by["masked"].flops < by["dense"].flops
    for e in view.entries:  # steps x 3 forward passes (forward + backward)
        assert e.train_time_s == pytest.approx(r.steps_sparse * 3 * e.latency_ms / 1e3)


def test_random_labels_preset_stays_in_the_chance_band(qtbot):
    """Labels that carry no information: dense and ticket stay inside the binomial band around
    chance 1/K (Zhang et al. 2017), while true labels are learnt."""
    import pyqtgraph as pg

    view, r = run_preset("random-labels", rounds=1, epochs=1)
    _show(qtbot, view)
    assert r.classes == 10 and r.chance == pytest.approx(0.1)
    assert r.band_low <= r.dense_random <= r.band_high and r.band_low <= r.ticket_random <= r.band_high
    assert r.dense_true > r.band_high
    bars = [it for it in view.plot.items if isinstance(it, pg.BarGraphItem)]
    assert list(bars[0].opts["height"]) == [r.dense_true, r.dense_random, r.ticket_true, r.ticket_random]


@pytest.mark.parametrize("shape", [(120, 400), (120, 64)])
@pytest.mark.parametrize("size, teaching", [((1000, 450), False), ((1800, 600), False), ((1280, 720), True)])
def test_mask_images_share_one_aspect_and_size(qtbot, size, teaching, shape):
    """The SNIP vs magnitude masks came out at three sizes: each plot fitted its image into its
    own box, and the third one's long title widened its column.
    The three now show the same region at the same scale (linked axes, locked aspect 1)."""
    from visualizer.ui.lecture.presets import Figure

    rng = np.random.default_rng(0)
    a, b = rng.random(shape) < 0.1, rng.random(shape) < 0.1
    rgb = np.full(shape + (3,), 255, dtype=np.uint8)
    view = FigureView()
    if teaching:  # the presentation's large type: the third title is wider than its column
        from visualizer.ui.lecture.teaching import LIGHT, teaching_variant

        view.apply_theme(teaching_variant(LIGHT))
    view.set_figure(Figure(images={"magnitude |w|": a, "SNIP |g * w|": b,
                                   "both (dark) / only |w| (blue) / only SNIP (orange); Jaccard 0.42": rgb},
                           x_label="input (fan-in)", y_label="output unit"))
    _show(qtbot, view, size)
    qtbot.wait(50)

    def drawn(plot) -> tuple[float, float, float]:
        """On-screen width, height and width/height of the image item, which shows whole."""
        image = next(i for i in plot.items if hasattr(i, "image"))
        rect = image.mapRectToScene(image.boundingRect())
        assert plot.getViewBox().sceneBoundingRect().adjusted(-1, -1, 1, 1).contains(rect)
        return round(rect.width()), round(rect.height()), rect.width() / rect.height()

    sizes = [drawn(p) for p in view._plots]
    assert all(s[2] == pytest.approx(shape[1] / shape[0], rel=0.02) for s in sizes), sizes
    assert max(abs(s[0] - sizes[0][0]) + abs(s[1] - sizes[0][1]) for s in sizes) <= 2, sizes


def test_sensitivity_preset_draws_one_curve_per_layer(qtbot):
    view, result = run_preset("sensitivity", levels=(0.5, 0.1))
    _show(qtbot, view)
    assert len(view.figure.lines) == 9 + 1  # resnet-mini's 9 prunable layers and the dense line
    assert all(len(line.y) == 2 for line in view.figure.lines[:-1])
    assert "At 10% density alone" in view.caption.text()
