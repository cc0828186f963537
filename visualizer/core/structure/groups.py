"""Coupled channel groups of a model: the units structured pruning removes together.

:func:`find_groups` — coupled channel groups (group lasso, Yuan & Lin 2006; Wen et al. 2016: parameters are
partitioned into groups G_k that are removed together, s_grp(w) = sum_k ||w_{G_k}||_2^0). The
channel dependencies come from Torch-Pruning's ``DependencyGraph`` (residual adds, concatenations,
batch norms, depthwise convs, flatten into linear, SE gates); this module converts them into
explicit members (parameter name, dimension, indices, and the unit each index belongs to) and
adds what Torch-Pruning lacks: LSTM hidden units (the 4 gate rows of ``weight_ih``/``weight_hh``,
the recurrent column of ``weight_hh`` and the next layer's input column) and attention heads of
``nn.MultiheadAttention`` (q/k/v rows of ``in_proj`` and the ``out_proj`` columns of one head),
and grouped convolutions (1 < groups < channels, e.g. ResNeXt, RegNet), whose unit is one channel
of every conv group so that the groups stay equal (see :func:`_regroup_grouped_convs`).

A group has ``size`` units (channels, hidden units or heads); removing unit u removes, from every
member, the indices whose ``units`` entry is u. A group is ``prunable`` only when removing a unit
gives a smaller model whose output equals the masked model's output exactly; groups that reach the
model output, pass through a LayerNorm/GroupNorm over the channel dimension, or touch ops we cannot
shrink are listed (the GUI draws them) with ``prunable=False`` and the reason.

Torch-Pruning's concatenation problems (its issues #146 and #481: concat groups merged or with
mismatched offsets) appeared here in two ways while building on it (torch-pruning 1.6): (1) passing
the classifier as ``ignored_layers`` to ``build_dependency`` makes the concat that feeds it lose its
offsets (``_ConcatOp(None)``): inception-mini's four inc2 branches then come back as ONE group of 4
channels with wrong indices; (2) rooting groups at a BatchNorm that reads a concatenation merges
all its producers (DenseNet block 2 became one 48-channel group). We therefore never ignore
layers while tracing, root groups only at producers (conv, linear, LSTM), and mark the output
layer's group unprunable afterwards. The hand-counted groups of resnet-mini, densenet-mini and
inception-mini (every concat slice mapped back to its producer) are checked in
``tests/core/structure/test_groups.py``, and shrink equivalence on every model catches any wrong member.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from visualizer.core.structure.graph import (
    ShapeRecorder,
    attribute_at,
    example_input,
    fx_trace,
    model_device,
)
from visualizer.core.structure.group_criteria import GROUP_CRITERIA, group_criterion
from visualizer.core.tasks import Step, TimeBudgetExceeded, first_line, run, sub, time_budget

# Torch-Pruning's dependency search is one uninterruptible call; on torchvision's Swin-T a single
# channel group took minutes. Past this many seconds it is stopped and the model gets no groups
# (the graph, unstructured masks and everything else still work).
GROUP_SEARCH_BUDGET_S = 60.0

# --- coupled groups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A slice of one tensor that belongs to a group: ``indices`` along ``dim`` of ``param``;
    ``units[i]`` is the group unit (channel, hidden unit, head) that ``indices[i]`` belongs to.
    ``buffer`` marks running statistics (they shrink with the group but are never masked)."""

    param: str
    dim: int
    indices: tuple[int, ...]
    units: tuple[int, ...]
    role: str  # "out" (produces the units), "in" (reads them), "norm", "gate", "param"
    buffer: bool = False

    def to_json(self) -> dict:
        return {"param": self.param, "dim": self.dim, "indices": list(self.indices),
                "units": list(self.units), "role": self.role, "buffer": self.buffer}


@dataclass
class ChannelGroup:
    """Units that must be removed together across all members (the group G_k of group lasso, Yuan & Lin 2006)."""

    id: int
    kind: str  # "channel", "lstm-unit", "head"
    root: str  # the module that produces the units
    size: int  # number of units
    members: list[Member]
    prunable: bool = True
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.root} ({self.kind}s: {self.size})"

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "root": self.root, "size": self.size,
                "prunable": self.prunable, "reason": self.reason,
                "members": [m.to_json() for m in self.members]}

    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role == "out" and not m.buffer]

    def consumers(self) -> list[Member]:
        return [m for m in self.members if m.role == "in"]


