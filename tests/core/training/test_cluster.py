"""Sweep cells and seeded IMP runs as Ray tasks on a local two-worker cluster: the serial run's
rows, resume by key, a worker that dies mid-cell, cancel, and a failing cell."""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace

import pytest
import torch

try:
    import ray
except ImportError:  # in the test extra: a missing ray is a broken install, not a skip
    pytest.fail("ray is not installed; the cluster tests need it: pip install -e '.[test]'", pytrace=False)

from visualizer.core.tasks import run
from visualizer.core.training.cluster import (
    ClusterError,
    SeedRun,
    connect,
    imp_run,
    parse_cluster,
    seeds_on_cluster,
    sweep_on_cluster,
)
from visualizer.core.training.experiments import (
    RowFile,
    SweepConfig,
    read_rows,
    row_key,
    run_cell,
    sweep,
    sweep_cells,
    sweep_identity,
)
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import IMPConfig, initial_state

# the root conftest runs torch on one thread, as the tasks do (same float reductions)


@pytest.fixture(scope="module")
def local_cluster():
    with connect("local:2") as r:
        yield r


# 2 criteria x 2 densities x 2 seeds, one short fine-tune each
CONFIG = SweepConfig("mlp", ("magnitude", "random"), (0.5, 0.1), "finetune",
                     train=TrainConfig(epochs=1, max_steps=8), seeds=(0, 1))


@pytest.fixture(scope="module")
def serial_rows(mlp, digits):
    return run(sweep(mlp, digits, CONFIG)).rows


def same_rows(got: list[dict], want: list[dict]) -> None:
    assert [row_key(r) for r in got] == [row_key(r) for r in want]
    for g, w in zip(got, want):
        assert g["accuracy"] == pytest.approx(w["accuracy"], abs=1e-6)
        assert g["loss"] == pytest.approx(w["loss"], abs=1e-6)
        assert (g["kept"], g["total"], g["achieved_density"]) == (w["kept"], w["total"], w["achieved_density"])


def test_cluster_rows_equal_serial_rows_and_stream_to_the_file_in_grid_order(local_cluster, mlp, digits, serial_rows, tmp_path):
    path = tmp_path / "rows.csv"
    rows_file = RowFile(path, sweep_cells(CONFIG, digits.name, sweep_identity(mlp, digits)))
    streamed = []

    def on_step(step):
        if isinstance(step.partial, dict):
            streamed.append(step.partial)
            rows_file.add(step.partial)

    res = run(sweep_on_cluster(mlp, digits, CONFIG), on_step)
    assert res.computed == 8 and res.reused == 0
    same_rows(res.rows, serial_rows)
    assert len(streamed) == 8
    same_rows(read_rows(path), serial_rows)  # on disk in grid order, whatever order tasks finished


def test_resume_skips_cells_done_before_by_key_not_by_order(local_cluster, mlp, digits, serial_rows):
    done = [dict(r, accuracy=0.125) for r in serial_rows[1::3]]  # marked: a recomputed row would lose the mark
    other = dict(serial_rows[0], lr=0.5, accuracy=0.0)  # a different setting: must not count as done
    previous = [other, *random.Random(0).sample(done, len(done))]
    res = run(sweep_on_cluster(mlp, digits, CONFIG, previous=previous))
    assert res.reused == len(done) and res.computed == 8 - len(done)
    keys = {row_key(r) for r in done}
    assert all(r["accuracy"] == 0.125 for r in res.rows if row_key(r) in keys)
    same_rows([r for r in res.rows if row_key(r) not in keys], [r for r in serial_rows if row_key(r) not in keys])


def test_a_worker_that_dies_mid_cell_is_retried_without_duplicate_or_hole(local_cluster, mlp, digits, serial_rows, tmp_path):
    marker = str(tmp_path / "died-once")

    def dies_once(cell, model, data, init_state, cache):
        if cell.index == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process is gone, mid-cell
        return run_cell(cell, model, data, init_state, cache)

    streamed = []
    res = run(sweep_on_cluster(mlp, digits, CONFIG, compute=dies_once),
              lambda s: streamed.append(s.partial) if isinstance(s.partial, dict) else None)
    assert os.path.exists(marker)
    assert len(streamed) == 8 and len({row_key(r) for r in streamed}) == 8
    same_rows(res.rows, serial_rows)


