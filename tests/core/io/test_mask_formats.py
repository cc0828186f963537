"""core.io.mask_formats: every format round-trips; files written by plain torch.nn.utils.prune and
NNI-style dicts import; a mask that does not fit names the layer and both shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from visualizer.core.io.checks import FileFormatError
from visualizer.core.io.mask_formats import detect_kind, read_mask, write_mask
from visualizer.core.models.loaders import load_weights
from visualizer.core.pruning.masks import MaskError, MaskSet


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3))


def random_mask(model: nn.Module, density: float = 0.4) -> MaskSet:
    gen = torch.Generator().manual_seed(1)
    masks = MaskSet.for_model(model)
    for name, m in masks.masks.items():
        masks.masks[name] = torch.rand(m.shape, generator=gen) < density
    return masks


def same(a: MaskSet, b: MaskSet) -> bool:
    return list(a.masks) == list(b.masks) and all(torch.equal(a[n], b[n]) for n in a.masks)


@pytest.mark.parametrize("name,fmt", [("m.safetensors", None), ("m.pt", None), ("m.pth", None),
                                      ("m.pt", "nni"), ("m.bin", "nni"), ("m.safetensors", "pruneviz"),
                                      ("m.pth", "torch-prune")])
def test_every_format_round_trips(tmp_path, name, fmt):
    model = net()
    masks = random_mask(model)
    path = write_mask(masks, tmp_path / name, model, fmt)
    back = read_mask(path, model)
    assert same(back, masks)
    assert detect_kind(path) == ("prune-checkpoint" if (fmt or "torch-prune") == "torch-prune"
                                 and name.endswith((".pt", ".pth")) else "mask")


def test_our_pt_loads_into_a_model_prepared_with_prune_identity(tmp_path):
    torch.manual_seed(0)
    model = net()
    masks = random_mask(model)
    write_mask(masks, tmp_path / "m.pt", model)
    ours = net()
    ours.load_state_dict(model.state_dict())
    masks.apply(ours)
    fresh = net()  # another initialisation: everything comes from the file
    for module in (fresh[0], fresh[3], fresh[5]):
        prune.identity(module, "weight")
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randn(7, 2, 6, 6)
    with torch.no_grad():
        assert torch.equal(fresh(x), ours(x))


def test_files_written_by_plain_torch_prune_import(tmp_path):
    torch.manual_seed(0)
    model = net()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.random_unstructured(model[3], "weight", amount=0.7)
    expected = {"0.weight": model[0].weight_mask.bool(), "3.weight": model[3].weight_mask.bool()}
    torch.save(model.state_dict(), tmp_path / "state.pth")
    # a whole training checkpoint: the state dict under "model_state_dict" beside other entries
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "lr": 0.1}, tmp_path / "ckpt.tar")
    plain = net()
    for path in (tmp_path / "state.pth", tmp_path / "ckpt.tar"):
        masks = read_mask(path, plain)
        assert set(masks.masks) == set(expected)
        assert all(torch.equal(masks[n], expected[n]) for n in expected)
        assert detect_kind(path) == "prune-checkpoint"
        # as --weights: the weights (X_orig) and the mask together, the model's outputs reproduced
        state, wmasks = load_weights(path)
        again = net()
        again.load_state_dict(state)
        wmasks.apply(again)
        x = torch.randn(3, 2, 6, 6)
        with torch.no_grad():
            assert torch.equal(again(x), model(x))


def test_nni_style_and_plain_dicts_import(tmp_path):
    model = net()
    masks = random_mask(model)
    nni = {"0": {"weight": masks["0.weight"].float()}, "3": {"weight": masks["3.weight"].float()},
           "5": {"weight": masks["5.weight"].float()}}
    torch.save(nni, tmp_path / "nni.pt")
    assert same(read_mask(tmp_path / "nni.pt", model), masks)
    plain = {n: m.to(torch.uint8) for n, m in masks.masks.items()}
    torch.save(plain, tmp_path / "plain.pt")
    assert same(read_mask(tmp_path / "plain.pt", model), masks)
    from safetensors.torch import save_file

    save_file({n: m.float() for n, m in masks.masks.items()}, str(tmp_path / "plain.safetensors"))
    assert same(read_mask(tmp_path / "plain.safetensors", model), masks)


def test_a_wrapped_models_mask_fits_the_bare_model(tmp_path):
    model = net()
    masks = random_mask(model)
    torch.save({f"module.{n}": m for n, m in masks.masks.items()}, tmp_path / "ddp.pt")
    assert same(read_mask(tmp_path / "ddp.pt", model), masks)


def test_a_mask_that_does_not_fit_names_the_layer_and_both_shapes(tmp_path):
    model = net()
    masks = random_mask(model)
    masks.masks["3.weight"] = torch.ones(5, 10, dtype=torch.bool)
    write_mask(masks, tmp_path / "m.safetensors")
    with pytest.raises(MaskError) as err:
        read_mask(tmp_path / "m.safetensors", model)
    text = str(err.value)
    assert "\n" not in text and "3.weight" in text and "(5, 10)" in text and "(5, 64)" in text


def test_weights_and_sessions_are_not_masks(tmp_path):
    model = net()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(MaskError, match="other than 0 and 1"):
        read_mask(tmp_path / "w.pt", model)
    assert detect_kind(tmp_path / "w.pt") == "weights"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert detect_kind(tmp_path / "w.safetensors") == "weights"
    from visualizer.core.io.session import Session, save_session

    save_session(Session(model_ref="mlp", masks=MaskSet.for_model(model)), tmp_path / "s.pviz")
    assert detect_kind(tmp_path / "s.pviz") == "session"
    with pytest.raises(MaskError, match="session"):
        read_mask(tmp_path / "s.pviz")
    (tmp_path / "f.py").write_text("def build(): pass\n")
    assert detect_kind(tmp_path / "f.py") == "model"
    scripted = torch.jit.script(nn.Linear(2, 2))
    torch.jit.save(scripted, str(tmp_path / "ts.pt"))
    assert detect_kind(tmp_path / "ts.pt") == "model"
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a tensor file")
    with pytest.raises(FileFormatError):
        detect_kind(tmp_path / "junk.bin")


class Evil:
    def __reduce__(self):
        return (exec, ("open('MARKER', 'w').write('ran')",))


def test_a_mask_file_that_needs_unpickling_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"0.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(MaskError, match="full unpickling"):
        read_mask(tmp_path / "evil.pt")
    assert detect_kind(tmp_path / "evil.pt") == "model"  # a pickled object: a model needing trust
    assert not (tmp_path / "MARKER").exists()


def test_unknown_format_and_suffix_are_one_line_errors(tmp_path):
    model = net()
    with pytest.raises(MaskError, match="nni"):
        write_mask(random_mask(model), tmp_path / "m.pt", model, "onnx")
    with pytest.raises(MaskError, match=r"\.safetensors, \.pt or \.pth"):
        write_mask(random_mask(model), tmp_path / "m.npz", model)
    with pytest.raises(MaskError, match="needs the model"):
        write_mask(random_mask(model), tmp_path / "m.pt")
    # a name must not lie about the bytes: safetensors under .pt, a torch pickle under .safetensors
    with pytest.raises(MaskError, match=r"named \.safetensors"):
        write_mask(random_mask(model), tmp_path / "m.pt", model, "pruneviz")
    for fmt in ("torch-prune", "nni"):
        with pytest.raises(MaskError, match=r"named \.pt or \.pth"):
            write_mask(random_mask(model), tmp_path / "m.safetensors", model, fmt)
