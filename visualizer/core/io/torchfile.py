"""Torch files, read safely: what a file is by its first bytes, and one checkpoint loader.

- :func:`sniff`: ``safetensors``, ``zip`` (torch's zip checkpoints, TorchScript, sessions),
  ``pickle`` (torch's legacy format) or ``unknown``, from the first 16 bytes;
- :func:`is_torchscript` tells a TorchScript or ``torch.export`` archive from a checkpoint by its
  member names;
- :func:`safe_load` is ``torch.load(map_location="cpu", weights_only=True)``: tensors, dicts,
  lists and numbers only. A file that needs full unpickling (which can call any Python function)
  is :class:`UnpicklingRefused`, unless the person said ``trust``; any other failure of a damaged
  file is a :class:`FileFormatError` in one line;
- :func:`needs_unpickling`: whether :func:`safe_load` would refuse the file (the trust question).

Every reader of torch files (model weights, masks, sessions, shrunk models, torchvision's cached
weights) goes through these, so the rule "weights_only unless trusted" has one home.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from visualizer.core.errors import first_line
from visualizer.core.io.checks import FileFormatError

__all__ = ["UnpicklingRefused", "is_torchscript", "needs_unpickling", "safe_load", "sniff"]

ZIP_MAGIC = b"PK\x03\x04"


class UnpicklingRefused(FileFormatError):
    """A torch file that ``weights_only=True`` refuses: it holds Python objects, not only tensors."""


def sniff(path: str | Path) -> str:
    """``safetensors``, ``zip``, ``pickle`` or ``unknown`` from the first bytes of ``path``
    (safetensors: an 8-byte header length, then the JSON header's ``{``)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise FileFormatError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    if head[:4] == ZIP_MAGIC:
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def is_torchscript(names: list[str]) -> bool:
    """Whether zip member ``names`` are a TorchScript or ``torch.export`` archive (code and
    constants, loaded by torch.jit without unpickling Python objects) rather than a checkpoint."""
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names) or any(
        n.endswith("archive_format") or "/models/" in n for n in names)


def safe_load(path: str | Path, trust: bool = False) -> Any:
    """``torch.load`` of ``path`` onto the CPU with ``weights_only=True`` (full unpickling only
    with ``trust``). Raises :class:`UnpicklingRefused` or :class:`FileFormatError`, one line each."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise UnpicklingRefused(f"{path.name}: needs full unpickling, which can run arbitrary code") from exc
        raise FileFormatError(f"{path.name}: corrupt checkpoint ({first_line(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged file raises anything from zipfile,
        # pickle, torch or (torch >= 2.10 hands ".safetensors" names over) safetensors
        raise FileFormatError(f"{path.name}: not a readable torch checkpoint ({first_line(exc)})") from exc


def needs_unpickling(path: str | Path) -> bool:
    """True when ``path`` is a torch pickle that :func:`safe_load` refuses (probed with
    ``weights_only=True``: nothing in it runs). Damaged files are the loader's to report."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        kind = sniff(path)
    except FileFormatError:
        return False
    if kind not in ("zip", "pickle"):
        return False  # safetensors or not a pickle: read without unpickling
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                if is_torchscript(z.namelist()):
                    return False
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return False
    try:
        safe_load(path)
    except UnpicklingRefused:
        return True
    except FileFormatError:
        return False
    return False
