"""Streaming sources: image folders, a user's dataset factory, and the workspace batch rules
reading them (same sample indices as the in-memory path, whatever the worker count)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.imagefolders import TINY_CNN, write_digit_folder
from visualizer.core import workspace
from visualizer.core.data.external import DataOptions
from visualizer.core.data.folder import Preprocess, stratified_split
from visualizer.core.data.sources import DataError, Dataset, check_model_reads, load_dataset
from visualizer.core.data.streaming import StreamBatches

# the tiny CNN's file with dataset factories next to its model factories
USER_FILE = TINY_CNN + """
import torch

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 8, 8, generator=g)
    y = torch.arange(30) % 3
    return torch.utils.data.TensorDataset(x[:20], y[:20]), torch.utils.data.TensorDataset(x[20:], y[20:])

def data_with_count():
    train, test = data()
    return train, test, 5

def not_datasets():
    return 3
"""


def as_tensors(source) -> Dataset:
    """The streaming source decoded whole, as an in-memory dataset (tests only: small)."""
    def split(which):
        ds = source.split_dataset(which)
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        return torch.stack(xs), torch.tensor(ys)
    xtr, ytr = split("train")
    xte, yte = split("test")
    return Dataset("copy", xtr, ytr, xte, yte, source.num_classes)


def test_folder_with_train_and_val(tmp_path):
    root = write_digit_folder(tmp_path / "f", per_class=3, classes=3, split=True)
    src = load_dataset(f"folder:{root}", DataOptions(channels=1, workers=0))
    assert not src.in_memory and src.num_classes == 3 and src.classes == ["digit0", "digit1", "digit2"]
    assert src.split_size("train") == 9 and src.split_size("test") == 9
    assert src.input_shape == (1, 16, 16)
    x, y = src.split_dataset("test")[0]
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and y == 0
    rgb = load_dataset(f"folder:{root}", DataOptions(image_size=8, normalize="imagenet", workers=0))
    assert rgb.input_shape == (3, 8, 8) and float(rgb.probe(1).min()) < 0  # standardised


def test_single_class_tree_is_split_stratified_and_by_seed(tmp_path):
    root = write_digit_folder(tmp_path / "f", per_class=5, classes=3)
    a = load_dataset(f"folder:{root}", DataOptions(workers=0, seed=0))
    b = load_dataset(f"folder:{root}", DataOptions(workers=0, seed=0))
    c = load_dataset(f"folder:{root}", DataOptions(workers=0, seed=1))
    assert a.train.samples == b.train.samples and a.test.samples == b.test.samples
    assert a.test.samples != c.test.samples
    assert sorted(label for _, label in a.test.samples) == [0, 1, 2]  # one of five per class
    assert not set(a.train.samples) & set(a.test.samples)
    train, test = stratified_split([(f"p{i}", i % 2) for i in range(10)], 0.2, seed=3)
    assert len(test) == 2 and {label for _, label in test} == {0, 1} and len(train) == 8


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    root = write_digit_folder(tmp_path / "f", per_class=2, classes=2, split=True)
    (root / "val" / "stranger").mkdir()
    (root / "val" / "stranger" / "x.png").write_bytes((root / "val" / "digit0").iterdir().__next__().read_bytes())
    with pytest.raises(DataError, match="'stranger' is not among the training classes"):
        load_dataset(f"folder:{root}")
    with pytest.raises(DataError, match="unknown normalisation"):
        Preprocess(normalize="zscore")


def test_rules_read_the_same_samples_streamed_or_in_memory(tmp_path):
    """criterion, evaluation and training batches of a folder equal those of the same data as
    tensors (same seeded indices), with or without DataLoader workers."""
    root = write_digit_folder(tmp_path / "f", per_class=10, classes=3)
    stream = load_dataset(f"folder:{root}", DataOptions(channels=1, workers=0))
    tensors = as_tensors(stream)
    for workers in (0, 2):
        stream.workers = workers
        got = workspace.criterion_batches(stream, n=2, batch_size=4, seed=7)
        want = workspace.criterion_batches(tensors, n=2, batch_size=4, seed=7)
        assert len(got) == 2
        for (gx, gy), (wx, wy) in zip(got, want):
            assert torch.equal(gx, wx) and torch.equal(gy, wy)
    whole = workspace.evaluation_batches(stream, None, batch_size=4)
    assert isinstance(whole, StreamBatches) and len(whole) == 2 and whole.samples == 6
    assert torch.equal(torch.cat([y for _, y in whole]), tensors.y_test)
    assert torch.equal(torch.cat([y for _, y in whole]), torch.cat([y for _, y in whole]))  # re-iterable
    part = workspace.evaluation_batches(stream, 1, batch_size=4)
    assert isinstance(part, list) and len(part) == 1 and torch.equal(part[0][0], tensors.x_test[:4])
    epoch = list(workspace.training_batches(stream, 5, seed=2))
    ref = list(workspace.training_batches(tensors, 5, seed=2))
    assert [tuple(y.tolist()) for _, y in epoch] == [tuple(y.tolist()) for _, y in ref]


def test_factory_dataset_and_model_on_folder(tmp_path):
    src_file = tmp_path / "user.py"
    src_file.write_text(USER_FILE)
    d = load_dataset(f"{src_file}:data", DataOptions(workers=0))
    assert d.num_classes == 3 and d.input_shape == (1, 8, 8) and d.split_size("train") == 20
    assert load_dataset(f"{src_file}:data_with_count").num_classes == 5
    with pytest.raises(DataError, match=r"not_datasets\(\) returned int; return \(train, test\)"):
        load_dataset(f"{src_file}:not_datasets")
    with pytest.raises(DataError, match="data file not found"):
        load_dataset(f"{tmp_path / 'absent.py'}:data")

    from visualizer.core.models.loaders import load_model

    root = write_digit_folder(tmp_path / "f", per_class=4, classes=3)
    folder = load_dataset(f"folder:{root}", DataOptions(channels=1, workers=0))
    assert check_model_reads(load_model(f"{src_file}:build").model, folder, "tiny") == []
    notes = check_model_reads(load_model(f"{src_file}:wide").model, folder, "wide")
    assert len(notes) == 1 and "outputs 1000 classes" in notes[0] and "has 3" in notes[0]
    with pytest.raises(DataError, match=r"class indices up to 2 but narrow outputs 2 classes"):
        check_model_reads(load_model(f"{src_file}:narrow").model, folder, "narrow")
    rgb = load_dataset(f"folder:{root}", DataOptions(workers=0))
    with pytest.raises(DataError, match=r"^tiny cannot read folder:.*inputs \(3, 16, 16\).*expects 1-channel"):
        check_model_reads(load_model(f"{src_file}:build").model, rgb, "tiny")


def test_torchvision_datasets_stream_from_a_root(monkeypatch, tmp_path):
    """mnist / cifar10 through torchvision's dataset classes (a stand-in here: torchvision is
    optional): read from --data-root, decoded per sample, downloaded only when asked; missing
    and offline is one line naming the root and --download."""
    import sys
    import types

    import numpy as np
    from PIL import Image

    calls = []

    class FakeMNIST(torch.utils.data.Dataset):
        classes = [str(i) for i in range(10)]

        def __init__(self, root, train=True, download=False, transform=None):
            calls.append((root, train, download))
            if not download and not (Path(root) / "MNIST").is_dir():
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            self.transform = transform
            self.n = 12 if train else 5

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            img = Image.fromarray(np.full((28, 28), 17 * i, dtype=np.uint8), "L")
            return self.transform(img), i % 10

    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = FakeMNIST
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    with pytest.raises(DataError, match=r"^mnist: not found under .*absent; pass --download") as exc:
        load_dataset("mnist", DataOptions(root=str(tmp_path / "absent")))
    assert "\n" not in str(exc.value)
    (tmp_path / "MNIST").mkdir()
    d = load_dataset("mnist", DataOptions(root=str(tmp_path), workers=0))
    assert calls[-1] == (str(tmp_path), False, False) and d.num_classes == 10
    assert d.input_shape == (1, 28, 28) and not d.in_memory and d.split_size("train") == 12
    x, y = workspace.evaluation_batches(d, 1, batch_size=4)[0]
    assert torch.allclose(x[1], torch.full((1, 28, 28), 17 / 255)) and y.tolist() == [0, 1, 2, 3]
    load_dataset("mnist", DataOptions(root=str(tmp_path / "new"), download=True, image_size=8, workers=0))
    assert calls[-1] == (str(tmp_path / "new"), False, True)


def test_curvature_reads_a_sample_of_a_streamed_split(tmp_path):
    root = write_digit_folder(tmp_path / "f", per_class=5, classes=3)
    stream = load_dataset(f"folder:{root}", DataOptions(channels=1, workers=0))
    assert workspace.curvature_batches(stream, 1, 2).n_samples == 2
    with pytest.raises(ValueError, match="reads a sample: give a number of batches"):
        workspace.curvature_batches(stream, 0)


def test_reading_batches_leaves_the_global_rng_alone(tmp_path):
    root = write_digit_folder(tmp_path / "f", per_class=5, classes=2)
    stream = load_dataset(f"folder:{root}", DataOptions(channels=1, workers=0))
    torch.manual_seed(3)
    want = torch.rand(3)
    torch.manual_seed(3)
    list(workspace.training_batches(stream, 4, seed=1))
    workspace.criterion_batches(stream, 1, 4, seed=2)
    assert torch.equal(torch.rand(3), want)