@dataclass
class StructureResult:
    groups: list[ChannelGroup]
    notices: list[str] = field(default_factory=list)
    output_layers: list[str] = field(default_factory=list)

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]


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
    after it, and while its groups are converted; closing the job at any yield restores the
    model's train/eval flag (the only state it touches: weights are only read)."""
    notices: list[str] = []
    if isinstance(model, torch.jit.ScriptModule):
        yield Step("structure: TorchScript module", 1.0)
        return StructureResult([], ["TorchScript module: no channel dependencies can be traced; "
                                    "structured pruning is unavailable (unstructured masks still work)"])
    if example is None:
        example = example_input(model)
    example = example.to(model_device(model))
    was_training = model.training
    model.eval()
    try:
        yield Step("tracing channel dependencies", 0.0)
        try:
            groups, outputs = yield from sub(_tp_groups(model, example, notices, budget_s), 0.0, 0.95)
        except TimeBudgetExceeded:
            notices.append(f"the channel-group search (Torch-Pruning) did not finish in {budget_s:g} s and was "
                           "stopped: no channel groups, so no structured pruning for this model")
            groups, outputs = [], []
        except Exception as exc:
            notices.append(f"Torch-Pruning could not trace the model ({first_line(exc, with_type=True, limit=200)}): no channel groups")
            groups, outputs = [], []
    finally:
        model.train(was_training)
    groups += _head_groups(model, len(groups))
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
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    yield Step("grouping coupled channels", 0.5)
    with warnings.catch_warnings(), time_budget(max(0.0, budget_s - (time.monotonic() - start))):
        warnings.simplefilter("ignore")
        roots = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase)
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
            new, problem = _module_members(names[mod], mod, is_out, idxs, roots_)
            for m in new:
                key = (m.param, m.dim)
                if key not in seen:
                    seen.add(key)
                    members.append(m)
            if problem:
                problems.append(problem)
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
    if isinstance(mod, nn.Linear):
        if is_out:
            out.append(Member(pre + "weight", 0, idxs_t, units_t, "out"))
            if mod.bias is not None:
                out.append(Member(pre + "bias", 0, idxs_t, units_t, "out"))
        else:
            out.append(Member(pre + "weight", 1, idxs_t, units_t, "in"))
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


def _head_groups(model: nn.Module, start: int) -> list[ChannelGroup]:
    """One group per nn.MultiheadAttention: unit h = head h = q/k/v rows [h*d, (h+1)*d) of
    ``in_proj_weight``/``in_proj_bias`` and the same columns of ``out_proj.weight``."""
    groups = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.MultiheadAttention) or not mod._qkv_same_embed_dim:
            continue
        e, nh = mod.embed_dim, mod.num_heads
        d = e // nh
        pre = f"{name}." if name else ""
        rows, units = [], []
        for k in range(3):
            for h in range(nh):
                rows += list(range(k * e + h * d, k * e + (h + 1) * d))
                units += [h] * d
        cols = tuple(range(e))
        col_units = tuple(h for h in range(nh) for _ in range(d))
        members = [Member(pre + "in_proj_weight", 0, tuple(rows), tuple(units), "out")]
        if mod.in_proj_bias is not None:
            members.append(Member(pre + "in_proj_bias", 0, tuple(rows), tuple(units), "out"))
        members.append(Member(pre + "out_proj.weight", 1, cols, col_units, "in"))
        problem = "" if (mod.bias_k is None and not mod.add_zero_attn) else "bias_k/add_zero_attn not supported"
        groups.append(ChannelGroup(start + len(groups), "head", name, nh, members, not problem, problem))
    return groups


# --- group scores ----------------------------------------------------------------------------------


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    return attribute_at(model, name)

