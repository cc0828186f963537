"""Export views (PNG, SVG), tables (CSV) and masks (safetensors, torch.nn.utils.prune, NNI).

Every file is written atomically (:func:`visualizer.core.io.atomic.atomic_write`): Qt's writers get a
temporary name that ends in the real suffix, so they still pick the format from it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QGraphicsView

from visualizer.core.io.atomic import atomic_write


def export_view(window, view_id: str, path: str, size: tuple[int, int] | None = None) -> Path:
    """PNG: the whole view widget as drawn; SVG: the view's plot (vector) via pyqtgraph."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    widget = window.views[view_id]
    if out.suffix.lower() == ".svg":
        # Qt's own SVG painter: pyqtgraph 0.14's SVGExporter cannot parse Qt 6.12's path data.
        target = _svg_widget(widget)
        atomic_write(out, lambda tmp: _svg_of_widget(target, Path(tmp)))
        return out
    if size is not None and widget.isWindow():
        widget.resize(*size)
    return save_pixmap(widget.grab(), out)


def save_pixmap(pixmap, path) -> Path:
    """Save a QPixmap/QImage atomically (format from the suffix); OSError when Qt cannot."""
    out = Path(path)
    if pixmap.isNull():
        raise OSError(f"could not write {out}: nothing was drawn")

    def write(tmp: str) -> None:
        if not pixmap.save(tmp):
            raise OSError(f"could not write {out}")

    return atomic_write(out, write)


def _svg_widget(widget):
    """The part of a view to draw as SVG: its ``export_widget()``, else the whole view."""
    fn = getattr(widget, "export_widget", None)
    return fn() if callable(fn) else widget


def _svg_of_widget(widget, out: Path) -> None:
    from PySide6.QtSvg import QSvgGenerator

    gen = QSvgGenerator()
    gen.setFileName(str(out))
    gen.setSize(QSize(widget.width(), widget.height()))
    gen.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    painter = QPainter(gen)
    try:
        # the (painter, offset) overload: with the painter alone PySide6 may pick render(QPaintDevice)
        if isinstance(widget, QGraphicsView):
            widget.render(painter)
        else:
            widget.render(painter, QPoint(0, 0))
    finally:
        painter.end()


def export_results(window, path: str) -> Path:
    from visualizer.core.io.session import write_results_csv

    return write_results_csv(window.state.results, path)


def export_compare(window, path: str) -> Path:
    from visualizer.core.io.session import write_results_csv

    s = window.state
    if s.snapshot is None or s.masks is None:
        raise ValueError("no snapshot mask A to compare with: use 'Snapshot mask as A' first")
    return write_results_csv(s.masks.compare(s.snapshot), path)


def export_mask(window, path: str, fmt: str) -> Path:
    s = window.state
    if s.masks is None or s.loaded is None:
        raise ValueError("no mask: load a model first")
    from visualizer.core.io.mask_formats import write_mask

    masks = s.masks.copy()
    masks.metadata.update(criterion=s.criterion, scope=s.scope, structure=s.structure,
                          density=f"{s.masks.density():.6g}", model=s.loaded.ref)
    formats = {"safetensors": "pruneviz", "prune": "torch-prune"}
    return write_mask(masks, path, s.loaded.model, formats.get(fmt, fmt))
