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

from visualizer.core.structure.groups.attention import _head_groups
from visualizer.core.structure.groups.model import ChannelGroup, Member, StructureResult
from visualizer.core.structure.groups.scores import group_scores, group_sparsity
from visualizer.core.structure.groups.summaries import (
    Branch,
    ConcatModule,
    Connectivity,
    branches,
    connectivity,
    layer_groups,
)
from visualizer.core.structure.groups.tracing import (
    GROUP_SEARCH_BUDGET_S,
    find_groups,
    find_groups_job,
)

__all__ = ["Member", "ChannelGroup", "StructureResult", "find_groups", "find_groups_job", "group_scores",
           "group_sparsity", "layer_groups", "Connectivity", "connectivity", "Branch", "ConcatModule",
           "branches", "GROUP_SEARCH_BUDGET_S", "_head_groups"]
