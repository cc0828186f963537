"""Load a model from a reference string, safely, and describe its prunable parameters.

References:
- a bundled name (``lenet``; see :data:`visualizer.core.models.zoo.ZOO`), pretrained weights from
  ``sample_models/NAME.safetensors`` (see :mod:`visualizer.core.resources`) when present;
- ``torchvision:NAME`` (needs torchvision): torchvision's DEFAULT pretrained weights from torch's
  cache (downloaded only when asked), or random init with ``pretrained=False``;
- a TorchScript file (``model.pt``);
- ``path/to/file.py:factory`` with ``weights=`` a state dict (.safetensors, .pt, .pth);
- ``hf:DIR`` or ``hf:NAME``: a Hugging Face model folder, or a model in the local Hugging Face
  cache, through transformers, offline and from safetensors only (:mod:`visualizer.core.models.hf`).

Checkpoints are read with ``torch.load(weights_only=True)``: a file that needs full unpickling
(which can run arbitrary code) is refused unless ``trust=True``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import torch
from torch import nn

from visualizer.core.io.checks import FileFormatError, check_safetensors
from visualizer.core.io.torchfile import UnpicklingRefused, safe_load, sniff
from visualizer.core.layers import output_dim, tied_aliases
from visualizer.core.models.errors import ModelLoadError
from visualizer.core.models.hf import load_hf
from visualizer.core.models.zoo import DEFAULT_MODEL, ZOO
from visualizer.core.optional import import_torchvision
from visualizer.core.pruning.masks import MaskError, MaskSet
from visualizer.core.pruning.prunable import prunable_parameters
from visualizer.core.resources import sample_models_dir
from visualizer.core.tasks import first_line
from visualizer.core.userfiles import import_callable


@dataclass
class LoadedModel:
    """A model plus what the app needs to know about it."""

    model: nn.Module
    ref: str
    dataset: str | None = None  # the dataset it was trained on / expects, if known
    pretrained: bool = False
    accuracy: float | None = None  # manifest test accuracy for bundled models
    notes: list[str] = field(default_factory=list)
    weights: str | None = None
    transform: Any = None  # the pretrained weights' own preprocessing (torchvision), if any
    masks: MaskSet | None = None  # the mask a torch.nn.utils.prune weights file carried

    @property
    def name(self) -> str:
        return self.ref

    @property
    def weights_line(self) -> str:
        """Which weights the model has, for the info line: "pretrained: IMAGENET1K_V1",
        "pretrained: lenet.safetensors" (also a TorchScript file's own weights and a Hugging
        Face folder's), "weights: my.pt" (given by --weights) or "random init"."""
        if not self.pretrained:
            return "random init"
        if not self.weights:
            return "pretrained"
        if self.ref.startswith("torchvision:") and "/" not in self.weights:
            return f"pretrained: {self.weights}"
        if Path(self.weights).parent == sample_models_dir() or self.weights == self.ref \
                or self.ref.startswith("hf:"):  # bundled, a model file's own, a model folder's
            return f"pretrained: {Path(self.weights).name}"
        return f"weights: {Path(self.weights).name}"




def read_manifest() -> dict:
    path = sample_models_dir() / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def load_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch checkpoint, safely.

    Accepts a plain state dict or a dict holding one under ``state_dict``/``model_state_dict``/
    ``model``; a torch.nn.utils.prune checkpoint gives its unmasked weights (``X = X_orig``; its
    masks come from :func:`load_weights`). Raises :class:`ModelLoadError` with a readable reason
    otherwise."""
    return load_weights(path, trust)[0]


def load_weights(path: str | Path, trust: bool = False) -> tuple[dict[str, torch.Tensor], MaskSet | None]:
    """``(state dict, masks)``: masks are those of a torch.nn.utils.prune checkpoint
    (``X_orig`` + ``X_mask`` pairs), else None."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not a weights file")
    try:
        kind = sniff(path)
    except FileFormatError as exc:
        raise ModelLoadError(str(exc)) from exc
    if path.suffix == ".safetensors" or kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            check_safetensors(path)
            tensors = load_file(str(path))
        except FileFormatError as exc:
            raise ModelLoadError(str(exc)) from exc
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name}: not a readable safetensors file ({first_line(exc)})") from exc
        return _split_prune(tensors, path.name)
    obj = _torch_load(path, trust)
    if isinstance(obj, nn.Module):
        return obj.state_dict(), None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return _split_prune(tensors, path.name)
    raise ModelLoadError(f"{path.name}: holds no state dict of tensors")


