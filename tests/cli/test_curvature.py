"""CLI shapes of ``hessian`` and ``landscape`` (tiny runs on bundled models), and Cauchy
interlacing between the dense and the masked spectrum at the same point theta = m * w."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visualizer.cli import main
from visualizer.core.io.mask_formats import read_mask

SPECTRUM_KEYS = {"top_eigenvalues", "bottom_eigenvalues", "trace", "hvps"}


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    """SNIP masks at 10% density made by the prune command itself."""
    d = tmp_path_factory.mktemp("masks")
    out = {}
    for name in ("mlp", "lenet"):
        path = d / f"{name}.safetensors"
        assert main(["prune", name, "--criterion", "snip", "--density", "0.1", "--out", str(path)]) == 0
        out[name] = path
    return out


def test_hessian_json_dense_and_masked_with_interlacing(capsys, tmp_path, masks):
    """mlp in float64 until lambda_max converges: masked lambda_max <= dense lambda_max."""
    spec = tmp_path / "spectrum.json"
    out = run_json(capsys, "hessian", "mlp", "--mask", str(masks["mlp"]), "--top-k", "2", "--bottom-k", "1",
                   "--density-probes", "2", "--density-steps", "4", "--trace", "--trace-probes", "3",
                   "--batch-size", "32", "--max-steps", "60", "--tol", "1e-6", "--float64",
                   "--out", str(spec))
    assert json.loads(spec.read_text()) == out
    dense, masked = out["dense"], out["masked"]
    for s in (dense, masked):
        assert SPECTRUM_KEYS <= set(s)
        assert len(s["top_eigenvalues"]) == 2 and len(s["bottom_eigenvalues"]) == 1
        assert s["top_eigenvalues"][0] >= s["top_eigenvalues"][1]
        assert s["trace_source"] == "hutchinson" and np.isfinite(s["trace"])
        assert s["density"] is not None and len(s["density"]["grid"]) == len(s["density"]["values"])
        # Lanczos + 2 SLQ probes x 4 steps + 3 Hutchinson probes
        assert s["hvps"] == s["lanczos_steps"] + 2 * 4 + 3
        assert s["converged"]
    mask = read_mask(masks["mlp"])
    assert masked["dim"] == mask.kept() and dense["dim"] == mask.total()
    assert out["density"] == pytest.approx(0.1, abs=1e-3)
    # Cauchy interlacing of the principal submatrix H[S,S] (both at theta = m * w). Ritz values
    # are within their error bound of the eigenvalues; allow that bound.
    slack = dense["top_errors"][0] + masked["top_errors"][0]
    assert masked["lambda_max"] <= dense["lambda_max"] + slack
    assert masked["lambda_min"] >= dense["lambda_min"] - dense["bottom_errors"][0] - masked["bottom_errors"][0]
    # both are taken at the same point: same loss
    assert masked["loss"] == pytest.approx(dense["loss"], rel=1e-12)


def test_hessian_lenet_masked_and_dense_only(capsys, masks):
    out = run_json(capsys, "hessian", "lenet", "--mask", str(masks["lenet"]), "--top-k", "1",
                   "--batch-size", "16", "--max-steps", "8")
    assert {"dense", "masked"} <= set(out)
    for s in (out["dense"], out["masked"]):
        assert SPECTRUM_KEYS <= set(s) and len(s["top_eigenvalues"]) == 1 and s["hvps"] >= 1
    assert out["masked"]["dim"] == read_mask(masks["lenet"]).kept()
    # no mask: only the dense spectrum, at the trained weights
    out = run_json(capsys, "hessian", "lenet", "--top-k", "1", "--batch-size", "16", "--max-steps", "4")
    assert "dense" in out and "masked" not in out
    assert SPECTRUM_KEYS <= set(out["dense"])


def test_hessian_at_rewind_points(capsys, masks):
    """--rewinds: the masked spectrum at theta_tau = m * w_tau of a run from the shipped init;
    tau = 0 is the initialisation itself, and each tau's masked lambda_max is reported."""
    out = run_json(capsys, "hessian", "lenet", "--mask", str(masks["lenet"]), "--top-k", "1",
                   "--bottom-k", "1", "--rewinds", "20,0", "--threads", "1")
    assert [r["tau"] for r in out["rewinds"]] == [0, 20]
    for r in out["rewinds"]:
        assert SPECTRUM_KEYS <= set(r) and np.isfinite(r["top_eigenvalues"][0]) and r["hvps"] > 0
    # the shipped initialisation is far flatter than the trained weights
    assert out["rewinds"][0]["top_eigenvalues"][0] < out["masked"]["top_eigenvalues"][0]


def test_hessian_rnn_has_second_derivatives(capsys):
    """The LSTM's fused kernel lacks double backward; the operator switches to kernels with one."""
    out = run_json(capsys, "hessian", "rnn", "--top-k", "1", "--batch-size", "8", "--max-steps", "3")
    s = out["dense"]
    assert SPECTRUM_KEYS <= set(s) and np.isfinite(s["top_eigenvalues"][0]) and s["hvps"] == 3


