"""Jobs as the user meets them: cancel, supersede, errors, closing the window, event-loop stalls."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from tests.ui.conftest import wait_idle
from visualizer.core.tasks import Step
from visualizer.ui.jobs import actions


def _job_threads():
    return [t for t in threading.enumerate() if t.name.startswith("pruneviz-job")]


@pytest.fixture
def slow_ranking(monkeypatch):
    """Ranking by 'random' takes until it is cancelled (at most 10 s), then finishes for real."""
    real = actions.rank_job
    started = threading.Event()

    def slow(model, dataset, criterion, *args, **kwargs):
        if criterion != "random":
            return (yield from real(model, dataset, criterion, *args, **kwargs))
        started.set()
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 10:
            i += 1
            yield Step(f"thinking {i}", min(0.5, i / 1000))
            time.sleep(0.005)
        return (yield from real(model, dataset, criterion, *args, **kwargs))

    monkeypatch.setattr(actions, "rank_job", slow)
    return started


def test_cancel_leaves_state_unchanged_and_no_thread(qtbot, window, slow_ranking):
    s = window.state
    window.pruning_panel.set_density(0.2)
    masks_before, rankings_before = s.masks, dict(s.rankings)
    kept_before = masks_before.kept()
    window.pruning_panel.set_settings(criterion="random")  # starts the (slow) ranking job
    assert slow_ranking.wait(5)
    qtbot.waitUntil(lambda: window.cancel_button.isVisible(), timeout=3000)
    qtbot.mouseClick(window.cancel_button, __import__("PySide6.QtCore").QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not _job_threads(), timeout=3000)
    assert not window.jobs.is_running()
    assert s.masks is masks_before and s.masks.kept() == kept_before
    assert s.rankings == rankings_before and ("random", "global", "unstructured") not in s.rankings
    assert window.stage_label.text() == "cancelled"
    assert window.message() == ""


def test_new_request_supersedes_old(qtbot, window):
    window.pruning_panel.set_settings(criterion="random")
    window.pruning_panel.set_settings(criterion="magnitude", scope="layer")
    wait_idle(qtbot, window)
    assert ("magnitude", "layer", "unstructured") in window.state.rankings
    assert ("random", "global", "unstructured") not in window.state.rankings  # superseded, dropped
    # per-layer scope: every layer at the slider's density
    window.pruning_panel.set_density(0.25)
    for ld in window.state.masks.layers():
        assert ld.kept == int(0.25 * ld.total)


def test_error_is_a_message_and_app_keeps_working(qtbot, window):
    window.request_load("no-such-model")
    wait_idle(qtbot, window)
    assert "unknown model 'no-such-model'" in window.message()
    assert window.state.loaded.ref == "lenet"  # the old model stays
    window.pruning_panel.set_density(0.5)
    assert window.state.masks.kept() == int(0.5 * window.state.masks.total())


def test_close_during_job_exits_quickly(qtbot, slow_ranking, window):
    w = window
    w.pruning_panel.set_settings(criterion="random")
    assert slow_ranking.wait(5)
    t0 = time.monotonic()
    assert w.close()
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"closing took {elapsed:.2f} s"
    qtbot.waitUntil(lambda: not _job_threads(), timeout=2000)


def test_event_loop_probe_during_ranking(qtbot, window):
    """A 5 ms timer probe records the event loop's gaps while SNIP ranks in the
    background. Timings on a shared machine are noisy, so this reports the stalls rather than
    asserting a bound; tests/benchmarks/bench_ui.py prints the worst stall."""
    from tests.ui.probe import StallProbe

    probe = StallProbe(interval_ms=5)
    probe.start()
    window.pruning_panel.set_settings(criterion="snip")
    wait_idle(qtbot, window, timeout=60000)
    window.pruning_panel.set_density(0.05)
    qtbot.wait(100)  # the probe ticks however quickly the ranking itself finished
    probe.stop()
    assert ("snip", "global", "unstructured") in window.state.rankings
    assert probe.ticks > 3, "the timer probe never ran: the event loop was blocked"
    print(f"\nevent-loop probe during SNIP ranking: {probe.report()}")


def test_cyclic_garbage_is_collected_on_the_gui_thread_only(qtbot, window):
    """Automatic GC is off while the window runs jobs (a worker collecting a dead window's cycle
    ran Qt destructors off the GUI thread and deadlocked); the GUI thread's timer collects."""
    import gc
    import weakref

    from PySide6.QtCore import QObject

    assert not gc.isenabled()
    collected_in: list[str] = []

    class Cyclic(QObject):
        def __del__(self):
            collected_in.append(threading.current_thread().name)

    obj = Cyclic()
    obj.me = obj  # a reference cycle only the cyclic collector can free
    ref = weakref.ref(obj)
    del obj

    def churn():  # allocations in a worker would have triggered an automatic collection
        for _ in range(20):
            _ = [[i] for i in range(10_000)]

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    assert ref() is not None, "collected in the worker thread"
    keep = [[] for _ in range(2 * gc.get_threshold()[0])]  # generation 0 past its threshold
    qtbot.waitUntil(lambda: ref() is None, timeout=5000)
    del keep
    assert collected_in == [threading.main_thread().name]


