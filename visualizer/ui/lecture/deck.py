"""Presets as slides: render one preset offscreen to an image, or all of them into a deck
(one PNG per preset and an index.html with each title, caption and image, stepped with the arrow
keys), and a PDF handout with one page per slide.

The rendering path is the screenshot's (:mod:`visualizer.ui.files.screenshot`): the application made
by :func:`visualizer.ui.app.make_app`, the job run to the end in this thread, layouts settled,
then the widget grabbed (PNG) or painted by Qt's SVG generator (SVG).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from visualizer.core.io.atomic import atomic_write
from visualizer.ui.files.screenshot import RenderError


def _app():
    from visualizer.ui.app import configure_threads, make_app

    app = make_app()
    configure_threads()
    return app


def check_preset(preset_id: str) -> None:
    from visualizer.ui.lecture.presets import PRESETS

    if preset_id not in PRESETS:
        raise RenderError(f"unknown preset {preset_id!r}; choose one of: {', '.join(PRESETS)}")


def render_preset(preset_id: str, out: str | Path, size: tuple[int, int] = (1200, 800),
                  on_step: Callable | None = None, with_caption: bool = True) -> tuple[Path, str]:
    """Run a preset to the end, draw it at ``size`` and save it; returns (path, caption). A deck
    draws without the caption: its page (index.html, the PDF) prints it under the image."""
    from visualizer.ui.files import export
    from visualizer.ui.files.screenshot import _settle
    from visualizer.ui.lecture.presets import run_preset

    check_preset(preset_id)
    app = _app()
    view, _ = run_preset(preset_id, on_step=on_step)
    view.caption.setVisible(with_caption)
    try:
        view.resize(*size)
        view.show()
        _settle(app)
        out = Path(out)
        try:
            if out.suffix.lower() == ".svg":
                target = export._svg_widget(view)
                atomic_write(out, lambda tmp: export._svg_of_widget(target, Path(tmp)))
            else:
                export.save_pixmap(view.grab(), out)
        except OSError as exc:
            raise RenderError(str(exc)) from exc
        return out, view.caption.text()
    finally:
        view.close()
        view.deleteLater()
        app.processEvents()


@dataclass
class Slide:
    id: str
    title: str
    caption: str
    image: str  # file name inside the deck folder ("" when the preset failed)
    seconds: float
    error: str = ""


def write_deck(out_dir: str | Path, preset_ids: Sequence[str] | None = None, size: tuple[int, int] = (1200, 800),
               on_step: Callable | None = None, on_slide: Callable[[Slide], None] | None = None) -> list[Slide]:
    """Render each preset to ``out_dir/<id>.png`` and write ``out_dir/index.html``. A preset
    that fails is listed in the index with its one-line error; the others still render."""
    from visualizer.core.tasks import first_line
    from visualizer.ui.lecture.presets import PRESETS

    ids = list(PRESETS) if preset_ids is None else list(preset_ids)
    for pid in ids:
        check_preset(pid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slides = []
    for pid in ids:
        start = time.perf_counter()
        image, caption, error = f"{pid}.png", PRESETS[pid].caption, ""
        try:
            _, caption = render_preset(pid, out / image, size, on_step, with_caption=False)
        except Exception as exc:  # noqa: BLE001 - one failed slide must not lose the deck
            image, error = "", first_line(exc, with_type=True)
        slide = Slide(pid, PRESETS[pid].title, caption, image, time.perf_counter() - start, error)
        slides.append(slide)
        if on_slide is not None:
            on_slide(slide)
        atomic_write(out / "index.html", lambda tmp: Path(tmp).write_text(deck_html(slides), encoding="utf-8"))
    return slides


# Right/Space/PgDn and Left/PgUp/Backspace step from section to section, Home/End jump to the ends;
# the address follows (#id), so a reload or a shared link opens on the same slide.
_STEP_SCRIPT = """<script>
(function () {
  var slides = Array.prototype.slice.call(document.querySelectorAll("section"));
  function current() {
    var id = decodeURIComponent(location.hash.slice(1));
    var i = slides.findIndex(function (s) { return s.id === id; });
    return i < 0 ? -1 : i;
  }
  function go(i) {
    if (!slides.length) return;
    i = Math.max(0, Math.min(slides.length - 1, i));
    slides[i].scrollIntoView();
    history.replaceState(null, "", "#" + slides[i].id);
  }
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var step = {ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1,
                ArrowLeft: -1, ArrowUp: -1, PageUp: -1, Backspace: -1}[e.key];
    if (e.key === "Home") { go(0); } else if (e.key === "End") { go(slides.length - 1); }
    else if (step) { go(current() + step); } else { return; }
    e.preventDefault();
  });
})();
</script>"""


def deck_html(slides: Sequence[Slide], title: str = "Pruning Visualizer: presets") -> str:
    """A plain, self-contained page: one section per slide with its title, caption and image;
    the arrow keys step from slide to slide."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1240px;margin:auto;padding:1em}"
        "section{margin-bottom:3em}img{max-width:100%;border:1px solid #ccc}"
        ".caption{white-space:pre-line;color:#333}.error{color:#b00}</style>",
        "</head>", "<body>", f"<h1>{html.escape(title)}</h1>",
    ]
    for s in slides:
        parts.append(f'<section id="{html.escape(s.id)}">')
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
        if s.image:
            parts.append(f'<img src="{html.escape(s.image)}" alt="{html.escape(s.title)}">')
        else:
            parts.append(f'<p class="error">not rendered: {html.escape(s.error)}</p>')
        parts.append("</section>")
    parts += [_STEP_SCRIPT, "</body>", "</html>", ""]
    return "\n".join(parts)


