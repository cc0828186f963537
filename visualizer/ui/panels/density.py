"""The density scale shared by the panels: a log slider from 100% to 0.1% and its colours."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QSlider,
)

# --- density <-> slider (log scale, 100% .. 0.1%) ---------------------------------------------
SLIDER_STEPS = 1000
MIN_DENSITY = 1e-3
DECADES = -math.log10(MIN_DENSITY)  # 3


def slider_to_density(value: int) -> float:
    """Slider position 0..SLIDER_STEPS -> density 1 .. 1e-3, logarithmically."""
    return 10.0 ** (-DECADES * value / SLIDER_STEPS)


def density_to_slider(density: float) -> int:
    density = min(max(density, MIN_DENSITY), 1.0)
    return int(round(-math.log10(density) / DECADES * SLIDER_STEPS))


def density_colour(density: float) -> QColor:
    """Red (nearly all pruned) -> amber -> green (dense), for the layer list."""
    d = min(max(density, 0.0), 1.0)
    t = math.log10(max(d, MIN_DENSITY)) / DECADES + 1.0  # 0 at 0.1%, 1 at 100%
    hue = 120.0 * t  # 0 red .. 120 green
    return QColor.fromHsvF(hue / 360.0, 0.45, 1.0)


class DensitySlider(QSlider):
    """Horizontal log-density slider, left = 100%, right = 0.1%.

    Keys follow the density, not Qt's defaults: Right/Down step to a lower density, Left/Up to
    a higher one, PageDown/PageUp halve/double it, Home = 100%, End = 0.1%.
    """

    KEYS = {
        Qt.Key.Key_Right: QSlider.SliderAction.SliderSingleStepAdd,
        Qt.Key.Key_Down: QSlider.SliderAction.SliderSingleStepAdd,
        Qt.Key.Key_Left: QSlider.SliderAction.SliderSingleStepSub,
        Qt.Key.Key_Up: QSlider.SliderAction.SliderSingleStepSub,
        Qt.Key.Key_PageDown: QSlider.SliderAction.SliderPageStepAdd,
        Qt.Key.Key_PageUp: QSlider.SliderAction.SliderPageStepSub,
        Qt.Key.Key_Home: QSlider.SliderAction.SliderToMinimum,
        Qt.Key.Key_End: QSlider.SliderAction.SliderToMaximum,
    }

    def event(self, event) -> bool:
        # With the slider focused its own keys win over window shortcuts bound to the same keys
        # (teaching mode binds PgUp/PgDown to one density step for presentation clickers).
        if (event.type() == QEvent.Type.ShortcutOverride and event.modifiers() == Qt.KeyboardModifier.NoModifier
                and Qt.Key(event.key()) in self.KEYS):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        action = self.KEYS.get(Qt.Key(event.key()))
        if action is None:
            super().keyPressEvent(event)
            return
        self.triggerAction(action)
        event.accept()
