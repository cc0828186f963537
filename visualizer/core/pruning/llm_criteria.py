"""Activation-aware pruning of language models: Wanda and SparseGPT (docs/theory.md, "Wanda",
"SparseGPT", "Layer reconstruction error").

Both read a calibration sample: the inputs X (features x tokens) that reach each linear layer.

- **Wanda** (Sun, Liu, Bair & Kolter 2024) scores ``S_ij = |W_ij| · ‖X_j‖₂`` and compares the
  scores within each output row i: every row keeps the same fraction of its weights. The ranking
  of the app has one threshold per scope, so :func:`wanda_scores` hands it each weight's place in
  its row, ``s_ij = 1 − r_ij / n`` (r_ij = 0 for the row's highest product, n inputs, ties to the
  lower input index): any threshold then keeps the top of every row, and the slider stays one
  ranking. The products themselves are :func:`wanda_products` (what the views draw).
- **SparseGPT** (Frantar & Alistarh 2023) prunes a layer to a density and updates the weights it
  keeps so the layer's output on the sample changes least. With ``H = X Xᵀ + λI`` and the upper
  Cholesky factor U of H⁻¹, columns are processed in blocks of B; at the start of each block the
  mask is chosen adaptively: the ``(1 − ρ)·rows·B`` smallest ``w²/U_jj²`` of the block (as
  already updated) are pruned (with N:M: the N largest of every M kept); column j's error
  ``e = (w_j − q_j)/U_jj`` is then spread over the block's later columns (``W −= e U_j,·``) and,
  at the block's end, over all later columns at once (lazy batch update).
  :func:`sparsegpt_reference` is the plain algorithm: every column's error goes to every later
  column at once, no blocks of updates; both give the same mask and weights.

Wanda and :func:`compare_layers` read the calibration batches once (forward pre-hooks) and
treat each layer on its own with the dense model's inputs. :func:`sparsegpt_job` follows the
SparseGPT paper on a model with a repeated block structure (a transformer's list of blocks):
the blocks are pruned one after another and each block is calibrated on the outputs of the
blocks already pruned (sequential); on other models, or with ``sequential=False``, every layer
reads the dense model's inputs (one-shot).
A layer whose inputs a hook cannot read (an RNN, a fused attention projection, Conv1d/3d) has no
activation statistics: Wanda scores it by ``|W|`` (every norm equal) and lists it in
``WandaResult.notes``; SparseGPT leaves it to magnitude and lists it in ``SparseGPTResult.skipped``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from visualizer.core.layers import is_conv1d
from visualizer.core.pruning.calibration import input_norms, input_statistics, stop_after
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.pruning.nm import as_rows, from_rows, nm_rows, transposed_weights
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import _descending_keys, first_k, kept_count
from visualizer.core.tasks import Step, sub

Scores = dict[str, torch.Tensor]

# criteria that read the workspace's calibration sample (core/workspace.py calibration_batches)
CALIBRATED = ("wanda", "sparsegpt")
DAMPING = 0.01  # λ = DAMPING · mean(diag(X Xᵀ)), the SparseGPT paper's default
BLOCK = 128  # columns per adaptive-mask block (the paper's B_s)


def calibrated_layers(model: nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """The weights in ``params`` whose layer inputs a hook can read (Linear, Conv2d, Conv1D),
    mapped to their module names."""
    modules = dict(model.named_modules())
    out = {}
    for name in params:
        mod = name.rsplit(".", 1)[0] if "." in name else ""
        m = modules.get(mod)
        if name.endswith("weight") and m is not None and (
            isinstance(m, nn.Linear | nn.Conv2d) or is_conv1d(m)
        ):
            out[name] = mod
    return out


def _prunable(model: nn.Module, params: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    if params is not None:
        return dict(params)
    out = prunable_parameters(model)
    if not out:
        raise ValueError("the model has no prunable parameters (Linear/Conv/RNN/attention weights)")
    return out


def model_forward(model: nn.Module, batch) -> object:
    """Run one calibration batch: the first element of an (x, y) pair (token ids or inputs)."""
    return model(batch[0] if isinstance(batch, tuple | list) else batch)


# --- Wanda ---------------------------------------------------------------------------------------


def wanda_products(params: Mapping[str, torch.Tensor], norms: Mapping[str, torch.Tensor]) -> Scores:
    """``|W_ij| · ‖X_j‖₂`` for each weight with norms (norms broadcast to the stored weight, as
    :func:`visualizer.core.pruning.calibration.input_norms` returns them)."""
    return {n: (params[n].detach().float().abs() * norms[n].to(params[n].device)).cpu()
            for n in norms if n in params}


def row_ranks(values: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``1 − r_ij / n`` for a stored weight's values: r_ij is the place of (i, j) in output row
    i sorted by descending value (ties: lower input index first), n the row length. A single
    threshold on these keeps the same count, up to one, of every row of every layer.

    Each row is sorted as unique uint64 keys (the ranking's order-preserving float bits above the
    position, :func:`visualizer.core.pruning.ranking._descending_keys`): numpy's SIMD sort of
    those is ~10x faster here than a stable ``torch.argsort`` of the floats, with the same order.
    The n values ``1 − r/n`` are then written through the sorted positions with ``np.put``
    (which repeats them for every row), and a (in, out) weight is transposed back by numpy."""
    rows = np.ascontiguousarray(as_rows(values.detach(), transposed).float().cpu().numpy())
    r, n = rows.shape
    if rows.size >= 2**32:
        raise ValueError(f"too many entries to rank in one layer ({rows.size})")
    keys = _descending_keys(rows).reshape(r, n)
    del rows
    keys.sort(axis=1)
    flat = keys.view(np.uint32).reshape(-1, 2)[:, 0 if sys.byteorder == "little" else 1]
    out = np.empty(r * n, dtype=np.float32)
    place = np.arange(n, dtype=np.float32)  # the k-th key of a row has rank k
    np.put(out, flat, np.float32(1.0) - place / np.float32(n))
    out = out.reshape(r, n)
    if transposed and values.dim() == 2:
        return torch.from_numpy(np.ascontiguousarray(out.T))
    return from_rows(torch.from_numpy(out), values.shape, transposed)


