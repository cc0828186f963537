"""The workflows the window runs (evaluation, ranking, sweeps, multi-seed IMP, the analysis jobs)
live in core and run headless: importing and running them never imports Qt."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from visualizer.core import analysis
from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.tasks import run
from visualizer.core.training import workflows
from visualizer.core.training.loop import TrainConfig
from visualizer.core.analysis import rank_job

model, data = load_model("mlp").model, load_dataset("digits")
ranking, _ = run(rank_job(model, data, "magnitude", "global", "unstructured"))
masks = ranking.mask_at(0.2)
row = run(workflows.evaluate_job(model, data, masks, {"model": "mlp"}))
rows = run(workflows.imp_job(model, "mlp", data, {"seeds": "0, 1", "rounds": 1, "rate": 0.5},
                             TrainConfig(epochs=1, max_steps=2)))
report = run(analysis.speed_job(model, 0.5, repeats=1))
assert 0.0 <= row["accuracy"] <= 1.0 and {r["seed"] for r in rows} == {0, 1}
print("qt" if any(m.startswith(("PySide6", "pyqtgraph", "visualizer.ui")) for m in sys.modules) else "no qt")
"""


def test_workflows_run_without_qt():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no qt"
