"""CLI: masks in every format (prune --out/--format, info --mask, --weights on a torch.prune
checkpoint, --mask on the commands that use one) and one-line errors for files that do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.utils import prune

from visualizer.cli import main
from visualizer.core.io.mask_formats import read_mask, write_mask
from visualizer.core.models.loaders import load_model


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name,fmt", [("m.safetensors", None), ("m.pt", None), ("m.pth", None), ("m.pt", "nni")])
def test_prune_out_in_every_format_reads_back_identically(capsys, tmp_path, name, fmt):
    out = tmp_path / name
    argv = ["prune", "mlp", "--density", "0.3", "--out", str(out)] + (["--format", fmt] if fmt else [])
    pruned = run_json(capsys, *argv)
    model = load_model("mlp").model
    back = read_mask(out, model)
    ref = tmp_path / "ref.safetensors"
    run_json(capsys, "prune", "mlp", "--density", "0.3", "--out", str(ref))
    expected = read_mask(ref, model)
    assert all(torch.equal(back[n], expected[n]) for n in expected.masks) and list(back.masks) == list(expected.masks)
    if name.endswith((".pt", ".pth")) and fmt is None:  # really a torch file, not safetensors under a .pt name
        state = torch.load(out, weights_only=True)
        assert "fc1.weight_orig" in state and "fc1.weight_mask" in state
    info = run_json(capsys, "info", "mlp", "--mask", str(out))
    assert pruned.pop("device") == "cpu"  # prune computes (on --device); info only reads
    assert {k: info[k] for k in ("density", "kept", "total", "layers")} == pruned


def test_info_weights_on_a_torch_prune_checkpoint(capsys, tmp_path):
    loaded = load_model("mlp")
    model = loaded.model
    prune.l1_unstructured(model.fc1, "weight", amount=0.75)
    prune.l1_unstructured(model.fc2, "weight", amount=0.5)
    torch.save({"epoch": 9, "model_state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    out = run_json(capsys, "info", "mlp", "--weights", str(tmp_path / "ckpt.pth"))
    layers = {lay["name"]: lay for lay in out["layers"]}
    assert set(layers) == {"fc1.weight", "fc2.weight"}
    assert layers["fc1.weight"]["kept"] == 300 * 64 // 4 and layers["fc2.weight"]["density"] == 0.5
    assert out["kept"] == 300 * 64 // 4 + 100 * 300 // 2
    # the text form prints the same per-layer table
    assert main(["info", "mlp", "--weights", str(tmp_path / "ckpt.pth")]) == 0
    text = capsys.readouterr().out
    assert "fc1.weight" in text and "25.00%" in text


def test_mask_options_read_every_format(capsys, tmp_path):
    model = load_model("mlp").model
    prune.random_unstructured(model.fc1, "weight", amount=0.5)
    torch.save(model.state_dict(), tmp_path / "tp.pt")
    expected = model.fc1.weight_mask.bool()
    nni = {"fc1": {"weight": expected.float()}}
    torch.save(nni, tmp_path / "nni.pth")
    from visualizer.core.pruning.masks import MaskSet

    write_mask(MaskSet({"fc1.weight": expected}), tmp_path / "ours.safetensors")
    dims = []
    for path in ("ours.safetensors", "tp.pt", "nni.pth"):
        out = run_json(capsys, "hessian", "mlp", "--mask", str(tmp_path / path), "--top-k", "1", "--batches", "1",
                       "--batch-size", "16", "--max-steps", "3", "--density-probes", "0")
        assert out["density"] == pytest.approx(0.5, abs=1e-3)
        dims.append(out["masked"]["dim"])
    assert dims[0] == dims[1] == dims[2] < out["dense"]["dim"]


def test_a_mask_that_does_not_fit_is_one_line(capsys, tmp_path):
    run_json(capsys, "prune", "lenet", "--density", "0.5", "--out", str(tmp_path / "lenet.safetensors"))
    assert main(["info", "mlp", "--mask", str(tmp_path / "lenet.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not fit" in err
    torch.save(load_model("mlp").model.state_dict(), tmp_path / "weights.pt")
    assert main(["train", "mlp", "--mask", str(tmp_path / "weights.pt"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other than 0 and 1" in err
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["landscape", "mlp", "--mask", str(tmp_path / "junk.pt"), "--dims", "1", "--steps", "3",
                 "--out", str(tmp_path / "l.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "junk.pt" in err
    assert main(["prune", "mlp", "--density", "0.5", "--out", str(tmp_path / "m.npz")]) == 2
    assert ".safetensors, .pt or .pth" in capsys.readouterr().err
