"""Size and sanity checks that run BEFORE a file is read into memory.

A hostile or damaged file must cost a one-line :class:`FileFormatError`, not a gigabyte
allocation or a raw library exception:

- safetensors: the 8-byte little-endian header length must fit in the file, the header must be a
  JSON object, and every tensor's dtype, shape and byte range must agree with each other and lie
  inside the file (the layout of the safetensors specification, Hugging Face 2022);
- zip members (``.pviz`` sessions, torch checkpoints): the declared uncompressed size is checked
  against a limit and, for large members, against the compressed size (a "zip bomb" declares a
  huge size for a few compressed bytes; deflate cannot exceed about 1032:1, and real tensors
  compress far less). ``zipfile`` stops decompressing at the declared size, so checking the
  declaration bounds what is read.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

__all__ = [
    "FileFormatError", "check_safetensors", "read_zip_member", "MAX_MEMBER_BYTES", "MAX_HEADER_BYTES",
]


class FileFormatError(ValueError):
    """A file that is malformed, truncated or implausibly large (one line for the user)."""


MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own reader refuses headers above 100 MB
MAX_MEMBER_BYTES = 4 * 2**30  # one zip member read into memory
RATIO_CHECK_ABOVE = 64 * 2**20  # members larger than this ...
MAX_RATIO = 200  # ... must not expand more than this from their compressed size

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


def check_safetensors(source: bytes | str | Path, name: str | None = None) -> dict:
    """Validate a safetensors blob or file without reading its tensors; return its header dict
    (tensor entries plus ``__metadata__``). Raise :class:`FileFormatError` on any inconsistency."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[: 8 + MAX_HEADER_BYTES])
        size = len(source)
        label = name or "safetensors data"
        head = data[:8]
        read_header = lambda n: data[8 : 8 + n]  # noqa: E731
    else:
        path = Path(source)
        label = name or path.name
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(8)
                n_peek = int.from_bytes(head, "little") if len(head) == 8 else 0
                header_bytes = f.read(n_peek) if 0 < n_peek <= min(MAX_HEADER_BYTES, size - 8) else b""
        except OSError as exc:
            raise FileFormatError(f"{label}: cannot read ({exc.strerror or exc})") from exc
        read_header = lambda n: header_bytes  # noqa: E731
    if size < 8 or len(head) < 8:
        raise FileFormatError(f"{label}: not a readable safetensors file (only {size} bytes)")
    n = int.from_bytes(head, "little")
    if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
        raise FileFormatError(
            f"{label}: not a readable safetensors file (header length {n} does not fit a {size}-byte file)")
    raw = read_header(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{label}: damaged safetensors header (not JSON)") from exc
    if not isinstance(header, dict):
        raise FileFormatError(f"{label}: damaged safetensors header (not an object)")
    body = size - 8 - n
    for key, entry in header.items():
        if key == "__metadata__":
            if entry is not None and not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise FileFormatError(f"{label}: damaged safetensors metadata")
            continue
        _check_entry(label, key, entry, body)
    return header


def _check_entry(label: str, key: str, entry, body: int) -> None:
    if not isinstance(entry, dict):
        raise FileFormatError(f"{label}: tensor {key!r} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise FileFormatError(f"{label}: tensor {key!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise FileFormatError(f"{label}: tensor {key!r} has a bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise FileFormatError(f"{label}: tensor {key!r} has bad data offsets {offsets!r}")
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    begin, end = offsets
    if not 0 <= begin <= end <= body:
        raise FileFormatError(
            f"{label}: tensor {key!r} claims bytes {begin}..{end} of a {body}-byte data section (truncated file?)")
    if end - begin != nbytes:
        raise FileFormatError(
            f"{label}: tensor {key!r} of shape {tuple(shape)} {dtype} needs {nbytes} bytes, the file gives {end - begin}")


def read_zip_member(z: zipfile.ZipFile, name: str, source: str, limit: int | None = None) -> bytes:
    """Read one zip member after checking its declared size (and expansion ratio)."""
    limit = MAX_MEMBER_BYTES if limit is None else limit
    info = z.getinfo(name)
    if info.file_size > limit:
        raise FileFormatError(
            f"{source}: member {name} declares {info.file_size:,} bytes, over the {limit:,}-byte limit")
    if info.file_size > RATIO_CHECK_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise FileFormatError(
            f"{source}: member {name} would expand {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"(zip bomb?)")
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # pragma: no cover - zipfile stops at the declared size
        raise FileFormatError(f"{source}: member {name} is larger than declared")
    return data
