"""Token data for language models: ``text:FILE`` read with the model folder's own tokenizer.

The text is encoded once (offline: ``tokenizer.json`` through the ``tokenizers`` library, or
what ``transformers.AutoTokenizer`` reads from the folder with ``local_files_only``), the ids are
cut into blocks of ``block`` tokens (the tail shorter than a block is dropped) and the blocks are
split by a seeded permutation into train and test (docs/theory.md §20). A block is both the
input and the target of a causal language model: evaluation scores the prediction of tokens
2..L from tokens 1..L−1 (:func:`visualizer.core.training.evaluate.evaluate_job`), and perplexity
``exp(mean loss)`` is its metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from visualizer.core.data.dataset import Dataset

TEST_FRACTION = 0.1
BLOCK = 128  # tokens per sequence when neither the user nor the model says otherwise


class TokenizerError(ValueError):
    """A tokenizer that cannot be found or read (one line)."""


def load_tokenizer(folder: str | Path) -> tuple[Callable[[str], list[int]], int]:
    """(encode, vocabulary size) of the tokenizer in a model folder, offline. ``folder`` may also
    be a ``tokenizer.json`` file."""
    path = Path(folder).expanduser()
    file = path if path.is_file() else path / "tokenizer.json"
    if file.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise TokenizerError("reading tokenizer.json needs the tokenizers library "
                                 "(pip install pruneviz[hf])") from exc
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
            raise TokenizerError(f"cannot read the tokenizer {file}: {str(exc).splitlines()[0][:200]}") from exc
        return (lambda text: tok.encode(text).ids), tok.get_vocab_size()
    if path.is_dir() and any((path / f).is_file() for f in ("vocab.json", "tokenizer.model", "vocab.txt")):
        try:
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - missing library or unreadable files
            raise TokenizerError(f"cannot read the tokenizer in {path}: {str(exc).splitlines()[0][:200]}") from exc
        return (lambda text: hf(text)["input_ids"]), len(hf)
    raise TokenizerError(f"no tokenizer in {path}: text data needs the model folder's tokenizer.json "
                         "(or vocab.json/merges.txt, tokenizer.model, vocab.txt)")


def token_blocks(ids: list[int] | torch.Tensor, block: int) -> torch.Tensor:
    """(blocks, block) int64 rows of consecutive ids; the tail shorter than a block is dropped."""
    if block < 2:
        raise ValueError(f"a block needs at least 2 tokens, got {block}")
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    n = ids.numel() // block
    return ids[: n * block].reshape(n, block)


def split_blocks(blocks: torch.Tensor, test_fraction: float = TEST_FRACTION,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) blocks from a permutation drawn from ``manual_seed(seed)``; the test split
    holds ``max(1, round(test_fraction · blocks))`` blocks. Needs two blocks or more."""
    n = int(blocks.shape[0])
    if n < 2:
        raise ValueError(f"{n} block{'s' if n != 1 else ''}: text data needs at least two (train and test)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    return blocks[order[n_test:]], blocks[order[:n_test]]


@dataclass
class TokenDataset(Dataset):
    """Blocks of token ids; inputs and labels are the same blocks (shifted when scored)."""

    block: int = BLOCK
    tokens = True

    @property
    def vocab_size(self) -> int:
        return self.num_classes

    def check_model(self, model: torch.nn.Module, x: torch.Tensor, model_name: str) -> list[str]:
        """The data check of core.data.checks for token blocks (:func:`check_language_model`)."""
        return check_language_model(model, self, x, model_name)

    def to(self, device: torch.device | str) -> TokenDataset:
        return TokenDataset(self.name, self.x_train.to(device), self.y_train.to(device),
                            self.x_test.to(device), self.y_test.to(device), self.num_classes,
                            self.description, block=self.block)


def model_block(model: torch.nn.Module | None, default: int = BLOCK) -> int:
    """The block length for ``model``: ``default`` capped by its context length (``n_positions``
    or ``max_position_embeddings`` in a transformers config)."""
    config = getattr(model, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return min(default, int(limit)) if limit else default


def model_folder(model: torch.nn.Module | None) -> str | None:
    """The folder a transformers model was loaded from, when it is a local folder."""
    for attr in (getattr(model, "name_or_path", None),
                 getattr(getattr(model, "config", None), "_name_or_path", None)):
        if attr and Path(str(attr)).is_dir():
            return str(attr)
    return None


def load_text(path: str | Path, tokenizer: str | Path | None, block: int = BLOCK,
              seed: int = 0, test_fraction: float = TEST_FRACTION) -> TokenDataset:
    """``text:FILE`` as a :class:`TokenDataset` (raises ValueError in one line: no tokenizer, an
    unreadable file, a text shorter than two blocks)."""
    file = Path(path).expanduser()
    if tokenizer is None:
        raise TokenizerError(f"text:{path} needs a tokenizer: load a model folder (hf:DIR) with one")
    if not file.is_file():
        raise ValueError(f"text file {file} does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {file} as UTF-8 text: {str(exc).splitlines()[0][:160]}") from exc
    encode, vocab = load_tokenizer(tokenizer)
    ids = encode(text)
    blocks = token_blocks(ids, block)
    if blocks.shape[0] < 2:
        raise ValueError(f"{file.name} gives {len(ids)} tokens, fewer than two blocks of {block} "
                         "(one to calibrate, one to test): use a longer text or a shorter block")
    train, test = split_blocks(blocks, test_fraction, seed)
    desc = f"{len(ids):,} tokens of {file.name} in {blocks.shape[0]} blocks of {block}"
    return TokenDataset(f"text:{file.name}", train, train, test, test, vocab, desc, block=block)


def logits_of(output: object) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, or a transformers output's ``logits``."""
    logits = getattr(output, "logits", output)
    if isinstance(output, tuple | list) and output:
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the model returns {type(output).__name__}, not logits")
    return logits


def check_language_model(model: torch.nn.Module, data: TokenDataset, x: torch.Tensor,
                         model_name: str = "the model") -> list[str]:
    """Raise ValueError in one line unless ``model`` maps token blocks ``x`` (B, L) to logits
    (B, L, V) with V >= the tokenizer's vocabulary."""
    embed = getattr(model, "get_input_embeddings", lambda: None)()
    rows = getattr(embed, "num_embeddings", None)
    if rows is not None and rows < data.vocab_size:
        raise ValueError(f"{data.name}'s tokenizer has {data.vocab_size} tokens but {model_name} "
                         f"embeds {rows}: use the tokenizer of the model's folder")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = logits_of(model(x))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is the mismatch
        raise ValueError(f"{model_name} cannot read token blocks of {data.name}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from exc
    finally:
        model.train(was)
    if out.dim() != 3 or tuple(out.shape[:2]) != tuple(x.shape):
        raise ValueError(f"{model_name} on {data.name} gives {tuple(out.shape)}, not (batch, tokens, vocabulary) logits")
    if out.shape[-1] < data.vocab_size:
        raise ValueError(f"{data.name}'s tokenizer has {data.vocab_size} tokens but {model_name} "
                         f"predicts {out.shape[-1]}: use the tokenizer of the model's folder")
    return []


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean next-token cross-entropy (inf where it overflows)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
