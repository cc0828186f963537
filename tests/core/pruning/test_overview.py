"""Overview numerics: block counts against hand-made blocks, packing, execution order, diffs."""

import numpy as np
import pytest
import torch
from torch import nn

from visualizer.core.pruning import overview as ov


def brute_counts(arr: np.ndarray, tile: ov.Tile) -> np.ndarray:
    """Block sums the slow way: every image pixel assigned to its block by the tile's edges."""
    if tile.full or arr.ndim != 4:
        img = ov._image(arr) if arr.ndim == 4 else arr.reshape(tile.rows, -1)
        cols_per = np.diff(tile.col_edges)
        out = []
        for r0 in range(0, img.shape[0], tile.row_f):
            for c0, w in zip(tile.col_edges[:-1], cols_per):
                out.append(img[r0:r0 + tile.row_f, c0:c0 + w].sum())
        return np.array(out, dtype=float)
    o, i, kh, kw = arr.shape
    edges = tile.col_edges // (kh * kw)
    out = []
    for r0 in range(0, o, tile.row_f):
        for c0, c1 in zip(edges[:-1], edges[1:]):
            out.append(arr[r0:r0 + tile.row_f, c0:c1].sum())
    return np.array(out, dtype=float)


def test_block_counts_of_a_matrix_by_hand():
    # a 4 x 6 mask in 2 x 2 pixels: blocks of 2 rows x 3 columns
    mask = np.array([[1, 1, 0, 0, 0, 0],
                     [1, 0, 0, 0, 1, 1],
                     [0, 0, 0, 1, 1, 1],
                     [0, 0, 0, 1, 1, 1]], dtype=bool)
    tile = ov.make_tile("w", mask.shape, resolution=2)
    assert tile.pixels == (2, 2)
    assert list(tile.block_sums(mask)) == [3, 2, 0, 6]
    assert list(tile.totals) == [6, 6, 6, 6]


@pytest.mark.parametrize("shape,resolution", [((7, 5), 3), ((300, 10), 96), ((6, 1, 5, 5), 4),
                                              ((40, 30, 3, 3), 16), ((50, 33, 1, 1), 8), ((11,), 4)])
def test_block_counts_equal_the_blocks_counted_one_by_one(shape, resolution, monkeypatch):
    monkeypatch.setattr(ov, "SMALL", 1000)  # (40, 30, 3, 3) takes the whole-kernel path
    rng = np.random.default_rng(1)
    mask = rng.random(shape) < 0.4
    tile = ov.make_tile("w", shape, resolution)
    assert max(tile.pixels) <= resolution
    np.testing.assert_array_equal(tile.block_sums(mask, float), brute_counts(mask, tile))
    assert tile.totals.sum() == mask.size


def test_overview_counts_kept_weights_and_fractions():
    rng = np.random.default_rng(0)
    params = {"a.weight": rng.normal(size=(8, 3, 3, 3)), "b.weight": rng.normal(size=(10, 72))}
    o = ov.Overview(params, resolution=4)
    masks = {n: torch.from_numpy(rng.random(p.shape) < 0.3) for n, p in params.items()}
    o.set_mask(masks)
    for n, m in masks.items():
        assert o.tile_stats(n)["kept"] == int(m.sum())
    f = o.fractions()
    assert ((0 <= f) & (f <= 1)).all()
    # per-tensor counts: a tensor pruned whole or kept whole is filled without counting
    o.set_mask({"a.weight": torch.zeros(8, 3, 3, 3, dtype=torch.bool), "b.weight": masks["b.weight"]},
               counts={"a.weight": 0, "b.weight": int(masks["b.weight"].sum())})
    assert o.tile_stats("a.weight")["kept"] == 0 and o.tile_stats("b.weight")["kept"] == int(masks["b.weight"].sum())
    o.set_mask({"a.weight": torch.ones(8, 3, 3, 3, dtype=torch.bool)}, counts={"a.weight": 216})
    assert o.tile_stats("a.weight")["kept"] == 216
    o.set_mask({})  # a mask that names nothing is dense
    assert np.allclose(o.fractions(), 1.0)


def test_value_levels_are_block_mean_abs_over_the_tile_range():
    w = np.array([[1.0, -3.0], [0.5, 0.5]], dtype=np.float32)  # 2 x 2 pixels of one weight each
    o = ov.Overview({"w": w}, resolution=2)
    np.testing.assert_allclose(o.value, [0.5 / 2.5, 1.0, 0.0, 0.0])
    blocks = ov.Overview({"w": w}, resolution=1)  # one block: mean |w| = 1.25, a flat tile
    np.testing.assert_allclose(blocks.value, [1.0])


