"""Hugging Face models: ``hf:DIR`` (a local model folder) or ``hf:NAME`` (a model already in the
local Hugging Face cache), loaded through ``transformers`` (the ``hf`` extra), offline.

Only safetensors weights are read (``pytorch_model.bin`` needs unpickling, which can run code);
a model whose config asks for its own Python code (``auto_map``) is refused unless the user
trusts it (``--trust``). Nothing is downloaded: the hub is switched offline and every call reads
local files only.

Token models (those whose main input is ``input_ids``) get token ids as example input, with the
vocabulary and sequence length of their config (:func:`hf_example_input`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from visualizer.core.models.errors import ModelLoadError
from visualizer.core.tasks import first_line

PREFIX = "hf:"
EXAMPLE_TOKENS = 32  # sequence length of a token model's example input (capped by its config)


class HFLoadError(ModelLoadError):
    """A Hugging Face model that cannot be loaded (one line for the user)."""


def import_transformers():
    """transformers, with the hub switched offline first; one line when it is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise HFLoadError("hf: models need the transformers library: pip install 'pruneviz[hf]'") from exc
    transformers.utils.logging.disable_progress_bar()  # the CLI draws its own progress
    transformers.utils.logging.set_verbosity_error()  # config warnings are not the user's problem
    return transformers


def hf_folder(spec: str) -> Path:
    """The local folder of ``spec``: a folder path, or a model name resolved in the local
    Hugging Face cache (``huggingface_hub.snapshot_download(local_files_only=True)``)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise HFLoadError(f"hf:{spec}: is a file; give the model folder (config.json + *.safetensors)")
    # hub names are NAME or ORG/NAME; anything else is a folder that is not there
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise HFLoadError(f"hf:{spec}: no such folder")
    import_transformers()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not cached, invalid name, hub errors alike
        raise HFLoadError(f"hf:{spec}: not a folder and not in the local Hugging Face cache "
                          f"({first_line(exc)}); download it first when online "
                          f"(hf download {spec}) or give its folder") from exc


def read_config(folder: Path) -> dict:
    """config.json of a model folder, as a dict; one line when missing or not JSON."""
    path = folder / "config.json"
    if not path.is_file():
        raise HFLoadError(f"{folder}: no config.json, so not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HFLoadError(f"{path}: not readable JSON ({first_line(exc)})") from exc
    if not isinstance(config, dict):
        raise HFLoadError(f"{path}: not a model config (a JSON object)")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors weights; one line when it has none (naming a pickled
    ``pytorch_model.bin`` it refuses)."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    if pickled:
        raise HFLoadError(f"{folder}: only pickled weights ({pickled[0]}), which can run code when read; "
                          "only safetensors weights are loaded (convert them with transformers' "
                          "save_pretrained(safe_serialization=True))")
    raise HFLoadError(f"{folder}: no weights (*.safetensors) beside config.json")


def load_hf(spec: str, trust: bool = False, pretrained: bool = True) -> tuple[nn.Module, str | None]:
    """``(model, weights file)`` of ``hf:spec`` in eval mode, its KV cache off (pruning runs
    whole sequences). ``pretrained`` False builds the architecture from config.json alone
    (random init, weights None)."""
    folder = hf_folder(spec)
    config_dict = read_config(folder)
    if "auto_map" in config_dict and not trust:
        raise HFLoadError(f"hf:{spec}: the model needs its own Python code ({folder / 'config.json'} has "
                          "auto_map), which runs on load; refused. If you trust it, pass --trust")
    files = weight_files(folder) if pretrained else []
    transformers = import_transformers()
    kwargs = {"local_files_only": True, "trust_remote_code": trust}
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # noqa: BLE001 - unknown model_type, bad fields, remote code refused
        raise HFLoadError(f"hf:{spec}: config.json is not one transformers can build ({first_line(exc)})") from exc
    cls = _model_class(transformers, config, trust)
    try:
        if pretrained:
            model = cls.from_pretrained(str(folder), config=config, use_safetensors=True, **kwargs)
        else:
            model = cls.from_config(config, trust_remote_code=trust) if cls.__name__.startswith("Auto") \
                else cls(config)
    except Exception as exc:  # noqa: BLE001 - shapes that do not fit, damaged files, missing code
        raise HFLoadError(f"hf:{spec}: transformers could not build the model ({first_line(exc)})") from exc
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False
    model.eval()
    return model, (str(files[0]) if files else None)


def _model_class(transformers, config, trust: bool):
    """The class config.json names (``architectures[0]``); for a model with its own code
    (``auto_map``, trusted), the first transformers Auto class it maps; else ``AutoModel``."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return cls
    if trust:
        for key in getattr(config, "auto_map", None) or {}:
            cls = getattr(transformers, key, None)
            if key.startswith("AutoModel") and cls is not None:
                return cls
    return transformers.AutoModel


def is_hf_model(model: nn.Module) -> bool:
    """A transformers model (duck-typed on its config, so transformers need not be imported)."""
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "model_type") and hasattr(model, "main_input_name")


def hf_example_input(model: nn.Module, batch: int = 2) -> torch.Tensor | None:
    """A random input for a transformers model: token ids in [0, vocab) of length
    min(32, max positions) for token models, a pixel batch (channels x image size) for vision
    models; None when the config says neither."""
    if not is_hf_model(model):
        return None
    config = model.config
    kind = getattr(model, "main_input_name", "input_ids")
    if kind == "input_ids":
        vocab = getattr(config, "vocab_size", None)
        if not vocab:
            return None
        length = EXAMPLE_TOKENS
        for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
            n = getattr(config, key, None)
            if isinstance(n, int) and n > 0:
                length = min(length, n)
                break
        return torch.randint(0, int(vocab), (batch, length))
    if kind == "pixel_values":
        size = getattr(config, "image_size", 224)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        return torch.randn(batch, getattr(config, "num_channels", 3), *size)
    return None
