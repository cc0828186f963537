"""``pruneviz hessian`` and ``pruneviz landscape``: thin clients of core.curvature / core.landscape."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_example_input_arg,
    add_json_arg,
    add_mask_arg,
    add_model_args,
    device_label,
    example_input_from_args,
    load_model_and_data,
    print_json,
    resolve_mask,
    table,
    write_result,
)
from visualizer.core.tasks import TerminalProgress, run


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser(
        "hessian",
        help="Hessian spectrum (dense and masked subspace): top/bottom eigenvalues, trace, density",
        description=(
            "Eigenvalues of the Hessian of the mean cross-entropy on a fixed evaluation set (the first "
            "B batches of the test split). With --mask: the masked operator H[S,S] over the kept "
            "weights and the dense H, both at theta = m * w."
        ),
    )
    add_model_args(h)
    add_mask_arg(h, "mask file from 'pruneviz prune' or the GUI")
    h.add_argument("--top-k", type=int, default=5, help="eigenvalues at each end (default 5)")
    h.add_argument("--bottom-k", type=int, help="smallest eigenvalues (default: --top-k)")
    h.add_argument("--density-probes", type=int, default=0, help="SLQ probes for the spectral density (0: none)")
    h.add_argument("--density-steps", type=int, default=30, help="Lanczos steps per SLQ probe")
    h.add_argument("--sigma", type=float, help="Gaussian broadening of the density (default 1%% of the range)")
    h.add_argument("--trace", action="store_true", help="Hutchinson trace with standard error")
    h.add_argument("--trace-probes", type=int, default=50, help="probes for --trace")
    _add_eval_args(h, default_batches=1)
    h.add_argument("--max-steps", type=int, default=100, help="Lanczos steps at most")
    h.add_argument("--tol", type=float, default=1e-3, help="stop when residual error bounds < tol * |lambda|max")
    h.add_argument("--include-other", action="store_true", help="also differentiate biases and norms (dense)")
    h.add_argument("--layer", help="restrict to one parameter (e.g. fc1.weight)")
    h.add_argument("--per-layer", nargs="?", const="layer", choices=["layer", "group"], metavar="UNIT",
                   help="instead of the whole spectrum: lambda_max of each layer's Hessian block (or, with "
                        "'--per-layer group', of each coupled channel group's), by Lanczos; with --mask over "
                        "the kept weights. --layer picks one unit")
    add_example_input_arg(h, "with '--per-layer group': the input the coupled groups are traced on (default: "
                             "the first evaluation batch's inputs, token blocks of --data text:FILE included)")
    h.add_argument("--hvp", default="auto", choices=["auto", "double-backward", "forward-over-reverse"])
    h.add_argument("--float64", action="store_true", help="compute in double precision")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--rewinds", metavar="TAUS",
                   help="with --mask: also the masked spectrum at rewind points theta_tau = m * w_tau of a "
                        "training run from the model's initialisation, e.g. 0,50,100,200 (optimiser steps)")
    h.add_argument("--out", help="write the JSON result here too")
    add_json_arg(h)
    h.set_defaults(func=cmd_hessian)

    ls = sub.add_parser(
        "landscape",
        help="loss landscape: 1D interpolation / random direction, or 2D filter-normalised slice",
        description=(
            "1D with --from/--to: loss along (1-a) A + a B, a in [0,1], with the error barrier. "
            "1D without them, or 2D: around the model's weights (m * w with --mask) along random "
            "filter-normalised directions (Li et al. 2018), a, b in [-span, span]. "
            "Endpoints: init (bundled NAME.init.safetensors), trained (the loaded weights), "
            "pruned (m * trained), ticket (m * init), reinit (fresh random init, * m with --mask) "
            "or a weights file."
        ),
    )
    add_model_args(ls)
    add_mask_arg(ls, "restricts slices to the masked subspace")
    ls.add_argument("--dims", type=int, choices=[1, 2], required=True)
    ls.add_argument("--steps", type=int, required=True, help="grid points per axis")
    ls.add_argument("--from", dest="from_", metavar="A", help="1D start: init|trained|pruned|ticket|reinit|FILE")
    ls.add_argument("--to", metavar="B", help="1D end: init|trained|pruned|ticket|reinit|FILE")
    ls.add_argument("--span", type=float, default=1.0, help="half-width of slices along directions")
    ls.add_argument("--seed", type=int, default=0, help="seed of the random directions / reinit")
    ls.add_argument("--chunk", type=int, help="grid points per batched evaluation (default: from the batch size)")
    _add_eval_args(ls, default_batches=0)
    ls.add_argument("--out", required=True, help="output .npz (loss, accuracy, alpha[, beta])")
    add_json_arg(ls)
    ls.set_defaults(func=cmd_landscape)


def _add_eval_args(p: argparse.ArgumentParser, default_batches: int) -> None:
    p.add_argument(
        "--batches", type=int, default=default_batches,
        help=f"evaluation batches of the test split, fixed order (0: the whole split; default {default_batches})",
    )
    p.add_argument("--batch-size", type=int, default=128)
    add_device_arg(p)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's choice; 1 is often fastest for the small bundled models on a busy machine)")


def _setup(args: argparse.Namespace):
    from visualizer.core.workspace import curvature_batches
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, data = load_model_and_data(args)  # on args.device (resolved by the CLI's main)
    model = loaded.model
    mask = resolve_mask(args, loaded)
    ev = curvature_batches(data, args.batches, args.batch_size)
    return loaded, model, mask, ev, data


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v is not None and v < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {v}")


def cmd_hessian(args: argparse.Namespace) -> int:
    from visualizer.core.analysis import spectrum_job
    from visualizer.core.curvature import spectrum

    _check_positive(top_k=args.top_k, bottom_k=args.bottom_k, density_probes=args.density_probes,
                    trace_probes=args.trace_probes, batches=args.batches)
    if args.top_k == 0 and not args.bottom_k:
        raise UserError("--top-k must be at least 1")
    if args.max_steps < 1 or args.density_steps < 1:
        raise UserError("--max-steps and --density-steps must be at least 1")
    taus = _parse_taus(args.rewinds) if args.rewinds else None
    if taus is not None and not args.mask:
        raise UserError("--rewinds needs --mask (the mask m of theta_tau = m * w_tau)")
    if args.example_input and args.per_layer != "group":
        raise UserError("--example-input is read by '--per-layer group' only (it traces the coupled groups); "
                        "the spectrum itself runs on --data")
    if args.per_layer:
        return _per_layer(args)
    loaded, model, mask, ev, data = _setup(args)
    opts = spectrum.SpectrumOptions(
        top_k=args.top_k, bottom_k=args.bottom_k, max_steps=args.max_steps, tol=args.tol,
        density_probes=args.density_probes, density_steps=args.density_steps, sigma=args.sigma,
        trace_probes=args.trace_probes if args.trace else 0, seed=args.seed,
    )
    kw = dict(layer=args.layer, include_other=args.include_other, method=args.hvp,
              dtype=torch.float64 if args.float64 else None)
    progress = TerminalProgress()
    t0 = time.perf_counter()
    try:
        # the window's spectrum job (core.analysis), with every option; no mask: the dense spectrum alone
        both = run(spectrum_job(model, data, mask, device=str(args.device), options=opts, evalset=ev,
                                need_mask=False, **kw), progress)
        dense, masked = both.dense, both.masked
        rewinds = None
        if taus is not None:
            from visualizer.core.training.loop import TrainConfig
            from visualizer.core.training.lottery import rewind_points

            # the rewind run trains on the spectrum's device
            config = TrainConfig(device=str(args.device))
            points = run(rewind_points(model, loaded.ref, data, taus, config=config, seed=args.seed), progress)
            snaps = [(f"tau={t}", points.snapshots[t]) for t in taus]
            rewinds = [(t, r.spectrum) for t, r in
                       zip(taus, run(spectrum.spectrum_over_rewinds(model, snaps, mask, ev, opts, **kw), progress))]
    finally:
        progress.close()
    result = {**_run_fields(args, loaded, ev, mask, t0), "dense": dense.to_json()}
    if masked is not None:
        result["masked"] = masked.to_json()
    if rewinds is not None:
        result["rewinds"] = [{"tau": t, **s.to_json()} for t, s in rewinds]
    if not write_result(args, result):
        rows = []
        for label, s in (("dense", dense), ("masked", masked)):
            if s is None:
                continue
            rows.append([label, s.dim, s.lambda_max, s.lambda_min,
                         "-" if s.condition_number is None else s.condition_number,
                         s.negative_count, "-" if s.trace is None else s.trace, s.hvps])
        print(table(rows, ["operator", "dim", "lambda_max", "lambda_min", "kappa", "negatives", "trace", "HVPs"]))
        for label, s in (("dense", dense), ("masked", masked)):
            if s is not None:
                print(f"{label} top: " + ", ".join(f"{v:.4g}" for v in s.top_eigenvalues))
                print(f"{label} bottom: " + ", ".join(f"{v:.4g}" for v in s.bottom_eigenvalues))
        if rewinds is not None:
            print(table([[t, s.lambda_max, "-" if s.condition_number is None else s.condition_number,
                          s.negative_count, s.hvps] for t, s in rewinds],
                        ["rewind tau", "lambda_max", "kappa", "negatives", "HVPs"]))
    return 0


def _per_layer(args: argparse.Namespace) -> int:
    """``pruneviz hessian --per-layer [layer|group]``: λ_max of each unit's Hessian block."""
    from visualizer.core.curvature.layerwise import unit_curvature

    if args.rewinds or args.include_other or args.density_probes or args.trace:
        raise UserError("--per-layer computes lambda_max per unit only: drop --rewinds, --include-other, "
                        "--density-probes and --trace")
    loaded, model, mask, ev, _data = _setup(args)
    example = example_input_from_args(args, model)
    if example is None and args.per_layer == "group":
        example = ev.batches[0][0][:2]  # the model's own input: shape, dtype and token ids
    progress = TerminalProgress()
    t0 = time.perf_counter()
    try:
        units = run(unit_curvature(
            model, ev, mask, unit=args.per_layer, names=[args.layer] if args.layer else None,
            max_steps=args.max_steps, tol=args.tol, seed=args.seed, method=args.hvp,
            dtype=torch.float64 if args.float64 else None, example=example), progress)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        progress.close()
    result = {**_run_fields(args, loaded, ev, mask, t0), "unit": args.per_layer,
              "units": [u.to_json() for u in units.values()]}
    if not write_result(args, result):
        rows = [[u.unit, u.dim, u.lambda_max, "exact" if u.exact else ("yes" if u.converged else "no"), u.hvps]
                for u in units.values()]
        print(table(rows, [args.per_layer, "dim", "lambda_max", "converged", "HVPs"]))
    return 0


