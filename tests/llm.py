"""Language-model fixtures for tests: a byte-level BPE tokenizer trained with ``tokenizers`` on
the prose that ships with the tests, and a tiny random-init Llama written with
``save_pretrained`` beside it (offline, no weights downloaded)."""

from __future__ import annotations

from pathlib import Path

PROSE = Path(__file__).parent / "data" / "prose.txt"
VOCAB = 256


def train_tokenizer(folder: Path, vocab: int = VOCAB) -> Path:
    """``folder/tokenizer.json``: a BPE tokenizer trained on :data:`PROSE`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>"], show_progress=False)
    tok.train([str(PROSE)], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def tiny_llama(vocab: int = VOCAB, hidden: int = 32, layers: int = 2, positions: int = 64):
    """A random-init LlamaForCausalLM (nn.Linear projections, grouped-query attention)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=positions)
    return LlamaForCausalLM(config).eval()


def llama_folder(folder: Path, vocab: int = VOCAB):
    """A model folder (config.json, safetensors weights, tokenizer.json); returns the model read
    back from it (its ``name_or_path`` is the folder)."""
    from transformers import LlamaForCausalLM

    train_tokenizer(folder, vocab)
    tiny_llama(vocab).save_pretrained(folder)
    return LlamaForCausalLM.from_pretrained(folder).eval()
