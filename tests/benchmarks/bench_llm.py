"""Language-model pruning on this CPU, as ratios against peers measured in the same run.

1. Wanda on a 124M-parameter GPT-2-shaped model (``GPT2LMHeadModel(GPT2Config())``, random
   init) with 32 x 128 calibration tokens: the whole criterion (calibration pass with the norm
   hooks, products, row ranks) against the same forward passes without hooks, ``--rounds``
   interleaved pairs, the ratio of the bests. Target: Wanda within 1.5x of the forward passes.
   Scored weights: the 48 attention and MLP ``Conv1D`` matrices (85M weights); ``lm_head`` is
   the tied token embedding and is left out (so the calibration pass stops after the last block
   from the second batch on: core.pruning.calibration.input_statistics).
2. The density slider on those scores: the first ranking (``Ranking.from_scores``), the overview
   and its pixel-count table (``cut_counts_job``), then median and worst time of 120 moves
   (drags of 0.5 % and seeded jumps): ``mask_at(rho, copy=False)``, the per-layer kept counts,
   the overview's kept weights per pixel and the heatmap's one layer, what the window reads.
   Target: <= 30 ms per move. For comparison, moves with the overview counted from every mask.
3. SparseGPT on one 768 x 3072 layer (GPT-2's MLP down projection: 768 outputs, 3072 inputs) with
   4096 calibration tokens: ``sparsegpt_layer`` (blocks of 128, lazy updates) against
   ``sparsegpt_reference`` (every error applied to all later columns at once) at density 0.5:
   identical mask, largest weight difference, time ratio.

   With ``--skip wanda`` the slider ranks the same weights' magnitudes instead.

Run: /work/main/.venv/bin/python tests/benchmarks/bench_llm.py [--skip wanda slider sparsegpt]
     [--sequences 32] [--tokens 128] [--threads N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer

import torch  # noqa: E402

from visualizer.core.pruning.calibration import input_norms  # noqa: E402
from visualizer.core.pruning.llm_criteria import (  # noqa: E402
    calibrated_layers,
    input_grams,
    model_forward,
    row_ranks,
    sparsegpt_layer,
    sparsegpt_reference,
    wanda_job,
)
from visualizer.core.pruning.nm import transposed_weights  # noqa: E402
from visualizer.core.pruning.overview import Overview  # noqa: E402
from visualizer.core.pruning.ranking import Ranking, cut_counts_job  # noqa: E402
from visualizer.core.tasks import run  # noqa: E402


def gpt2_124m():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    params = {f"{n}.weight": m.weight for n, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    return model, params


def calibration(vocab: int, sequences: int, tokens: int, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (sequences, tokens), generator=g)
    return [(ids[i:i + batch], ids[i:i + batch]) for i in range(0, sequences, batch)]


def forward_only(model, batches) -> float:
    t = time.perf_counter()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    return time.perf_counter() - t


def bench_wanda(model, params, batches, rounds: int = 3):
    """``rounds`` x (forward passes alone, then Wanda), interleaved so that both see the same load;
    the ratio of the bests (and of each round's pair)."""
    forward_only(model, batches[:1])  # warm-up
    fwd, wanda, result = [], [], None
    for _ in range(rounds):
        fwd.append(forward_only(model, batches))
        t0 = time.perf_counter()
        result = run(wanda_job(model, batches, params))
        wanda.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    run(input_norms(model, batches, calibrated_layers(model, params), model_forward))
    t_pass = time.perf_counter() - t0
    transposed = transposed_weights(model)
    t0 = time.perf_counter()
    for name, p in result.products.items():
        row_ranks(p, name in transposed)
    t_ranks = time.perf_counter() - t0
    n = sum(p.numel() for p in params.values())
    pairs = ", ".join(f"{w / f:.2f}" for f, w in zip(fwd, wanda))
    print(f"1. wanda on GPT-2 124M ({sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{n:,} scored), {len(batches)} batches: {sum(int(x.numel()) for x, _ in batches):,} tokens")
    print(f"   forward passes alone: {', '.join(f'{t:.2f}' for t in fwd)} s; wanda: "
          f"{', '.join(f'{t:.2f}' for t in wanda)} s")
    print(f"   wanda / forward passes, best of {rounds} each = {min(wanda) / min(fwd):.2f}x (target <= 1.5); "
          f"per round {pairs}")
    print(f"   parts, timed again: calibration pass with the norm hooks {t_pass:.2f} s "
          f"({t_pass / min(fwd):.2f}x the best forward passes), row ranks of the products {t_ranks:.2f} s")
    return result.scores


def _moves(n: int = 120) -> list[float]:
    """A slider's moves: drags (steps of 0.5 %, both ways) and jumps across the range (seeded)."""
    rng = random.Random(0)
    out = [0.5 - 0.005 * i for i in range(40)] + [0.3 + 0.005 * i for i in range(20)]
    out += [round(rng.random(), 4) for _ in range(n - len(out))]
    return out


def bench_slider(scores, params, what: str = "wanda"):
    """The window's per-move path: ``mask_at(copy=False)`` (moves the cut), the per-layer kept
    counts, the overview's kept weights per pixel (``CutCounts``, no mask read) and the mask of
    the one layer the heatmap shows; and, for comparison, the same moves with the overview
    counted from every mask (``Overview.set_mask``, what it did before)."""
    t0 = time.perf_counter()
    rk = Ranking.from_scores(scores)
    t_rank = time.perf_counter() - t0
    t0 = time.perf_counter()
    overview = Overview({n: p.detach().numpy() for n, p in params.items()})
    t_overview = time.perf_counter() - t0
    t0 = time.perf_counter()
    counter = run(cut_counts_job(rk, overview.pixel_ids(rk.names, rk.shapes), overview.n_pixels))
    t_counter = time.perf_counter() - t0
    shown = "transformer.h.5.mlp.c_fc.weight"  # the heatmap's layer (768 x 3072)
    moves = _moves()
    parts = {"cut + layer counts": [], "pixel counts": [], "shown layer": [], "move": []}
    for d in moves:
        t = time.perf_counter()
        masks = rk.mask_at(d, copy=False)
        rk.layer_kept()
        t1 = time.perf_counter()
        overview.set_kept(counter.counts())
        t2 = time.perf_counter()
        int(masks[shown].numpy()[::97, ::97].sum())  # the heatmap reads its layer
        t3 = time.perf_counter()
        for key, v in zip(parts, (t1 - t, t2 - t1, t3 - t2, t3 - t)):
            parts[key].append(v)
    old = []
    for d in moves[:15]:
        t = time.perf_counter()
        masks = rk.mask_at(d, copy=False)
        overview.set_mask(masks.masks, rk.layer_kept())
        old.append(time.perf_counter() - t)
    ms = {k: (1e3 * statistics.median(v), 1e3 * max(v)) for k, v in parts.items()}
    print(f"2. slider on {rk.total():,} {what}-scored weights: first ranking {t_rank:.2f} s, overview "
          f"{t_overview:.2f} s, pixel-count table {t_counter:.2f} s ({overview.n_pixels:,} pixels)")
    print(f"   a move: median {ms['move'][0]:.1f} ms, worst {ms['move'][1]:.1f} ms over {len(moves)} moves "
          f"(target <= 30 ms); parts median/worst: " +
          "; ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in ms.items() if k != "move"))
    print(f"   the same moves with the overview counted from every mask (set_mask): median "
          f"{1e3 * statistics.median(old):.1f} ms, worst {1e3 * max(old):.1f} ms over {len(old)} moves")


def bench_sparsegpt(tokens: int = 4096):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(768, 3072, generator=g) * 0.02
    x = torch.randn(tokens, 3072, generator=g) * (1 + 10 * (torch.rand(3072, generator=g) > 0.99))
    layer = torch.nn.Linear(3072, 768, bias=False)
    gram = run(input_grams(layer, [(x, None)], {"weight": ""}))["weight"]
    t0 = time.perf_counter()
    keep, new = sparsegpt_layer(w, gram, 0.5)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_keep, ref_new = sparsegpt_reference(w, gram, 0.5)
    t_ref = time.perf_counter() - t0
    same = torch.equal(keep, ref_keep)
    diff = float((new - ref_new).abs().max())
    print(f"3. sparsegpt on a 768x3072 layer, {tokens} tokens, density 0.5: blocked {t_fast:.2f} s, "
          f"plain reference {t_ref:.2f} s, reference / blocked = {t_ref / t_fast:.1f}x; "
          f"same mask: {same}, largest weight difference {diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", nargs="*", default=[], choices=("wanda", "slider", "sparsegpt"))
    ap.add_argument("--sequences", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3, help="forward / wanda pairs (best of each)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    scores, what, params = None, "wanda", None
    if "wanda" not in args.skip:
        model, params = gpt2_124m()
        batches = calibration(model.config.vocab_size, args.sequences, args.tokens)
        scores = bench_wanda(model, params, batches, args.rounds)
    elif "slider" not in args.skip:  # the slider alone: the same 85M weights, magnitude-scored
        model, params = gpt2_124m()
        scores, what = {n: p.detach().abs() for n, p in params.items()}, "magnitude"
    if "slider" not in args.skip and scores is not None:
        bench_slider(scores, params, what)
    if "sparsegpt" not in args.skip:
        bench_sparsegpt()
    return 0


if __name__ == "__main__":
    sys.exit(main())
