import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The machine's cores are shared: one torch thread avoids spin-wait contention (50x here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
