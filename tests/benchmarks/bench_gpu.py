"""GPU benchmarks, printed as ratios against peers run in the same process (no time asserted).

1. A masked training step (projected gradient, 10% density) vs a dense one on CUDA, on a
   ResNet-18-sized network. Target: masked / dense <= 1.05. The steps run back to back with one
   synchronisation at the end, as core.training.loop.fit runs them (no host read per step).
2. One Hessian-vector product vs one gradient on CUDA (same network and batch). Target: <= 3.
3. Ranking 25.5M weights (ResNet-50's conv/fc shapes): one mask on the GPU (torch.kthvalue
   threshold with positional ties, core.pruning.ranking.first_k) and a full sort on the GPU, vs
   the CPU path the window uses (core.pruning.ranking.Ranking: one full ordering, then any
   density) and first_k on the CPU.
4. Lanczos lambda_max of the ResNet-18-sized network: GPU vs CPU (fixed step count, so the two
   do the same work), with the two estimates.
5. Peak GPU memory of the masked SLQ (Lanczos basis over the kept coordinates only) at 10%
   density vs the dense operator's SLQ.
6. 2:4 layers (GPT-2-sized linear shapes 768x768, 3072x768, 768x3072 at 2:4 magnitude masks, 2048
   tokens, float16) through torch.sparse.to_sparse_semi_structured vs the dense product
   (core.structure.semi_structured); the dense/2:4 time ratio per layer and in total.

The network is torchvision's resnet18 (CIFAR-sized input) when torchvision is installed, else a
built-in ResNet-18 with the same block layout (He et al. 2016; 11.2M weights).

Run: /work/main/.venv/bin/python tests/benchmarks/bench_gpu.py [--skip step hvp rank lanczos memory]
     [--batch 128] [--cpu-lanczos-steps 8]
Without CUDA it says so and stops; ``--smoke`` runs every section on the CPU at toy sizes, to
check that the script itself works (its numbers mean nothing). ``--cpu-selection`` times, on the
CPU alone, the top-k selection IHT and RigL run every step/update: the stable full sort they used
before vs first_k (torch.kthvalue + positional ties), with the masks compared.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer

import torch  # noqa: E402
from torch import nn  # noqa: E402

from visualizer.core.curvature import lanczos as L  # noqa: E402
from visualizer.core.curvature import operator as O  # noqa: E402
from visualizer.core.pruning.masks import MaskSet  # noqa: E402
from visualizer.core.pruning.prunable import prunable_parameters  # noqa: E402
from visualizer.core.pruning.ranking import first_k  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.training.loop import (  # noqa: E402
    LoopHooks,
    MaskProjector,
    TrainConfig,
    _one_step,
    make_optimizer,
)

SECTIONS = ("step", "hvp", "rank", "lanczos", "memory", "semi")


# --- the network ---------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18Like(nn.Module):
    """ResNet-18's layout (2-2-2-2 basic blocks, widths 64-512) with a CIFAR stem."""

    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for stage, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for b in range(2):
                blocks.append(BasicBlock(cin, w, 2 if (b == 0 and stage > 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def resnet18(width: int = 64) -> tuple[nn.Module, str]:
    if width == 64:
        try:
            import torchvision

            return torchvision.models.resnet18(num_classes=10), "torchvision resnet18"
        except Exception:  # not installed, or built for another torch
            pass
    return ResNet18Like(width=width), f"built-in ResNet-18 layout (width {width})"


def magnitude_masks(model: nn.Module, density: float) -> MaskSet:
    params = prunable_parameters(model)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in params.values()])
    keep = first_k(flat, int(density * flat.numel()))
    out, at = {}, 0
    for n, p in params.items():
        out[n] = keep[at : at + p.numel()].reshape(p.shape).cpu()
        at += p.numel()
    return MaskSet(out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of ``fn`` (after one warm-up), synchronised at both ends."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# --- sections --------------------------------------------------------------------------------------


def bench_step(model: nn.Module, device: torch.device, batch: int, size: int, steps: int) -> None:
    print(f"\n[1] training step, masked (10% density) vs dense, {steps} steps back to back, batch {batch}")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    config = TrainConfig(optimizer="sgd", lr=0.01)
    masks = magnitude_masks(model, 0.1)
    times = {}
    for kind in ("dense", "masked", "dense again"):
        work = copy.deepcopy(model).to(device).train()
        opt = make_optimizer(work, config)
        projector = MaskProjector(work, masks) if kind == "masked" else None
        if projector is not None:
            projector.project_weights()

        def steps_fn(work=work, opt=opt, projector=projector):
            total = torch.zeros((), device=device)
            for i in range(steps):
                total += _one_step(work, opt, x, y, config, projector, None, LoopHooks(), i)
            return float(total)  # one read, as fit does per progress tick

        times[kind] = timed(steps_fn, device) / steps
    dense = min(times["dense"], times["dense again"])
    print(f"  dense {dense * 1e3:.2f} ms/step (runs {times['dense'] * 1e3:.2f}, {times['dense again'] * 1e3:.2f}), "
          f"masked {times['masked'] * 1e3:.2f} ms/step")
    print(f"  masked / dense = {times['masked'] / dense:.3f}  (target <= 1.05)")


def _operator(model: nn.Module, device: torch.device, batch: int, size: int, masks: MaskSet | None = None,
              masked: bool = False) -> O.HessianOperator:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    net = copy.deepcopy(model).to(device).eval()
    return O.hessian_operator(net, O.EvalSet([(x, y)]), masks, masked=masked)


def bench_hvp(model: nn.Module, device: torch.device, batch: int, size: int) -> None:
    print(f"\n[2] one HVP vs one gradient, batch {batch}")
    op = _operator(model, device, batch, size)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2)).to(device, op.dtype)
    t_grad = timed(op.gradient, device)
    t_hvp = timed(lambda: op.matvec(v), device)
    print(f"  dim {op.dim:,}: gradient {t_grad * 1e3:.2f} ms, HVP ({op.method}) {t_hvp * 1e3:.2f} ms")
    print(f"  HVP / gradient = {t_hvp / t_grad:.2f}  (target <= 3)")


