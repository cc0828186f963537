"""2:4 layers through torch.sparse.to_sparse_semi_structured on CUDA: the compressed product
equals the dense masked one, and both are timed. Skips only where CUDA or the kernel is missing
(:func:`kernel_missing` names which)."""

from __future__ import annotations

import pytest
from torch import nn

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import nm_rows
from visualizer.core.structure.semi_structured import (
    kernel_missing,
    semi_structured_speed,
    total_ratio,
)

WHY = kernel_missing("cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(WHY is not None, reason=WHY or "")]


def test_2_4_layers_run_through_the_kernel_and_are_timed():
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256), nn.Linear(256, 40))
    masks = MaskSet({n: nm_rows(p.detach().abs(), 2, 4) for n, p in model.named_parameters() if n.endswith("weight")})
    rows, skipped = semi_structured_speed(model, masks, tokens=512, repeats=5)
    assert [r.name for r in rows] == ["0.weight", "2.weight"]
    assert "40x256" in skipped["3.weight"]  # 40 rows: not a multiple of the tile
    for r in rows:
        assert r.max_error < 1e-2 and r.dense_ms > 0 and r.sparse_ms > 0
    assert total_ratio(rows) > 0


def test_default_masks_are_2_4_magnitude():
    model = nn.Sequential(nn.Linear(128, 64))
    rows, skipped = semi_structured_speed(model, tokens=256, repeats=3)
    assert len(rows) == 1 and not skipped


def test_speed_report_json_shape():
    from visualizer.core.structure.semi_structured import semi_structured_report

    report = semi_structured_report(nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 30)), tokens=256, repeats=3)
    assert [r["name"] for r in report["layers"]] == ["0.weight"]
    assert "1.weight" in report["not_timed"] and report["speedup"] > 0
