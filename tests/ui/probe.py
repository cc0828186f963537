"""A timer probe measuring how long the event loop goes without running a 5 ms timer."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer


class StallProbe:
    def __init__(self, interval_ms: int = 5, stall_ms: float = 50.0) -> None:
        self.interval = interval_ms
        self.stall_ms = stall_ms
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None
        self.ticks = 0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000.0)
        self._last = now
        self.ticks += 1

    def stop(self) -> None:
        self.timer.stop()

    @property
    def worst_ms(self) -> float:
        return max(self.gaps, default=0.0)

    def stalls(self) -> int:
        return sum(1 for g in self.gaps if g > self.stall_ms)

    def report(self) -> str:
        return (f"{self.ticks} ticks, worst gap {self.worst_ms:.1f} ms, "
                f"{self.stalls()} gaps > {self.stall_ms:.0f} ms")