def write_pdf(slides: Sequence[Slide], image_dir: str | Path, out: str | Path) -> Path:
    """A handout: one landscape A4 page per slide with its title, image and caption (Qt's
    QPdfWriter; a slide that failed gets its page with the error). Written atomically."""
    from PySide6.QtCore import QMarginsF, QRectF, Qt
    from PySide6.QtGui import QFont, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter

    _app()
    image_dir, out = Path(image_dir), Path(out)

    def draw(tmp: str) -> None:
        writer = QPdfWriter(tmp)
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Landscape,
                                         QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter))
        writer.setResolution(150)
        writer.setTitle("Pruning Visualizer: handout")
        painter = QPainter(writer)
        try:
            for i, slide in enumerate(slides):
                if i:
                    writer.newPage()
                page = QRectF(painter.viewport())
                title_font, text_font = QFont(), QFont()
                title_font.setPointSizeF(16)
                title_font.setBold(True)
                text_font.setPointSizeF(10)
                painter.setFont(title_font)
                title_box = painter.boundingRect(page, Qt.TextFlag.TextWordWrap, slide.title)
                painter.drawText(page, Qt.TextFlag.TextWordWrap, slide.title)
                painter.setFont(text_font)
                caption = slide.caption if not slide.error else f"not rendered: {slide.error}"
                caption_box = painter.boundingRect(page, Qt.TextFlag.TextWordWrap, caption)
                gap = page.height() * 0.02
                caption_rect = QRectF(page.left(), page.bottom() - caption_box.height(), page.width(),
                                      caption_box.height())
                painter.drawText(caption_rect, Qt.TextFlag.TextWordWrap, caption)
                room = QRectF(page.left(), title_box.bottom() + gap, page.width(),
                              caption_rect.top() - gap - title_box.bottom() - gap)
                image = QImage(str(image_dir / slide.image)) if slide.image else QImage()
                if not image.isNull() and room.height() > 0:
                    scale = min(room.width() / image.width(), room.height() / image.height())
                    w, h = image.width() * scale, image.height() * scale
                    painter.drawImage(QRectF(room.left() + (room.width() - w) / 2, room.top(), w, h), image)
        finally:
            painter.end()

    atomic_write(out, draw)
    return out
