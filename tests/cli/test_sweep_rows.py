"""A results file holds result rows only: the serial `pruneviz sweep` with retraining wrote the
training loop's last progress record as an extra row (empty settings) and added its `final` and
`test_loss` columns, so its files differed from the Ray path's."""

from __future__ import annotations

import csv
import json

from visualizer.cli import main
from visualizer.core.training.experiments import ROW_FIELDS


def test_a_serial_retraining_sweep_writes_its_rows_and_columns_only(capsys, tmp_path):
    path = tmp_path / "rows.csv"
    assert main(["sweep", "mlp", "--criteria", "magnitude", "--densities", "0.5,0.2", "--retrain", "finetune",
                 "--epochs", "1", "--out", str(path)]) == 0
    capsys.readouterr()
    with open(path) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ROW_FIELDS
    assert len(rows) == 2 and all(r["criterion"] == "magnitude" and r["model"] == "mlp" for r in rows)
    saved = json.loads(path.with_suffix(".json").read_text())["rows"]
    assert len(saved) == 2 and all(set(r) == set(ROW_FIELDS) for r in saved)
