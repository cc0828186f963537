"""Coupled groups and shrinking on a GPT-2-124M-shaped model (random init, 128 positions) against
Torch-Pruning's own dependency search on the same model.

Run: ``python tests/benchmarks/bench_transformers.py`` (from the repository root; needs
transformers). Prints
- the app's group search (find_groups: Torch-Pruning through attention proxies + head groups),
- Torch-Pruning's DependencyGraph + get_all_groups on the same model (told about Conv1D; it
  counts attention channels, not heads),
- their ratio, the group counts, and the shrink at density 0.5 by group-l2: time, parameters
  before/after, max |shrunk(x) - masked(x)| on one 32-token sequence.
Timings on a shared machine are noisy: compare the ratio, not the absolutes.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's visualizer

from visualizer.core.layers import is_conv1d  # noqa: E402
from visualizer.core.structure.graph import example_input  # noqa: E402
from visualizer.core.structure.groups import find_groups, group_scores  # noqa: E402
from visualizer.core.structure.groups.tracing import _conv1d_pruner, _logits  # noqa: E402
from visualizer.core.structure.shrink import structured_prune  # noqa: E402


def torch_pruning_groups(model: nn.Module, x: torch.Tensor) -> int:
    import torch_pruning as tp

    conv1d = {type(m) for m in model.modules() if is_conv1d(m)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False, output_transform=_logits,
                                                   customized_pruners={c: _conv1d_pruner() for c in conv1d})
        return len(list(dg.get_all_groups(root_module_types=(nn.Linear, *conv1d))))


def main() -> None:
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=128)).eval()
    model.config.use_cache = False
    x = example_input(model)
    t0 = time.perf_counter()
    res = find_groups(model, x)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_tp = torch_pruning_groups(model, x)
    theirs = time.perf_counter() - t0
    print(f"GPT-2 124M-shaped ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"{torch.get_num_threads()} threads")
    print(f"find_groups: {ours:.2f} s, {len(res.groups)} groups ({len(res.prunable())} prunable, "
          f"{sum(g.kind == 'head' for g in res.groups)} head groups)")
    print(f"Torch-Pruning DependencyGraph + get_all_groups: {theirs:.2f} s, {n_tp} groups")
    print(f"ratio find_groups / Torch-Pruning: {ours / theirs:.2f}")
    t0 = time.perf_counter()
    r = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l2"), 0.5, x[:1, :32])
    print(f"shrink at density 0.5: {time.perf_counter() - t0:.2f} s, parameters {r.params_before:,} -> "
          f"{r.params_after:,}, max |shrunk - masked| = {r.max_output_diff:.3g} (outputs up to {r.output_scale:.3g})")


if __name__ == "__main__":
    main()
