"""The criterion explainer: its formula, with its substituted numbers, gives the app's score."""

import math

import pytest
import torch
from torch import nn

from visualizer.core.pruning.criteria import score
from visualizer.core.pruning.explain import explain_weight, instructive_weight
from visualizer.core.tasks import run


def tiny():
    """Linear 2 -> 2 without bias, W = [[1, 0], [0, 0]]; one sample x = (1, 0) of class 0."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    batches = [(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))]
    return model, batches


def test_snip_by_hand():
    # logits (1, 0): p0 = e / (e + 1); dL/dW00 = (p0 - 1) x0 = -1 / (e + 1); S = |g w| = 0.2689
    model, batches = tiny()
    e = run(explain_weight(model, "snip", "0.weight", (0, 0), 0.5, batches))
    assert e.values["g"] == pytest.approx(-1 / (math.e + 1), rel=1e-5)
    assert e.score == pytest.approx(1 / (math.e + 1), rel=1e-5)
    assert "0.2689" in e.substituted
    # the other weights: W10 has g = p1 x0 = 1/(e+1) but w = 0, so S = 0; W00 ranks first
    assert e.rank == 1 and e.kept and e.kept_count == 2 and e.total == 4


def test_magnitude_by_hand_and_the_cut():
    model, batches = tiny()
    e = run(explain_weight(model, "magnitude", "0.weight", (1, 1), 0.25, None))
    assert e.values == {"w": 0.0} and e.score == 0.0 and not e.kept
    assert e.kept_count == 1 and e.cut == 1.0
    assert "removed" in e.steps()[-1] and "1 highest" in e.steps()[-1]


@pytest.mark.parametrize("criterion", ["magnitude", "snip", "grasp", "obd"])
def test_the_formula_gives_the_apps_score(criterion):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    batches = [(torch.randn(8, 5), torch.randint(0, 3, (8,))) for _ in range(3)]
    scores = run(score(criterion, model, batches, probes=4, seed=1))
    for layer, index in (("0.weight", (2, 3)), ("2.weight", (1, 0))):
        e = run(explain_weight(model, criterion, layer, index, 0.3, batches, probes=4, seed=1))
        assert e.score == pytest.approx(float(scores[layer][index]), rel=1e-4, abs=1e-7)
        formula_value = float(e.substituted.rsplit("=", 1)[1])
        assert formula_value == pytest.approx(e.score, rel=2e-3, abs=1e-6)
        assert e.layer_scores.shape == tuple(scores[layer].shape)


def test_taylor_averages_per_batch_squared_products():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    batches = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(2)]
    e = run(explain_weight(model, "taylor", "0.weight", (1, 2), 0.5, batches))
    by_hand = []
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        by_hand.append((model[0].weight.grad[1, 2].item() * model[0].weight[1, 2].item()) ** 2)
    assert float(e.substituted.rsplit("=", 1)[1]) == pytest.approx(sum(by_hand) / 2, rel=1e-3)
    assert [e.values["g_1"], e.values["g_2"]] != [0.0, 0.0]


def test_bad_requests_say_what_is_wrong():
    model, batches = tiny()
    with pytest.raises(ValueError, match="needs data"):
        run(explain_weight(model, "snip", "0.weight", (0, 0), 0.5, None))
    with pytest.raises(ValueError, match="no prunable layer"):
        run(explain_weight(model, "magnitude", "fc9.weight", (0, 0), 0.5))
    with pytest.raises(ValueError, match="outside"):
        run(explain_weight(model, "magnitude", "0.weight", (5, 0), 0.5))


def test_instructive_weight_is_kept_by_one_and_removed_by_the_other():
    a = {"w": torch.tensor([[4.0, 3.0], [2.0, 1.0]])}
    b = {"w": torch.tensor([[1.0, 4.0], [3.0, 2.0]])}
    # at 50%: A keeps (0,0), (0,1); B keeps (0,1), (1,0); A keeps and B removes (0,0)
    assert instructive_weight(a, b, 0.5, "w") == (0, 0)
