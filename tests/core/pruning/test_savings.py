import torch
from torch import nn

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import nm_rows
from visualizer.core.pruning.savings import layer_savings, savings_table, totals


def test_worked_case_64x64_half_at_2_4():
    w = torch.randn(64, 64).half()
    mask = nm_rows(w.float().abs(), 2, 4)
    row = layer_savings("w", w, mask, nn.Linear(64, 64))
    assert row.dense_bytes == 8192
    assert row.csr_bytes == 2048 * 10 + 8 * 65 == 21_000
    assert row.semi_bytes == 4096 + 512
    assert row.eligible and row.reason == ""


def test_reasons_for_ineligible_layers():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 40), nn.Conv2d(4, 32, 4), nn.Linear(64, 64))
    masks = {
        "0.weight": nm_rows(model[0].weight.abs(), 2, 4),  # eligible (float32 runs as half)
        "1.weight": nm_rows(model[1].weight.abs(), 2, 4),  # 40 rows: not a tile multiple
        "2.weight": torch.ones(32, 4, 4, 4, dtype=torch.bool),  # a convolution
        "3.weight": torch.rand(64, 64) > 0.5,  # not 2:4
    }
    rows = {r.name: r for r in savings_table(model, MaskSet(masks))}
    assert rows["0.weight"].eligible and "float16" in rows["0.weight"].reason
    assert not rows["1.weight"].eligible and "40x64" in rows["1.weight"].reason
    assert not rows["2.weight"].eligible and "linear layers only" in rows["2.weight"].reason
    assert not rows["3.weight"].eligible and "not 2:4" in rows["3.weight"].reason
    assert rows["3.weight"].semi_bytes is None
    t = totals(list(rows.values()))
    assert t.eligible_params == 64 * 64
    assert t.best_bytes <= t.dense_bytes
