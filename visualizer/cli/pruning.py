"""Pruning command: ``prune MODEL`` (core/pruning).

JSON shape (scripts depend on it): ``prune MODEL --json``: ``{"density", "kept", "total", "device",
"layers": [{"name", "density", "kept", "total"}]}`` (achieved densities over the prunable weights),
plus ``"accuracy"`` (test accuracy of the pruned model) with ``--eval``.
"""

from __future__ import annotations

import argparse

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_json_arg,
    add_model_args,
    device_label,
    print_json,
    table,
    to_args_device,
)
from visualizer.core.layers import output_dims


def register(sub: argparse._SubParsersAction) -> None:
    from visualizer.core.pruning.criteria import CRITERIA
    from visualizer.core.pruning.ranking import SCOPES, STRUCTURES
    from visualizer.core.workspace import (
        CALIBRATION_SEQUENCES,
        OBD_PROBES,
        SCORE_BATCH_SIZE,
        SCORE_BATCHES,
    )

    p = sub.add_parser("prune", help="prune a model to a density and report the achieved densities")
    add_model_args(p)
    p.add_argument("--criterion", "-c", default="magnitude",
                   help=f"one of: {', '.join(CRITERIA)}, sparsegpt (default magnitude); wanda and sparsegpt read "
                        "--calibration sequences of --data; sparsegpt also updates the kept weights; l1-norm, l2-norm and bn-scale "
                        "score each OUTPUT CHANNEL of a layer by its own weights (shrink's group-l1, group-l2, "
                        "group-bn score coupled groups)")
    p.add_argument("--density", "-d", type=float, required=True, help="fraction kept, 0..1: of the weights (of the output channels with --structure channel), k = floor(D * d)")
    p.add_argument("--scope", default="global", help=f"{' or '.join(SCOPES)} (default global)")
    p.add_argument("--structure", default="unstructured",
                   help=f"{' or '.join(STRUCTURES)} or N:M (2:4, 4:8: exactly N kept in every M inputs; "
                        "the density is then N/M) (default unstructured)")
    add_allocation_args(p)
    p.add_argument("--out", "-o", help="write the mask: .safetensors (pruneviz), .pt/.pth (a torch.nn.utils.prune "
                                       "state dict: load it into a model prepared with prune.identity)")
    p.add_argument("--format", choices=["pruneviz", "torch-prune", "nni"],
                   help="mask file format (default: from the --out suffix); nni: {module: {'weight': mask}}")
    p.add_argument("--eval", action="store_true", help="report the pruned model's test accuracy")
    p.add_argument("--eval-batches", type=int, default=None,
                   help="test mini-batches --eval reads (default: the whole split)")
    p.add_argument("--batches", type=int, default=SCORE_BATCHES,
                   help=f"mini-batches of a seeded shuffle of the training split that data criteria "
                        f"score on (default {SCORE_BATCHES}, as the window and sweep)")
    p.add_argument("--batch-size", type=int, default=SCORE_BATCH_SIZE,
                   help=f"batch size for data criteria (default {SCORE_BATCH_SIZE})")
    p.add_argument("--calibration", type=int, default=CALIBRATION_SEQUENCES,
                   help=f"calibration sequences (samples) wanda and sparsegpt read (default {CALIBRATION_SEQUENCES})")
    p.add_argument("--seed", type=int, default=0, help="seed of random scores, batch choice and probes")
    p.add_argument("--probes", type=int, default=OBD_PROBES, help=f"Hutchinson probes for obd (default {OBD_PROBES})")
    add_device_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_prune)




def add_allocation_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    """``--allocation`` (prune, sweep, imp) and the inputs of its rules."""
    from visualizer.core.pruning.allocation import ALLOCATIONS, OWL_LAMBDA, OWL_M

    p.add_argument("--allocation", metavar="RULE" + (",..." if several else ""),
                   help=f"how the density is spread over the layers: {', '.join(ALLOCATIONS)} (uniform: every layer "
                        "at the target; global: one threshold; erk: Erdos-Renyi-Kernel; owl: outlier-weighted; "
                        "sensitivity: least measured loss increase), always keeping exactly floor(D * d) weights; "
                        + ("comma-separated: a grid dimension; " if several else "")
                        + "supersedes --scope (default: --scope)")
    p.add_argument("--owl-lambda", type=float, default=OWL_LAMBDA,
                   help=f"owl: half-width of the density band around the target (default {OWL_LAMBDA})")
    p.add_argument("--owl-m", type=float, default=OWL_M,
                   help=f"owl: an outlier is |W|*||X|| above M times the layer mean (default {OWL_M:g})")
    p.add_argument("--sensitivity-rows", metavar="FILE",
                   help="sensitivity: per-layer rows of `pruneviz sensitivity --out FILE` (same criterion); "
                        "default: measured first on a training-split sample")


