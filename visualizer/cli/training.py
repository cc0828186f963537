"""Training commands: train, imp, dst, sweep, lth-report (thin clients of visualizer.core)."""

from __future__ import annotations

import argparse
from pathlib import Path

from visualizer.cli.common import (
    UserError,
    add_device_arg,
    add_json_arg,
    add_mask_arg,
    add_model_args,
    device_label,
    load_model_and_data,
    print_json,
    resolve_mask,
    table,
)
from visualizer.cli.pruning import add_allocation_args, allocation_curves, allocation_list


def _add_train_args(p: argparse.ArgumentParser, epochs: int, lr: float = 1e-3) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr:g})")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="fixes batch order and re-initialisations")
    add_device_arg(p, amp=True)
    p.add_argument("--eval-batches", type=int, default=None,
                   help="test mini-batches each evaluation reads (default: the whole split)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's choice; 1 is often fastest for the small bundled models on a busy machine)")


def _train_device(args: argparse.Namespace) -> str:
    """The training device: the resolved --device here; with --cluster the device as asked (the
    cluster's placement decides what ``auto`` means on its workers)."""
    if getattr(args, "cluster", None):
        return getattr(args, "device_requested", str(args.device))
    return str(args.device)


def _train_config(args: argparse.Namespace, **extra):
    import torch

    from visualizer.core.training.loop import TrainConfig

    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)

    return TrainConfig(
        epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, batch_size=args.batch_size,
        seed=args.seed, device=_train_device(args), amp=bool(args.amp),
        eval_batches=getattr(args, "eval_batches", None), **extra,
    )


def _run(job, on_step=None):
    """Drive a job with a progress bar; Ctrl+C closes it (a cluster job cancels its tasks)."""
    from visualizer.core.tasks import TerminalProgress, run

    progress = TerminalProgress()

    def step(s) -> None:
        progress(s)
        if on_step is not None:
            on_step(s)

    try:
        return run(job, step)
    except KeyboardInterrupt:
        job.close()
        raise
    finally:
        progress.close()


def _add_cluster_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--cluster", metavar="WHERE",
                   help=f"run {what} as Ray tasks: local or local:N (this machine, N workers), ray://HOST:PORT "
                        "(a Ray cluster's head), auto (RAY_ADDRESS or the cluster running here); "
                        "needs pip install 'pruneviz[cluster]'")
    p.add_argument("--seeds", metavar="S,S,...", help=f"comma-separated seeds: {what} once per seed (default: --seed)")


def _seeds(args: argparse.Namespace) -> tuple[int, ...]:
    if not getattr(args, "seeds", None):
        return (args.seed,)
    try:
        seeds = tuple(dict.fromkeys(int(t) for t in args.seeds.split(",") if t.strip()))
    except ValueError as exc:
        raise UserError(f"--seeds is a comma-separated list of integers, got {args.seeds!r}") from exc
    if not seeds:
        raise UserError("--seeds is empty")
    return seeds


def _cluster(args: argparse.Namespace):
    """The Ray session asked for by --cluster (yields the ray module), or None without it."""
    from contextlib import nullcontext

    if not getattr(args, "cluster", None):
        return nullcontext(None)
    from visualizer.core.training.cluster import connect, import_ray, parse_cluster

    spec = parse_cluster(args.cluster)
    import_ray()
    return connect(spec)


