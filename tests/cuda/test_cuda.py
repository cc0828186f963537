"""Every computation on a CUDA GPU, compared with the CPU: the CLI commands and the core jobs
on the bundled models. Magnitude masks must be identical, accuracies within 1e-3, lambda_max
within 1e-3 relative, SNIP masks equal except where scores tie at the threshold.

Runs only where ``torch.cuda.is_available()``; CI has no GPU, so there these skip (the CPU
plumbing of the same options is tested in tests/cli/test_device.py and tests/core/test_device.py).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tests.cli.device_commands import COMPUTING, devices_recorded, quick_args, run_json
from visualizer.cli import main
from visualizer.core.data.sources import load_dataset
from visualizer.core.io.mask_formats import read_mask
from visualizer.core.models.loaders import load_model
from visualizer.core.models.zoo import ZOO
from visualizer.core.tasks import run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)"),
]

MODELS = list(ZOO)


def _loaded(name: str):
    loaded = load_model(name)
    assert loaded.dataset is not None
    return loaded.model.eval(), load_dataset(loaded.dataset)


@pytest.mark.parametrize("command", COMPUTING)
def test_every_command_runs_on_cuda_and_records_it(command, capsys, tmp_path):
    code, result, err = run_json(capsys, [*quick_args(command, "mlp", tmp_path), "--device", "cuda"])
    assert code == 0, err
    recorded = devices_recorded(command, result)
    assert recorded and all(d.startswith("cuda:") for d in recorded), recorded


@pytest.mark.parametrize("command", ["prune", "train", "hessian", "landscape", "shrink"])
@pytest.mark.parametrize("model", ["lenet", "resnet-mini", "rnn", "transformer-mini"])
def test_commands_on_cuda_for_other_models(command, model, capsys, tmp_path):
    code, result, err = run_json(capsys, [*quick_args(command, model, tmp_path), "--device", "cuda"])
    if command == "shrink" and code == 2 and "no structurally prunable group" in err:
        return  # a model without removable channels says so on every device
    assert code == 0, err


@pytest.mark.parametrize("model", MODELS)
def test_magnitude_masks_identical(model, capsys, tmp_path):
    for dev in ("cpu", "cuda"):
        code = main(["prune", model, "-c", "magnitude", "-d", "0.3", "--device", dev, "--out", str(tmp_path / f"{dev}.safetensors")])
        assert code == 0, capsys.readouterr().err
    a, b = read_mask(tmp_path / "cpu.safetensors"), read_mask(tmp_path / "cuda.safetensors")
    assert a.masks.keys() == b.masks.keys()
    for name in a.masks:
        assert torch.equal(a.masks[name], b.masks[name]), name


@pytest.mark.parametrize("model", MODELS)
def test_accuracy_within_1e3(model):
    from visualizer.core.training.evaluate import evaluate
    from visualizer.core.workspace import evaluation_batches

    net, data = _loaded(model)
    test = evaluation_batches(data)  # the whole test split, as the CLI's evaluation reads it
    on_cpu = evaluate(net, test)
    on_gpu = evaluate(copy.deepcopy(net).cuda(), test)
    assert abs(on_cpu.accuracy - on_gpu.accuracy) <= 1e-3
    assert on_gpu.loss == pytest.approx(on_cpu.loss, rel=1e-3)


@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet-mini"])
def test_lambda_max_within_1e3_relative(model, capsys):
    out = {}
    for dev in ("cpu", "cuda"):
        code = main(["hessian", model, "--top-k", "1", "--max-steps", "100", "--tol", "1e-6", "--device", dev, "--json"])
        stdout, err = capsys.readouterr()
        assert code == 0, err
        out[dev] = json.loads(stdout)["dense"]["lambda_max"]
    assert out["cuda"] == pytest.approx(out["cpu"], rel=1e-3)


@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet-mini"])
def test_snip_masks_equal_except_at_ties(model):
    from visualizer.core.pruning.criteria import score
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.workspace import criterion_batches

    net, data = _loaded(model)
    batches = criterion_batches(data, 2, 128, seed=0)
    s_cpu = run(score("snip", net, batches))
    s_gpu = run(score("snip", copy.deepcopy(net).cuda(), batches))
    density = 0.2
    m_cpu, m_gpu = mask_from_scores(s_cpu, density), mask_from_scores(s_gpu, density)
    flat = torch.cat([s.reshape(-1) for s in s_cpu.values()])
    k = m_cpu.kept()
    threshold = torch.topk(flat, k).values[-1]
    for name in m_cpu.masks:
        differ = m_cpu.masks[name] != m_gpu.masks[name]
        if differ.any():
            # only scores that tie with the threshold (to float32 rounding of the two devices)
            near = (s_cpu[name][differ] - threshold).abs() <= 1e-4 * threshold.abs() + 1e-12
            assert bool(near.all()), (name, int(differ.sum()))
    assert m_cpu.kept() == m_gpu.kept()


def test_masked_training_stays_masked_on_cuda():
    from visualizer.core.pruning.ranking import mask_from_scores
    from visualizer.core.training.loop import MaskProjector, TrainConfig, train

    net, data = _loaded("lenet")
    masks = mask_from_scores({n: p.detach().abs() for n, p in net.named_parameters() if n in _prunable(net)}, 0.2)
    config = TrainConfig(epochs=1, device="cuda", report_every=5)
    res = run(train(net, data, masks, config))
    assert all(p.device.type == "cuda" for p in res.model.parameters())
    params = dict(res.model.named_parameters())
    for name, m in masks.masks.items():
        assert int((params[name].detach().cpu()[~m] != 0).sum()) == 0, name
    projector = MaskProjector(res.model, masks)
    assert all(m.device.type == "cuda" for m in projector.masks)
    cpu = run(train(net, data, masks, TrainConfig(epochs=1, device="cpu", report_every=5)))
    # same seed and batches; devices round differently, so training curves are close, not equal
    assert abs(res.test.accuracy - cpu.test.accuracy) <= 0.03


def _prunable(net):
    from visualizer.core.pruning.prunable import prunable_parameters

    return prunable_parameters(net)


def test_dst_and_iht_selections_match_the_cpu():
    from visualizer.core.pruning.ranking import first_k
    from visualizer.core.training.dst import drop_and_grow
    from visualizer.core.training.prox import hard_threshold_masks

    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 7, (10_000,), generator=gen).float()
    for k in (1, 500, 5000, 9999):
        assert torch.equal(first_k(values.cuda(), k).cpu(), first_k(values, k))
    w = torch.randn(64, 32, generator=gen)
    g = torch.randn(64, 32, generator=gen)
    m = torch.rand(64, 32, generator=gen) < 0.3
    assert torch.equal(drop_and_grow(w.cuda(), m.cuda(), 40, "rigl", grad=g.cuda()).cpu(),
                       drop_and_grow(w, m, 40, "rigl", grad=g))
    a = drop_and_grow(w.cuda(), m, 40, "set", generator=torch.Generator().manual_seed(3))
    b = drop_and_grow(w, m, 40, "set", generator=torch.Generator().manual_seed(3))
    assert a.device.type == "cuda" and torch.equal(a.cpu(), b)
    ts = {"a": w, "b": g}
    got = hard_threshold_masks({k: v.cuda() for k, v in ts.items()}, 700)
    want = hard_threshold_masks(ts, 700)
    assert all(got[k].device.type == "cuda" and torch.equal(got[k].cpu(), want[k]) for k in ts)


def test_group_lasso_on_cuda_matches_the_cpu():
    from visualizer.core.training.loop import TrainConfig
    from visualizer.core.training.prox import ProxConfig, proximal_training

    net, data = _loaded("lenet")
    results = {}
    for dev in ("cpu", "cuda"):
        tc = TrainConfig(epochs=1, optimizer="sgd", momentum=0.0, lr=0.05, device=dev)
        results[dev] = run(proximal_training(net, data, ProxConfig("group-lasso", lam=0.05, train=tc)))
    assert results["cuda"].groups == results["cpu"].groups
    assert abs(results["cuda"].zero_groups - results["cpu"].zero_groups) <= 1
    assert abs(results["cuda"].test.accuracy - results["cpu"].test.accuracy) <= 0.03


def test_amp_trains_and_evaluates_in_bf16_on_cuda(capsys):
    code, plain, err = run_json(capsys, ["train", "lenet", "--epochs", "1", "--device", "cuda"])
    assert code == 0, err
    code, amp, err = run_json(capsys, ["train", "lenet", "--epochs", "1", "--device", "cuda", "--amp"])
    assert code == 0, err
    assert "ignored" not in err and amp["amp"] is True
    assert abs(amp["accuracy"] - plain["accuracy"]) <= 0.03


def test_hessian_rewinds_train_on_the_chosen_device(capsys, tmp_path):
    assert main(["prune", "mlp", "-d", "0.3", "--out", str(tmp_path / "m.safetensors"), "--device", "cuda"]) == 0
    capsys.readouterr()
    code, out, err = run_json(capsys, ["hessian", "mlp", "--mask", str(tmp_path / "m.safetensors"), "--rewinds", "0,20",
                                       "--top-k", "1", "--max-steps", "20", "--device", "cuda"])
    assert code == 0, err
    assert out["device"].startswith("cuda:") and len(out["rewinds"]) == 2


def test_out_of_memory_is_one_line_and_the_next_run_works(capsys):
    torch.cuda.empty_cache()
    # a cap of ~1e-6 of the device: the first block the model needs does not fit
    torch.cuda.set_per_process_memory_fraction(1e-6)
    try:
        code = main(["hessian", "resnet-mini", "--device", "cuda"])
        out, err = capsys.readouterr()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "out of GPU memory" in lines[0] and "--batch-size" in lines[0], err
    assert main(["prune", "mlp", "-d", "0.5", "--device", "cuda"]) == 0