def allocation_list(args: argparse.Namespace) -> tuple[str, ...]:
    """The allocations of ``--allocation`` (checked), empty when it is not given."""
    from visualizer.core.pruning.allocation import check_allocation

    text = getattr(args, "allocation", None)
    if not text:
        return ()
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    for n in names:
        check_allocation(n)
    return names


def allocation_curves(args: argparse.Namespace, criterion: str):
    """The loss curves of ``--sensitivity-rows`` for ``criterion`` (None without the flag)."""
    path = getattr(args, "sensitivity_rows", None)
    if not path:
        return None
    from pathlib import Path

    from visualizer.core.training.sensitivity import loss_curves, read_rows

    if not Path(path).exists():
        raise UserError(f"--sensitivity-rows: no such file {path}")
    curves = loss_curves(read_rows(path), criterion)
    if not curves:
        raise UserError(f"--sensitivity-rows {path} has no per-layer rows of criterion {criterion}")
    return curves


def density_report(masks) -> dict:
    """The ``prune --json`` shape: global and per-layer achieved density over the masked weights."""
    return {
        "density": masks.density(),
        "kept": masks.kept(),
        "total": masks.total(),
        "layers": [{"name": ld.name, "density": ld.density, "kept": ld.kept, "total": ld.total} for ld in masks.layers()],
    }


# --- prune --------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    from visualizer.cli.common import load_model_and_data, load_model_from_args
    from visualizer.core.pruning.criteria import CRITERIA
    from visualizer.core.pruning.nm import parse_nm
    from visualizer.core.pruning.ranking import SCOPES, STRUCTURES, build_ranking, check_density
    from visualizer.core.tasks import TerminalProgress, run
    from visualizer.core.training.evaluate import evaluate_job
    from visualizer.core.workspace import Workspace

    # check every option before any slow work
    if args.criterion not in CRITERIA and args.criterion != "sparsegpt":
        raise UserError(f"unknown criterion {args.criterion!r}; choose one of: {', '.join(CRITERIA)}, sparsegpt")
    if args.scope not in SCOPES:
        raise UserError(f"unknown scope {args.scope!r}; choose one of: {', '.join(SCOPES)}")
    nm = parse_nm(args.structure)
    if args.structure not in STRUCTURES and nm is None:
        raise UserError(f"unknown structure {args.structure!r}; choose one of: {', '.join(STRUCTURES)}, N:M (2:4)")
    density = check_density(args.density)
    if args.criterion == "sparsegpt" or nm is not None:
        return cmd_prune_llm(args, density, nm)
    info = CRITERIA[args.criterion]
    allocations = allocation_list(args)
    if len(allocations) > 1:
        raise UserError("prune takes one --allocation")
    allocation = allocations[0] if allocations else None
    if allocation not in (None, "global") and args.structure != "unstructured":
        raise UserError(f"the {allocation} allocation spreads single weights: use --structure unstructured")
    curves = allocation_curves(args, args.criterion) if allocation == "sensitivity" else None
    needs_data = info.needs_data or args.eval or allocation == "owl" or (allocation == "sensitivity" and curves is None)
    if args.eval_batches is not None and args.eval_batches < 0:
        raise UserError(f"--eval-batches must be 0 or more, got {args.eval_batches}")
    if args.out:
        from visualizer.core.io.mask_formats import format_for

        format_for(args.out, args.format)  # a bad --out/--format fails before any slow work
    if args.batches < 1:
        raise UserError(f"--batches must be at least 1, got {args.batches}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")

    dataset = None
    if needs_data:
        loaded, dataset = load_model_and_data(args)
    else:
        loaded = load_model_from_args(args)
    model = to_args_device(loaded.model, args)
    workspace = Workspace(model, dataset, device=args.device, seed=args.seed, model_ref=loaded.ref,
                          score_batches=args.batches, score_batch_size=args.batch_size)

    progress = TerminalProgress()
    scores = run(workspace.scores(args.criterion, probes=args.probes), progress)
    if allocation is None:
        ranking = run(
            build_ranking(scores, args.scope, args.structure, channel_dims=output_dims(model),
                          criterion=args.criterion, model=loaded.ref),
            progress,
        )
    else:
        from visualizer.core.pruning.allocation import build_allocated_ranking
        from visualizer.core.training.sensitivity import allocation_inputs_job

        inputs = run(allocation_inputs_job(workspace, args.criterion, allocation, curves=curves, owl_m=args.owl_m),
                     progress)
        if allocation == "owl":
            inputs["owl_lambda"] = args.owl_lambda
        ranking = run(build_allocated_ranking(scores, allocation, args.structure, channel_dims=output_dims(model),
                                              **inputs), progress)
    masks = ranking.mask_at(density)
    result: dict = density_report(masks)
    if allocation is not None:
        result["allocation"] = allocation
    result["device"] = device_label(args.device)
    if args.out:  # a torch.prune file carries the (unmasked) weights as X_orig
        from visualizer.core.io.mask_formats import write_mask

        masks = masks.copy()
        masks.metadata.update(criterion=args.criterion, scope=allocation or args.scope, structure=args.structure,
                              density=f"{masks.density():.6g}", model=loaded.ref)
        write_mask(masks, args.out, model, args.format)
    if args.eval:
        evalset = workspace.evaluation_batches(args.eval_batches)
        ev = run(evaluate_job(model, evalset, masks), progress)
        result["accuracy"] = ev.accuracy
        if ev.perplexity is not None:  # a language model on token data
            result["perplexity"] = ev.perplexity
    if args.json:
        print_json(result)
        return 0
    print(
        table(
            [[ld["name"], ld["kept"], ld["total"], pct(ld["density"])] for ld in result["layers"]],
            ["layer", "kept", "total", "density"],
        )
    )
    print(
        f"\n{loaded.ref} pruned by {args.criterion} ({f'{allocation} allocation' if allocation else args.scope}, "
        f"{args.structure}) to "
        f"{pct(density)} requested: kept {result['kept']:,} of {result['total']:,} = {pct(result['density'])}"
    )
    if args.eval and "perplexity" in result:
        print(f"test perplexity of the pruned model: {result['perplexity']:.4g} "
              f"(next-token accuracy {pct(result['accuracy'])})")
    elif args.eval:
        print(f"test accuracy of the pruned model: {pct(result['accuracy'])}")
    if args.out:
        print(f"mask written to {args.out}")
    return 0


