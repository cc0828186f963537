"""Criterion explainers (core.pruning.explain) on the hand-checkable layer of docs/theory.md §7:
W = [[0.01, 0.08], [-0.5, 0.3]], g = (1, 0, 0.2, 0.5), H with H11 = 2000 and one off-diagonal pair,
so Hg = (2000, 0, 0.9, 2.2). Every number must be the criterion job's own, and match the hand
computation."""

from __future__ import annotations

import pytest
import torch

from tests.test_docs import PerBatchGradient, Quadratic, example_batch
from visualizer.core.pruning.criteria import score
from visualizer.core.pruning.explain import EXPLAINED, explain_weight, instructive_weight
from visualizer.core.pruning.ranking import mask_from_scores
from visualizer.core.tasks import run

LAYER = "fc.weight"


def explain(criterion, index, model=None, batches=None, **kw):
    model = model if model is not None else Quadratic()
    return run(explain_weight(criterion, model, LAYER, index, batches if batches is not None else example_batch(), **kw))


@pytest.mark.parametrize("criterion", EXPLAINED)
def test_every_weight_matches_the_criterion_job_and_the_mask(criterion):
    """score, rank, threshold and kept agree with score() and the ranking's mask, for each weight."""
    scores = run(score(criterion, Quadratic(), example_batch(), probes=8, seed=0))
    mask = mask_from_scores(scores, 0.5)[LAYER].reshape(-1)
    ranks = []
    for i in range(4):
        e = explain(criterion, i, density=0.5)
        assert e.score == float(scores[LAYER].reshape(-1)[i])
        assert e.kept == bool(mask[i]) and e.kept_count == 2 and e.scope_size == 4
        ranks.append(e.rank)
        assert e.threshold == pytest.approx(sorted(scores[LAYER].reshape(-1).tolist())[-2])
        titles = [t for t, _ in e.steps]
        assert titles[0] == "weight" and titles[-3:] == ["substituted", "rank", "threshold"]
    assert sorted(ranks) == [1, 2, 3, 4]


def test_magnitude_and_snip_by_hand():
    e = explain("magnitude", (1, 0))  # w3 = -0.5
    assert e.quantities == {"w": -0.5} and e.substituted == "s = |-0.5| = 0.5"
    assert e.rank == 1 and e.kept and e.threshold == pytest.approx(0.3)
    e = explain("snip", 1)  # w2 = 0.08, g2 = 0
    assert e.quantities["g"] == pytest.approx(0.0, abs=1e-6) and e.score == pytest.approx(0.0, abs=1e-7)
    assert e.rank == 4 and not e.kept
    e = explain("snip", 3)  # |0.5 · 0.3| = 0.15: the highest
    assert e.substituted == "s = |0.5 · 0.3| = 0.15" and e.rank == 1


def test_grasp_by_hand():
    """w1: S = −0.01 · 2000 = −20, the lowest S: GraSP keeps it first (s = −S = 20, rank 1)."""
    e = explain("grasp", 0)
    assert e.quantities["(Hg)_i"] == pytest.approx(2000.0, rel=1e-5)
    assert e.quantities["S"] == pytest.approx(-20.0, rel=1e-5) and e.score == pytest.approx(20.0, rel=1e-5)
    assert e.rank == 1 and e.kept
    assert "S = −w · (Hg)_i = −0.01 · 2000 = -20" in dict(e.steps)["importance"]
    r = explain("grasp-reversed", 0)
    assert r.score == pytest.approx(-20.0, rel=1e-5) and r.rank == 4 and not r.kept
    w3 = explain("grasp", 2)  # S = 0.5 · 0.9 = 0.45: the highest S, removed first by GraSP
    assert w3.quantities["S"] == pytest.approx(0.45, rel=1e-4) and w3.rank == 4 and not w3.kept


def test_obd_by_hand():
    """w1: H11 = 2000 is exact for any probe (its row has no off-diagonal entry):
    ΔL = −1 · 0.01 + ½ · 2000 · 0.01² = −0.01 + 0.1 = 0.09."""
    e = explain("obd", 0, probes=4, seed=0)
    assert e.quantities["H_ii"] == pytest.approx(2000.0, rel=1e-5)
    assert e.score == pytest.approx(0.09, rel=1e-4)
    assert e.substituted.endswith("= -0.01 + 0.1 = 0.09")
    assert "4 probes, seed 0" in dict(e.steps)["curvature"]


def test_taylor_two_batches_by_hand():
    """docs/theory.md §5: w2 = 0.08 with batch gradients ±2: ½ [(2 · 0.08)² + (−2 · 0.08)²] = 0.0256,
    the highest Taylor score, while SNIP scores it 0."""
    batches = [(torch.tensor([[1.0, 2.0, 0.2, 0.5]]), torch.tensor([0])),
               (torch.tensor([[1.0, -2.0, 0.2, 0.5]]), torch.tensor([0]))]
    e = explain("taylor", 1, model=PerBatchGradient(), batches=batches)
    assert e.quantities["g_b"] == pytest.approx([2.0, -2.0], rel=1e-5)
    assert e.score == pytest.approx(0.0256, rel=1e-4) and e.rank == 1 and e.kept
    assert e.substituted == "s = (1/2) [(2 · 0.08)² + ((-2) · 0.08)²] = 0.0256"


def test_layer_scope_and_given_scores_and_bad_input():
    scores = {LAYER: torch.tensor([[4.0, 3.0], [2.0, 1.0]])}
    e = explain("magnitude", 3, scores=scores, density=0.25, scope="layer")  # the scores given are used
    assert e.score == 1.0 and e.rank == 4 and e.kept_count == 1 and e.threshold == 4.0 and not e.kept
    assert explain("magnitude", 0, density=0.0).threshold is None
    with pytest.raises(ValueError, match="scores whole channels"):
        explain("l2-norm", 0)
    with pytest.raises(ValueError, match="not a prunable tensor"):
        run(explain_weight("magnitude", Quadratic(), "fc.bias", 0))
    with pytest.raises(ValueError, match="does not fit"):
        explain("magnitude", (2, 0))
    with pytest.raises(ValueError, match="needs data"):
        run(explain_weight("snip", Quadratic(), LAYER, 0, None))


def test_instructive_weight_is_kept_by_one_and_removed_by_the_other():
    """§7: at ρ = 0.5 magnitude keeps w3, w4 and GraSP keeps w1, w4: the weight magnitude keeps and
    GraSP removes is w3 = -0.5 (index (1, 0)); the other way round it is w1 (index (0, 0))."""
    mag = run(score("magnitude", Quadratic()))
    grasp = run(score("grasp", Quadratic(), example_batch()))
    assert instructive_weight(mag, grasp, 0.5) == (LAYER, (1, 0))
    assert instructive_weight(grasp, mag, 0.5) == (LAYER, (0, 0))
    assert instructive_weight(mag, mag, 0.5) is None
    e = explain("grasp", (1, 0))
    assert not e.kept and explain("magnitude", (1, 0)).kept
