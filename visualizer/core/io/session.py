"""The saved state of an exploration: a ``.pviz`` session file.

A session is a zip archive holding
- ``session.json``: ``{"format": "pruneviz-session", "schema": N, ...}`` with the model reference,
  the data choice, the pruning settings, result rows and view settings;
- ``masks.safetensors`` (the current mask), ``snapshot.safetensors`` (the comparison mask "A"),
  ``weights.safetensors`` (only when the model's weights were changed in the session, e.g. by
  fine-tuning), each a safetensors blob.

It is written to a temporary file and renamed (:func:`visualizer.core.io.atomic.atomic_write`), so a
crash never leaves half a session. Reading checks the schema: older schemas are upgraded by the
functions in :data:`MIGRATIONS`; a newer schema, or a file that is not a session, is refused with
a one-line :class:`SessionError`. Every member's declared size is checked before it is read, and
every safetensors blob's header before it is parsed (:mod:`visualizer.core.io.checks`).

Trust: the manifest records whether the model needed full unpickling when it was saved, but
opening a session never grants trust by itself.
:func:`visualizer.core.models.trust.trust_reason` says why loading the model a session names could
run code (a ``file.py:factory`` is imported and called; a checkpoint that
``torch.load(weights_only=True)`` refuses needs full unpickling); the caller must then ask the
person (``--trust`` on the command line, a question in the window) before loading with trust.

Also here, because the CLI and the GUI both export them: result rows as CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from visualizer.core.errors import first_line
from visualizer.core.io.atomic import atomic_write
from visualizer.core.io.checks import FileFormatError, check_safetensors, read_zip_member
from visualizer.core.io.mask_formats import mask_from_object
from visualizer.core.pruning.masks import MaskError, MaskSet

FORMAT = "pruneviz-session"
SCHEMA = 2
NORMALIZE_CHOICES = (None, "none", "imagenet")  # core.data.external.DataOptions.normalize
MANIFEST = "session.json"
MAX_MANIFEST_BYTES = 32 * 2**20


class SessionError(Exception):
    """A file that is not a readable session (one-line message for the user)."""


class TrustRequired(SessionError):
    """Loading the model a session (or a shrunk-model file) names could run code: ask first."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}; pass --trust (window: answer Yes) only if you trust it")
        self.source = source
        self.reason = reason


@dataclass
class Session:
    model_ref: str
    dataset: str | None = None
    weights_path: str | None = None  # the weights file the model was loaded with, if any
    trust: bool = False  # recorded when saved; never granted by the file (see trust_reason)
    criterion: str = "magnitude"
    scope: str = "global"
    structure: str = "unstructured"
    density: float = 1.0
    masks: MaskSet | None = None
    snapshot: MaskSet | None = None
    model_state: dict[str, torch.Tensor] | None = None  # weights changed in the session
    results: list[dict] = field(default_factory=list)
    baseline: float | None = None
    view: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  # the device the window's jobs ran on (core.workspace.resolve_device)
    pretrained: bool = True  # the model's pretrained weights (off: random initialisation)
    image_size: int | None = None  # DataOptions.image_size (None: auto)
    normalize: str | None = None  # DataOptions.normalize (None: auto)
    created: str = ""
    schema: int = SCHEMA


# --- JSON ---------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Plain JSON values: tensors/arrays to lists, numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# --- blobs --------------------------------------------------------------------------------------
def _mask_blob(masks: MaskSet) -> bytes:
    from safetensors.torch import save

    tensors = {n: m.to(torch.uint8).contiguous() for n, m in masks.masks.items()}
    meta = {str(k): str(v) for k, v in masks.metadata.items()}
    return save(tensors, metadata=meta or None)


def _read_mask_blob(data: bytes, name: str, source: str) -> MaskSet:
    state, header = _read_tensors(data, name, source)
    try:
        return mask_from_object(state, f"{source}: {name}", header.get("__metadata__") or {})
    except MaskError as exc:
        raise SessionError(str(exc)) from exc


def _read_tensors(data: bytes, name: str, source: str = "session") -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        header = check_safetensors(data, f"{source}: member {name}")
    except FileFormatError as exc:
        raise SessionError(str(exc)) from exc
    try:
        return load(data), header
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as exc:
        raise SessionError(f"{source}: session member {name} is damaged ({first_line(exc, limit=200)})") from exc


