"""Ranking: exact kept counts, best k-term approximation, scopes, channels, incremental updates."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visualizer.core.pruning.ranking import (
    Ranking,
    build_ranking,
    kept_count,
    mask_from_scores,
    sorted_order,
)
from visualizer.core.tasks import run

finite = st.floats(-10, 10, allow_nan=False, width=32)


def scores_strategy(max_layers=3, max_rows=4, max_cols=4):
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return st.lists(shape, min_size=1, max_size=max_layers).flatmap(
        lambda shapes: st.tuples(
            *[st.lists(finite, min_size=r * c, max_size=r * c).map(lambda v, r=r, c=c: torch.tensor(v).reshape(r, c)) for r, c in shapes]
        ).map(lambda ts: {f"l{i}.weight": t for i, t in enumerate(ts)})
    )


def reference_mask(scores: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """From scratch: stable sort by descending score (ties: lower flat index first), keep k."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()]).double().numpy()
    order = sorted(range(flat.size), key=lambda i: (-flat[i], i))
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:k]] = True
    return torch.from_numpy(keep)


@settings(max_examples=60, deadline=None)
@given(w=st.lists(finite, min_size=1, max_size=8), data=st.data())
def test_magnitude_pruning_is_the_best_k_term_approximation(w, data):
    """docs/theory.md §4: keeping the k largest |w_i| minimises ||u - w||^2 over all supports of size k."""
    wt = torch.tensor(w, dtype=torch.float64)
    k = data.draw(st.integers(0, len(w)))
    rho = k / len(w)
    mask = mask_from_scores({"w": wt.float().abs()}, rho)["w"]
    assert int(mask.sum()) == kept_count(rho, len(w))
    k = int(mask.sum())
    err = float(((wt - wt * mask) ** 2).sum())
    for support in itertools.combinations(range(len(w)), k):
        u = torch.zeros_like(wt)
        u[list(support)] = wt[list(support)]
        assert err <= float(((u - wt) ** 2).sum()) * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(scores=scores_strategy(), rho=st.floats(0, 1))
def test_exact_kept_count_global_and_equal_to_reference(scores, rho):
    r = Ranking.from_scores(scores)
    m = r.mask_at(rho)
    d = sum(s.numel() for s in scores.values())
    k = kept_count(rho, d)
    assert m.kept() == k == r.kept()
    assert torch.equal(m.flat(), reference_mask(scores, k))
    assert r.layer_kept() == {n: int(v.sum()) for n, v in m.masks.items()}


@settings(max_examples=40, deadline=None)
@given(scores=scores_strategy(), rho=st.floats(0, 1))
def test_layer_scope_keeps_floor_rho_d_per_layer(scores, rho):
    m = Ranking.from_scores(scores, scope="layer").mask_at(rho)
    for name, s in scores.items():
        k = kept_count(rho, s.numel())
        assert int(m[name].sum()) == k
        assert torch.equal(m[name].reshape(-1), reference_mask({name: s}, k))


@settings(max_examples=40, deadline=None)
@given(scores=scores_strategy(), rho=st.floats(0, 1), scope=st.sampled_from(["global", "layer"]))
def test_channel_masks_are_constant_per_channel_and_count_channels(scores, rho, scope):
    r = Ranking.from_scores(scores, scope=scope, structure="channel")
    m = r.mask_at(rho)
    kept_channels = 0
    for mask in m.masks.values():
        rows = mask.reshape(mask.shape[0], -1)
        assert bool((rows == rows[:, :1]).all())
        kept_channels += int(rows[:, 0].sum())
        if scope == "layer":
            assert int(rows[:, 0].sum()) == kept_count(rho, mask.shape[0])
    if scope == "global":
        assert kept_channels == kept_count(rho, sum(s.shape[0] for s in scores.values()))
        # the kept channels are those with the highest mean score (ties: lower index first)
        means = torch.cat([s.double().mean(1) for s in scores.values()]).float()
        ref = reference_mask({"c": means}, kept_channels)
        got = torch.cat([mk[:, 0] for mk in m.masks.values()])
        assert torch.equal(got, ref)


