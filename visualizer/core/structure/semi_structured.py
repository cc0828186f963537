"""2:4 layers on NVIDIA sparse tensor cores: measured time against dense (docs/theory.md §20).

For every linear layer whose mask is 2:4 along the input dimension and whose shape fits the
kernel (:func:`visualizer.core.pruning.savings.layer_savings`), the product ``x Wᵀ`` over
``tokens`` rows is timed twice on CUDA, in half precision: with the dense masked W, and with W
compressed by ``torch.sparse.to_sparse_semi_structured`` (CUTLASS or cuSPARSELt; Mishra et al.
2021). Both products are checked to agree before any time is reported. Without CUDA, or on a GPU
older than Ampere (compute capability 8.0), :func:`kernel_missing` says why and nothing is timed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import as_rows, nm_rows, transposed_weights
from visualizer.core.pruning.savings import layer_savings


def kernel_missing(device: str | torch.device = "cuda") -> str | None:
    """Why 2:4 kernels cannot run on ``device`` (None when they can)."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return "2:4 kernels need a CUDA device"
    try:
        from torch.sparse import to_sparse_semi_structured  # noqa: F401
    except ImportError:
        return "this torch has no torch.sparse.to_sparse_semi_structured"
    major, minor = torch.cuda.get_device_capability(dev)
    if major < 8:
        return f"compute capability {major}.{minor}: 2:4 sparse tensor cores need 8.0 (Ampere) or later"
    return None


@dataclass(frozen=True)
class SemiRow:
    """One layer's product: dense and 2:4 times (median, ms) and their largest difference."""

    name: str
    rows: int
    cols: int
    tokens: int
    dense_ms: float
    sparse_ms: float
    max_error: float

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms if self.sparse_ms > 0 else float("nan")


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_layer(weight: torch.Tensor, tokens: int = 2048, repeats: int = 20, warmup: int = 3,
               dtype: torch.dtype = torch.float16, name: str = "") -> SemiRow:
    """Dense vs 2:4 ``F.linear`` for one (out, in) weight already zero in a 2:4 pattern."""
    from torch.sparse import to_sparse_semi_structured

    w = weight.detach().to("cuda", dtype)
    x = torch.randn(tokens, w.shape[1], device="cuda", dtype=dtype)
    ws = to_sparse_semi_structured(w)
    dense = F.linear(x, w)
    sparse = F.linear(x, ws)
    err = float((dense - sparse).abs().max() / dense.abs().max().clamp_min(1e-6))
    if not err < 1e-2:
        raise RuntimeError(f"{name}: the 2:4 product differs from the dense one by {err:.3g} (relative)")
    for _ in range(warmup):
        F.linear(x, w)
        F.linear(x, ws)
    torch.cuda.synchronize()
    d = _median_ms(lambda: F.linear(x, w), repeats)
    s = _median_ms(lambda: F.linear(x, ws), repeats)
    return SemiRow(name, w.shape[0], w.shape[1], tokens, d, s, err)


def semi_structured_speed(model: nn.Module, masks: MaskSet | None = None, tokens: int = 2048,
                          repeats: int = 20, dtype: torch.dtype = torch.float16) -> tuple[list[SemiRow], dict[str, str]]:
    """Time every eligible 2:4 linear layer of ``model`` (``masks`` None: each linear layer's
    2:4 magnitude mask); returns the rows and the layers not timed with the reason. Raises
    RuntimeError where :func:`kernel_missing` gives a reason."""
    why = kernel_missing("cuda")
    if why:
        raise RuntimeError(why)
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    transposed = transposed_weights(model)
    if masks is None:
        masks = MaskSet({n: _magnitude_2_4(p, n in transposed) for n, p in params.items()
                         if n.endswith("weight") and _is_linear(modules.get(n.rsplit(".", 1)[0]))
                         and as_rows(p, n in transposed).shape[1] % 4 == 0})
    rows, skipped = [], {}
    for name, mask in masks.masks.items():
        owner = modules.get(name.rsplit(".", 1)[0] if "." in name else "")
        t = name in transposed
        info = layer_savings(name, params[name].detach().to(dtype), mask, owner, t)
        if not info.eligible:
            skipped[name] = info.reason
            continue
        w = as_rows(params[name].detach() * mask.to(params[name].device), t)
        rows.append(time_layer(w, tokens, repeats, dtype=dtype, name=name))
    return rows, skipped


def _is_linear(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _magnitude_2_4(p: torch.Tensor, transposed: bool) -> torch.Tensor:
    keep = nm_rows(as_rows(p.detach().abs().float().cpu(), transposed), 2, 4)
    return keep.t().contiguous() if transposed else keep.reshape(p.shape)


def total_ratio(rows: list[SemiRow]) -> float:
    """Summed dense time over summed 2:4 time (> 1: the 2:4 layers are faster)."""
    s = sum(r.sparse_ms for r in rows)
    return sum(r.dense_ms for r in rows) / s if s > 0 else float("nan")


def semi_structured_report(model: nn.Module, masks: MaskSet | None = None, tokens: int = 2048,
                           repeats: int = 20) -> dict:
    """``speed``'s 2:4 section as JSON-ready data: per layer the dense and 2:4 times and their
    ratio, the layers not timed with the reason, and the total ratio; ``{"skipped": reason}``
    where the kernels cannot run."""
    why = kernel_missing("cuda")
    if why:
        return {"skipped": why}
    rows, skipped = semi_structured_speed(model, masks, tokens, repeats)
    return {"tokens": tokens, "layers": [{"name": r.name, "shape": [r.rows, r.cols], "dense_ms": r.dense_ms,
                                          "sparse_ms": r.sparse_ms, "speedup": r.speedup} for r in rows],
            "not_timed": skipped, "speedup": total_ratio(rows) if rows else None}
