"""Deterministic training of the bundled sample models: ``python sample_models/train.py``.

Writes ``sample_models/NAME.safetensors`` (the trained weights),
``NAME.init.safetensors`` (the initialisation they were trained from, for Lottery Ticket
rewinding to tau = 0) and ``manifest.json`` (test accuracy, parameters, settings).
Everything is seeded and single-threaded, so a re-run reproduces the same files on one platform.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from safetensors.torch import save_file
from torch import nn

from visualizer.core.data.sources import batches, load_dataset
from visualizer.core.io.atomic import atomic_write, atomic_write_text
from visualizer.core.models.loaders import count_parameters
from visualizer.core.models.zoo import ZOO
from visualizer.core.resources import sample_models_dir

SETTINGS = {
    # name: (epochs, lr, weight decay)
    "mlp": (30, 1e-3, 0.0),
    "lenet": (40, 2e-3, 0.0),
    "resnet-mini": (25, 2e-3, 1e-4),
    "densenet-mini": (30, 3e-3, 1e-4),
    "inception-mini": (30, 3e-3, 1e-4),
    "se-cnn": (30, 2e-3, 1e-4),
    "rnn": (40, 3e-3, 0.0),
    "transformer-mini": (40, 2e-3, 0.0),
}
SEED = 0
BATCH = 64


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def train_one(name: str, seed: int = SEED) -> dict:
    torch.manual_seed(seed)
    entry = ZOO[name]
    data = load_dataset(entry.dataset)
    model = entry.build(num_classes=data.num_classes)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    epochs, lr, wd = SETTINGS[name]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in batches(data.x_train, data.y_train, BATCH, shuffle=True, generator=g):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
    acc = accuracy(model, data.x_test, data.y_test)
    out = sample_models_dir()
    # atomic: an interrupted retraining never leaves the app a half-written zoo file
    trained = {k: v.contiguous() for k, v in model.state_dict().items()}
    start_w = {k: v.contiguous() for k, v in init.items()}
    atomic_write(out / f"{name}.safetensors", lambda tmp: save_file(trained, tmp))
    atomic_write(out / f"{name}.init.safetensors", lambda tmp: save_file(start_w, tmp))
    return {
        "accuracy": round(acc, 4),
        "params": count_parameters(model),
        "dataset": entry.dataset,
        "epochs": epochs,
        "lr": lr,
        "weight_decay": wd,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", default=list(ZOO))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    manifest_path = sample_models_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in args.names:
        manifest[name] = train_one(name)
        print(name, manifest[name], flush=True)
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
