import math

import pytest
import torch

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tests.llm import PROSE, llama_folder, tiny_llama, train_tokenizer  # noqa: E402
from visualizer.core.data.external import DataOptions, options_for_model  # noqa: E402
from visualizer.core.data.sources import DataError, check_model_reads, load_dataset  # noqa: E402
from visualizer.core.data.text import load_tokenizer, split_blocks, token_blocks  # noqa: E402
from visualizer.core.training.evaluate import evaluate  # noqa: E402
from visualizer.core.workspace import calibration_batches  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    model = llama_folder(path)
    return path, model


def test_blocks_and_seeded_split_by_hand():
    blocks = token_blocks(list(range(10)), 3)  # 9 ids used, the tail id 9 dropped
    assert blocks.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    train, test = split_blocks(blocks, 0.1, seed=0)
    assert len(test) == 1 and len(train) == 2
    again = split_blocks(blocks, 0.1, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert sorted(torch.cat([train, test])[:, 0].tolist()) == [0, 3, 6]


def test_text_data_uses_the_model_folders_tokenizer(folder):
    path, model = folder
    options = options_for_model(DataOptions(), model)
    assert options.tokenizer == str(path) and options.block == 64  # capped by the context
    data = load_dataset(f"text:{PROSE}", options)
    encode, vocab = load_tokenizer(path)
    ids = encode(PROSE.read_text(encoding="utf-8"))
    n = len(ids) // 64
    assert data.x_train.shape[1] == 64 and data.x_train.shape[0] + data.x_test.shape[0] == n
    assert data.vocab_size == vocab
    assert check_model_reads(model, data) == []


def test_perplexity_by_hand(folder):
    path, model = folder
    data = load_dataset(f"text:{PROSE}", DataOptions(tokenizer=str(path), block=16))
    x = data.x_test[:2]
    result = evaluate(model, [(x, x)])
    with torch.no_grad():
        logits = model(x).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    assert result.tokens == 2 * 15
    assert result.loss == pytest.approx(float(nll), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(float(nll)), rel=1e-5)
    # a random-init model is close to uniform over its vocabulary
    assert 0.5 * 256 < result.perplexity < 2 * 256


def test_calibration_sample_is_128_sequences_by_default(folder):
    path, _ = folder
    data = load_dataset(f"text:{PROSE}", DataOptions(tokenizer=str(path), block=4))
    batches = calibration_batches(data)
    assert sum(int(x.shape[0]) for x, _ in batches) == 128
    assert all(x.shape[1] == 4 for x, _ in batches)
    again = calibration_batches(data)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_bad_text_inputs_give_one_line(tmp_path, folder):
    path, _ = folder
    short = tmp_path / "short.txt"
    short.write_text("pruning", encoding="utf-8")
    with pytest.raises(DataError, match="fewer than two blocks"):
        load_dataset(f"text:{short}", DataOptions(tokenizer=str(path), block=64))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DataError, match="no tokenizer"):
        load_dataset(f"text:{PROSE}", DataOptions(tokenizer=str(empty)))
    with pytest.raises(DataError, match="needs a tokenizer"):
        load_dataset(f"text:{PROSE}")


def test_a_model_with_a_smaller_vocabulary_is_named(tmp_path):
    train_tokenizer(tmp_path, 256)
    data = load_dataset(f"text:{PROSE}", DataOptions(tokenizer=str(tmp_path), block=16))
    with pytest.raises(DataError, match="embeds 100"):
        check_model_reads(tiny_llama(vocab=100), data)
