"""Bundled models match their manifest; every loader path fails with one clear ModelLoadError."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tests.conftest import torchvision_or_skip
from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import (
    ModelLoadError,
    load_model,
    load_state_dict,
    read_manifest,
)
from visualizer.core.models.zoo import ZOO
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.training.evaluate import evaluate
from visualizer.core.workspace import evaluation_batches

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.mark.parametrize("name", list(ZOO))
def test_bundled_model_matches_manifest_accuracy(name):
    loaded = load_model(name)
    assert loaded.pretrained and loaded.accuracy is not None
    data = load_dataset(loaded.dataset)
    ev = evaluate(loaded.model, evaluation_batches(data))
    loss, acc = ev.loss, ev.accuracy
    # the manifest rounds to 4 decimals; allow one test sample of floating-point disagreement
    assert abs(acc - read_manifest()[name]["accuracy"]) <= 1 / len(data.y_test) + 5e-5
    assert loss < 1.0
    assert prunable_parameters(loaded.model)


def test_evaluate_restores_mode_and_checks_input():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    ev = evaluate(model, [(x[:1], torch.tensor([0])), (x[1:], torch.tensor([0]))])
    loss, acc = ev.loss, ev.accuracy
    assert model.training
    assert acc == 0.5
    expected = nn.functional.cross_entropy(x, torch.tensor([0, 0])).item()
    assert abs(loss - expected) < 1e-6
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [(x[:0], torch.tensor([], dtype=torch.long))])


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found") as exc:
        load_model("lenet", weights=tmp_path / "nope.safetensors")
    one_line(exc)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found") as exc:
        load_model(str(tmp_path / "model.pt"))
    one_line(exc)


def test_corrupt_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelLoadError, match="not a readable safetensors") as exc:
        load_model("lenet", weights=bad)
    one_line(exc)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelLoadError) as exc:
        load_model(str(bad_pt))
    assert "bad.pt" in one_line(exc)


def test_pickled_module_refused_without_trust_and_loaded_with_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(3, 2)), path)
    with pytest.raises(ModelLoadError, match="refused") as exc:
        load_model(str(path))
    assert "--trust" in one_line(exc)
    loaded = load_model(str(path), trust=True)
    assert isinstance(loaded.model, nn.Sequential)
    assert list(prunable_parameters(loaded.model)) == ["0.weight"]


def test_torchscript_file_loads(tmp_path):
    path = tmp_path / "scripted.pt"
    model = Tiny()
    torch.jit.save(torch.jit.script(model), str(path))
    loaded = load_model(str(path))
    x = torch.randn(4, 3)
    assert torch.allclose(loaded.model(x), model(x))
    assert list(prunable_parameters(loaded.model)) == ["fc.weight"]


def test_factory_with_weights(tmp_path):
    src = tmp_path / "mynet.py"
    src.write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build():
                return nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
            """
        )
    )
    reference = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    loaded = load_model(f"{src}:build", weights=weights)
    x = torch.randn(5, 3)
    assert loaded.pretrained
    assert torch.equal(loaded.model(x), reference(x))
    # a .pt state dict works too (weights_only)
    pt = tmp_path / "w.pt"
    torch.save(reference.state_dict(), pt)
    assert torch.equal(load_model(f"{src}:build", weights=pt).model(x), reference(x))


def test_factory_errors(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("from torch import nn\ndef build():\n    return nn.Linear(3, 2)\ndef broken():\n    raise RuntimeError('boom')\n")
    with pytest.raises(ModelLoadError, match="has no 'missing'") as exc:
        load_model(f"{src}:missing")
    one_line(exc)
    with pytest.raises(ModelLoadError, match="boom") as exc:
        load_model(f"{src}:broken")
    one_line(exc)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(5, 5), "bias": torch.zeros(5)}, str(wrong))
    with pytest.raises(ModelLoadError, match="does not fit") as exc:
        load_model(f"{src}:build", weights=wrong)
    one_line(exc)


def test_unknown_reference():
    with pytest.raises(ModelLoadError, match="unknown model") as exc:
        load_model("no-such-model")
    one_line(exc)


