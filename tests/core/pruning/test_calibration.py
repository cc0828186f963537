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


class _Shared(nn.Module):
    """A layer run twice per forward (shared weights), then a head no statistic reads. The head's
    calls are counted in a tensor buffer: the calibration pass runs on a private view of the model
    (new module objects, the same tensors), so only a count kept in a tensor is seen here."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        self.register_buffer("head_calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        y = self.lin(torch.relu(self.lin(x)))
        self.head_calls += 1
        return self.head(y)


def test_later_batches_stop_after_the_last_hooked_layer_with_the_same_sums():
    torch.manual_seed(0)
    model = _Shared()
    batches = [(torch.randn(5, 3), None) for _ in range(4)]
    norms = run(input_norms(model, batches, {"lin.weight": "lin"}))
    with torch.no_grad():  # by hand: both calls' inputs of every batch
        seen = torch.cat([torch.cat([x, torch.relu(model.lin(x))]) for x, _ in batches])
    assert torch.allclose(norms["lin.weight"].reshape(-1), seen.pow(2).sum(0).sqrt(), rtol=1e-6)
    assert int(model.head_calls) == 1  # the head ran for the first batch only
    model.head_calls.zero_()
    model(batches[0][0])  # no stop left behind
    assert model.head_calls == 1 and not model.lin._forward_hooks and not model.lin._forward_pre_hooks