def _parse_taus(text: str) -> list[int]:
    try:
        taus = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"--rewinds takes steps like 0,50,100, got {text!r}") from None
    if not taus or taus[0] < 0:
        raise UserError(f"--rewinds takes steps >= 0, got {text!r}")
    return taus


# --- landscape -------------------------------------------------------------------------------------


def _endpoint(spec: str, args: argparse.Namespace, model, mask, loaded) -> dict[str, torch.Tensor]:
    from visualizer.core.curvature.operator import masked_point
    from visualizer.core.models.loaders import load_state_dict
    from visualizer.core.models.zoo import ZOO
    from visualizer.core.resources import sample_models_dir

    def init_state() -> dict[str, torch.Tensor]:
        path = sample_models_dir() / f"{args.model}.init.safetensors"
        if args.model not in ZOO or not path.exists():
            raise UserError(f"'init' needs a bundled model with {args.model}.init.safetensors; give a weights file")
        return load_state_dict(path)

    def need_mask(word: str) -> None:
        if mask is None:
            raise UserError(f"endpoint '{word}' needs --mask")

    if spec == "trained":
        return masked_point(model, None)
    if spec == "init":
        return masked_point(model, None, init_state())
    if spec == "pruned":
        need_mask(spec)
        return masked_point(model, mask)
    if spec == "ticket":
        need_mask(spec)
        return masked_point(model, mask, init_state())
    if spec == "reinit":
        if args.model not in ZOO:
            raise UserError("'reinit' needs a bundled model (its factory draws the new initialisation)")
        with torch.random.fork_rng():
            torch.manual_seed(args.seed)
            fresh = ZOO[args.model].build()
        return masked_point(model, mask, fresh.state_dict())
    path = Path(spec)
    if not path.exists():
        raise UserError(f"endpoint {spec!r}: not init|trained|pruned|ticket|reinit and no such file")
    return masked_point(model, None, load_state_dict(path, trust=args.trust))


