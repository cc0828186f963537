"""Theory labs: ``pruneviz lab NAME`` runs one lab of :mod:`visualizer.core.labs` headless.

Pure core: nothing here imports Qt (the presets and the deck that draw the labs are in
:mod:`visualizer.cli.presets`).
"""

from __future__ import annotations

import argparse
import math

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_json_arg,
    print_json,
    run_with_progress,
    table,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="run a theory lab (formula vs experiment) and print a table or JSON",
        description="Small experiments that check a result of the pruning theory against numbers "
                    "(see docs/theory.md).",
    )
    labs = p.add_subparsers(dest="lab", metavar="NAME", required=True)

    mp = labs.add_parser("mask-probability", aliases=["mask_probability"],
                         help="exact-support probability of magnitude pruning at init: formula vs Monte Carlo")
    mp.add_argument("--n", type=int, default=10, help="weights (default 10)")
    mp.add_argument("--k", type=int, default=2, help="size of the true support (default 2)")
    mp.add_argument("--sigma", type=float, default=1.0, help="init standard deviation (default 1)")
    mp.add_argument("--threshold", type=float, default=None,
                    help="one threshold t (default: a grid of t/sigma in [0.25, 3])")
    mp.add_argument("--trials", type=int, default=100_000, help="Monte Carlo draws (default 100000)")
    _seed_json_and_run(mp, mask_probability_command)

    pt = labs.add_parser("phase-transition", aliases=["phase_transition"],
                         help="sparse recovery success over (delta = m/n, rho = k/m) with the l1 curve")
    pt.add_argument("--n", type=int, default=50, help="signal length (default 50)")
    pt.add_argument("--solver", choices=["omp", "ista", "iht"], default="omp")
    pt.add_argument("--trials", type=int, default=10, help="problems per grid cell (default 10)")
    _seed_json_and_run(pt, phase_transition_command)

    ao = labs.add_parser("a-optimal", aliases=["a_optimal"],
                         help="A-optimal subset of rows (exhaustive) vs the k largest rows")
    ao.add_argument("--m", type=int, default=12, help="rows (sensors) of A (default 12)")
    ao.add_argument("--d", type=int, default=3, help="columns (parameters) of A (default 3)")
    ao.add_argument("--k", type=int, default=6, help="rows to keep, d <= k <= m (default 6)")
    ao.add_argument("--trials", type=int, default=20, help="random matrices (default 20)")
    _seed_json_and_run(ao, a_optimal_command)

    rl = labs.add_parser("random-labels", aliases=["random_labels"],
                         help="dense and IMP-ticket accuracy of the MLP on true vs shuffled digits labels")
    rl.add_argument("--rounds", type=int, default=2, help="IMP rounds for the ticket (default 2)")
    rl.add_argument("--rate", type=float, default=0.5, help="fraction pruned per round (default 0.5)")
    rl.add_argument("--epochs", type=int, default=5, help="epochs per training (default 5)")
    rl.add_argument("--z", type=float, default=3.0, help="half-width of the chance band in standard errors")
    _seed_json_and_run(rl, random_labels_command, device=True)


def _seed_json_and_run(p: argparse.ArgumentParser, func, device: bool = False) -> None:
    """What every lab takes after its own options: --seed, --device where it trains, --json; and
    the command that runs it."""
    p.add_argument("--seed", type=int, default=0)
    if device:
        add_device_arg(p)
    add_json_arg(p)
    p.set_defaults(func=func)


def _emit(args: argparse.Namespace, result, rows: list[list], headers: list[str]) -> int:
    if args.json:
        print_json(result.to_json())
    else:
        print(table(rows, headers))
        print(result.summary())
    return 0


def mask_probability_command(args: argparse.Namespace) -> int:
    from visualizer.core.labs.mask_probability import mask_probability

    if args.threshold is not None and not (args.threshold >= 0 and math.isfinite(args.threshold)):
        raise UserError(f"--threshold must be a finite number >= 0, got {args.threshold}")
    thresholds = None if args.threshold is None else [args.threshold]
    r = run_with_progress(mask_probability(n=args.n, k=args.k, sigma=args.sigma, thresholds=thresholds,
                              trials=args.trials, seed=args.seed))
    rows = [[row["t_over_sigma"], row["formula"], row["monte_carlo"], row["stderr"],
             abs(row["monte_carlo"] - row["formula"]) / row["stderr"] if row["stderr"] > 0 else 0.0]
            for row in r.rows()]
    return _emit(args, r, rows, ["t/sigma", "formula", "monte carlo", "std error", "|diff| / se"])


def phase_transition_command(args: argparse.Namespace) -> int:
    from visualizer.core.labs.phase_transition import phase_transition, weak_threshold

    r = run_with_progress(phase_transition(n=args.n, solver=args.solver, trials=args.trials, seed=args.seed))
    deltas, rhos, z = r.grid()
    rows = [[f"rho {rho:g}", *[float(v) for v in z[i]]] for i, rho in enumerate(rhos)]
    rows.append(["l1 curve rho_W", *[weak_threshold(d) for d in deltas]])
    return _emit(args, r, rows, ["success", *[f"delta {d:g}" for d in deltas]])


def a_optimal_command(args: argparse.Namespace) -> int:
    from visualizer.core.labs.a_optimal import a_optimal

    r = run_with_progress(a_optimal(m=args.m, d=args.d, k=args.k, trials=args.trials, seed=args.seed))
    rows = [[t["trial"], t["a_optimal_error"], t["magnitude_error"], t["ratio"], t["overlap"]] for t in r.trials]
    return _emit(args, r, rows, ["trial", "A-optimal error", "magnitude error", "ratio", "overlap"])


def random_labels_command(args: argparse.Namespace) -> int:
    from visualizer.core.labs.random_labels import random_labels

    r = run_with_progress(random_labels(rounds=args.rounds, rate=args.rate, epochs=args.epochs, seed=args.seed, z=args.z,
                           device=str(args.device)))
    rows = [[name, acc, "yes" if r.band_low <= acc <= r.band_high else "no"]
            for name, acc in r.accuracies().items()]
    return _emit(args, r, rows, ["run", "test accuracy", "inside chance band"])
