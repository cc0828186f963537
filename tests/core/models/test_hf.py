"""Hugging Face models: hf:DIR and hf:NAME load offline from safetensors, transformers' Conv1D is
a linear layer stored (in, out), tied weights are one parameter, bad folders are one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.hfmodels import VOCAB, build_hf_model
from visualizer.core.models.loaders import (
    ModelLoadError,
    layer_table,
    load_model,
    prunable_parameters,
)


def test_gpt2_folder_loads_its_weights_with_conv1d_prunable(hf_gpt2):
    loaded = load_model(f"hf:{hf_gpt2}")
    reference = build_hf_model("gpt2")
    x = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded.model(x).logits, reference(x).logits)
    assert loaded.pretrained and loaded.weights_line == "pretrained: model.safetensors"
    params = prunable_parameters(loaded.model)
    # c_attn, c_proj, c_fc, mlp.c_proj per block + the tied embedding / head, once
    assert "transformer.h.0.attn.c_attn.weight" in params and "transformer.h.1.mlp.c_proj.weight" in params
    assert "transformer.wte.weight" in params and "lm_head.weight" not in params
    assert len(params) == 2 * 4 + 1
    rows = {r.name: r for r in layer_table(loaded.model)}
    c_attn = rows["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.kind == "Conv1D" and c_attn.shape == (32, 96) and c_attn.out_dim == 1 and c_attn.prunable
    assert rows["transformer.h.0.mlp.c_fc.bias"].prunable is False


def test_tied_weight_mask_round_trips_and_masks_both_names(hf_gpt2, tmp_path):
    from visualizer.core.io.mask_formats import read_mask, write_mask

    model = load_model(f"hf:{hf_gpt2}").model
    from visualizer.core.pruning.masks import MaskSet

    masks = MaskSet.for_model(model)
    masks.masks["transformer.wte.weight"][:, ::2] = False
    path = write_mask(masks, tmp_path / "m.safetensors", model)
    back = read_mask(path, model)
    assert set(back.masks) == set(masks.masks)
    assert torch.equal(back.masks["transformer.wte.weight"], masks.masks["transformer.wte.weight"])
    back.apply(model)
    assert bool((model.lm_head.weight[:, ::2] == 0).all())  # the head is the same tensor


def test_a_weights_file_names_a_tied_tensor_once(hf_gpt2):
    """save_pretrained writes the tied embedding once; --weights reads it back into both names."""
    torch.manual_seed(123)  # the architecture's own init differs from the file's weights
    loaded = load_model(f"hf:{hf_gpt2}", weights=str(hf_gpt2 / "model.safetensors"))
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    assert torch.equal(loaded.model.lm_head.weight, build_hf_model("gpt2").transformer.wte.weight)


def test_example_inputs_of_token_and_image_models(hf_gpt2, hf_vit):
    from visualizer.core.structure.graph import example_input

    x = example_input(load_model(f"hf:{hf_gpt2}").model)
    assert x.dtype == torch.int64 and x.shape == (2, 16) and 0 <= int(x.min()) and int(x.max()) < VOCAB
    assert example_input(load_model(f"hf:{hf_gpt2}").model, dataset="digits").dtype == torch.int64  # config wins
    v = example_input(load_model(f"hf:{hf_vit}").model, batch=3)
    assert v.dtype == torch.float32 and v.shape == (3, 3, 16, 16)


def test_parse_example_input_forms(tmp_path):
    from visualizer.core.structure.graph import parse_example_input

    model = build_hf_model("bert")
    assert parse_example_input("1x3x8x8").shape == (1, 3, 8, 8)
    ids = parse_example_input("2,12:long", model)
    assert ids.dtype == torch.int64 and ids.shape == (2, 12) and int(ids.max()) < VOCAB
    spec = tmp_path / "in.json"
    spec.write_text(json.dumps({"shape": [4, 5], "dtype": "int32", "low": 3, "high": 7}))
    t = parse_example_input(str(spec))
    assert t.dtype == torch.int32 and int(t.min()) >= 3 and int(t.max()) < 7
    for bad, says in [("2xa", "whole numbers"), ("2x0", "positive"), ("2x3:complex", "unknown dtype"),
                      ("{\"shape\": 3", "JSON"), ("4:long", "need a range")]:
        with pytest.raises(ValueError, match=says):
            parse_example_input(bad)


def test_bad_folders_are_one_line(hf_gpt2, tmp_path):
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((f"hf:{empty}", "no config.json"))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(hf_gpt2 / "config.json", no_weights / "config.json")
    cases.append((f"hf:{no_weights}", "no weights"))
    pickled = tmp_path / "pickled"
    shutil.copytree(no_weights, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    cases.append((f"hf:{pickled}", "only pickled weights (pytorch_model.bin)"))
    remote = tmp_path / "remote"
    shutil.copytree(hf_gpt2, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (remote / "config.json").write_text(json.dumps(config))
    cases.append((f"hf:{remote}", "needs its own Python code"))
    cases.append((f"hf:{tmp_path / 'nowhere'}", "no such folder"))
    cases.append(("hf:someone/not-cached-model", "not in the local Hugging Face cache"))
    for ref, says in cases:
        with pytest.raises(ModelLoadError) as info:
            load_model(ref)
        assert says in str(info.value) and "\n" not in str(info.value), (ref, str(info.value))


def test_a_cached_model_loads_by_name(hf_bert, tmp_path, monkeypatch):
    """hf:NAME reads the Hugging Face cache layout (models--ORG--NAME/snapshots/REV, refs/main)."""
    import huggingface_hub.constants as constants

    repo = tmp_path / "hub" / "models--tiny--bert"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(hf_bert, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("hf:tiny/bert")
    assert type(loaded.model).__name__ == "BertForMaskedLM" and loaded.pretrained


def test_no_pretrained_builds_from_the_config(hf_gpt2):
    loaded = load_model(f"hf:{hf_gpt2}", pretrained=False)
    assert not loaded.pretrained and loaded.weights_line == "random init"
    assert sum(p.numel() for p in loaded.model.parameters()) == sum(p.numel() for p in build_hf_model("gpt2").parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_a_torchscript_file_counts_as_pretrained(tmp_path):
    path = tmp_path / "vad.jit"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2))), str(path))
    loaded = load_model(str(path))
    assert loaded.pretrained and loaded.weights_line == "pretrained: vad.jit"


CUSTOM_CONFIG = '''
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "tiny-custom"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)
'''

CUSTOM_MODEL = '''
import torch
from transformers import PreTrainedModel

from .configuration_tiny import TinyConfig


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.fc = torch.nn.Linear(config.width, 2)
        self.post_init()

    def forward(self, x):
        return self.fc(x)
'''


def test_remote_code_runs_only_with_trust(tmp_path, monkeypatch):
    """A folder whose config maps its own classes (auto_map) is refused without --trust and
    loads with it, offline (the code is read from the folder)."""
    from tests.hfmodels import _transformers

    _transformers()  # skips where transformers is missing
    import transformers.dynamic_module_utils as dynamic
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "configuration_tiny.py").write_text(CUSTOM_CONFIG)
    (folder / "modeling_tiny.py").write_text(CUSTOM_MODEL)
    config = {"model_type": "tiny-custom", "width": 4,
              "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.ones(2, 4), "fc.bias": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="needs its own Python code"):
        load_model(f"hf:{folder}")
    loaded = load_model(f"hf:{folder}", trust=True)
    assert type(loaded.model).__name__ == "TinyModel" and bool((loaded.model.fc.weight == 1).all())
    assert list(prunable_parameters(loaded.model)) == ["fc.weight"]


def test_without_transformers_is_one_line(hf_gpt2, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # what an uninstalled library looks like
    with pytest.raises(ModelLoadError, match=r"need the transformers library: pip install 'pruneviz\[hf\]'"):
        load_model(f"hf:{hf_gpt2}")
