"""Sensitivity command: ``sensitivity MODEL`` (core/training/sensitivity.py).

JSON shape (scripts depend on it): ``sensitivity MODEL --json`` prints the rows as a list, one
object per (unit, level) with the fields of
:data:`visualizer.core.training.sensitivity.ROW_FIELDS` (loss, accuracy, their change from the
dense model, kept/total weights of the unit, the method that measured it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_json_arg,
    add_model_args,
    print_json,
    table,
)


def register(sub: argparse._SubParsersAction) -> None:
    from visualizer.core.training.sensitivity import DEFAULT_LEVELS, UNITS
    from visualizer.core.workspace import EVAL_BATCH_SIZE, SCORE_BATCH_SIZE, SCORE_BATCHES

    p = sub.add_parser("sensitivity", help="prune each layer (or coupled group) alone at each level: loss and "
                                           "accuracy per unit and level")
    add_model_args(p)
    p.add_argument("--levels", default=",".join(f"{x:g}" for x in DEFAULT_LEVELS),
                   help="comma-separated densities in (0, 1] the unit keeps (default %(default)s)")
    p.add_argument("--unit", default="layer", help=f"{' or '.join(UNITS)}: one weight tensor, or one coupled "
                                                   "channel group pruned as the structured pruner prunes it "
                                                   "(default layer)")
    p.add_argument("--criterion", "-c", default="magnitude",
                   help="which entries the unit keeps: a mask criterion (magnitude, snip, ...); with --unit group "
                        "also group-l2, group-l1, group-bn (default magnitude)")
    p.add_argument("--units", help="comma-separated units to analyse (a weight, its layer, a group's root "
                                   "layer or id; default: all)")
    p.add_argument("--eval-batches", type=int, default=None,
                   help="test mini-batches of the evaluation sample (default: the whole split)")
    p.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE,
                   help=f"evaluation batch size (default {EVAL_BATCH_SIZE})")
    p.add_argument("--batches", type=int, default=SCORE_BATCHES,
                   help=f"mini-batches data criteria score on (default {SCORE_BATCHES})")
    p.add_argument("--batch-size", type=int, default=SCORE_BATCH_SIZE,
                   help=f"batch size for data criteria (default {SCORE_BATCH_SIZE})")
    p.add_argument("--seed", type=int, default=0, help="seed of random scores and the criterion batches")
    p.add_argument("--out", "-o", help="rows file (.csv or .json), written as each unit finishes; rows already "
                                       "in it are reused, so an interrupted analysis resumes")
    p.add_argument("--fresh", action="store_true", help="ignore rows already in --out")
    p.add_argument("--whole-model", action="store_true",
                   help="evaluate the whole model per level (no cached prefix: the slow reference)")
    p.add_argument("--cluster", metavar="WHERE",
                   help="one Ray task per unit: local, local:N, ray://HOST:PORT or auto "
                        "(needs pip install 'pruneviz[cluster]')")
    add_device_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_sensitivity)


def parse_levels(text: str) -> tuple[float, ...]:
    from visualizer.core.training.sensitivity import check_levels

    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    return check_levels(parts)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from visualizer.cli.common import load_model_and_data
    from visualizer.core.tasks import TerminalProgress, run
    from visualizer.core.training.sensitivity import (
        SensitivityConfig,
        heat_table,
        read_rows,
        sensitivity_job,
        sensitivity_on_cluster,
    )
    from visualizer.core.workspace import Workspace

    # every option is checked before any slow work
    config = SensitivityConfig(
        args.model, args.criterion, args.unit, parse_levels(args.levels),
        tuple(t.strip() for t in (args.units or "").split(",") if t.strip()),
        args.eval_batches, args.eval_batch_size, fast=not args.whole_model)
    config.validate()
    if args.batches < 1 or args.batch_size < 1:
        raise UserError("--batches and --batch-size must be at least 1")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".csv", ".json"):
        raise UserError(f"--out must end in .csv or .json, got {out.name}")
    if args.cluster:
        from visualizer.core.training.cluster import connect, import_ray, parse_cluster

        spec = parse_cluster(args.cluster)
        import_ray()
        session = connect(spec)
    else:
        session = nullcontext(None)
    loaded, data = load_model_and_data(args)
    workspace = Workspace(loaded.model, data, device=args.device, seed=args.seed, model_ref=loaded.ref,
                          score_batches=args.batches, score_batch_size=args.batch_size)
    previous = [] if (args.fresh or out is None) else read_rows(out)
    progress = TerminalProgress()
    kept: list[dict] = []

    def on_step(step) -> None:
        progress(step)
        if isinstance(step.partial, list):
            kept.extend(step.partial)

    with session as ray:
        job = (sensitivity_on_cluster if ray is not None else sensitivity_job)(workspace, config, previous, out=out)
        try:
            res = run(job, on_step)
        except KeyboardInterrupt:
            job.close()
            where = f"kept in {out} (the same command computes only the rest)" if out else \
                "lost (give --out FILE to keep rows and resume)"
            print(f"pruneviz sensitivity: interrupted; {len(kept)} rows {where}", file=sys.stderr)
            return 130
        finally:
            progress.close()
    for note in res.notices:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print_json(res.rows)
        return 0
    units, levels, values = heat_table(res.rows, "accuracy")
    base = res.rows[0]["base_accuracy"] if res.rows else None
    print(table([[u, *[f"{100 * v:.1f}" for v in row]] for u, row in zip(units, values)],
                ["unit \\ density", *[f"{lv:g}" for lv in levels]]))
    print(f"\ntest accuracy (%) with one {config.unit} pruned by {config.criterion}; dense {100 * base:.2f}% on "
          f"{res.rows[0]['samples'] if res.rows else 0} samples. {res.computed} cells computed, {res.reused} reused"
          + (f"; rows in {out}" if out else ""))
    return 0