@settings(max_examples=30, deadline=None)
@given(
    scores=scores_strategy(max_layers=4, max_rows=6, max_cols=6),
    densities=st.lists(st.floats(0, 1), min_size=1, max_size=12),
    scope=st.sampled_from(["global", "layer"]),
    structure=st.sampled_from(["unstructured", "channel"]),
)
def test_incremental_updates_equal_from_scratch(scores, densities, scope, structure):
    moving = Ranking.from_scores(scores, scope, structure)
    for rho in densities:
        live = moving.mask_at(rho, copy=False)
        fresh = Ranking.from_scores(scores, scope, structure).mask_at(rho)
        assert torch.equal(live.flat(), fresh.flat())
        assert moving.layer_kept() == {n: int(v.sum()) for n, v in fresh.masks.items()}


def test_incremental_paths_both_used_on_a_larger_vector():
    """Small moves scatter (order slice), large moves rewrite (rank < k): both equal the reference."""
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(50, 40, generator=g), "b": torch.randn(300, generator=g).reshape(30, 10)}
    r = Ranking.from_scores(scores)
    for rho in [0.5, 0.51, 0.509, 0.02, 0.97, 1.0, 0.0, 0.3333]:
        m = r.mask_at(rho)
        assert torch.equal(m.flat(), reference_mask(scores, kept_count(rho, 2300)))
        assert r.kept() == kept_count(rho, 2300)
        assert r.layer_kept() == {n: int(v.sum()) for n, v in m.masks.items()}


def test_density_zero_and_one():
    scores = {"a": torch.tensor([[3.0, 1.0], [2.0, 5.0]]), "b": torch.tensor([[1.0, 1.0, 1.0]])}
    r = Ranking.from_scores(scores)
    assert r.mask_at(0.0).kept() == 0
    m1 = r.mask_at(1.0)
    assert m1.kept() == 7 and m1.density() == 1.0
    assert r.density() == 1.0 and r.layer_densities() == {"a": 1.0, "b": 1.0}


def test_ties_are_deterministic_lower_index_first():
    scores = {"a": torch.ones(2, 2), "b": torch.ones(1, 4)}
    m = mask_from_scores(scores, 0.5)
    assert m["a"].all() and not m["b"].any()
    m = mask_from_scores(scores, 0.375)
    assert m["a"].reshape(-1).tolist() == [True, True, True, False]
    # -0.0 and +0.0 tie as well
    m = mask_from_scores({"z": torch.tensor([[-0.0, 0.0, -0.0]])}, 2 / 3)
    assert m["z"].reshape(-1).tolist() == [True, True, False]


def test_order_handles_negative_and_infinite_scores():
    s = np.array([-1.5, np.inf, 0.0, -np.inf, 2.0, -0.0, 1e-30, -1e-30], dtype=np.float32)
    assert sorted_order(s).tolist() == [1, 4, 6, 2, 5, 7, 0, 3]


def test_decimal_density_floor():
    assert kept_count(0.29, 100) == 29  # binary 0.29 * 100 = 28.999999999999996
    assert kept_count(1 / 49, 49) == 1  # binary (1/49) * 49 = 0.9999999999999999
    assert all(kept_count(k / d, d) == k for d in range(1, 60) for k in range(d + 1))
    assert kept_count(0.2999, 100) == 29 and kept_count(0.999999, 100) == 99
    assert kept_count(1.0, 7) == 7 and kept_count(0.0, 7) == 0
    assert kept_count(0.5, 7) == math.floor(3.5)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="density"):
        mask_from_scores({"a": torch.ones(2, 2)}, 1.5)
    with pytest.raises(ValueError, match="density"):
        mask_from_scores({"a": torch.ones(2, 2)}, float("nan"))
    with pytest.raises(ValueError, match="scope"):
        mask_from_scores({"a": torch.ones(2, 2)}, 0.5, scope="model")
    with pytest.raises(ValueError, match="structure"):
        mask_from_scores({"a": torch.ones(2, 2)}, 0.5, structure="blocks")
    with pytest.raises(ValueError, match="NaN"):
        mask_from_scores({"a": torch.tensor([[1.0, float("nan")]])}, 0.5)