@dataclass
class WandaResult:
    """Row-rank scores (what the ranking reads), the raw products and the input norms."""

    scores: Scores
    products: Scores
    norms: Scores
    notes: list[str] = field(default_factory=list)


def wanda_job(model: nn.Module, batches: Iterable, params: Mapping[str, torch.Tensor] | None = None,
              forward: Callable[[nn.Module, object], object] | None = None
              ) -> Generator[Step, None, WandaResult]:
    """Wanda on every prunable weight of ``model`` over the calibration ``batches``."""
    params = _prunable(model, params)
    norms = yield from input_norms(model, batches, calibrated_layers(model, params), forward or model_forward)
    transposed = transposed_weights(model)
    products = wanda_products(params, norms)
    scores, notes = {}, []
    for i, (name, p) in enumerate(params.items()):
        if name in products:
            scores[name] = row_ranks(products[name], name in transposed)
        else:  # no observable inputs: every norm taken equal, so Wanda's ranking is |W|'s
            scores[name] = row_ranks(p.detach().float().abs().cpu(), name in transposed)
            notes.append(f"{name}: inputs not observable, scored by |W| within rows")
        if i % 8 == 7:
            yield Step("wanda row ranks", (i + 1) / len(params))
    return WandaResult(scores, products, {n: v.cpu() for n, v in norms.items()}, notes)


def wanda_scores(model: nn.Module, batches: Iterable) -> Generator[Step, None, Scores]:
    """The criterion form of :func:`wanda_job` (scores only)."""
    result = yield from wanda_job(model, batches)
    return result.scores


OUTLIER_RATIO = 5.0  # a feature is an outlier when its norm exceeds this many times the layer's mean


