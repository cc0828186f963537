"""Bundled models match their manifest; every loader path fails with one clear ModelLoadError."""

from __future__ import annotations

import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import (
    ModelLoadError,
    load_model,
    prunable_parameters,
    read_manifest,
)
from visualizer.core.models.zoo import ZOO
from visualizer.core.training.evaluate import evaluate
from visualizer.core.workspace import evaluation_batches

# torch 2.13 marks TorchScript deprecated; loading such files is still a supported input here
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
