"""Long work as generators: progress records, cancellation, one small runner.

A job is a generator that yields :class:`Step` records and returns its result. The CLI and tests
drive it with :func:`run`; the GUI drives the same generator in a worker thread and cancels it by
closing it (``gen.close()`` raises ``GeneratorExit`` at the paused ``yield``), so every job must
keep its state consistent at each ``yield`` and put restoring code in ``try/finally``.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from visualizer.core.errors import first_line  # noqa: F401 - the one formatter, re-exported for jobs

T = TypeVar("T")

Job = Generator["Step", None, T]


@dataclass(frozen=True)
class Step:
    """One progress record of a job.

    stage: short human text ("ranking", "epoch 3/10", "lanczos 40/80").
    fraction: 0..1 of the whole job.
    partial: an optional partial result a view can show at once (one sweep row, one IMP round).
    """

    stage: str
    fraction: float
    partial: Any = None


class Cancelled(Exception):
    """Raised by :func:`run` when ``should_stop`` asks the job to stop."""


class TimeBudgetExceeded(Exception):
    """Raised inside a :func:`time_budget` block that ran past its budget."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    # None clears a pending exception (NULL to CPython)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Stop the block with :class:`TimeBudgetExceeded` once it has run ``seconds``.

    For one long call into pure-Python library code that offers no way to stop it: Torch-Pruning
    spent minutes on a single channel group of torchvision's Swin-T, in one uninterruptible job
    step. A timer thread raises the exception in this thread (``PyThreadState_SetAsyncExc``); it
    arrives at the next bytecode, so C code (a torch kernel) finishes first, and is raised again
    every 0.2 s until the block ends. Never after the block: a pending one is taken back under a
    lock. Do not span a ``yield``."""
    thread_id = threading.get_ident()
    lock = threading.Lock()
    ended = threading.Event()
    state = {"done": False, "fired": False}

    def watch() -> None:
        if ended.wait(seconds):
            return
        # again every 0.2 s: library code may catch and drop the first one (a broad except)
        while True:
            with lock:
                if state["done"]:
                    return
                state["fired"] = True
                _set_async_exc(thread_id, TimeBudgetExceeded)
            if ended.wait(0.2):
                return

    watcher = threading.Thread(target=watch, name="pruneviz-time-budget", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        while True:  # a shot may land here too: then clean up again (the watcher must stop)
            try:
                with lock:
                    state["done"] = True
                    if state["fired"]:
                        _set_async_exc(thread_id, None)
                ended.set()
                break
            except TimeBudgetExceeded:
                continue


def run(
    job: Generator[Step, None, T],
    on_step: Callable[[Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Drive a job to the end and return its result; ``on_step`` sees each Step.

    If ``should_stop()`` turns true the generator is closed (its ``finally`` blocks run) and
    :class:`Cancelled` is raised.
    """
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(step)
        if should_stop is not None and should_stop():
            job.close()
            raise Cancelled(step.stage)


def sub(job: Generator[Step, None, T], start: float, end: float, prefix: str = ""):
    """Re-map a sub-job's fractions into [start, end] of the parent job; ``yield from`` it."""
    span = end - start
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        stage = f"{prefix}{step.stage}" if prefix else step.stage
        yield Step(stage, start + span * min(max(step.fraction, 0.0), 1.0), step.partial)


def mapped(job: Generator[Step, None, T], change: Callable[[Step], Step]):
    """``job``'s steps passed through ``change`` (a step -> a step: e.g. a partial result turned
    into what a view draws), its result returned; ``yield from`` it. Closing it closes ``job``
    (a cancelled view stops the work inside too)."""
    try:
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                return stop.value
            yield change(step)
    finally:
        job.close()


def progress_only(job: Generator[Step, None, T]):
    """``job`` with its partial results dropped: its progress passes on, its result is returned.
    A sweep's ``Step.partial`` is its rows and nothing else (a fine-tune's epoch records were
    taken for rows: the serial sweep wrote a 25th row with empty settings); a figure's is the
    figure so far (a training run's metrics inside it are not)."""
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        yield Step(step.stage, step.fraction) if step.partial is not None else step


class TerminalProgress:
    """A one-line progress bar on stderr for the CLI (silent when stderr is not a terminal)."""

    def __init__(self, stream=None, min_interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0

    def __call__(self, step: Step) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and step.fraction < 1.0:
            return
        self._last = now
        width = 30
        filled = int(width * min(max(step.fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {step.fraction:6.1%} {step.stage[:50]:<50}")
        if step.fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