@torch.no_grad()
def group_scores(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    criterion: str = "group-l2",
    scores: dict[str, torch.Tensor] | None = None,
) -> dict[int, torch.Tensor]:
    """Score of every unit of every coupled group (higher = more important = kept); the group
    criteria of :mod:`visualizer.core.structure.group_criteria`, not the per-channel mask
    criteria of core.pruning.criteria (old spellings l2-norm, l1-norm, bn-scale accepted):

    * ``group-l2`` (the group-lasso norm, Yuan & Lin 2006): ||w_{G_k}||_2 = sqrt(sum over all
      member weight slices of w^2) — weights, biases and norm scales of the unit, never running stats;
    * ``group-l1``: sum of |w| over the same slices;
    * ``group-bn``: mean |gamma| over the unit's batch-norm scales (Network Slimming, Liu et al.
      2017); groups without batch norm fall back to the group L2 norm;
    * ``scores`` given (any elementwise criterion, e.g. Taylor |g*w| from core.criteria): the sum
      of the elementwise scores over the unit's slices of the scored parameters.
    """
    out: dict[int, torch.Tensor] = {}
    mods = dict(model.named_modules())
    for g in groups:
        if scores is not None:
            acc = torch.zeros(g.size, dtype=torch.float64)
            for m in g.members:
                if m.param in scores and not m.buffer:
                    acc += _per_unit(g, m, scores[m.param].detach().cpu().double(), "sum")
            out[g.id] = acc
            continue
        criterion_g = group_criterion(criterion)
        if criterion_g == "group-bn":
            bn = [m for m in g.members if m.role == "norm" and m.param.endswith(".weight")
                  and isinstance(mods.get(m.param.rpartition(".")[0]), nn.modules.batchnorm._BatchNorm)]
            if bn:
                acc = sum(_per_unit(g, m, _tensor(model, m.param).detach().cpu().double().abs(), "mean") for m in bn)
                out[g.id] = acc / len(bn)
                continue
            criterion_g = "group-l2"
        if criterion_g not in ("group-l1", "group-l2"):
            raise ValueError(f"unknown group criterion {criterion!r}: use {', '.join(GROUP_CRITERIA)} or give scores")
        acc = torch.zeros(g.size, dtype=torch.float64)
        for m in g.members:
            if m.buffer:
                continue
            t = _tensor(model, m.param).detach().cpu().double()
            acc += _per_unit(g, m, t.abs() if criterion_g == "group-l1" else t * t, "sum")
        out[g.id] = acc if criterion_g == "group-l1" else acc.sqrt()
    return out


def _per_unit(group: ChannelGroup, member: Member, t: torch.Tensor, reduce: str) -> torch.Tensor:
    """Sum (or mean) of ``t`` over each unit's slice of a member, vectorised: reduce every index
    along ``member.dim`` over the other dimensions, then add the indices of each unit together."""
    moved = t.movedim(member.dim, 0).reshape(t.shape[member.dim], -1)
    per_index = moved.sum(1) if reduce == "sum" else moved.mean(1)
    idx = torch.tensor(member.indices, dtype=torch.long)
    units = torch.tensor(member.units, dtype=torch.long)
    acc = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units, per_index[idx])
    if reduce == "mean":
        count = torch.zeros(group.size, dtype=torch.float64).index_add_(0, units, torch.ones(len(idx), dtype=torch.float64))
        acc = acc / count.clamp(min=1)
    return acc


def group_sparsity(model: nn.Module, groups: Iterable[ChannelGroup], tol: float = 0.0) -> int:
    """s_grp(w) = sum_k ||w_{G_k}||_2^0 (group sparsity, Wen et al. 2016): the number of units whose group norm > tol."""
    norms = group_scores(model, groups, "group-l2")
    return int(sum(int((n > tol).sum()) for n in norms.values()))


# --- summaries for the GUI -----------------------------------------------------------------------


def layer_groups(groups: Iterable[ChannelGroup]) -> dict[str, list[int]]:
    """Module path -> ids of the groups that touch it (to colour graph nodes by group)."""
    out: dict[str, list[int]] = {}
    for g in groups:
        for m in g.members:
            layer = m.param.rpartition(".")[0]
            ids = out.setdefault(layer, [])
            if g.id not in ids:
                ids.append(g.id)
    return out


@dataclass
class Connectivity:
    """Layer-to-layer connections through coupled channels: ``strength[i, j]`` = the group norm
    ||W_j[:, S_i]||_2 of the weights of consumer layer j that read producer i's channels S_i
    (NaN where j does not read i). For a DenseNet this is the dense connectivity pattern
    (Huang et al. 2017); connections that group lasso drove to zero read 0."""

    producers: list[str]
    consumers: list[str]
    strength: np.ndarray
    groups: list[int]  # the group of each producer row

    def to_json(self) -> dict:
        return {"producers": self.producers, "consumers": self.consumers, "groups": self.groups,
                "strength": [[None if np.isnan(v) else float(v) for v in row] for row in self.strength]}


