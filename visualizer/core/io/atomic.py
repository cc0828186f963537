"""Atomic file writes: a crash, a full disk or ``kill -9`` never leaves half a file.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file in the target's folder,
flushes it to disk (``fsync`` of the file), renames it over ``path`` (``os.replace``, atomic on
POSIX and Windows within one file system) and fsyncs the folder so the rename itself survives a
power cut (the recipe of the ext4/XFS maintainers; see also Pillai et al., "All File Systems Are
Not Created Equal", OSDI 2014).

The temporary file keeps the real extension last (``.name.XXXX.tmp.pt2``) because some writers
pick the format from the suffix (``torch.export.save`` wants ``.pt2``, Qt's image writer ``.png``).
``mkstemp`` creates files readable by the owner only; the result gets the permissions a plain
``open(path, "w")`` would give, ``0o666 & ~umask``, or the mode of the file it replaces.

A failure (a parent that is a file, no permission, a full disk) is a :class:`WriteError` that
names the path the person asked for, never the temporary file they have not heard of.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from visualizer.core.errors import first_line

__all__ = ["WriteError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "default_mode"]


class WriteError(OSError):
    """A file that could not be written; the message is one line naming the user's path."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"cannot write {path}: {_reason(path, cause)}")
        self.path = path
        if isinstance(cause, OSError):
            self.errno = cause.errno


def _reason(path: Path, cause: BaseException) -> str:
    """Why ``path`` could not be written, in words about the user's path."""
    blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[0].lower() + cause.strerror[1:]
    return first_line(cause)


def default_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it without changing it; os.umask(0) + restore would race with other threads
    # creating files in that instant (the window saves from worker threads)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders: the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then move the finished, fsynced file over ``path``. An OSError
    on the way (the folder, the temporary file, the writer, the rename) is a :class:`WriteError`
    naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = default_mode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:  # the writer may have closed its own handle without fsync
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from exc
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
