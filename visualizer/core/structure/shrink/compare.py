"""One structured pruning: plan, masks, shrunk model, and how far the shrunk model's output is from the masked one's."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import torch
from torch import nn

from visualizer.core.models.outputs import main_logits
from visualizer.core.pruning.masks import MaskSet
from visualizer.core.structure.graph import model_device, random_like
from visualizer.core.structure.groups import ChannelGroup
from visualizer.core.structure.shrink.channels import ShrunkModel, masked_copy, plan_masks, shrink
from visualizer.core.structure.shrink.plans import PrunePlan, select_units
from visualizer.core.tasks import Step, first_line, run


@dataclass
class StructuredResult:
    """What ``pruneviz shrink`` reports."""

    plan: PrunePlan
    masks: MaskSet
    shrunk: ShrunkModel
    params_before: int
    params_after: int
    max_output_diff: float
    groups_total: int
    groups_prunable: int
    output_scale: float = 1.0  # max |masked(x)| over the same inputs


SHRINK_TOLERANCE = 1e-4  # of max(1, output scale): float32 rounding stays far below it


def shrink_mismatch(diff: float, scale: float, tol: float = SHRINK_TOLERANCE) -> bool:
    """Whether the shrunk model really differs from the masked one: |diff| > tol * max(1, scale),
    NaN included. Relative to the outputs' size: a randomly initialised torchvision Inception v3
    outputs ~7e11, where float32 rounding alone differs by ~1e6."""
    return not diff <= tol * max(1.0, scale)


@torch.no_grad()
def output_difference(a: nn.Module, b: nn.Module, example: torch.Tensor, trials: int = 3,
                      seed: int = 0) -> tuple[float, float]:
    """(max |a(x) - b(x)|, max |a(x)|) over ``trials`` random inputs shaped like ``example``
    (eval mode), drawn on the device of ``a``'s weights from a generator there (seeded)."""
    a.eval()
    b.eval()
    device = model_device(a)
    gen = torch.Generator(device=device).manual_seed(seed)
    worst = scale = 0.0
    for _ in range(trials):
        x = random_like(example.to(device), gen)
        ya, yb = main_logits(a(x)), main_logits(b(x))
        worst = max(worst, float((ya - yb).abs().max()))
        scale = max(scale, float(ya.abs().max()))
    return worst, scale


def max_output_diff(a: nn.Module, b: nn.Module, example: torch.Tensor, trials: int = 3, seed: int = 0) -> float:
    """max |a(x) - b(x)| over ``trials`` random inputs shaped like ``example`` (eval mode)."""
    return output_difference(a, b, example, trials, seed)[0]


def structured_prune(
    model: nn.Module,
    groups: list[ChannelGroup],
    scores: dict[int, torch.Tensor],
    density: float,
    example: torch.Tensor,
    scope: str = "layer",
    plan: PrunePlan | None = None,
    **metadata: str,
) -> StructuredResult:
    """Select units, build the masks and the shrunk model, and measure their output difference
    (the convenience form of :func:`structured_prune_job`)."""
    return run(structured_prune_job(model, groups, scores, density, example, scope, plan, **metadata))


def structured_prune_job(
    model: nn.Module,
    groups: list[ChannelGroup],
    scores: dict[int, torch.Tensor],
    density: float,
    example: torch.Tensor,
    scope: str = "layer",
    plan: PrunePlan | None = None,
    **metadata: str,
) -> Generator[Step, None, StructuredResult]:
    """Job: select units, build the masks and the shrunk model (a new module: ``model`` is only
    read), and measure their output difference. Yields between the stages; a job closed at a
    yield has changed nothing."""
    yield Step("selecting units", 0.0)
    plan = select_units(groups, scores, density, scope) if plan is None else plan
    masks = plan_masks(model, groups, plan, density=str(density), **metadata)
    yield Step("building the smaller model", 0.3)
    shrunk = shrink(model, groups, plan)
    yield Step("comparing with the masked model", 0.7)
    try:
        diff, scale = output_difference(masked_copy(model, masks), shrunk.model, example)
    except RuntimeError as exc:  # a layer whose code assumes a width the plan removed
        raise ValueError(f"the shrunk model does not run ({first_line(exc, limit=160)}): a channel coupling "
                         "was missed for this architecture; use the masks (--masks) instead") from exc
    if shrink_mismatch(diff, scale):
        plan.notices.append(
            f"the shrunk model differs from the masked model by {diff:.3g} (outputs up to {scale:.3g}): a "
            "channel coupling was missed for this architecture; trust the masks, not the shrunk model")
    yield Step("shrunk", 1.0)
    return StructuredResult(
        plan, masks, shrunk,
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in shrunk.model.parameters()),
        diff, len(groups), sum(1 for g in groups if g.prunable), scale,
    )
