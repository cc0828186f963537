import math

import numpy as np

from visualizer.core.labs import lab_job
from visualizer.core.labs.a_optimal import MAX_SUBSETS
from visualizer.core.labs.mask_probability import p_correct
from visualizer.core.labs.params import (
    LAB_PARAMS,
    clamp,
    defaults,
    grid_axis,
    job_options,
    theory_curve,
)
from visualizer.core.labs.phase_transition import DEFAULT_DELTAS
from visualizer.core.tasks import run


def test_defaults_are_the_functions_defaults():
    import inspect

    from visualizer.core.labs import LAB_MODULES

    for lab, params in LAB_PARAMS.items():
        if lab not in LAB_MODULES:  # a slide's setting (explain-coupling), not a lab
            continue
        signature = inspect.signature(lab_job(lab)).parameters
        for p in params:
            if p.name in signature:
                assert signature[p.name].default == p.default, (lab, p.name)


def test_out_of_range_values_are_clamped_with_a_note():
    values, notes = clamp("mask-probability", {"n": 500, "k": 3, "sigma": -1})
    assert values == {"n": 200, "k": 3, "sigma": 0.1, "trials": 100_000}
    assert any("n weights 500" in n for n in notes) and any("sigma -1" in n for n in notes)


def test_constraints_between_values():
    values, notes = clamp("mask-probability", {"n": 5, "k": 9})
    assert values["k"] == 5 and any("k <= n" in n for n in notes)
    values, notes = clamp("a-optimal", {"m": 99, "d": 3, "k": 10})
    assert values["m"] == 20 and math.comb(values["m"], values["k"]) <= MAX_SUBSETS
    values, notes = clamp("a-optimal", {"m": 6, "d": 4, "k": 2})
    assert values["k"] == 4 and any("raised" in n for n in notes)


def test_in_range_values_give_no_note():
    assert clamp("phase-transition", {"n": 60, "grid": 12, "trials": 3})[1] == []


def test_grid_axis_reproduces_the_default_grid():
    assert grid_axis(9) == DEFAULT_DELTAS
    options = job_options("phase-transition", {"grid": 4, "trials": 1, "n": 20})
    result = run(lab_job("phase-transition")(**options))
    assert len(result.cells) == 16 and {c["delta"] for c in result.cells} == {0.2, 0.4, 0.6, 0.8}


def test_theory_curve_is_the_formula():
    x, y = theory_curve("mask-probability", {"n": 8, "k": 3})
    assert np.allclose(y, p_correct(np.asarray(x), 8, 3))
    assert theory_curve("a-optimal", defaults("a-optimal")) is None


def test_monte_carlo_points_stream_and_end_at_the_result():
    partials = []
    result = run(lab_job("mask-probability")(n=6, k=2, trials=120_000),
                 on_step=lambda s: partials.append(s.partial))
    assert len(partials) >= 3 and partials[0].trials < partials[-1].trials
    assert partials[-1].monte_carlo == result.monte_carlo
