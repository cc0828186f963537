"""Curvature benchmarks, printed as ratios against peers run in the same process.

1. HVP cost / gradient cost, for double backward and forward-over-reverse (the faster one is
   the default, core.curvature.DEFAULT_HVP_METHOD). Target: at most ~3.
2. Lanczos (stopping on the Ritz residual) vs power iteration with PyHessian's stopping rule
   (relative change < 1e-3): HVPs to λ_max and the accuracy of each against a 300-step Lanczos
   reference. Target: Lanczos within 1e-3 using at most 1/3 of power iteration's HVPs.
   Also the "Krylov floor": the fewest HVPs after which the best Rayleigh quotient over the
   Krylov space K_m(H, v0) is within 1e-3 of the reference, an oracle stop that no method built
   on the same HVPs from the same start vector (power iteration included) can beat; where the
   floor is above a third of power iteration's count, the 1/3 target cannot be met by anyone.
3. Memory of the SLQ Lanczos basis at 10% density: active-coordinate flat vectors vs full-size
   vectors over every prunable coordinate.
4. The criteria on the same engine: GraSP's scores (one gradient and one HVP of the batch-averaged
   loss, with per-batch progress steps and score bookkeeping) vs the operator's bare gradient +
   matvec on the same batch. Target: close to 1 (the job machinery costs nothing measurable).

Run: /work/main/.venv/bin/python tests/benchmarks/bench_curvature.py [--model lenet] [--threads T]
     [--peers mlp resnet-mini rnn] [--skip hvp lanczos memory criteria]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.core.curvature.exact import MatrixOperator  # noqa: E402
from visualizer.core.curvature import lanczos, operator  # noqa: E402
from visualizer.core.data.sources import load_dataset  # noqa: E402
from visualizer.core.models.loaders import load_model  # noqa: E402
from visualizer.core.pruning.masks import MaskSet  # noqa: E402
from visualizer.core.pruning.prunable import prunable_parameters  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402
from visualizer.core.workspace import curvature_batches  # noqa: E402


def power_iteration(op, *, max_iter: int = 1000, tol: float = 1e-3, seed: int = 0,
                    history: list[float] | None = None) -> tuple[float, int]:
    """The peer: power iteration on H with the stopping rule PyHessian uses (relative change of
    the Rayleigh quotient below ``tol``; ``tol < 0`` never stops early). Returns (estimate,
    HVPs); ``history`` receives every Rayleigh quotient. Converges to the eigenvalue of largest
    modulus."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(op.dim, generator=gen, dtype=op.dtype).to(op.device)
    v = v / v.norm()
    est = None
    for i in range(max_iter):
        hv = op.matvec(v)
        new = float(torch.dot(hv, v))
        if history is not None:
            history.append(new)
        v = hv / hv.norm()
        if est is not None and abs(new - est) / (abs(est) + 1e-6) < tol:
            return new, i + 1
        est = new
    return float(est), max_iter

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