def bench_rank(device: torch.device, scale: float) -> None:
    from tests.benchmarks.bench_ranking import resnet50_weight_shapes
    from visualizer.core.pruning.ranking import Ranking

    shapes = resnet50_weight_shapes()
    if scale < 1:
        shapes = [(n, (max(1, int(s[0] * scale)), *s[1:])) for n, s in shapes]
    gen = torch.Generator().manual_seed(0)
    scores = {n: (torch.randn(s, generator=gen) * 0.05).abs() for n, s in shapes}
    total = sum(s.numel() for s in scores.values())
    print(f"\n[3] ranking {total:,} weights (ResNet-50 conv/fc shapes), one mask at density 0.1")
    k = int(0.1 * total)
    flat_cpu = torch.cat([s.reshape(-1) for s in scores.values()])
    t_cpu_rank = timed(lambda: Ranking.from_scores(scores, "global", "unstructured").mask_at(0.1), torch.device("cpu"), 1)
    t_cpu_k = timed(lambda: first_k(flat_cpu, k), torch.device("cpu"))
    print(f"  CPU: Ranking (full order, then the mask) {t_cpu_rank:.3f} s; first_k (kthvalue) {t_cpu_k:.3f} s")
    flat_dev = flat_cpu.to(device)
    t_up = timed(lambda: torch.cat([s.to(device).reshape(-1) for s in scores.values()]), device)
    t_dev_k = timed(lambda: first_k(flat_dev, k), device)
    t_dev_sort = timed(lambda: torch.sort(flat_dev, descending=True, stable=True), device)
    t_back = timed(lambda: first_k(flat_dev, k).cpu(), device)
    print(f"  {device}: first_k {t_dev_k * 1e3:.2f} ms, full stable sort {t_dev_sort * 1e3:.2f} ms; "
          f"scores to the device {t_up * 1e3:.2f} ms, mask back to the host (incl. first_k) {t_back * 1e3:.2f} ms")
    print(f"  CPU Ranking / device first_k+copies = {t_cpu_rank / (t_up + t_back):.1f}x; "
          f"CPU first_k / device first_k = {t_cpu_k / t_dev_k:.1f}x")
    same = torch.equal(first_k(flat_dev, k).cpu(), first_k(flat_cpu, k))
    print(f"  device mask == CPU mask: {same}")


def bench_lanczos(model: nn.Module, device: torch.device, batch: int, size: int, steps: int, cpu_steps: int) -> None:
    print(f"\n[4] Lanczos lambda_max, batch {batch}: {device} ({steps} steps) vs CPU ({cpu_steps} steps)")
    out = {}
    for dev, n in ((device, steps), (torch.device("cpu"), cpu_steps)):
        op = _operator(model, dev, batch, size)
        sync(dev)
        t0 = time.perf_counter()
        res = run(L.lanczos(op, 1, max_steps=n, tol=0.0, want_vectors=False))
        sync(dev)
        dt = time.perf_counter() - t0
        out[str(dev)] = (dt / max(res.hvps, 1), float(res.top[0]), res.hvps)
        print(f"  {dev}: {res.hvps} HVPs in {dt:.2f} s ({dt / max(res.hvps, 1) * 1e3:.1f} ms/HVP), "
              f"lambda_max {float(res.top[0]):.6g}")
    gpu, cpu = out[str(device)], out["cpu"]
    print(f"  CPU / {device} per HVP = {cpu[0] / gpu[0]:.1f}x")


