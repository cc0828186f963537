import pytest

from visualizer.core.labs.random_labels import chance_band, random_labels
from visualizer.core.tasks import run


def test_chance_band_formula():
    p, low, high = chance_band(10, 400, z=2.0)
    assert p == 0.1 and high - p == pytest.approx(2 * (0.1 * 0.9 / 400) ** 0.5)
    assert low == pytest.approx(0.1 - 0.03)


def test_random_labels_stay_at_chance_true_labels_do_not():
    r = run(random_labels(rounds=1, epochs=3, seed=0))
    assert r.classes == 10 and r.test_size > 300
    for acc in (r.dense_random, r.ticket_random):
        assert r.band_low <= acc <= r.band_high
    for acc in (r.dense_true, r.ticket_true):
        assert acc > 0.8
    assert r.ticket_density == pytest.approx(0.5, abs=0.01)
    assert set(r.to_json()) >= {"dense_true", "dense_random", "ticket_true", "ticket_random",
                                "classes", "test_size"}
