"""Export views (PNG, SVG), tables (CSV) and masks (safetensors, torch.nn.utils.prune)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QPainter


def export_view(window, view_id: str, path: str, size: tuple[int, int] | None = None) -> Path:
    """PNG: the whole view widget as drawn; SVG: the view's plot (vector) via pyqtgraph."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    widget = window.views[view_id]
    if out.suffix.lower() == ".svg":
        item = _export_item(widget)
        if item is not None:
            from pyqtgraph.exporters import SVGExporter

            SVGExporter(item).export(str(out))
        else:
            _svg_of_widget(widget, out)
        return out
    if size is not None and widget.isWindow():
        widget.resize(*size)
    pixmap = widget.grab()
    if pixmap.isNull() or not pixmap.save(str(out)):
        raise OSError(f"could not write {out}")
    return out


def _export_item(widget):
    """The pyqtgraph item to export: the view's ``export_item()`` or a known attribute."""
    fn = getattr(widget, "export_item", None)
    if callable(fn):
        return fn()
    canvas = getattr(widget, "canvas", None)
    if canvas is not None and hasattr(canvas, "ci"):
        return canvas.ci  # heatmap: plot and colour bar together
    plot = getattr(widget, "plot", None)
    return plot


def _svg_of_widget(widget, out: Path) -> None:
    from PySide6.QtSvg import QSvgGenerator

    gen = QSvgGenerator()
    gen.setFileName(str(out))
    gen.setSize(QSize(widget.width(), widget.height()))
    gen.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    painter = QPainter(gen)
    widget.render(painter)
    painter.end()


def export_results(window, path: str) -> Path:
    from visualizer.core.session import write_results_csv

    return write_results_csv(window.state.results, path)


def export_compare(window, path: str) -> Path:
    from visualizer.core.session import write_results_csv

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
    from visualizer.core.session import write_prune_state_dict

    return write_prune_state_dict(s.masks, s.loaded.model, path)
