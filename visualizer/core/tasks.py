"""Long work as generators: progress records, cancellation, one small runner.

A job is a generator that yields :class:`Step` records and returns its result. The CLI and tests
drive it with :func:`run`; the GUI drives the same generator in a worker thread and cancels it by
closing it (``gen.close()`` raises ``GeneratorExit`` at the paused ``yield``), so every job must
keep its state consistent at each ``yield`` and put restoring code in ``try/finally``.

Jobs running side by side (the window's worker threads) coordinate through :data:`STEP_LOCK`, a
readers/writer lock: every step of a job holds its *shared* side, so any number of jobs compute at
once; the few calls that patch process-wide state -- torch.fx tracing and ``torch.export`` replace
``nn.Module.__call__`` and ``__getattr__`` for every module in the process while they run -- take
its *exclusive* side through :func:`exclusive`, which excludes every other job's step for just that
call. The rule that makes the shared side enough: a model a job is handed (the window's current
version) is only ever read. Whatever changes a module even for one call (``functional_call``
swapping its parameters, forward hooks, the train/eval flag) does so on a private copy
(:func:`visualizer.core.layers.private_view` shares the tensors; training deep-copies).
"""

from __future__ import annotations

import collections
import ctypes
import importlib
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


LONG_EXCLUSIVE_S = 0.05  # an exclusive hold longer than this is recorded (StepLock.long_holds)
LONG_HOLDS_KEPT = 200


class StepLock:
    """A re-entrant readers/writer lock for job steps (see the module docstring for who takes
    which side).

    - :meth:`shared`: any number of threads at once; a thread already holding either side may
      take it again. While a thread waits for the exclusive side, new shared holders wait (a
      writer is never starved by a stream of steps; a job releases its shared side between steps).
    - :meth:`exclusive`: one thread, no shared holder. A thread that holds the shared side (a job
      step calling a tracer) lets go of it while it waits and takes it back afterwards: two steps
      upgrading at once would otherwise wait for each other for ever. Nested exclusive sections
      of one thread are one hold.
    - :attr:`long_holds`: ``(thread name, label, seconds)`` of exclusive holds longer than
      :data:`LONG_EXCLUSIVE_S`, the latest :data:`LONG_HOLDS_KEPT`: those make every job wait.
      :attr:`long_waits`: the same for an exclusive side's wait for the steps under way (a long
      step delays the tracer, and the steps that queue behind it).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> depth of its shared holds
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0
        self.long_holds: collections.deque[tuple[str, str, float]] = collections.deque(maxlen=LONG_HOLDS_KEPT)
        self.long_waits: collections.deque[tuple[str, str, float]] = collections.deque(maxlen=LONG_HOLDS_KEPT)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the shared side for the block (a job step)."""
        me = threading.get_ident()
        with self._cond:
            if self._writer != me and me not in self._readers:
                while self._writer is not None or self._writers_waiting:
                    self._cond.wait()
            self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                # absent when an upgrade inside the block was interrupted while it waited
                depth = self._readers.get(me, 0) - 1
                if depth > 0:
                    self._readers[me] = depth
                else:
                    self._readers.pop(me, None)
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self, label: str = "") -> Iterator[None]:
        """Hold the exclusive side for the block: no other thread runs a step meanwhile."""
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._writer_depth += 1
                outer, dropped = False, 0
            else:
                outer, dropped = True, self._readers.pop(me, 0)
                if dropped:
                    self._cond.notify_all()
                self._writers_waiting += 1
                asked = time.perf_counter()
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._writers_waiting -= 1
                    self._cond.notify_all()  # steps queued behind this wait (if it was interrupted)
                self._writer, self._writer_depth = me, 1
                waited = time.perf_counter() - asked
                if waited > LONG_EXCLUSIVE_S:
                    self.long_waits.append((threading.current_thread().name, label, waited))
        start = time.perf_counter()
        try:
            yield
        finally:
            held = time.perf_counter() - start
            with self._cond:
                self._writer_depth -= 1
                if outer:
                    self._writer = None
                    self._cond.notify_all()
                    if held > LONG_EXCLUSIVE_S:
                        self.long_holds.append((threading.current_thread().name, label, held))
                    if dropped:  # the step goes on: its shared side back (no writer is in now)
                        self._readers[me] = dropped

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let go of this thread's shared side for the block, then take it back (waiting behind
        a tracer like any step): for work inside a step that touches no model, such as a long
        first import. An exclusive holder keeps its side."""
        me = threading.get_ident()
        with self._cond:
            dropped = 0 if self._writer == me else self._readers.pop(me, 0)
            if dropped:
                self._cond.notify_all()
        try:
            yield
        finally:
            if dropped:
                with self._cond:
                    while self._writer is not None or self._writers_waiting:
                        self._cond.wait()
                    self._readers[me] = dropped

    def held_exclusive(self) -> bool:
        """Whether the calling thread holds the exclusive side (tests, assertions)."""
        return self._writer == threading.get_ident()


STEP_LOCK = StepLock()  # the process's one step lock: the window's jobs, the CLI and tests share it


def exclusive(label: str = ""):
    """The exclusive side of :data:`STEP_LOCK` for one call that patches process-wide state (fx
    tracing, ``torch.export``). Import what the call imports lazily *before* entering (an import of
    torch._dynamo took seconds): an exclusive hold stops every job."""
    return STEP_LOCK.exclusive(label)


def import_unlocked(*names: str) -> None:
    """Import ``names`` (those not imported yet) outside :data:`STEP_LOCK`: a step's first
    optimiser or ``torch.export`` imports torch._dynamo (seconds, once), and a step holding the
    lock that long would keep a tracer, and every step queued behind it, waiting."""
    missing = [n for n in names if n not in sys.modules]
    if not missing:
        return
    with STEP_LOCK.released():
        for name in missing:
            importlib.import_module(name)


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