@torch.no_grad()
def connectivity(model: nn.Module, groups: Iterable[ChannelGroup]) -> Connectivity:
    rows: list[tuple[str, int, dict[str, float]]] = []
    consumers: list[str] = []
    for g in groups:
        if g.kind != "channel":
            continue
        prods = [m for m in g.producers() if m.param.endswith("weight")]
        if not prods:
            continue
        reads: dict[str, float] = {}
        for m in g.consumers():
            w = _tensor(model, m.param).detach()
            sl = w.index_select(m.dim, torch.tensor(m.indices, dtype=torch.long, device=w.device))
            layer = m.param.rpartition(".")[0]
            reads[layer] = float(sl.double().norm())
            if layer not in consumers:
                consumers.append(layer)
        rows.append((prods[0].param.rpartition(".")[0], g.id, reads))
    strength = np.full((len(rows), len(consumers)), np.nan)
    for i, (_, _, reads) in enumerate(rows):
        for layer, v in reads.items():
            strength[i, consumers.index(layer)] = v
    return Connectivity([r[0] for r in rows], consumers, strength, [r[1] for r in rows])


@dataclass
class Branch:
    index: int
    channels: tuple[int, int]  # [start, stop) of its slice of the concatenation
    layers: list[str]  # modules on the branch, input side first
    norm: float  # ||w_branch||_2 over all weights of the branch's layers (its group-lasso group)
    groups: list[int]  # channel groups that live entirely inside the branch


@dataclass
class ConcatModule:
    """A concatenation of parallel branches (an Inception module; a DenseNet layer is a concat of
    the identity and one branch)."""

    name: str
    kind: str  # "inception" (>= 2 branches with layers) or "dense" (identity + branch)
    branches: list[Branch]
    node: str = ""  # the torch.cat node of the fx graph (what branch removal rewrites)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "branches": [
            {"index": b.index, "channels": list(b.channels), "layers": b.layers, "norm": b.norm, "groups": b.groups}
            for b in self.branches]}


@torch.no_grad()
def branches(
    model: nn.Module, groups: Iterable[ChannelGroup] | None = None, example: torch.Tensor | None = None
) -> list[ConcatModule]:
    """Every ``torch.cat`` along channels in the fx graph with its branches: the layers between the
    point where the inputs fork and the concatenation, each branch's weight norm, and the groups
    that belong only to that branch (pruning all of them removes the branch's width)."""
    try:
        gm = fx_trace(model)
        ShapeRecorder(gm).propagate((example if example is not None else example_input(model)).to(model_device(model)))
    except Exception:  # untraceable: no branch summary (the graph view says why)
        return []
    groups = list(groups or [])
    modules = dict(model.named_modules())
    result = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
            continue
        ancestor_sets = [_ancestors(t) | {t} for t in tensors]
        common = set.intersection(*ancestor_sets)
        brs = []
        start = 0
        for i, t in enumerate(tensors):
            width = int(t.meta["tensor_meta"].shape[1])
            own = [n for n in gm.graph.nodes if n in ancestor_sets[i] and n not in common and n.op == "call_module"]
            layers = [str(n.target) for n in own]
            sq = 0.0
            for layer in layers:
                for p in modules[layer].parameters():
                    sq += float(p.double().pow(2).sum())
            layer_set = set(layers)
            gids = [g.id for g in groups if g.members and all(
                m.param.rpartition(".")[0] in layer_set for m in g.members if m.role != "in")]
            brs.append(Branch(i, (start, start + width), layers, sq ** 0.5, gids))
            start += width
        n_nonempty = sum(1 for b in brs if b.layers)
        owner = _common_owner([layer for b in brs for layer in b.layers])
        result.append(ConcatModule(owner or node.name, "inception" if n_nonempty >= 2 else "dense", brs, node.name))
    return result

def _ancestors(node) -> set:
    seen, stack = set(), list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return seen


def _common_owner(layers: list[str]) -> str:
    if not layers:
        return ""
    parts = [layer.split(".") for layer in layers]
    common = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common)
