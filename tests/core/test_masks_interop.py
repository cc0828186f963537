"""Issue 2 (masks): import of torch.nn.utils.prune state dicts from a model that has its own
``*_mask`` buffer, and refusal of masks that are not 0/1."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from visualizer.core.pruning.masks import MaskError, MaskSet


class WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("causal_mask", torch.tensor([1.0, 0.0, 1.0]))

    def forward(self, x):
        return self.fc(x) * self.causal_mask


def test_a_models_own_mask_buffer_is_not_taken_for_a_pruning_mask():
    torch.manual_seed(0)
    model = WithBuffer()
    prune.l1_unstructured(model.fc, "weight", amount=0.5)
    state = model.state_dict()
    assert {"fc.weight_orig", "fc.weight_mask", "causal_mask"} <= set(state)
    masks, plain = MaskSet.from_prune_state_dict(state)
    assert list(masks.masks) == ["fc.weight"] and masks.kept() == 6
    assert torch.equal(plain["causal_mask"], torch.tensor([1.0, 0.0, 1.0]))
    fresh = WithBuffer()
    fresh.load_state_dict(plain)  # strict: every key of the plain model, nothing else
    masks.apply(fresh)
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    # and back: our export loads into a torch-pruned twin with the buffer intact
    twin = WithBuffer()
    prune.identity(twin.fc, "weight")
    twin.load_state_dict(masks.to_prune_state_dict(fresh))
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))


def test_import_refusals():
    with pytest.raises(MaskError, match="not a torch.nn.utils.prune state dict"):
        MaskSet.from_prune_state_dict({"causal_mask": torch.ones(3), "w": torch.ones(2)})
    with pytest.raises(MaskError, match="other than 0 and 1"):
        MaskSet.from_prune_state_dict({"w_orig": torch.ones(2), "w_mask": torch.tensor([0.5, 1.0])})
