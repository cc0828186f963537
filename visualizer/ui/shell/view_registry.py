"""The window's views by id, built lazily: a tab nobody opened costs nothing."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


class ViewRegistry(dict):
    """View id -> widget. Views registered with :meth:`defer` are built when first needed: when
    their dock comes to the front, or when code asks for them (``views[id]``, ``views.get``,
    ``values()``/``items()``). Iterating or ``in`` tests see every id without building.

    Built eagerly, the analysis panels behind tabs (a dozen pyqtgraph plots with their axes and
    menus) and their jobs (the graph trace on every load) would cost start-up time for views
    nobody looked at (docs/performance.md)."""

    def __init__(self, build) -> None:
        super().__init__()
        self._build = build  # (view id) -> widget, installs it in its dock
        self.pending: set[str] = set()

    def defer(self, vid: str, placeholder: QWidget) -> None:
        super().__setitem__(vid, placeholder)
        self.pending.add(vid)

    def materialize(self, vid: str) -> QWidget:
        if vid in self.pending:
            self.pending.discard(vid)
            super().__setitem__(vid, self._build(vid))
        return super().__getitem__(vid)

    def __getitem__(self, vid: str) -> QWidget:
        return self.materialize(vid)

    def get(self, vid: str, default=None):
        return self.materialize(vid) if vid in self else default

    def values(self):
        return [self.materialize(v) for v in list(self)]

    def items(self):
        return [(v, self.materialize(v)) for v in list(self)]
