"""Sparsity allocation: each rule against a hand-worked case, and the exact global count."""

import pytest
import torch

from visualizer.core.pruning.allocation import (
    ALLOCATIONS,
    AllocationError,
    allocation_mask,
    apportion,
    build_allocated_ranking,
    erk_densities,
    layer_budgets,
    outlier_ratio,
    outlier_ratios_job,
    owl_densities,
    solve_sensitivity,
)
from visualizer.core.pruning.ranking import kept_count, mask_from_scores
from visualizer.core.tasks import run


def test_uniform_gives_the_leftover_to_the_largest_remainders():
    # 3 layers of 10 at 0.55: K = floor(16.5) = 16, floors 5+5+5 = 15, one more to the first
    shapes = {"a": (10,), "b": (2, 5), "c": (10,)}
    assert layer_budgets("uniform", 0.55, shapes) == {"a": 6, "b": 5, "c": 5}


def test_erk_two_layers_by_hand():
    # A: 10x10, raw (10+10)/100 = 0.2; B: 2x5, raw 7/10 = 0.7.
    # density 0.5: K = 55, eps = 55/(20+7) gives B 1.43 > 1 -> B dense (10), eps = 45/20 -> A 0.45
    shapes = {"A": (10, 10), "B": (2, 5)}
    dens = erk_densities(shapes, 0.5)
    assert dens["B"] == 1.0 and dens["A"] == pytest.approx(0.45)
    assert layer_budgets("erk", 0.5, shapes) == {"A": 45, "B": 10}
    # density 0.2: K = 22, eps = 22/27: A 16.296, B 5.704 -> floors 16 + 5, B has the larger remainder
    dens = erk_densities(shapes, 0.2)
    assert dens["A"] == pytest.approx(0.2 * 22 / 27) and dens["B"] == pytest.approx(0.7 * 22 / 27)
    assert layer_budgets("erk", 0.2, shapes) == {"A": 16, "B": 6}


def test_owl_outlier_ratio_by_hand():
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    norms = torch.tensor([[3.0, 1.0]])  # ||X_j|| of input feature j scales column j
    a = w.abs() * norms  # [[3, 2], [9, 4]], mean 4.5
    assert outlier_ratio(a, m=1.0) == 0.25  # only 9 > 4.5
    assert outlier_ratio(a, m=0.5) == 0.75  # 3, 9, 4 > 2.25


def test_outlier_ratios_read_the_calibration_norms():
    layer = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # ||X_0|| = 3, ||X_1|| = 1: A = [[3, 2], [9, 4]]
    ratios = run(outlier_ratios_job(torch.nn.Sequential(layer), [(x, torch.zeros(2))], m=0.5))
    assert ratios == {"0.weight": 0.75}


def test_owl_densities_by_hand():
    ratios = {"a": 0.1, "b": 0.3, "c": 0.2}
    sizes = {"a": 100, "b": 100, "c": 200}
    # u = (0, 1, 0.5), size-weighted mean 0.5: rho_l = 0.5 + 0.2 (u_l - 0.5)
    assert owl_densities(ratios, sizes, 0.5, lam=0.1) == pytest.approx({"a": 0.4, "b": 0.6, "c": 0.5})
    shapes = {"a": (100,), "b": (100,), "c": (200,)}
    assert layer_budgets("owl", 0.5, shapes, outlier_ratios=ratios, owl_lambda=0.1) == {"a": 40, "b": 60, "c": 100}
    # at 0.95, b (1.05) is clipped to 1: the other two shift by c, 375 + 300 c = 380 -> c = 1/60
    dens = owl_densities(ratios, sizes, 0.95, lam=0.1)
    assert dens == pytest.approx({"a": 0.85 + 1 / 60, "b": 1.0, "c": 0.95 + 1 / 60})
    # 86.67, 100, 193.33 -> floors 86 + 100 + 193 = 379, a has the larger remainder
    assert layer_budgets("owl", 0.95, shapes, outlier_ratios=ratios, owl_lambda=0.1) == {"a": 87, "b": 100, "c": 193}


