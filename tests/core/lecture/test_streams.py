"""Core's preset jobs yield their figure so far (``Step.partial``), and what they yield is what
the finished job returns, cut short: the slide fills in with the CLI's numbers."""

import numpy as np
import torch

from visualizer.core.lecture.presets import run_preset_job


def _partials(pid, **options):
    seen = []
    result = run_preset_job(pid, on_step=lambda step: step.partial is not None and seen.append(step.partial),
                            **options)
    return seen, result


def test_the_density_law_fills_in_a_round_at_a_time_along_the_whole_law():
    seen, final = _partials("density-law", rounds=3, steps=2)
    assert [len(p.measured) for p in seen] == [1, 2, 3, 4]
    assert all(p.law == final.law and p.measured == final.measured[:len(p.measured)] for p in seen)


def test_snip_vs_magnitude_shows_the_magnitude_mask_while_snip_scores():
    (first,), final = _partials("snip-vs-magnitude")
    assert first.snip is None and final.snip is not None
    assert torch.equal(first.magnitude.masks[first.layer], final.magnitude.masks[final.layer])


def test_the_spectrum_fills_probe_by_probe_then_rewind_by_rewind():
    seen, final = _partials("spectrum", top_k=2, probes=3, taus=(0, 10))
    dense_only = [p for p in seen if p.masked is None]
    assert len(dense_only) == 4  # a density per probe, then the dense spectrum done
    assert [p.dense.density["probes"] for p in dense_only[:3]] == [1, 2, 3]
    np.testing.assert_array_equal(dense_only[-1].dense.density["values"], final.dense.density["values"])
    assert [len(p.rewinds) for p in seen if p.rewinds] == [1, 2]


def test_time_to_train_draws_the_bars_after_each_timing_round():
    seen, final = _partials("time-to-train", density=0.5)
    assert [p.report.repeats for p in seen] == list(range(1, final.report.repeats + 1))
    assert [e.name for e in seen[0].report.entries] == ["dense", "masked", "shrunk"]
    assert [e.flops for e in seen[0].report.entries] == [e.flops for e in final.report.entries]


def test_random_labels_fills_a_bar_per_finished_imp_round():
    """Round 0 of each IMP run is its dense bar, the last round its ticket; bars not measured yet
    are NaN (the slide leaves them empty), and the last figure is the result."""
    seen, final = _partials("random-labels", rounds=1, epochs=1)
    keys = ("dense_true", "ticket_true", "dense_random", "ticket_random")
    measured = [tuple(k for k in keys if np.isfinite(getattr(p, k))) for p in seen]
    assert measured == [keys[:1], keys[:2], keys[:3], keys]
    assert all(getattr(seen[-1], k) == getattr(final, k) for k in (*keys, "ticket_density"))
