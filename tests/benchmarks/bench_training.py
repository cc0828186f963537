"""Training benchmarks, printed as ratios against peers run in the same process.

1. Cost of one masked (projected-gradient) training step next to a dense step of the same
   network, in steady state: each mode trains for a few warm-up steps and then a timed block, in
   rounds whose order rotates, and the median over rounds of (mode / dense) is printed. Peers
   in the same run: a second dense run ("twin": the estimator's own bias, should read 1.00),
   dense training of the masked network's zero-filled weights without any masking ("zeros":
   effects of the weights' values alone), and torch.nn.utils.prune's hook-based masking
   (weight = weight_orig * mask recomputed in a forward pre-hook). Each mode's last training
   loss and test accuracy are printed: a diverged run is not a fair peer (its dead ReLUs make
   max pooling cheaper). Target: masked within 1.05x of dense, and faster than torch prune.
   Times are CPU time of this process (a loaded shared machine makes wall time mostly
   waiting). All modes use the app's optimiser (core.training.make_optimizer: torch's fused
   SGD/Adam). The projection alone is printed separately.
2. A 20-density x 4-criterion sweep without retraining on the bundled CNN (lenet).
   Target: under 10 s on the 2-core machine.

Run: .venv/bin/python tests/benchmarks/bench_training.py [--threads N] [--models lenet,mlp]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from visualizer.core.data.sources import load_dataset  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.pruning.masks import MaskSet  # noqa: E402
from visualizer.core.pruning.prunable import prunable_parameters  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training.evaluate import evaluate  # noqa: E402
from visualizer.core.training.experiments import SweepConfig, sweep  # noqa: E402
from visualizer.core.training.loop import (  # noqa: E402
    LoopHooks,
    MaskProjector,
    TrainConfig,
    _one_step,
    make_optimizer,
)
from visualizer.core.training.lottery import prune_remaining  # noqa: E402
from visualizer.core.workspace import evaluation_batches, training_batches  # noqa: E402


class Runner:
    """One training run in ``mode``, stepping on demand: dense, twin (a second dense run, the
    control that shows the estimator's own bias and noise), zeros (the masked network's
    zero-filled weights trained densely, no projection), masked (ours) or torch-prune."""

    def __init__(self, model, masks, mode: str, config: TrainConfig) -> None:
        self.work = copy.deepcopy(model)
        self.projector = None
        if mode in ("masked", "zeros"):
            masks.apply(self.work)
        if mode == "masked":
            self.projector = MaskProjector(self.work, masks)
        elif mode == "torch-prune":
            masks.attach_torch_prune(self.work)
        self.optimizer = make_optimizer(self.work, config)
        if self.projector is not None:
            self.projector.project_weights()
        self.config = config
        self.hooks = LoopHooks()
        self.losses: list[float] = []

    def step(self, xb, yb) -> None:
        self.losses.append(_one_step(self.work, self.optimizer, xb, yb, self.config, self.projector, None,
                                     self.hooks, 0))


MODES = ["dense", "twin", "zeros", "masked", "torch-prune"]


def bench_steps(name: str, density: float, rounds: int, steps_per_round: int, optimizer: str,
                warm: int = 3) -> dict[str, float]:
    """Steady-state cost of a training step per mode, as the median over rounds of the per-round
    ratio to dense.

    Each round runs every mode for ``warm`` untimed steps and then ``steps_per_round`` timed
    ones, in an order rotated from round to round. Training is one model stepping thousands of
    times, so the timed steps must find the mode's own weights, masks and optimiser state where
    continuous training would (the warm-up steps put them there; timing single steps of four
    models in turn measures cache misses instead). The per-round ratio cancels the load
    changes of this shared machine between rounds. The twin is a second, independent dense run:
    its ratio is what the estimator reads for two identical workloads.
    """
    model = load_model(name).model
    data = load_dataset("digits")
    masks = prune_remaining(prunable_parameters(model), MaskSet.for_model(model), density, "global")
    # lr 0.01 for SGD: at 0.05 the dense LeNet diverges (every ReLU dead, chance accuracy), and
    # max pooling over all-zero maps is cheaper, which flattered the dense peer by ~5%
    config = TrainConfig(lr=1e-3 if optimizer == "adam" else 0.01, optimizer=optimizer)
    g = torch.Generator().manual_seed(0)
    data_batches = [b for b in training_batches(data, 64, g) if len(b[1]) == 64]  # full batches only
    runners = {m: Runner(model, masks, m, config) for m in MODES}
    for m in MODES:  # first steps import lazily and allocate
        for xb, yb in data_batches[:5]:
            runners[m].step(xb, yb)
    per_step: dict[str, list[float]] = {m: [] for m in MODES}
    i = 0
    for r in range(rounds):
        for m in MODES[r % len(MODES):] + MODES[: r % len(MODES)]:
            for k in range(warm):
                runners[m].step(*data_batches[(i + k) % len(data_batches)])
            # CPU time of this process: on a shared, loaded machine waiting for a core is not
            # the step's cost (wall time is printed by the sweep benchmark below)
            t0 = time.process_time()
            for k in range(warm, warm + steps_per_round):
                runners[m].step(*data_batches[(i + k) % len(data_batches)])
            per_step[m].append((time.process_time() - t0) / steps_per_round)
        i += warm + steps_per_round
    ratio = {m: [t / d for t, d in zip(per_step[m], per_step["dense"])] for m in MODES}
    med = {m: statistics.median(v) for m, v in ratio.items()}
    print(f"[{name}, {optimizer} lr {config.lr:g}, density {density:g}, batch 64, {rounds} rounds x "
          f"({warm} warm + {steps_per_round} timed) steps per mode, threads {torch.get_num_threads()}, "
          f"CPU time]")
    for m in MODES:
        q = statistics.quantiles(ratio[m], n=4) if len(ratio[m]) > 1 else [med[m]] * 3
        acc = evaluate(runners[m].work, evaluation_batches(data)).accuracy
        print(f"  {m:12s} {statistics.median(per_step[m]) * 1e3:6.3f} ms/step   vs dense x{med[m]:.3f} "
              f"(quartiles {q[0]:.3f}-{q[2]:.3f})   last loss {statistics.fmean(runners[m].losses[-20:]):.3f}, "
              f"test accuracy {acc:.3f}")
    projector = runners["masked"].projector
    for p in projector.params:
        p.grad = torch.randn_like(p)
    t0 = time.process_time()
    for _ in range(200):
        projector.project_grads()
    t_proj = (time.process_time() - t0) / 200
    print(f"  the projection alone (mask the gradients, warm cache): {t_proj * 1e6:.0f} us = "
          f"{t_proj / statistics.median(per_step['dense']):.1%} of a dense step")
    print(f"  masked / dense x{med['masked']:.3f} (target <= 1.05; twin control x{med['twin']:.3f}); "
          f"masked / torch-prune x{med['masked'] / med['torch-prune']:.3f} (target < 1)")
    return med


def bench_sweep(name: str, repeats: int) -> None:
    model = load_model(name).model
    data = load_dataset("digits")
    densities = tuple(float(d) for d in np.geomspace(1.0, 0.01, 20))
    config = SweepConfig(name, ("magnitude", "snip", "grasp", "random"), densities)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = run(sweep(model, data, config))
        times.append(time.perf_counter() - t0)
    print(f"[sweep {name}: 4 criteria x 20 densities, no retraining, threads {torch.get_num_threads()}]")
    print(f"  {len(res.rows)} rows: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"over {repeats} runs (target < 10 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--models", default="lenet,mlp")
    ap.add_argument("--optimizers", default="sgd,adam")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = []
    for optimizer in [o for o in args.optimizers.split(",") if o]:
        for name in args.models.split(","):
            med = bench_steps(name, 0.1, args.rounds, args.steps, optimizer)
            summary.append(f"{name}/{optimizer} x{med['masked']:.3f} (twin x{med['twin']:.3f})")
    print("masked / dense, median of per-round ratios: " + ", ".join(summary))
    bench_sweep("lenet", 3)


if __name__ == "__main__":
    main()
