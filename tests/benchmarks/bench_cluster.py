"""A sweep on a local Ray cluster against the serial sweep, in the same run.

1. A 24-cell sweep of the bundled CNN (lenet on digits: 3 criteria x 8 densities, a one-epoch
   fine-tune per cell), run serially (one torch thread; ``--default-threads`` adds torch's
   default) and as Ray tasks on ``local:N`` (N single-threaded workers; Moritz et al., 2018),
   both warm (each process has run a cell). Printed: wall times, the ratio serial / cluster
   (warm, and counting the one-off costs), cells per minute per worker, and that the rows agree.
   Target: >= 1.5x with 2 workers on the 2-core machine.
2. The overhead of one task: the round trip of a no-op task (submit, schedule, run, fetch),
   one at a time and many in flight.
3. On paper: what a 4-node GPU cluster gives for a ResNet sweep, from the per-cell cost of the
   bundled residual network measured here and the measured overhead (assumptions printed).

Wall time, not CPU time: the cluster's gain is wall time. On a machine shared with other work
the numbers move; the load average is printed next to them.

Run: .venv/bin/python tests/benchmarks/bench_cluster.py [--workers 2] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from visualizer.core.data.sources import load_dataset  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training.cluster import connect, sweep_on_cluster  # noqa: E402
from visualizer.core.training.experiments import SweepConfig, run_cell, sweep, sweep_cells  # noqa: E402
from visualizer.core.training.loop import TrainConfig  # noqa: E402

CRITERIA = ("magnitude", "random", "snip")
DENSITIES = (0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02)


def _noop() -> None:
    return None


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def task_overhead(ray, n: int = 200) -> tuple[float, float]:
    """Seconds per no-op task: one at a time (latency) and all in flight (throughput)."""
    noop = ray.remote(num_cpus=1)(_noop)
    _, one = timed(lambda: [ray.get(noop.remote()) for _ in range(n)])
    _, many = timed(lambda: ray.get([noop.remote() for _ in range(n)]))
    return one / n, many / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--default-threads", action="store_true",
                    help="also time the serial sweep with torch's default thread count (slow on a loaded machine)")
    ap.add_argument("--skip-resnet", action="store_true", help="skip measuring a residual network's cell")
    args = ap.parse_args()
    model, data = load_model("lenet").model, load_dataset("digits")
    config = SweepConfig("lenet", CRITERIA, DENSITIES, "finetune", train=TrainConfig(epochs=1, device="cpu"))
    # a cell's first use in a process pays one-off costs (lazy imports of torch's optimisers,
    # allocator warm-up: ~3 s here); each side pays them once before the timed sweep
    warm_config = replace(config, criteria=("magnitude",), densities=(0.9,), seeds=tuple(range(args.workers)))
    n = len(sweep_cells(config, data.name))
    print(f"sweep: lenet on digits, {len(CRITERIA)} criteria x {len(DENSITIES)} densities = {n} cells, "
          f"1-epoch fine-tune each; {os.cpu_count()} CPUs; {load()}")

    default_threads = torch.get_num_threads()
    if args.default_threads:
        _, t_serial_default = timed(lambda: run(sweep(model, data, config)))
        print(f"serial, {default_threads} torch threads: {t_serial_default:7.1f} s   ({load()})")
    torch.set_num_threads(1)
    _, t_serial_warm = timed(lambda: run(sweep(model, data, replace(warm_config, seeds=(0,)))))
    serial, t_serial = timed(lambda: run(sweep(model, data, config)))
    torch.set_num_threads(default_threads)
    print(f"serial, 1 torch thread: {t_serial:7.1f} s (+ {t_serial_warm:.1f} s for the process's first cell)   ({load()})")

    start = time.perf_counter()
    with connect(f"local:{args.workers}") as ray:
        t_init = time.perf_counter() - start
        _, t_warm = timed(lambda: run(sweep_on_cluster(model, data, warm_config)))
        one, many = task_overhead(ray)
        cluster, t_cluster = timed(lambda: run(sweep_on_cluster(model, data, config)))
    print(f"cluster local:{args.workers}: {t_cluster:7.1f} s (+ {t_init:.1f} s starting Ray, {t_warm:.1f} s for the "
          f"workers' first cells)   ({load()})")
    worst = max(abs(a["accuracy"] - b["accuracy"]) for a, b in zip(serial.rows, cluster.rows))
    print(f"rows: {len(cluster.rows)}, largest accuracy difference to the serial rows {worst:.2g}")
    print(f"ratio serial / cluster, warm: {t_serial / t_cluster:.2f}x   target >= 1.5x")
    cold = (t_serial + t_serial_warm) / (t_cluster + t_init + t_warm)
    print(f"ratio counting the one-off costs (Ray's start, first cells): {cold:.2f}x")
    per_cell = t_serial / n
    print(f"cells per minute per worker: cluster {60 * n / t_cluster / args.workers:.1f}, "
          f"serial {60 / per_cell:.1f}")
    print(f"task overhead (no-op round trip): {1e3 * one:.1f} ms one at a time, {1e3 * many:.2f} ms each with "
          f"200 in flight; {100 * one / per_cell:.1f} % of a lenet cell ({per_cell:.2f} s)")
    print("(measured on a 2-core machine shared with other work: see the load averages; two workers "
          "get two cores only when the machine is otherwise idle)")

    if args.skip_resnet:
        return
    # per-cell cost of the bundled residual network, one cell, one thread, as the model's input
    torch.set_num_threads(1)
    res_model = load_model("resnet-mini").model
    rconfig = SweepConfig("resnet-mini", ("magnitude",), (0.2,), "finetune", train=TrainConfig(epochs=1, device="cpu"))
    cell = sweep_cells(rconfig, data.name)[0]
    _, t_res = timed(lambda: run_cell(cell, res_model, data))
    cell_flops = 3 * forward_flops(res_model, data) * len(data.x_train) + forward_flops(res_model, data) * len(data.x_test)
    on_paper(t_res, cell_flops, one)


def forward_flops(model, data) -> float:
    """FLOPs of one image's forward pass (torch's FlopCounterMode: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(data.x_test[:1])
    return float(counter.get_total_flops())