def test_cancel_cancels_the_tasks_and_keeps_finished_rows(local_cluster, mlp, digits, serial_rows, tmp_path):
    def slow_after_first(cell, model, data, init_state, cache):
        if cell.index > 0:
            time.sleep(600)  # far beyond the wait below: only a real cancel frees the workers in time
        return run_cell(cell, model, data, init_state, cache)

    path = tmp_path / "rows.csv"
    rows_file = RowFile(path, sweep_cells(CONFIG, digits.name, sweep_identity(mlp, digits)))
    job = sweep_on_cluster(mlp, digits, CONFIG, compute=slow_after_first)
    for step in job:
        if isinstance(step.partial, dict):
            rows_file.add(step.partial)
            break
    start = time.monotonic()
    job.close()  # the window's cancel; Ctrl+C in the CLI closes the job the same way
    while ray.available_resources().get("CPU", 0) < 2:  # the sleeping tasks are gone, not finishing
        # a liveness bound, not a speed claim: 120 s is far above a cancel on a loaded machine
        # (about 20 s seen in a full suite run on 2 cores) and far below the tasks' 600 s sleep
        assert time.monotonic() - start < 120, "cancelled tasks still hold the workers"
        time.sleep(0.2)
    kept = read_rows(path)
    same_rows(kept, serial_rows[:1])
    res = run(sweep_on_cluster(mlp, digits, CONFIG, previous=path))
    assert res.reused == 1 and res.computed == 7
    same_rows(res.rows, serial_rows)


def test_a_failing_cell_stops_the_sweep_with_one_line(local_cluster, mlp, digits):
    def broken(cell, model, data, init_state, cache):
        raise ValueError("no such layer\nsecond line")

    with pytest.raises(ClusterError) as err:
        run(sweep_on_cluster(mlp, digits, CONFIG, compute=broken))
    assert "no such layer" in str(err.value) and "\n" not in str(err.value)


def test_imp_seeds_run_in_parallel_and_equal_serial_runs(local_cluster, mlp, digits):
    config = IMPConfig(rounds=1, rate=0.5, controls=("reinit",), train=TrainConfig(epochs=1, max_steps=6))
    inits = {s: initial_state("mlp", mlp, s)[0] for s in (0, 1)}
    from functools import partial

    make = partial(imp_run, config=config)
    got = run(seeds_on_cluster(mlp, digits, [SeedRun(s, inits[s], make) for s in inits]))
    assert sorted(got) == [0, 1]
    for s, init in inits.items():
        want = run(imp_run(mlp, digits, init, s, config))
        assert [r["kept"] for r in got[s].rows] == [r["kept"] for r in want.rows]
        for g, w in zip(got[s].rows, want.rows):
            assert g["accuracy"] == pytest.approx(w["accuracy"], abs=1e-6)
            assert g["reinit_accuracy"] == pytest.approx(w["reinit_accuracy"], abs=1e-6)
        assert all(torch.equal(a, b) for a, b in zip(got[s].masks[1].masks.values(), want.masks[1].masks.values()))
    assert got[0].rows[1]["accuracy"] != got[1].rows[1]["accuracy"] or got[0].rows[1]["loss"] != got[1].rows[1]["loss"]


def test_seeds_are_cells_of_their_own(digits):
    cells = sweep_cells(replace(CONFIG, seeds=(3, 3, 5)), digits.name)
    assert [c.settings["seed"] for c in cells[:4]] == [3, 3, 5, 5]  # criteria x seeds x densities
    assert all(c.train.seed == c.settings["seed"] for c in cells)
    assert len({row_key(c.settings) for c in cells}) == len(cells) == 8


@pytest.mark.parametrize("text", ["", "local:0", "local:x", "ray://nohost", "tcp://a:1", "remote"])
def test_bad_cluster_addresses_are_one_line_errors(text):
    with pytest.raises(ValueError) as err:
        parse_cluster(text)
    assert "\n" not in str(err.value)


def test_cluster_addresses():
    assert str(parse_cluster("local")) == "local"
    assert parse_cluster("local:3").workers == 3
    assert parse_cluster("ray://head:10001").address == "ray://head:10001"
    assert parse_cluster("auto").kind == "auto"


class FakeRay:
    """Records what connect() asks of Ray (starting real sessions is the other tests' job)."""

    def __init__(self) -> None:
        self.up, self.calls = False, []

    def is_initialized(self) -> bool:
        return self.up

    def init(self, address=None, **kw) -> None:
        self.up = True
        self.calls.append(("init", address, kw.get("num_cpus")))

    def shutdown(self) -> None:
        self.up = False
        self.calls.append(("shutdown",))


def test_a_kept_session_serves_the_next_job_and_gives_way_to_another_address(monkeypatch):
    from visualizer.core.training import cluster

    fake = FakeRay()
    monkeypatch.setattr(cluster, "import_ray", lambda: fake)
    monkeypatch.setitem(cluster._KEPT, "spec", None)
    with connect("local:2"):
        pass
    assert fake.calls == [("init", "local", 2), ("shutdown",)]  # not kept: started and shut down
    fake.calls.clear()
    with connect("local:2", keep=True):
        pass
    with connect("local:2", keep=True):  # the window's next job: no second start
        pass
    assert fake.calls == [("init", "local", 2)] and fake.up
    with connect("local:1", keep=True):  # another address: the kept session is replaced
        pass
    assert fake.calls == [("init", "local", 2), ("shutdown",), ("init", "local", 1)]
    fake.calls.clear()
    cluster._KEPT["spec"] = None  # a session someone else started (a notebook's ray.init) is only used
    with connect("local:4", keep=True):
        pass
    assert fake.calls == []
