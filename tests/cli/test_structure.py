"""pruneviz graph / shrink / speed through the dispatcher."""

from __future__ import annotations

import json

import torch

from visualizer.cli import main


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_graph_json_has_nodes_edges_groups(capsys, tmp_path):
    out = _json(capsys, ["graph", "resnet-mini", "--json", "--out", str(tmp_path / "g.graphml")])
    assert out["method"] == "fx" and out["nodes"] and out["edges"]
    assert len(out["groups"]) == 6
    member = out["groups"][0][0]
    assert {"param", "dim", "indices"} <= set(member)
    assert out["group_info"][0]["root"] == "stem.0"
    assert (tmp_path / "g.graphml").exists()


def test_graph_table(capsys):
    assert main(["graph", "densenet-mini"]) == 0
    text = capsys.readouterr().out
    assert "traced with fx" in text and "block1.0.conv" in text


def test_shrink_json_and_file(capsys, tmp_path):
    path = tmp_path / "small.pt"
    out = _json(capsys, ["shrink", "inception-mini", "--criterion", "l1-norm", "--density", "0.5",
                         "--out", str(path), "--json"])
    for key in ("params_before", "params_after", "flops_before", "flops_after", "max_output_diff"):
        assert key in out
    assert out["params_after"] < out["params_before"] and out["flops_after"] < out["flops_before"]
    assert out["max_output_diff"] <= 1e-5
    from visualizer.core.structure.shrink import load_shrunk

    small = load_shrunk(path)
    assert sum(p.numel() for p in small.parameters()) == out["params_after"]


def test_shrink_table_bn_scale(capsys):
    assert main(["shrink", "se-cnn", "--criterion", "bn-scale", "--density", "0.25"]) == 0
    assert "max |shrunk(x) - masked(x)|" in capsys.readouterr().out


def test_speed_json(capsys):
    out = _json(capsys, ["speed", "lenet", "--density", "0.5", "--repeats", "2", "--batch", "4", "--json"])
    names = [m["name"] for m in out["models"]]
    assert names == ["dense", "masked", "shrunk"] and out["models"][0]["eta"] == 1.0


def test_bad_input_is_one_line_exit_2(capsys):
    assert main(["shrink", "lenet", "--density", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "density" in err and len(err.strip().splitlines()) == 1
    assert main(["graph", "no-such-model"]) == 2


def test_torchscript_model_has_no_structure_but_graph_works(capsys, tmp_path):
    from visualizer.core.models.zoo import ZOO

    path = tmp_path / "lenet.pt"
    torch.jit.save(torch.jit.script(ZOO["lenet"].build().eval()), str(path))
    assert main(["graph", str(path), "--data", "digits"]) == 0
    assert "hierarchy" in capsys.readouterr().out
    assert main(["shrink", str(path), "--data", "digits", "--density", "0.5"]) == 2
    assert "no structurally prunable group" in capsys.readouterr().err


def test_shrink_zeros_needs_zeros(capsys):
    assert main(["shrink", "lenet", "--zeros"]) == 2
    assert "no group, connection or branch is zero" in capsys.readouterr().err
    assert main(["shrink", "lenet"]) == 2
    assert "--density" in capsys.readouterr().err


SIXTEEN_BLOCKS = """
from torch import nn

def build():
    return nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(16)], nn.Linear(8, 2))
"""


def test_graph_json_carries_the_hierarchy_with_folded_runs(capsys, tmp_path):
    path = tmp_path / "deep.py"
    path.write_text(SIXTEEN_BLOCKS)
    out = _json(capsys, ["graph", f"{path}:build", "--json"])
    by_id = {c["id"]: c for c in out["hierarchy"]["containers"]}
    assert by_id[""]["children"][1:] == ["0..15", "16", "output"]
    run = by_id["0..15"]
    assert run["kind"] == "run" and run["repeat"] == 16 and run["first"] == "0"
    assert run["children"] == [str(i) for i in range(16)]
    assert by_id["3"]["children"] == ["3.0", "3.1"] and by_id["3"]["parent"] == "0..15"
