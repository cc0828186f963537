"""Optional dependencies, imported on demand with one readable error when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from visualizer.core.errors import first_line

ZOO_HINT = "pip install 'pruneviz[zoo]'"


def import_torchvision(module: str, purpose: str, error: type[Exception]) -> ModuleType:
    """``torchvision.<module>``, or ``error`` with one line: what needs it and what to do.

    An installed torchvision can fail with more than ImportError: a build made for another torch
    (the registry's CUDA wheel beside a CPU torch) raises RuntimeError("operator torchvision::nms
    does not exist") while registering its operators."""
    try:
        return importlib.import_module(f"torchvision.{module}" if module else "torchvision")
    except ImportError as exc:
        raise error(f"{purpose} needs torchvision: {ZOO_HINT}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure inside torchvision's own import
        import torch

        raise error(
            f"{purpose} needs torchvision, which is installed but does not import with torch "
            f"{torch.__version__} ({first_line(exc, with_type=True, limit=200)}); install the "
            "torchvision release built for this torch"
        ) from exc