def test_empty_scores_and_empty_layer():
    r = Ranking.from_scores({})
    assert r.mask_at(0.5).total() == 0 and r.density() == 0.0
    r = Ranking.from_scores({"a": torch.zeros(0, 3), "b": torch.tensor([[1.0, 2.0]])}, scope="layer")
    m = r.mask_at(0.5)
    assert m["a"].shape == (0, 3) and m["b"].tolist() == [[False, True]]


def test_build_ranking_job_reports_progress_and_metadata():
    steps = []
    r = run(build_ranking({"a": torch.randn(4, 4)}, "global", "unstructured", criterion="magnitude"), steps.append)
    assert steps[-1].fraction == 1.0
    assert all(0.0 <= s.fraction <= 1.0 for s in steps)
    m = r.mask_at(0.25)
    assert m.metadata["criterion"] == "magnitude" and m.metadata["scope"] == "global"


def test_copies_are_independent_and_live_views_follow():
    r = Ranking.from_scores({"a": torch.arange(10.0).reshape(2, 5)})
    m_copy = r.mask_at(0.3)
    live = r.mask_at(0.3, copy=False)
    r.mask_at(0.8)
    assert m_copy.kept() == 3 and live.kept() == 8
    assert r.live_mask("a").sum() == 8
    assert r.scores_view("a").shape == (2, 5)
    assert r.cut_score() == 2.0
    with pytest.raises(ValueError):
        r.scores_view("a")[0, 0] = 1.0