def test_diff_shares_by_hand():
    o = ov.Overview({"w": np.ones((1, 4), np.float32)}, resolution=1)  # one pixel of 4 weights
    a = {"w": np.array([[1, 1, 0, 0]], bool)}
    b = {"w": np.array([[1, 0, 1, 0]], bool)}
    o.set_mask(b)
    o.set_reference(a, b)
    np.testing.assert_allclose(o.diff_shares()[0], [0.25, 0.25, 0.25, 0.25])
    b2 = {"w": np.array([[1, 1, 1, 1]], bool)}
    o.set_mask(b2)  # the slider moves B: 'both' follows
    np.testing.assert_allclose(o.diff_shares()[0], [0.5, 0.0, 0.5, 0.0])
    rgb = o.colours("diff")[0, :3]
    expected = 0.5 * np.array(ov.DIFF_RGBA[0][:3]) + 0.5 * np.array(ov.DIFF_RGBA[2][:3])
    np.testing.assert_allclose(rgb, np.rint(expected))


def test_colour_codes_fade_to_grey_by_the_pruned_share():
    o = ov.Overview({"w": np.ones((1, 2), np.float32)}, resolution=2)
    o.set_mask({"w": np.array([[True, False]])})
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 0] = np.arange(256)
    lut[:, 3] = 255
    kept = o.colours("kept", lut)
    assert kept[0, 0] == 255 and kept[1, 0] == 0
    value = o.colours("value", lut)  # level 1.0 everywhere: kept pixel = lut[255], pruned = grey
    assert tuple(value[0]) == (255, 0, 0, 255) and tuple(value[1]) == ov.PRUNED_RGBA


def _overlap(a: ov.Placed, b: ov.Placed) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_packing_is_aspect_true_ordered_and_proportional():
    params = {"a": np.zeros((64, 64)), "b": np.zeros((32, 128)), "c": np.zeros((128, 32)),
              "d": np.zeros((16, 16))}
    o = ov.Overview(params, order=["c", "a", "d", "b"])
    lay = ov.pack_tiles(o, 600, 400, "params", gap=2, least=1)
    rects = {r.name: r for r in lay.rects}
    assert [r.name for r in lay.rects] == ["c", "a", "d", "b"]
    for r in lay.rects:
        t = o.tiles[o.index[r.name]]
        assert r.w / r.h == pytest.approx(t.cols / t.rows, rel=0.12)
        assert 0 <= r.x and r.x + r.w <= 600 and 0 <= r.y and r.y + r.h <= 400
    assert rects["a"].w * rects["a"].h == pytest.approx(16 * rects["d"].w * rects["d"].h, rel=0.15)
    assert not any(_overlap(p, q) for i, p in enumerate(lay.rects) for q in lay.rects[i + 1:])
    # reading order: each tile starts after the one before on its shelf, or on the next shelf
    for p, q in zip(lay.rects, lay.rects[1:]):
        if lay.columns:
            assert q.x > p.x or (q.x == p.x and q.y > p.y)
        else:
            assert q.y > p.y or (q.y == p.y and q.x > p.x)
    tall = ov.pack_tiles(o, 100, 1000, "params", gap=2, least=1)  # a tall canvas: the larger fit
    rows_only = ov._fit_scale(ov.tile_sizes(o.tiles, "params", 1.0), 100, 1000, 2, 1)
    cols_only = ov._fit_scale([(h, w) for w, h in ov.tile_sizes(o.tiles, "params", 1.0)], 1000, 100, 2, 1)
    assert tall.columns == (cols_only > rows_only * 1.02)
    equal = ov.pack_tiles(o, 600, 400, "equal", gap=2, least=1)
    areas = [r.w * r.h for r in equal.rects]
    assert max(areas) / min(areas) < 1.15
    assert lay.tile_at(rects["d"].x + 1, rects["d"].y + 1) == "d"


