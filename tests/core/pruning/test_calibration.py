import torch
from torch import nn

from visualizer.core.pruning.calibration import input_norms
from visualizer.core.tasks import run


def test_linear_norms_by_hand():
    # two tokens x = (3, 0) and (4, 1): ‖X_0‖ = 5, ‖X_1‖ = 1
    layer = nn.Linear(2, 3)
    norms = run(input_norms(layer, [(torch.tensor([[3.0, 0.0]]),), (torch.tensor([[4.0, 1.0]]),)]))
    assert torch.allclose(norms["weight"], torch.tensor([[5.0, 1.0]]))
    assert (layer.weight.abs() * norms["weight"]).shape == layer.weight.shape


def test_conv_norms_are_patch_columns():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.randn(2, 2, 5, 5)
    norms = run(input_norms(conv, [(x,)]))["weight"]
    assert norms.shape == (1, 2, 3, 3)
    # the centre tap of channel c sees every pixel of channel c once
    assert torch.allclose(norms[0, :, 1, 1], x.pow(2).sum((0, 2, 3)).sqrt())


def test_hooks_are_removed():
    layer = nn.Linear(2, 2)
    run(input_norms(layer, [(torch.ones(1, 2),)]))
    assert not layer._forward_pre_hooks
