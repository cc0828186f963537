"""The jobs the window runs: thin generators that call visualizer.core and package the result.

Each function here is a job factory's body: it runs in a worker thread, yields Steps and
returns what the GUI thread then installs. Heavy conversions (tensor -> numpy copies) happen
here so the event loop only swaps references. No numerics of its own: it calls core.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from visualizer.core.tasks import Step
from visualizer.ui.shell.state import LayerRow


def rank_job(*args, **kwargs):
    """The window's ranking job, :func:`visualizer.core.analysis.rank_job`, imported when it first
    runs (in the worker): core.analysis brings networkx and scipy, which start-up need not load."""
    from visualizer.core.analysis import rank_job as job

    return job(*args, **kwargs)


def load_job(
    ref: str, weights: str | None = None, trust: bool = False, dataset: str | None = None,
    pretrained: bool = True, download: bool = False, options=None,
) -> Generator[Step, None, tuple[Any, Any, dict]]:
    """Load a model (and its dataset) and prepare what the panels show. ``options``: the
    core.data DataOptions (image size, normalisation, root); the model's own preprocessing
    fills what they leave open. Notes (a wider head than the data's classes) join the model's."""
    from visualizer.core.data.external import DataOptions, options_for_model
    from visualizer.core.data.sources import check_model_reads, load_dataset
    from visualizer.core.models.loaders import load_model
    from visualizer.core.pruning.masks import MaskSet
    from visualizer.core.pruning.prunable import prunable_parameters

    yield Step(f"loading {ref}", 0.05)
    loaded = load_model(ref, weights=weights, trust=trust, pretrained=pretrained, download=download)
    yield Step("loading data", 0.5)
    name = dataset or loaded.dataset
    data = None
    if name:
        data = load_dataset(name, options_for_model(options or DataOptions(), loaded.model, loaded.transform))
        loaded.notes.extend(check_model_reads(loaded.model, data, ref))
    yield Step("reading layers", 0.8)
    info = model_info(loaded.model)
    info["masks"] = MaskSet.dense(prunable_parameters(loaded.model))
    if loaded.masks is not None:  # a torch.nn.utils.prune checkpoint: its mask shows at once
        from pathlib import Path

        info["masks"] = full_mask(loaded.model, loaded.masks)
        info["mask_source"] = Path(str(weights)).name
    # counted here, in the worker: summing ResNet-50's 25.5M mask entries took 55 ms of GUI thread
    info["layer_kept"] = {ld.name: ld.kept for ld in info["masks"].layers()}
    return loaded, data, info


def full_mask(model, masks):
    """``masks`` over every prunable weight of ``model`` (dense where the file says nothing);
    masks of other parameters (biases, norms) are dropped: the window prunes weights only."""
    from visualizer.core.pruning.masks import MaskSet
    from visualizer.core.pruning.prunable import prunable_parameters

    full = MaskSet.dense(prunable_parameters(model), **masks.metadata)
    for name, m in masks.masks.items():
        if name in full.masks:
            full.masks[name] = m.clone()
    return full


def mask_job(path: str, model) -> Generator[Step, None, Any]:
    """Read a mask file of any format (by content) and fit it to ``model``'s prunable weights."""
    from visualizer.core.io.mask_formats import read_mask

    yield Step(f"reading {path}", 0.1)
    masks = read_mask(path, model)
    yield Step("fitting the mask", 0.8)
    return full_mask(model, masks)


def model_info(model) -> dict:
    from visualizer.core.models.loaders import layer_table
    from visualizer.core.pruning.prunable import prunable_parameters

    prunable = prunable_parameters(model)
    layers = [LayerRow(r.name, r.kind, r.shape, r.params, r.prunable) for r in layer_table(model)]
    params = {n: p.detach().cpu().numpy().copy() for n, p in prunable.items()}
    return {"layers": layers, "prunable": list(prunable), "params": params}


def dataset_job(name: str, model=None, model_name: str = "the model", options=None,
                transform=None) -> Generator[Step, None, Any]:
    """Load a dataset for the current model; a dataset the model cannot read is refused (the
    window keeps the one it had). ``transform``: the model's pretrained preprocessing."""
    from visualizer.core.data.external import DataOptions, options_for_model
    from visualizer.core.data.sources import check_model_reads, load_dataset

    yield Step(f"loading {name}", 0.1)
    options = options or DataOptions()
    data = load_dataset(name, options if model is None else options_for_model(options, model, transform))
    if model is not None:
        yield Step(f"checking that {model_name} reads {name}", 0.8)
        notes = check_model_reads(model, data, model_name)
        if notes and not data.in_memory:  # a streamed source is built per request: its own notes
            data.notes = [*data.notes, *notes]
    return data
