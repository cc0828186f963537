"""DataLoader workers: they persist across evaluations of one source, and a ``file.py:factory``
dataset survives spawn-started workers (macOS and Windows start workers that way)."""

from __future__ import annotations

import os
import pickle
import threading

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from visualizer.core import workspace
from visualizer.core.data.streaming import StreamSource


class Pids(TorchDataset):
    """Sample i is (the decoding process's pid, i): which worker read it."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return torch.tensor([float(os.getpid())]), i % 2


def pid_source() -> StreamSource:
    return StreamSource("pids", Pids(), Pids(), 2, (1,), workers=2)


def pids_of_a_pass(source: StreamSource) -> tuple[set[int], list[int]]:
    pids, labels = set(), []
    for x, y in workspace.evaluation_batches(source, batch_size=3):
        pids |= {int(v) for v in x.flatten().tolist()}
        labels += y.tolist()
    return pids, labels


def test_evaluations_of_one_source_reuse_its_worker_processes():
    source = pid_source()
    try:
        first, labels = pids_of_a_pass(source)
        second, labels_again = pids_of_a_pass(source)
        assert os.getpid() not in first and len(first) == 2
        assert second == first  # the same two processes decoded both passes
        assert labels == labels_again == [i % 2 for i in range(12)]
    finally:
        source.close_loaders()


def test_a_pass_left_half_way_does_not_leak_into_the_next():
    source = pid_source()
    try:
        stream = workspace.evaluation_batches(source, batch_size=3)
        it = iter(stream)
        next(it)
        del it  # dropped after one batch (a cancelled job)
        xs = list(workspace.evaluation_batches(source, n=2, batch_size=3))
        assert [y.tolist() for _, y in xs] == [[0, 1, 0], [1, 0, 1]]
    finally:
        source.close_loaders()


def test_two_passes_at_once_each_get_every_batch():
    source = pid_source()
    out: dict[str, list] = {}

    def read(name: str) -> None:
        out[name] = [y.tolist() for _, y in workspace.evaluation_batches(source, batch_size=3)]

    try:
        held = iter(workspace.evaluation_batches(source, batch_size=3))
        next(held)  # the persistent loader is busy with this pass
        thread = threading.Thread(target=read, args=("other",))
        thread.start()
        thread.join(60)
        assert out["other"] == [[0, 1, 0], [1, 0, 1], [0, 1, 0], [1, 0, 1]]
        del held
    finally:
        source.close_loaders()


def test_a_source_pickles_without_its_workers():
    source = pid_source()
    try:
        pids_of_a_pass(source)
        assert source._loaders
        copy = pickle.loads(pickle.dumps(source))
        assert copy._loaders == {} and pids_of_a_pass(copy)[1] == pids_of_a_pass(source)[1]
        copy.close_loaders()
    finally:
        source.close_loaders()


# a user's data file whose datasets are instances of a class defined in the file itself
FACTORY_FILE = """
import torch

class Squares(torch.utils.data.Dataset):
    def __init__(self, n, offset):
        self.n, self.offset = n, offset
        self.classes = ["even", "odd"]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, 2, 2), float(i + self.offset)), (i + self.offset) % 2

def data():
    return Squares(6, 0), Squares(4, 100)
"""


def test_a_factory_dataset_survives_spawn_workers(tmp_path):
    from visualizer.core.data.external import DataOptions
    from visualizer.core.data.sources import load_dataset

    src = tmp_path / "userdata.py"
    src.write_text(FACTORY_FILE)
    source = load_dataset(f"{src}:data", DataOptions(workers=0))
    assert source.num_classes == 2 and source.split_dataset("test").classes == ["even", "odd"]
    loader = DataLoader(source.split_dataset("test"), batch_size=2, num_workers=1,
                        multiprocessing_context="spawn")
    xs, ys = zip(*loader)
    assert torch.cat(xs)[:, 0, 0, 0].tolist() == [100.0, 101.0, 102.0, 103.0]
    assert torch.cat(ys).tolist() == [0, 1, 0, 1]


def test_an_iterator_never_started_does_not_hold_the_workers():
    source = pid_source()
    try:
        unused = iter(workspace.evaluation_batches(source, batch_size=3))  # made, never read
        first, _ = pids_of_a_pass(source)
        second, _ = pids_of_a_pass(source)
        assert first == second  # both passes ran on the persistent workers
        del unused
    finally:
        source.close_loaders()