def bench_memory(model: nn.Module, device: torch.device, batch: int, size: int, slq_steps: int) -> None:
    print(f"\n[5] peak memory of SLQ ({slq_steps} Lanczos steps, 1 probe), masked at 10% density vs dense")
    masks = magnitude_masks(model, 0.1)
    for label, masked in (("dense", False), ("masked 10%", True)):
        op = _operator(model, device, batch, size, masks, masked=masked)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        res = run(L.slq(op, probes=1, steps=slq_steps))
        peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else 0
        print(f"  {label:11s}: dim {op.dim:>11,}  basis {res.basis_bytes / 2**20:8.1f} MiB  "
              f"peak above the model {peak / 2**20:8.1f} MiB")
        del op


def bench_cpu_selection(sizes: tuple[int, ...] = (50_000, 1_000_000, 11_000_000)) -> None:
    print("\n[cpu] keep the top 10% of |w| with positional ties: stable sort vs first_k, 1 thread")
    torch.set_num_threads(1)

    def stable_sort(flat: torch.Tensor, k: int) -> torch.Tensor:
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[torch.sort(-flat, stable=True).indices[:k]] = True
        return keep

    cpu = torch.device("cpu")
    for d in sizes:
        flat = torch.randn(d, generator=torch.Generator().manual_seed(0)).abs()
        k = d // 10
        t_sort = timed(lambda flat=flat, k=k: stable_sort(flat, k), cpu)
        t_k = timed(lambda flat=flat, k=k: first_k(flat, k), cpu)
        same = torch.equal(stable_sort(flat, k), first_k(flat, k))
        print(f"  {d:>11,} weights: stable sort {t_sort * 1e3:8.2f} ms, first_k {t_k * 1e3:8.2f} ms "
              f"({t_sort / t_k:.1f}x), same mask: {same}")


def bench_semi(tokens: int = 2048) -> None:
    from visualizer.core.structure.semi_structured import (
        kernel_missing,
        semi_structured_speed,
        total_ratio,
    )

    print("6. 2:4 semi-structured layers vs dense (float16, magnitude 2:4 masks)")
    why = kernel_missing("cuda")
    if why:
        print(f"  skipped: {why}")
        return
    model = nn.Sequential(nn.Linear(768, 768), nn.Linear(768, 3072), nn.Linear(3072, 768))
    rows, skipped = semi_structured_speed(model, tokens=tokens, repeats=50)
    for r in rows:
        print(f"  {r.rows}x{r.cols} x {r.tokens} tokens: dense {r.dense_ms:.4f} ms, 2:4 {r.sparse_ms:.4f} ms, "
              f"dense/2:4 = {r.speedup:.2f}x (max rel. error {r.max_error:.1e})")
    for name, why in skipped.items():
        print(f"  {name} not timed: {why}")
    print(f"  total dense/2:4 = {total_ratio(rows):.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32, help="input height = width (CIFAR: 32)")
    ap.add_argument("--steps", type=int, default=30, help="training steps timed per kind")
    ap.add_argument("--lanczos-steps", type=int, default=30)
    ap.add_argument("--cpu-lanczos-steps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="CPU, toy sizes: checks the script, measures nothing")
    ap.add_argument("--cpu-selection", action="store_true", help="only the CPU top-k selection timing")
    args = ap.parse_args(argv)
    if args.cpu_selection:
        bench_cpu_selection()
        return 0
    if args.smoke:
        device, width, scale = torch.device("cpu"), 8, 0.01
        args.batch, args.size, args.steps, args.lanczos_steps, args.cpu_lanczos_steps = 4, 8, 2, 3, 3
    elif not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available here (torch.cuda.is_available() is False), so there is "
              "nothing to measure; run it on a machine with an NVIDIA GPU (or --smoke to check the script).")
        return 0
    else:
        device, width, scale = torch.device("cuda"), 64, 1.0
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    model, what = resnet18(width)
    n = sum(p.numel() for p in model.parameters())
    print(f"network: {what}, {n:,} parameters; input {args.batch}x3x{args.size}x{args.size}")
    if "step" not in args.skip:
        bench_step(model, device, args.batch, args.size, args.steps)
    if "hvp" not in args.skip:
        bench_hvp(model, device, args.batch, args.size)
    if "rank" not in args.skip:
        bench_rank(device, scale)
    if "lanczos" not in args.skip:
        bench_lanczos(model, device, min(args.batch, 64), args.size, args.lanczos_steps, args.cpu_lanczos_steps)
    if "memory" not in args.skip:
        bench_memory(model, device, min(args.batch, 64), args.size, args.lanczos_steps)
    if "semi" not in args.skip:
        bench_semi()
    return 0


if __name__ == "__main__":
    sys.exit(main())