# --- save / load --------------------------------------------------------------------------------
def to_manifest(session: Session) -> dict:
    return {
        "format": FORMAT,
        "schema": SCHEMA,
        "created": session.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"ref": session.model_ref, "weights": session.weights_path, "trust": session.trust,
                  "pretrained": session.pretrained,
                  "state": "weights.safetensors" if session.model_state is not None else None},
        "data": {"name": session.dataset, "image_size": session.image_size, "normalize": session.normalize},
        "pruning": {"criterion": session.criterion, "scope": session.scope,
                    "structure": session.structure, "density": session.density},
        "masks": "masks.safetensors" if session.masks is not None else None,
        "snapshot": "snapshot.safetensors" if session.snapshot is not None else None,
        "baseline": session.baseline,
        "device": session.device,
        "results": jsonable(session.results),
        "view": jsonable(session.view),
    }


def save_session(session: Session, path: str | Path) -> Path:
    """Write ``session`` to ``path`` (a zip), atomically."""
    from safetensors.torch import save

    path = Path(path)
    manifest = to_manifest(session)
    members: dict[str, bytes] = {MANIFEST: json.dumps(manifest, indent=1).encode()}
    if session.masks is not None:
        members["masks.safetensors"] = _mask_blob(session.masks)
    if session.snapshot is not None:
        members["snapshot.safetensors"] = _mask_blob(session.snapshot)
    if session.model_state is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in session.model_state.items()}
        members["weights.safetensors"] = save(state)

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)

    atomic_write(path, write)
    return path


