"""Run core jobs (generators of :class:`~visualizer.core.tasks.Step`) off the event loop.

A job runs in a daemon Python thread; its progress, partial results and final result come back
to the GUI thread through a plain thread-safe queue that a GUI-thread timer drains every
``POLL_MS`` (the worker never touches Qt: emitting Qt signals with Python payloads from a
non-Qt thread crashed PySide6 6.12 with a refcount error). Rules the window relies on:

- one job per *kind* ("load", "rank", "train", ...): a new request of a kind supersedes the
  running one (the old one is cancelled and whatever it still sends is dropped);
- a job submitted with an ``origin`` (core.provenance.Provenance: the model version and data it
  reads) belongs to that state: :meth:`JobRunner.retire` cancels every job whose origin is no
  longer current when the model or the dataset changes, whatever its kind (one rule, no list of
  kinds), so a sweep or a spectrum of the old model never lands under the new one;
- cancel closes the generator at its next ``yield`` (its ``finally`` blocks run in the worker);
  results are handed to ``on_result`` in the GUI thread only on success, so a cancelled or
  failed job changes nothing;
- progress signals are throttled (at most one per ``PROGRESS_INTERVAL`` seconds per job) so a
  job yielding thousands of steps cannot flood the event loop;
- the threads are daemons: closing the window cancels jobs and waits at most ``wait`` seconds,
  after which the process may exit even if a job is inside a long computation between yields;
- jobs run side by side, each step (each ``next``/``close`` of its generator) holding the
  *shared* side of :data:`visualizer.core.tasks.STEP_LOCK`, a readers/writer lock whose home is
  core. Only a call that patches process-wide state takes the *exclusive* side, inside core
  (:func:`visualizer.core.tasks.exclusive`), for just that call, so the runner does not know
  which jobs trace: torch.fx tracing (graph, module owners, batch-norm pairing, sensitivity's
  split, shrinking's branch removal) and ``torch.export`` (graph fallback, .pt2 files) replace
  ``nn.Module.__call__`` for every module while they run -- a forward pass in another thread was
  traced into the wrong graph or failed (reproduced: a ranking beside a graph trace;
  tests/core/test_step_lock.py) -- and the FLOP counter's module tracker registers global module
  hooks. The rule that makes the shared side enough: the model a job is handed (the window's
  current version; a model is replaced, never changed) is only read. Whatever changes a module
  for one call -- ``torch.func.functional_call`` swapping parameters (masked evaluation,
  curvature, landscape, sensitivity), forward hooks (calibration statistics, execution order,
  shapes, Torch-Pruning's dependency trace), the train/eval flag -- does it on a private view
  that shares the tensors (:func:`visualizer.core.layers.private_view`); training, data criteria
  (they write ``.grad``) and shrinking work on deep copies, and trained weights come back as a
  new model version. Lazy imports a traced call needs (torch._dynamo for torch.export) are made
  before the exclusive side is taken. A tracer waits for the steps under way, and steps asked for
  meanwhile wait behind it (no tracer starves): a long step (a training step on a busy CPU) still
  delays a tracer and those steps. :attr:`JobRunner.long_holds` records exclusive holds over
  50 ms (every job waits meanwhile), :attr:`JobRunner.shared_holds` long steps and
  :attr:`JobRunner.lock_waits` how long a step waited for the lock. The GUI thread never takes
  the lock (a synchronous runner, which runs jobs on it, excepted);
- the GUI thread can hold every job at its next step for a few tens of milliseconds
  (:meth:`JobRunner.hold`): a model change rebuilds and repaints most of the window (tens of
  milliseconds of GUI-thread Python and Qt calls; docs/performance.md), and the jobs it starts
  (ranking, graph tracing: pure Python) would otherwise share the GIL with that repaint and
  stretch it past 50 ms;
- worker threads run at a lower CPU priority than the GUI thread (Linux, :func:`lower_thread_priority`):
  jobs step side by side, and two busy workers kept the GUI thread off the cores past 50 ms;
- the GIL switch interval is 1 ms while jobs exist (:data:`GIL_SWITCH_S`), so the GUI thread
  gets the interpreter back quickly after each Qt call;
- Python's cyclic garbage collector runs on the GUI thread only, in small steps
  (:mod:`visualizer.ui.jobs.gui_gc`): left automatic, a worker could collect a dead window's cycle
  and run QWidget destructors off the GUI thread, which deadlocked PySide6 6.12.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from visualizer.core.errors import first_line
from visualizer.core.tasks import STEP_LOCK, Step
from visualizer.ui.jobs.gui_gc import collect_on_gui_thread

PROGRESS_INTERVAL = 0.05  # seconds between progress records of one job
POLL_MS = 10  # how often the GUI thread drains the queue while jobs run
DRAIN_BUDGET = 0.02  # seconds of result handling per drain, so the loop never stalls on a burst

JobFactory = Callable[[], Generator[Step, None, Any]]
GIL_SWITCH_S = 0.001
HOLD_MAX_MS = 300  # the longest JobRunner.hold keeps jobs waiting
HOLD_POLL_MS = 2  # the hold's idle test: a pass of the event loop this quick means no repaint left
HOLD_IDLE_PASSES = 3
LONG_HOLD_S = 0.05  # a step holding STEP_LOCK's shared side longer than this is recorded (shared_holds)
LOCK_WAIT_S = 0.001  # a step waiting longer than this for STEP_LOCK is recorded (lock_waits)
MAX_HOLDS_KEPT = 200


@dataclass
class Job:
    """One submitted job: its id, kind and callbacks (called in the GUI thread)."""

    id: int
    kind: str
    title: str
    on_result: Callable[[Any], None] | None = None
    on_partial: Callable[[Any], None] | None = None
    on_error: Callable[[str], None] | None = None
    on_cancel: Callable[[], None] | None = None
    origin: Any = None  # core.provenance.Provenance of the state the job reads (None: any state)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    stage: str = ""
    fraction: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()


def failure_text(title: str, message: str) -> str:
    """'title: message', the file's name said once: 'reading a.pviz' failing with
    'a.pviz: is a session' read 'reading a.pviz: a.pviz: is a session'."""
    head, sep, rest = message.partition(": ")
    if sep and head and title.endswith(head):
        return f"{title}: {rest}"
    return f"{title}: {message}"


OOM_ADVICE = "lower the batch size, the number of batches or the Lanczos steps, or choose the CPU"


def user_message(exc: BaseException) -> str:
    """One readable line for an exception raised by a job (CUDA out of memory: what to lower)."""
    if is_out_of_memory(exc):
        return f"out of GPU memory: {OOM_ADVICE}"
    known = ("ModelLoadError", "MaskError", "DataError", "ValueError", "FileNotFoundError", "SessionError")
    expected = type(exc).__name__ in known or isinstance(exc, OSError)
    return first_line(exc, with_type=not expected)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA out-of-memory error (the job ends; the window and its model stay)."""
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