@dataclass(frozen=True)
class LayerNorms:
    """One layer's input-feature norms ‖X_j‖₂ and its outlier features (norm > ratio × mean)."""

    name: str
    norms: torch.Tensor  # (in,) float32, in the weight's input order
    outliers: torch.Tensor  # indices of the outlier features
    ratio: float = OUTLIER_RATIO

    @property
    def share(self) -> float:
        return self.outliers.numel() / max(self.norms.numel(), 1)


def calibration_profile(model: nn.Module, batches: Iterable, params: Mapping[str, torch.Tensor] | None = None,
                        ratio: float = OUTLIER_RATIO,
                        forward: Callable[[nn.Module, object], object] | None = None
                        ) -> Generator[Step, None, list[LayerNorms]]:
    """Per layer, ‖X_j‖₂ of every input feature over the calibration sample and the outliers
    ``‖X_j‖ > ratio · mean_j ‖X_j‖`` (what the calibration inspector draws: the reason Wanda
    beats magnitude, docs/theory.md §20). A conv kernel's inputs are its (in, kh, kw) taps."""
    params = _prunable(model, params)
    norms = yield from input_norms(model, batches, calibrated_layers(model, params), forward or model_forward)
    out = []
    for name in params:
        if name not in norms:
            continue
        v = norms[name].reshape(-1).float().cpu()
        mean = float(v.mean()) if v.numel() else 0.0
        out.append(LayerNorms(name, v, torch.nonzero(v > ratio * mean).reshape(-1), ratio))
    return out


# --- input Gram matrices -------------------------------------------------------------------------


def input_grams(model: nn.Module, batches: Iterable, layers: Mapping[str, str],
                forward: Callable[[nn.Module, object], object] | None = None
                ) -> Generator[Step, None, dict[str, torch.Tensor]]:
    """``X Xᵀ`` (in x in, float32, summed over every token or conv patch) for each weight in
    ``layers`` (param -> module name), from one pass over the batches."""
    return (yield from input_statistics(model, batches, layers, lambda x: x.t() @ x, forward or model_forward))


# --- SparseGPT -----------------------------------------------------------------------------------


