"""Attention heads and MLP neurons of Hugging Face GPT-2, BERT, Llama (grouped-query attention)
and ViT as coupled groups; shrinking them gives a smaller model equal to the masked one; the
groups agree with Torch-Pruning's where Torch-Pruning traces the model."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from tests.hfmodels import HEADS, INTER, LAYERS, build_hf_model
from visualizer.core.structure.graph import example_input
from visualizer.core.structure.groups import find_groups, group_scores
from visualizer.core.structure.shrink import (
    load_shrunk,
    masked_copy,
    max_output_diff,
    save_shrunk,
    structured_prune,
)

FAMILIES = ["gpt2", "bert", "llama", "vit"]
KV_HEADS = {"gpt2": HEADS, "bert": HEADS, "llama": 2, "vit": HEADS}  # llama: 4 query heads share 2


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    model = build_hf_model(request.param)
    model.config.use_cache = False
    x = example_input(model)
    return request.param, model, x, find_groups(model, x)


def test_one_head_group_and_one_mlp_group_per_block(family):
    kind, model, _, res = family
    heads = [g for g in res.groups if g.kind == "head"]
    assert len(heads) == LAYERS and all(g.prunable and g.size == KV_HEADS[kind] for g in heads)
    mlp = [g for g in res.groups if g.kind == "channel" and g.prunable]
    assert len(mlp) == LAYERS and all(g.size == INTER for g in mlp)
    for g in mlp:  # up (and gate) projections produce the neurons, the down projection reads them
        layers = {m.param.rpartition(".")[0].rpartition(".")[2] for m in g.members}
        assert layers in ({"c_fc", "c_proj"}, {"dense"}, {"gate_proj", "up_proj", "down_proj"}, {"fc1", "fc2"})
        assert len({m.param.rpartition(".")[0] for m in g.members if m.role == "in"}) == 1
    assert not res.notices


def test_head_members_cover_whole_heads(family):
    """Every unit owns whole heads: head_dim rows of q, k and v per head and the same columns of
    the output projection; with grouped-query attention a unit is one key/value head with its
    two query heads."""
    kind, model, _, res = family
    g = next(g for g in res.groups if g.kind == "head")
    d = 32 // HEADS
    per_unit = {u: 0 for u in range(g.size)}
    for m in g.members:
        if m.param.endswith("weight"):
            for u in m.units:
                per_unit[u] += 1
    q_per_unit = HEADS // KV_HEADS[kind]
    # q rows + k rows + v rows + o columns of one unit
    assert set(per_unit.values()) == {d * (q_per_unit + 2) + d * q_per_unit}


def test_shrink_equals_the_masked_model(family):
    kind, model, x, res = family
    result = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l2"), 0.5, x)
    assert result.max_output_diff <= 1e-5 and not result.plan.notices
    assert result.params_after < 0.7 * result.params_before
    small = result.shrunk.model
    attn = next(m for n, m in small.named_modules() if n.endswith(("attn", "attention", "self_attn", "self")) and
                type(m).__name__.endswith(("Attention", "SelfAttention")))
    if kind == "llama":  # 1 of 2 key/value heads kept, with its 2 query heads: the ratio stays 2
        assert attn.q_proj.out_features == 2 * 8 and attn.k_proj.out_features == 8
        assert attn.num_key_value_groups == 2
    with torch.no_grad():  # a different input than the comparison's
        y = small(x[:1]).logits
        ref = masked_copy(model, result.masks)(x[:1]).logits
    assert torch.allclose(y, ref, atol=1e-5)


def test_shrunk_gpt2_saves_and_rebuilds_from_its_folder(hf_gpt2, tmp_path):
    from visualizer.core.models.loaders import load_model

    model = load_model(f"hf:{hf_gpt2}").model
    x = example_input(model)
    res = find_groups(model, x)
    result = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l1"), 0.5, x)
    save_shrunk(tmp_path / "small.pt", result.shrunk, f"hf:{hf_gpt2}")
    back = load_shrunk(tmp_path / "small.pt")
    assert max_output_diff(back, result.shrunk.model, x) == 0.0
    assert back.transformer.h[0].attn.num_heads == 2 and back.transformer.h[0].attn.split_size == 16


def _tp_groups(model, x):
    """Torch-Pruning's own groups as sets of (module, out?), rooted at linear layers; GPT-2's
    Conv1D is described to it by the app's Conv1D pruner (without it Torch-Pruning finds no
    group but the head's)."""
    import torch_pruning as tp

    from visualizer.core.layers import is_conv1d
    from visualizer.core.structure.groups.tracing import _conv1d_pruner, _logits

    conv1d = {type(m) for m in model.modules() if is_conv1d(m)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False, output_transform=_logits,
                                                   customized_pruners={c: _conv1d_pruner() for c in conv1d})
        groups = list(dg.get_all_groups(root_module_types=(nn.Linear, nn.modules.conv._ConvNd, *conv1d)))
    return [(frozenset((dg._module2name[it.dep.target.module], dg.is_out_channel_pruning_fn(it.dep.handler))
                       for it in g if it.dep.target.module in dg._module2name), len(g[0].idxs)) for g in groups]


