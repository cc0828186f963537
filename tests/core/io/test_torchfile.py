"""The one reader of torch files: sniffing by content, weights_only unless trusted, one-line errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.untrusted import evil_weights
from visualizer.core.io.checks import FileFormatError
from visualizer.core.io.torchfile import (
    UnpicklingRefused,
    is_torchscript,
    needs_unpickling,
    safe_load,
    sniff,
)


def test_sniff_tells_the_formats_apart_by_content(tmp_path):
    w = {"w": torch.ones(2, 2)}
    torch.save(w, tmp_path / "zip.bin")
    torch.save(w, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    save_file(w, tmp_path / "named.pt")  # a safetensors file with a torch suffix
    (tmp_path / "text.pt").write_text("hello world, not a tensor")
    assert sniff(tmp_path / "zip.bin") == "zip"
    assert sniff(tmp_path / "legacy.bin") == "pickle"
    assert sniff(tmp_path / "named.pt") == "safetensors"
    assert sniff(tmp_path / "text.pt") == "unknown"
    with pytest.raises(FileFormatError, match="absent.pt: cannot read"):
        sniff(tmp_path / "absent.pt")


def test_safe_load_refuses_python_objects_without_running_them(tmp_path):
    path, marker = evil_weights(tmp_path)
    assert needs_unpickling(path)
    with pytest.raises(UnpicklingRefused, match="evil.pt: needs full unpickling"):
        safe_load(path)
    assert not marker.exists()
    safe_load(path, trust=True)  # the person said yes: it runs
    assert marker.exists()


def test_tensors_load_and_damage_is_one_line(tmp_path):
    torch.save({"w": torch.arange(3)}, tmp_path / "ok.pt")
    assert torch.equal(safe_load(tmp_path / "ok.pt")["w"], torch.arange(3))
    assert not needs_unpickling(tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError) as info:
        safe_load(tmp_path / "cut.pt")
    assert str(info.value).startswith("cut.pt: not a readable torch checkpoint (")
    assert "\n" not in str(info.value)
    assert not needs_unpickling(tmp_path / "cut.pt")  # damage is the loader's to report
    assert not isinstance(info.value, UnpicklingRefused)


def test_torchscript_archives_are_told_from_checkpoints():
    assert is_torchscript(["m/code/__torch__.py", "m/data.pkl", "m/constants.pkl"])
    assert is_torchscript(["m/archive_format", "m/models/model.json"])
    assert not is_torchscript(["archive/data.pkl", "archive/data/0", "archive/version"])
