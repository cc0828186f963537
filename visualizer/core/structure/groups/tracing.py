"""Coupled channel groups from Torch-Pruning's dependency graph, converted into explicit
members (see the package docstring for what is added and why)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Generator

import torch
from torch import nn

from visualizer.core.layers import input_dim, is_conv1d, is_linear, output_dim, private_view
from visualizer.core.models.outputs import main_logits
from visualizer.core.structure.graph import example_input, model_device
from visualizer.core.structure.groups.attention import (
    MIX,
    _head_groups,
    attention_groups,
    find_attention,
    install_proxies,
    remove_proxies,
)
from visualizer.core.structure.groups.model import ChannelGroup, Member, StructureResult
from visualizer.core.tasks import Step, TimeBudgetExceeded, first_line, run, sub, time_budget

# Torch-Pruning's dependency search is one uninterruptible call; on torchvision's Swin-T a single
# channel group took minutes. Past this many seconds it is stopped and the model gets no groups
# (the graph, unstructured masks and everything else still work).
GROUP_SEARCH_BUDGET_S = 60.0


def find_groups(model: nn.Module, example: torch.Tensor | None = None,
                budget_s: float = GROUP_SEARCH_BUDGET_S) -> StructureResult:
    """Coupled groups of ``model`` (see module docstring), computed to the end: the convenience
    form of :func:`find_groups_job` for callers that need no progress or cancellation."""
    return run(find_groups_job(model, example, budget_s))


def find_groups_job(model: nn.Module, example: torch.Tensor | None = None,
                    budget_s: float = GROUP_SEARCH_BUDGET_S) -> Generator[Step, None, StructureResult]:
    """Job: coupled groups of ``model`` (see module docstring). Never raises for a model that runs:
    a model Torch-Pruning cannot trace gets no groups and a notice.

    Yields a :class:`Step` before the dependency trace (one Torch-Pruning call, not interruptible),
    after it, and while its groups are converted. ``model`` itself is never changed: the trace
    runs on a private view (core.layers.private_view) in eval mode; weights are only read."""
    notices: list[str] = []
    if isinstance(model, torch.jit.ScriptModule):
        yield Step("structure: TorchScript module", 1.0)
        return StructureResult([], ["TorchScript module: no channel dependencies can be traced; "
                                    "structured pruning is unavailable (unstructured masks still work)"])
    if example is None:
        example = example_input(model)
    example = example.to(model_device(model))
    layouts = find_attention(model)
    swapped = []
    # Torch-Pruning hooks every module and runs a forward pass, attention layers are traced
    # through proxies: all of it on a copy of the module tree that shares every tensor, so the
    # model itself, which other jobs run meanwhile (core.tasks.STEP_LOCK's shared side), never changes
    traced = private_view(model).eval()
    try:
        yield Step("tracing channel dependencies", 0.0)
        swapped = install_proxies(traced, layouts)
        try:
            groups, outputs = yield from sub(_tp_groups(traced, example, notices, budget_s), 0.0, 0.95)
        except TimeBudgetExceeded:
            notices.append(f"the channel-group search (Torch-Pruning) did not finish in {budget_s:g} s and was "
                           "stopped: no channel groups, so no structured pruning for this model")
            groups, outputs = [], []
        except Exception as exc:
            notices.append(f"Torch-Pruning could not trace the model ({first_line(exc, with_type=True, limit=200)}): no channel groups")
            groups, outputs = [], []
    finally:
        remove_proxies(swapped)
    groups += _head_groups(model, len(groups))
    groups += attention_groups(model, layouts, len(groups))
    for i, g in enumerate(groups):
        g.id = i
    yield Step(f"{len(groups)} coupled groups", 1.0)
    return StructureResult(groups, notices, outputs)


def _tp_groups(model: nn.Module, example: torch.Tensor, notices: list[str], budget_s: float = GROUP_SEARCH_BUDGET_S):
    """Job: Torch-Pruning's groups converted to :class:`ChannelGroup` (returns groups, output
    layers). The two library calls together get ``budget_s`` seconds (TimeBudgetExceeded)."""
    import torch_pruning as tp

    start = time.monotonic()
    with warnings.catch_warnings(), time_budget(budget_s):
        warnings.simplefilter("ignore")
        conv1d = {type(m) for m in model.modules() if is_conv1d(m)}
        dg = tp.DependencyGraph().build_dependency(
            model, example_inputs=example, verbose=False, output_transform=_logits,
            customized_pruners={cls: _conv1d_pruner() for cls in conv1d})
    yield Step("grouping coupled channels", 0.5)
    with warnings.catch_warnings(), time_budget(max(0.0, budget_s - (time.monotonic() - start))):
        warnings.simplefilter("ignore")
        roots = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase, *conv1d)
        raw = list(dg.get_all_groups(root_module_types=roots))
    names = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    out_layers = _output_layers(dg)
    groups = []
    for gi, tg in enumerate(raw):
        if gi % 16 == 0:
            yield Step(f"group {gi + 1}/{len(raw)}", 0.6 + 0.4 * gi / len(raw))
        root_mod = tg[0].dep.target.module
        root = names.get(root_mod, "?")
        size = len(tg[0].idxs)
        members: list[Member] = []
        problems: list[str] = []
        seen: set[tuple] = set()
        for item in tg:
            dep, idxs = item.dep, list(item.idxs)
            roots_ = list(getattr(item, "root_idxs", idxs))
            target = dep.target
            is_out = dg.is_out_channel_pruning_fn(dep.handler)
            if target.type == tp.ops.OPTYPE.OUTPUT or type(target.module).__name__ == "_OutputOp":
                problems.append("its channels reach the model output")
                continue
            mod = target.module
            if isinstance(mod, nn.Parameter):
                pname = dg._param_to_name.get(mod, "?")
                dim = _last_nonsingleton_dim(mod)
                key = (pname, dim)
                if key not in seen:
                    seen.add(key)
                    members.append(Member(pname, dim, tuple(idxs), tuple(roots_), "param"))
                problems.append(f"free parameter {pname} cannot be shrunk safely")
                continue
            if not isinstance(mod, nn.Module) or mod not in names:
                continue  # an operation (add, cat, relu, reshape): no tensors of its own
            if names[mod].rpartition(".")[2] == MIX:
                problems.append(MIX)  # inside an attention layer: its head group replaces this one
                continue
            new, problem = _module_members(names[mod], mod, is_out, idxs, roots_)
            for m in new:
                key = (m.param, m.dim)
                if key not in seen:
                    seen.add(key)
                    members.append(m)
            if problem:
                problems.append(problem)
        if MIX in problems:
            continue
        members, size, problem = _regroup_grouped_convs(modules, members, size)
        if problem:
            problems.append(problem)
        if any(m.role == "out" and m.param.rpartition(".")[0] in out_layers for m in members):
            problems.insert(0, "output layer")
        # name the group after its first producer in module order (the expansion conv of an
        # inverted residual, not Torch-Pruning's root which may be the depthwise conv)
        producers = [m.param.rpartition(".")[0] for m in members if m.role == "out" and not m.buffer]
        if producers:
            root = min(producers, key=lambda n: order.get(n, 1 << 30))
        kind = "lstm-unit" if isinstance(root_mod, nn.RNNBase) else "channel"
        unique = list(dict.fromkeys(problems))
        reason = unique[0] + (f" (+{len(unique) - 1} more)" if len(unique) > 1 else "") if unique else ""
        g = ChannelGroup(0, kind, root, size, members, not problems, reason)
        groups.append(g)
    groups.sort(key=lambda g: order.get(g.root, 0))
    return groups, sorted(out_layers)


def _grouped_conv(module) -> bool:
    """A convolution with 1 < groups < in_channels (grouped, not depthwise)."""
    return isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups != module.in_channels


def _regroup_grouped_convs(modules: dict, members: list[Member], size: int) -> tuple[list[Member], int, str]:
    """Units of a group that a grouped convolution produces or reads.

    A conv with G groups holds n = C / G channels per group, and its weight's dim 1 (input side)
    has only n columns: input channel g*n + j is column j of group g. Removing arbitrary channels
    would leave the groups unequal, so the unit becomes j = "channel j of every conv group"
    (channels {j, n + j, 2n + j, ...}): removing it removes one channel from each group, column j
    of the reading conv, and rows g*n + j of the producing one. The group then has n units.
    Supported when every grouped conv in the group sees the group's channels unpermuted (no
    concatenation offset) and all of them have the same (channels, groups); otherwise the group
    is returned unchanged with the reason it cannot be pruned. Returns (members, size, problem)."""
    grouped = [m for m in members if not m.buffer and m.param.endswith("weight")
               and _grouped_conv(modules.get(m.param.rpartition(".")[0]))]
    if not grouped:
        return members, size, ""
    # unsupported layouts: the group stays as it is, without the grouped convs' input members (their
    # channel indices do not index the n columns of the weight), and is marked unprunable
    readers = {id(m) for m in grouped if m.role == "in"}
    kept = [m for m in members if id(m) not in readers]
    layouts = set()
    for m in grouped:
        name = m.param.rpartition(".")[0]
        conv = modules[name]
        channels = conv.out_channels if m.role == "out" else conv.in_channels
        unpermuted = sorted(zip(m.indices, m.units)) == [(i, i) for i in range(channels)]
        if not unpermuted or channels != size:
            return kept, size, f"grouped convolution {name} (groups={conv.groups}) sees a slice of these channels"
        layouts.add((channels, conv.groups))
    if len(layouts) != 1:
        return kept, size, "grouped convolutions with different group counts share these channels"
    channels, groups = layouts.pop()
    n = channels // groups
    out = []
    for m in members:
        if id(m) in readers:
            out.append(Member(m.param, m.dim, tuple(range(n)), tuple(range(n)), m.role, m.buffer))
        else:
            out.append(Member(m.param, m.dim, m.indices, tuple(u % n for u in m.units), m.role, m.buffer))
    return out, n, ""


def _output_layers(dg) -> set[str]:
    """Weight layers whose output channels reach the model output without passing another
    weight layer (a path through norms, activations, pooling and reshapes only)."""
    stop = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase, nn.MultiheadAttention)
    found = set()
    for mod, node in dg.module2node.items():
        if not isinstance(mod, stop) or mod not in dg._module2name:
            continue
        stack, seen = list(node.outputs), set()
        reaches_output = not node.outputs
        while stack and not reaches_output:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n.module, stop):
                continue  # a consumer: the channels end here
            if not n.outputs:
                reaches_output = True
            stack.extend(n.outputs)
        if reaches_output:
            found.add(dg._module2name[mod])
    return found


def _last_nonsingleton_dim(p: torch.Tensor) -> int:
    for d in range(p.ndim - 1, -1, -1):
        if p.shape[d] > 1:
            return d
    return p.ndim - 1


def _module_members(name: str, mod: nn.Module, is_out: bool, idxs: list[int], units: list[int]):
    """Members for one Torch-Pruning dependency on a module; returns (members, problem or '')."""
    pre = f"{name}." if name else ""
    idxs_t, units_t = tuple(int(i) for i in idxs), tuple(int(u) for u in units)
    out: list[Member] = []
    if isinstance(mod, nn.modules.conv._ConvNd):
        transposed = mod.transposed
        depthwise = mod.groups > 1 and mod.groups == mod.in_channels
        if mod.groups > 1 and not depthwise and transposed:
            return [], f"grouped transposed convolution {name} (groups={mod.groups})"
        # a grouped conv (1 < groups < channels) gets plain members here; _regroup_grouped_convs
        # then makes each unit one channel of every conv group (or marks the group unprunable)
        if is_out or depthwise:
            wdim = 1 if transposed else 0
            out.append(Member(pre + "weight", wdim, idxs_t, units_t, "out"))
            if mod.bias is not None:
                out.append(Member(pre + "bias", 0, idxs_t, units_t, "out"))
        else:
            out.append(Member(pre + "weight", 0 if transposed else 1, idxs_t, units_t, "in"))
        return out, ""
    if is_linear(mod):  # nn.Linear (weight (out, in)) or transformers' Conv1D (weight (in, out))
        if is_out:
            out.append(Member(pre + "weight", output_dim(mod), idxs_t, units_t, "out"))
            if mod.bias is not None:
                out.append(Member(pre + "bias", 0, idxs_t, units_t, "out"))
        else:
            out.append(Member(pre + "weight", input_dim(mod), idxs_t, units_t, "in"))
        return out, ""
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if mod.affine:
            out += [Member(pre + "weight", 0, idxs_t, units_t, "norm"), Member(pre + "bias", 0, idxs_t, units_t, "norm")]
        if mod.track_running_stats and mod.running_mean is not None:
            out += [Member(pre + "running_mean", 0, idxs_t, units_t, "norm", True),
                    Member(pre + "running_var", 0, idxs_t, units_t, "norm", True)]
        return out, ""
    if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
        if getattr(mod, "weight", None) is not None:
            out.append(Member(pre + "weight", 0, idxs_t, units_t, "norm"))
        if getattr(mod, "bias", None) is not None:
            out.append(Member(pre + "bias", 0, idxs_t, units_t, "norm"))
        return out, f"{type(mod).__name__} {name} normalises over these channels (removing one changes the statistics)"
    if isinstance(mod, nn.LSTM) and not mod.bidirectional and mod.num_layers == 1 and mod.proj_size == 0:
        h = mod.hidden_size
        if is_out:
            gate_idx = tuple(k * h + i for k in range(4) for i in idxs_t)
            gate_units = units_t * 4
            for pname in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                if getattr(mod, pname, None) is not None:
                    out.append(Member(pre + pname, 0, gate_idx, gate_units, "out"))
            out.append(Member(pre + "weight_hh_l0", 1, idxs_t, units_t, "in"))
        else:
            out.append(Member(pre + "weight_ih_l0", 1, idxs_t, units_t, "in"))
        return out, ""
    if isinstance(mod, nn.RNNBase):
        return [], f"{type(mod).__name__} {name}: only one-layer unidirectional LSTMs are supported"
    if isinstance(mod, nn.MultiheadAttention):
        e = mod.embed_dim
        if mod.in_proj_weight is not None:
            rows = tuple(k * e + i for k in range(3) for i in idxs_t)
            out.append(Member(pre + "in_proj_weight", 0 if is_out else 1, rows if is_out else idxs_t,
                              units_t * 3 if is_out else units_t, "out" if is_out else "in"))
        return out, f"attention {name}: its embedding dimension is tied to the head dimension"
    if isinstance(mod, nn.PReLU) and mod.num_parameters > 1:
        return [Member(pre + "weight", 0, idxs_t, units_t, "gate")], ""
    if isinstance(mod, nn.Embedding):
        return [Member(pre + "weight", 1, idxs_t, units_t, "out")], f"embedding {name}"
    if list(mod.parameters(recurse=False)):
        return [], f"unsupported layer {name} ({type(mod).__name__})"
    return [], ""


def _logits(out):
    """What the dependency trace follows back from: the logits of a model output (a tensor, a
    transformers ModelOutput, a tuple whose first entry is the logits)."""
    try:
        return main_logits(out)
    except TypeError:
        return out


def _conv1d_pruner():
    """Torch-Pruning's view of transformers' Conv1D: a linear layer whose weight is (in, out)."""
    import torch_pruning as tp

    class Conv1DPruner(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            keep = [i for i in range(layer.weight.shape[1]) if i not in set(idxs)]
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            layer.nf = len(keep)
            return layer

        def prune_in_channels(self, layer, idxs):
            keep = [i for i in range(layer.weight.shape[0]) if i not in set(idxs)]
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            layer.nx = len(keep)
            return layer

        def get_out_channels(self, layer):
            return layer.weight.shape[1]

        def get_in_channels(self, layer):
            return layer.weight.shape[0]

    return Conv1DPruner()
