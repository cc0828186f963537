"""GUI entry points: the window (no command, or ``gui``), the offscreen ``screenshot`` and the
offscreen curves PNG of ``lth-report``.

With presets.py (``preset``, ``deck``) the only CLI modules that import visualizer.ui; every
other one is headless and imports visualizer.core only (tests/test_layers.py enforces it). The two offscreen renderers use Qt's ``offscreen`` platform, so they need no
display: they draw with the same pyqtgraph code as the app, so a report's figure and the
window's curves view look alike.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (same as no command)")
    p.add_argument("model", nargs="?", help="model or .pviz session to open (default: the bundled default)")
    p.add_argument("--trust", action="store_true",
                   help="open a model or session that runs code (full unpickling, file.py:factory) without asking")
    p.set_defaults(func=lambda a: launch_gui([a.model] if a.model else [], trust=a.trust))

    s = sub.add_parser(
        "screenshot",
        help="render one view offscreen to a PNG",
        description="Render a view of the app offscreen at a given state (README images, tests).",
    )
    s.add_argument("--view", default="heatmap",
                   help="view id: overview, heatmap, curves, profile (and the analysis views when present), or 'window'")
    s.add_argument("--out", required=True, help="PNG (or .svg for plot views) file to write")
    s.add_argument("--model", default=None, help="model reference (default: the bundled default)")
    s.add_argument("--trust", action="store_true",
                   help="allow a model that runs code (file.py:factory, full unpickling of a checkpoint)")
    s.add_argument("--data", default=None, help="dataset (default: the model's own)")
    s.add_argument("--criterion", default="magnitude")
    s.add_argument("--scope", default="global", choices=["global", "layer", "uniform", "erk", "owl", "sensitivity"],
                   help="global or layer, or an allocation of the density over the layers (default global)")
    s.add_argument("--structure", default="unstructured", choices=["unstructured", "channel"])
    s.add_argument("--density", type=float, default=0.1, help="kept fraction in (0, 1]")
    s.add_argument("--layer", default=None, help="layer (parameter name) to show in the heatmap")
    s.add_argument("--mode", dest="heatmap_mode", default=None,
                   choices=["masked", "weights", "scores", "mask", "compare"], help="heatmap mode")
    s.add_argument("--kernels", action="store_true", help="heatmap: conv weights as a grid of kernels")
    s.add_argument("--size", default="1200x800", help="WIDTHxHEIGHT of the window")
    s.set_defaults(func=screenshot_command)


def launch_gui(argv: list[str], trust: bool = False) -> int:
    from visualizer.ui.app import main as gui_main

    return gui_main(argv, trust=trust)


def screenshot_command(args: argparse.Namespace) -> int:
    from visualizer.cli.common import UserError

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not 0.0 < args.density <= 1.0:
        raise UserError(f"--density must be in (0, 1], got {args.density}")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError as exc:
        raise UserError(f"--size must look like 1200x800, got {args.size!r}") from exc
    if args.model and not args.trust:
        from visualizer.core.io.session import TrustRequired
        from visualizer.core.models.trust import model_trust_reason

        reason = model_trust_reason(args.model)
        if reason is not None:  # the window would run the file's code: ask as every command does
            raise TrustRequired(args.model, reason)
    from visualizer.ui.files.screenshot import render_screenshot

    path = render_screenshot(args, (width, height))
    print(path)
    return 0


def render_curves_png(rows: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Accuracy-vs-density curves of result ``rows`` into a PNG, offscreen (``lth-report``)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from visualizer.ui.views.plots import render_curves_png as render

    return render(rows, path, title=title)
