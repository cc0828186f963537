"""The explainers' numbers are the core functions' own."""

import torch

from visualizer.core.data.sources import load_dataset
from visualizer.core.lecture.explainers import (
    coupling_explainer_job,
    criterion_explainer_job,
    masked_speed_job,
)
from visualizer.core.models.loaders import load_model
from visualizer.core.tasks import run
from visualizer.core.workspace import Workspace


def test_criterion_explainer_shows_the_apps_score_of_a_disputed_weight():
    r = run(criterion_explainer_job("snip", "mlp", density=0.1))
    e = r.explanation
    loaded = load_model("mlp")
    scores = run(Workspace(loaded.model, load_dataset(loaded.dataset), model_ref="mlp").scores("snip"))
    assert e.score == float(scores[e.layer][e.index])
    assert r.contrast == "magnitude" and e.kept  # kept by SNIP; magnitude removes it
    magnitude = run(Workspace(loaded.model, None, model_ref="mlp").scores("magnitude"))
    assert float(magnitude[e.layer][e.index]) < float(torch.quantile(magnitude[e.layer].flatten(), 0.99))
    assert int(r.counts.sum()) == scores[e.layer].numel() and len(r.edges) == len(r.counts) + 1


def test_a_given_weight_is_explained_as_asked():
    r = run(criterion_explainer_job("magnitude", "mlp", layer="fc2.weight", index=(3, 7), density=0.5))
    w = float(load_model("mlp").model.fc2.weight.detach()[3, 7])
    assert r.explanation.quantities["w"] == w and r.explanation.score == abs(w) and r.contrast == ""


def test_a_data_criterion_without_data_falls_back_to_magnitude_and_says_so():
    loaded = load_model("mlp")
    r = run(criterion_explainer_job("grasp", loaded=loaded, data=None, density=0.2))
    assert r.explanation.criterion == "magnitude" and "no data" in r.note


def test_coupling_explainer_removes_exactly_the_groups_slices():
    r = run(coupling_explainer_job("resnet-mini"))
    assert len({m["param"] for m in r.members if m["role"] == "out"}) > 1  # joined by a residual add
    assert any("residual add" in m["reason"] for m in r.members)
    changed = {s["param"]: s for s in r.shapes}
    for m in r.members:
        s = changed[m["param"]]
        assert s["after"][m["dim"]] == s["before"][m["dim"]] - 1
    assert r.same_output  # the shrunk model computes what the masked one does


def test_masked_speed_measures_dense_masked_and_shrunk():
    r = run(masked_speed_job("lenet", density=0.5, repeats=2))
    names = [e.name for e in r.report.entries]
    assert names == ["dense", "masked", "shrunk"]
    dense, masked, shrunk = r.report.entries
    assert masked.executed_flops == dense.executed_flops and masked.flops < dense.flops
    assert shrunk.params < dense.params and "masked" in r.summary()


def test_wanda_explainer_is_the_criterions_numbers():
    from visualizer.core.lecture.explainers import wanda_explainer_job
    from visualizer.core.pruning.criteria import score
    from visualizer.core.workspace import calibration_batches

    r = run(wanda_explainer_job("lenet", density=0.1))
    e = r.explanation
    loaded = load_model("lenet")
    data = load_dataset(loaded.dataset)
    scores = run(score("wanda", loaded.model, calibration_batches(data)))
    assert e.score == float(scores[e.layer][e.index])  # the row place the ranking sorts
    w = float(loaded.model.get_parameter(e.layer).detach()[e.index])
    assert abs(e.quantities["S"] - abs(w) * e.quantities["norm"]) < 1e-5 * max(1.0, e.quantities["S"])
    row = scores[e.layer][e.index[0]]
    assert e.rank == int((row > scores[e.layer][e.index]).sum()) + 1  # its place among its row's scores
    assert e.kept and r.contrast == "magnitude"


def test_coupling_explainer_puts_the_group_on_a_cut_down_graph():
    """The graph part of the slide is core's: the traced layers of the group's members (a
    residual-coupled group of resnet-mini), a reason for each, and the residual adds joining the
    producers; the cut-down hierarchy holds exactly those nodes."""
    from visualizer.core.structure.overlays import layer_of

    r = run(coupling_explainer_job("resnet-mini"))
    assert set(r.layers) == {layer_of(m["param"]) for m in r.members}
    assert {"stem.0", "layer1.conv2", "layer2.conv2"} <= set(r.layers)  # the producers the adds join
    assert r.tags["stem.1"] == "batch norm" and r.tags["layer1.conv1"] == "reads it"
    adds = [n for n, why in r.tags.items() if why == "residual add"]
    assert len(adds) == 2 and not set(adds) & set(r.layers)
    leaves = {k for k, n in r.hierarchy.nodes.items() if not n.is_container}
    assert leaves == set(r.layers) | set(adds)
    assert ("layer1.bn2", adds[0]) in r.hierarchy.edges  # the add reads the block's norm output
