"""Damaged and hostile files: every corruption is a clean load or ONE line of error, never a raw
library exception, a hang or a huge allocation (zip bombs, absurd safetensors shapes)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from visualizer.core.io import checks
from visualizer.core.io.checks import FileFormatError
from visualizer.core.io.mask_formats import detect_kind, read_mask, write_mask
from visualizer.core.io.session import Session, SessionError, load_session, save_session
from visualizer.core.models.loaders import ModelLoadError, load_state_dict
from visualizer.core.pruning.masks import MaskError, MaskSet

EXPECTED = (MaskError, SessionError, FileFormatError, ModelLoadError)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def mask_of(model) -> MaskSet:
    masks = MaskSet.for_model(model)
    masks.masks["0.weight"][::2] = False
    return masks


def originals(tmp_path: Path) -> dict[str, bytes]:
    model = net()
    masks = mask_of(model)
    write_mask(masks, tmp_path / "o.safetensors", model)
    write_mask(masks, tmp_path / "o.pt", model)
    save_session(Session(model_ref="mlp", masks=masks, snapshot=masks.copy(), results=[{"a": 1}]), tmp_path / "o.pviz")
    return {s: (tmp_path / f"o.{s}").read_bytes() for s in ("safetensors", "pt", "pviz")}


def truncate(data: bytes, frac: float) -> bytes:
    return data[: int(len(data) * frac)]


def flip(data: bytes, pos: float, stride: int = 1) -> bytes:
    b = bytearray(data)
    start = int(len(b) * pos)
    for i in range(start, min(len(b), start + 8 * stride), stride):
        b[i] ^= 0xA5
    return bytes(b)


def splice_header(data: bytes, other: bytes) -> bytes:
    """The first 8 + header bytes of one file on the body of another."""
    n = int.from_bytes(other[:8], "little") if len(other) >= 8 else 0
    return other[: 8 + n] + data[8 + n:]


CORRUPTIONS = {
    "empty": lambda d: b"",
    "truncated-8": lambda d: d[:8],
    "truncated-half": lambda d: truncate(d, 0.5),
    "truncated-90": lambda d: truncate(d, 0.9),
    "truncated-last-byte": lambda d: d[:-1],
    "flip-start": lambda d: flip(d, 0.0),
    "flip-header": lambda d: flip(d, 0.02),
    "flip-quarter": lambda d: flip(d, 0.25),
    "flip-middle": lambda d: flip(d, 0.5),
    "flip-end": lambda d: flip(d, 0.97),
    "flip-spread": lambda d: flip(d, 0.1, stride=max(1, len(d) // 40)),
    "zeroed-length": lambda d: b"\0" * 8 + d[8:],
    "huge-length": lambda d: struct.pack("<Q", 2**62) + d[8:],
    "appended-junk": lambda d: d + b"\x00junk" * 10,
    "doubled": lambda d: d + d,
}


def _read(kind: str, path: Path):
    if kind == "safetensors":
        return read_mask(path, net())
    if kind == "pt":
        return read_mask(path, net())
    return load_session(path)


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("kind", ["safetensors", "pt", "pviz"])
def test_each_corruption_is_a_clean_load_or_one_line_error(tmp_path, kind, corruption):
    data = originals(tmp_path)[kind]
    path = tmp_path / f"bad.{kind}"
    path.write_bytes(CORRUPTIONS[corruption](data))
    for reader in (lambda p: _read(kind, p), detect_kind):
        try:
            reader(path)
        except EXPECTED as exc:
            text = str(exc)
            assert text and "\n" not in text, text


@pytest.mark.parametrize("other", ["pt", "pviz"])
def test_spliced_safetensors_headers(tmp_path, other):
    data = originals(tmp_path)
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net().state_dict().items()}, str(weights))
    for donor in (weights.read_bytes(), data[other]):
        path = tmp_path / "spliced.safetensors"
        path.write_bytes(splice_header(data["safetensors"], donor))
        for reader in (lambda p: read_mask(p, net()), detect_kind, load_state_dict):
            try:
                reader(path)
            except EXPECTED as exc:
                assert "\n" not in str(exc)


def _rezip(src: bytes, edit) -> bytes:
    with zipfile.ZipFile(io.BytesIO(src)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members = edit(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


SESSION_EDITS = {
    "swap-masks-and-manifest": lambda m: {**m, "session.json": m["masks.safetensors"], "masks.safetensors": m["session.json"]},
    "swap-masks-and-snapshot-names": lambda m: {"session.json": m["session.json"], "snapshot.safetensors": m["masks.safetensors"],
                                                "masks.safetensors": m["snapshot.safetensors"]},
    "drop-masks": lambda m: {k: v for k, v in m.items() if k != "masks.safetensors"},
    "masks-is-json": lambda m: {**m, "masks.safetensors": m["session.json"]},
    "manifest-not-object": lambda m: {**m, "session.json": b"[1, 2, 3]"},
    "manifest-deep": lambda m: {**m, "session.json": b"[" * 100000 + b"]" * 100000},
    "manifest-bad-types": lambda m: {**m, "session.json": json.dumps(
        {"format": "pruneviz-session", "schema": 1, "model": {"ref": "mlp", "state": 3}, "masks": ["x"],
         "pruning": "dense", "results": {"a": 1}, "view": 5}).encode()},
    "manifest-nan-density": lambda m: {**m, "session.json": m["session.json"].replace(b'"density": 1.0', b'"density": NaN')},
    "weights-absurd-shape": lambda m: {**m, "masks.safetensors": _absurd_safetensors()},
}


def _absurd_safetensors() -> bytes:
    header = json.dumps({"0.weight": {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


@pytest.mark.parametrize("edit", list(SESSION_EDITS))
def test_edited_session_members(tmp_path, edit):
    data = originals(tmp_path)["pviz"]
    path = tmp_path / "edited.pviz"
    path.write_bytes(_rezip(data, SESSION_EDITS[edit]))
    if edit == "swap-masks-and-snapshot-names":  # two valid masks of the same model: a clean load
        assert load_session(path).masks.kept() == mask_of(net()).kept()
        return
    with pytest.raises(SessionError) as err:
        load_session(path)
    assert "\n" not in str(err.value)


def test_absurd_safetensors_shape_is_refused_before_reading(tmp_path):
    path = tmp_path / "absurd.safetensors"
    path.write_bytes(_absurd_safetensors())
    with pytest.raises(MaskError, match="needs 18446744073709551616 bytes|claims bytes"):
        read_mask(path)
    with pytest.raises(ModelLoadError, match="shape"):
        load_state_dict(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 2**40]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(FileFormatError, match="truncated"):
        checks.check_safetensors(path)


def _bomb(declared: int, payload: bytes = b"\0" * 1000) -> bytes:
    """A zip whose session.json header declares ``declared`` bytes for a small deflated payload."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("session.json", b'{"format": "pruneviz-session", "schema": 1, "model": {"ref": "mlp"}}')
        z.writestr("masks.safetensors", payload)
    data = bytearray(buf.getvalue())
    # patch the uncompressed size of masks.safetensors in its local and central headers
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            name_off = 30 if sig == b"PK\x03\x04" else 46
            n = int.from_bytes(data[i + (26 if sig == b"PK\x03\x04" else 28): i + (28 if sig == b"PK\x03\x04" else 30)], "little")
            if data[i + name_off: i + name_off + n] == b"masks.safetensors":
                data[i + off: i + off + 4] = struct.pack("<I", declared)
            start = i + 4
    return bytes(data)


def test_zip_bomb_members_are_refused_from_their_declared_size(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pviz"
    path.write_bytes(_bomb(4_000_000_000))  # 4 GB declared for about ten compressed bytes
    with pytest.raises(SessionError, match="declares|expand"):
        load_session(path)
    monkeypatch.setattr(checks, "MAX_MEMBER_BYTES", 10**6)
    monkeypatch.setattr(checks, "RATIO_CHECK_ABOVE", 10**5)
    path.write_bytes(_bomb(2_000_000))
    with pytest.raises(SessionError, match="over the 1,000,000-byte limit"):
        load_session(path)
    # a real highly compressible member above the ratio threshold
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("session.json", b"{}")
        z.writestr("masks.safetensors", b"\0" * 900_000)
    path.write_bytes(buf.getvalue())
    with pytest.raises(SessionError, match="expand"):
        load_session(path)
