"""Command line: ``pruneviz`` (no command) opens the GUI; ``pruneviz <command>`` works headless.

Each command group lives in its own module with a ``register(subparsers)`` function; commands are
thin clients of :mod:`visualizer.core`. Errors the user can fix print one line on stderr and exit
with status 2; nothing prints a traceback unless ``PRUNEVIZ_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = [
    "visualizer.cli.models",
    "visualizer.cli.pruning",
    "visualizer.cli.training",
    "visualizer.cli.curvature",
    "visualizer.cli.structure",
    "visualizer.cli.sensitivity",
    "visualizer.cli.labs",
    "visualizer.cli.presets",
    "visualizer.cli.gui",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pruneviz",
        description="Pruning Visualizer. Without a command, opens the desktop app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from visualizer.cli.common import (
        UserError,
        first_line,
        oom_message,
        resolve_args_device,
        user_errors,
    )

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from visualizer.cli.gui import launch_gui

        return launch_gui([])
    import torch

    try:
        resolve_args_device(args)
        return int(args.func(args) or 0)
    except torch.cuda.OutOfMemoryError as exc:
        if os.environ.get("PRUNEVIZ_DEBUG"):
            raise
        torch.cuda.empty_cache()
        print(f"pruneviz {args.command}: error: {oom_message(args.command, exc)}", file=sys.stderr)
        return 2
    except user_errors() as exc:
        if os.environ.get("PRUNEVIZ_DEBUG"):
            raise
        print(f"pruneviz {args.command}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pruneviz {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly (Python docs' recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UserError:  # pragma: no cover - covered by user_errors
        raise
