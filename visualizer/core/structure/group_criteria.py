"""The scores of coupled channel groups, by name, kept apart from the per-channel mask criteria.

Two vocabularies score "a channel's norm" and they are not the same number:

- the mask criteria ``l1-norm``, ``l2-norm``, ``bn-scale`` of :mod:`visualizer.core.pruning.criteria`
  (``pruneviz prune``, the window's criterion list) score ONE OUTPUT CHANNEL of one layer by its
  own weights (Li et al. 2017; Liu et al. 2017 for the batch-norm scale);
- the group criteria here, ``group-l1``, ``group-l2``, ``group-bn`` (``pruneviz shrink`` and
  ``speed``, :func:`visualizer.core.structure.groups.group_scores`), score one unit of a COUPLED
  GROUP: every slice that must go with it when it is removed (the producing layer's output
  channel, its bias and norm, and the consumers' input slices), i.e. the group-lasso norm
  ||w_G||_2 (Yuan & Lin 2006; Wen et al. 2016), its L1 analogue, or the mean |gamma| of the
  group's batch norms (Network Slimming, Liu et al. 2017).

The old spellings of the group criteria (``l1-norm``, ``l2-norm``, ``bn-scale`` given to
``shrink``) are still accepted and read as the group criteria.
"""

from __future__ import annotations

GROUP_CRITERIA = ("group-l2", "group-l1", "group-bn")
GROUP_CRITERION_ALIASES = {"l2-norm": "group-l2", "l1-norm": "group-l1", "bn-scale": "group-bn"}


def group_criterion(name: str) -> str | None:
    """The group criterion ``name`` means (an old spelling mapped to its new id), or None when
    it is not a group criterion."""
    name = GROUP_CRITERION_ALIASES.get(name, name)
    return name if name in GROUP_CRITERIA else None
