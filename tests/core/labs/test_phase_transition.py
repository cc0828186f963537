import numpy as np
import pytest

from visualizer.core.labs.phase_transition import (
    SOLVERS,
    phase_transition,
    recover,
    relative_error,
    sparse_problem,
    weak_threshold,
)
from visualizer.core.tasks import run


def test_omp_always_recovers_one_sparse_from_two_measurements():
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        for _ in range(50):
            A, x, y = sparse_problem(rng, 60, m, 1)
            assert relative_error(recover(A, y, 1, "omp"), x) < 1e-8


@pytest.mark.parametrize("solver", SOLVERS)
def test_no_solver_recovers_more_nonzeros_than_measurements(solver):
    rng = np.random.default_rng(1)
    for _ in range(10):
        A, x, y = sparse_problem(rng, 30, 5, 7)  # k > m: x is not determined by y
        assert relative_error(recover(A, y, 7, solver), x) > 1e-2


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_recovers_a_very_sparse_signal(solver):
    rng = np.random.default_rng(2)
    wins = 0
    for _ in range(10):
        A, x, y = sparse_problem(rng, 50, 35, 2)
        wins += relative_error(recover(A, y, 2, solver), x) < 1e-2
    assert wins >= 9


def test_weak_threshold_matches_donoho_tanner():
    # rho_W(1/2) of the cross-polytope is about 0.385 (Donoho & Tanner 2009, Fig. 1)
    assert weak_threshold(0.5) == pytest.approx(0.385, abs=0.003)
    curve = [weak_threshold(d) for d in np.linspace(0.05, 0.95, 19)]
    assert all(0 < r < 1 for r in curve)
    assert all(b > a for a, b in zip(curve, curve[1:]))  # more measurements, more sparsity allowed


def test_grid_succeeds_below_the_curve_and_fails_far_above():
    r = run(phase_transition(n=40, solver="omp", trials=6, seed=0, deltas=(0.5,), rhos=(0.1, 0.9)))
    cells = {c["rho"]: c["success"] for c in r.cells}
    assert cells[0.1] >= 0.8 and cells[0.9] <= 0.2
    assert set(r.to_json()) >= {"cells", "curve_delta", "curve_rho", "success_tol"}
    deltas, rhos, z = r.grid()
    assert z.shape == (2, 1)


def test_bad_solver_is_a_value_error():
    with pytest.raises(ValueError, match="unknown solver"):
        run(phase_transition(solver="cosamp"))
