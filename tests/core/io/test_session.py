"""The .pviz session format: round trip, atomic writes, older and newer schemas, bad files."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from visualizer.core.io import session as S
from visualizer.core.pruning.masks import MaskSet


def _masks(seed=0) -> MaskSet:
    g = torch.Generator().manual_seed(seed)
    return MaskSet({"a.weight": torch.rand(4, 3, generator=g) > 0.5, "b.weight": torch.rand(2, 2, 3, 3, generator=g) > 0.3},
                   {"criterion": "magnitude"})


def test_round_trip_keeps_everything(tmp_path):
    state = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4)}
    rows = [{"criterion": "snip", "density": 0.1, "accuracy": 0.93, "retrain": "finetune", "nan": float("nan")}]
    s = S.Session("lenet", dataset="digits", criterion="snip", scope="layer", structure="channel", density=0.125,
                  masks=_masks(0), snapshot=_masks(1), model_state=state, results=rows, baseline=0.96,
                  view={"selected": "a.weight", "heatmap_mode": "mask"})
    path = S.save_session(s, tmp_path / "x.pviz")
    back = S.load_session(path)
    assert (back.model_ref, back.dataset, back.criterion, back.scope, back.structure) == ("lenet", "digits", "snip", "layer", "channel")
    assert back.density == 0.125 and back.baseline == 0.96
    for a, b in ((s.masks, back.masks), (s.snapshot, back.snapshot)):
        assert set(a.masks) == set(b.masks)
        for k in a.masks:
            assert torch.equal(a.masks[k], b.masks[k]) and b.masks[k].dtype == torch.bool
    assert back.masks.metadata["criterion"] == "magnitude"
    assert all(torch.equal(state[k], back.model_state[k]) for k in state)
    assert back.results[0]["accuracy"] == 0.93 and back.results[0]["nan"] is None
    assert back.view == {"selected": "a.weight", "heatmap_mode": "mask"}
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("session.json"))
    assert manifest["schema"] == S.SCHEMA and manifest["format"] == S.FORMAT


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = S.save_session(S.Session("lenet", masks=_masks()), tmp_path / "x.pviz")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(S, "_mask_blob", boom)
    with pytest.raises(OSError):
        S.save_session(S.Session("mlp", masks=_masks()), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.pviz"]  # no temporary left behind


def _write(path, manifest, members=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("session.json", json.dumps(manifest))
        for k, v in (members or {}).items():
            z.writestr(k, v)
    return path


def test_schema_0_is_upgraded(tmp_path):
    blob = S._mask_blob(_masks())
    old = {"format": S.FORMAT, "schema": 0, "model": "mlp", "dataset": "digits", "rows": [{"density": 0.5, "accuracy": 0.9}]}
    back = S.load_session(_write(tmp_path / "old.pviz", old, {"masks.safetensors": blob}))
    assert back.model_ref == "mlp" and back.dataset == "digits"
    assert back.results == [{"density": 0.5, "accuracy": 0.9}]
    assert back.masks is not None and back.masks.kept() == _masks().kept()


def test_newer_schema_refused_clearly(tmp_path):
    p = _write(tmp_path / "new.pviz", {"format": S.FORMAT, "schema": S.SCHEMA + 1, "model": {"ref": "lenet"}})
    with pytest.raises(S.SessionError, match="newer pruneviz"):
        S.load_session(p)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not a zip", "not a readable zip"),
        (None, "no session.json"),
        ("{not json", "not JSON"),
        (json.dumps({"schema": 1}), "format field missing"),
        (json.dumps({"format": S.FORMAT, "schema": 1, "model": {"ref": "lenet"}, "masks": "masks.safetensors"}), "missing"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, match):
    p = tmp_path / "bad.pviz"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("other.txt", "x")
            if content is not None:
                z.writestr("session.json", content)
    with pytest.raises(S.SessionError, match=match) as info:
        S.load_session(p)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(S.SessionError, match="not found"):
        S.load_session(tmp_path / "nope.pviz")


def test_results_csv_and_prune_state_dict(tmp_path):
    rows = [{"criterion": "magnitude", "density": 0.5, "accuracy": 0.9}, {"criterion": "snip", "density": 0.1, "extra": [1, 2]}]
    text = S.write_results_csv(rows, tmp_path / "r.csv").read_text().splitlines()
    assert text[0] == "criterion,density,accuracy,extra"
    assert text[2] == 'snip,0.1,,"[1, 2]"'
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    masks = MaskSet.for_model(model)
    masks.masks["0.weight"][0, 0] = False
    from visualizer.core.io.mask_formats import write_mask

    path = write_mask(masks, tmp_path / "p.pt", model)
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["0.weight_mask"].bool(), masks.masks["0.weight"])
    assert torch.equal(state["0.weight_orig"], model[0].weight.detach())
    # loads into a model prepared the way torch.nn.utils.prune expects
    from torch.nn.utils import prune

    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    for i in (0, 2):
        prune.identity(fresh[i], "weight")
    fresh.load_state_dict(state)
    fresh(torch.zeros(1, 3))  # prune recomputes weight = weight_orig * weight_mask in its pre-hook
    assert fresh[0].weight[0, 0].item() == 0.0


def test_schema_1_opens_with_the_default_data_options(tmp_path):
    blob = S._mask_blob(_masks())
    old = {"format": S.FORMAT, "schema": 1, "model": {"ref": "mlp", "state": None}, "data": {"name": "digits"},
           "masks": "masks.safetensors"}
    back = S.load_session(_write(tmp_path / "v1.pviz", old, {"masks.safetensors": blob}))
    assert back.dataset == "digits" and back.pretrained is True
    assert back.image_size is None and back.normalize is None


def test_data_options_round_trip_and_bad_ones_are_refused(tmp_path):
    path = S.save_session(S.Session(model_ref="mlp", dataset="folder:/data/pets", pretrained=False,
                                  image_size=96, normalize="imagenet"), tmp_path / "s.pviz")
    back = S.load_session(path)
    assert (back.dataset, back.pretrained, back.image_size, back.normalize) == ("folder:/data/pets", False, 96, "imagenet")
    for data, match in (({"name": "digits", "normalize": "zscore"}, "bad normalisation"),
                        ({"name": "digits", "image_size": -3}, "bad image size"),
                        ({"name": "digits", "image_size": True}, "bad image size")):
        manifest = {"format": S.FORMAT, "schema": S.SCHEMA, "model": {"ref": "mlp"}, "data": data}
        with pytest.raises(S.SessionError, match=match):
            S.load_session(_write(tmp_path / "bad.pviz", manifest))


def test_a_factory_dataset_needs_trust_like_a_factory_model():
    from visualizer.core.models.trust import trust_reason

    assert trust_reason(S.Session(model_ref="mlp", dataset="folder:/data/x.py:imgs")) is None
    reason = trust_reason(S.Session(model_ref="mlp", dataset="/home/u/mydata.py:build"))
    assert reason == "the dataset is built by running the Python file /home/u/mydata.py"
    both = trust_reason(S.Session(model_ref="/home/u/net.py:make", dataset="/home/u/mydata.py:build"))
    assert "net.py" in both and "mydata.py" in both
