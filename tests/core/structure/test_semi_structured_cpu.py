"""Where no CUDA device is present, the 2:4 timing says why in one line and times nothing."""

import pytest
import torch
from torch import nn

from visualizer.core.structure.semi_structured import (
    kernel_missing,
    semi_structured_report,
    semi_structured_speed,
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the CPU-only answer")
def test_without_cuda_the_reason_is_given():
    assert kernel_missing("cpu") == "2:4 kernels need a CUDA device"
    assert semi_structured_report(nn.Linear(64, 32)) == {"skipped": "2:4 kernels need a CUDA device"}
    with pytest.raises(RuntimeError, match="CUDA"):
        semi_structured_speed(nn.Linear(64, 32))