def load_session(path: str | Path) -> Session:
    """Read a session; upgrade an older schema, refuse a newer one or a damaged file."""
    path = Path(path)
    if not path.exists():
        raise SessionError(f"session file not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if MANIFEST not in names:
                raise SessionError(f"{path.name}: not a pruneviz session (no {MANIFEST})")
            manifest = json.loads(read_zip_member(z, MANIFEST, path.name, MAX_MANIFEST_BYTES))
            blobs = {n: read_zip_member(z, n, path.name) for n in sorted(names) if n.endswith(".safetensors")}
    except FileFormatError as exc:
        raise SessionError(str(exc)) from exc
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SessionError(f"{path.name}: damaged session ({MANIFEST} is not JSON)") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise SessionError(f"{path.name}: not a pruneviz session (not a readable zip: {first_line(exc, limit=200)})") from exc
    except (zipfile.LargeZipFile, EOFError, ValueError, KeyError, NotImplementedError, RuntimeError,
            zlib.error) as exc:
        # zlib.error: a flipped byte inside a deflated member; NotImplementedError: an unknown
        # compression method; RuntimeError: an encrypted member
        raise SessionError(f"{path.name}: damaged session (not a readable zip: {first_line(exc, limit=200)})") from exc
    manifest = upgrade(manifest, path.name)
    return from_manifest(manifest, blobs, path.name)


def upgrade(manifest: Any, source: str = "session") -> dict:
    """Bring a manifest of any known schema up to :data:`SCHEMA`."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SessionError(f"{source}: not a pruneviz session (format field missing)")
    schema = manifest.get("schema")
    if not isinstance(schema, int):
        raise SessionError(f"{source}: session has no schema version")
    if schema > SCHEMA:
        raise SessionError(
            f"{source}: written by a newer pruneviz (session schema {schema}; this version reads "
            f"up to {SCHEMA}). Update pruneviz to open it."
        )
    while schema < SCHEMA:
        step = MIGRATIONS.get(schema)
        if step is None:
            raise SessionError(f"{source}: session schema {schema} is too old to open (no upgrade path)")
        manifest = step(dict(manifest))
        schema = manifest["schema"]
    return manifest


def _from_schema_0(m: dict) -> dict:
    """Schema 0 (development builds): ``model`` was the reference string, results were ``rows``,
    and there was no snapshot or view. Upgrade to schema 1."""
    ref = m.pop("model", None)
    m["model"] = {"ref": ref, "weights": m.pop("weights", None), "trust": False, "state": None}
    m["data"] = {"name": m.pop("dataset", None)}
    m["results"] = m.pop("rows", [])
    m.setdefault("pruning", {})
    m.setdefault("masks", "masks.safetensors")
    m.setdefault("snapshot", None)
    m.setdefault("view", {})
    m["schema"] = 1
    return m


def _from_schema_1(m: dict) -> dict:
    """Schema 1 kept only the dataset's name: add the data options a schema-1 window used when
    nothing was chosen (pretrained weights, automatic image size and normalisation)."""
    model, data = m.get("model"), m.get("data")
    if isinstance(model, dict):
        model.setdefault("pretrained", True)
    if isinstance(data, dict):
        data.setdefault("image_size", None)
        data.setdefault("normalize", None)
    m["schema"] = 2
    return m


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_schema_0, 1: _from_schema_1}


def from_manifest(m: dict, blobs: dict[str, bytes], source: str = "session") -> Session:
    model = m.get("model") or {}
    if not isinstance(model, dict) or not model.get("ref"):
        raise SessionError(f"{source}: session names no model")
    pruning = m.get("pruning") or {}

    def blob(key: str | None) -> bytes | None:
        if not key:
            return None
        if key not in blobs:
            raise SessionError(f"{source}: session member {key} is missing")
        return blobs[key]

    for key in ("masks", "snapshot"):
        if m.get(key) is not None and not isinstance(m.get(key), str):
            raise SessionError(f"{source}: bad {key} entry {m.get(key)!r}")
    if model.get("state") is not None and not isinstance(model.get("state"), str):
        raise SessionError(f"{source}: bad model state entry")
    for key in ("weights",):
        if model.get(key) is not None and not isinstance(model.get(key), str):
            raise SessionError(f"{source}: bad model {key} entry")
    if not isinstance(m.get("view") or {}, dict) or not isinstance(m.get("data") or {}, dict) \
            or not isinstance(pruning, dict):
        raise SessionError(f"{source}: damaged session (view, data and pruning must be objects)")
    baseline = m.get("baseline")
    if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))):
        raise SessionError(f"{source}: bad baseline {baseline!r}")
    dataset = (m.get("data") or {}).get("name")
    if dataset is not None and not isinstance(dataset, str):
        raise SessionError(f"{source}: bad dataset name {dataset!r}")
    data_options = m.get("data") or {}
    image_size = data_options.get("image_size")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 1 <= image_size <= 4096):
        raise SessionError(f"{source}: bad image size {image_size!r}")
    normalize = data_options.get("normalize")
    if normalize not in NORMALIZE_CHOICES:
        raise SessionError(f"{source}: bad normalisation {normalize!r} (use none or imagenet)")
    pretrained = model.get("pretrained", True)
    if not isinstance(pretrained, bool):
        raise SessionError(f"{source}: bad pretrained entry {pretrained!r}")
    masks_b, snap_b, state_b = blob(m.get("masks")), blob(m.get("snapshot")), blob(model.get("state"))
    results = m.get("results") or []
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise SessionError(f"{source}: results must be a list of rows")
    try:
        density = float(pruning.get("density", 1.0))
    except (TypeError, ValueError) as exc:
        raise SessionError(f"{source}: bad density {pruning.get('density')!r}") from exc
    if not 0.0 <= density <= 1.0:  # also refuses NaN
        raise SessionError(f"{source}: bad density {density!r} (must be in [0, 1])")
    return Session(
        model_ref=str(model["ref"]),
        dataset=dataset,
        weights_path=model.get("weights"),
        trust=model.get("trust") is True,
        criterion=str(pruning.get("criterion", "magnitude")),
        scope=str(pruning.get("scope", "global")),
        structure=str(pruning.get("structure", "unstructured")),
        density=density,
        masks=None if masks_b is None else _read_mask_blob(masks_b, "masks.safetensors", source),
        snapshot=None if snap_b is None else _read_mask_blob(snap_b, "snapshot.safetensors", source),
        model_state=None if state_b is None else _read_tensors(state_b, "weights.safetensors", source)[0],
        results=[dict(r) for r in results],
        baseline=baseline,
        view=dict(m.get("view") or {}),
        device=str(m.get("device") or "auto"),
        pretrained=pretrained,
        image_size=image_size,
        normalize=normalize,
        created=str(m.get("created", "")),
        schema=SCHEMA,
    )


# --- exports ------------------------------------------------------------------------------------
def write_results_csv(rows: Iterable[dict], path: str | Path) -> Path:
    """Result rows as CSV: the union of all keys as columns, in first-seen order."""
    rows = [jsonable(r) for r in rows]
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))
    return path

