"""GUI entry points: the window (no command)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (same as no command)")
    p.add_argument("model", nargs="?", help="model to open (default: the bundled default)")
    p.set_defaults(func=lambda a: launch_gui([a.model] if a.model else []))


def launch_gui(argv: list[str]) -> int:
    from visualizer.ui.app import main as gui_main

    return gui_main(argv)