def test_canvas_draws_each_tile_pixel_in_its_rectangle():
    o = ov.Overview({"w": np.zeros((2, 2))}, resolution=2)
    lay = ov.pack_tiles(o, 40, 40, gap=0, least=1)
    colours = np.array([[10, 0, 0, 255], [20, 0, 0, 255], [30, 0, 0, 255], [40, 0, 0, 255]], np.uint8)
    img = ov.canvas(lay, colours)
    r = lay.rects[0]
    assert img[r.y, r.x, 0] == 10 and img[r.y + r.h - 1, r.x + r.w - 1, 0] == 40
    assert img.shape == (40, 40, 4)


class Backwards(nn.Module):
    """Registered first, run last: the overview follows the run, not the registration."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Linear(3, 4)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_execution_order_follows_the_forward_pass():
    model = Backwards()
    names = ["head.weight", "body.weight", "unused.weight"]
    assert ov.execution_order(model, names, torch.randn(1, 3)) == ["body.weight", "head.weight", "unused.weight"]
    # no example input (or a failing forward pass): registration order
    assert ov.execution_order(model, names, None) == names
    assert ov.execution_order(model, names, torch.randn(1, 7)) == names


def test_a_torchscript_model_keeps_its_registration_order():
    scripted = torch.jit.script(Backwards())  # takes no forward hooks
    names = ["head.weight", "body.weight", "unused.weight"]
    assert ov.execution_order(scripted, names, torch.randn(1, 3)) == names


def test_value_colours_paint_each_tile_by_its_layers_number():
    o = ov.Overview({"a.weight": np.ones((4, 4)), "a.bias": np.ones(4), "b.weight": np.ones((2, 8))})
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 0] = np.arange(256)  # red = the level
    lut[:, 3] = 255
    # keyed by layer ("a": both of its tensors) or by tensor; scale [-1, 1]
    rgba = o.value_colours({"a": -1.0, "b.weight": 0.5}, -1.0, 1.0, lut)
    ta, tb, tbias = (o.tiles[o.index[n]] for n in ("a.weight", "b.weight", "a.bias"))
    assert (rgba[ta.offset: ta.offset + ta.size, 0] == 0).all()
    assert (rgba[tbias.offset: tbias.offset + tbias.size, 0] == 0).all()
    assert (rgba[tb.offset: tb.offset + tb.size, 0] == round(0.75 * 255)).all()  # t = (0.5 + 1) / 2
    grey = o.value_colours({"a": float("nan")}, 0.0, 1.0, lut)
    assert tuple(grey[ta.offset]) == ov.PRUNED_RGBA and tuple(grey[tb.offset]) == ov.PRUNED_RGBA


@pytest.mark.parametrize("structure", ["unstructured", "channel"])
def test_pixel_counts_from_the_ranking_equal_the_masks_block_sums(structure, monkeypatch):
    """The slider's pixel counts without reading a mask: a ranking's CutCounts over the
    overview's pixel ids equals set_mask on the masks, at cuts on and between checkpoints; a
    tensor without a tile counts nowhere; a layer-scope ranking gets none (counts per layer)."""
    from visualizer.core.pruning.ranking import Ranking, cut_counts_job
    from visualizer.core.tasks import run

    monkeypatch.setattr(ov, "SMALL", 1000)  # (40, 30, 3, 3) takes the whole-kernel path
    rng = np.random.default_rng(3)
    params = {"a.weight": rng.normal(size=(6, 1, 5, 5)), "b.weight": rng.normal(size=(40, 30, 3, 3)),
              "c.weight": rng.normal(size=(300, 10)), "d.bias": rng.normal(size=11),
              "e.weight": rng.normal(size=(50, 33, 1, 1))}
    o = ov.Overview({n: p for n, p in params.items() if n != "d.bias"}, resolution=8)
    scores = {n: torch.from_numpy(np.abs(p)) for n, p in params.items()}
    rk = Ranking.from_scores(scores, "global", structure)
    bins = o.pixel_ids(rk.names, rk.shapes)
    assert (bins[rk.offsets[3]:rk.offsets[4]] == o.n_pixels).all()  # d.bias has no tile
    counter = run(cut_counts_job(rk, bins, o.n_pixels, checkpoints=16))
    for rho in [0.5, 0.0, 1.0, 0.123, 0.9, 0.3, 0.31]:
        live = rk.mask_at(rho, copy=False)
        o.set_mask(live.masks)
        by_masks = o.kept.copy()
        o.set_kept(counter.counts())
        np.testing.assert_array_equal(o.kept, by_masks)
    assert run(cut_counts_job(Ranking.from_scores(scores, "layer"), bins, o.n_pixels)) is None
