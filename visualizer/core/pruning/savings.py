"""What a mask really saves: parameters, memory as stored, and which layers 2:4 kernels can run
(docs/theory.md §20, "What a mask saves").

A mask alone saves nothing: the zeros are still stored and multiplied. This module answers "is it
actually sparse?" for each prunable weight of d entries, k kept, b bytes per entry, r rows:

- dense:  d·b bytes (what a masked model stores);
- CSR:    k·(b + 8) + 8·(r + 1) bytes (``torch.sparse_csr`` with int64 column indices and row
  pointers), smaller than dense only below a density of about b/(b + 8);
- 2:4:    d/2·b + d/8 bytes (the kept half plus a 2-bit position per kept entry), only for a mask
  that is 2:4 along the input dimension.

A layer is *eligible* for the 2:4 kernels (``torch.sparse.to_sparse_semi_structured``, NVIDIA
Ampere and later) when it is a linear layer (``nn.Linear`` or transformers' ``Conv1D``; torch has
no 2:4 convolution), its mask is 2:4 along the input dimension, and its (out, in) shape is a
multiple of the kernel's tile for half precision (the CUTLASS table of
``torch.sparse.semi_structured``: 32 rows and 64 columns). Float32 weights are converted to
float16/bfloat16 for the kernel; the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import as_rows, is_nm, transposed_weights

INDEX_BYTES = 8  # torch.sparse_csr's default int64 indices
HALF_TILE = (32, 64)  # CUTLASS float16/bfloat16 (rows, columns) multiple; read from torch when present
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.int8)


def kernel_tile(dtype: torch.dtype = torch.float16) -> tuple[int, int]:
    """The (rows, columns) multiple torch's 2:4 CUTLASS kernel needs for ``dtype``."""
    try:
        from torch.sparse.semi_structured import SparseSemiStructuredTensorCUTLASS as Cutlass

        c = Cutlass._DTYPE_SHAPE_CONSTRAINTS[dtype]
        return int(c.sparse_min_rows), int(c.sparse_min_cols)
    except (ImportError, AttributeError, KeyError):
        return HALF_TILE


@dataclass(frozen=True)
class LayerSavings:
    """One weight's storage under each format and its 2:4 eligibility (``reason`` says why not)."""

    name: str
    rows: int
    cols: int
    kept: int
    total: int
    dtype: str
    dense_bytes: int
    csr_bytes: int
    semi_bytes: int | None
    eligible: bool
    reason: str

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0


def dense_bytes(total: int, b: int) -> int:
    return total * b


def csr_bytes(kept: int, rows: int, b: int) -> int:
    return kept * (b + INDEX_BYTES) + INDEX_BYTES * (rows + 1)


def semi_structured_bytes(total: int, b: int) -> int:
    """d/2 kept values of b bytes plus 2 bits of position per kept value."""
    return total // 2 * b + total // 8


def _linear(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def layer_savings(name: str, weight: torch.Tensor, mask: torch.Tensor, module: nn.Module | None = None,
                  transposed: bool = False) -> LayerSavings:
    """The storage and 2:4 eligibility of one weight under ``mask``."""
    rows_mask = as_rows(mask, transposed)
    r, c = rows_mask.shape
    total, kept = mask.numel(), int(mask.sum())
    b = weight.element_size()
    two_four = c % 4 == 0 and is_nm(mask, 2, 4, transposed)
    tile = kernel_tile(weight.dtype if weight.dtype in KERNEL_DTYPES else torch.float16)
    if not _linear(module):
        reason = f"{type(module).__name__ if module is not None else 'this layer'}: torch's 2:4 kernels take linear layers only"
    elif not two_four:
        reason = "the mask is not 2:4 along the input dimension"
    elif r % tile[0] or c % tile[1]:
        reason = f"shape {r}x{c} is not a multiple of the kernel tile {tile[0]}x{tile[1]}"
    elif weight.dtype not in KERNEL_DTYPES:
        reason = f"{str(weight.dtype).removeprefix('torch.')}: runs as float16/bfloat16"
    else:
        reason = ""
    eligible = _linear(module) and two_four and not (r % tile[0] or c % tile[1])
    return LayerSavings(name, r, c, kept, total, str(weight.dtype).removeprefix("torch."),
                        dense_bytes(total, b), csr_bytes(kept, r, b),
                        semi_structured_bytes(total, b) if two_four else None, eligible, reason)


def savings_table(model: nn.Module, masks: MaskSet) -> list[LayerSavings]:
    """:func:`layer_savings` for every masked weight of ``model``."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    transposed = transposed_weights(model)
    out = []
    for name, mask in masks.masks.items():
        owner = modules.get(name.rsplit(".", 1)[0] if "." in name else "")
        out.append(layer_savings(name, params[name].detach(), mask, owner, name in transposed))
    return out


@dataclass(frozen=True)
class SavingsTotals:
    kept: int
    total: int
    dense_bytes: int
    csr_bytes: int
    best_bytes: int  # each layer in its smallest format (2:4 only where eligible)
    eligible_params: int


def totals(rows: list[LayerSavings]) -> SavingsTotals:
    """Sums over the layers; ``best_bytes`` stores each layer in the smallest of dense, CSR and
    (for an eligible layer) 2:4."""
    best = 0
    for r in rows:
        options = [r.dense_bytes, r.csr_bytes] + ([r.semi_bytes] if r.eligible and r.semi_bytes else [])
        best += min(options)
    return SavingsTotals(sum(r.kept for r in rows), sum(r.total for r in rows),
                         sum(r.dense_bytes for r in rows), sum(r.csr_bytes for r in rows), best,
                         sum(r.total for r in rows if r.eligible))
