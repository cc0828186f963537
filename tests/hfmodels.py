"""Tiny random-initialised Hugging Face models for tests: GPT-2, BERT, Llama (grouped-query
attention) and ViT built from small configs and written with ``save_pretrained`` into a
temporary folder (config.json + model.safetensors), so every test runs offline.

The session fixtures ``hf_gpt2``, ``hf_bert``, ``hf_llama`` and ``hf_vit`` (the folder's path)
are registered in tests/conftest.py, so any test can ask for them; :func:`build_hf_model` and
:func:`write_hf_model` build one directly. Both skip the test where ``transformers`` is not
installed (it is in the ``test`` and ``hf`` extras); importing this module does not need it."""

from __future__ import annotations

from pathlib import Path

import pytest


def _transformers():
    return pytest.importorskip("transformers")

VOCAB = 96  # token ids 0..95
SEQ = 16  # max positions of the token models
HIDDEN, HEADS, LAYERS, INTER = 32, 4, 2, 64


def hf_config(kind: str):
    """The small config of one family: ``gpt2``, ``bert``, ``llama`` (4 query heads sharing 2
    key/value heads) or ``vit`` (16x16 images, 4x4 patches)."""
    transformers = _transformers()
    if kind == "gpt2":
        return transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=HIDDEN, n_layer=LAYERS,
                                       n_head=HEADS, n_inner=INTER, resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    if kind == "bert":
        return transformers.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                       num_attention_heads=HEADS, intermediate_size=INTER,
                                       max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
    if kind == "llama":
        return transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                        num_attention_heads=HEADS, num_key_value_heads=2,
                                        intermediate_size=INTER, max_position_embeddings=SEQ)
    if kind == "vit":
        return transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=HIDDEN,
                                      num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                      intermediate_size=INTER, num_labels=5, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
    raise ValueError(f"unknown family {kind!r}")


HF_CLASSES = {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM", "llama": "LlamaForCausalLM",
              "vit": "ViTForImageClassification"}


def build_hf_model(kind: str, seed: int = 0):
    """The family's model (random init, seeded), in eval mode."""
    import torch

    torch.manual_seed(seed)
    model = getattr(_transformers(), HF_CLASSES[kind])(hf_config(kind))
    return model.eval()


def write_hf_model(kind: str, folder: Path, seed: int = 0) -> Path:
    """``folder`` holding the family's config.json and model.safetensors."""
    build_hf_model(kind, seed).save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def _fixture(kind: str):
    @pytest.fixture(scope="session")
    def folder(tmp_path_factory) -> Path:
        return write_hf_model(kind, tmp_path_factory.mktemp(f"hf-{kind}"))

    folder.__doc__ = f"A folder with a tiny random-init {HF_CLASSES[kind]} (config.json + model.safetensors)."
    return folder


hf_gpt2 = _fixture("gpt2")
hf_bert = _fixture("bert")
hf_llama = _fixture("llama")
hf_vit = _fixture("vit")