@pytest.mark.parametrize("kind", ["bert", "vit", "gpt2"])
def test_groups_agree_with_torch_pruning(kind):
    """Torch-Pruning 1.6 traces BERT, ViT and (told about Conv1D) GPT-2, not grouped-query Llama
    (its group search does not finish): the same number of groups, its attention groups (q/k/v
    outputs + output-projection inputs) are our head groups' layers, and its MLP groups are ours.
    Its attention groups count channels (so any channel of a head could go, which breaks the
    heads' reshape); ours count whole heads."""
    model = build_hf_model(kind)
    model.config.use_cache = False
    x = example_input(model)
    ours = find_groups(model, x).groups
    theirs = dict(_tp_groups(model, x))
    assert len(ours) == len(theirs)

    def layers(g):
        return frozenset((m.param.rpartition(".")[0], m.role == "out") for m in g.members
                         if m.param.endswith("weight") and m.role in ("out", "in"))

    for g in ours:
        if g.kind == "head":
            assert layers(g) in theirs and g.size == HEADS and theirs[layers(g)] in (32, 3 * 32), g.label
        elif g.prunable:
            assert layers(g) in theirs and theirs[layers(g)] == g.size, g.label


class QKVAttention(nn.Module):
    """Fused-projection attention in the style of timm's ViT (qkv -> (3, heads, head_dim)).
    ``full_width`` reshapes the heads' outputs back to the input width C, as some code does."""

    def __init__(self, dim: int = 16, heads: int = 4, full_width: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.full_width = heads, dim // heads, full_width
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self.proj(x.reshape(b, n, c) if self.full_width else x.reshape(b, n, -1))


class TinyViT(nn.Module):
    def __init__(self, full_width: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, 4)
        self.norm1, self.norm2 = nn.LayerNorm(16), nn.LayerNorm(16)
        self.attn = QKVAttention(full_width=full_width)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))
        return self.head(x.mean(1))


def test_fused_qkv_attention_is_pruned_by_whole_heads():
    """The timm ViT crash (qkv halved channel by channel breaks the (3, heads, head_dim) reshape)
    cannot happen: qkv's rows are only ever removed by whole heads."""
    torch.manual_seed(0)
    model, x = TinyViT().eval(), torch.randn(2, 3, 16, 16)
    res = find_groups(model, x)
    heads = [g for g in res.groups if g.kind == "head"]
    assert len(heads) == 1 and heads[0].prunable and heads[0].size == 4
    assert not any(m.param == "attn.qkv.weight" for g in res.groups if g.kind == "channel" for m in g.members
                   if m.role == "out")
    result = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l2"), 0.5, x)
    assert result.max_output_diff <= 1e-5 and result.shrunk.model.attn.num_heads == 2


def test_attention_that_assumes_its_full_width_is_not_prunable():
    torch.manual_seed(0)
    model, x = TinyViT(full_width=True).eval(), torch.randn(2, 3, 16, 16)
    res = find_groups(model, x)
    head = next(g for g in res.groups if g.kind == "head")
    assert not head.prunable and "does not run with fewer heads" in head.reason
    result = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l2"), 0.5, x)
    assert result.max_output_diff <= 1e-5  # the MLP neurons are still pruned


def test_timm_vit_shrinks_by_heads():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    res = find_groups(model, x)
    heads = [g for g in res.groups if g.kind == "head"]
    assert len(heads) == len(model.blocks)
    result = structured_prune(model, res.groups, group_scores(model, res.groups, "group-l2"), 0.5, x)
    assert result.max_output_diff <= 1e-4 * max(1.0, result.output_scale)


def test_a_masked_tied_weight_saves_the_head_flops():
    """GPT-2's lm_head is the token embedding: masking half of transformer.wte.weight halves the
    FLOPs of the head, the layer that multiplies by it."""
    from visualizer.core.pruning.masks import MaskSet
    from visualizer.core.structure.speed import count_flops, useful_flops

    model = build_hf_model("gpt2")
    x = example_input(model)
    total, per_layer = count_flops(model, x)
    masks = MaskSet.for_model(model)
    masks.masks["transformer.wte.weight"][:, ::2] = False
    assert per_layer["lm_head"] > 0
    assert useful_flops(per_layer, total, model, masks) == total - per_layer["lm_head"] // 2


def test_the_dependency_trace_leaves_the_model_untouched():
    """Attention layers are traced through proxies in a copy of the module tree sharing the
    tensors: the model's own modules stay in place throughout (other jobs may run it)."""
    from visualizer.core.structure.groups import find_groups_job

    model = build_hf_model("llama")
    attn = model.model.layers[0].self_attn
    job = find_groups_job(model, example_input(model))
    for _ in job:
        assert model.model.layers[0].self_attn is attn


class BiasedAttention(QKVAttention):
    """Swin-style: a relative-position bias table with one column per head."""

    def __init__(self) -> None:
        super().__init__(heads=2)  # head_dim 8: the table's 2 columns are heads
        self.bias_table = nn.Parameter(torch.zeros(7, self.num_heads))


def test_attention_with_per_head_tensors_is_not_prunable():
    model = TinyViT()
    model.attn = BiasedAttention()
    res = find_groups(model.eval(), torch.randn(2, 3, 16, 16))
    head = next(g for g in res.groups if g.kind == "head")
    assert not head.prunable and "bias_table has one entry per head" in head.reason