def cmd_landscape(args: argparse.Namespace) -> int:
    from visualizer.core.curvature import landscape as L

    if args.steps < 2:
        raise UserError("--steps must be at least 2")
    if args.steps > 401:
        raise UserError("--steps above 401 is not supported (the grid grows as steps^2)")
    _check_positive(batches=args.batches)
    if (args.from_ is None) != (args.to is None):
        raise UserError("give both --from and --to (or neither)")
    if args.from_ is not None and args.dims != 1:
        raise UserError("--from/--to define a 1D interpolation: use --dims 1")
    loaded, model, mask, ev, _data = _setup(args)
    chunk = args.chunk or None  # None: core picks it from the batch size (landscape.auto_chunk)
    progress = TerminalProgress()
    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    summary: dict = {"model": loaded.ref, "dims": args.dims, "steps": args.steps, "eval_samples": ev.n_samples,
                     "device": device_label(args.device)}
    try:
        if args.dims == 1 and args.from_ is not None:
            a = _endpoint(args.from_, args, model, mask, loaded)
            b = _endpoint(args.to, args, model, mask, loaded)
            res = run(L.interpolate(model, a, b, ev, steps=args.steps, chunk=chunk), progress)
            arrays["error_barrier"] = np.array(res.error_barrier)
            arrays["loss_barrier"] = np.array(res.loss_barrier)
            summary.update(kind="interpolation", start=args.from_, end=args.to,
                           error_barrier=res.error_barrier, loss_barrier=res.loss_barrier)
        elif args.dims == 1:
            res = run(L.slice_1d(model, ev, steps=args.steps, span=args.span, mask=mask, seed=args.seed, chunk=chunk), progress)
            summary.update(kind="direction", span=args.span)
        else:
            res = run(L.slice_2d(model, ev, steps=args.steps, span=args.span, mask=mask, seed=args.seed, chunk=chunk), progress)
            arrays["beta"] = res.beta
            summary.update(kind="slice", span=args.span)
    finally:
        progress.close()
    arrays.update(loss=res.loss, accuracy=res.accuracy, alpha=res.alpha)
    out = Path(args.out)
    from visualizer.core.io.atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(out, write)
    summary.update(
        out=str(out), masked=mask is not None, method=res.method,
        seconds=round(time.perf_counter() - t0, 3),
        loss_min=float(np.nanmin(res.loss)), loss_max=float(np.nanmax(res.loss)),
        accuracy_max=float(np.nanmax(res.accuracy)),
    )
    if args.json:
        print_json(summary)
    else:
        print(table([[k, v] for k, v in summary.items()], ["field", "value"]))
    return 0


def _run_fields(args, loaded, ev, mask, t0: float) -> dict:
    """The fields every Hessian result file starts with: what was measured, on what, how long."""
    return {
        "model": loaded.ref,
        "eval_samples": ev.n_samples,
        "eval_batches": len(ev.batches),
        "mask": args.mask,
        "density": None if mask is None else mask.density(),
        "seconds": round(time.perf_counter() - t0, 3),
        "device": device_label(args.device),
    }