def cmd_prune_llm(args: argparse.Namespace, density: float, nm) -> int:
    """``prune`` with an N:M structure or SparseGPT (a mask at one density, not a ranking)."""
    import sys

    from visualizer.cli.common import load_model_and_data, load_model_from_args
    from visualizer.core.pruning.criteria import CRITERIA
    from visualizer.core.tasks import TerminalProgress, run
    from visualizer.core.training.evaluate import evaluate_job
    from visualizer.core.workspace import Workspace, reconstruct_job

    needs_data = args.criterion == "sparsegpt" or CRITERIA[args.criterion].needs_data
    if args.calibration < 1:
        raise UserError(f"--calibration must be at least 1, got {args.calibration}")
    if needs_data or args.eval:
        loaded, dataset = load_model_and_data(args)
    else:
        loaded, dataset = load_model_from_args(args), None
    model = to_args_device(loaded.model, args)
    workspace = Workspace(model, dataset, device=args.device, seed=args.seed, model_ref=loaded.ref,
                          score_batches=args.batches, score_batch_size=args.batch_size,
                          calibration=args.calibration)
    progress = TerminalProgress()
    result = run(reconstruct_job(workspace, args.criterion, density, nm, probes=args.probes), progress)
    masks = result.masks
    for name, why in result.skipped.items():
        print(f"note: {name} skipped: {why}", file=sys.stderr)
    out: dict = density_report(masks)
    out["device"] = device_label(args.device)
    out["skipped"] = result.skipped
    if result.weights:
        out["weight_change"] = result.relative_change(model)
        out["calibration"] = result.mode
    if args.out:
        from visualizer.core.io.mask_formats import write_mask

        masks = masks.copy()
        masks.metadata.update(criterion=args.criterion, scope=args.scope, structure=args.structure,
                              density=f"{masks.density():.6g}", model=loaded.ref)
        write_mask(masks, args.out, model, args.format)
    if args.eval:
        target = result.updated_model(model)
        ev = run(evaluate_job(target, workspace.evaluation_batches(args.eval_batches), masks), progress)
        out["accuracy"] = ev.accuracy
        if ev.perplexity is not None:
            out["perplexity"] = ev.perplexity
    if args.json:
        print_json(out)
        return 0
    print(table([[ld["name"], ld["kept"], ld["total"], pct(ld["density"])] for ld in out["layers"]],
                ["layer", "kept", "total", "density"]))
    what = f"{nm[0]}:{nm[1]}" if nm else f"{pct(density)} requested"
    print(f"\n{loaded.ref} pruned by {args.criterion} ({what}): kept {out['kept']:,} of {out['total']:,} "
          f"= {pct(out['density'])}")
    if result.weights:
        print(f"sparsegpt updated the kept weights of {len(result.weights)} layers ({result.mode}): "
              f"‖Ŵ − W‖/‖W‖ = {out['weight_change']:.4g} over them")
    if args.eval:
        if "perplexity" in out:
            print(f"test perplexity of the pruned model: {out['perplexity']:.4g} "
                  f"(next-token accuracy {pct(out['accuracy'])})")
        else:
            print(f"test accuracy of the pruned model: {pct(out['accuracy'])}")
    if args.out:
        print(f"mask written to {args.out}")
    return 0


def pct(value) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"
