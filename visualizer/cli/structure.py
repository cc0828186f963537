"""``pruneviz graph | shrink | speed``: a model's structure, structured pruning that shrinks, speed."""

from __future__ import annotations

import argparse
import sys

import torch

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_json_arg,
    add_mask_arg,
    add_model_args,
    device_label,
    print_json,
    resolve_mask,
    run_with_progress,
    table,
    to_args_device,
)


def register(sub) -> None:
    p = sub.add_parser("graph", help="traced layer graph and coupled channel groups")
    add_model_args(p)
    add_json_arg(p)
    p.add_argument("--out", help="write the graph as GraphML (e.g. graph.graphml)")
    p.add_argument("--batch", type=int, default=2, help="batch size of the example input (default 2)")
    _add_example_arg(p)
    add_device_arg(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("shrink", help="structured pruning that removes channels and builds a smaller model")
    add_model_args(p)
    add_json_arg(p)
    _add_prune_args(p)
    p.add_argument("--out", help="write the smaller model (state dict + rebuild spec, loads with weights_only)")
    p.add_argument("--export", help="also write the smaller model as a torch.export program (.pt2)")
    p.add_argument("--torchscript", help="also write the smaller model as TorchScript (deprecated by torch; "
                                         "prefer --export)")
    p.add_argument("--masks", help="also write the equivalent masks of the original model (.safetensors, "
                                   "or .pt/.pth as a torch.nn.utils.prune state dict)")
    _add_example_arg(p)
    add_device_arg(p)
    p.set_defaults(func=cmd_shrink)

    p = sub.add_parser("speed", help="latency of dense vs unstructured-masked vs shrunk models")
    add_model_args(p)
    add_json_arg(p)
    _add_prune_args(p)
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeats", type=int, default=20, help="timed forward passes per model (default 20)")
    _add_example_arg(p)
    add_device_arg(p)
    p.add_argument("--peak-flops", type=float, help="the device's peak FLOP/s, for the absolute eta")
    add_mask_arg(p, "the unstructured mask to time (default: a global magnitude mask keeping as many weights as the shrunk model)")
    p.set_defaults(func=cmd_speed)


def _add_example_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--example-input", metavar="SHAPE[:dtype]",
                   help="the input to trace and time the model on: a shape like 1x3x224x224 or "
                        "2x128:long (token ids, drawn below the model's vocabulary), or a JSON spec "
                        "{\"shape\": [...], \"dtype\": ..., \"low\": ..., \"high\": ...} (inline or a "
                        ".json file). Default: the model's dataset, a Hugging Face config's token ids "
                        "or image size, else guessed from the first layer")