def _split_prune(tensors: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], MaskSet | None]:
    if not any(k.endswith("_mask") and k[:-5] + "_orig" in tensors for k in tensors):
        return tensors, None
    try:
        masks, plain = MaskSet.from_prune_state_dict(tensors)
    except MaskError as exc:
        raise ModelLoadError(f"{source}: {exc}") from exc
    masks.metadata["source"] = "torch.nn.utils.prune"
    return plain, masks


def _torch_load(path: Path, trust: bool):
    """:func:`~visualizer.core.io.torchfile.safe_load` with the model loader's messages."""
    try:
        return safe_load(path, trust)
    except UnpicklingRefused as exc:
        raise ModelLoadError(
            f"{path.name}: needs full unpickling, which can run arbitrary code; "
            "refused. If you trust this file, pass --trust (GUI: 'Trust this file')."
        ) from exc
    except FileFormatError as exc:
        raise ModelLoadError(str(exc)) from exc


def apply_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, turning mismatches into one readable error. A tied
    tensor may be given under any one of its names (GPT-2's files hold ``transformer.wte.weight``
    and not its alias ``lm_head.weight``)."""
    own = model.state_dict()
    state = dict(state)
    for alias, canonical in tied_aliases(model).items():
        if alias not in state and canonical in state:
            state[alias] = state[canonical]
        elif canonical not in state and alias in state:
            state[canonical] = state[alias]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        if bad:
            k = bad[0]
            parts.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise ModelLoadError(f"{source} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state)


def load_zoo(name: str, pretrained: bool = True) -> LoadedModel:
    entry = ZOO[name]
    model = entry.build()
    loaded = LoadedModel(model, name, dataset=entry.dataset)
    if pretrained:
        path = sample_models_dir() / f"{name}.safetensors"
        if path.exists():
            apply_weights(model, load_state_dict(path), path.name)
            loaded.pretrained = True
            loaded.weights = str(path)
            loaded.accuracy = read_manifest().get(name, {}).get("accuracy")
        else:
            loaded.notes.append(f"no pretrained weights for {name}: random initialisation")
    model.eval()
    return loaded


_TORCHVISION_LOCK = threading.Lock()


def torchvision_weights_file(weights) -> Path:
    """Where torch keeps a torchvision weights file: ``torch.hub.get_dir()/checkpoints/<file
    name from the weights' URL>`` (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def load_torchvision(name: str, pretrained: bool = True, download: bool = False):
    """``(model, weights)``: torchvision's ``name`` with its DEFAULT weights read from torch's
    cache (:func:`torchvision_weights_file`), downloaded there only with ``download``; with
    ``pretrained`` False, or a model torchvision has no weights for, random init and ``weights``
    None. Offline and not cached: one ModelLoadError line naming the file and how to get it.

    The model is built by torchvision's own builder with the weights (so architecture arguments
    that come with them, such as Inception v3's input transform, apply), but the file is read
    with ``torch.load(weights_only=True)`` instead of torchvision's full unpickling."""
    tvm = import_torchvision("models", f"torchvision:{name}", ModelLoadError)
    try:
        builder = tvm.get_model_builder(name)
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"torchvision has no model {name!r}") from exc
    weights = None
    if pretrained:
        try:
            weights = tvm.get_model_weights(name).DEFAULT
        except (ValueError, KeyError, AttributeError):
            weights = None
    if weights is None:
        return builder(weights=None), None
    file = torchvision_weights_file(weights)
    if not file.exists():
        if not download:
            raise ModelLoadError(
                f"torchvision:{name}: pretrained weights {weights.name} are not in torch's cache "
                f"({file}); pass --download (window: 'Download pretrained weights') when online, "
                f"copy {file.name} there, or pass --no-pretrained for random init")
        file.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(file.name)
        try:
            torch.hub.download_url_to_file(weights.url, str(file), match.group(1) if match else None,
                                           progress=False)
        except Exception as exc:  # noqa: BLE001 - network and hash failures alike
            raise ModelLoadError(f"torchvision:{name}: downloading {weights.url} failed: "
                                 f"{first_line(exc)}") from exc

    def read_cached(url: str, *args, **kwargs) -> dict:
        try:
            return safe_load(file)
        except FileFormatError as exc:  # a truncated or foreign file
            raise ModelLoadError(f"{file}: not readable torchvision weights ({first_line(exc)}); "
                                 "delete it and pass --download") from exc

    api = importlib.import_module("torchvision.models._api")
    with _TORCHVISION_LOCK, mock.patch.object(api, "load_state_dict_from_url", read_cached):
        try:
            model = builder(weights=weights)
        except ModelLoadError:
            raise
        except RuntimeError as exc:  # a state dict that does not fit the architecture
            raise ModelLoadError(f"{file.name} does not fit torchvision:{name}: {first_line(exc)}") from exc
    return model, weights


