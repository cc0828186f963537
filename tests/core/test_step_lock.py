"""core.tasks.StepLock: job steps share the lock and run side by side, a tracer's exclusive
section excludes them, and the calls that change a module for one call do it on a private view
(core.layers.private_view), so a forward pass in another job's step reads the model unchanged."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import torch
from torch import nn

from visualizer.core.layers import private_view
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.tasks import STEP_LOCK, StepLock, exclusive

TRACES = 12
WAIT_S = 10.0  # generous: only a deadlock or a broken lock reaches it


def _threads(*targets) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def _joined(threads) -> bool:
    for t in threads:
        t.join(WAIT_S)
    return not any(t.is_alive() for t in threads)


def test_two_shared_holders_run_at_once():
    """One step waits inside the lock for an event that only the other step, also inside the
    lock, sets: a lock that lets one step in at a time (the old global RLock) never finishes."""
    lock = StepLock()
    set_by_second = threading.Event()
    seen = []

    def first():
        with lock.shared():
            seen.append(set_by_second.wait(WAIT_S))

    def second():
        with lock.shared():
            set_by_second.set()

    assert _joined(_threads(first, second))
    assert seen == [True]


def test_an_exclusive_section_excludes_a_concurrent_step():
    lock = StepLock()
    order: list[str] = []
    inside, asking = threading.Event(), threading.Event()

    def writer():
        with lock.exclusive("trace"):
            inside.set()
            asking.wait(WAIT_S)
            time.sleep(0.05)  # give the step the chance to get in wrongly (no time is asserted)
            order.append("trace done")

    def step():
        inside.wait(WAIT_S)
        asking.set()
        with lock.shared():
            order.append("step")

    assert _joined(_threads(writer, step))
    assert order == ["trace done", "step"]


def test_a_waiting_tracer_is_not_starved_and_steps_wait_behind_it():
    """A step holds the shared side; a tracer asks for the exclusive side; a later step waits
    behind the tracer (it would otherwise keep the tracer out for ever in a stream of steps)."""
    lock = StepLock()
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def first_step():
        with lock.shared():
            first_in.set()
            release_first.wait(WAIT_S)
            order.append("first step")

    def tracer():
        with lock.exclusive():
            order.append("trace")

    def later_step():
        with lock.shared():
            order.append("later step")

    a = _threads(first_step)
    first_in.wait(WAIT_S)
    b = _threads(tracer)
    while not lock._writers_waiting:  # the tracer is queued
        time.sleep(0.001)
    c = _threads(later_step)
    time.sleep(0.05)
    release_first.set()
    assert _joined(a + b + c)
    assert order == ["first step", "trace", "later step"]


def test_steps_that_trace_inside_their_shared_hold_do_not_deadlock():
    """Two steps, each holding the shared side, both ask for the exclusive side (a tracer called
    from a job step): each lets go of its shared hold while it waits, so both finish, one after
    the other, and each has its shared side back afterwards."""
    lock = StepLock()
    both_in = threading.Barrier(2, timeout=WAIT_S)
    held_after = []

    def step():
        with lock.shared():
            both_in.wait()
            with lock.exclusive():
                with lock.exclusive():  # nested: the same hold
                    assert lock.held_exclusive()
                with lock.shared():  # a shared call inside the exclusive section
                    pass
            held_after.append(threading.get_ident() in lock._readers)

    assert _joined(_threads(step, step))
    assert held_after == [True, True]
    assert not lock._readers and lock._writer is None


def test_long_exclusive_holds_are_recorded_with_their_label():
    lock = StepLock()
    with lock.exclusive("quick"):
        pass
    with lock.exclusive("slow"):
        time.sleep(0.08)
    assert [label for _who, label, _s in lock.long_holds] == ["slow"]


class _GateState:
    """Shared by a module and its copies (a private view copies the module objects)."""

    def __init__(self) -> None:
        self.blocked_in: int | None = None
        self.reached, self.release = threading.Event(), threading.Event()

    def __deepcopy__(self, memo):
        return self


class _Gate(nn.Module):
    """Waits in the thread ``blocked_in`` until ``release`` is set: holds that thread inside its
    forward pass (inside functional_call, with its hooks on) while another thread runs."""

    def __init__(self) -> None:
        super().__init__()
        self.state = _GateState()

    def __getattr__(self, name):
        if name in ("blocked_in", "reached", "release"):
            return getattr(self.state, name)
        return super().__getattr__(name)

    def __setattr__(self, name, value):
        if name == "blocked_in":
            self.state.blocked_in = value
        else:
            super().__setattr__(name, value)

    def forward(self, x):
        if threading.get_ident() == self.state.blocked_in:
            self.state.reached.set()
            self.state.release.wait(WAIT_S)
        return x


def _gated_model() -> tuple[nn.Module, _Gate]:
    torch.manual_seed(0)
    gate = _Gate()
    return nn.Sequential(nn.Linear(6, 5), gate, nn.ReLU(), nn.Linear(5, 3)).eval(), gate


def _while_inside(model, gate: _Gate, work) -> torch.Tensor:
    """Run ``work`` in a job step of one thread; while it is stopped inside the model's forward
    pass, run the dense model in a job step of this thread and return that output."""
    x = torch.randn(4, 6)
    failures: list[BaseException] = []

    def job():
        gate.blocked_in = threading.get_ident()
        try:
            with STEP_LOCK.shared():
                work(model)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
            gate.reached.set()

    t = _threads(job)[0]
    assert gate.reached.wait(WAIT_S), "the job never reached the gate"
    try:
        with STEP_LOCK.shared(), torch.no_grad():
            out = model(x)
    finally:
        gate.release.set()
        t.join(WAIT_S)
    assert not failures, failures
    return x, out


@pytest.mark.parametrize("job", ["masked evaluation", "calibration hooks"])
def test_a_forward_pass_beside_a_job_that_changes_modules_reads_the_dense_model(job):
    """A masked evaluation swaps the parameters (functional_call) and a calibration pass hooks the
    layers, each for one call: on a private view, so a forward pass in another job's step, run
    while that call is under way, computes the dense model and feeds no one's statistics."""
    from visualizer.core.pruning.calibration import input_norms
    from visualizer.core.tasks import run
    from visualizer.core.training.evaluate import evaluate

    model, gate = _gated_model()
    with torch.no_grad():
        reference = [model(torch.zeros(1, 6))]
    masks = MaskSet.for_model(model)
    for m in masks.masks.values():
        m.zero_()
    batch = (torch.randn(8, 6), torch.zeros(8, dtype=torch.long))
    norms = {}
    if job == "masked evaluation":
        def work(m):
            evaluate(m, [batch], masks)
    else:
        def work(m):
            norms.update(run(input_norms(m, [batch])))
    x, out = _while_inside(model, gate, work)
    gate.blocked_in = None
    with torch.no_grad():
        assert torch.equal(out, model(x))
        assert torch.equal(model(torch.zeros(1, 6)), reference[0])
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    if norms:  # the statistics saw the job's own 8 samples, not the other step's 4
        expected = batch[0].norm(dim=0)
        assert torch.allclose(norms["0.weight"].flatten(), expected)


