"""Masks in and out in the formats PyTorch users have, recognised by content, never by suffix.

Readers (:func:`read_mask`) accept
- pruneviz safetensors: one uint8 (or bool) tensor per parameter name, ``format`` metadata;
- torch.nn.utils.prune state dicts and whole checkpoints: ``<param>_orig`` + ``<param>_mask``
  pairs, possibly under ``state_dict`` / ``model_state_dict`` / ``model`` (read with
  ``torch.load(weights_only=True)``; also inside a safetensors file);
- NNI-style dicts ``{module_name: {"weight": mask}}`` (the layout of NNI's pruners, Microsoft
  NNI 2.x/3.x);
- plain dicts of bool or 0/1 tensors keyed by parameter name (``{"fc1.weight": mask}``).

Writers (:func:`write_mask`): ``.safetensors`` in pruneviz's format; ``.pt`` / ``.pth`` as the
state dict torch.nn.utils.prune holds (load it into a model prepared with
``prune.identity(module, "weight")`` on the same parameters); ``fmt="nni"`` as an NNI dict of
float 0/1 masks.

Every malformed input becomes a one-line :class:`~visualizer.core.pruning.masks.MaskError` (or
:class:`~visualizer.core.io.checks.FileFormatError` for files that are not what they claim):
readers never let a raw library exception escape.

:func:`detect_kind` tells masks, weights, sessions, models and prune checkpoints apart by
content, for the window's recent files and drag and drop.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from visualizer.core.errors import first_line
from visualizer.core.io.atomic import atomic_write
from visualizer.core.io.checks import FileFormatError, check_safetensors
from visualizer.core.io.torchfile import UnpicklingRefused, is_torchscript, safe_load, sniff
from visualizer.core.pruning.masks import MaskError, MaskSet

__all__ = [
    "read_mask", "write_mask", "detect_kind", "split_prune_checkpoint", "mask_from_object",
    "prune_state_dict", "FORMATS", "Kind",
]

Kind = Literal["mask", "weights", "session", "model", "prune-checkpoint"]
FORMATS = ("pruneviz", "torch-prune", "nni")
_WRAPPERS = ("state_dict", "model_state_dict", "model")
_SAFETENSORS_MASK_DTYPES = {"BOOL", "U8"}


# --- raw reading --------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    header = check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(header.get("__metadata__") or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path.name}: damaged safetensors file ({first_line(exc, limit=200)})") from exc


def _torch_load(path: Path) -> Any:
    """:func:`~visualizer.core.io.torchfile.safe_load`; a file needing more is refused (never
    unpickled here)."""
    try:
        return safe_load(path)
    except UnpicklingRefused as exc:
        raise FileFormatError(
            f"{path.name}: needs full unpickling (it holds Python objects, not only tensors); "
            "a mask file never does, so it is not read") from exc


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if key in obj and isinstance(obj[key], Mapping):
                return obj[key]
    return obj


def _is_binary(t: torch.Tensor) -> bool:
    if t.dtype == torch.bool:
        return True
    if t.is_complex() or t.numel() == 0:
        return t.numel() == 0
    return bool(((t == 0) | (t == 1)).all())


def _has_prune_pairs(obj: Mapping) -> bool:
    return any(isinstance(k, str) and k.endswith("_mask") and k[:-5] + "_orig" in obj for k in obj)


# --- classification ------------------------------------------------------------------------------
def mask_from_object(obj: Any, source: str, metadata: Mapping[str, str] | None = None) -> MaskSet:
    """A MaskSet from any supported in-memory layout, or a one-line MaskError saying why not."""
    obj = _unwrap(obj)
    if not isinstance(obj, Mapping) or not obj:
        raise MaskError(f"{source}: holds no masks (expected a dict of 0/1 tensors)")
    if not all(isinstance(k, str) for k in obj):
        raise MaskError(f"{source}: mask names must be strings")
    if _has_prune_pairs(obj):
        masks, _ = split_prune_checkpoint(obj, source)
        return masks
    if all(isinstance(v, Mapping) for v in obj.values()):  # NNI: {module: {"weight": mask}}
        flat: dict[str, torch.Tensor] = {}
        for module, inner in obj.items():
            for pname, m in inner.items():
                if not isinstance(pname, str) or not isinstance(m, torch.Tensor):
                    raise MaskError(f"{source}: {module}.{pname} is not a tensor")
                flat[f"{module}.{pname}" if module else pname] = m
        return _binary_masks(flat, source, metadata)
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _binary_masks(dict(obj), source, metadata)
    raise MaskError(f"{source}: not a mask layout (values must be tensors or {{param: tensor}} dicts)")


def _binary_masks(tensors: Mapping[str, torch.Tensor], source: str, metadata) -> MaskSet:
    for name, t in tensors.items():
        if not _is_binary(t):
            raise MaskError(f"{source}: {name} holds values other than 0 and 1: weights, not a mask")
    return MaskSet({n: t.detach().bool().cpu() for n, t in tensors.items()}, dict(metadata or {}))


def split_prune_checkpoint(state: Mapping, source: str) -> tuple[MaskSet, dict[str, torch.Tensor]]:
    """``(masks, plain state dict)`` of a torch.nn.utils.prune state dict (``X = X_orig``)."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        return MaskSet.from_prune_state_dict(tensors)
    except MaskError as exc:
        raise MaskError(f"{source}: {exc}") from exc