def load_factory(spec: str) -> nn.Module:
    """Build ``file.py:factory``: import the file as a module and call ``factory()``."""
    factory = import_callable(spec, ModelLoadError)
    name = Path(spec.rpartition(":")[0]).name
    func = spec.rpartition(":")[2]
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"{name}:{func}() failed: {first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{name}:{func}() returned {type(model).__name__}, not nn.Module")
    return model


def load_file_model(path: Path, trust: bool) -> nn.Module:
    """A TorchScript archive, or (with ``trust``) a whole pickled nn.Module."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; files still load
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 warns as FutureWarning
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript: look at it as a checkpoint below
        pass
    obj = _torch_load(path, trust)
    if isinstance(obj, nn.Module):
        return obj
    raise ModelLoadError(
        f"{path.name} is a checkpoint of tensors, not a model: give the architecture as "
        f"file.py:factory together with --weights {path.name}"
    )


def load_model(
    ref: str | None = None,
    weights: str | Path | None = None,
    trust: bool = False,
    pretrained: bool = True,
    download: bool = False,
) -> LoadedModel:
    """Load any model reference (see module docstring); raise ModelLoadError on any failure.
    ``pretrained`` False gives random init (bundled and torchvision models); ``download`` lets
    torchvision fetch its pretrained weights into torch's cache."""
    ref = ref or DEFAULT_MODEL
    if ref in ZOO:
        loaded = load_zoo(ref, pretrained=pretrained and weights is None)
    elif ref.startswith("torchvision:"):
        tv_weights_wanted = pretrained and weights is None
        model, tv = load_torchvision(ref.split(":", 1)[1], tv_weights_wanted, download)
        loaded = LoadedModel(model, ref, dataset=None)
        if tv is not None:
            loaded.pretrained, loaded.weights, loaded.transform = True, tv.name, tv.transforms()
        elif tv_weights_wanted:
            loaded.notes.append(f"torchvision has no pretrained weights for {ref}: random init")
    elif ref.startswith("hf:"):
        hf_weights_wanted = pretrained and weights is None
        model, hf_file = load_hf(ref[3:], trust=trust, pretrained=hf_weights_wanted)
        loaded = LoadedModel(model, ref, pretrained=hf_file is not None, weights=hf_file)
    elif ".py:" in ref:
        loaded = LoadedModel(load_factory(ref), ref)
    elif Path(ref).suffix in {".pt", ".pth", ".ts", ".jit"} or Path(ref).exists():
        # a TorchScript archive or pickled module carries its trained weights
        loaded = LoadedModel(load_file_model(Path(ref), trust), ref, pretrained=True, weights=ref)
    else:
        raise ModelLoadError(
            f"unknown model {ref!r}: use a bundled name ({', '.join(ZOO)}), "
            "torchvision:NAME, hf:FOLDER, hf:NAME, a TorchScript file or file.py:factory"
        )
    if weights is not None:
        state, masks = load_weights(weights, trust)
        apply_weights(loaded.model, state, Path(weights).name)
        if masks is not None:
            try:
                masks.check(loaded.model)
            except MaskError as exc:
                raise ModelLoadError(f"{Path(weights).name}: {exc}") from exc
            loaded.masks = masks
        loaded.weights = str(weights)
        loaded.pretrained = True
    loaded.model.eval()
    return loaded


@dataclass(frozen=True)
class LayerInfo:
    name: str  # parameter name
    kind: str  # owning module type
    shape: tuple[int, ...]
    params: int
    prunable: bool
    out_dim: int = 0  # which dimension of the weight indexes the layer's outputs (1: stored (in, out))


def layer_table(model: nn.Module) -> list[LayerInfo]:
    """One row per parameter: name, owning module kind, shape, size, prunable."""
    prunable = prunable_parameters(model)
    modules = dict(model.named_modules())
    rows = []
    for name, p in model.named_parameters():
        owner = modules.get(name.rpartition(".")[0], model)
        rows.append(LayerInfo(name, type(owner).__name__, tuple(p.shape), p.numel(), name in prunable,
                              output_dim(owner) if name.endswith("weight") and p.ndim >= 2 else 0))
    return rows


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