def test_full_collections_wait_until_no_job_runs(qtbot, window, slow_ranking):
    """A full collection (up to ~300 ms with torch and Qt loaded) never runs while a job does: it
    waits until no job has run for QUIET_S."""
    from visualizer.ui.jobs import gui_gc

    collector = gui_gc._collector
    assert collector is not None
    done = collector.full_collections
    window.pruning_panel.set_settings(criterion="random")  # the slow ranking job
    assert slow_ranking.wait(5)
    collector.full_pending = True
    qtbot.wait(200)  # ten ticks while the job runs
    assert collector.full_collections == done and collector.full_pending
    window.jobs.cancel("rank")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: collector.full_collections == done + 1, timeout=int(gui_gc.QUIET_S * 1000) + 3000)
    assert not collector.full_pending


def test_choosing_a_dataset_the_model_cannot_read_keeps_the_old_one(qtbot, window):
    """LeNet given the token sequences: one line in the window naming both, the digits stay."""
    box = window.model_panel.data_box
    index = box.findData("sequence")
    assert index >= 0
    box.setCurrentIndex(index)
    box.activated.emit(index)  # what choosing the entry with mouse or keyboard emits
    wait_idle(qtbot, window)
    assert "lenet cannot read sequence" in window.message()
    assert window.state.dataset.name == "digits"
    assert box.currentData() == ""  # back on "(model's own)": a later Load would not fail again
    box.setCurrentIndex(box.findData("digits"))
    box.activated.emit(box.currentIndex())
    wait_idle(qtbot, window)
    assert window.state.dataset.name == "digits"


def test_a_failed_file_job_names_the_file_once():
    from visualizer.ui.jobs.runner import failure_text

    assert failure_text("reading a.pviz", "a.pviz: is a pruneviz session, not a mask") == \
        "reading a.pviz: is a pruneviz session, not a mask"
    assert failure_text("ranking", "scores contain NaN") == "ranking: scores contain NaN"


def test_gpu_out_of_memory_ends_the_job_and_keeps_the_model(qtbot, window, monkeypatch):
    """A job that runs out of CUDA memory ends with one line saying what to lower; the window
    and its loaded model stay (torch raises the same error type with or without a GPU)."""
    import torch

    real = actions.rank_job

    def oom(model, dataset, criterion, *args, **kwargs):
        if criterion != "random":
            return (yield from real(model, dataset, criterion, *args, **kwargs))
        yield Step("scoring", 0.1)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(actions, "rank_job", oom)
    loaded = window.state.loaded
    window.pruning_panel.set_settings(criterion="random")
    wait_idle(qtbot, window)
    assert "out of GPU memory: lower the batch size" in window.message()
    assert "\n" not in window.message()
    assert window.state.loaded is loaded
    window.pruning_panel.set_settings(criterion="magnitude")
    wait_idle(qtbot, window)
    assert ("magnitude", "global", "unstructured") in window.state.rankings


