"""Curvature benchmarks, printed as ratios against peers run in the same process.

1. HVP cost / gradient cost, for double backward and forward-over-reverse (the faster one is
   the default, core.curvature.DEFAULT_HVP_METHOD). Target: at most ~3.
2. Lanczos (stopping on the Ritz residual) vs power iteration with PyHessian's stopping rule
   (relative change < 1e-3): HVPs to λ_max and the accuracy of each against a 300-step Lanczos
   reference. Target: Lanczos within 1e-3 using at most 1/3 of power iteration's HVPs.
3. Memory of the SLQ Lanczos basis at 10% density: active-coordinate flat vectors vs full-size
   vectors over every prunable coordinate.

Run: /work/main/.venv/bin/python tests/benchmarks/bench_curvature.py [--model lenet]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from visualizer.core import curvature as C  # noqa: E402
from visualizer.core.data import load_dataset  # noqa: E402
from visualizer.core.masks import MaskSet  # noqa: E402
from visualizer.core.models import load_model, prunable_parameters  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def magnitude_mask(model, density: float) -> MaskSet:
    """Global magnitude mask keeping floor(density * d) weights (a local helper: no dependency
    on the engine branch)."""
    params = prunable_parameters(model)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in params.values()])
    k = int(density * flat.numel())
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.topk(flat, k).indices] = True
    masks, at = {}, 0
    for n, p in params.items():
        masks[n] = keep[at : at + p.numel()].view(p.shape)
        at += p.numel()
    return MaskSet(masks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--peers", nargs="*", default=["mlp", "resnet-mini", "rnn"])
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()}  threads: {torch.get_num_threads()}")
    loaded = load_model(args.model)
    model = loaded.model
    ev = C.eval_batches(load_dataset(loaded.dataset), args.batches, args.batch_size)
    print(f"model {args.model}: eval set {ev.n_samples} samples in {len(ev.batches)} batch(es)")

    # 1. HVP / gradient cost
    print("\n[1] cost of one HVP relative to one gradient (same eval set, best of repeats)")
    ops = {m: C.hessian_operator(model, ev, method=m) for m in ("double-backward", "forward-over-reverse")}
    v = torch.randn(ops["double-backward"].dim)
    t_grad = timed(ops["double-backward"].gradient, args.repeats)
    print(f"  gradient: {t_grad * 1e3:.2f} ms  (dim {ops['double-backward'].dim})")
    for m, op in ops.items():
        t = timed(lambda op=op: op.matvec(v), args.repeats)
        print(f"  HVP {m:22s}: {t * 1e3:.2f} ms  ratio HVP/gradient = {t / t_grad:.2f}")
    a = ops["double-backward"].matvec(v)
    b = ops["forward-over-reverse"].matvec(v)
    print(f"  agreement: max |Hv_db - Hv_for| / max|Hv| = {float((a - b).abs().max() / a.abs().max()):.2e}")
    print(f"  default method: {C.DEFAULT_HVP_METHOD}")

    # 2. Lanczos vs power iteration
    print("\n[2] lambda_max: Lanczos (residual stop) vs power iteration (PyHessian rule: rel. change < 1e-3)")
    points = [(args.model, "trained", model, None)]
    init = load_model(args.model, weights=str(Path(loaded.weights).with_suffix("").with_suffix(".init.safetensors")))
    points.append((args.model, "init", init.model, None))
    for name in args.peers:
        other = load_model(name)
        points.append((name, "trained", other.model, C.eval_batches(load_dataset(other.dataset), args.batches, args.batch_size)))
    totals = {"power": 0, "gap": 0, "residual": 0}
    for name, where, mdl, evp in points:
        evp = evp or ev
        ref = run(C.lanczos(C.hessian_operator(mdl, evp), 1, 0, max_steps=300, tol=0.0, bound="residual", want_vectors=False))
        lam_ref = float(ref.top[0])
        print(f"  {name} ({where}): reference 300-step Lanczos lambda_max = {lam_ref:.6f}")
        for seed in range(args.seeds):
            lam_pow, n_pow = C.power_iteration(C.hessian_operator(mdl, evp), tol=1e-3, seed=seed)
            totals["power"] += n_pow
            line = f"    seed {seed}: power {n_pow:3d} HVPs rel.err {abs(lam_pow - lam_ref) / abs(lam_ref):.1e}"
            for bound in ("gap", "residual"):
                lz = run(C.lanczos(C.hessian_operator(mdl, evp), 1, 0, tol=1e-3, bound=bound, seed=seed, want_vectors=False))
                totals[bound] += lz.hvps
                lam = float(lz.top[0])
                line += f" | lanczos[{bound}] {lz.hvps:3d} HVPs rel.err {abs(lam - lam_ref) / abs(lam_ref):.1e} ratio {lz.hvps / n_pow:.2f}"
            print(line)
    print(f"  total HVPs: power {totals['power']}, lanczos[gap] {totals['gap']} (ratio {totals['gap'] / totals['power']:.2f}),"
          f" lanczos[residual] {totals['residual']} (ratio {totals['residual'] / totals['power']:.2f})")

    # 3. memory of the SLQ basis at 10% density
    print("\n[3] SLQ Lanczos basis memory at 10% density (steps=30)")
    mask = magnitude_mask(model, 0.10)
    op_m = C.hessian_operator(model, ev, mask)
    op_d = C.hessian_operator(model, ev, mask, masked=False)
    res_m = run(C.slq(op_m, probes=1, steps=30))
    full_bytes = 30 * op_d.dim * torch.empty(0, dtype=op_d.dtype).element_size()
    print(f"  active coordinates {op_m.dim} of {op_d.dim} (density {mask.density():.3f})")
    print(f"  basis bytes: active-coordinate flat vectors {res_m.basis_bytes}, full-size vectors {full_bytes},"
          f" ratio {res_m.basis_bytes / full_bytes:.3f}")


if __name__ == "__main__":
    main()