def _float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise UserError(f"not a comma-separated list of numbers: {text!r}") from exc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="(masked) training / fine-tuning of a model")
    add_model_args(p)
    add_mask_arg(p, "train only the kept weights (projected gradient)")
    _add_train_args(p, epochs=5)
    p.add_argument("--label-smoothing", type=float, default=0.0, help="eps: targets (1-eps) onehot + eps/K")
    p.add_argument("--distill", action="store_true", help="distil from the dense model (teacher)")
    p.add_argument("--temperature", type=float, default=4.0, help="distillation temperature T")
    p.add_argument("--distill-weight", type=float, default=0.5, help="a in (1-a) CE + a T^2 KL")
    p.add_argument("--out", help="write the trained weights here (.safetensors)")
    add_json_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("imp", help="Lottery Ticket iterative magnitude pruning with rewinding")
    add_model_args(p)
    p.add_argument("--rounds", type=int, required=True, help="S pruning rounds")
    p.add_argument("--rate", type=float, required=True, help="alpha: fraction of remaining weights pruned per round")
    p.add_argument("--rewind", type=int, default=0, help="tau: rewind to the weights after tau steps (0 = init)")
    p.add_argument("--control", action="append", choices=["reinit", "random-mask"], default=[],
                   help="also train this control each round (repeatable)")
    p.add_argument("--scope", choices=["global", "layer"], default="global")
    add_allocation_args(p)
    p.add_argument("--out", required=True, help="output folder: rounds.csv/json, masks per round "
                                                 "(several seeds: one folder seed<S> per seed, all rounds in rounds.csv)")
    _add_train_args(p, epochs=10)
    _add_cluster_args(p, "independent IMP runs")
    add_json_arg(p)
    p.set_defaults(func=cmd_imp)

    p = sub.add_parser("dst", help="dynamic sparse training (SET, RigL) at a constant density")
    add_model_args(p)
    p.add_argument("--method", choices=["set", "rigl"], required=True)
    p.add_argument("--density", type=float, required=True)
    p.add_argument("--zeta", type=float, default=0.3, help="initial update fraction (cosine decayed)")
    p.add_argument("--update-every", type=int, default=20, help="steps between mask updates")
    p.add_argument("--distribution", choices=["erk", "uniform"], default="erk",
                   help="per-layer densities of the random starting mask: erk (Erdos-Renyi-Kernel, "
                        "small layers denser; RigL's default) or uniform (default: erk)")
    p.add_argument("--out", help="write the final mask here (.safetensors, or .pt/.pth as a torch.nn.utils.prune state dict)")
    _add_train_args(p, epochs=10, lr=3e-3)
    add_json_arg(p)
    p.set_defaults(func=cmd_dst)

    p = sub.add_parser("prox", help="sparse regularisation: L1 (ISTA), group lasso, IHT proximal training")
    add_model_args(p)
    p.add_argument("--method", choices=["l1", "group-lasso", "iht"], required=True)
    p.add_argument("--lam", type=float, default=1e-3, help="penalty weight; threshold per step = lr * lam")
    p.add_argument("--density", type=float, default=0.1, help="IHT: keep floor(density * d) weights")
    p.add_argument("--groups", choices=["auto", "channels", "branches", "connections"], default="auto",
                   help="group lasso groups (auto: Inception branches, DenseNet connections, else channels)")
    p.add_argument("--out", help="write the resulting mask (exact zeros) here (.safetensors, or .pt/.pth as a torch.nn.utils.prune state dict)")
    _add_train_args(p, epochs=5, lr=0.05)
    p.set_defaults(optimizer="sgd")
    add_json_arg(p)
    p.set_defaults(func=cmd_prox)

    p = sub.add_parser("sweep", help="accuracy vs density: criteria x densities x retraining")
    add_model_args(p)
    p.add_argument("--criteria", default="magnitude,snip,grasp,random")
    p.add_argument("--densities", default="1,0.5,0.2,0.1,0.05")
    p.add_argument("--retrain", choices=["none", "finetune", "rewind", "init"], default="none",
                   help="none; finetune the kept weights; rewind to the init (one-shot ticket); "
                        "init: prune at initialisation (score w_0) and train from it")
    p.add_argument("--scope", choices=["global", "layer"], default="global")
    p.add_argument("--structure", choices=["auto", "unstructured", "channel"], default="auto",
                   help="auto: whole channels for the structured criteria (l1-norm, l2-norm, bn-scale)")
    add_allocation_args(p, several=True)
    p.add_argument("--out", required=True, help="results.csv (a .json copy is written beside it)")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument("--resume", action="store_true",
                       help="compute only the cells whose row (matched by every setting, not by position) is "
                            "not yet in --out: how an interrupted sweep continues (the default)")
    reuse.add_argument("--fresh", action="store_true", help="ignore rows already in --out")
    _add_train_args(p, epochs=3)
    _add_cluster_args(p, "the sweep's cells")
    add_json_arg(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("lth-report", help="LTH picture: tickets vs re-inits vs random masks")
    add_model_args(p)
    p.add_argument("--out", required=True, help="output folder: lth.csv, lth.json, lth.png")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--rate", type=float, default=0.4)
    p.add_argument("--rewind", type=int, default=0)
    p.add_argument("--scope", choices=["global", "layer"], default="global")
    _add_train_args(p, epochs=15)
    _add_cluster_args(p, "the report's IMP runs")
    add_json_arg(p)
    p.set_defaults(func=cmd_lth_report)


# --- commands --------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from visualizer.core.training.evaluate import evaluate
    from visualizer.core.training.loop import train
    from visualizer.core.workspace import evaluation_batches

    loaded, data = load_model_and_data(args)
    model = loaded.model
    masks = resolve_mask(args, loaded)
    config = _train_config(
        args, label_smoothing=args.label_smoothing,
        distill_weight=args.distill_weight if args.distill else 0.0, temperature=args.temperature,
    )
    config.validate()
    teacher = None
    if args.distill:
        import copy

        teacher = copy.deepcopy(model).eval()
    before = evaluate(model, evaluation_batches(data, config.eval_batches), masks)
    res = _run(train(model, data, masks, config, teacher=teacher))
    if args.out:
        _save_state(res.model.state_dict(), Path(args.out))
    out = {
        "model": args.model, "mask": args.mask, "density": masks.density() if masks else 1.0,
        "epochs": config.epochs, "lr": config.lr, "optimizer": config.optimizer, "seed": config.seed,
        "label_smoothing": config.label_smoothing, "distill": bool(args.distill),
        "temperature": config.temperature, "distill_weight": config.distill_weight,
        "before": {"accuracy": before.accuracy, "loss": before.loss},
        "accuracy": res.test.accuracy, "loss": res.test.loss, "steps": res.steps,
        "history": res.history, "out": args.out, "device": device_label(args.device), "amp": bool(args.amp),
    }
    if args.json:
        print_json(out)
    else:
        rows = [[h["epoch"], h["train_loss"], h["test_loss"], h["accuracy"]] for h in res.history]
        print(table(rows, ["epoch", "train loss", "test loss", "accuracy"]))
        print(f"density {out['density']:.4f}: accuracy {before.accuracy:.4f} -> {res.test.accuracy:.4f}")
    return 0


def cmd_imp(args: argparse.Namespace) -> int:
    from functools import partial

    from visualizer.core.training.cluster import imp_run
    from visualizer.core.training.experiments import write_rows
    from visualizer.core.training.lottery import IMPConfig, initial_state

    allocations = allocation_list(args)
    if len(allocations) > 1:
        raise UserError("imp takes one --allocation")
    loaded, data = load_model_and_data(args)
    allocation = allocations[0] if allocations else ""
    curves = _sensitivity_curves(args, loaded, data, ("magnitude",))["magnitude"] if allocation == "sensitivity" else None
    config = IMPConfig(args.rounds, args.rate, args.rewind, args.scope, tuple(dict.fromkeys(args.control)), _train_config(args),
                       allocation=allocation, curves=curves, owl_lambda=args.owl_lambda, owl_m=args.owl_m)
    config.validate()
    seeds = _seeds(args)
    inits = {s: initial_state(args.model, loaded.model, s) for s in seeds}
    results = _seeded_runs(args, loaded.model, data, {s: i for s, (i, _) in inits.items()}, partial(imp_run, config=config))
    out = Path(args.out)
    runs, all_rows = [], []
    for seed in seeds:
        res = results[seed]
        settings = {"model": args.model, "rate": args.rate, "rewind": args.rewind, "scope": args.scope,
                    **({"allocation": allocation} if allocation else {}),
                    "epochs": args.epochs, "lr": args.lr, "seed": seed, "init": inits[seed][1],
                    "device": device_label(args.device)}
        folder = out if len(seeds) == 1 else out / f"seed{seed}"
        rows = _write_imp(res, folder, settings)
        all_rows += rows
        runs.append({**settings, "controls": list(config.controls), "rounds": res.rows, "out": str(folder)})
    if len(seeds) > 1:
        write_rows(all_rows, out / "rounds.csv", fields=list(all_rows[0]))
        write_rows(all_rows, out / "rounds.json")
    if args.json:
        print_json(runs[0] if len(seeds) == 1 else {"runs": runs, "out": str(out)})
    else:
        cols = list(results[seeds[0]].rows[0])
        lead = ["seed"] if len(seeds) > 1 else []
        print(table([[r[c] for c in lead + cols] for r in all_rows], lead + cols))
        last = len(results[seeds[0]].rows) - 1
        where = f"{out}" if len(seeds) == 1 else f"{out}/seed<S> (and all rounds in {out}/rounds.csv)"
        print(f"wrote {where}: rounds.csv, rounds.json, mask_round*.safetensors, rewind_point.safetensors "
              f"(w_tau) and trained_round{last}.safetensors")
    return 0


def _seeded_runs(args: argparse.Namespace, model, data, inits: dict, make) -> dict:
    """``make(model, data, init, seed)`` for every seed (core.training.cluster.seeded_runs): Ray
    tasks in parallel with --cluster, else one after another here. Returns {seed: result}."""
    from visualizer.core.training.cluster import seeded_runs

    with _cluster(args) as ray:
        return _run(seeded_runs(model, data, inits, make, device=_train_device(args), on_cluster=ray is not None))


def _write_imp(res, out: Path, settings: dict) -> list[dict]:
    from visualizer.core.io.mask_formats import write_mask
    from visualizer.core.training.experiments import write_rows

    out.mkdir(parents=True, exist_ok=True)
    rows = [{**settings, **r} for r in res.rows]
    write_rows(rows, out / "rounds.csv", fields=list(settings) + list(res.rows[0]))
    write_rows(rows, out / "rounds.json")
    for r, m in enumerate(res.masks):
        write_mask(m, out / f"mask_round{r}.safetensors")
    _save_state(res.w_tau, out / "rewind_point.safetensors")
    _save_state(res.final.model.state_dict(), out / f"trained_round{len(res.rows) - 1}.safetensors")
    return rows


def _save_state(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    from visualizer.core.io.atomic import atomic_write

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def cmd_dst(args: argparse.Namespace) -> int:
    from visualizer.core.io.mask_formats import write_mask
    from visualizer.core.training.dst import DSTConfig, dynamic_sparse_training
    from visualizer.core.training.lottery import initial_state

    loaded, data = load_model_and_data(args)
    init, source = initial_state(args.model, loaded.model, args.seed)
    config = DSTConfig(args.method, args.density, args.zeta, args.update_every, train=_train_config(args),
                       distribution=args.distribution)
    config.validate()
    res = _run(dynamic_sparse_training(loaded.model, data, config, start_state=init))
    if args.out:
        write_mask(res.masks, args.out, res.model)
    out = {
        "model": args.model, "method": args.method, "density": args.density,
        "distribution": args.distribution, "achieved_density": res.masks.density(),
        "layer_density": {ld.name: ld.density for ld in res.masks.layers()},
        "epochs": args.epochs, "lr": args.lr,
        "seed": args.seed, "init": source, "accuracy": res.test.accuracy, "loss": res.test.loss,
        "device": device_label(args.device),
        "updates": [{k: u[k] for k in ("step", "zeta", "density")} | {"moved": sum(u["moved"].values())} for u in res.updates],
        "history": res.history, "out": args.out,
    }
    if args.json:
        print_json(out)
    else:
        rows = [[h["epoch"], h["train_loss"], h["accuracy"], h["density"]] for h in res.history]
        print(table(rows, ["epoch", "train loss", "accuracy", "density"]))
        print(f"{args.method} at density {out['achieved_density']:.4f}: accuracy {res.test.accuracy:.4f} "
              f"({len(res.updates)} mask updates)")
    return 0


def cmd_prox(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from visualizer.core.io.mask_formats import write_mask
    from visualizer.core.training.prox import ProxConfig, proximal_training

    loaded, data = load_model_and_data(args)
    # plain SGD (no momentum): each step is then exactly w <- prox_{lr lam}(w - lr grad)
    tc = replace(_train_config(args), momentum=0.0)
    groups = None
    if args.method == "group-lasso":
        from visualizer.core.training import prox

        makers = {"channels": prox.output_channel_groups, "branches": prox.branch_groups,
                  "connections": prox.connection_groups}
        groups = prox.default_groups(loaded.model)[1] if args.groups == "auto" else makers[args.groups](loaded.model)
        if not groups:
            raise UserError(f"{args.model} has no {args.groups} groups")
        groups = tuple(groups)
    config = ProxConfig(args.method, lam=args.lam, density=args.density, groups=groups, train=tc)
    config.validate()
    res = _run(proximal_training(loaded.model, data, config))
    if args.out:
        write_mask(res.masks, args.out, res.model)
    out = {
        "model": args.model, "method": args.method, "lam": args.lam, "density": res.masks.density(),
        "zero_groups": res.zero_groups, "groups": res.groups, "epochs": args.epochs, "lr": args.lr,
        "optimizer": tc.optimizer, "seed": args.seed, "accuracy": res.test.accuracy, "loss": res.test.loss,
        "device": device_label(args.device),
        "layers": [{"name": lay.name, "kept": lay.kept, "total": lay.total} for lay in res.masks.layers()],
        "history": res.history, "out": args.out,
    }
    if args.json:
        print_json(out)
    else:
        print(table([[lay["name"], lay["kept"], lay["total"]] for lay in out["layers"]], ["layer", "nonzero", "total"]))
        extra = f", {res.zero_groups}/{res.groups} groups zero" if args.method == "group-lasso" else ""
        print(f"{args.method}: density {out['density']:.4f}{extra}, accuracy {res.test.accuracy:.4f}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import sys

    from visualizer.core.training.cluster import sweep_on_cluster
    from visualizer.core.training.experiments import (
        ROW_FIELDS,
        RowFile,
        SweepConfig,
        read_rows,
        sweep,
        sweep_cells,
        sweep_identity,
    )
    from visualizer.core.training.lottery import initial_state

    allocations = allocation_list(args)
    loaded, data = load_model_and_data(args)
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    curves = _sensitivity_curves(args, loaded, data, criteria) if "sensitivity" in allocations else None
    config = SweepConfig(args.model, criteria, tuple(_float_list(args.densities)), args.retrain,
                         args.scope, args.structure, _train_config(args), seeds=_seeds(args),
                         allocations=allocations, curves=curves, owl_lambda=args.owl_lambda, owl_m=args.owl_m)
    config.validate()
    out = Path(args.out)
    if out.suffix not in (".csv", ".json"):
        raise UserError(f"--out must end in .csv or .json, got {out.name}")
    previous = [] if args.fresh else read_rows(out)
    init = initial_state(args.model, loaded.model, args.seed)[0] if args.retrain in ("rewind", "init") else None
    # every finished row goes to disk at once, in grid order: an interrupted sweep resumes from the file
    cells = sweep_cells(config, data.name, sweep_identity(loaded.model, data))
    rows_file = RowFile(out, cells, previous, ROW_FIELDS)

    def on_step(step) -> None:
        if isinstance(step.partial, dict) and "accuracy" in step.partial:
            rows_file.add(step.partial)

    with _cluster(args) as ray:
        job = (sweep_on_cluster if ray is not None else sweep)(loaded.model, data, config, init_state=init, previous=previous)
        try:
            res = _run(job, on_step)
        except KeyboardInterrupt:
            print(f"pruneviz sweep: interrupted; {len(rows_file.done)} rows kept in {out} "
                  "(the same command computes only the rest)", file=sys.stderr)
            return 130
    rows_file.write()
    rows_file.write(out.with_suffix(".json" if out.suffix == ".csv" else ".csv"))
    if args.json:
        print_json({"rows": res.rows, "computed": res.computed, "reused": res.reused, "out": str(out),
                    "device": device_label(args.device)})
    else:
        cols = ["criterion", "structure", "density", "achieved_density", "retrain", "accuracy", "loss"]
        if len(config.seed_list()) > 1:
            cols.insert(3, "seed")
        if any(config.allocation_list()):
            cols.insert(1, "allocation")
        if any("perplexity" in r for r in res.rows):  # a language model: its metric first
            cols.insert(cols.index("accuracy"), "perplexity")
        print(table([[r.get(c, "") for c in cols] for r in res.rows], cols))
        print(f"{res.computed} rows computed, {res.reused} reused; wrote {out}")
    return 0


def _sensitivity_curves(args: argparse.Namespace, loaded, data, criteria, model=None) -> dict:
    """{criterion: loss curves} for the sensitivity allocation: from --sensitivity-rows, else
    measured per layer on a training-split sample (core's allocation_curves_job, as the window)."""
    from visualizer.core.training.sensitivity import allocation_curves_job
    from visualizer.core.workspace import Workspace

    known = {c: allocation_curves(args, c) for c in criteria}
    ws = Workspace(model or loaded.model, data, device=args.device, seed=args.seed, model_ref=args.model)
    return _run(allocation_curves_job(ws, criteria, known)).curves


def cmd_lth_report(args: argparse.Namespace) -> int:
    from functools import partial

    from visualizer.core.training.cluster import lth_run
    from visualizer.core.training.experiments import LTH_FIELDS, write_rows
    from visualizer.core.training.lottery import initial_state

    loaded, data = load_model_and_data(args)
    seeds = _seeds(args)
    inits = {s: initial_state(args.model, loaded.model, s) for s in seeds}
    make = partial(lth_run, model_ref=args.model, rounds=args.rounds, rate=args.rate, rewind=args.rewind,
                   scope=args.scope, config=_train_config(args))
    results = _seeded_runs(args, loaded.model, data, {s: i for s, (i, _) in inits.items()}, make)
    rows = [r for s in seeds for r in results[s]]
    source = inits[seeds[0]][1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, out / "lth.csv", LTH_FIELDS)
    write_rows(rows, out / "lth.json")
    from visualizer.cli.gui import render_curves_png

    png = render_curves_png(
        rows, out / "lth.png",
        title=f"{args.model}: IMP tickets (rewind {args.rewind}) vs re-init vs random mask",
    )
    if args.json:
        print_json({"model": args.model, "init": source, "rows": rows, "csv": str(out / "lth.csv"), "png": str(png),
                    "device": device_label(args.device)})
    else:
        by_round: dict[tuple, dict] = {}
        for r in rows:
            first = {"seed": r["seed"], "round": r["round"], "density": r["density"]}
            by_round.setdefault((r["seed"], r["round"]), first)[r["kind"]] = r["accuracy"]
        cols = (["seed"] if len(seeds) > 1 else []) + ["round", "density", "ticket", "reinit", "random-mask"]
        print(table([[b.get(c) for c in cols] for b in by_round.values()], cols))
        print(f"wrote {out}/lth.csv, lth.json, lth.png")
    return 0
