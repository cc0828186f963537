"""The desktop app (PySide6 + pyqtgraph). Draws and drives jobs; all compute is in visualizer.core."""