def autograd_gradient(op: operator.HessianOperator):
    """The plainest gradient peer: one reverse pass by torch.autograd.grad (no torch.func), on
    the default (fastest, possibly fused) kernels unless called inside second_order_compat."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in op.free.items()}
    with operator.eval_mode(op.model), torch.enable_grad():
        total = None
        for x, y, scale in op._batches():
            g = torch.autograd.grad(op._batch_loss(leaves, x, y, scale), list(leaves.values()))
            total = g if total is None else [a + b for a, b in zip(total, g)]
    return total


def peak_bytes(fn) -> int:
    """Peak of live CPU tensor memory allocated during fn (torch.profiler allocation events in
    time order: allocations positive, frees negative)."""
    from torch.profiler import profile

    with profile(profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def first_within(history: list[float], ref: float, rel: float) -> int | None:
    for i, h in enumerate(history):
        if abs(h - ref) <= rel * abs(ref):
            return i + 1
    return None


def krylov_floor(op: operator.Operator, seed: int, ref: float, rel: float, steps: int = 60) -> int | None:
    """The fewest HVPs after which *any* method whose estimate is a Rayleigh quotient of a vector
    in the Krylov space K_m(H, v0) can be within ``rel`` of ``ref``, v0 being the start vector
    both power iteration and Lanczos draw for ``seed``. The top Ritz value of T_m is the largest
    Rayleigh quotient over K_m, and power iteration's m-th estimate is the Rayleigh quotient of
    H^(m-1) v0, a vector of K_m; so this is an oracle stop (it knows the answer), a lower bound
    for Lanczos with any certified stopping rule, and a bound power iteration cannot beat."""
    import scipy.linalg

    gen = torch.Generator(device="cpu").manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=op.dtype).to(op.device)
    a, b = lanczos._lanczos_fixed(op, v0, steps)
    for m in range(1, a.size + 1):
        top = scipy.linalg.eigvalsh_tridiagonal(a[:m], b[: m - 1], select="i", select_range=(m - 1, m - 1))[0]
        if abs(top - ref) <= rel * abs(ref):
            return m
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--peers", nargs="*", default=["mlp", "resnet-mini", "rnn"])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's; the GUI uses cores - 1)")
    ap.add_argument("--oracle-iters", type=int, default=150, help="power iterations for the to-accuracy count")
    ap.add_argument("--skip", nargs="*", default=[], choices=["hvp", "lanczos", "memory", "criteria"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average: {os.getloadavg()}  threads: {torch.get_num_threads()}")
    loaded = load_model(args.model)
    model = loaded.model
    ev = curvature_batches(load_dataset(loaded.dataset), args.batches, args.batch_size)
    print(f"model {args.model}: eval set {ev.n_samples} samples in {len(ev.batches)} batch(es)")

    # 1. HVP / gradient cost
    if "hvp" not in args.skip:
        print("\n[1] cost of one HVP relative to one gradient (same eval set, best of repeats)")
        ops = {m: operator.hessian_operator(model, ev, method=m) for m in ("double-backward", "forward-over-reverse")}
        op0 = ops["double-backward"]
        v = torch.randn(op0.dim)
        t_func = timed(op0.gradient, args.repeats)
        t_auto = timed(lambda: autograd_gradient(op0), args.repeats)
        t_grad = min(t_func, t_auto)
        print(f"  gradient: engine (HessianOperator.gradient) {t_func * 1e3:.2f} ms,"
              f" plain torch.autograd.grad {t_auto * 1e3:.2f} ms"
              f"  (dim {op0.dim}; ratios below use the faster, {t_grad * 1e3:.2f} ms)")
        t_db = 0.0
        for m, op in ops.items():
            t = timed(lambda op=op: op.matvec(v), args.repeats)
            t_db = t if m == "double-backward" else t_db
            print(f"  HVP {m:22s}: {t * 1e3:.2f} ms  ratio HVP/gradient = {t / t_grad:.2f}")
        # Fused kernels (oneDNN's LSTM) have no double backward: a graph with create_graph=True runs
        # the model's unfused, differentiable kernels. The gradient on the kernels with second
        # derivatives (core.curvature.second_order_compat) is the like-for-like peer there.
        with operator.second_order_compat():
            t_same = timed(lambda: autograd_gradient(op0), args.repeats)
        print(f"  gradient on the kernels with second derivatives (second_order_compat): {t_same * 1e3:.2f} ms;"
              f" HVP double-backward / that = {t_db / t_same:.2f}")
        a = ops["double-backward"].matvec(v)
        b = ops["forward-over-reverse"].matvec(v)
        print(f"  agreement: max |Hv_db - Hv_for| / max|Hv| = {float((a - b).abs().max() / a.abs().max()):.2e}")
        print(f"  default method: {operator.DEFAULT_HVP_METHOD}")

    # 2. Lanczos vs power iteration
    if "lanczos" not in args.skip:
        print("\n[2] lambda_max: Lanczos (residual stop) vs power iteration (PyHessian rule: rel. change < 1e-3)")
        print("  power@1e-3 = HVPs power iteration needs to be truly within 1e-3 of the reference (oracle)")
        points = [(args.model, "trained", model, None, None)]
        init = load_model(args.model, weights=str(Path(loaded.weights).with_suffix("").with_suffix(".init.safetensors")))
        points.append((args.model, "init", init.model, None, None))
        points.append((args.model, "trained, masked 10% magnitude", model, None, magnitude_mask(model, 0.10)))
        for name in args.peers:
            other = load_model(name)
            points.append((name, "trained", other.model,
                           curvature_batches(load_dataset(other.dataset), args.batches, args.batch_size), None))
        print("  krylov floor = fewest HVPs after which the best Rayleigh quotient over K_m(H, v0) is within 1e-3"
              " (an oracle stop; no Krylov method from the same start vector can certify sooner)")
        totals = {"power": 0, "oracle": 0, "gap": 0, "residual": 0, "floor": 0}
        for name, where, mdl, evp, mask in points:
            evp = evp or ev

            def make(mdl=mdl, evp=evp, mask=mask):
                return operator.hessian_operator(mdl, evp, mask)

            ref = run(lanczos.lanczos(make(), 1, 0, max_steps=300, tol=0.0, bound="residual", want_vectors=False))
            lam_ref = float(ref.top[0])
            print(f"  {name} ({where}): dim {make().dim}, reference 300-step Lanczos"
                  f" lambda_max = {lam_ref:.6f}")
            for seed in range(args.seeds):
                hist: list[float] = []
                power_iteration(make(), tol=-1.0, max_iter=args.oracle_iters, seed=seed, history=hist)
                lam_pow, n_pow = power_iteration(make(), tol=1e-3, seed=seed)
                n_orc = first_within(hist, lam_ref, 1e-3)
                totals["power"] += n_pow
                totals["oracle"] += n_orc if n_orc is not None else args.oracle_iters
                orc = f"{n_orc:3d}" if n_orc is not None else f">{args.oracle_iters}"
                floor = krylov_floor(make(), seed, lam_ref, 1e-3) or 60
                totals["floor"] += floor
                line = (f"    seed {seed}: power {n_pow:3d} HVPs rel.err {abs(lam_pow - lam_ref) / abs(lam_ref):.1e}"
                        f" power@1e-3 {orc} krylov floor {floor:2d} ({floor / n_pow:.2f} of power)")
                for bound in ("gap", "residual"):
                    lz = run(lanczos.lanczos(make(), 1, 0, tol=1e-3, bound=bound, seed=seed, want_vectors=False))
                    totals[bound] += lz.hvps
                    lam = float(lz.top[0])
                    line += (f" | lanczos[{bound}] {lz.hvps:3d} HVPs rel.err {abs(lam - lam_ref) / abs(lam_ref):.1e}"
                             f" ratio {lz.hvps / n_pow:.2f}")
                print(line)
        print(f"  total HVPs: power {totals['power']} (to true 1e-3: {totals['oracle']}),"
              f" lanczos[gap] {totals['gap']} (ratio {totals['gap'] / totals['power']:.2f};"
              f" vs to-true-1e-3 {totals['gap'] / totals['oracle']:.2f}),"
              f" lanczos[residual] {totals['residual']} (ratio {totals['residual'] / totals['power']:.2f}),"
              f" krylov floor {totals['floor']} (ratio {totals['floor'] / totals['power']:.2f}: the least any"
              f" certified Krylov method could reach)")
        # Power iteration's cost grows like 1/log(lambda_1/lambda_2), Lanczos' like its square root:
        # the ratio depends on the gap. A synthetic operator with a small gap shows the regime
        # where power iteration is slow (not a bundled model).
        gen = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(1000, 1000, generator=gen, dtype=torch.float64))
        lam = torch.cat([torch.tensor([1.0], dtype=torch.float64), torch.linspace(-0.3, 0.95, 999, dtype=torch.float64)])
        mat = MatrixOperator((q * lam) @ q.T)
        print("  synthetic 1000x1000 operator, lambda_1 = 1, the rest uniform in [-0.3, 0.95]:")
        for seed in range(args.seeds):
            hist: list[float] = []
            power_iteration(mat, tol=-1.0, seed=seed, max_iter=2000, history=hist)
            n_orc = first_within(hist, 1.0, 1e-3)
            lam_pow, n_pow = power_iteration(mat, tol=1e-3, seed=seed, max_iter=5000)
            lz = run(lanczos.lanczos(mat, 1, 0, tol=1e-3, seed=seed, want_vectors=False, max_steps=500))
            print(f"    seed {seed}: power {n_pow:3d} HVPs rel.err {abs(lam_pow - 1):.1e} power@1e-3 {n_orc}"
                  f" | lanczos[gap] {lz.hvps:3d} HVPs rel.err {abs(float(lz.top[0]) - 1):.1e}"
                  f" ratio {lz.hvps / n_pow:.2f}, vs power@1e-3 {lz.hvps / n_orc:.2f}")

    # 3. memory of the SLQ density at 10% density
    if "memory" not in args.skip:
        print("\n[3] SLQ spectral density at 10% density (1 probe, 30 steps): masked operator on the active"
              " coordinates vs a full-space method (vectors over every prunable coordinate)")
        mask = magnitude_mask(model, 0.10)
        op_m = operator.hessian_operator(model, ev, mask)
        op_d = operator.hessian_operator(model, ev, mask, masked=False)
        res_m = run(lanczos.slq(op_m, probes=1, steps=30))
        res_d = run(lanczos.slq(op_d, probes=1, steps=30))
        print(f"  active coordinates {op_m.dim} of {op_d.dim} (density {mask.density():.3f})")
        print(f"  Lanczos basis bytes: active {res_m.basis_bytes}, full-space {res_d.basis_bytes},"
              f" ratio {res_m.basis_bytes / res_d.basis_bytes:.3f}")
        pk_m = peak_bytes(lambda: run(lanczos.slq(op_m, probes=1, steps=30)))
        pk_d = peak_bytes(lambda: run(lanczos.slq(op_d, probes=1, steps=30)))
        pk_h = peak_bytes(lambda: op_m.matvec(torch.randn(op_m.dim)))
        print(f"  measured peak (torch.profiler): active {pk_m} B, full-space {pk_d} B, ratio {pk_m / pk_d:.3f};"
              f" one HVP's own workspace (same for both) {pk_h} B;"
              f" beyond it: {pk_m - pk_h} vs {pk_d - pk_h} B, ratio {(pk_m - pk_h) / max(1, pk_d - pk_h):.3f}")

    # 4. the criteria on the same engine
    if "criteria" not in args.skip:
        from visualizer.core.pruning.criteria import score

        print("\n[4] GraSP scores through the engine vs the operator's bare gradient + HVP (same batch)")
        batch = ev.batches[:1]
        op_c = operator.criterion_operator(model, prunable_parameters(model), batch)
        u = torch.randn(op_c.dim)
        t_bare = timed(lambda: (op_c.gradient(), op_c.matvec(u)), args.repeats)
        t_grasp = timed(lambda: run(score("grasp", model, batch)), args.repeats)
        print(f"  grasp {t_grasp * 1e3:.2f} ms, gradient + HVP {t_bare * 1e3:.2f} ms, ratio {t_grasp / t_bare:.2f}")


if __name__ == "__main__":
    main()
