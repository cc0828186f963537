"""Theory labs: small experiments that check a formula of the pruning theory against numbers.

Each lab is a job (a generator of :class:`visualizer.core.tasks.Step`) returning a dataclass with
``to_json()`` and ``summary()``; the CLI runs them with ``pruneviz lab NAME`` and the GUI shows
them as presets. The theory of each is in its module docstring and in docs/theory.md.

* ``mask-probability``: exact-support probability of magnitude pruning at initialisation,
  formula vs Monte Carlo;
* ``phase-transition``: OMP / ISTA / IHT recovery over (delta, rho) with the Donoho-Tanner curve;
* ``a-optimal``: the A-optimal sensor subset vs keeping the largest rows;
* ``random-labels``: dense and ticket accuracy on true vs shuffled labels against chance.
"""

from __future__ import annotations

LAB_MODULES = {
    "mask-probability": ("visualizer.core.labs.mask_probability", "mask_probability"),
    "phase-transition": ("visualizer.core.labs.phase_transition", "phase_transition"),
    "a-optimal": ("visualizer.core.labs.a_optimal", "a_optimal"),
    "random-labels": ("visualizer.core.labs.random_labels", "random_labels"),
}


def lab_job(name: str):
    """The job function of a lab by its name (imported on demand: random-labels pulls in torch)."""
    import importlib

    if name not in LAB_MODULES:
        raise ValueError(f"unknown lab {name!r} (use {', '.join(LAB_MODULES)})")
    module, fn = LAB_MODULES[name]
    return getattr(importlib.import_module(module), fn)
