"""Inception branch view: branch norms per module as bars, removed branches greyed.

A group penalty (Yuan & Lin 2006) on each parallel branch of an Inception module makes an all-or-nothing
decision per branch; branches whose group norm reaches zero are removed. One bar chart per
module; removed branches are drawn in the muted colour with their norm printed above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from visualizer.ui.views.base import AnalysisView, set_title


@dataclass
class BranchModule:
    """One Inception module: its branches with their group norms and whether each is removed."""

    name: str
    branches: Sequence[str]
    norms: Sequence[float]
    removed: Sequence[bool] = ()

    def __post_init__(self) -> None:
        if len(self.norms) != len(self.branches):
            raise ValueError(f"{self.name}: {len(self.branches)} branches but {len(self.norms)} norms")
        if self.removed and len(self.removed) != len(self.branches):
            raise ValueError(f"{self.name}: removed flags do not match the branches")


MAX_PER_ROW = 4  # GoogLeNet's nine modules in one row clip all but three and a half


def grid_shape(n: int, max_per_row: int = MAX_PER_ROW) -> tuple[int, int]:
    """(rows, columns) for ``n`` charts: as few rows as ``max_per_row`` allows, and the charts
    spread evenly over them (9 -> 3 x 3, not 4 + 4 + 1)."""
    if n <= 0:
        return 0, 0
    rows = -(-n // max_per_row)
    return rows, -(-n // rows)


class BranchView(AnalysisView):
    title = "Inception branches"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = self.add_layout_widget()
        self.modules: list[BranchModule] = []
        self.ready()

    def set_modules(self, modules: Sequence[BranchModule]) -> None:
        """One bar chart per module, left to right, in rows of at most ``MAX_PER_ROW``."""
        self.modules = list(modules)
        self.redraw()

    def redraw(self) -> None:
        theme = self.theme
        self.canvas.clear()
        self._plots = []
        _rows, cols = grid_shape(len(self.modules))
        for i_module, module in enumerate(self.modules):
            row, col = divmod(i_module, cols)
            plot = self.add_plot(self.canvas, row, col)
            plot.getAxis("left").enableAutoSIPrefix(False)
            if col == 0:
                plot.setLabel("left", "branch group norm")
            removed = list(module.removed) or [False] * len(module.branches)
            norms = np.nan_to_num(np.asarray(module.norms, dtype=float))
            brushes = [
                pg.mkBrush(theme.muted) if r else pg.mkBrush(theme.color(i))
                for i, r in enumerate(removed)
            ]
            plot.addItem(pg.BarGraphItem(
                x=np.arange(len(norms)), height=norms, width=0.65, brushes=brushes,
                pen=pg.mkPen(theme.foreground, width=max(1.0, theme.line_width / 2)),
            ))
            for i, (h, r) in enumerate(zip(norms, removed)):
                text = f"{h:.3g}" + ("\nremoved" if r else "")
                color = theme.muted if r else theme.foreground
                label = pg.TextItem(text, color=color, anchor=(0.5, 1.0))
                label.setPos(i, h)
                plot.addItem(label)
            plot.getAxis("bottom").setTicks([[(i, b) for i, b in enumerate(module.branches)]])
            plot.setXRange(-0.6, len(norms) - 0.4, padding=0)
            plot.setYRange(0, (norms.max() if norms.size else 1.0) * 1.35 or 1.0, padding=0)
            kept = len(removed) - sum(bool(r) for r in removed)
            set_title(plot, f"{module.name}: {kept}/{len(removed)} branches kept", theme)
        for plot in self._plots:
            from visualizer.ui.views.base import style_plot

            style_plot(plot, theme)