class Settings:
    """A non-tensor object inside a checkpoint: only full unpickling can rebuild it."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _factory(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("from torch import nn\ndef build():\n    return nn.Sequential(nn.Linear(3, 2))\n")
    return f"{src}:build"


def test_checkpoint_with_pickled_objects_needs_trust(tmp_path):
    ref = nn.Sequential(nn.Linear(3, 2))
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": ref.state_dict(), "settings": Settings(0.1)}, path)
    with pytest.raises(ModelLoadError, match="refused") as exc:
        load_model(_factory(tmp_path), weights=path)
    assert "--trust" in _one_line(exc) and "ckpt.pt" in str(exc.value)
    loaded = load_model(_factory(tmp_path), weights=path, trust=True)
    x = torch.randn(4, 3)
    assert torch.equal(loaded.model(x), ref(x))
    # a plain {"model": state_dict} checkpoint of tensors needs no trust
    plain = tmp_path / "plain.pth"
    torch.save({"model": ref.state_dict(), "epoch": 3}, plain)
    assert set(load_state_dict(plain)) == {"0.weight", "0.bias"}


def test_weights_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="junk.pt") as exc:
        load_model(_factory(tmp_path), weights=junk)
    _one_line(exc)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(ModelLoadError, match="no state dict") as exc:
        load_model(_factory(tmp_path), weights=empty)
    _one_line(exc)
    with pytest.raises(ModelLoadError, match="model file not found") as exc:
        load_model(f"{tmp_path / 'absent.py'}:build")
    _one_line(exc)


def test_torchvision_reference_without_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ModelLoadError, match=r"needs torchvision: pip install 'pruneviz\[zoo\]'") as exc:
        load_model("torchvision:resnet18")
    _one_line(exc)


def test_torchvision_that_fails_to_import_is_one_line(monkeypatch):
    """A torchvision built for another torch (the registry's CUDA wheel beside a CPU torch) fails
    inside its own import with a RuntimeError, not an ImportError: still one readable line."""
    import importlib

    real = importlib.import_module

    def broken(name, package=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModelLoadError, match=r"installed but does not import with torch .*torchvision::nms") as exc:
        load_model("torchvision:resnet18")
    _one_line(exc)
    from visualizer.core.data.sources import DataError, load_dataset

    with pytest.raises(DataError, match="installed but does not import"):
        load_dataset("mnist")


def _fake_torchvision(monkeypatch, calls: list) -> nn.Module:
    """A stand-in torchvision (it is optional here) that builds like the real one: the builder,
    given weights, loads ``torchvision.models._api.load_state_dict_from_url(weights.url)``."""

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))

    api = types.ModuleType("torchvision.models._api")
    api.load_state_dict_from_url = lambda url, *a, **k: pytest.fail("torchvision's own unpickling reader was used")

    def get_model_builder(name):
        if name != "tiny":
            raise ValueError(f"Unknown model {name}")

        def build(weights=None):
            calls.append((name, weights))
            model = net()
            if weights is not None:
                model.load_state_dict(api.load_state_dict_from_url(weights.url, progress=True, check_hash=True))
            return model
        return build

    weights = types.SimpleNamespace(url="https://download.pytorch.org/models/tiny-0123abcd.pth",
                                    name="IMAGENET1K_V1", transforms=lambda: "tiny-transforms")
    fake = types.ModuleType("torchvision")
    fake.models = types.ModuleType("torchvision.models")
    fake.models.get_model_builder = get_model_builder
    fake.models.get_model_weights = lambda name: types.SimpleNamespace(DEFAULT=weights)
    fake.models._api = api
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake.models)
    monkeypatch.setitem(sys.modules, "torchvision.models._api", api)
    return net()


def test_torchvision_pretrained_weights_from_torchs_cache(monkeypatch, tmp_path):
    """torchvision:NAME reads the DEFAULT weights from TORCH_HOME/hub/checkpoints/<file of the
    URL> with weights_only=True; not cached and offline is one line naming the file and the
    ways out; --no-pretrained is random init; an unknown name is one line."""
    calls: list = []
    reference = _fake_torchvision(monkeypatch, calls)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelLoadError, match=r"pretrained weights IMAGENET1K_V1 are not in torch's cache "
                       r"\(.*hub/checkpoints/tiny-0123abcd\.pth\); pass --download.*--no-pretrained") as exc:
        load_model("torchvision:tiny")
    _one_line(exc)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "tiny-0123abcd.pth")
    loaded = load_model("torchvision:tiny")
    assert loaded.pretrained and loaded.weights_line == "pretrained: IMAGENET1K_V1"
    assert loaded.transform == "tiny-transforms" and not loaded.model.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), reference.state_dict().values()))
    random = load_model("torchvision:tiny", pretrained=False)
    assert not random.pretrained and random.weights_line == "random init" and calls[-1] == ("tiny", None)
    with pytest.raises(ModelLoadError, match="torchvision has no model 'nosuch'") as exc:
        load_model("torchvision:nosuch")
    _one_line(exc)
    # a pickle that needs more than tensors is refused by the weights_only reader
    torch.save({"w": types.SimpleNamespace(a=1)}, cache / "tiny-0123abcd.pth")
    with pytest.raises(ModelLoadError, match="not readable torchvision weights") as exc:
        load_model("torchvision:tiny")
    _one_line(exc)


@pytest.mark.torchvision
def test_real_torchvision_model_loads():
    torchvision_or_skip("")
    loaded = load_model("torchvision:resnet18", pretrained=False)
    assert sum(p.numel() for p in loaded.model.parameters()) == 11_689_512


@pytest.mark.torchvision
def test_real_torchvision_pretrained_weights_offline(monkeypatch, tmp_path):
    """A state dict at torchvision's cache path is what torchvision:resnet18 loads, offline."""
    models = torchvision_or_skip("models")
    from visualizer.core.models.loaders import torchvision_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = models.get_model_weights("resnet18").DEFAULT
    reference = models.resnet18(weights=None)
    file = torchvision_weights_file(weights)
    assert file.parent == tmp_path / "hub" / "checkpoints"
    with pytest.raises(ModelLoadError, match=file.name):
        load_model("torchvision:resnet18")
    file.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), file)
    loaded = load_model("torchvision:resnet18")
    assert loaded.weights_line == f"pretrained: {weights.name}" and loaded.transform is not None
    assert torch.equal(loaded.model.fc.weight, reference.fc.weight)
    assert load_model("torchvision:resnet18", pretrained=False).weights_line == "random init"
