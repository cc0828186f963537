"""What produced a result, so whoever shows it can tell whether it still describes what is shown.

A job starts from a :class:`Snapshot`: the model version it reads (a model is replaced, never
changed in place: trained weights that are kept become a new version), a copy of the mask (never
a view that the density slider keeps rewriting), the data source, and the settings, device and
seed. Its result carries the snapshot's :class:`Provenance`. A result is *current* while the model
version (and, for a result that read data, the data version) is still the one shown; otherwise a
view discards it or labels it with :meth:`Provenance.label`.

Versions are process-wide counters (:func:`next_version`), not content hashes: two loads of the
same file are two versions, which is what the window needs (a job of the first load must not land
under the second). Where a number is cached across processes (the sweep's row file), the content
identities :func:`weights_id` and :func:`data_id` stand in for the versions.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

_VERSIONS = itertools.count(1)


def next_version() -> int:
    """A fresh version number (every model load, every installed set of trained weights and every
    chosen dataset gets one)."""
    return next(_VERSIONS)


@dataclass(frozen=True)
class Provenance:
    """The origin of one result.

    ``data_version`` 0 means the result read no data (a magnitude ranking, a traced graph): a
    dataset change leaves it current. ``density`` is the density of the mask the job read (None:
    no mask); ``settings`` are the job's own settings as sorted (name, value) pairs."""

    model: str = ""
    model_version: int = 0
    dataset: str = ""
    data_version: int = 0
    density: float | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    device: str = ""
    seed: int | None = None

    @property
    def reads_data(self) -> bool:
        return self.data_version != 0

    def current_under(self, shown: Provenance) -> bool:
        """Whether a result of this origin still describes ``shown`` (the state a view draws):
        the same model version and, where this result read data, the same data version."""
        if self.model_version != shown.model_version:
            return False
        return not self.reads_data or self.data_version == shown.data_version

    def label(self) -> str:
        """"lenet on digits at 20.0% density": what a kept, non-current result is labelled with."""
        text = self.model or "?"
        if self.reads_data and self.dataset:
            text += f" on {self.dataset}"
        if self.density is not None and not math.isnan(self.density):
            text += f" at {self.density:.1%} density"
        return text


@dataclass(frozen=True)
class Snapshot:
    """The immutable inputs of one job: the model version, the data source, a mask copy (None:
    the job reads no mask) and their provenance. Nothing here is shared with the GUI thread in a
    form it changes later."""

    model: Any
    data: Any
    masks: Any
    provenance: Provenance = field(default_factory=Provenance)


def settings_items(settings: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """``settings`` as the sorted, hashable pairs :class:`Provenance` keeps."""
    return tuple(sorted((str(k), _frozen(v)) for k, v in (settings or {}).items()))


def _frozen(v: Any) -> Any:
    if isinstance(v, dict):
        return settings_items(v)
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def _tensor_bytes(t) -> memoryview:
    """The raw bytes of a tensor on the host (any dtype, bfloat16 included)."""
    import torch  # here, not at the top: the window imports this module before it needs torch

    flat = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def weights_id(model) -> str:
    """A content identity of ``model``'s weights: the first 12 hex digits of the SHA-1 of every
    state-dict entry's name, dtype, shape and bytes. Two models with the same reference but other
    weights (a fine-tune kept in the window) get different identities."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(_tensor_bytes(t))
    return h.hexdigest()[:12]


def data_id(data) -> str:
    """A content identity of a data source as read: its name, classes, input shape, split sizes
    and the bytes of its first two test inputs after preprocessing (so another image size,
    normalisation or channel count is another identity, though the folder is the same)."""
    h = hashlib.sha1()
    shape = tuple(getattr(data, "input_shape", ()) or ())
    sizes = tuple(_split_size(data, s) for s in ("train", "test"))
    h.update(f"{getattr(data, 'name', '')}:{getattr(data, 'num_classes', '')}:{shape}:{sizes};".encode())
    probe = getattr(data, "probe", None)
    if probe is not None:
        x = probe(2)
        h.update(f"{x.dtype}:{tuple(x.shape)};".encode())
        h.update(_tensor_bytes(x))
    return h.hexdigest()[:12]


def _split_size(data, which: str) -> int:
    try:
        return int(data.split_size(which))
    except (AttributeError, ValueError, TypeError):
        return -1