def test_position_buckets_on_a_vector_larger_than_65536():
    """Above 2^16 weights the full-pass path compares uint16 buckets and fixes k's own bucket."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5000, 300_001).astype(np.float32)  # many ties
    scores = {"a": torch.from_numpy(values[:200_000].reshape(400, 500)), "b": torch.from_numpy(values[200_000:])}
    r = Ranking.from_scores(scores)
    assert r._shift == 3
    order = np.lexsort((np.arange(values.size), -values.astype(np.float64)))
    for rho in [0.7, 0.1, 0.10001, 0.9, 0.33333, 1.0, 0.0, 0.5]:
        k = kept_count(rho, values.size)
        ref = np.zeros(values.size, dtype=bool)
        ref[order[:k]] = True
        m = r.mask_at(rho, copy=False)
        assert np.array_equal(m.flat().numpy(), ref)
        assert r.layer_kept() == {"a": int(ref[:200_000].sum()), "b": int(ref[200_000:].sum())}


@settings(max_examples=200, deadline=None)
@given(rho=st.floats(0, 1), d=st.integers(0, 100_000))
def test_kept_count_is_the_exact_floor(rho, d):
    """k = floor(rho * d) computed on the exact rational value of rho (the rule every module uses:
    masks, IHT, DST layer counts, structured shrink), up to a float that lies within
    max(1e-9, 4 ulps of d) below an integer, which counts as that integer."""
    exact = Fraction(rho) * d
    k = kept_count(rho, d)
    assert k in (math.floor(exact), math.floor(exact) + 1)
    if k == math.floor(exact) + 1:  # only a product a rounding error below an integer is rounded up
        assert k - exact <= max(Fraction(1, 10**9), Fraction(d, 2**50))
    else:
        assert k == math.floor(exact)


def test_kept_count_by_hand():
    assert kept_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert kept_count(1 / 49, 49) == 1  # (1/49) * 49 = 0.9999999999999999
    assert kept_count(0.05, 61_706) == 3085  # 3085.3
    assert kept_count(0.5, 7) == 3 and kept_count(1.0, 7) == 7 and kept_count(0.0, 7) == 0


def test_kept_count_exact_fractions_on_a_resnet50_sized_total():
    d = 25_502_912
    for k in [1, 3, 12_751_456, 25_502_911, 7_777_777]:
        assert kept_count(k / d, d) == k


def test_numpy_and_float64_scores_are_accepted():
    scores = {"a": np.array([[0.5, 2.0], [1.0, -3.0]]), "b": torch.tensor([[4.0, 0.0]], dtype=torch.float64)}
    m = mask_from_scores(scores, 0.5)
    assert m["a"].tolist() == [[False, True], [True, False]] and m["b"].tolist() == [[True, False]]
    assert m["a"].dtype == torch.bool


def test_moves_on_both_sides_of_the_full_pass_threshold_equal_the_reference():
    """A random model's weights (three layers, 2^17 + 7 weights, so position buckets are used):
    moves of d/200 (scattered), d/100 (between d/128 and d/64) and large ones (full passes), in
    both directions, each equal to a from-scratch stable sort, as do the per-layer counts."""
    g = torch.Generator().manual_seed(5)
    scores = {"a": torch.randn(256, 256, generator=g), "b": torch.randn(64, 1024, generator=g).abs(),
              "c": torch.randn(7, generator=g)}
    d = sum(s.numel() for s in scores.values())
    values = torch.cat([s.reshape(-1) for s in scores.values()]).numpy()
    order = np.lexsort((np.arange(d), -values.astype(np.float64)))
    r = Ranking.from_scores(scores)
    for rho in [0.5, 0.495, 0.49, 0.5, 0.51, 0.52, 0.1, 0.11, 0.9, 0.895, 0.0, 1.0, 0.99]:
        k = kept_count(rho, d)
        ref = np.zeros(d, dtype=bool)
        ref[order[:k]] = True
        assert np.array_equal(r.mask_at(rho, copy=False).flat().numpy(), ref), rho
        sizes = np.cumsum([0] + [s.numel() for s in scores.values()])
        assert list(r.layer_kept().values()) == [int(ref[sizes[i]:sizes[i + 1]].sum()) for i in range(3)]


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("structure", ["unstructured", "channel"])
def test_masks_read_lazily_equal_the_reference_whatever_was_read_between_moves(scope, structure):
    """A move only counts; a layer's bytes follow when it is read. Layers read at some cuts and
    skipped at others (a view that draws one layer) still show the current cut, through both the
    small-move path (every layer up to date) and the per-layer rewrite (bucket pass + tail)."""
    g = torch.Generator().manual_seed(7)
    scores = {"a": torch.randn(300, 256, generator=g), "b": torch.randn(64, 600, generator=g),
              "c": torch.randn(9, 3, generator=g)}
    moving = Ranking.from_scores(scores, scope, structure)
    rng = np.random.default_rng(1)
    for step, rho in enumerate([0.5, 0.499, 0.498, 0.4975, 0.2, 0.21, 0.9, 0.3, 0.3001, 0.0, 1.0, 0.75, 0.7499]):
        live = moving.mask_at(rho, copy=False)
        fresh = Ranking.from_scores(scores, scope, structure).mask_at(rho)
        assert moving.layer_kept() == {n: int(v.sum()) for n, v in fresh.masks.items()}
        if step % 3 == 2:  # read everything now and then: the next small move may flip in place
            assert torch.equal(live.flat(), fresh.flat()), rho
            continue
        for name in rng.permutation(list(scores))[: rng.integers(0, 3)]:
            assert torch.equal(live[name], fresh[name]), (rho, name)
    assert "a" in live and "z" not in live and list(live) == ["a", "b", "c"] and len(live.masks) == 3
    assert torch.equal(moving.mask_at(0.37).flat(), Ranking.from_scores(scores, scope, structure).mask_at(0.37).flat())
