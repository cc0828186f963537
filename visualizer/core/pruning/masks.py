"""MaskSet: one bool tensor per prunable parameter.

Pruning multiplies weights by a binary mask, w' = w ⊙ m (docs/theory.md §2, "Masks and
density"); the density is rho = ||w'||_0 / d = kept / total. Masks are kept on the CPU as bool
tensors keyed by parameter name; they are moved to a model's device when applied.

Here: the torch.nn.utils.prune state-dict layout (``<module>.weight_orig`` and
``<module>.weight_mask``) in memory. Files, in every format (pruneviz safetensors: uint8 per
parameter name, metadata as strings), are :mod:`visualizer.core.io.mask_formats` (``read_mask``,
``write_mask``): file formats sit above the data type they store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.core.pruning.prunable import prunable_parameters


class MaskError(Exception):
    """A mask that does not fit a model or cannot be read."""


@dataclass(frozen=True)
class LayerDensity:
    name: str
    kept: int
    total: int

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0


@dataclass
class MaskSet:
    masks: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def dense(cls, params: Mapping[str, torch.Tensor], **metadata: str) -> MaskSet:
        """All-ones masks over ``params`` (density 1)."""
        return cls({n: torch.ones(p.shape, dtype=torch.bool) for n, p in params.items()}, dict(metadata))

    @classmethod
    def for_model(cls, model: nn.Module) -> MaskSet:
        return cls.dense(prunable_parameters(model))

    @classmethod
    def from_model_zeros(cls, model: nn.Module) -> MaskSet:
        """The mask that a model's exact zeros imply (kept = nonzero), over its prunable weights."""
        return cls({n: (p.detach() != 0).cpu() for n, p in prunable_parameters(model).items()})

    def copy(self) -> MaskSet:
        return MaskSet({n: m.clone() for n, m in self.masks.items()}, dict(self.metadata))

    # --- statistics -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self.masks)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.masks[name]

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self.masks.values()))

    def density(self) -> float:
        """Global density: kept / total over all masked parameters."""
        total = self.total()
        return self.kept() / total if total else 0.0

    def layers(self) -> list[LayerDensity]:
        return [LayerDensity(n, int(m.sum()), m.numel()) for n, m in self.masks.items()]

    # --- model interaction ----------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Raise MaskError unless every mask names a parameter of the same shape."""
        params = dict(model.named_parameters())
        problems = []
        for name, m in self.masks.items():
            if name not in params:
                problems.append(f"{name}: no such parameter")
            elif tuple(params[name].shape) != tuple(m.shape):
                problems.append(f"{name}: mask {tuple(m.shape)} vs weight {tuple(params[name].shape)}")
        if problems:
            raise MaskError("mask does not fit the model: " + "; ".join(problems[:3]))

    def _pairs(self, model: nn.Module):
        params = dict(model.named_parameters())
        for name, m in self.masks.items():
            yield params[name], m

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights in place: w <- w ⊙ m."""
        for p, m in self._pairs(model):
            p.mul_(m.to(p.device, p.dtype))

    @torch.no_grad()
    def mask_grads(self, model: nn.Module) -> None:
        """g <- g ⊙ m: the projected gradient P_m ∇L (docs/theory.md §8)."""
        for p, m in self._pairs(model):
            if p.grad is not None:
                p.grad.mul_(m.to(p.grad.device, p.grad.dtype))

    def masked_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A copy of the model's state dict with theta = m ⊙ w for masked parameters."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, m in self.masks.items():
            state[name].mul_(m.to(state[name].device, state[name].dtype))
        return state

    def flat(self) -> torch.Tensor:
        """All masks concatenated in order: a bool vector over the prunable coordinates."""
        return torch.cat([m.reshape(-1) for m in self.masks.values()]) if self.masks else torch.zeros(0, dtype=torch.bool)

    # --- comparisons ----------------------------------------------------------------------
    def compare(self, other: MaskSet) -> list[dict]:
        """Per layer: kept in each, overlap |a ∧ b| and Jaccard |a ∧ b| / |a ∨ b|."""
        rows = []
        for name, a in self.masks.items():
            if name not in other.masks:
                continue
            b = other.masks[name]
            inter = int((a & b).sum())
            union = int((a | b).sum())
            rows.append(
                {
                    "name": name,
                    "kept_a": int(a.sum()),
                    "kept_b": int(b.sum()),
                    "overlap": inter,
                    "jaccard": inter / union if union else 1.0,
                }
            )
        return rows

    def to_prune_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The state dict torch.nn.utils.prune would hold: ``X_orig`` and ``X_mask`` for masked X,
        on the host whatever device the model is on (a file never names a GPU)."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for name, m in self.masks.items():
            orig = state.pop(name)
            state[f"{name}_orig"] = orig
            state[f"{name}_mask"] = m.to("cpu", orig.dtype)
        return state

    @classmethod
    def from_prune_state_dict(cls, state: Mapping[str, torch.Tensor]) -> tuple[MaskSet, dict[str, torch.Tensor]]:
        """Split a torch.nn.utils.prune state dict into a MaskSet and a plain state dict
        (``X = X_orig``, the unmasked weights).

        Only a ``X_mask`` that comes with its ``X_orig`` is a pruning mask: other keys ending in
        ``_mask`` (an attention model's ``causal_mask`` buffer, say) stay in the plain state dict."""
        pruned = {k[: -len("_mask")] for k in state if k.endswith("_mask") and k[: -len("_mask")] + "_orig" in state}
        masks: dict[str, torch.Tensor] = {}
        plain: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            base = key.rpartition("_")[0]
            if key.endswith("_mask") and base in pruned:
                if tuple(value.shape) != tuple(state[base + "_orig"].shape):
                    raise MaskError(f"{key} has shape {tuple(value.shape)} but {base}_orig has "
                                    f"{tuple(state[base + '_orig'].shape)}")
                if not bool(((value == 0) | (value == 1)).all()):
                    raise MaskError(f"{key} holds values other than 0 and 1: not a pruning mask")
                masks[base] = value.bool().cpu()
            elif key.endswith("_orig") and base in pruned:
                plain[base] = value
            else:
                plain[key] = value
        if not masks:
            raise MaskError("no '<param>_orig' / '<param>_mask' pairs: not a torch.nn.utils.prune state dict")
        return cls(masks), plain

    def attach_torch_prune(self, model: nn.Module) -> None:
        """Install these masks as torch.nn.utils.prune forward pre-hooks (interop)."""
        from torch.nn.utils import prune

        modules = dict(model.named_modules())
        for name, m in self.masks.items():
            mod_name, _, pname = name.rpartition(".")
            prune.custom_from_mask(modules[mod_name], pname, m.to(getattr(modules[mod_name], pname).device))

