"""The bundled real data set works offline with a fixed split, the synthetic
sequence task is hand-checkable and seeded, batching is reproducible, and data sets that need
torchvision fail with a one-line DataError when it is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.conftest import torchvision_or_skip
from visualizer.core.data import sources as data_mod
from visualizer.core.data.sources import (
    DataError,
    check_model_reads,
    dataset_names,
    load_dataset,
    load_digits,
    make_sequence_task,
)


def test_digits_is_the_uci_set_with_a_fixed_80_20_split():
    d = load_digits()
    assert d.x_train.shape == (1438, 1, 8, 8) and d.x_test.shape == (359, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0  # 0..16 scaled by 1/16
    assert torch.all(d.x_train * 16 == torch.round(d.x_train * 16))  # integer grey levels
    assert d.num_classes == 10 and set(d.y_test.tolist()) == set(range(10))
    assert torch.cat([d.y_train, d.y_test]).bincount().sum() == 1797
    # the split is a fixed permutation (seed 0): loading again gives the same tensors
    again = load_digits()
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    # train and test partition the 1,797 images: same multiset of rows as the shipped file
    images, target = data_mod._digits_arrays()
    both = torch.cat([d.x_train, d.x_test]).reshape(-1, 64).numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, images.reshape(-1, 64)))
    assert np.bincount(target).tolist() == torch.cat([d.y_train, d.y_test]).bincount().tolist()


def test_digits_rows_are_the_same_images_row_by_row():
    d, r = load_dataset("digits"), load_dataset("digits-rows")
    assert r.x_train.shape == (1438, 8, 8)
    assert torch.equal(r.x_train, d.x_train[:, 0]) and torch.equal(r.y_test, d.y_test)


def test_sequence_label_is_the_most_frequent_symbol_ties_to_the_smallest():
    s = make_sequence_task(n_train=200, n_test=50, length=6, symbols=4, seed=3)
    assert s.x_train.shape == (200, 6, 4) and s.num_classes == 4
    tokens = torch.cat([s.x_train, s.x_test]).argmax(-1)
    labels = torch.cat([s.y_train, s.y_test])
    for t, y in zip(tokens.tolist(), labels.tolist()):
        counts = [t.count(k) for k in range(4)]
        assert y == counts.index(max(counts))  # first maximum = smallest symbol among ties
    assert any(sorted([t.count(k) for k in range(4)])[-2:] == [2, 2] for t in tokens.tolist())  # ties occur
    again = make_sequence_task(n_train=200, n_test=50, length=6, symbols=4, seed=3)
    other = make_sequence_task(n_train=200, n_test=50, length=6, symbols=4, seed=4)
    assert torch.equal(again.x_train, s.x_train) and not torch.equal(other.x_train, s.x_train)


def test_unknown_dataset_and_bad_split_are_clear_errors():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*digits"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        load_digits().split("validation")
    assert {"digits", "digits-rows", "sequence", "mnist", "fashion-mnist", "cifar10"} <= set(dataset_names())


def test_a_model_that_cannot_read_a_dataset_is_named_in_one_line():
    """LeNet takes 1x8x8 images: given the 16x8 token sequences it fails inside conv1; the RNN
    reads sequences but outputs 8 classes where digits-rows has 10. A model that fits passes,
    and the probe leaves the model's mode and BatchNorm statistics as they were."""
    from visualizer.core.models.loaders import load_model

    lenet, rnn = load_model("lenet").model, load_model("rnn").model
    with pytest.raises(DataError, match=r"^lenet cannot read sequence \(inputs \(16, 8\), float32; the model expects 1-channel inputs\): .*channels"):
        check_model_reads(lenet, load_dataset("sequence"), "lenet")
    with pytest.raises(DataError, match=r"^digits-rows has class indices up to 9 but rnn outputs 8 classes \(0..7\)$"):
        check_model_reads(rnn, load_dataset("digits-rows"), "rnn")
    resnet = load_model("resnet-mini").model.train()
    stats = {k: v.clone() for k, v in resnet.state_dict().items()}
    check_model_reads(resnet, load_dataset("digits"))
    assert resnet.training and all(torch.equal(stats[k], v) for k, v in resnet.state_dict().items())
    with pytest.raises(DataError, match=r"gives \(2, 10, 1\), not \(batch, classes\) logits"):
        check_model_reads(torch.nn.Sequential(lenet, torch.nn.Unflatten(1, (10, 1))), load_dataset("digits"))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_datasets_without_torchvision_say_how_to_get_it(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(DataError, match=r"needs torchvision: pip install 'pruneviz\[zoo\]'"):
        load_dataset(name)


@pytest.mark.torchvision
def test_torchvision_dataset_missing_locally_is_a_data_error(tmp_path):
    torchvision_or_skip("")
    with pytest.raises(DataError, match="not found under"):
        load_dataset("mnist", root=tmp_path, download=False)
