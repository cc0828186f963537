"""Presets as slides: ``pruneviz preset --list``, ``pruneviz preset NAME --out fig.png`` and
``pruneviz deck --out DIR`` (every preset's image plus an index.html) and ``--pdf FILE`` (a
handout, one page per slide).

These commands draw, so they import the Qt side (offscreen, as ``pruneviz screenshot`` does).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from visualizer.cli.common import UserError, add_json_arg, print_json, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preset",
        help="list the presets, or render one offscreen to a PNG/SVG",
        description="Each preset is a figure with a caption: a computation on a bundled model or "
                    "a theory lab, and the view that shows it.",
    )
    p.add_argument("name", nargs="?", help="preset id (see --list)")
    p.add_argument("--list", action="store_true", help="list the presets: id, title, caption")
    p.add_argument("--out", help="image to write (.png, or .svg)")
    p.add_argument("--size", default="1200x800", help="WIDTHxHEIGHT of the figure")
    add_json_arg(p)
    p.set_defaults(func=preset_command)

    d = sub.add_parser(
        "deck",
        help="render every preset to DIR/<id>.png and write DIR/index.html",
        description="The presets as a slide deck: one image per preset and an index.html with "
                    "each title, caption and image.",
    )
    d.add_argument("--out", help="folder for the images and index.html (created if missing; "
                                 "with --pdf alone, a temporary folder)")
    d.add_argument("--pdf", help="also write a handout: one PDF page per slide with its caption")
    d.add_argument("--only", default=None, help="comma-separated preset ids (default: all)")
    d.add_argument("--size", default="1200x800", help="WIDTHxHEIGHT of each figure")
    d.set_defaults(func=deck_command)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise UserError(f"--size must look like 1200x800, got {text!r}") from exc
    if width < 100 or height < 100:
        raise UserError(f"--size must be at least 100x100, got {text!r}")
    return width, height


def _progress():
    from visualizer.core.tasks import TerminalProgress

    return TerminalProgress()


def preset_rows() -> list[dict]:
    from visualizer.core.lecture.presets import PRESETS

    rows = []
    for p in PRESETS.values():
        rows.append({"name": p.id, "title": p.title, "caption": p.caption, "source": p.source})
    return rows


def preset_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.list:
        rows = preset_rows()
        if args.json:
            print_json(rows)
        else:
            print(table([[r["name"], r["title"], r["caption"].splitlines()[0][:70] + "…"] for r in rows],
                        ["name", "title", "caption"]))
        return 0
    if not args.name:
        raise UserError("give a preset name (see `pruneviz preset --list`), or --list")
    if not args.out:
        raise UserError("--out FILE is required to render a preset")
    size = _size(args.size)
    from visualizer.ui.lecture.deck import render_preset

    progress = _progress()
    try:
        path, caption = render_preset(args.name, args.out, size, progress)
    finally:
        progress.close()
    if args.json:
        print_json({"name": args.name, "out": path, "caption": caption})
    else:
        print(path)
    return 0


def deck_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    size = _size(args.size)
    ids = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    if ids is not None and not ids:
        raise UserError("--only needs at least one preset id")
    from visualizer.ui.lecture.deck import write_deck

    def report(slide) -> None:
        state = f"{slide.seconds:.1f} s" if not slide.error else f"FAILED: {slide.error}"
        print(f"{slide.id}: {state}", file=sys.stderr)

    if args.out is None and args.pdf is None:
        raise UserError("deck needs --out DIR, --pdf FILE or both")
    with tempfile.TemporaryDirectory(prefix="pruneviz-deck-") as scratch:
        folder = args.out or scratch
        slides = write_deck(folder, ids, size, on_slide=report)
        if args.pdf:
            from visualizer.ui.lecture.deck import write_pdf

            print(write_pdf(slides, folder, args.pdf))
    if args.out:
        print(os.path.join(args.out, "index.html"))
    failed = [s for s in slides if s.error]
    if failed:
        raise UserError(f"{len(failed)} of {len(slides)} presets failed ({failed[0].id}: {failed[0].error}); "
                        "the others are in the deck")
    return 0