def _strip_prefix(masks: MaskSet, model: nn.Module) -> MaskSet:
    """Masks saved from a wrapped model (``module.`` of DataParallel/DDP, ``_orig_mod.`` of
    torch.compile) fit the bare model after dropping the common prefix."""
    params = dict(model.named_parameters())
    if not masks.masks or all(n in params for n in masks.masks):
        return masks
    for prefix in ("module.", "_orig_mod."):
        if all(n.startswith(prefix) for n in masks.masks):
            stripped = {n[len(prefix):]: m for n, m in masks.masks.items()}
            if all(n in params for n in stripped):
                return MaskSet(stripped, dict(masks.metadata))
    return masks


# --- public reader ---------------------------------------------------------------------------------
def read_mask(path: str | Path, model: nn.Module | None = None) -> MaskSet:
    """Read a mask in any supported format (by content); with ``model``, check it fits
    (one line naming the layer and both shapes when it does not)."""
    path = Path(path)
    if not path.exists():
        raise MaskError(f"mask file not found: {path}")
    if path.is_dir():
        raise MaskError(f"{path}: is a folder, not a mask file")
    kind = sniff(path)
    try:
        if kind == "safetensors":
            tensors, meta = _read_safetensors(path)
            masks = mask_from_object(tensors, path.name, meta)
        elif kind in ("zip", "pickle"):
            if kind == "zip" and _is_session(path):
                raise MaskError(f"{path.name}: is a pruneviz session, not a mask (open it as a session)")
            masks = mask_from_object(_torch_load(path), path.name)
        else:
            raise MaskError(f"{path.name}: not a mask file (neither safetensors nor a torch checkpoint)")
    except FileFormatError as exc:
        raise MaskError(str(exc)) from exc
    if model is not None:
        masks = _strip_prefix(masks, model)
        masks.check(model)
    return masks


def _is_session(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "session.json" in z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


# --- writers -------------------------------------------------------------------------------------
def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The writer for ``path``: ``fmt`` if given, else by suffix (.safetensors, .pt/.pth)."""
    suffix = Path(path).suffix.lower()
    if fmt is not None:
        if fmt not in FORMATS:
            raise MaskError(f"unknown mask format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        # a file's name must not lie about its bytes (safetensors under .pt, a pickle under .safetensors)
        if (fmt == "pruneviz") != (suffix == ".safetensors") and (fmt == "pruneviz" or suffix == ".safetensors"):
            want = ".safetensors" if fmt == "pruneviz" else ".pt or .pth"
            raise MaskError(f"{Path(path).name}: a {fmt} mask file is named {want}")
        return fmt
    if suffix == ".safetensors":
        return "pruneviz"
    if suffix in (".pt", ".pth"):
        return "torch-prune"
    raise MaskError(f"{Path(path).name}: mask files end in .safetensors, .pt or .pth (or pass a format)")


def prune_state_dict(masks: MaskSet, model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as torch.nn.utils.prune holds it (``X_orig``, ``X_mask``)."""
    masks.check(model)
    return masks.to_prune_state_dict(model)


def write_mask(masks: MaskSet, path: str | Path, model: nn.Module | None = None, fmt: str | None = None) -> Path:
    """Write ``masks`` atomically: pruneviz safetensors, a torch.nn.utils.prune state dict
    (needs ``model``: it carries the weights as ``X_orig``) or an NNI mask dict."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if fmt == "pruneviz":
        tensors = {n: m.to("cpu", torch.uint8).contiguous() for n, m in masks.masks.items()}
        meta = {str(k): str(v) for k, v in masks.metadata.items()}
        meta.setdefault("format", "pruneviz-mask/1")
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    elif fmt == "torch-prune":
        if model is None:
            raise MaskError("a torch.nn.utils.prune file carries the weights too: it needs the model")
        state = prune_state_dict(masks, model)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    else:
        nni: dict[str, dict[str, torch.Tensor]] = {}
        for name, m in masks.masks.items():
            module, _, pname = name.rpartition(".")
            nni.setdefault(module, {})[pname] = m.to(torch.float32)
        atomic_write(path, lambda tmp: torch.save(nni, tmp))
    return path


# --- what is this file? ----------------------------------------------------------------------------
def detect_kind(path: str | Path) -> Kind:
    """'mask', 'weights', 'session', 'model' or 'prune-checkpoint' by content; FileFormatError
    for a file that is none of them (or unreadable). Never runs code from the file."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"file not found: {path}")
    if path.suffix == ".py" or ".py:" in str(path):
        return "model"
    kind = sniff(path)
    if kind == "safetensors":
        header = check_safetensors(path)
        meta = header.get("__metadata__") or {}
        if str(meta.get("format", "")).startswith("pruneviz-mask"):
            return "mask"
        names = [k for k in header if k != "__metadata__"]
        if any(n.endswith("_mask") and n[:-5] + "_orig" in header for n in names):
            return "prune-checkpoint"
        if names and all(header[n]["dtype"] in _SAFETENSORS_MASK_DTYPES for n in names):
            return "mask"
        return "weights"
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise FileFormatError(f"{path.name}: damaged zip archive ({first_line(exc, limit=200)})") from exc
        if "session.json" in names:
            return "session"
        if is_torchscript(names):
            return "model"  # TorchScript or torch.export archive
    if kind in ("zip", "pickle"):
        try:
            obj = _torch_load(path)
        except FileFormatError as exc:
            if "full unpickling" in str(exc):
                return "model"  # a pickled nn.Module (loading it needs trust)
            raise
        return _kind_of_object(obj)
    raise FileFormatError(f"{path.name}: not a model, weights, mask or session file")


def _kind_of_object(obj: Any) -> Kind:
    inner = _unwrap(obj)
    if not isinstance(inner, Mapping) or not inner:
        return "weights"
    if _has_prune_pairs(inner):
        return "prune-checkpoint"
    try:
        mask_from_object(inner, "checkpoint")
        return "mask"
    except MaskError:
        return "weights"