def test_private_view_shares_tensors_and_nothing_else():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    view = private_view(model)
    assert all(a is b for a, b in zip(model.parameters(), view.parameters()))
    assert all(a is b for a, b in zip(model.buffers(), view.buffers()))
    view.train()
    view[0].register_forward_hook(lambda *a: None)
    assert not model.training and not model[0]._forward_hooks


def test_graph_traces_beside_forward_passes_give_the_right_graph_and_outputs():
    """The failure the lock exists for: torch.fx patches every module's __call__ while it traces,
    and a forward pass in another thread then went into the trace (or failed). Jobs stepping
    under the shared side while graph jobs trace (exclusive inside core) get exact outputs, and
    every trace finds the same graph."""
    from visualizer.core.structure.graph import build_graph_job
    from visualizer.core.tasks import Step

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    reference = run_steps(build_graph_job(model, x))
    stop = threading.Event()
    graphs: list = []
    wrong: list = []

    def drive(gen):
        while True:
            with STEP_LOCK.shared():
                try:
                    next(gen)
                except StopIteration as end:
                    return end.value

    def tracer():
        try:
            for _ in range(TRACES):
                graphs.append(drive(build_graph_job(model, x)))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            wrong.append(repr(exc))
        finally:
            stop.set()

    def forwards():
        def job():
            while not stop.is_set():
                with torch.no_grad():
                    if not torch.equal(model(x), expected):
                        wrong.append("a wrong output")
                yield Step("forward", 0.5)
        try:
            drive(job())
        except Exception as exc:  # noqa: BLE001 - a forward pass that went into a trace: reported
            wrong.append(repr(exc))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often, as in the window (1 ms) and more: the race shows
    try:
        assert _joined(_threads(tracer, forwards, forwards))
    finally:
        sys.setswitchinterval(switch)
    assert not wrong, wrong[:3]
    assert len(graphs) == TRACES
    for g in graphs:
        assert g.method == "fx"
        assert sorted(g.graph.nodes) == sorted(reference.graph.nodes)


def run_steps(gen):
    from visualizer.core.tasks import run

    return run(gen)


def test_exclusive_is_the_process_lock():
    with exclusive("test"):
        assert STEP_LOCK.held_exclusive()
    assert not STEP_LOCK.held_exclusive()


def test_a_step_can_let_go_of_the_lock_for_an_import():
    """released(): a step waiting inside it (a long first import) does not keep a tracer out,
    and holds its shared side again afterwards."""
    lock = StepLock()
    let_go, traced = threading.Event(), threading.Event()
    after = []

    def step():
        with lock.shared():
            with lock.released():
                let_go.set()
                after.append(traced.wait(WAIT_S))
            after.append(threading.get_ident() in lock._readers)

    def tracer():
        let_go.wait(WAIT_S)
        with lock.exclusive():
            traced.set()

    assert _joined(_threads(step, tracer))
    assert after == [True, True]


def test_import_unlocked_imports_what_is_missing():
    from visualizer.core.tasks import import_unlocked

    sys.modules.pop("colorsys", None)
    with STEP_LOCK.shared():
        import_unlocked("colorsys", "json")
    assert "colorsys" in sys.modules


def test_an_interrupted_wait_for_the_exclusive_side_leaves_the_lock_usable():
    """A step asking for the exclusive side behind another step, stopped while it waits (a
    cancel's exception, Ctrl-C): the lock stays consistent and a later step gets in."""
    lock = StepLock()
    other_in, release_other = threading.Event(), threading.Event()

    def other():
        with lock.shared():
            other_in.set()
            release_other.wait(WAIT_S)

    class Stop(Exception):
        pass

    t = _threads(other)[0]
    other_in.wait(WAIT_S)
    original_wait = lock._cond.wait

    def interrupted_wait(timeout=None):
        raise Stop

    lock._cond.wait = interrupted_wait
    with pytest.raises(Stop):
        with lock.shared():
            with lock.exclusive():
                pass
    lock._cond.wait = original_wait
    release_other.set()
    assert _joined([t])
    assert not lock._readers and lock._writer is None and not lock._writers_waiting
    with lock.exclusive():
        pass