WORKER_NICE = 5  # how much lower a job thread's CPU priority is than the GUI thread's (Linux)


def lower_thread_priority() -> None:
    """Give this (worker) thread a lower CPU priority than the GUI thread. Jobs now step side by
    side (the step lock's shared side), so on a busy machine two Python-heavy workers and the GUI
    thread compete for the cores and for the GIL: the GUI thread, woken for its GIL turn, waited
    for a core and the event loop missed 50 ms (bench_ui). Linux schedules each thread as a task,
    so ``setpriority`` on the thread's id lowers this thread alone; elsewhere nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE)
    except OSError:  # not permitted in this sandbox or container: priorities stay equal
        pass


def release_gpu_cache() -> None:
    """Hand the cached blocks of a failed job back to the device, so the next job can use them."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class JobRunner(QObject):
    """Runs jobs in worker threads and reports back on the GUI thread.

    Signals (GUI thread): ``started(job_id, kind, title)``, ``progress(job_id, stage, fraction)``,
    ``finished(job_id, kind, status)`` with status ``ok|error|cancelled``, ``failed(kind, message)``.
    With ``synchronous=True`` (screenshots, scripts) jobs run to the end inside :meth:`submit`.
    """

    started = Signal(int, str, str)
    progress = Signal(int, str, float)
    finished = Signal(int, str, str)
    failed = Signal(str, str)

    def __init__(self, parent: QObject | None = None, synchronous: bool = False) -> None:
        super().__init__(parent)
        self.synchronous = synchronous
        if not synchronous:
            collect_on_gui_thread(self.is_running)  # before any worker thread exists
            # Every Qt call the GUI thread makes releases the GIL; a busy worker then keeps it for
            # up to the switch interval before the GUI thread gets it back, so a slot making
            # twenty Qt calls could wait 100 ms. 1 ms instead of CPython's 5 ms: worst gaps while
            # a job runs (bench_ui) fell from 24-80 ms to 12-48 ms, jobs no slower.
            sys.setswitchinterval(GIL_SWITCH_S)
        self._ids = itertools.count(1)
        self._active: dict[str, Job] = {}  # kind -> running job
        self._jobs: dict[int, Job] = {}  # id -> job, until its end reached the GUI thread
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.apply_times: list[tuple[str, float]] = []  # (kind, seconds) installing results: GUI-thread cost
        # (kind, stage, seconds) of steps that held STEP_LOCK's shared side over LONG_HOLD_S, the
        # latest MAX_HOLDS_KEPT: a long step delays only a tracer waiting for the exclusive side
        self.shared_holds: collections.deque[tuple[str, str, float]] = collections.deque(maxlen=MAX_HOLDS_KEPT)
        # (kind, stage, seconds) a step waited for STEP_LOCK (behind an exclusive section) over LOCK_WAIT_S
        self.lock_waits: collections.deque[tuple[str, str, float]] = collections.deque(maxlen=MAX_HOLDS_KEPT)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.drain)
        self._gate = threading.Event()  # set: jobs may step; cleared by hold()
        self._gate.set()
        self._release = QTimer(self)
        self._release.setInterval(HOLD_POLL_MS)
        self._release.timeout.connect(self._release_when_idle)
        self._hold_until = 0.0
        self._idle_passes = 0
        self._last_pass = 0.0

    @property
    def long_holds(self) -> collections.deque[tuple[str, str, float]]:
        """(thread, label, seconds) of exclusive holds of STEP_LOCK over 50 ms (the process's, kept
        by the lock; bench_ui prints the worst): while one lasts, every job waits."""
        return STEP_LOCK.long_holds

    def hold(self) -> None:
        """Keep every job (running or submitted meanwhile) at its next step until the GUI thread
        has finished the burst of work it is about to start (a model change rebuilds and repaints
        the window) — until the event loop turns over freely again (three passes of its
        ``HOLD_POLL_MS`` timer each within a few ms), at most ``HOLD_MAX_MS``. Pure-Python jobs
        would otherwise share the GIL with that repaint and stretch it past 50 ms. Cancel and
        shutdown still work: a held job checks for them when released."""
        if self.synchronous:
            return
        self._gate.clear()
        now = time.monotonic()
        self._hold_until = now + HOLD_MAX_MS / 1000
        self._idle_passes = 0
        self._last_pass = now
        self._release.start()

    def _release_when_idle(self) -> None:
        now = time.monotonic()
        quick = now - self._last_pass < 4 * HOLD_POLL_MS / 1000
        self._idle_passes = self._idle_passes + 1 if quick else 0
        self._last_pass = now
        if self._idle_passes >= HOLD_IDLE_PASSES or now >= self._hold_until:
            self._release.stop()
            self._gate.set()

    # --- public API -----------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        title: str,
        factory: JobFactory,
        on_result: Callable[[Any], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        origin: Any = None,
    ) -> Job:
        """Start ``factory()`` (called in the worker) as a job of ``kind``; supersede the old one.
        ``origin``: the provenance of the state it reads (see :meth:`retire`)."""
        self.cancel(kind)
        job = Job(next(self._ids), kind, title, on_result, on_partial, on_error, on_cancel, origin)
        self._jobs[job.id] = job
        self._active[kind] = job
        self.started.emit(job.id, kind, title)
        if self.synchronous:
            self._work(job, factory, synchronous=True)
            return job
        job.thread = threading.Thread(
            target=self._work, args=(job, factory), name=f"pruneviz-job-{kind}-{job.id}", daemon=True
        )
        job.thread.start()
        if not self._timer.isActive():
            self._timer.start()
        return job

    def cancel(self, kind: str | None = None) -> None:
        """Cancel the running job of ``kind`` (all jobs when None). Its result is discarded."""
        kinds = list(self._active) if kind is None else [kind]
        for k in kinds:
            job = self._active.pop(k, None)
            if job is not None:
                job.stop.set()
                self.finished.emit(job.id, job.kind, "cancelled")
                if job.on_cancel is not None:
                    job.on_cancel()

    def retire(self, shown) -> list[str]:
        """Cancel every job whose origin no longer describes ``shown`` (the state's current
        core.provenance.Provenance): the one rule a model or dataset change applies to the jobs
        of the old state. Their results and partial results are dropped. Returns their kinds."""
        stale = [k for k, job in self._active.items()
                 if job.origin is not None and not job.origin.current_under(shown)]
        for kind in stale:
            self.cancel(kind)
        return stale

    def is_running(self, kind: str | None = None) -> bool:
        if kind is None:
            return bool(self._active)
        return kind in self._active

    def running(self) -> list[Job]:
        return list(self._active.values())

    def threads(self) -> list[threading.Thread]:
        """Worker threads still alive (cancelled ones included, until they reach a yield)."""
        return [j.thread for j in self._jobs.values() if j.thread is not None and j.thread.is_alive()]

    def shutdown(self, wait: float = 1.5) -> bool:
        """Cancel everything and wait up to ``wait`` s in total; True when all threads ended."""
        self.cancel()
        self._gate.set()
        deadline = time.monotonic() + wait
        for t in self.threads():
            t.join(max(0.0, deadline - time.monotonic()))
        return not self.threads()

    # --- worker side ----------------------------------------------------------------------
    def _work(self, job: Job, factory: JobFactory, synchronous: bool = False) -> None:
        last = 0.0
        gen = None
        if not synchronous:
            lower_thread_priority()
        try:
            self._wait_gate(synchronous)
            if job.cancelled:
                self._emit_done(job, "cancelled", None, synchronous)
                return
            with STEP_LOCK.shared():
                gen = factory()
            stage, held = "(start)", 0.0
            while True:
                self._wait_gate(synchronous)
                if job.cancelled:
                    with STEP_LOCK.shared():
                        gen.close()  # GeneratorExit at the paused yield: finally blocks run here
                    self._emit_done(job, "cancelled", None, synchronous)
                    return
                try:
                    asked = time.perf_counter()
                    with STEP_LOCK.shared():
                        t0 = time.perf_counter()
                        if t0 - asked > LOCK_WAIT_S:
                            self.lock_waits.append((job.kind, stage, t0 - asked))
                        try:
                            step = next(gen)
                        finally:
                            held = time.perf_counter() - t0
                    if held > LONG_HOLD_S:
                        self.shared_holds.append((job.kind, f"{stage} -> {step.stage}", held))
                except StopIteration as stop:
                    if held > LONG_HOLD_S:
                        self.shared_holds.append((job.kind, f"{stage} -> (end)", held))
                    result = stop.value
                    break
                stage = step.stage
                if step.partial is not None:
                    self._emit_partial(job, step.partial, synchronous)
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL or step.fraction >= 1.0:
                    last = now
                    self._emit_step(job, step, synchronous)
            self._emit_done(job, "ok", result, synchronous)
        except BaseException as exc:  # any failure of user code or data becomes a message
            if gen is not None:
                with STEP_LOCK.shared():
                    gen.close()
            detail = traceback.format_exc(limit=-3)
            if is_out_of_memory(exc):
                # the traceback's frames hold the job's device tensors: drop them, then free the cache
                traceback.clear_frames(exc.__traceback__)
                gen = None
                release_gpu_cache()
            self._emit_done(job, "error", (user_message(exc), detail), synchronous)

    def _wait_gate(self, synchronous: bool) -> None:
        # bounded: a GUI thread that stopped running its timers must not park jobs for ever
        if not synchronous:
            self._gate.wait(timeout=2 * HOLD_MAX_MS / 1000)

    def _emit_step(self, job: Job, step: Step, synchronous: bool) -> None:
        if synchronous:
            self._on_step(job.id, step.stage, float(step.fraction))
        else:
            self._queue.put(("step", job.id, (step.stage, float(step.fraction))))

    def _emit_partial(self, job: Job, partial: Any, synchronous: bool) -> None:
        if synchronous:
            self._on_partial(job.id, partial)
        else:
            self._queue.put(("partial", job.id, partial))

    def _emit_done(self, job: Job, status: str, payload: Any, synchronous: bool) -> None:
        if synchronous:
            self._on_done(job.id, status, payload)
        else:
            self._queue.put(("done", job.id, (status, payload)))

    def drain(self) -> None:
        """Deliver what the workers queued (GUI thread). Progress records of one job are
        coalesced to the latest; handling stops after DRAIN_BUDGET and resumes next tick."""
        deadline = time.monotonic() + DRAIN_BUDGET
        latest_step: dict[int, tuple[str, float]] = {}
        while time.monotonic() < deadline:
            try:
                kind, job_id, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "step":
                latest_step[job_id] = payload
            elif kind == "partial":
                self._on_partial(job_id, payload)
            else:
                if job_id in latest_step:
                    self._on_step(job_id, *latest_step.pop(job_id))
                self._on_done(job_id, *payload)
        for job_id, (stage, fraction) in latest_step.items():
            self._on_step(job_id, stage, fraction)
        if not self._jobs and self._queue.empty():
            self._timer.stop()

    # --- GUI side -------------------------------------------------------------------------
    def _current(self, job_id: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.cancelled or self._active.get(job.kind) is not job:
            return None
        return job

    def _on_step(self, job_id: int, stage: str, fraction: float) -> None:
        job = self._current(job_id)
        if job is not None:
            job.stage, job.fraction = stage, fraction
            self.progress.emit(job_id, stage, fraction)

    def _on_partial(self, job_id: int, partial: Any) -> None:
        job = self._current(job_id)
        if job is not None and job.on_partial is not None:
            job.on_partial(partial)

    def _on_done(self, job_id: int, status: str, payload: Any) -> None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        current = self._active.get(job.kind) is job and not job.cancelled
        if not current:
            return  # superseded or cancelled: cancel() already reported it
        del self._active[job.kind]
        if status == "ok":
            try:
                if job.on_result is not None:
                    t0 = time.perf_counter()
                    job.on_result(payload)
                    self.apply_times.append((job.kind, time.perf_counter() - t0))
            except Exception as exc:  # a bug applying the result must not kill the app
                self.failed.emit(job.kind, f"{job.title}: {user_message(exc)}")
                self.finished.emit(job_id, job.kind, "error")
                return
            self.finished.emit(job_id, job.kind, "ok")
        elif status == "error":
            message, _detail = payload
            if job.on_error is not None:
                job.on_error(message)
            self.failed.emit(job.kind, failure_text(job.title, message))
            self.finished.emit(job_id, job.kind, "error")
        else:
            self.finished.emit(job_id, job.kind, "cancelled")
