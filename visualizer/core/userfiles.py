"""A user's Python file, imported: the ``file.py:func`` references of models and datasets.

The file is executed as a module of its own (``pruneviz_user_<stem>``); that runs the person's
code, so callers ask for trust where the reference came from a file rather than from the person.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from visualizer.core.errors import first_line


def import_callable(spec: str, error: type[Exception], what: str = "model"):
    """The function ``func`` of ``file.py:func``, the file imported as a module; any failure is
    ``error`` with one line."""
    file, _, func = spec.rpartition(":")
    path = Path(file).expanduser()
    if not path.exists():
        raise error(f"{what} file not found: {path}")
    module_name = f"pruneviz_user_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    if spec_ is None or spec_.loader is None:
        raise error(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec_)
    try:
        spec_.loader.exec_module(module)
    except Exception as exc:  # user code: any error becomes a message
        raise error(f"{path.name}: error while importing: {first_line(exc)}") from exc
    function = getattr(module, func, None)
    if function is None or not callable(function):
        raise error(f"{path.name} has no {func!r}")
    return function