def on_paper(t_cell_cpu: float, cell_flops: float, overhead: float) -> None:
    """T(one GPU) = C * t and T(cluster) = t_start + t_ship + ceil(C / W) * (t + o) for C cells,
    W GPUs, t seconds per cell and o the task overhead."""
    resnet18 = 1.11e9  # FLOPs per 32x32 image forward, ResNet-18 (He et al., 2016) on CIFAR-10: 0.56 G multiply-adds
    train_images, test_images = 50_000, 10_000  # CIFAR-10 (Krizhevsky, 2009); one fine-tune epoch per cell
    flops = 3 * resnet18 * train_images + resnet18 * test_images  # forward + backward (2x) + evaluation
    gpu_rate = 12e12  # FLOP/s a plain PyTorch ResNet-18 run reaches on one datacenter GPU (~15 s/epoch): assumed
    cpu_rate = cell_flops / t_cell_cpu
    t_gpu = flops / gpu_rate
    workers = 4  # 4 nodes x 1 GPU, one task per GPU
    t_start = 30.0  # connecting the client and starting a worker per node: assumed
    t_ship = 11.7e6 * 4 / 1e9  # the weights once per node at ~1 GB/s; the dataset already on every node
    print("\non paper: a ResNet-18 / CIFAR-10 sweep, 1-epoch fine-tunes, on 4 nodes x 1 GPU")
    print(f"  measured: one cell of the bundled residual net, 1 CPU thread: {t_cell_cpu:.2f} s for "
          f"{cell_flops / 1e9:.1f} GFLOP -> {cpu_rate / 1e9:.2f} GFLOP/s per core; task overhead {1e3 * overhead:.1f} ms")
    print(f"  a ResNet-18 cell is {flops / 1e12:.0f} TFLOP: {flops / cpu_rate / 3600:.0f} h on one such core, "
          f"{t_gpu:.0f} s on a GPU at an assumed {gpu_rate / 1e12:.0f} TFLOP/s")
    print(f"  assumed: {t_start:.0f} s to connect and start workers, weights shipped once per node "
          f"({t_ship:.2f} s), data on each node, no other jobs on the GPUs")
    for cells in (24, 96):
        one_gpu = cells * t_gpu
        cluster = t_start + t_ship + math.ceil(cells / workers) * (t_gpu + overhead)
        print(f"  {cells:3d} cells: one GPU {one_gpu / 60:6.1f} min, 4 GPUs {cluster / 60:6.1f} min "
              f"-> {one_gpu / cluster:.2f}x (ideal {workers}x; the gap is the start)")


if __name__ == "__main__":
    main()
