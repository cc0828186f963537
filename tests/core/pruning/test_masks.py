"""MaskSet: apply, densities, safetensors round trip, torch.nn.utils.prune interop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from visualizer.core.io.mask_formats import read_mask, write_mask
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.criteria import score
from visualizer.core.pruning.masks import MaskError, MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.pruning.ranking import mask_from_scores
from visualizer.core.tasks import run


def small_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def magnitude_mask(model: nn.Module, density: float) -> MaskSet:
    return mask_from_scores(run(score("magnitude", model)), density, criterion="magnitude")


def test_apply_zeros_exactly_the_pruned_weights():
    model = small_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = magnitude_mask(model, 0.3)
    masks.apply(model)
    for name, p in model.named_parameters():
        if name in masks.masks:
            m = masks[name]
            assert torch.equal(p.detach(), before[name] * m)  # w' = w ⊙ m
            assert bool((p.detach()[~m] == 0).all())
        else:
            assert torch.equal(p.detach(), before[name])  # biases untouched
    assert MaskSet.from_model_zeros(model).kept() == masks.kept()


def test_density_statistics():
    model = small_model()
    masks = magnitude_mask(model, 0.25)
    total = sum(p.numel() for p in prunable_parameters(model).values())
    assert masks.total() == total
    assert masks.kept() == int(0.25 * total)
    assert masks.density() == masks.kept() / total
    assert sum(ld.kept for ld in masks.layers()) == masks.kept()
    assert MaskSet.for_model(model).density() == 1.0


def test_mask_grads_projects_the_gradient():
    model = small_model()
    masks = magnitude_mask(model, 0.5)
    loss = model(torch.randn(2, 1, 8, 8)).sum()
    loss.backward()
    masks.mask_grads(model)
    for name, p in model.named_parameters():
        if name in masks.masks:
            assert bool((p.grad[~masks[name]] == 0).all())


def test_save_load_round_trip(tmp_path):
    model = small_model()
    masks = magnitude_mask(model, 0.4)
    path = tmp_path / "masks.safetensors"
    write_mask(masks, path)
    back = read_mask(path)
    assert set(back.masks) == set(masks.masks)
    for n in masks:
        assert back[n].dtype == torch.bool and torch.equal(back[n], masks[n])
    assert back.metadata["criterion"] == "magnitude" and back.metadata["scope"] == "global"
    back.check(model)


def test_load_errors(tmp_path):
    with pytest.raises(MaskError, match="not found"):
        read_mask(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(MaskError, match="not a mask file"):
        read_mask(bad)


def test_check_refuses_a_mask_of_another_model():
    masks = magnitude_mask(small_model(), 0.5)
    with pytest.raises(MaskError, match="does not fit"):
        masks.check(nn.Sequential(nn.Linear(3, 3)))


def test_prune_state_dict_export_import_gives_identical_outputs():
    """Export to torch.nn.utils.prune's layout, load into a pruned model, compare outputs; then
    import back and get the same masks and weights."""
    model = small_model()
    masks = magnitude_mask(model, 0.3)
    x = torch.randn(5, 1, 8, 8)
    state = masks.to_prune_state_dict(model)
    assert {"0.weight_orig", "0.weight_mask", "3.weight_orig", "3.weight_mask"} <= set(state)

    twin = small_model()
    for name in masks:
        mod_name, _, pname = name.rpartition(".")
        prune.identity(dict(twin.named_modules())[mod_name], pname)
    twin.load_state_dict(state)
    with torch.no_grad():
        expected = torch.func.functional_call(model, masks.masked_state(model), (x,))
        assert torch.equal(twin(x), expected)

    back, plain = MaskSet.from_prune_state_dict(twin.state_dict())
    assert all(torch.equal(back[n], masks[n]) for n in masks)
    fresh = small_model()
    fresh.load_state_dict(plain)
    back.apply(fresh)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)


def test_attach_torch_prune_matches_apply():
    model = small_model()
    masks = magnitude_mask(model, 0.2)
    x = torch.randn(3, 1, 8, 8)
    hooked = small_model()
    masks.attach_torch_prune(hooked)
    masks.apply(model)
    with torch.no_grad():
        assert torch.equal(hooked(x), model(x))


def test_masks_on_a_bundled_model_agree_with_torch_global_unstructured():
    """Our global magnitude mask and torch's L1 global_unstructured prune the same weights
    (the bundled weights have no ties at the cut)."""
    loaded = load_model("lenet")
    masks = magnitude_mask(loaded.model, 0.2)
    twin = load_model("lenet").model
    params = prunable_parameters(twin)
    modules = dict(twin.named_modules())
    pairs = [(modules[n.rpartition(".")[0]], n.rpartition(".")[2]) for n in params]
    total = sum(p.numel() for p in params.values())
    prune.global_unstructured(pairs, prune.L1Unstructured, amount=total - masks.kept())
    for name in params:
        mod = modules[name.rpartition(".")[0]]
        assert torch.equal(getattr(mod, name.rpartition(".")[2] + "_mask").bool(), masks[name])


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
