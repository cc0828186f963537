"""The one device resolver, and the device-side selections of IHT and DST (CPU plumbing)."""

from __future__ import annotations

import math

import pytest
import torch

from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.pruning.ranking import first_k
from visualizer.core.tasks import run
from visualizer.core.training import experiments
from visualizer.core.training.dst import drop_and_grow
from visualizer.core.training.evaluate import amp_enabled
from visualizer.core.training.loop import TrainConfig, train
from visualizer.core.training.prox import hard_threshold_masks
from visualizer.core.workspace import available_devices, device_memory, device_name, resolve_device


def test_auto_and_cpu():
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert resolve_device(None) == auto
    assert resolve_device("cpu") == resolve_device(" CPU ") == torch.device("cpu")
    assert available_devices()[0] == "cpu"
    assert device_name(torch.device("cpu")) == "cpu" and device_memory("cpu") == ""


def test_missing_devices_are_one_line_value_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^cuda requested but torch.cuda.is_available\(\) is False$"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"^cuda:3 requested but"):
        resolve_device("cuda:3")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'meta'"):
        resolve_device("meta")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="^mps not available$"):
        resolve_device("mps")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_is_checked_against_the_device_count(monkeypatch):
    # resolving never touches the GPU, so two pretend devices are enough to check the rule
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"^cuda:3 does not exist \(2 devices\)$"):
        resolve_device("cuda:3")
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]


def test_amp_only_on_cuda():
    assert not amp_enabled(True, torch.device("cpu"))
    assert not amp_enabled(False, torch.device("cuda"))
    assert amp_enabled(True, torch.device("cuda:0"))


def _stable_first_k(values: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    order = torch.sort(-values if largest else values, stable=True).indices
    keep = torch.zeros(values.numel(), dtype=torch.bool)
    keep[order[:k]] = True
    return keep


@pytest.mark.parametrize("largest", [True, False])
def test_first_k_is_a_stable_sort_prefix(largest):
    gen = torch.Generator().manual_seed(3)
    # few distinct values: many ties at every threshold
    values = torch.randint(0, 5, (400,), generator=gen).float()
    for k in (0, 1, 7, 80, 81, 200, 399, 400):
        assert torch.equal(first_k(values, k, largest), _stable_first_k(values, k, largest)), k


def _reference_drop_and_grow(w, mask, n, grad):
    """The previous CPU implementation (stable sorts) of RigL's update."""
    mask = mask.reshape(-1)
    active, inactive = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
    drop = active[torch.sort(w.abs().reshape(-1)[active], stable=True).indices[:n]]
    grow = inactive[torch.sort(-grad.abs().reshape(-1)[inactive], stable=True).indices[:n]]
    new = mask.clone()
    new[drop], new[grow] = False, True
    return new.reshape(w.shape)


def test_rigl_update_matches_the_sorting_reference_with_ties():
    gen = torch.Generator().manual_seed(1)
    w = torch.randint(-3, 4, (30, 20), generator=gen).float()
    g = torch.randint(-3, 4, (30, 20), generator=gen).float()
    mask = torch.rand(30, 20, generator=gen) < 0.4
    for n in (0, 1, 13, 100):
        new = drop_and_grow(w, mask, n, "rigl", grad=g)
        assert new.device == w.device and new.dtype == torch.bool
        assert torch.equal(new, _reference_drop_and_grow(w, mask, n, g)), n
        assert int(new.sum()) == int(mask.sum())


def test_hard_threshold_keeps_exactly_k_on_the_tensors_device():
    tensors = {"a": torch.tensor([1.0, -3.0, 2.0]), "b": torch.tensor([[3.0, 0.5], [2.0, 2.0]])}
    masks = hard_threshold_masks(tensors, 4)
    # |w| = 1 3 2 | 3 .5 2 2: the two 3s, then the first two 2s in name/index order
    assert masks["a"].tolist() == [False, True, True]
    assert masks["b"].tolist() == [[True, False], [True, False]]
    assert masks["a"].device == tensors["a"].device


def test_training_still_stops_on_divergence():
    model = load_model("mlp").model
    data = load_dataset("digits")
    config = TrainConfig(epochs=1, lr=1e12, optimizer="sgd", momentum=0.0, device="cpu", report_every=2)
    with pytest.raises(ValueError, match="diverged"):
        run(train(model, data, None, config))


def test_training_history_is_read_per_tick():
    model = load_model("mlp").model
    data = load_dataset("digits")
    config = TrainConfig(epochs=2, max_steps=25, device="cpu", report_every=10, evaluate_each_epoch=True)
    partial = []
    job = train(model, data, None, config)
    try:
        while True:
            step = next(job)
            if isinstance(step.partial, dict) and "train_loss" in step.partial:
                partial.append(step.partial)
    except StopIteration as stop:
        res = stop.value
    losses = [p["train_loss"] for p in partial]
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses)
    assert [p["step"] for p in partial if "test_loss" not in p][:2] == [10, 20]
    assert res.steps == 25


def test_sweep_rows_record_the_device_and_are_keyed_by_it():
    model = load_model("mlp").model
    data = load_dataset("digits")
    config = experiments.SweepConfig("mlp", ("magnitude",), (0.5,), train=TrainConfig(device="cpu"))
    first = run(experiments.sweep(model, data, config))
    assert first.rows[0]["device"] == "cpu" and first.computed == 1
    again = run(experiments.sweep(model, data, config, previous=first.rows))
    assert again.reused == 1 and again.computed == 0
    elsewhere = [dict(r, device="cuda:0") for r in first.rows]
    other = run(experiments.sweep(model, data, config, previous=elsewhere))
    assert other.computed == 1 and other.reused == 0
    assert "device" in experiments.KEY_FIELDS and "device" in experiments.ROW_FIELDS


def test_device_key_names_a_device_this_machine_lacks(monkeypatch):
    from visualizer.core.workspace import device_key

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_key("cpu") == "cpu"
    assert device_key("auto") in ("cpu", "mps")
    # a Ray task's GPU: the row says which device trained it even where the driver has none
    assert device_key("cuda") == "cuda:0" and device_key("cuda:2") == "cuda:2"
