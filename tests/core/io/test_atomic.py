"""core.io.atomic: permissions follow the umask, a failed or killed write leaves the old file."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visualizer.core.io.atomic import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def umask():
    def set_(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_new_file_permissions_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what a plain open gives
    ours = atomic_write_text(tmp_path / "ours.txt", "x")
    assert stat.S_IMODE(ours.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_keeps_the_existing_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "f.csv"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_temporary_name_keeps_the_real_suffix_and_is_cleaned_up(tmp_path):
    seen = []

    def write(tmp: str) -> None:
        seen.append(tmp)
        Path(tmp).write_text("x")

    atomic_write(tmp_path / "prog.pt2", write)
    assert seen[0].endswith(".pt2") and Path(seen[0]).parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.pt2"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_text("old")

    def write(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


SLOW_WRITER = r"""
import sys, time
from pathlib import Path
from visualizer.core.io.atomic import atomic_write

def write(tmp):
    with open(tmp, "wb") as f:
        for _ in range(200):  # a big file written slowly: 200 MB over 10 s
            f.write(b"n" * 2**20)
            f.flush()
            print("chunk", flush=True)
            time.sleep(0.05)

atomic_write(sys.argv[1], write)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_9_during_a_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "session.pviz"
    path.write_bytes(b"old contents")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wait until the writer is well into the temporary file, then kill it mid-write
        chunks = 0
        deadline = time.monotonic() + 60
        while chunks < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # the writer died on its own
            chunks += line.startswith(b"chunk")
        assert chunks == 3, proc.stderr.read().decode()
        temporaries = [p for p in tmp_path.iterdir() if p.name != "session.pviz"]
        assert temporaries and temporaries[0].stat().st_size >= 3 * 2**20  # it was writing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"old contents"


def test_a_failed_write_names_the_users_path_not_the_temporary_file(tmp_path):
    import errno

    from visualizer.core.io.atomic import WriteError

    target = tmp_path / "out" / "mask.safetensors"

    def full_disk(tmp: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    with pytest.raises(WriteError) as info:
        atomic_write(target, full_disk)
    assert str(info.value) == f"cannot write {target}: no space left on device"
    assert ".tmp" not in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []


def test_a_folder_that_cannot_be_created_names_the_users_path(tmp_path):
    from visualizer.core.io.atomic import WriteError

    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "sub" / "mask.safetensors"
    with pytest.raises(WriteError, match=f"cannot write {target}: {tmp_path / 'afile'} is a file"):
        atomic_write_text(target, "data")
    assert isinstance(WriteError(target, OSError()), OSError)  # callers catching OSError still do