def test_knapsack_two_layers_by_hand():
    # a (100 weights): 25 kept cost 3, 50 kept cost 1; b (300): 75 kept cost 2, 150 kept cost 1.5.
    # K = 200: (25,75)=5, (50,75)=3, (100,75)=2, (25,150)=4.5, (50,150)=2.5 -> (100, 75) costs 2
    curves = {"a": {0.25: 3.0, 0.5: 1.0}, "b": {0.25: 2.0, 0.5: 1.5}}
    sizes = {"a": 100, "b": 300}
    best = solve_sensitivity(curves, sizes, 200)
    assert best.kept == {"a": 100, "b": 75} and best.cost == 2.0 and best.solver == "exact"
    assert solve_sensitivity(curves, sizes, 200, "greedy").kept == {"a": 100, "b": 75}
    # the 25 weights under the budget go back to b (a has no pruned weights left)
    assert layer_budgets("sensitivity", 0.5, {"a": (100,), "b": (300,)}, curves=curves) == {"a": 100, "b": 100}


def test_exact_knapsack_beats_greedy_where_marginal_cost_misleads():
    # a (10): 5 kept cost 1; b (100): 50 kept cost 5. K = 105. Greedy first restores a (rate
    # 1/5 > 5/50) and then cannot afford b (cost 5); the optimum restores b alone (5 + 100, cost 1)
    curves = {"a": {0.5: 1.0}, "b": {0.5: 5.0}}
    sizes = {"a": 10, "b": 100}
    assert solve_sensitivity(curves, sizes, 105, "greedy").cost == 5.0
    exact = solve_sensitivity(curves, sizes, 105)
    assert exact.kept == {"a": 5, "b": 100} and exact.cost == 1.0


def test_sensitivity_that_cannot_meet_the_budget_says_so():
    with pytest.raises(AllocationError, match="cannot meet the budget"):
        layer_budgets("sensitivity", 0.1, {"a": (100,)}, curves={"a": {0.5: 1.0}})


@pytest.mark.parametrize("allocation", ALLOCATIONS)
@pytest.mark.parametrize("density", [0.0, 0.05, 0.1, 0.37, 1.0])
def test_every_allocation_keeps_exactly_the_global_budget(allocation, density):
    g = torch.Generator().manual_seed(0)
    scores = {"l1": torch.rand(6, 1, 3, 3, generator=g), "l2": torch.rand(16, 6, 3, 3, generator=g),
              "l3": torch.rand(10, 64, generator=g)}
    curves = {n: {0.01: 3.0, 0.1: 1.0, 0.5: 0.2} for n in scores}
    ratios = {"l1": 0.01, "l2": 0.05, "l3": 0.02}
    if allocation == "sensitivity" and density == 0.0:  # the lowest measured level (1%) keeps some
        with pytest.raises(AllocationError, match="cannot meet the budget"):
            allocation_mask(scores, density, allocation, curves=curves, outlier_ratios=ratios)
        return
    masks = allocation_mask(scores, density, allocation, curves=curves, outlier_ratios=ratios)
    assert masks.kept() == kept_count(density, masks.total())


def test_global_allocation_is_the_global_ranking():
    g = torch.Generator().manual_seed(1)
    scores = {"a": torch.rand(5, 4, generator=g), "b": torch.rand(30, generator=g)}
    mine = allocation_mask(scores, 0.3, "global")
    ref = mask_from_scores(scores, 0.3, "global")
    assert all(torch.equal(mine[n], ref[n]) for n in scores)


def test_apportion_respects_caps_and_total():
    k = apportion({"a": 0.9, "b": 0.9}, {"a": 3, "b": 7}, 9)
    assert sum(k.values()) == 9 and k["a"] <= 3 and k["b"] <= 7


def test_unknown_allocation_is_one_line():
    with pytest.raises(AllocationError, match="unknown allocation 'foo'"):
        layer_budgets("foo", 0.5, {"a": (4,)})


@pytest.mark.parametrize("allocation", ["uniform", "erk", "owl", "sensitivity"])
def test_allocated_ranking_follows_the_slider_with_the_allocation_mask(allocation):
    g = torch.Generator().manual_seed(2)
    scores = {"a": torch.rand(8, 3, generator=g), "b": torch.rand(40, generator=g), "c": torch.rand(5, 5, generator=g)}
    inputs = {"outlier_ratios": {"a": 0.1, "b": 0.0, "c": 0.3}} if allocation == "owl" else \
        {"curves": {n: {0.05: 2.0, 0.2: 1.0, 0.6: 0.1} for n in scores}} if allocation == "sensitivity" else {}
    ranking = run(build_allocated_ranking(scores, allocation, **inputs))
    for density in (0.9, 0.3, 0.12, 0.5):
        live = ranking.mask_at(density)
        ref = allocation_mask(scores, density, allocation, **inputs)
        assert all(torch.equal(live[n], ref[n]) for n in scores)
        assert ranking.kept() == kept_count(density, 24 + 40 + 25)
        assert live.metadata["scope"] == allocation
