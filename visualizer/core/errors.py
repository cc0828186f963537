"""One line for any exception: what failed and on which of the user's files.

Every place that shows an error to a person (the CLI's stderr line, the window's banner, a job's
notice) goes through :func:`first_line`, so a failure reads the same everywhere and never as a
traceback. Two kinds of exception would otherwise lose their point on the way to one line:

- an exception raised in a DataLoader worker process reaches the caller re-raised by torch as
  ``Caught DataError in DataLoader worker process 0.`` with the real message (the file and the
  reason) in the worker's traceback text; :func:`first_line` takes the original message back
  out of that text;
- an ``OSError`` from the standard library says ``[Errno 2] No such file or directory: 'x'``;
  it becomes ``No such file or directory: x``.

The traceback stays available to whoever asks for it: ``--debug`` on the command line or
``PRUNEVIZ_DEBUG=1`` in the environment (:func:`debug_enabled`).
"""

from __future__ import annotations

import os
import re

DEBUG_ENV = "PRUNEVIZ_DEBUG"

# torch.utils.data._utils.ExceptionWrapper.reraise: "Caught {type} in DataLoader worker process N."
# followed by "Original Traceback (most recent call last):" and the worker's formatted traceback
_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
# the traceback's last line: "package.module.TypeName: message"
_TRACEBACK_LAST = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*: (.+)$")


def debug_enabled() -> bool:
    """Whether the person asked for tracebacks (``PRUNEVIZ_DEBUG`` set to anything but 0/empty)."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _worker_message(text: str) -> str | None:
    """The original exception's message inside torch's re-raised worker text, else None."""
    if not _WORKER_PREFIX.match(text):
        return None
    for line in reversed(text.strip().splitlines()):
        match = _TRACEBACK_LAST.match(line.strip())
        if match and not line.startswith(" "):
            return match.group(1).strip()
    return None


def _os_message(exc: OSError) -> str | None:
    """``strerror: filename`` for an OSError built by the standard library, else None (an
    OSError subclass raised with our own message keeps it)."""
    if exc.strerror is None or exc.filename is None:
        return None
    names = [str(exc.filename)] + ([str(exc.filename2)] if exc.filename2 is not None else [])
    return f"{exc.strerror}: {' -> '.join(names)}"


def message(exc: BaseException) -> str:
    """The exception's whole message, unwrapped (worker processes, OSError's errno prefix)."""
    text = str(exc).strip()
    inner = _worker_message(text)
    if inner is not None:
        return inner
    if isinstance(exc, OSError):
        os_text = _os_message(exc)
        if os_text is not None:
            return os_text
    return text


def first_line(exc: BaseException, with_type: bool = False, limit: int | None = None) -> str:
    """The first line of an exception's message for a one-line error or notice (the type's name
    when the message is empty); ``with_type`` prefixes "TypeName: ", ``limit`` cuts the line."""
    lines = message(exc).splitlines()
    if not lines:
        return type(exc).__name__
    line = lines[0][:limit] if limit else lines[0]
    return f"{type(exc).__name__}: {line}" if with_type else line


def describe(exc: BaseException, expected: bool = True) -> str:
    """One line for a person: the message; for an exception nobody anticipated (a bug, not bad
    input: ``expected`` False) its type too, and how to see the traceback."""
    if expected:
        return first_line(exc)
    return f"{first_line(exc, with_type=True)} (internal error; run with --debug or {DEBUG_ENV}=1 for the traceback)"
