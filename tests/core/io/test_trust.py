"""Opening a file never grants trust by itself: a session (or a shrunk-model file) naming a
checkpoint that needs full unpickling, or a file.py:factory, runs nothing until the person says so."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.untrusted import evil_weights
from visualizer.core.io.session import (
    Session,
    TrustRequired,
    load_session,
    save_session,
)
from visualizer.core.models.loaders import ModelLoadError, load_model
from visualizer.core.models.trust import trust_reason
from visualizer.core.models.zoo import ZOO


def test_a_session_saying_trust_true_is_not_trusted(tmp_path):
    weights, marker = evil_weights(tmp_path)
    path = tmp_path / "s.pviz"
    save_session(Session(model_ref="mlp", weights_path=str(weights), trust=True), path)
    session = load_session(path)
    assert "evil.pt needs full unpickling" in trust_reason(session)
    # what opening without the person's yes does: the loader refuses to unpickle
    with pytest.raises(ModelLoadError, match="full unpickling"):
        load_model(session.model_ref, weights=session.weights_path, trust=False)
    assert not marker.exists()


def test_factory_sessions_and_plain_sessions(tmp_path):
    assert trust_reason(Session(model_ref="mlp")) is None
    (tmp_path / "f.py").write_text("raise SystemExit('must not run')\n")
    reason = trust_reason(Session(model_ref=f"{tmp_path / 'f.py'}:build"))
    assert reason and "f.py" in reason
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ZOO["mlp"].build().state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save(ZOO["mlp"].build().state_dict(), tmp_path / "w.pt")
    for w in ("w.safetensors", "w.pt"):
        assert trust_reason(Session(model_ref="mlp", weights_path=str(tmp_path / w))) is None


FACTORY = """
import torch
from torch import nn
open({marker!r}, "w").write("imported")

def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten())
"""


def test_load_shrunk_asks_before_building_a_factory_it_names(tmp_path):
    from visualizer.core.structure.groups import find_groups, group_scores
    from visualizer.core.structure.shrink import load_shrunk, save_shrunk, structured_prune

    marker = tmp_path / "IMPORTED"
    factory = tmp_path / "arch.py"
    factory.write_text(FACTORY.format(marker=str(marker)))
    ref = f"{factory}:build"
    model = load_model(ref).model
    marker.unlink()
    x = torch.randn(2, 1, 8, 8)
    groups = find_groups(model, x).groups
    res = structured_prune(model, groups, group_scores(model, groups), 0.5, x)
    save_shrunk(tmp_path / "small.pt", res.shrunk, ref)
    with pytest.raises(TrustRequired, match="arch.py"):
        load_shrunk(tmp_path / "small.pt")
    assert not marker.exists()
    back = load_shrunk(tmp_path / "small.pt", trust=True)
    assert marker.exists()
    assert isinstance(back, nn.Module)
    with torch.no_grad():
        assert torch.equal(back(x), res.shrunk.model.eval()(x))
