"""Loss-landscape benchmark: 2D filter-normalised slices of a bundled model on its full test split.

Prints the time of an 11x11 slice (target < 2 s on the 2-core machine) and a 51x51 slice (target
< 30 s) with batched evaluation (torch.func.vmap over functional_call, chunks of grid points),
and the ratios against peers in the same process: vmap with a fixed chunk of 128 points and a
plain loop over grid points. The machine is
shared, so the load average is printed too.

Run: /work/main/.venv/bin/python tests/benchmarks/bench_landscape.py [--model lenet] [--chunk N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from visualizer.core.curvature import landscape as L  # noqa: E402
from visualizer.core.data.sources import load_dataset  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.workspace import curvature_batches  # noqa: E402


def timed_slice(model, ev, steps: int, chunk: int | None, batched: bool) -> tuple[float, L.Landscape2D]:
    t0 = time.perf_counter()
    res = run(L.slice_2d(model, ev, steps=steps, chunk=chunk, batched=batched))
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--chunk", type=int, help="grid points per vmap call (default: landscape.auto_chunk)")
    ap.add_argument("--peer-chunk", type=int, default=L.DEFAULT_CHUNK, help="chunk of the fixed-chunk peer")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's; the GUI uses cores - 1)")
    ap.add_argument("--skip-large", action="store_true", help="skip the 51x51 slice")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    ds = load_dataset(loaded.dataset)
    ev = curvature_batches(ds, None, ds.x_test.shape[0])
    chunk = args.chunk or L.auto_chunk(ev)
    print(f"load average before: {os.getloadavg()}  torch threads: {torch.get_num_threads()}")
    print(f"model {args.model}, full test split: {ev.n_samples} samples; chunk {chunk} points per vmap call")
    run(L.slice_2d(loaded.model, ev, steps=3, chunk=chunk))  # warm up
    t_v, r_v = timed_slice(loaded.model, ev, 11, chunk, True)
    t_p, r_p = timed_slice(loaded.model, ev, 11, args.peer_chunk, True)
    t_l, r_l = timed_slice(loaded.model, ev, 11, chunk, False)
    same = np.allclose(r_v.loss, r_l.loss, rtol=1e-4, atol=1e-6) and np.allclose(r_v.loss, r_p.loss, rtol=1e-4, atol=1e-6)
    print(f"11x11: batched (vmap, chunk {chunk}) {t_v:.2f} s | peers: vmap chunk {args.peer_chunk} {t_p:.2f} s"
          f" (ratio {t_p / t_v:.2f}), loop over points {t_l:.2f} s (ratio {t_l / t_v:.2f}); same values: {same}")
    print(f"       centre loss {r_v.loss[5, 5]:.4f} accuracy {r_v.accuracy[5, 5]:.4f}")
    if not args.skip_large:
        t51, r51 = timed_slice(loaded.model, ev, 51, chunk, True)
        t51p, _ = timed_slice(loaded.model, ev, 51, args.peer_chunk, True)
        print(f"51x51: batched (chunk {chunk}) {t51:.2f} s ({t51 / 2601 * 1e3:.2f} ms/point; 11x11 was"
              f" {t_v / 121 * 1e3:.2f} ms/point) | peer vmap chunk {args.peer_chunk} {t51p:.2f} s (ratio {t51p / t51:.2f})")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