def _prepared(weight: torch.Tensor, gram: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, U): the (out, in) weight in float64 with dead inputs zeroed, and the upper Cholesky
    factor of (X Xᵀ + λI)⁻¹ (dead inputs get H_jj = 1, as in the paper's code)."""
    w = weight.detach().to(torch.float64).clone()
    h = gram.detach().to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    lam = damping * torch.diag(h).mean()
    h += lam * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return w, torch.linalg.cholesky(hinv, upper=True)


def _block_mask(w: torch.Tensor, d: torch.Tensor, density: float) -> torch.Tensor:
    """Pruned entries of a block: the ``floor((1 − ρ)·numel)`` smallest ``w²/d²`` (ties: lower
    flat index)."""
    sal = (w.pow(2) / d.pow(2)).reshape(-1)
    k = int((1.0 - density) * sal.numel() + 1e-9)
    pruned = torch.zeros(sal.numel(), dtype=torch.bool, device=w.device)
    if k > 0:
        pruned[torch.argsort(sal, stable=True)[:k]] = True
    return pruned.reshape(w.shape)


def _nm_pruned(w: torch.Tensor, d: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Pruned entries of an (out, m) slice: all but the N largest ``w²/d²`` of each row."""
    sal = w.pow(2) / d.pow(2)
    keep = torch.argsort(-sal, dim=1, stable=True)[:, :n]
    pruned = torch.ones_like(sal, dtype=torch.bool)
    pruned.scatter_(1, keep, False)
    return pruned


def _check_layer(w: torch.Tensor, density: float, nm: tuple[int, int] | None) -> None:
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if nm is not None and w.shape[1] % nm[1]:
        raise ValueError(f"input dimension {w.shape[1]} is not a multiple of {nm[1]}")


def sparsegpt_layer(weight: torch.Tensor, gram: torch.Tensor, density: float, *,
                    nm: tuple[int, int] | None = None, block: int = BLOCK,
                    damping: float = DAMPING) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one (out, in) weight with ``gram = X Xᵀ``: returns (kept mask, new weight),
    the weight in the input's dtype. ``nm = (N, M)`` chooses N:M masks instead (density unused);
    ``block`` is both the adaptive-mask block and the lazy-update block (a multiple of M)."""
    _check_layer(weight, density, nm)
    if nm is not None and block % nm[1]:
        raise ValueError(f"block {block} is not a multiple of M = {nm[1]}")
    w, u = _prepared(weight, gram, damping)
    rows, cols = w.shape
    pruned = torch.zeros_like(w, dtype=torch.bool)
    for b0 in range(0, cols, block):
        b1 = min(b0 + block, cols)
        w1 = w[:, b0:b1].clone()
        u1 = u[b0:b1, b0:b1]
        d1 = torch.diag(u1)
        err = torch.zeros_like(w1)
        p1 = _block_mask(w1, d1, density) if nm is None else torch.zeros_like(w1, dtype=torch.bool)
        for i in range(b1 - b0):
            if nm is not None and i % nm[1] == 0:
                p1[:, i:i + nm[1]] = _nm_pruned(w1[:, i:i + nm[1]], d1[i:i + nm[1]], *nm)
            col = w1[:, i]
            q = torch.where(p1[:, i], torch.zeros_like(col), col)
            e = (col - q) / u1[i, i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            w1[:, i] = q
            err[:, i] = e
        w[:, b0:b1] = w1
        pruned[:, b0:b1] = p1
        w[:, b1:] -= err @ u[b0:b1, b1:]
    return ~pruned, w.to(weight.dtype)


def sparsegpt_reference(weight: torch.Tensor, gram: torch.Tensor, density: float, *,
                        nm: tuple[int, int] | None = None, block: int = BLOCK,
                        damping: float = DAMPING) -> tuple[torch.Tensor, torch.Tensor]:
    """The same algorithm written plainly: the mask of each block of columns is chosen from the
    current weights, then every column's error is applied to ALL later columns of W at once
    (O(out·in²) memory traffic instead of the lazy block updates)."""
    _check_layer(weight, density, nm)
    w, u = _prepared(weight, gram, damping)
    rows, cols = w.shape
    pruned = torch.zeros_like(w, dtype=torch.bool)
    for j in range(cols):
        if nm is None and j % block == 0:
            b1 = min(j + block, cols)
            pruned[:, j:b1] = _block_mask(w[:, j:b1], torch.diag(u)[j:b1], density)
        if nm is not None and j % nm[1] == 0:
            pruned[:, j:j + nm[1]] = _nm_pruned(w[:, j:j + nm[1]], torch.diag(u)[j:j + nm[1]], *nm)
        e = torch.where(pruned[:, j], w[:, j], torch.zeros_like(w[:, j])) / u[j, j]
        w[:, j:] -= e[:, None] * u[j, j:][None, :]
        w[pruned[:, j], j] = 0.0
    return ~pruned, w.to(weight.dtype)


@dataclass
class SparseGPTResult:
    """Masks over the prunable weights, the new weights of the reconstructed layers (stored
    layout) and their change ``Ŵ − W``; ``skipped`` names layers left to another rule, and why."""

    masks: MaskSet
    weights: dict[str, torch.Tensor]
    skipped: dict[str, str] = field(default_factory=dict)
    mode: str = "one-shot"  # or "sequential over N blocks": how the layers were calibrated

    def deltas(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {n: w - params[n].detach().cpu().to(w.dtype) for n, w in self.weights.items()}

    def relative_change(self, model: nn.Module) -> float:
        """``‖Ŵ − W‖_F / ‖W‖_F`` over the updated layers (0 when none was updated)."""
        params = dict(model.named_parameters())
        num = sum(float((w.double() - params[n].detach().cpu().double()).pow(2).sum()) for n, w in self.weights.items())
        den = sum(float(params[n].detach().cpu().double().pow(2).sum()) for n in self.weights)
        return (num / den) ** 0.5 if den > 0 else 0.0

    def layer_changes(self, model: nn.Module) -> dict[str, float]:
        """``‖Ŵ − W‖_F / ‖W‖_F`` of each updated layer."""
        params = dict(model.named_parameters())
        out = {}
        for n, w in self.weights.items():
            old = params[n].detach().cpu().double()
            den = float(old.norm())
            out[n] = float((w.double() - old).norm()) / den if den > 0 else 0.0
        return out

    def updated_model(self, model: nn.Module) -> nn.Module:
        """``model`` itself when no weight changed, else a copy carrying the new weights."""
        if not self.weights:
            return model
        import copy

        twin = copy.deepcopy(model)
        params = dict(twin.named_parameters())
        with torch.no_grad():
            for n, w in self.weights.items():
                params[n].copy_(w.to(params[n].device, params[n].dtype))
        return twin

    def apply(self, model: nn.Module) -> None:
        """Write the new weights into ``model`` (in place) and zero the pruned entries."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, w in self.weights.items():
                params[n].copy_(w.to(params[n].device, params[n].dtype))
        self.masks.apply(model)


def repeated_blocks(model: nn.Module, layers: Mapping[str, str]) -> list[str]:
    """Module names of the model's repeated blocks (a transformer's ``h``/``layers`` list): the
    children of the ``ModuleList``/``Sequential`` of at least two children of one class that
    holds the most calibrated layers (``layers``: param -> module name; ties: the outermost).
    Empty when there is none. Blocks without a calibrated layer (left dense) stay in the list."""
    best: list[str] = []
    best_count = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList | nn.Sequential) or len(mod) < 2:
            continue
        children = [(f"{name}.{c}" if name else c) for c, _ in mod.named_children()]
        if len({type(m) for m in mod.children()}) != 1:
            continue
        inside = [sum(1 for m in layers.values() if m == c or m.startswith(c + ".")) for c in children]
        if sum(inside) > best_count:
            best, best_count = children, sum(inside)
    return best


def _stages(model: nn.Module, batch, layers: Mapping[str, str], blocks: list[str],
            forward: Callable[[nn.Module, object], object]) -> list[tuple[str, list[str]]]:
    """The calibrated layers grouped into stages in the order the model runs them: one stage per
    block (its layers), one per layer outside the blocks; each as (module that ends the stage,
    param names). The order is read from one forward pass on ``batch``."""
    modules = dict(model.named_modules())

    def stage_of(module_name: str) -> str:
        for b in blocks:
            if module_name == b or module_name.startswith(b + "."):
                return b
        return module_name

    by_stage: dict[str, list[str]] = {}
    for p, m in layers.items():
        by_stage.setdefault(stage_of(m), []).append(p)
    order: list[str] = []
    hooks = [modules[m].register_forward_pre_hook(lambda _m, _a, m=m: order.append(m) if m not in order else None)
             for m in by_stage]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward(model, batch)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    order += [m for m in by_stage if m not in order]  # never reached: last (their inputs are unknown)
    return [(m, by_stage[m]) for m in order]


def _magnitude_or_dense(p: torch.Tensor, density: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """The mask of a layer SparseGPT cannot reconstruct: magnitude within the layer (N:M: dense)."""
    if nm is not None:
        return torch.ones(p.shape, dtype=torch.bool)
    return first_k(p.detach().abs().reshape(-1).float().cpu(), kept_count(density, p.numel())).reshape(p.shape)


def sparsegpt_job(model: nn.Module, batches: Iterable, density: float, *,
                  nm: tuple[int, int] | None = None, params: Mapping[str, torch.Tensor] | None = None,
                  block: int = BLOCK, damping: float = DAMPING,
                  forward: Callable[[nn.Module, object], object] | None = None,
                  sequential: bool | None = None
                  ) -> Generator[Step, None, SparseGPTResult]:
    """SparseGPT on every calibrated prunable weight of ``model`` at ``density`` (or N:M). The
    model is not changed: :meth:`SparseGPTResult.apply` installs the result. Layers without
    observable inputs, or whose input dimension is not a multiple of M, keep magnitude masks
    (N:M: dense) and are listed in ``skipped``.

    ``sequential`` (default: when the model has repeated blocks, :func:`repeated_blocks`): prune
    stage by stage (a block, or a layer outside the blocks, in the order the model runs them) on
    a working copy, each stage calibrated on the inputs the already pruned stages produce (the
    paper's procedure); ``False``: every layer on the dense model's inputs, one pass (one-shot)."""

    params = _prunable(model, params)
    forward = forward or model_forward
    batches = list(batches)
    layers = calibrated_layers(model, params)
    transposed = transposed_weights(model)
    blocks = repeated_blocks(model, layers) if sequential is not False else []
    solvable = {n: m for n, m in layers.items()
                if nm is None or as_rows(params[n].detach(), n in transposed).shape[1] % nm[1] == 0}
    masks, weights, skipped = {}, {}, {}
    for name, p in params.items():
        if name not in solvable:
            rows_in = as_rows(p.detach(), name in transposed).shape[1]
            skipped[name] = ("inputs not observable: magnitude mask" if name not in layers else
                             f"input dimension {rows_in} is not a multiple of {nm[1]}: dense")
            masks[name] = _magnitude_or_dense(p, density, nm)

    def solve(name: str, gram: torch.Tensor) -> torch.Tensor:
        """SparseGPT on one layer: its mask and new weight (stored layout) into the result."""
        p = params[name]
        t = name in transposed
        blk = block - block % nm[1] if nm is not None else block
        keep, w = sparsegpt_layer(as_rows(p.detach(), t).float(), gram.to(p.device), density, nm=nm,
                                  block=max(blk, nm[1] if nm else 1), damping=damping)
        masks[name] = from_rows(keep, p.shape, t).cpu()
        weights[name] = from_rows(w, p.shape, t).to(p.dtype).cpu()
        return weights[name]

    run_sequential = bool(solvable and batches) and (sequential or (sequential is None and bool(blocks)))
    if not run_sequential:
        grams = yield from sub(input_grams(model, batches, solvable, forward), 0.0, 0.3)
        for i, name in enumerate(solvable):
            if name in grams:
                solve(name, grams[name])
            else:  # the pass never reached it
                skipped[name] = "inputs not observable: magnitude mask"
                masks[name] = _magnitude_or_dense(params[name], density, nm)
            yield Step(f"sparsegpt {name}", 0.3 + 0.7 * (i + 1) / len(solvable))
        mode = "one-shot"
    else:
        yield from _sequential(model, batches, density, nm, params, solvable, blocks, forward,
                               masks, skipped, solve)
        mode = f"sequential over {len(blocks)} blocks" if blocks else "sequential over layers"
    meta = {"criterion": "sparsegpt", "structure": f"{nm[0]}:{nm[1]}" if nm else "unstructured", "mode": mode}
    return SparseGPTResult(MaskSet({n: masks[n] for n in params}, meta), weights, skipped, mode)


def _sequential(model, batches, density, nm, params, solvable, blocks, forward, masks, skipped, solve
                ) -> Generator[Step, None, None]:
    """The stages of :func:`sparsegpt_job` one after another on a working copy of ``model``:
    each stage's Gram matrices come from a pass (stopped after the stage) through the copy with
    every earlier stage already pruned and updated, as in Frantar & Alistarh (2023)."""
    import copy

    work = copy.deepcopy(model)
    work_params = dict(work.named_parameters())
    with torch.no_grad():  # layers left to magnitude are pruned for every stage (feed-forward: exact)
        for name in skipped:
            if name in work_params:
                work_params[name].mul_(masks[name].to(work_params[name].device, work_params[name].dtype))
    modules = dict(work.named_modules())
    stages = _stages(work, batches[0], solvable, blocks, forward)
    for si, (end, names) in enumerate(stages):
        lo, hi = si / len(stages), (si + 1) / len(stages)
        run_until, release = stop_after(modules[end], 1, forward)
        try:
            grams = yield from sub(input_grams(work, batches, {n: solvable[n] for n in names}, run_until),
                                   lo, lo + 0.3 * (hi - lo))
        finally:
            release()
        for name in names:
            wp = work_params[name]
            with torch.no_grad():  # the next stages read this stage's pruned, updated outputs
                if name in grams:
                    wp.copy_(solve(name, grams[name]).to(wp.device, wp.dtype))
                else:
                    skipped[name] = "inputs not observable: magnitude mask"
                    masks[name] = _magnitude_or_dense(params[name], density, nm)
                    wp.mul_(masks[name].to(wp.device, wp.dtype))
        yield Step(f"sparsegpt {end}", hi)


# --- reconstruction error ------------------------------------------------------------------------


def reconstruction_error(weight: torch.Tensor, new_weight: torch.Tensor, gram: torch.Tensor) -> float:
    """``‖WX − ŴX‖_F / ‖WX‖_F`` for (out, in) weights and ``gram = X Xᵀ``, without X:
    ``‖A X‖_F² = tr(A XXᵀ Aᵀ)``."""
    w = weight.detach().double()
    d = w - new_weight.detach().double()
    g = gram.detach().double().to(w.device)
    num = torch.einsum("ij,jk,ik->", d, g, d).clamp_min(0.0)
    den = torch.einsum("ij,jk,ik->", w, g, w)
    return float((num / den).sqrt()) if den > 0 else 0.0


@dataclass(frozen=True)
class LayerErrors:
    """One layer's relative reconstruction error under each method at one density."""

    name: str
    density: float
    magnitude: float
    wanda: float
    sparsegpt: float


def compare_layers(model: nn.Module, batches: Iterable, density: float,
                   params: Mapping[str, torch.Tensor] | None = None, *,
                   nm: tuple[int, int] | None = None, block: int = BLOCK,
                   forward: Callable[[nn.Module, object], object] | None = None
                   ) -> Generator[Step, None, list[LayerErrors]]:
    """Per-layer ``‖WX − ŴX‖/‖WX‖`` of magnitude (within the layer), Wanda (within rows) and
    SparseGPT at ``density`` (or N:M for all three), on one calibration pass. Rows stream as
    ``Step.partial``."""

    params = _prunable(model, params)
    layers = calibrated_layers(model, params)
    if not layers:
        raise ValueError("no layer of this model has observable inputs (Linear, Conv2d, Conv1D)")
    grams = yield from sub(input_grams(model, batches, layers, forward), 0.0, 0.4)
    transposed = transposed_weights(model)
    out = []
    names = [n for n in params if n in grams and (nm is None or as_rows(params[n], n in transposed).shape[1] % nm[1] == 0)]
    for i, name in enumerate(names):
        w = as_rows(params[name].detach(), name in transposed).float().cpu()
        g = grams[name].cpu()
        mag, prod = w.abs(), w.abs() * torch.diag(g).clamp_min(0).sqrt()[None, :]
        if nm is not None:
            mag_keep, wanda_keep = nm_rows(mag, *nm), nm_rows(prod, *nm)
        else:
            mag_keep = first_k(mag.reshape(-1), kept_count(density, mag.numel())).reshape(w.shape)
            k_row = kept_count(density, w.shape[1])
            wanda_keep = torch.stack([first_k(r, k_row) for r in prod]) if w.shape[0] else mag_keep
        blk = block - block % nm[1] if nm is not None else block
        _keep, w_sgpt = sparsegpt_layer(w, g, density, nm=nm, block=blk)
        row = LayerErrors(name, density, reconstruction_error(w, w * mag_keep, g),
                          reconstruction_error(w, w * wanda_keep, g), reconstruction_error(w, w_sgpt, g))
        out.append(row)
        yield Step(f"reconstruction {name}", 0.4 + 0.6 * (i + 1) / len(names), partial=row)
    return out
