"""Command line: ``pruneviz`` (no command) opens the GUI; ``pruneviz <command>`` works headless.

Each command group lives in its own module with a ``register(subparsers)`` function; commands are
thin clients of :mod:`visualizer.core`. Every error prints one line on stderr (the formatter of
:mod:`visualizer.core.errors`): exit status 2 for input the user can fix, 1 for an internal
error; no command prints a traceback unless asked with ``--debug`` or ``PRUNEVIZ_DEBUG=1``.
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
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    for command in sub.choices.values():  # `pruneviz prune ... --debug` as well as `pruneviz --debug prune`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


DEBUG_HELP = "on an error, print the Python traceback instead of one line (also: PRUNEVIZ_DEBUG=1)"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every exception becomes one line on stderr (exit 2 for bad input or a
    file/device problem, 1 for an internal error), unless --debug or PRUNEVIZ_DEBUG asks for
    the traceback."""
    from visualizer.cli.common import oom_message, resolve_args_device, user_errors
    from visualizer.core.errors import debug_enabled, describe

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from visualizer.cli.gui import launch_gui

        return launch_gui([])
    import torch

    debug = args.debug or debug_enabled()
    try:
        resolve_args_device(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"pruneviz {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly (Python docs' recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place every command's failure becomes a line
        if debug:
            raise
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
            text, code = oom_message(args.command, exc), 2
        elif isinstance(exc, user_errors()):
            text, code = describe(exc), 2
        else:
            text, code = describe(exc, expected=False), 1
        print(f"pruneviz {args.command}: error: {text}", file=sys.stderr)
        return code
