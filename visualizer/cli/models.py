"""Model commands: ``models`` and ``info MODEL`` (core/models).

JSON shapes (scripts depend on them):
- ``models --json``: a list of ``{"name", "params", "accuracy"}``.
- ``info MODEL --json``: ``{"model", "params", "prunable", "layers": [{"name", "kind", "shape",
  "params", "prunable"}]}``; with ``--mask FILE`` (or ``--weights`` naming a torch.nn.utils.prune
  checkpoint, which carries its mask) the ``prune --json`` shape instead, plus ``"model"`` and
  ``"mask"``.
"""

from __future__ import annotations

import argparse
import sys

from visualizer.cli.common import (
    add_json_arg,
    add_mask_arg,
    add_model_args,
    print_json,
    resolve_mask,
    table,
)
from visualizer.cli.pruning import density_report, pct


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models with parameter counts and test accuracy")
    add_json_arg(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="per-layer table of a model: name, kind, shape, parameters, prunable; "
                                    "with --mask: per-layer and global density of the mask")
    add_model_args(p)
    add_mask_arg(p, "report this mask's per-layer and global density")
    add_json_arg(p)
    p.set_defaults(func=cmd_info)


# --- models -------------------------------------------------------------------------------------


def model_rows() -> list[dict]:
    from visualizer.core.models.loaders import count_parameters, read_manifest
    from visualizer.core.models.zoo import ZOO

    manifest = read_manifest()
    rows = []
    for name, entry in ZOO.items():
        info = manifest.get(name, {})
        params = info.get("params")
        if params is None:
            params = count_parameters(entry.build())
        rows.append(
            {
                "name": name,
                "params": int(params),
                "accuracy": info.get("accuracy"),
                "dataset": entry.dataset,
                "description": entry.description,
            }
        )
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print_json([{k: r[k] for k in ("name", "params", "accuracy")} for r in rows])
        return 0
    print(
        table(
            [[r["name"], r["params"], pct(r["accuracy"]), r["dataset"], r["description"]] for r in rows],
            ["name", "params", "accuracy", "dataset", "description"],
        )
    )
    return 0


# --- info ---------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from visualizer.cli.common import load_model_from_args
    from visualizer.core.models.loaders import layer_table

    loaded = load_model_from_args(args)
    masks = resolve_mask(args, loaded)
    if masks is not None:
        return _mask_info(args, loaded, masks)
    rows = layer_table(loaded.model)
    total = sum(r.params for r in rows)
    prunable = sum(r.params for r in rows if r.prunable)
    if args.json:
        print_json(
            {
                "model": loaded.ref,
                "weights": loaded.weights_line,
                "params": total,
                "prunable": prunable,
                "layers": [
                    {"name": r.name, "kind": r.kind, "shape": list(r.shape), "params": r.params, "prunable": r.prunable}
                    for r in rows
                ],
            }
        )
        return 0
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        table(
            [[r.name, r.kind, "x".join(map(str, r.shape)) or "scalar", r.params, "yes" if r.prunable else "-"] for r in rows],
            ["name", "kind", "shape", "params", "prunable"],
        )
    )
    print(f"\n{loaded.ref}: {total:,} parameters, {prunable:,} prunable, {loaded.weights_line}")
    return 0


def _mask_info(args: argparse.Namespace, loaded, masks) -> int:
    source = args.mask or f"{args.weights} (torch.nn.utils.prune)"
    result = {"model": loaded.ref, "mask": source, **density_report(masks)}
    if args.json:
        print_json(result)
        return 0
    print(table([[ld["name"], ld["kept"], ld["total"], pct(ld["density"])] for ld in result["layers"]],
                ["layer", "kept", "total", "density"]))
    print(f"\n{loaded.ref} with mask {source}: kept {result['kept']:,} of {result['total']:,} = "
          f"{pct(result['density'])}")
    return 0
