import math

import numpy as np
import pytest

from visualizer.core.labs.mask_probability import log_p_correct, mask_probability, p_correct
from visualizer.core.tasks import run


def test_formula_matches_a_hand_worked_case():
    # n = 2, k = 1, t = sigma: p = 2(1 - Phi(1)) (2 Phi(1) - 1), Phi(1) = 0.8413447461
    phi1 = 0.8413447460685429
    assert p_correct(1.0, 2, 1) == pytest.approx(2 * (1 - phi1) * (2 * phi1 - 1), rel=1e-12)
    assert p_correct(1.0, 2, 1) == pytest.approx(0.2166245, abs=1e-7)


def test_formula_edges_and_log_space():
    assert p_correct(0.0, 5, 5) == 1.0  # t = 0 keeps everything: right iff the support is all
    assert p_correct(0.0, 5, 2) == 0.0
    assert p_correct(50.0, 5, 0) == 1.0  # a huge t prunes everything: right iff k = 0
    # far in the tail p underflows to 0 but its log stays finite and exact: k log(2 Phi(-t))
    from scipy.special import log_ndtr

    assert log_p_correct(40.0, 10, 2) == pytest.approx(2 * (math.log(2) + log_ndtr(-40.0)), rel=1e-9)


def test_monte_carlo_within_four_standard_errors_of_the_formula():
    r = run(mask_probability(n=6, k=2, trials=200_000, seed=3))
    assert len(r.formula) == len(r.monte_carlo) == len(r.stderr) == len(r.t_over_sigma) > 5
    for f, mc, se in zip(r.formula, r.monte_carlo, r.stderr):
        assert abs(mc - f) <= 4 * se + 1e-12
    # not a flat zero: the grid reaches the maximum, where p is a few percent
    assert max(r.monte_carlo) > 0.01
    assert set(r.to_json()) >= {"formula", "monte_carlo", "stderr", "t_over_sigma"}


def test_single_threshold_and_sigma_scaling():
    a = run(mask_probability(n=4, k=1, sigma=2.0, thresholds=[2.0], trials=50_000, seed=1))
    assert a.t_over_sigma == [1.0]
    assert a.formula[0] == pytest.approx(float(p_correct(1.0, 4, 1)))
    assert abs(a.monte_carlo[0] - a.formula[0]) <= 4 * a.stderr[0]


@pytest.mark.parametrize("kw", [dict(n=0), dict(k=5, n=3), dict(sigma=0.0), dict(trials=0),
                                dict(thresholds=[-1.0]), dict(thresholds=[np.nan])])
def test_bad_settings_are_value_errors(kw):
    with pytest.raises(ValueError):
        run(mask_probability(**kw))
