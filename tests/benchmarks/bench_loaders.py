"""Repeated evaluations of one streamed source: persistent DataLoader workers against a fresh
DataLoader (new worker processes) per pass.

Run: python tests/benchmarks/bench_loaders.py [--passes 10] [--workers 2] [--samples 12]

Both read the same tiny dataset (the cost measured is the workers' start, not decoding) through
core.workspace.evaluation_batches; the fresh path is the same StreamBatches with its source
detached, i.e. what every evaluation did before workers persisted. Prints ms per pass for each
and their ratio (fresh / persistent). Timings on a shared machine are noisy: compare the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset as TorchDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer

from visualizer.core import workspace  # noqa: E402
from visualizer.core.data.streaming import StreamSource  # noqa: E402


class Tiny(TorchDataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full((1, 4, 4), float(i)), i % 2


def ms_per_pass(source: StreamSource, passes: int, persistent: bool) -> float:
    start = time.perf_counter()
    for _ in range(passes):
        batches = workspace.evaluation_batches(source, batch_size=3)
        if not persistent:
            batches.source = None  # a DataLoader of this pass alone
        for _ in batches:
            pass
    return 1000 * (time.perf_counter() - start) / passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=12)
    args = ap.parse_args()
    source = StreamSource("tiny", Tiny(args.samples), Tiny(args.samples), 2, (1, 4, 4), workers=args.workers)
    try:
        ms_per_pass(source, 1, True)  # start the persistent workers once
        persistent = ms_per_pass(source, args.passes, True)
        fresh = ms_per_pass(source, args.passes, False)
    finally:
        source.close_loaders()
    print(f"{args.workers} workers ({os.cpu_count()} cpus), {args.samples} samples: fresh loader "
          f"{fresh:.1f} ms/pass, persistent {persistent:.1f} ms/pass, ratio {fresh / persistent:.1f}x")


if __name__ == "__main__":
    main()