def test_retire_cancels_the_jobs_of_an_old_state_whatever_their_kind(qtbot):
    """One rule, no list of kinds: jobs whose origin is no longer current are cancelled, jobs
    of the current state and jobs without an origin go on."""
    from visualizer.core.provenance import Provenance, next_version
    from visualizer.ui.jobs.runner import JobRunner

    runner = JobRunner()
    gate = threading.Event()

    def waiting():
        while not gate.is_set():
            yield Step("waiting", 0.0)
            time.sleep(0.002)
        return "done"

    m, d = next_version(), next_version()
    results = []
    runner.submit("anything", "old model", waiting, on_result=results.append, origin=Provenance("a", m, "x", d))
    runner.submit("reads-no-data", "weights only", waiting, on_result=results.append, origin=Provenance("a", m))
    runner.submit("no-origin", "a lab", waiting, on_result=results.append)
    new_data = Provenance("a", m, "y", next_version())
    assert runner.retire(new_data) == ["anything"]
    assert sorted(j.kind for j in runner.running()) == ["no-origin", "reads-no-data"]
    assert runner.retire(Provenance("b", next_version())) == ["reads-no-data"]
    gate.set()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=10000)
    assert results == ["done"]
    runner.shutdown(1.0)


def test_two_jobs_step_at_the_same_time(qtbot):
    """Job steps share the step lock: one job's step waits inside the step for an event that only
    the other job's step sets. With one job stepping at a time (the old global lock) the first
    step never ends (its wait runs out and the job reports False)."""
    from visualizer.ui.jobs.runner import JobRunner

    runner = JobRunner()
    in_step, set_by_other = threading.Event(), threading.Event()
    results = []

    def waiter():
        yield Step("start", 0.0)
        in_step.set()
        return set_by_other.wait(10.0)  # inside one step: between two yields

    def setter():
        yield Step("start", 0.0)
        in_step.wait(10.0)
        set_by_other.set()
        return True

    runner.submit("first", "waits", waiter, on_result=results.append)
    runner.submit("second", "sets", setter, on_result=results.append)
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=30000)
    assert results == [True, True]
    runner.shutdown(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's (a no-op elsewhere)")
def test_job_threads_run_at_a_lower_cpu_priority_than_the_gui_thread(qtbot):
    """With jobs stepping side by side, two busy workers kept the GUI thread off the cores long
    enough to miss 50 ms (bench_ui); a worker now runs at WORKER_NICE above the GUI thread."""
    from visualizer.ui.jobs.runner import WORKER_NICE, JobRunner

    runner = JobRunner()
    seen = []

    def job():
        yield Step("start", 0.0)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    runner.submit("nice", "priority", job, on_result=seen.append)
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=10000)
    assert seen == [min(gui + WORKER_NICE, 19)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui  # the GUI thread's is unchanged
    runner.shutdown(1.0)


def test_a_tracing_step_excludes_other_jobs_and_its_long_hold_is_recorded(qtbot):
    """A step that enters core.tasks.exclusive (what fx tracing does) runs alone: another job's
    steps do not run meanwhile; the runner's long_holds lists that exclusive hold by its label."""
    from visualizer.core.tasks import exclusive
    from visualizer.ui.jobs.runner import JobRunner

    runner = JobRunner()
    runner.long_holds.clear()
    stop = threading.Event()
    overlapped = []
    tracing = threading.Event()

    def tracer():
        yield Step("start", 0.0)
        with exclusive("test trace"):
            tracing.set()
            time.sleep(0.1)  # the other job would step many times meanwhile (no time is asserted)
            tracing.clear()
        stop.set()
        return "traced"

    def stepper():
        while not stop.is_set():
            overlapped.append(tracing.is_set())
            yield Step("stepping", 0.5)
            time.sleep(0.001)
        return "stepped"

    results = []
    runner.submit("stepper", "steps", stepper, on_result=results.append)
    runner.submit("tracer", "traces", tracer, on_result=results.append)
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=30000)
    assert sorted(results) == ["stepped", "traced"]
    assert overlapped and not any(overlapped)
    assert "test trace" in [label for _who, label, _s in runner.long_holds]
    runner.shutdown(1.0)
