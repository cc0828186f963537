"""Language-model pruning on this CPU, as ratios against peers measured in the same run.

1. Wanda on a 124M-parameter GPT-2-shaped model (``GPT2LMHeadModel(GPT2Config())``, random
   init) with 32 x 128 calibration tokens: the whole criterion (calibration pass with the norm
   hooks, products, row ranks) against the same forward passes without hooks. Target: Wanda
   within 1.5x of the forward passes. Scored weights: the 48 attention and MLP ``Conv1D``
   matrices (85M weights); ``lm_head`` is the tied token embedding and is left out.
2. The density slider on those scores: the first ranking (``Ranking.from_scores``), then the
   median time of a move (``mask_at(rho, copy=False)`` plus the per-layer kept counts, what the
   window reads). Target: <= 30 ms per move.
3. SparseGPT on one 768 x 3072 layer (GPT-2's MLP down projection: 768 outputs, 3072 inputs) with
   4096 calibration tokens: ``sparsegpt_layer`` (blocks of 128, lazy updates) against
   ``sparsegpt_reference`` (every error applied to all later columns at once) at density 0.5:
   identical mask, largest weight difference, time ratio.

   With ``--skip wanda`` the slider ranks the same weights' magnitudes instead.

Run: /work/main/.venv/bin/python tests/benchmarks/bench_llm.py [--skip wanda slider sparsegpt]
     [--sequences 32] [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
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
from visualizer.core.pruning.ranking import Ranking  # noqa: E402
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


def bench_wanda(model, params, batches):
    forward_only(model, batches[:1])  # warm-up
    t_fwd = forward_only(model, batches)
    t0 = time.perf_counter()
    result = run(wanda_job(model, batches, params))
    t_wanda = time.perf_counter() - t0
    t_fwd2 = forward_only(model, batches)  # again after, the machine is shared
    fwd = min(t_fwd, t_fwd2)
    t0 = time.perf_counter()
    run(input_norms(model, batches, calibrated_layers(model, params), model_forward))
    t_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, p in result.products.items():
        row_ranks(p, name in transposed_weights(model))
    t_ranks = time.perf_counter() - t0
    n = sum(p.numel() for p in params.values())
    print(f"1. wanda on GPT-2 124M ({sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{n:,} scored), {len(batches)} batches: {sum(int(x.numel()) for x, _ in batches):,} tokens")
    print(f"   forward passes alone: {t_fwd:.2f} s and {t_fwd2:.2f} s; wanda: {t_wanda:.2f} s")
    print(f"   wanda / forward passes = {t_wanda / fwd:.2f}x (target <= 1.5); forward share of wanda "
          f"{100 * fwd / t_wanda:.0f}%")
    print(f"   parts, timed again: calibration pass with the norm hooks {t_pass:.2f} s "
          f"({t_pass / fwd:.2f}x the forward passes), row ranks of the products {t_ranks:.2f} s")
    return result.scores


def bench_slider(scores, what: str = "wanda"):
    t0 = time.perf_counter()
    rk = Ranking.from_scores(scores)
    t_rank = time.perf_counter() - t0
    moves = [0.5, 0.45, 0.3, 0.31, 0.1, 0.9, 0.2, 0.21, 0.6, 0.05, 0.5, 0.49, 0.75, 0.15, 0.4]
    times = []
    for d in moves:
        t = time.perf_counter()
        rk.mask_at(d, copy=False)
        rk.layer_kept()
        times.append(time.perf_counter() - t)
    print(f"2. slider on {rk.total():,} {what}-scored weights: first ranking {t_rank:.2f} s; a move: median "
          f"{1e3 * statistics.median(times):.1f} ms, worst {1e3 * max(times):.1f} ms over {len(moves)} moves "
          "(target <= 30 ms)")


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
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    scores, what = None, "wanda"
    if "wanda" not in args.skip:
        model, params = gpt2_124m()
        batches = calibration(model.config.vocab_size, args.sequences, args.tokens)
        scores = bench_wanda(model, params, batches)
        del model
    elif "slider" not in args.skip:  # the slider alone: the same 85M weights, magnitude-scored
        model, params = gpt2_124m()
        scores, what = {n: p.detach().abs() for n, p in params.items()}, "magnitude"
        del model
    if "slider" not in args.skip and scores is not None:
        bench_slider(scores, what)
    if "sparsegpt" not in args.skip:
        bench_sparsegpt()
    return 0


if __name__ == "__main__":
    sys.exit(main())
