"""Shared helpers of the CLI commands: output, errors, common options."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visualizer.core.errors import first_line
from visualizer.core.io.atomic import atomic_write
from visualizer.core.structure.graph import parse_example_input
from visualizer.core.tasks import TerminalProgress, run


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input', shown as one line rather than a traceback."""
    from visualizer.core.data.sources import DataError
    from visualizer.core.io.checks import FileFormatError
    from visualizer.core.io.session import SessionError
    from visualizer.core.models.loaders import ModelLoadError
    from visualizer.core.pruning.masks import MaskError
    from visualizer.core.tasks import Cancelled

    # OSError: a file or folder that cannot be read or written (the message names it)
    return (UserError, ModelLoadError, MaskError, FileFormatError, SessionError, DataError, ValueError,
            OSError, Cancelled)


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, arrays, numpy scalars and dataclasses into JSON values (NaN -> null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return to_jsonable(asdict(obj))
    return obj


def print_json(obj: Any) -> None:
    json.dump(to_jsonable(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def write_result(args: argparse.Namespace, result: dict) -> bool:
    """``result`` as JSON to ``--out`` (atomically), and on stdout with ``--json``; True when it
    was printed (the caller then prints no table)."""
    if getattr(args, "out", None):
        text = json.dumps(to_jsonable(result), indent=2)
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    if args.json:
        print_json(result)
        return True
    return False


def add_model_args(p: argparse.ArgumentParser) -> None:
    """MODEL positional plus the weights and data options shared by every command on a model."""
    p.add_argument("model", help="bundled name, torchvision:NAME, hf:FOLDER or hf:NAME (a Hugging Face "
                                 "model folder or cached model), TorchScript file or file.py:factory")
    p.add_argument("--weights", help="state dict for the model (.safetensors, .pt)")
    p.add_argument("--trust", action="store_true", help="allow full unpickling of checkpoints and a Hugging "
                                                        "Face model's own code (both run code)")
    p.add_argument("--no-pretrained", action="store_true",
                   help="random init instead of pretrained weights (bundled and torchvision:NAME models)")
    p.add_argument("--download", action="store_true",
                   help="allow downloading: torchvision's pretrained weights into torch's cache "
                        "($TORCH_HOME), mnist/fashion-mnist/cifar10 into --data-root")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="dataset (default: the model's own): digits, digits-rows, sequence, mnist, "
                                  "fashion-mnist, cifar10, folder:PATH (PATH/train/CLASS/*.png|jpg with "
                                  "val/ or test/, or one PATH/CLASS tree split 80/20 per class), or "
                                  "file.py:FUNCTION returning (train, test[, num_classes]) torch Datasets")
    g.add_argument("--data-root", help="where mnist, fashion-mnist and cifar10 are (default ~/.cache/pruneviz/data)")
    g.add_argument("--image-size", type=int,
                   help="resize the shorter side and centre-crop images to N pixels (default: a "
                        "torchvision model's own preprocessing, else the first image's size)")
    g.add_argument("--normalize", choices=("imagenet", "none"),
                   help="standardise images by the ImageNet channel statistics (default: a torchvision "
                        "model's own preprocessing, else none)")
    g.add_argument("--workers", type=int,
                   help="DataLoader worker processes that decode images (default min(4, cpus-1); 0: none)")


# what to lower when a command runs out of GPU memory (the one-line message names these flags)
OOM_HINTS = {
    "prune": "--batch-size or --batches",
    "hessian": "--batch-size, --batches, --max-steps or --density-steps (Lanczos steps)",
    "landscape": "--batch-size, --batches or --chunk",
    "graph": "--batch",
    "shrink": "--batch",
    "speed": "--batch",
}
DEFAULT_OOM_HINT = "--batch-size"


def add_device_arg(p: argparse.ArgumentParser, amp: bool = False) -> None:
    """``--device`` (and, for commands that train or evaluate, ``--amp``) on every command that
    computes. The device is resolved by core.workspace.resolve_device before the command runs
    (:func:`resolve_args_device`), so a missing device is one line and exit 2, not a traceback."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)")
    if amp:
        p.add_argument("--amp", action="store_true",
                       help="bf16 autocast of training and evaluation forward passes (CUDA only; "
                            "ignored with a note elsewhere). Curvature always runs in float32/float64")


def resolve_args_device(args: argparse.Namespace) -> None:
    """Replace ``args.device`` (text) by the resolved torch.device; note an ignored ``--amp``."""
    if not hasattr(args, "device") or isinstance(args.device, torch.device):
        return
    from visualizer.core.workspace import resolve_device

    args.device_requested = str(args.device)  # a Ray cluster places "auto" on its own GPUs
    args.device = resolve_device(args.device)
    if getattr(args, "amp", False) and args.device.type != "cuda":
        print(f"note: --amp is ignored on {args.device} (bf16 autocast runs on CUDA only)", file=sys.stderr)


def device_label(device: torch.device) -> str:
    """The device as result rows record it (``cpu``, ``cuda:0``, ``mps``)."""
    from visualizer.core.workspace import device_name

    return device_name(device)


def oom_message(command: str, exc: BaseException) -> str:
    """One line for a CUDA out-of-memory error: where, and which flags to lower."""
    hint = OOM_HINTS.get(command, DEFAULT_OOM_HINT)
    return f"out of GPU memory ({first_line(exc)}); lower {hint}, or use --device cpu"


EXAMPLE_INPUT_HELP = (
    "a shape like 1x3x224x224 or 2x128:long (token ids, drawn below the model's vocabulary), or a "
    "JSON spec {\"shape\": [...], \"dtype\": ..., \"low\": ..., \"high\": ...} (inline or a .json file)")


def add_example_input_arg(p: argparse.ArgumentParser, purpose: str) -> None:
    """``--example-input SHAPE[:dtype]`` (or JSON): the one option graph, shrink, speed and
    hessian share. ``purpose`` says what the command feeds it to and its default."""
    p.add_argument("--example-input", metavar="SHAPE[:dtype]", help=f"{purpose}: {EXAMPLE_INPUT_HELP}")


def example_input_from_args(args: argparse.Namespace, model: torch.nn.Module) -> torch.Tensor | None:
    """The ``--example-input`` the user gave, read for ``model`` (None when not given); a bad
    spec is a :class:`UserError` in one line."""
    text = getattr(args, "example_input", None)
    if not text:
        return None
    try:
        return parse_example_input(text, model)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def add_mask_arg(p: argparse.ArgumentParser, help_text: str = "mask file") -> None:
    """``--mask FILE``: any format read_mask recognises (pruneviz safetensors, torch.nn.utils.prune
    state dict or checkpoint, NNI dict, plain dict of 0/1 tensors)."""
    p.add_argument("--mask", help=f"{help_text} (.safetensors from pruneviz, a torch.nn.utils.prune "
                                  "checkpoint, an NNI mask dict or a dict of 0/1 tensors)")


def resolve_mask(args: argparse.Namespace, loaded):
    """The mask of ``--mask FILE`` checked against the model, else the mask a torch.nn.utils.prune
    ``--weights`` checkpoint carried, else None."""
    from visualizer.core.io.mask_formats import read_mask

    path = getattr(args, "mask", None)
    if path:
        return read_mask(path, loaded.model)
    return getattr(loaded, "masks", None)


def run_with_progress(job):
    """Drive a core job with a progress line on a terminal (silent otherwise); its result."""
    progress = TerminalProgress()
    try:
        return run(job, progress)
    finally:
        progress.close()


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def load_model_from_args(args: argparse.Namespace):
    """The model named by the shared options (weights, trust, pretrained, download)."""
    from visualizer.core.models.loaders import load_model

    return load_model(args.model, weights=args.weights, trust=args.trust,
                      pretrained=not getattr(args, "no_pretrained", False),
                      download=getattr(args, "download", False))


def data_options(args: argparse.Namespace, loaded=None):
    """DataOptions from the shared flags; with ``loaded``, the model's own preprocessing
    (a torchvision model's pretrained transforms, its input channels) fills what is not given."""
    from visualizer.core.data.external import DataOptions, options_for_model

    if getattr(args, "image_size", None) is not None and args.image_size < 1:
        raise UserError(f"--image-size must be at least 1, got {args.image_size}")
    if getattr(args, "workers", None) is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    options = DataOptions(root=getattr(args, "data_root", None), download=getattr(args, "download", False),
                          image_size=getattr(args, "image_size", None), normalize=getattr(args, "normalize", None),
                          workers=getattr(args, "workers", None))
    if loaded is None:
        return options
    return options_for_model(options, loaded.model, loaded.transform)


def load_model_and_data(args: argparse.Namespace):
    """Load the model and its dataset from the shared options; raise UserError where unclear.
    Notes (a wider head than the data's classes, the model's own notes) go to stderr."""
    from visualizer.core.data.sources import (
        STREAMING_HINT,
        check_model_reads,
        dataset_names,
        load_dataset,
    )

    loaded = load_model_from_args(args)
    name = getattr(args, "data", None) or loaded.dataset
    if name is None:
        raise UserError(f"{args.model} has no default dataset; pass --data NAME "
                        f"({', '.join(dataset_names())}, {STREAMING_HINT})")
    data = load_dataset(name, data_options(args, loaded))
    for note in [*loaded.notes, *check_model_reads(loaded.model, data, args.model)]:
        print(f"note: {note}", file=sys.stderr)
    to_args_device(loaded.model, args)
    return loaded, data


def to_args_device(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """Move a freshly loaded model to the command's resolved ``--device`` (in place)."""
    device = getattr(args, "device", None)
    if isinstance(device, torch.device):
        model.to(device)
    return model


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    return str(c)
