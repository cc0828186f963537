"""Issue 2 (loaders): torchvision:NAME, --weights checkpoints read with weights_only=True and the
trust flag, each failure a one-line ModelLoadError."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from tests.conftest import torchvision_or_skip
from visualizer.core.models.loaders import ModelLoadError, load_model, load_state_dict


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


def test_torchvision_reference_dispatches_to_get_model(monkeypatch):
    """The loader asks torchvision.models.get_model(NAME, weights=None) and turns its unknown-name
    error into a ModelLoadError (a stand-in package: torchvision is optional here)."""
    calls = []

    def get_model(name, weights=None):
        calls.append((name, weights))
        if name != "tiny":
            raise ValueError(f"Unknown model {name}")
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))

    fake = types.ModuleType("torchvision")
    fake.models = types.ModuleType("torchvision.models")
    fake.models.get_model = get_model
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake.models)
    loaded = load_model("torchvision:tiny")
    assert calls == [("tiny", None)] and loaded.ref == "torchvision:tiny" and not loaded.model.training
    assert loaded.dataset is None and not loaded.pretrained
    with pytest.raises(ModelLoadError, match="torchvision has no model 'nosuch'") as exc:
        load_model("torchvision:nosuch")
    _one_line(exc)


@pytest.mark.torchvision
def test_real_torchvision_model_loads():
    torchvision_or_skip("")
    loaded = load_model("torchvision:resnet18")
    assert sum(p.numel() for p in loaded.model.parameters()) == 11_689_512
