"""Test configuration: Qt runs offscreen, torch single-threaded and seeded."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PRUNEVIZ_SETTINGS_ORG", "pruneviz-tests")

import pytest  # noqa: E402
import torch  # noqa: E402

# The docstring's promise: one torch thread. On the shared 2-core machine two intra-op threads
# oversubscribe and small models run up to 100x slower (measured: 1.6 s vs 0.02 s per forward).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def torchvision_or_skip(module: str = "models"):
    """``torchvision.<module>``, or skip: not installed, or installed but built for another torch
    (that raises RuntimeError inside torchvision's import, which pytest.importorskip lets through)."""
    from visualizer.core.optional import import_torchvision

    class _Missing(Exception):
        pass

    try:
        return import_torchvision(module, "this test", _Missing)
    except _Missing as exc:
        pytest.skip(str(exc))
