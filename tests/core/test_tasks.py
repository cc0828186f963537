"""core.tasks.time_budget: stopping one long pure-Python call, and never anything after it."""

from __future__ import annotations

import threading
import time

import pytest

from visualizer.core.tasks import TimeBudgetExceeded, time_budget


def test_a_python_loop_is_stopped_at_its_budget():
    t0 = time.monotonic()
    with pytest.raises(TimeBudgetExceeded):
        with time_budget(0.2):
            while True:
                pass
    assert 0.15 < time.monotonic() - t0 < 2.0


def test_a_loop_that_swallows_the_first_shot_is_stopped_all_the_same():
    """Library code with a broad ``except Exception`` drops one shot; the next one lands."""
    caught = 0
    with pytest.raises(TimeBudgetExceeded):
        with time_budget(0.1):
            while True:
                try:
                    while True:
                        pass
                except TimeBudgetExceeded:
                    caught += 1
                    if caught >= 2:
                        raise
    assert caught == 2


def test_nothing_arrives_after_a_block_that_finished_in_time():
    with time_budget(0.15):
        time.sleep(0.05)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.6:  # past the budget: no stray exception in this thread
        pass
    assert not [t for t in threading.enumerate() if t.name == "pruneviz-time-budget"]
