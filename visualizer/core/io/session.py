"""The saved state of an exploration: a ``.pviz`` session file.

A session is a zip archive holding
- ``session.json``: ``{"format": "pruneviz-session", "schema": N, ...}`` with the model reference,
  the data choice, the pruning settings, result rows and view settings;
- ``masks.safetensors`` (the current mask), ``snapshot.safetensors`` (the comparison mask "A"),
  ``weights.safetensors`` (only when the model's weights were changed in the session, e.g. by
  fine-tuning), each a safetensors blob.

It is written to a temporary file and renamed (:func:`visualizer.core.pruning.masks.atomic_write`), so a
crash never leaves half a session. Reading checks the schema: older schemas are upgraded by the
functions in :data:`MIGRATIONS`; a newer schema, or a file that is not a session, is refused with
a one-line :class:`SessionError`.

Also here, because the CLI and the GUI both export them: result rows as CSV and a mask as a
torch.nn.utils.prune state dict.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from visualizer.core.pruning.masks import MaskSet, atomic_write

FORMAT = "pruneviz-session"
SCHEMA = 1
MANIFEST = "session.json"


class SessionError(Exception):
    """A file that is not a readable session (one-line message for the user)."""


@dataclass
class Session:
    model_ref: str
    dataset: str | None = None
    weights_path: str | None = None  # the weights file the model was loaded with, if any
    trust: bool = False
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


def _read_mask_blob(data: bytes, name: str) -> MaskSet:
    state = _read_tensors(data, name)
    meta = {}
    try:  # metadata: safetensors.torch.load drops it, read the header directly
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (ValueError, json.JSONDecodeError):
        pass
    return MaskSet({k: v.bool() for k, v in state.items()}, dict(meta))


def _read_tensors(data: bytes, name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise SessionError(f"session member {name} is damaged ({exc})") from exc


# --- save / load --------------------------------------------------------------------------------
def to_manifest(session: Session) -> dict:
    return {
        "format": FORMAT,
        "schema": SCHEMA,
        "created": session.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"ref": session.model_ref, "weights": session.weights_path, "trust": session.trust,
                  "state": "weights.safetensors" if session.model_state is not None else None},
        "data": {"name": session.dataset},
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
            manifest = json.loads(z.read(MANIFEST))
            blobs = {n: z.read(n) for n in names if n.endswith(".safetensors")}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SessionError(f"{path.name}: not a pruneviz session (not a readable zip: {exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path.name}: damaged session ({MANIFEST} is not JSON)") from exc
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


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_schema_0}


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

    masks_b, snap_b, state_b = blob(m.get("masks")), blob(m.get("snapshot")), blob(model.get("state"))
    results = m.get("results") or []
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise SessionError(f"{source}: results must be a list of rows")
    try:
        density = float(pruning.get("density", 1.0))
    except (TypeError, ValueError) as exc:
        raise SessionError(f"{source}: bad density {pruning.get('density')!r}") from exc
    return Session(
        model_ref=str(model["ref"]),
        dataset=(m.get("data") or {}).get("name"),
        weights_path=model.get("weights"),
        trust=bool(model.get("trust", False)),
        criterion=str(pruning.get("criterion", "magnitude")),
        scope=str(pruning.get("scope", "global")),
        structure=str(pruning.get("structure", "unstructured")),
        density=density,
        masks=None if masks_b is None else _read_mask_blob(masks_b, "masks.safetensors"),
        snapshot=None if snap_b is None else _read_mask_blob(snap_b, "snapshot.safetensors"),
        model_state=None if state_b is None else _read_tensors(state_b, "weights.safetensors"),
        results=[dict(r) for r in results],
        baseline=m.get("baseline"),
        view=dict(m.get("view") or {}),
        device=str(m.get("device") or "auto"),
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


def write_prune_state_dict(masks: MaskSet, model: torch.nn.Module, path: str | Path) -> Path:
    """The model's state dict in torch.nn.utils.prune layout (``X_orig``, ``X_mask``), via
    torch.save: load it into a model prepared with ``prune.identity`` on the same parameters."""
    masks.check(model)
    state = masks.to_prune_state_dict(model)
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path