def _add_prune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--criterion", default="group-l1",
                   help="score of a unit of a COUPLED group (all slices removed with it): group-l1, "
                        "group-l2 (the group-lasso norm), group-bn (mean |gamma| of the group's batch "
                        "norms), or any elementwise criterion of `pruneviz prune` (snip, taylor, ...) "
                        "summed over the group; l1-norm, l2-norm, bn-scale are read as group-l1, "
                        "group-l2, group-bn here (in `prune` they score one output channel)")
    p.add_argument("--density", type=float, help="fraction of each group's units kept (0..1)")
    p.add_argument("--zeros", action="store_true",
                   help="instead of a density: remove what group lasso drove to zero (units, DenseNet "
                        "connections, whole Inception branches)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="layer: every group keeps floor(D*size) (at least 1); global: one ranking")


def _load(args):
    from visualizer.cli.common import load_model_from_args
    from visualizer.core.structure.graph import example_input, parse_example_input

    loaded = load_model_from_args(args)
    to_args_device(loaded.model, args)
    dataset = getattr(args, "data", None) or loaded.dataset
    if getattr(args, "example_input", None):
        try:
            x = parse_example_input(args.example_input, loaded.model)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    else:
        try:
            x = example_input(loaded.model, dataset, batch=getattr(args, "batch", 2))
        except ValueError as exc:
            raise UserError(f"{args.model}: {exc}, or pass --data NAME") from exc
    device = getattr(args, "device", None)
    return loaded, dataset, (x.to(device) if isinstance(device, torch.device) else x)


def _scores(args, model, groups, dataset):
    from visualizer.core.pruning.criteria import CRITERIA
    from visualizer.core.structure.group_criteria import GROUP_CRITERIA, group_criterion
    from visualizer.core.structure.groups import group_scores
    from visualizer.core.tasks import run
    from visualizer.core.workspace import Workspace

    if group_criterion(args.criterion) is not None:
        return group_scores(model, groups, args.criterion)
    if args.criterion not in CRITERIA:
        raise UserError(f"unknown criterion {args.criterion!r}: use {', '.join(GROUP_CRITERIA)} or one of {', '.join(CRITERIA)}")
    data = None
    if CRITERIA[args.criterion].needs_data:
        from visualizer.cli.common import data_options
        from visualizer.core.data.external import options_for_model
        from visualizer.core.data.sources import load_dataset

        if dataset is None:
            raise UserError(f"criterion {args.criterion} needs data: pass --data NAME")
        data = load_dataset(dataset, options_for_model(data_options(args), model))
    elem = run(Workspace(model, data).scores(args.criterion))
    return group_scores(model, groups, scores=elem)


def _prune(args):
    from visualizer.core.structure.groups import find_groups_job
    from visualizer.core.structure.shrink import structured_prune_job

    if args.density is None and not args.zeros:
        raise UserError("give --density D (fraction of units kept) or --zeros")
    if args.density is not None and not 0.0 <= args.density <= 1.0:
        raise UserError(f"--density must be in [0, 1], got {args.density}")
    loaded, dataset, x = _load(args)
    model = loaded.model.eval()
    res = run_with_progress(find_groups_job(model, x))
    if not res.prunable():
        why = "; ".join(res.notices) or "no coupled group can be removed without changing the output"
        raise UserError(f"{args.model} has no structurally prunable group: {why}")
    if args.zeros:
        from visualizer.core.structure.shrink import zero_plan

        plan = zero_plan(model, res.groups, x)
        if not plan.removed and not plan.cut:
            raise UserError(f"{args.model}: no group, connection or branch is zero (train with group lasso first)")
        result = run_with_progress(structured_prune_job(model, res.groups, {}, 1.0, x, plan=plan, criterion="zeros",
                                           model_ref=args.model))
    else:
        scores = _scores(args, model, res.groups, dataset)
        result = run_with_progress(structured_prune_job(model, res.groups, scores, args.density, x, scope=args.scope,
                                           criterion=args.criterion, model_ref=args.model))
    return loaded, x, res, result


def cmd_graph(args) -> int:
    from visualizer.core.structure.graph import build_graph_job
    from visualizer.core.structure.groups import branches, connectivity, find_groups_job
    from visualizer.core.structure.hierarchy import model_hierarchy

    loaded, _, x = _load(args)
    model = loaded.model
    g = run_with_progress(build_graph_job(model, x))
    res = run_with_progress(find_groups_job(model, x))
    if args.out:
        g.write_graphml(args.out)
    if args.json:
        out = g.to_json()
        out["model"] = args.model
        out["notices"] = out["notices"] + res.notices
        out["groups"] = [[m.to_json() for m in grp.members] for grp in res.groups]
        out["group_info"] = [{k: v for k, v in grp.to_json().items() if k != "members"} for grp in res.groups]
        out["output_layers"] = res.output_layers
        hierarchy = model_hierarchy(model, g)
        out["hierarchy"] = hierarchy.to_json()  # containers with children; folded runs: repeat, first
        out["notices"] = hierarchy.notices[:1] + out["notices"] if g.method == "hierarchy" else out["notices"]
        if res.groups:
            out["connectivity"] = connectivity(model, res.groups).to_json()
            out["branches"] = [c.to_json() for c in branches(model, res.groups, x)]
        out["seconds"] = g.seconds
        out["device"] = device_label(args.device)
        print_json(out)
        return 0
    print(f"{args.model}: traced with {g.method}: {g.graph.number_of_nodes()} nodes, "
          f"{g.graph.number_of_edges()} edges ({g.seconds:.2f} s)")
    for n in g.notices + res.notices:
        print(f"  note: {n}")
    rows = [[grp.id, grp.kind, grp.root, grp.size, "yes" if grp.prunable else "no",
             len([m for m in grp.members if not m.buffer]), grp.reason] for grp in res.groups]
    print(table(rows, ["group", "kind", "root", "units", "prunable", "members", "why not"]))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_shrink(args) -> int:
    from visualizer.core.structure.shrink import save_exported, save_shrunk, save_torchscript
    from visualizer.core.structure.speed import count_flops

    loaded, x, res, r = _prune(args)
    flops_before = count_flops(loaded.model, x)[0]
    flops_after = count_flops(r.shrunk.model, x)[0]
    # files are written from the host: an exported program or state dict never names the GPU
    r.shrunk.model.cpu()
    x = x.cpu()
    if args.out:
        save_shrunk(args.out, r.shrunk, args.model, criterion=args.criterion, density=args.density)
    if args.export:
        save_exported(r.shrunk.model, args.export, x)
    if args.torchscript:
        save_torchscript(r.shrunk.model, args.torchscript, x)
    if args.masks:
        from visualizer.core.io.mask_formats import write_mask

        write_mask(r.masks, args.masks, loaded.model)
    out = {
        "model": args.model, "criterion": args.criterion, "density": args.density, "scope": args.scope,
        "params_before": r.params_before, "params_after": r.params_after,
        "flops_before": flops_before, "flops_after": flops_after,
        "max_output_diff": r.max_output_diff, "output_scale": r.output_scale,
        "groups": r.groups_total, "groups_prunable": r.groups_prunable,
        "units_removed": r.plan.units_removed(), "mask_density": r.masks.density(),
        "notices": res.notices + r.plan.notices, "out": args.out, "export": args.export,
        "device": device_label(args.device),
    }
    if args.json:
        print_json(out)
        return 0
    rows = [["parameters", r.params_before, r.params_after, r.params_after / r.params_before],
            ["FLOPs", flops_before, flops_after, flops_after / flops_before if flops_before else float("nan")]]
    print(table(rows, ["", "before", "after", "ratio"]))
    print(f"removed {r.plan.units_removed()} units from {len(r.plan.removed)} of {r.groups_prunable} prunable groups; "
          f"mask density {r.masks.density():.4f}")
    print(f"max |shrunk(x) - masked(x)| = {r.max_output_diff:.3g} (outputs up to {r.output_scale:.3g})")
    for n in out["notices"]:
        print(f"note: {n}", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_speed(args) -> int:
    from visualizer.core.structure.speed import compare_speed

    loaded, x, res, r = _prune(args)
    masks = resolve_mask(args, loaded)
    rep = compare_speed(loaded.model, args.density, shrunk=r.shrunk.model, example=x, repeats=args.repeats,
                        device=args.device, peak_flops=args.peak_flops, masks=masks)
    semi = None
    if getattr(args.device, "type", "") == "cuda":  # 2:4 layers on sparse tensor cores vs dense
        from visualizer.core.structure.semi_structured import semi_structured_report

        semi = semi_structured_report(loaded.model, masks)
    if args.json:
        out = rep.to_json()
        out.update(model=args.model, density=args.density, criterion=args.criterion)
        if semi is not None:
            out["semi_structured"] = semi
        print_json(out)
        return 0
    sp = rep.speedups()
    rows = [[e.name, e.params, e.flops, e.executed_flops, e.latency_s * 1e3, sp[e.name], e.flops_per_s / 1e9, e.eta]
            for e in rep.entries]
    print(f"{args.model} on {rep.device}, batch {rep.batch}, {rep.repeats} interleaved repeats, {rep.threads} threads")
    print(table(rows, ["model", "params", "useful FLOPs", "executed FLOPs", "latency ms", "speed-up", "GFLOP/s", "eta"]))
    print("eta = achieved useful FLOP/s / dense FLOP/s (hardware efficiency relative to dense; Hoefler et al. 2021)")
    if semi is not None:
        _print_semi(semi)
    return 0


def _print_semi(semi: dict) -> None:
    if "skipped" in semi:
        print(f"2:4 layers: not measured ({semi['skipped']})")
        return
    rows = [[r["name"], "x".join(map(str, r["shape"])), r["dense_ms"], r["sparse_ms"], r["speedup"]] for r in semi["layers"]]
    print(f"\n2:4 semi-structured layers (float16, {semi['tokens']} tokens; to_sparse_semi_structured vs dense):")
    print(table(rows, ["layer", "out x in", "dense ms", "2:4 ms", "dense/2:4"]))
    if semi["speedup"] is not None:
        print(f"all 2:4 layers together: dense/2:4 = {semi['speedup']:.2f}x")
    for name, why in semi["not_timed"].items():
        print(f"  not timed: {name}: {why}")
