"""Streaming evaluation on image folders: throughput against a plain ImageFolder-style loop, and
peak memory on a large folder.

Run: python tests/benchmarks/bench_data.py [--images 2000] [--big 20000] [--workers N] [--batch-size 32]

1. Throughput: a generated folder of ``--images`` JPEG files (224x224, 10 classes) evaluated with
   ResNet-18 (torchvision, random init: the weights do not change the cost) or, without
   torchvision, a small CNN from a factory file (said in the output). The app's path
   (``folder:PATH`` -> core.workspace.evaluation_batches -> the model) against a peer written
   the usual way (a Dataset over os.walk + Pillow + the same resize/crop/normalise, a
   DataLoader with the same workers and batch size, the same model loop). Target: >= 0.9x the
   peer's images/s. The two runs alternate (app, peer, app, peer) and the better of each counts,
   so a busy machine hurts both alike.
2. Memory: a generated folder of ``--big`` small JPEG files (32x32) evaluated whole; the peak
   resident set (this process and the DataLoader workers, resource.getrusage) above the RSS
   after the model was built, and each worker's peak printed beside it. Target: under 1.5 GB (a folder held whole as float tensors would
   be ``--big`` x 3 x 224 x 224 x 4 bytes).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # run from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from visualizer.core.data.external import DataOptions  # noqa: E402
from visualizer.core.data.folder import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from visualizer.core.data.sources import load_dataset  # noqa: E402
from visualizer.core.data.streaming import default_workers  # noqa: E402
from visualizer.core.workspace import evaluation_batches  # noqa: E402

SMALL_CNN = """
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
"""


def write_folder(root: Path, images: int, size: int, classes: int = 10, quality: int = 85) -> Path:
    """``images`` JPEG files of ``size`` x ``size`` in ``root/CLASS/``: smooth colour gradients
    with noise (so JPEG decoding does realistic work)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(images):
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0, 255, 3)
        base = np.stack([a * xx, b * yy, c * (1 - xx) * yy], -1)
        arr = (base + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(folder / f"{i:06d}.jpg", quality=quality)
    return root


class PeerFolder(Dataset):
    """The usual hand-written ImageFolder: os.walk, Pillow, resize + centre crop, normalise."""

    def __init__(self, root: Path, size: int) -> None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(str(root / c / f), i) for i, c in enumerate(classes)
                        for f in sorted(os.listdir(root / c))]
        self.size = size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            s = self.size / min(w, h)
            if (w, h) != (self.size, self.size):
                nw, nh = max(self.size, round(w * s)), max(self.size, round(h * s))
                img = img.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - self.size) // 2, (nh - self.size) // 2
                img = img.crop((left, top, left + self.size, top + self.size))
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std, label


def build_model(tmp: Path) -> tuple[torch.nn.Module, str]:
    try:
        import torchvision

        return torchvision.models.resnet18(weights=None).eval(), "ResNet-18 (torchvision, random init)"
    except Exception:  # noqa: BLE001 - not installed, or built for another torch
        from visualizer.core.models.loaders import load_model

        src = tmp / "small_cnn.py"
        src.write_text(SMALL_CNN)
        return load_model(f"{src}:build").model, "small CNN from a factory file (torchvision is not installed)"


def run_loop(model: torch.nn.Module, batches) -> tuple[int, float]:
    """Images and seconds for one pass: forward every batch, count correct (as evaluation)."""
    n, correct = 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            n += int(y.shape[0])
    return n, time.perf_counter() - start


def app_batches(root: Path, size: int, workers: int, batch_size: int):
    source = load_dataset(f"folder:{root}", DataOptions(image_size=size, normalize="imagenet", workers=workers))
    # the whole folder as the test split: evaluate the test split of a train/ + val/ layout
    return evaluation_batches(source, None, batch_size=batch_size, split="test")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput(tmp: Path, args) -> None:
    root = tmp / "throughput"
    t0 = time.perf_counter()
    write_folder(root / "train", 10, 224)
    write_folder(root / "val", args.images, 224)
    print(f"generated {args.images} JPEG images (224x224) in {time.perf_counter() - t0:.1f} s")
    model, label = build_model(tmp)
    print(f"model: {label}; workers {args.workers}, batch size {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    peer = PeerFolder(root / "val", 224)
    best_app, best_peer = 0.0, 0.0
    for _ in range(args.rounds):
        n, s = run_loop(model, app_batches(root, 224, args.workers, args.batch_size))
        best_app = max(best_app, n / s)
        loader = DataLoader(peer, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
        n, s = run_loop(model, loader)
        best_peer = max(best_peer, n / s)
    print(f"app  (folder:PATH -> workspace.evaluation_batches): {best_app:8.1f} images/s")
    print(f"peer (ImageFolder-style Dataset + DataLoader):      {best_peer:8.1f} images/s")
    print(f"ratio app/peer: {best_app / best_peer:.2f}x (target >= 0.9x)")


def memory(tmp: Path, args) -> None:
    root = tmp / "memory"
    t0 = time.perf_counter()
    write_folder(root / "train", 10, 32)
    write_folder(root / "val", args.big, 32)
    disk = sum(f.stat().st_size for f in (root / "val").rglob("*.jpg")) / 2**20
    print(f"generated {args.big} JPEG images (32x32, {disk:.0f} MB on disk) in {time.perf_counter() - t0:.1f} s")
    model, label = build_model(tmp)
    base = rss_mb()
    n, s = run_loop(model, app_batches(root, 32, args.workers, args.batch_size))
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    held = args.big * 3 * 224 * 224 * 4 / 2**30
    print(f"evaluated {n} images with {label} in {s:.1f} s")
    print(f"RSS after building the model: {base:.0f} MB; peak of this process {peak_self:.0f} MB "
          f"(+{peak_self - base:.0f} MB), largest worker {peak_child:.0f} MB")
    print(f"peak above the model: {peak_self - base:.0f} MB in this process (target < 1536 MB); each of "
          f"{args.workers} worker(s) peaked at {peak_child:.0f} MB, pages shared with this process "
          f"after fork included; the folder held as 224x224 float tensors would be {held:.1f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--big", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip", choices=("throughput", "memory"), help="leave one part out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pruneviz-bench-data-") as tmp:
        if args.skip != "throughput":
            throughput(Path(tmp), args)
        if args.skip != "memory":
            memory(Path(tmp), args)


if __name__ == "__main__":
    main()
