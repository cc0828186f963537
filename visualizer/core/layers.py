"""What a layer's weight means, independent of the library that defined it.

Most libraries store a linear map's weight as (out, in) (``nn.Linear``); transformers' ``Conv1D``
(GPT-2's attention and MLP layers) stores it transposed, as (in, out), and computes
``x @ W + b``. Every rule that needs to know which dimension holds a layer's outputs (prunable
parameters, layer tables, per-row comparisons, channel groups, shrinking) asks here.

Tied weights (GPT-2's ``lm_head.weight`` is the token embedding ``transformer.wte.weight``) are
one parameter reachable under two names: :func:`parameter_names` gives each parameter the one
name ``named_parameters()`` reports (its first owner), so it is masked once and named the same in
every file."""

from __future__ import annotations

import torch
from torch import nn


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (recognised by name, so transformers need not be imported): a
    linear layer whose weight is stored (in, out)."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def is_linear(module: nn.Module) -> bool:
    """A dense linear map: ``nn.Linear`` or transformers' ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def output_dim(module: nn.Module) -> int:
    """The dimension of ``module.weight`` that indexes its outputs: 1 for ``Conv1D`` (stored
    (in, out)) and transposed convolutions, else 0."""
    if is_conv1d(module):
        return 1
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        return 1
    return 0


def output_dims(model: nn.Module) -> dict[str, int]:
    """Every weight whose outputs are not along dim 0 -> its :func:`output_dim` (GPT-2's
    ``Conv1D`` weights -> 1), under its one name (:func:`parameter_names`). The channel rules
    (per-channel criteria, channel-structured ranking) read a weight's channels along this
    dimension; a name absent here has its outputs along dim 0. A TorchScript module keeps no
    Python layers to ask (and no Conv1D): all its weights have outputs along dim 0."""
    out: dict[str, int] = {}
    if isinstance(model, torch.jit.ScriptModule):
        return out
    for name, p in model.named_parameters():
        owner = owner_module(model, name)
        if name.rpartition(".")[2] == "weight" and getattr(owner, "weight", None) is p:
            dim = output_dim(owner)
            if dim:
                out[name] = dim
    return out


def input_dim(module: nn.Module) -> int:
    """The dimension of a linear layer's weight that indexes its inputs (0 for Conv1D, else 1)."""
    return 0 if output_dim(module) == 1 else 1


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a linear layer (nn.Linear or Conv1D)."""
    if is_conv1d(module):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return int(module.in_features), int(module.out_features)


def fix_linear_attributes(module: nn.Module) -> None:
    """Make a linear layer's size attributes agree with its (shrunk) weight."""
    if is_conv1d(module):
        module.nx, module.nf = int(module.weight.shape[0]), int(module.weight.shape[1])
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape


def parameter_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its one name: the first under which ``named_parameters()`` (which lists
    a tied parameter once) reaches it. GPT-2's tied ``lm_head.weight`` is
    ``transformer.wte.weight``."""
    return {id(p): name for name, p in model.named_parameters()}


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """Every second name of a tied parameter or buffer -> its one name (:func:`parameter_names`):
    GPT-2's ``{"lm_head.weight": "transformer.wte.weight"}``."""
    out: dict[str, str] = {}
    for named in (model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)):
        first: dict[int, str] = {}
        for name, t in named:
            if id(t) in first:
                out[name] = first[id(t)]
            else:
                first[id(t)] = name
    return out


def untie(model: nn.Module, params: dict[str, nn.Parameter]) -> dict[str, nn.Parameter]:
    """``params`` with every tied parameter once, under its :func:`parameter_names` name, in the
    order first met."""
    names = parameter_names(model)
    out: dict[str, nn.Parameter] = {}
    for name, p in params.items():
        canonical = names.get(id(p), name)
        if canonical not in out:
            out[canonical] = p
    return out


def owner_module(model: nn.Module, param_name: str) -> nn.Module:
    """The module that holds a parameter (``a.b.weight`` -> ``a.b``); the model itself for a
    top-level one."""
    owner = param_name.rpartition(".")[0]
    return model.get_submodule(owner) if owner else model


def private_view(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares its parameters and buffers: only the module
    objects are new. What a job changes on a module for the length of a call -- parameters swapped
    by ``torch.func.functional_call``, forward hooks, the train/eval flag, proxies swapped in --
    it changes here, so another job's forward pass through ``model`` (the window's shown version,
    which every job only reads) never sees it. Writes *into* the tensors (training, ``.grad``)
    still need a deep copy. A TorchScript module is returned as it is (it cannot be copied so,
    and neither hooks nor functional_call apply to it).

    Each module is copied shallowly (every attribute shared) and gets its own dicts --
    ``_parameters``, ``_buffers``, ``_modules`` and the hook dicts -- so a swap or a hook lands in
    the view's dict, never in the model's. A module reached twice stays one module. This is about
    three times cheaper than ``copy.deepcopy`` with a memo of the tensors (which took 3 ms of a
    7 ms masked evaluation of lenet) and never copies a tensor, including the non-leaf weight that
    torch.nn.utils.prune or weight_norm keep as a plain attribute, which deepcopy refuses."""

    if isinstance(model, torch.jit.ScriptModule):
        return model
    seen: dict[int, nn.Module] = {}

    def view_of(module: nn.Module) -> nn.Module:
        if id(module) in seen:
            return seen[id(module)]
        new = object.__new__(type(module))  # what copy.copy does, without the pickle protocol
        # _parameters, _buffers, _modules and every hook dict: the view's own
        new.__dict__ = {k: v.copy() if isinstance(v, dict) else v for k, v in vars(module).items()}
        seen[id(module)] = new
        for name, child in module._modules.items():
            if child is not None:
                new._modules[name] = view_of(child)
        return new

    return view_of(model)
