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
