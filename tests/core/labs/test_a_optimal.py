import itertools

import numpy as np
import pytest

from visualizer.core.labs.a_optimal import a_error, a_optimal, a_optimal_subset, magnitude_subset
from visualizer.core.tasks import run


def test_hand_case_matches_brute_force():
    # rows e1, e2, (1, 1), (3, 0); keep 2. By hand: {e1, e2} -> trace I = 2; {(3,0), e2} -> 1/9 + 1;
    # {(1,1), (3,0)} -> Gram [[10, 1], [1, 1]], inverse trace (1 + 10) / 9 = 11/9.
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    rows, err = a_optimal_subset(A, 2)
    assert rows == (1, 3) and err == pytest.approx(1 + 1 / 9)
    assert a_error(A, (2, 3)) == pytest.approx(11 / 9)
    brute = min(a_error(A, s) for s in itertools.combinations(range(4), 2))
    assert err == pytest.approx(brute)
    # the magnitude rule keeps the two longest rows, (3, 0) and (1, 1): worse here
    assert magnitude_subset(A, 2) == (2, 3)
    assert a_error(A, (0, 3)) == np.inf  # collinear rows: no estimate


def test_a_optimal_never_worse_than_magnitude():
    r = run(a_optimal(m=10, d=3, k=5, trials=15, seed=4))
    assert len(r.trials) == 15
    for t in r.trials:
        assert t["a_optimal_error"] <= t["magnitude_error"] + 1e-12
        assert 0.0 <= t["overlap"] <= 1.0
    assert set(r.to_json()) >= {"trials", "m", "d", "k"}


def test_exhaustive_limit_and_sizes_refused():
    with pytest.raises(ValueError, match="exhaustive limit"):
        run(a_optimal(m=40, d=3, k=20))
    with pytest.raises(ValueError, match="k must be in"):
        run(a_optimal(m=10, d=4, k=3))
