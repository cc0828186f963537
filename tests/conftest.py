"""Test configuration: Qt runs offscreen, torch single-threaded and seeded."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PRUNEVIZ_SETTINGS_ORG", "pruneviz-tests")

import pytest  # noqa: E402
import torch  # noqa: E402

# tiny Hugging Face models in temporary folders (skip where transformers is missing)
from tests.hfmodels import hf_bert, hf_gpt2, hf_llama, hf_vit  # noqa: E402, F401

# The docstring's promise: one torch thread. On the shared 2-core machine two intra-op threads
# oversubscribe and small models run up to 100x slower (measured: 1.6 s vs 0.02 s per forward).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch intra-op thread for every test module (the GUI tests' window may have changed it):
    on 2 shared cores two spinning threads run small models up to ~15x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """The bundled digits dataset (8x8 images, 10 classes)."""
    from visualizer.core.data.sources import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def mlp():
    """The bundled MLP with its trained weights (one copy per test module)."""
    from visualizer.core.models.loaders import load_model

    return load_model("mlp").model


@pytest.fixture(scope="module")
def lenet():
    """The bundled LeNet-5 with its trained weights (one copy per test module)."""
    from visualizer.core.models.loaders import load_model

    return load_model("lenet").model


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
