"""Lab: no free lunch: with random labels neither a dense network nor a ticket beats chance.

When the labels carry no information about the inputs, every learner's expected test accuracy
is 1/K for K classes (Wolpert 1996; Zhang et al. 2017 trained networks to fit random labels
perfectly with chance-level test accuracy). The bundled MLP is trained on the digits with their
true labels and with shuffled labels (train and test labels both permuted, so no input predicts
its label), once dense from the shipped initialisation and once as an iterative-magnitude-pruning
ticket (Frankle & Carbin 2019): IMP round 0 is the dense run, its last round the ticket.

On N test points a predictor independent of the labels scores Binomial(N, 1/K) / N, inside the
band 1/K +- z sqrt((1/K)(1 - 1/K) / N) with the normal approximation's coverage for z (z = 3:
99.7%). See docs/theory.md.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import asdict, dataclass

import torch

from visualizer.core.data.sources import Dataset, load_dataset
from visualizer.core.models.loaders import load_model
from visualizer.core.tasks import Step, mapped, sub
from visualizer.core.training.loop import TrainConfig
from visualizer.core.training.lottery import (
    IMPConfig,
    initial_state,
    iterative_magnitude_pruning,
)
from visualizer.core.workspace import device_name, resolve_device

MODEL = "mlp"
DATASET = "digits"


def chance_band(classes: int, n: int, z: float = 3.0) -> tuple[float, float, float]:
    """(1/K, low, high) with half-width z sqrt((1/K)(1 - 1/K) / N)."""
    p = 1.0 / classes
    half = z * math.sqrt(p * (1 - p) / n)
    return p, p - half, p + half


def shuffled_labels(data, seed: int):
    """The dataset with its train and test labels each randomly permuted (class counts kept)."""
    g = torch.Generator().manual_seed(seed)
    y_train = data.y_train[torch.randperm(len(data.y_train), generator=g)]
    y_test = data.y_test[torch.randperm(len(data.y_test), generator=g)]
    return Dataset(f"{data.name} (shuffled labels)", data.x_train, y_train, data.x_test, y_test,
                   data.num_classes, "labels randomly permuted: no information about the inputs")


@dataclass
class RandomLabelsResult:
    """Test accuracies of the dense network and the IMP ticket on true and on shuffled labels."""

    dense_true: float
    dense_random: float
    ticket_true: float
    ticket_random: float
    ticket_density: float
    classes: int
    test_size: int
    chance: float
    band_z: float
    band_low: float
    band_high: float
    rounds: int
    rate: float
    epochs: int
    seed: int
    device: str = "cpu"

    def to_json(self) -> dict:
        return asdict(self)

    def accuracies(self) -> dict[str, float]:
        return {"dense, true labels": self.dense_true, "dense, random labels": self.dense_random,
                "ticket, true labels": self.ticket_true, "ticket, random labels": self.ticket_random}

    def summary(self) -> str:
        return (f"true labels: dense {self.dense_true:.3f}, ticket {self.ticket_true:.3f}; random labels: "
                f"dense {self.dense_random:.3f}, ticket {self.ticket_random:.3f} (chance {self.chance:.3f}, "
                f"band [{self.band_low:.3f}, {self.band_high:.3f}] on {self.test_size} test points; "
                f"ticket density {self.ticket_density:.3f})")


def random_labels(rounds: int = 2, rate: float = 0.5, epochs: int = 5, lr: float = 3e-3, seed: int = 0,
                  z: float = 3.0, device: str = "auto") -> Generator[Step, None, RandomLabelsResult]:
    """Dense and IMP-ticket test accuracy of the bundled MLP on true and on shuffled digits labels,
    trained on ``device`` (core.workspace.resolve_device). Each finished IMP round yields the
    result so far as ``Step.partial`` (accuracies not measured yet are NaN)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1 (a ticket needs one pruning round), got {rounds}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    yield Step("loading", 0.0)
    loaded = load_model(MODEL)
    data = load_dataset(DATASET)
    init, _ = initial_state(MODEL, loaded.model)
    config = IMPConfig(rounds=rounds, rate=rate,
                       train=TrainConfig(epochs=epochs, lr=lr, seed=seed, evaluate_each_epoch=False,
                                         device=str(device)))
    n = len(data.y_test)
    chance, low, high = chance_band(data.num_classes, n, z)
    acc = {"dense_true": math.nan, "ticket_true": math.nan, "dense_random": math.nan,
           "ticket_random": math.nan, "ticket_density": math.nan}

    def so_far() -> RandomLabelsResult:  # NaN: not measured yet (the slide leaves that bar empty)
        return RandomLabelsResult(
            **acc, classes=data.num_classes, test_size=n, chance=chance, band_z=z, band_low=low,
            band_high=high, rounds=rounds, rate=rate, epochs=epochs, seed=seed,
            device=device_name(resolve_device(device)))

    def rounds_to_bars(which: str):
        """Each finished IMP round as the figure so far: round 0 is the dense bar, the last round
        the ticket's."""
        def change(step: Step) -> Step:
            row = step.partial
            if not isinstance(row, dict) or "round" not in row:  # a training run's own records
                return Step(step.stage, step.fraction)
            if row["round"] == 0:
                acc[f"dense_{which}"] = row["accuracy"]
            if row["round"] == rounds:
                acc[f"ticket_{which}"] = row["accuracy"]
                if which == "true":
                    acc["ticket_density"] = row["density"]
            return Step(step.stage, step.fraction, so_far())
        return change

    true_run = yield from sub(mapped(iterative_magnitude_pruning(loaded.model, data, init, config),
                                     rounds_to_bars("true")), 0.02, 0.51, "true labels: ")
    random_run = yield from sub(mapped(iterative_magnitude_pruning(loaded.model, shuffled_labels(data, seed),
                                                                   init, config),
                                       rounds_to_bars("random")), 0.51, 1.0, "random labels: ")
    acc.update(dense_true=true_run.rows[0]["accuracy"], dense_random=random_run.rows[0]["accuracy"],
               ticket_true=true_run.rows[-1]["accuracy"], ticket_random=random_run.rows[-1]["accuracy"],
               ticket_density=true_run.rows[-1]["density"])
    return so_far()
