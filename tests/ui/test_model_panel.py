"""The layer list's density column: one format for every row."""

from __future__ import annotations

import pytest

from visualizer.ui.panels.model_panel import density_text


@pytest.mark.parametrize("density, text", [
    (0.0, "0"),
    (1.0, "1.000"),
    (0.146, "0.146"),
    (0.0123, "0.012"),   # was "1.23e-02" below 0.01
    (0.001, "0.001"),
    (0.0004, "<0.001"),  # non-zero: never shown as a zero
    (1e-7, "<0.001"),
])
def test_density_text_one_format(density, text):
    assert density_text(density) == text
