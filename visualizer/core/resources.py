"""Where the bundled files live: ``resources/`` (data, icons) and ``sample_models/`` (weights).

In a checkout they sit at the repository root, beside ``visualizer/``; an installed wheel maps
them into the package (``visualizer/resources``, ``visualizer/sample_models``; see
pyproject.toml). One function finds either, so every caller agrees.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def bundled_dir(name: str) -> Path:
    """The folder ``name`` ("resources" or "sample_models"): the installed package's copy when
    there is one, else the checkout's."""
    installed = Path(str(resources.files("visualizer"))) / name
    if installed.is_dir():
        return installed
    return _CHECKOUT / name


def sample_models_dir() -> Path:
    return bundled_dir("sample_models")


def resource_path(*parts: str) -> Path:
    """A file under ``resources/``, e.g. ``resource_path("data", "digits.npz")``."""
    return bundled_dir("resources").joinpath(*parts)
