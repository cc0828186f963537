"""Shrunk models on disk: a weights_only-loadable state dict with its rebuild spec, torch.export and TorchScript."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from visualizer.core.io.atomic import atomic_write
from visualizer.core.io.checks import FileFormatError
from visualizer.core.io.session import TrustRequired
from visualizer.core.io.torchfile import safe_load
from visualizer.core.models.hf import is_hf_model
from visualizer.core.models.loaders import load_model
from visualizer.core.models.trust import model_trust_reason
from visualizer.core.structure.groups.attention import find_attention, set_heads
from visualizer.core.structure.shrink.attention import PrunedMultiheadAttention
from visualizer.core.structure.shrink.channels import (
    InputSelect,
    ShrunkModel,
    _get,
    _replace,
    _set_tensor,
    drop_branches,
    fix_module_attributes,
)
from visualizer.core.tasks import exclusive, import_unlocked

FORMAT = "pruneviz-shrunk"


def save_shrunk(path: str | Path, shrunk: ShrunkModel, ref: str, **info) -> None:
    """Write the shrunk weights + the spec that rebuilds the architecture from ``ref`` (a model
    reference load_model understands). Loadable with ``torch.load(weights_only=True)``."""
    spec = {**shrunk.spec, "ref": ref, **info}
    state = {k: v.detach().cpu().clone() for k, v in shrunk.model.state_dict().items()}
    payload = {"format": FORMAT, "version": 1, "spec": json.dumps(spec), "state_dict": state}
    atomic_write(path, lambda p: torch.save(payload, p))


def load_shrunk(path: str | Path, factory: Callable[[], nn.Module] | None = None, trust: bool = False) -> nn.Module:
    """Rebuild a model written by :func:`save_shrunk`: build the original architecture (``factory``
    or the saved model reference, without pretrained weights), resize every tensor to its saved
    shape, fix layer attributes, swap in pruned attention modules, load the weights.

    The saved reference is data from the file: when building it could run code (a
    ``file.py:factory``, a pickled model) it is refused with
    :class:`~visualizer.core.io.session.TrustRequired` unless ``trust`` (the person said yes)."""
    name = Path(path).name
    try:
        payload = safe_load(path)
    except FileFormatError as exc:  # damaged, or Python objects weights_only refuses
        raise FileFormatError(f"{name}: not a readable shrunk model ({_first_line(exc.__cause__ or exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FileFormatError(f"{name}: not a pruneviz shrunk model")
    try:
        spec = json.loads(payload["spec"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise FileFormatError(f"{name}: damaged shrunk model (spec or state missing)") from exc
    if not isinstance(spec, dict) or not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FileFormatError(f"{name}: damaged shrunk model (spec or state of the wrong type)")
    if factory is None:
        ref = spec.get("ref")
        if not isinstance(ref, str) or not ref:
            raise FileFormatError(f"{name}: names no model to rebuild")
        reason = model_trust_reason(ref)
        if reason is not None and not trust:
            raise TrustRequired(name, reason)
        model = load_model(ref, pretrained=False, trust=trust).model
    else:
        model = factory()
    try:
        return rebuild(model, spec, state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as exc:
        raise FileFormatError(f"{name}: does not rebuild {spec.get('ref', 'the model')} ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@torch.no_grad()
def rebuild(model: nn.Module, spec: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    for name, r in spec.get("replaced", {}).items():
        if r["type"] == "PrunedMultiheadAttention":
            _replace(model, name, PrunedMultiheadAttention(r["embed_dim"], r["num_heads"], r["head_dim"],
                                                           r["batch_first"], r["bias"], r.get("kept"),
                                                           r.get("source_heads")))
        elif r["type"] == "InputSelect":
            _replace(model, name, InputSelect(r["keep"], _get(model, name)))
        else:
            raise ValueError(f"unknown replaced module type {r['type']}")
    if spec.get("branches"):
        model = drop_branches(model, spec["branches"])
    layouts = {lay.name: lay for lay in find_attention(model)}  # before any tensor changes size
    reference = {n: copy.copy(m) for n, m in model.named_modules()}
    touched = set()
    for key, value in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = _get(model, owner_name)
        cur = getattr(owner, attr, None)
        if isinstance(cur, torch.Tensor) and tuple(cur.shape) != tuple(value.shape):
            _set_tensor(owner, attr, torch.zeros(value.shape, dtype=value.dtype))
            touched.add(owner_name)
    for owner_name in touched:
        fix_module_attributes(_get(model, owner_name), reference.get(owner_name))
    for name, kept_units in spec.get("heads", {}).items():
        set_heads(_get(model, name), layouts[name], int(kept_units))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


class LogitsOnly(nn.Module):
    """A transformers model that returns its logits tensor instead of a ModelOutput, so an
    exported or traced archive loads without transformers (its output classes are not
    registered with torch's serialisation)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _archivable(model: nn.Module) -> nn.Module:
    return LogitsOnly(model).eval() if is_hf_model(model) else model


def save_exported(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """``torch.export`` archive (.pt2) of ``model`` on inputs shaped like ``example``: torch's
    successor to TorchScript (``torch.jit`` is deprecated as of torch 2.13); load it with
    ``torch.export.load(path).module()``. A transformers model is saved returning its logits."""
    import_unlocked("torch._dynamo", "torch.export")  # seconds on first use: never under the lock
    model = _archivable(model.eval())
    try:
        with exclusive("torch.export (shrunk model)"):  # export patches every module while it traces
            program = torch.export.export(model, (example,))
    except Exception as exc:  # noqa: BLE001 - whatever torch.export cannot capture is one line
        raise ValueError(f"torch.export cannot capture the shrunk model ({_first_line(exc)})") from exc
    atomic_write(path, lambda p: torch.export.save(program, str(p)))


def save_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """TorchScript archive of ``model``: scripted when possible, else traced on ``example``. A
    transformers model is saved returning its logits."""
    model = _archivable(model.eval())
    with warnings.catch_warnings():  # deprecated in torch >= 2.13 (Deprecation-, then FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes fixed to the example's
        try:
            ts = torch.jit.script(model)
        except Exception:
            try:  # strict=False: transformers models return dicts (ModelOutput) of fixed structure
                with torch.no_grad():
                    ts = torch.jit.trace(model, example, check_trace=False, strict=False)
            except Exception as exc:  # noqa: BLE001 - untraceable code is one line
                raise ValueError(f"TorchScript cannot trace the shrunk model ({_first_line(exc)}); "
                                 "write it with --export (torch.export) instead") from exc
        atomic_write(path, lambda p: torch.jit.save(ts, str(p)))
