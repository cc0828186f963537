"""Structured pruning that physically shrinks a model, and the MaskSet it is equivalent to.

Given the coupled groups of :func:`visualizer.core.structure.groups.find_groups` and a score per unit
(:func:`visualizer.core.structure.groups.group_scores`: channel L1/L2 norm, BN scale, Taylor, or the
group-lasso norm ||w_{G_k}||_2 of Yuan & Lin 2006), a :class:`PrunePlan` lists the units removed from each
group. From one plan come

* :func:`plan_masks` — the MaskSet over the original model's prunable weights (what the app
  shows): every member weight slice of a removed unit is False. Masks are constant over each group
  (docs/theory.md §6: masks constant over each group);
* :func:`shrink` — a new, smaller ``nn.Module``: every member tensor loses the removed indices
  (``index_select`` along the member's dimension), layer attributes follow the new shapes, and
  attention modules that lose heads become :class:`PrunedMultiheadAttention`.

The shrunk model's output equals the masked original's output (eval mode): each removed unit's
consumers read it through weights that the mask zeroes, so what the unit carries (a BN bias, a
constant gate) cannot reach the output — this is why groups that reach a LayerNorm or the output
are not prunable. Tests check allclose(atol=1e-5) on every bundled model.

A group keeps at least one unit (PyTorch cannot run a convolution with zero output channels),
except for whole Inception branches: :func:`remove_branches` deletes the branch's layers and drops
its input from the ``torch.cat`` of the fx graph (the shrunk model is then an fx GraphModule).
DenseNet connections are cut with :func:`select_zero_connections`: the consumer stops reading a
producer's channels (:class:`InputSelect`) while other layers keep them. :func:`zero_plan`
collects everything group lasso drove to zero (units, connections, branches).

Files: :func:`save_shrunk` writes ``torch.save({"format", "spec" (JSON), "state_dict"})`` that
loads with ``weights_only=True``; :func:`load_shrunk` rebuilds the original architecture from its
model reference, resizes it to the saved shapes and loads the weights. :func:`save_torchscript`
writes a TorchScript archive.
"""

from visualizer.core.structure.groups import Member
from visualizer.core.structure.shrink.attention import PrunedMultiheadAttention
from visualizer.core.structure.shrink.channels import (
    InputSelect,
    ShrunkModel,
    drop_branches,
    fix_module_attributes,
    masked_copy,
    plan_masks,
    shrink,
)
from visualizer.core.structure.shrink.compare import (
    SHRINK_TOLERANCE,
    StructuredResult,
    max_output_diff,
    output_difference,
    shrink_mismatch,
    structured_prune,
    structured_prune_job,
)
from visualizer.core.structure.shrink.files import (
    FORMAT,
    load_shrunk,
    rebuild,
    save_exported,
    save_shrunk,
    save_torchscript,
)
from visualizer.core.structure.shrink.plans import (
    PrunePlan,
    branch_plan,
    remove_branches,
    select_units,
    select_zero_connections,
    select_zero_units,
    zero_plan,
)

__all__ = [
    "Member", "PrunePlan", "select_units", "select_zero_units", "branch_plan", "plan_masks",
    "masked_copy", "shrink", "ShrunkModel", "PrunedMultiheadAttention", "save_shrunk", "load_shrunk",
    "rebuild", "save_exported", "save_torchscript", "structured_prune", "structured_prune_job",
    "StructuredResult", "max_output_diff", "output_difference", "shrink_mismatch", "SHRINK_TOLERANCE",
    "InputSelect", "select_zero_connections", "remove_branches", "drop_branches", "zero_plan",
    "fix_module_attributes", "FORMAT",
]
