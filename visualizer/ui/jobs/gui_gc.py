"""Python's cyclic garbage collector, run on the GUI thread in small steps.

Why not CPython's automatic collection: it runs in whichever thread happens to allocate, so a
worker could collect a dead window's reference cycle and run QWidget destructors off the GUI
thread. With PySide6 6.12 that deadlocked the process (worker in ``~QMenu`` waiting for the GIL,
GUI thread holding it and waiting for a QObject mutex; stacks taken with py-spy from a hung UI
test run).

Why not pyqtgraph's ``GarbageCollector`` (which also collects on a GUI timer): it runs a full
collection after every ten young ones. With torch, Qt and a model loaded the heap is large and a
full collection takes a few hundred milliseconds (docs/performance.md), so training stalled the
window every few seconds. This collector instead

- collects generations 0 and 1 on CPython's thresholds, checked every ``INTERVAL_MS`` so that each
  young collection stays small (a training worker allocates objects quickly);
- freezes the start-up heap (``gc.freeze``: modules, classes, Qt wrappers; they live as long as the
  process) once, unscanned, so later full collections only scan what was made after it;
- freezes, unscanned, a burst of allocations too large for one tick (imports, model builds);
- defers full collections until the app is quiet (no job for ``QUIET_S``, no mouse button held),
  and freezes their survivors, so each full pass scans only what is new since the last one;
- once the frozen generation has doubled, makes one complete pass (at a quiet moment) so that cyclic garbage parked there is freed: memory held by dead cycles stays
  bounded by that margin. Acyclic objects are always freed at once by reference counting.

Measured with ``tests/benchmarks/bench_ui.py`` (worst event-loop gap while jobs run); the numbers
are in docs/performance.md.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

INTERVAL_MS = 20  # young collections this often at most
BURST = 10  # a generation 0 this many thresholds deep is frozen unscanned
QUIET_S = 2.0  # full passes wait until no job has run for this long
REBASE = 2.0  # a complete pass (frozen objects too) once the frozen generation has doubled


class GuiCollector(QObject):
    """Owns cyclic collection while installed; ``busy()`` says whether a job is running."""

    def __init__(self, busy: Callable[[], bool], interval_ms: int = INTERVAL_MS) -> None:
        super().__init__()
        self.busy = busy
        self.thresholds = gc.get_threshold()
        self.full_pending = False  # generation 2's threshold was reached while busy
        self.full_collections = 0
        self.full_seconds: list[float] = []  # duration of each full pass (bench_ui prints them)
        self._last_busy = time.monotonic()
        gc.disable()
        # The start-up heap, frozen unscanned: out of every later full collection's way. Not
        # collected first: that pass cost 180 ms of start-up; what garbage it holds is freed by
        # the first complete pass.
        gc.freeze()
        self.baseline = gc.get_freeze_count()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self) -> None:
        count0, count1, count2 = gc.get_count()
        t0, t1, t2 = self.thresholds
        if count0 > BURST * t0:
            # An import or a model build allocated faster than a 20 ms tick can scan (a gen-0
            # pass over such a burst took 47 ms, the gen-1 after it 92 ms): such objects are
            # mostly long-lived, so park them in the frozen generation unscanned, and look again
            # at the next idle moment.
            gc.freeze()
            self.full_pending = True
        elif count0 > t0:
            gc.collect(0)
            if count1 + 1 > t1:  # this gen-0 pass counts toward generation 1's threshold
                gc.collect(1)
                if count2 + 1 > t2:
                    self.full_pending = True
        if self.busy():
            self._last_busy = time.monotonic()
        elif self.full_pending and self._quiet():
            self.collect_full()

    def collect_full(self) -> None:
        """A full pass over what is not frozen, then freeze the survivors (they have proved
        long-lived). When the frozen generation has grown by ``REBASE`` since the last complete
        pass, unfreeze and scan everything once, so cyclic garbage parked there is freed too."""
        start = time.perf_counter()
        complete = gc.get_freeze_count() > REBASE * self.baseline
        if complete:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.full_seconds.append(time.perf_counter() - start)
        if complete:  # the next complete pass waits until the frozen heap doubles again
            self.baseline = gc.get_freeze_count()
        self.full_pending = False
        self.full_collections += 1

    def _quiet(self) -> bool:
        """No job for ``QUIET_S`` and no mouse button held (a slider drag)."""
        if time.monotonic() - self._last_busy < QUIET_S:
            return False
        return QApplication.instance() is None or QApplication.mouseButtons() == Qt.MouseButton.NoButton

    def stop(self) -> None:
        self.timer.stop()
        gc.unfreeze()
        gc.enable()


_collector: GuiCollector | None = None
_busy_checks: list[weakref.WeakMethod] = []  # weak: a closed window's runner must not live on


def _any_busy() -> bool:
    alive = [ref for ref in _busy_checks if ref() is not None]
    _busy_checks[:] = alive
    return any(ref()() for ref in alive)


def collect_on_gui_thread(busy) -> GuiCollector:
    """Install the collector (once per process) and register one more ``busy`` check, a bound
    method such as a job runner's ``is_running`` (held weakly). Call on the GUI thread before
    any worker thread starts."""
    global _collector
    _busy_checks.append(weakref.WeakMethod(busy))
    if _collector is None:
        _collector = GuiCollector(_any_busy)
    return _collector


def restore_automatic_gc() -> None:
    """Stop collecting on the GUI thread and give collection back to CPython (tests, shutdown)."""
    global _collector
    if _collector is not None:
        _collector.stop()
        _collector = None
    _busy_checks.clear()
    gc.enable()
