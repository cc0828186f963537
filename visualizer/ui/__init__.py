"""PySide6 + pyqtgraph user interface (draws results of visualizer.core; no numerics)."""
