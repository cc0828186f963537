"""Export views (PNG, SVG), tables (CSV) and masks (safetensors, torch.nn.utils.prune)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QGraphicsView


def export_view(window, view_id: str, path: str, size: tuple[int, int] | None = None) -> Path:
    """PNG: the whole view widget as drawn; SVG: the view's plot (vector) via pyqtgraph."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    widget = window.views[view_id]
    if out.suffix.lower() == ".svg":
        # Qt's own SVG painter: pyqtgraph 0.14's SVGExporter cannot parse Qt 6.12's path data.
        _svg_of_widget(_svg_widget(widget), out)
        return out
    if size is not None and widget.isWindow():
        widget.resize(*size)
    pixmap = widget.grab()
    if pixmap.isNull() or not pixmap.save(str(out)):
        raise OSError(f"could not write {out}")
    return out


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
    if fmt == "safetensors":
        masks = s.masks.copy()
        masks.metadata.update(criterion=s.criterion, scope=s.scope, structure=s.structure,
                              density=f"{s.masks.density():.6g}", model=s.loaded.ref)
        masks.save(path)
        return Path(path)
    from visualizer.core.io.session import write_prune_state_dict

    return write_prune_state_dict(s.masks, s.loaded.model, path)
