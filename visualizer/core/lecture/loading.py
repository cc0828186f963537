"""A bundled model and its data for a lecture's job, on the device the window chose."""

from __future__ import annotations

from visualizer.core.data.sources import load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.workspace import device_name, resolve_device


def _device_of(model) -> str:
    return device_name(next(model.parameters()).device)


def _load(name: str, device: str = "auto"):
    """A bundled model on ``device`` (the window's device chooser; core.workspace.resolve_device)
    and its dataset: every core function then computes on the model's device."""
    loaded = load_model(name)
    loaded.model.to(resolve_device(device))
    return loaded, load_dataset(loaded.dataset)