def test_landscape_2d_and_1d_npz(capsys, tmp_path, masks):
    grid = tmp_path / "grid.npz"
    out = run_json(capsys, "landscape", "lenet", "--mask", str(masks["lenet"]), "--dims", "2", "--steps", "4",
                   "--batches", "1", "--batch-size", "32", "--out", str(grid))
    assert out["masked"] and out["method"] == "vmap"
    z = np.load(grid)
    assert z["loss"].shape == (4, 4) and z["accuracy"].shape == (4, 4)
    assert z["alpha"].shape == (4,) and z["beta"].shape == (4,)
    assert np.all(np.isfinite(z["loss"])) and np.all((z["accuracy"] >= 0) & (z["accuracy"] <= 1))

    line = tmp_path / "line.npz"
    out = run_json(capsys, "landscape", "lenet", "--mask", str(masks["lenet"]), "--dims", "1", "--steps", "5",
                   "--from", "ticket", "--to", "pruned", "--batches", "1", "--batch-size", "32", "--out", str(line))
    z = np.load(line)
    assert z["loss"].shape == (5,) and z["accuracy"].shape == (5,) and "beta" not in z.files
    assert np.allclose(z["alpha"], np.linspace(0, 1, 5))
    # the barrier is the largest excess of the test error over the straight line between the
    # endpoints' errors (clamped at 0), recomputed here from the saved curve
    err = 1 - z["accuracy"]
    line_err = (1 - z["alpha"]) * err[0] + z["alpha"] * err[-1]
    assert float(z["error_barrier"]) == pytest.approx(max(0.0, float(np.max(err - line_err))), abs=1e-9)
    assert out["kind"] == "interpolation"

    out = run_json(capsys, "landscape", "mlp", "--dims", "1", "--steps", "3", "--batches", "1",
                   "--batch-size", "16", "--out", str(line))
    z = np.load(line)
    assert z["loss"].shape == (3,) and np.allclose(z["alpha"], [-1, 0, 1]) and out["kind"] == "direction"


def test_landscape_rnn_falls_back_to_a_loop(capsys, tmp_path):
    out = run_json(capsys, "landscape", "rnn", "--dims", "2", "--steps", "2", "--batches", "1",
                   "--batch-size", "8", "--out", str(tmp_path / "g.npz"))
    assert out["method"].startswith("loop")
    assert np.load(tmp_path / "g.npz")["loss"].shape == (2, 2)


def test_hessian_per_layer_matches_the_layer_spectrum(capsys, masks):
    """`--per-layer`: λ_max of each layer's block; each equals the one-layer spectrum's λ_max
    (`--layer`), and with a mask the block's dimension is the layer's kept count."""
    args = ["--batch-size", "32", "--max-steps", "60", "--tol", "1e-8", "--float64"]
    out = run_json(capsys, "hessian", "mlp", "--per-layer", *args)
    assert out["unit"] == "layer" and [u["unit"] for u in out["units"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    one = run_json(capsys, "hessian", "mlp", "--layer", "fc2.weight", "--top-k", "1", *args)
    fc2 = out["units"][1]
    assert fc2["lambda_max"] == pytest.approx(one["dense"]["lambda_max"], rel=1e-6)
    masked = run_json(capsys, "hessian", "mlp", "--per-layer", "--mask", str(masks["mlp"]), "--layer", "fc1.weight", *args)
    assert masked["units"][0]["dim"] == int(read_mask(masks["mlp"]).masks["fc1.weight"].sum())
    assert main(["hessian", "mlp", "--per-layer", "group", "--batch-size", "16", "--max-steps", "5"]) == 0
    text = capsys.readouterr().out
    assert "lambda_max" in text and "fc1 (channels:" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["landscape", "mlp", "--dims", "2", "--steps", "3", "--from", "init", "--to", "trained"], "--dims 1"),
        (["landscape", "mlp", "--dims", "1", "--steps", "3", "--from", "init"], "both --from and --to"),
        (["landscape", "mlp", "--dims", "1", "--steps", "3", "--from", "ticket", "--to", "trained"], "needs --mask"),
        (["landscape", "mlp", "--dims", "1", "--steps", "1"], "at least 2"),
        (["hessian", "mlp", "--top-k", "-1"], ">= 0"),
        (["hessian", "mlp", "--threads", "-1"], "--threads must be >= 0"),
        (["hessian", "mlp", "--rewinds", "0,10"], "--rewinds needs --mask"),
        (["hessian", "mlp", "--rewinds", "a,b"], "--rewinds takes steps"),
        (["hessian", "mlp", "--per-layer", "--layer", "nope.weight"], "no layer named 'nope.weight'"),
        (["hessian", "mlp", "--per-layer", "--trace"], "--per-layer computes lambda_max per unit only"),
    ],
)
def test_bad_arguments_one_line(capsys, tmp_path, argv, message):
    if argv[0] == "landscape":
        argv = [*argv, "--out", str(tmp_path / "x.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
