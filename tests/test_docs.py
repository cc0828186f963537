"""The project speaks for itself: user-facing text cites the literature or docs/theory.md, never
files outside the repository, and docs/theory.md covers every criterion and its worked example
(§7) is what the app computes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from visualizer.core.pruning.criteria import CRITERIA, magnitude_scores, score
from visualizer.core.pruning.ranking import kept_count, mask_from_scores
from visualizer.core.tasks import run

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
OUTSIDE = re.compile(r"\.\./shared|\bseeds?\s*0\d\d\b|\bseeds?/", re.IGNORECASE)


def user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted(p for p in (ROOT / "visualizer").rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".txt", ".json"))
    return files


def test_no_pointers_outside_the_repository():
    hits = []
    for path in user_facing_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "cite the paper or docs/theory.md instead:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_should():
    """The check above must be able to fail: it flags the forms that were used before."""
    for bad in ("(seed 002)", "seed 001's paradox", "see ../shared/DESIGN.md", "seeds 000/004", "shared/seeds/"):
        assert OUTSIDE.search(bad), bad
    for fine in ("seed=0", "seeded random baseline", "the random seed", "manual_seed(seed)", "--seed 3"):
        assert not OUTSIDE.search(fine), fine


def test_every_criterion_is_in_the_theory():
    text = THEORY.read_text(encoding="utf-8")
    from visualizer.core.structure.group_criteria import GROUP_CRITERIA

    missing = [c for c in [*CRITERIA, *GROUP_CRITERIA] if f"`{c}`" not in text]
    assert not missing, f"docs/theory.md does not describe: {missing}"


def test_theory_names_modules_that_exist():
    text = THEORY.read_text(encoding="utf-8")
    paths = set(re.findall(r"`(core/[\w/]+\.py)`", text))
    assert paths, "docs/theory.md names no modules"
    missing = sorted(p for p in paths if not (ROOT / "visualizer" / p).is_file())
    assert not missing, f"docs/theory.md names modules that do not exist: {missing}"
    tests = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert not sorted(p for p in tests if not (ROOT / p).is_file()), tests


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_theory_contents_links_resolve_and_readme_points_to_it():
    text = THEORY.read_text(encoding="utf-8")
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) >= 18
    assert not [a for a in links if a not in anchors]
    assert "docs/theory.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_section_references_exist():
    """Every "docs/theory.md §N" in the code and README names a numbered section of the page."""
    sections = set(re.findall(r"^## (\d+)\. ", THEORY.read_text(encoding="utf-8"), re.MULTILINE))
    bad = []
    for path in user_facing_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for ref in re.findall(r"theory\.md §(\d+)", line):
                if ref not in sections:
                    bad.append(f"{path.relative_to(ROOT)}:{no}: §{ref}")
    assert len(sections) >= 18
    assert not bad, "no such section in docs/theory.md:\n" + "\n".join(bad)


# --- §7, the worked example ------------------------------------------------------------------------

W = [[0.01, 0.08], [-0.5, 0.30]]
G = [1.0, 0.0, 0.2, 0.5]
H = [[2000.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 1.0], [0, 0, 1.0, 4.0]]
Q0 = 3.0


class Quadratic(nn.Module):
    """A 2x2 linear layer whose cross-entropy loss is exactly Q(v) = Q0 + G·(v - w) + ½ (v-w)ᵀ H (v-w)
    at its weight v (flattened row-major): logits (0, log(e^Q - 1)) with label 0 give
    CE = log(1 + e^Q - 1) = Q. So at v = W the app sees gradient G and Hessian H."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(W))
        self.register_buffer("w0", torch.tensor(W).reshape(-1).double())
        self.register_buffer("g", torch.tensor(G).double())
        self.register_buffer("h", torch.tensor(H).double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the curvature engine may hand buffers over in its own dtype: compute in float64 anyway
        d = self.fc.weight.double().reshape(-1) - self.w0.double()
        q = Q0 + self.g.double() @ d + 0.5 * d @ self.h.double() @ d
        other = torch.log(torch.expm1(q))
        row = torch.stack([torch.zeros_like(other), other]).float()
        return row.expand(x.shape[0], 2)


def scores_of(criterion, model, batches=None, **kw):
    return run(score(criterion, model, batches, **kw))


def example_batch():
    return [(torch.zeros(1, 2), torch.tensor([0]))]


def flat(scores) -> list[float]:
    return scores["fc.weight"].reshape(-1).double().tolist()


TABLE = {  # docs/theory.md §7, one row per criterion
    "magnitude": [0.01, 0.08, 0.5, 0.3],
    "snip": [0.01, 0.0, 0.1, 0.15],
    "taylor": [0.0001, 0.0, 0.01, 0.0225],  # one batch: (g w)²
    "grasp": [20.0, 0.0, -0.45, 0.66],  # keep score -S = w (Hg)
    "grasp-reversed": [-20.0, 0.0, 0.45, -0.66],  # S = -w (Hg)
    "l1-norm": [0.09, 0.09, 0.8, 0.8],
    "l2-norm": [math.sqrt(0.0065)] * 2 + [math.sqrt(0.34)] * 2,
}
KEPT = {"magnitude": {2, 3}, "snip": {2, 3}, "taylor": {2, 3}, "grasp": {0, 3}, "grasp-reversed": {1, 2},
        "l1-norm": {2, 3}, "l2-norm": {2, 3}}


def test_the_example_model_has_the_stated_gradient_and_hessian():
    model = Quadratic()
    w = model.fc.weight
    x, y = example_batch()[0]
    loss = nn.functional.cross_entropy(model(x), y)
    assert loss.item() == pytest.approx(Q0, rel=1e-6)
    (g,) = torch.autograd.grad(loss, w)
    assert g.reshape(-1).tolist() == pytest.approx(G, abs=1e-5)

    def loss_of(v: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, {"fc.weight": v.reshape(2, 2)}, (x,))
        return nn.functional.cross_entropy(out, y)

    h = torch.autograd.functional.hessian(loss_of, w.detach().reshape(-1))
    assert h.double().numpy() == pytest.approx(torch.tensor(H).double().numpy(), abs=1e-3)


@pytest.mark.parametrize("criterion", list(TABLE))
def test_worked_example_rows(criterion):
    scores = scores_of(criterion, Quadratic(), example_batch())
    assert flat(scores) == pytest.approx(TABLE[criterion], rel=1e-4, abs=1e-5)
    structure = "channel" if CRITERIA[criterion].structured else "unstructured"
    mask = mask_from_scores(scores, 0.5, structure=structure)["fc.weight"].reshape(-1)
    assert set(mask.nonzero().reshape(-1).tolist()) == KEPT[criterion]


class PerBatchGradient(Quadratic):
    """Quadratic with the gradient read from the batch: L_b(v) = Q0 + x_b·(v - w) + ½ (v-w)ᵀ H (v-w),
    so batch b's gradient at v = W is its input row x_b (the §5 Taylor example: two batches)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.fc.weight.double().reshape(-1) - self.w0.double()
        q = Q0 + x[0].double() @ d + 0.5 * d @ self.h.double() @ d
        other = torch.log(torch.expm1(q))
        row = torch.stack([torch.zeros_like(other), other]).float()
        return row.expand(x.shape[0], 2)


def test_worked_example_taylor_two_batches():
    """docs/theory.md §5: batch gradients g₁ = (1, 2, 0.2, 0.5) and g₂ = (1, -2, 0.2, 0.5) average
    to §7's g. SNIP scores |ḡ w| = (0.01, 0, 0.1, 0.15) and keeps w₄, w₃; Taylor scores
    ½ Σ_b (g_b w)² = (0.0001, 0.0256, 0.01, 0.0225) and keeps w₂, w₄: w₂'s batch gradients cancel
    in the mean but each batch's loss moves by 0.16 when it is removed."""
    batches = [(torch.tensor([[1.0, 2.0, 0.2, 0.5]]), torch.tensor([0])),
               (torch.tensor([[1.0, -2.0, 0.2, 0.5]]), torch.tensor([0]))]
    snip = scores_of("snip", PerBatchGradient(), batches)
    taylor = scores_of("taylor", PerBatchGradient(), batches)
    assert flat(snip) == pytest.approx([0.01, 0.0, 0.1, 0.15], rel=1e-4, abs=1e-6)
    assert flat(taylor) == pytest.approx([0.0001, 0.0256, 0.01, 0.0225], rel=1e-4, abs=1e-7)
    kept = {c: set(mask_from_scores(s, 0.5)["fc.weight"].reshape(-1).nonzero().reshape(-1).tolist())
            for c, s in (("snip", snip), ("taylor", taylor))}
    assert kept == {"snip": {2, 3}, "taylor": {1, 3}}


def test_worked_example_obd_within_its_hutchinson_error():
    probes = 256
    got = flat(scores_of("obd", Quadratic(), example_batch(), probes=probes, seed=0))
    exact = [0.09, 0.0032, 0.35, 0.03]
    # only H_34 is off the diagonal: w1, w2 exact, w3, w4 within 5 standard errors ½ w² / sqrt(P)
    err = [1e-5, 1e-5, 5 * 0.125 / math.sqrt(probes), 5 * 0.045 / math.sqrt(probes)]
    for a, b, e in zip(got, exact, err):
        assert abs(a - b) <= e + 1e-5


def test_worked_example_obd_keeps_the_small_curved_weight():
    """With the exact diagonal OBD keeps w3 and w1, where magnitude drops w1 first."""
    w = [0.01, 0.08, -0.5, 0.3]
    obd = [-g * wi + 0.5 * H[i][i] * wi * wi for i, (g, wi) in enumerate(zip(G, w))]
    assert obd == pytest.approx([0.09, 0.0032, 0.35, 0.03])
    mask = mask_from_scores({"w": torch.tensor(obd).reshape(2, 2)}, 0.5)["w"].reshape(-1)
    assert set(mask.nonzero().reshape(-1).tolist()) == {0, 2}


def test_worked_example_channel_mean_and_ties():
    mag = scores_of("magnitude", Quadratic())
    assert mask_from_scores(mag, 0.5, structure="channel")["fc.weight"].tolist() == [[False, False], [True, True]]
    tied = magnitude_scores({"w": torch.tensor([0.5, -0.5, 0.5, 0.1])})  # three scores tie at 0.5
    assert mask_from_scores(tied, 0.5)["w"].tolist() == [True, True, False, False]
    assert kept_count(0.29, 100) == 29 and kept_count(1 / 49, 49) == 1
