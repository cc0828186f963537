"""Per-layer curvature (core.curvature.layerwise): each unit's λ_max against torch.linalg.eigvalsh
of the exact block Hessian (torch.autograd.functional.hessian) of the tiny float64 model."""

from __future__ import annotations

import pytest
import torch

from tests.core.curvature.exact import exact_hessian
from visualizer.core.curvature import layerwise, operator
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.groups import find_groups
from visualizer.core.tasks import run


def _block_max(model, ev, names, select=None):
    """λ_max of the exact Hessian over ``names`` (concatenated), restricted to ``select``."""
    H = exact_hessian(model, ev, operator.masked_point(model), names)
    if select is not None:
        H = H[select][:, select]
    return float(torch.linalg.eigvalsh(H)[-1])


def test_every_layer_matches_the_exact_block(tiny):
    model, ev, _ = tiny
    steps = []
    got = run(layerwise.layer_curvature(model, ev, max_steps=60, tol=1e-10), steps.append)
    assert list(got) == ["fc1.weight", "fc2.weight"]
    for name, lam in got.items():
        assert lam == pytest.approx(_block_max(model, ev, [name]), rel=1e-8)
    # interlacing: a block's λ_max never exceeds the whole operator's
    whole = _block_max(model, ev, ["fc1.weight", "fc2.weight"])
    assert max(got.values()) <= whole + 1e-12
    assert steps[0].stage.startswith("fc1.weight: lanczos") and steps[-1].fraction == pytest.approx(1.0)


def test_masked_blocks_are_the_kept_coordinates_and_details_say_exact(tiny):
    model, ev, mask = tiny
    detail = run(layerwise.unit_curvature(model, ev, mask, max_steps=60, tol=1e-10))
    point = operator.masked_point(model, mask)
    for name, u in detail.items():
        keep = mask.masks[name].reshape(-1)
        H = exact_hessian(model, ev, point, [name])[keep][:, keep]
        assert u.dim == int(keep.sum()) and u.converged and u.error <= 1e-9 * abs(u.lambda_max)
        assert u.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
        assert u.to_json()["lambda_max"] == u.lambda_max


def test_a_coupled_group_block_holds_all_its_slices(tiny):
    """fc1's 10 hidden units: fc1's rows, fc1's bias and fc2's columns, 50 + 10 + 40 coordinates."""
    model, ev, _ = tiny
    groups = find_groups(model, torch.randn(2, 5, dtype=torch.float64)).groups
    detail = run(layerwise.unit_curvature(model, ev, unit="group", groups=groups, max_steps=120, tol=1e-10))
    assert list(detail) == ["fc1 (channels: 10)"]  # fc2's outputs are the logits: not prunable
    u = detail["fc1 (channels: 10)"]
    assert u.dim == 100 and u.converged
    assert u.lambda_max == pytest.approx(_block_max(model, ev, ["fc1.weight", "fc1.bias", "fc2.weight"]), rel=1e-8)


def test_a_layer_pruned_to_zero_is_left_out_and_bad_input_is_one_line(tiny):
    model, ev, mask = tiny
    empty = MaskSet({"fc1.weight": torch.zeros(10, 5, dtype=torch.bool), "fc2.weight": mask.masks["fc2.weight"]})
    assert list(run(layerwise.layer_curvature(model, ev, empty, max_steps=40))) == ["fc2.weight"]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        run(layerwise.layer_curvature(model, ev, names=["nope"]))
    with pytest.raises(ValueError, match="unknown unit"):
        run(layerwise.layer_curvature(model, ev, unit="head"))
    only = run(layerwise.layer_curvature(model, ev, names=["fc2.weight"], max_steps=40, tol=1e-10))
    assert list(only) == ["fc2.weight"]
    assert only["fc2.weight"] == pytest.approx(_block_max(model, ev, ["fc2.weight"]), rel=1e-8)


def test_lanczos_estimate_within_its_bound_when_not_exhausted(tiny):
    """A block larger than max_steps: the estimate is a Ritz value within its error bound."""
    model, ev, _ = tiny
    u = run(layerwise.unit_curvature(model, ev, names=["fc1.weight"], max_steps=12, tol=1e-3))["fc1.weight"]
    exact = _block_max(model, ev, ["fc1.weight"])
    assert not u.exact and u.dim == 50 and u.lambda_max <= exact + 1e-12
    assert exact - u.lambda_max <= max(u.error, 1e-3 * abs(exact)) + 1e-12


def test_group_blocks_index_the_slices():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    groups = find_groups(model, torch.randn(1, 3)).groups
    blocks = layerwise.group_blocks(model, groups)
    (name, parts), = blocks.items()
    got = {p: idx.tolist() for p, idx in parts}
    # rows of 0.weight (2 x 3): all 6 entries; 0.bias: both; columns of 2.weight (2 x 2): all 4
    assert got == {"0.weight": [0, 1, 2, 3, 4, 5], "0.bias": [0, 1], "2.weight": [0, 1, 2, 3]}
