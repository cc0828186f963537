"""A model's traced graph: what the app draws.

:func:`build_graph` — a ``networkx.DiGraph`` of layers and operations, traced with ``torch.fx``
(``torch.export`` where fx fails), tensor shapes on the edges (:class:`ShapeRecorder` on an
example input) and parameter counts on the nodes. A model that cannot be traced (TorchScript,
data-dependent Python control flow, ...) falls back to forward hooks on its leaf modules (edges
follow execution order, not data flow) or, for TorchScript, to the module hierarchy; the result's
``notices`` say what is missing. It never raises on a model that runs.

Coupled channel groups (what structured pruning removes together) live in
:mod:`visualizer.core.structure.groups`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import networkx as nx
import torch
from torch import nn

from visualizer.core.data.external import DataOptions, options_for_model
from visualizer.core.data.sources import load_dataset
from visualizer.core.device import model_device  # noqa: F401 - groups and shrink import it from here
from visualizer.core.io.atomic import atomic_write
from visualizer.core.layers import private_view
from visualizer.core.models.hf import hf_example_input
from visualizer.core.models.zoo import ZOO
from visualizer.core.tasks import Step, exclusive, first_line, import_unlocked, run

# --- example inputs ---------------------------------------------------------------------------


def example_input(model: nn.Module, dataset: str | None = None, batch: int = 2) -> torch.Tensor:
    """A random input the model accepts: token ids or pixels for a Hugging Face model
    (vocabulary, sequence length and image size from its config, whatever the dataset), from its
    dataset's shape when known (given, or the bundled model's own), else guessed from the first layer (Conv2d -> Cx224x224
    image, Linear -> vector, RNN -> 16 steps). :func:`parse_example_input` reads one the user gives."""
    x = hf_example_input(model, batch)  # a transformers model's config says what it reads
    if x is not None:
        return x
    shapes = {"digits": (1, 8, 8), "digits-rows": (8, 8), "sequence": (16, 8)}
    if dataset is None:  # a bundled architecture knows its dataset
        for entry in ZOO.values():
            if isinstance(entry.factory, type) and type(model) is entry.factory:
                dataset = entry.dataset
                break
    if dataset in shapes:
        return torch.randn(batch, *shapes[dataset])
    if dataset is not None:
        try:
            # read as the model reads it (grey or RGB by its first convolution)
            return torch.randn(batch, *load_dataset(dataset, options_for_model(DataOptions(), model)).input_shape)
        except Exception:  # unknown or unavailable dataset: guess from the layers below
            pass
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return torch.randn(batch, m.in_channels, 224, 224)
        if isinstance(m, nn.Conv1d):
            return torch.randn(batch, m.in_channels, 128)
        if isinstance(m, nn.RNNBase):
            return torch.randn(batch, 16, m.input_size) if m.batch_first else torch.randn(16, batch, m.input_size)
        if isinstance(m, nn.Linear):
            return torch.randn(batch, m.in_features)
    raise ValueError("cannot guess an input shape for this model: give one with --example-input SHAPE[:dtype]")


_DTYPES = {"float": torch.float32, "float32": torch.float32, "float64": torch.float64, "double": torch.float64,
           "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "long": torch.int64, "int64": torch.int64, "int": torch.int64, "int32": torch.int32,
           "bool": torch.bool}


def parse_example_input(text: str, model: nn.Module | None = None, seed: int = 0) -> torch.Tensor:
    """The example input a user describes: ``SHAPE[:dtype]`` (``1x3x224x224``, ``2x512:long``,
    commas also separate) or a JSON object ``{"shape": [...], "dtype": "...", "low": 0,
    "high": N}`` (inline, or the path of a .json file). Floating inputs are standard normal;
    integer inputs are uniform in [low, high), where high defaults to the model's vocabulary
    (a Hugging Face config's ``vocab_size``, else the first ``nn.Embedding``'s size) and low to 0.
    Raises ValueError with one line on anything else."""
    text = text.strip()
    spec: dict
    if text.startswith("{") or text.endswith(".json"):
        import json
        from pathlib import Path

        try:
            spec = json.loads(Path(text).read_text() if text.endswith(".json") else text)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--example-input {text}: not a readable JSON spec ({first_line(exc)})") from exc
        if not isinstance(spec, dict) or "shape" not in spec:
            raise ValueError(f"--example-input {text}: a JSON spec is an object with a \"shape\" list")
    else:
        shape_text, _, dtype_text = text.partition(":")
        parts = [p for p in shape_text.replace(",", "x").split("x") if p.strip()]
        spec = {"shape": parts, "dtype": dtype_text or "float32"}
    try:
        shape = tuple(int(s) for s in spec["shape"])
    except (TypeError, ValueError):
        raise ValueError(f"--example-input {text}: the shape must be whole numbers like 2x3x32x32") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"--example-input {text}: the shape must be positive sizes like 2x3x32x32")
    dtype = _DTYPES.get(str(spec.get("dtype", "float32")).lower().removeprefix("torch."))
    if dtype is None:
        raise ValueError(f"--example-input {text}: unknown dtype {spec.get('dtype')!r} "
                         f"(use {', '.join(sorted(_DTYPES))})")
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype is torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    low = int(spec.get("low", 0))
    high = spec.get("high")
    high = int(high) if high is not None else _vocabulary(model)
    if high is None or high <= low:
        raise ValueError(f"--example-input {text}: integer inputs need a range; give a JSON spec with "
                         "\"high\" (the model has no vocabulary to take it from)")
    return torch.randint(low, high, shape, generator=gen).to(dtype)


def _vocabulary(model: nn.Module | None) -> int | None:
    """The number of token ids a model reads: its config's vocab_size, else its first embedding."""
    if model is None:
        return None
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0:
        return vocab
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return None


def random_like(example: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh random input shaped like ``example``, on its device: standard normal for floating
    inputs, uniform over [min, max] of the example for integer ones (token ids stay in the
    vocabulary the example was drawn from)."""
    if example.dtype.is_floating_point:
        return torch.randn(example.shape, generator=generator, dtype=example.dtype, device=example.device)
    if example.dtype is torch.bool:
        return torch.randint(0, 2, example.shape, generator=generator, device=example.device).bool()
    low, high = int(example.min()), int(example.max()) + 1
    return torch.randint(low, high, example.shape, generator=generator, device=example.device).to(example.dtype)


# --- the traced graph ---------------------------------------------------------------------------


@dataclass
class ModelGraph:
    """The drawn graph. Nodes: ``kind`` (input, layer, function, method, attr, output, module),
    ``label``, ``module_type``, ``params`` (own parameter count), ``shape`` (output shape or None).
    Edges: ``shape`` (the tensor passed, a list of ints, or None)."""

    graph: nx.DiGraph
    method: str  # "fx", "export", "hooks" or "hierarchy"
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        nodes = [{"id": n, **_jsonable_attrs(a)} for n, a in self.graph.nodes(data=True)]
        edges = [{"source": u, "target": v, **_jsonable_attrs(a)} for u, v, a in self.graph.edges(data=True)]
        return {"method": self.method, "notices": list(self.notices), "nodes": nodes, "edges": edges}

    def write_graphml(self, path) -> None:
        """GraphML holds only scalars: shapes are written as strings like ``2x16x8x8``."""
        g = nx.DiGraph()
        for n, a in self.graph.nodes(data=True):
            g.add_node(n, **{k: _scalar(v) for k, v in a.items() if v is not None})
        for u, v, a in self.graph.edges(data=True):
            g.add_edge(u, v, **{k: _scalar(x) for k, x in a.items() if x is not None})
        g.graph["method"] = self.method
        g.graph["notices"] = " | ".join(self.notices)
        atomic_write(path, lambda tmp: nx.write_graphml(g, tmp))


def _scalar(v):
    if isinstance(v, (list, tuple)):
        return "x".join(str(int(s)) for s in v)
    return v


def _jsonable_attrs(a: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in a.items()}


def _own_param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shape_of(meta) -> list[int] | None:
    if meta is None:
        return None
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    try:
        return [int(s) for s in shape]
    except (TypeError, ValueError):  # symbolic sizes
        return None


@dataclass(frozen=True)
class TensorShape:
    """What the graph keeps of a node's output: its shape and dtype (fx's ``tensor_meta`` key)."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class ShapeRecorder(torch.fx.Interpreter):
    """Runs a traced module once and stores each tensor output's shape in ``node.meta
    ["tensor_meta"]``, like ``torch.fx.passes.shape_prop.ShapeProp`` for concrete inputs.

    Not ShapeProp itself: its ``run_node`` imports ``torch.fx.experimental.symbolic_shapes`` and
    with it sympy on first use; done by the graph job in a worker thread, that import held the
    GIL long enough to freeze the window (docs/performance.md). Shapes of concrete tensors need
    none of it."""

    def run_node(self, n: torch.fx.Node):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = TensorShape(tuple(result.shape), result.dtype)
        return result

    def propagate(self, *args):
        with torch.no_grad():
            return self.run(*args)


def build_graph(model: nn.Module, example: torch.Tensor | None = None) -> ModelGraph:
    """Trace ``model`` into a :class:`ModelGraph` (the convenience form of :func:`build_graph_job`)."""
    return run(build_graph_job(model, example))


def build_graph_job(model: nn.Module, example: torch.Tensor | None = None) -> Generator[Step, None, ModelGraph]:
    """Job: trace ``model`` into a :class:`ModelGraph`: fx first, then torch.export, then forward
    hooks on leaf modules, then the bare module hierarchy. Never raises for a model object.
    Yields before each attempt. The tracers run on a private view of ``model`` in eval mode
    (core.layers.private_view: hooks and the flag never touch the model other jobs read), and
    each tracing call holds the exclusive side of core.tasks.STEP_LOCK (fx and export patch every
    module in the process while they trace)."""
    t0 = time.perf_counter()
    notices: list[str] = []
    if isinstance(model, torch.jit.ScriptModule):
        notices.append(
            "TorchScript module: Python-level tracing is impossible; showing the module hierarchy "
            "with parameter counts only (no data-flow edges, no shapes)"
        )
        yield Step("module hierarchy", 0.5)
        g = _hierarchy_graph(model)
        return ModelGraph(g, "hierarchy", notices, time.perf_counter() - t0)
    if example is None:
        try:
            example = example_input(model)
        except ValueError as exc:
            notices.append(str(exc))
    model = private_view(model).eval()
    if example is not None:
        example = example.to(model_device(model))
    if example is not None:
        yield Step("tracing with torch.fx", 0.0)
        try:
            return ModelGraph(_fx_graph(model, example), "fx", notices, time.perf_counter() - t0)
        except Exception as exc:  # untraceable by fx: data-dependent control flow, ...
            notices.append(f"torch.fx could not trace the model ({_first_line(exc)})")
        yield Step("tracing with torch.export", 0.3)
        try:
            g = _export_graph(model, example)
            notices.append("traced with torch.export: nodes are ATen operations grouped by module")
            return ModelGraph(g, "export", notices, time.perf_counter() - t0)
        except Exception as exc:
            notices.append(f"torch.export failed too ({_first_line(exc)})")
        yield Step("recording leaf modules with forward hooks", 0.7)
        try:
            g = _hook_graph(model, example)
            notices.append(
                "fallback: leaf modules recorded with forward hooks; edges follow execution "
                "order, not data flow, so residual/concat connections and functional ops are missing"
            )
            return ModelGraph(g, "hooks", notices, time.perf_counter() - t0)
        except Exception as exc:
            notices.append(f"running the model on the example input failed ({_first_line(exc)})")
    notices.append("showing the module hierarchy only (no data flow, no shapes)")
    return ModelGraph(_hierarchy_graph(model), "hierarchy", notices, time.perf_counter() - t0)


def _first_line(exc: BaseException) -> str:
    return first_line(exc, with_type=True, limit=200)


def _fx_graph(model: nn.Module, example: torch.Tensor) -> nx.DiGraph:
    from torch.fx import symbolic_trace

    with exclusive("torch.fx trace (graph)"):
        gm = symbolic_trace(model)
    ShapeRecorder(gm).propagate(example)
    modules = dict(gm.named_modules())
    g = nx.DiGraph()
    ids: dict = {}  # layers are named by module path (what the GUI links to), ops by fx name
    for node in gm.graph.nodes:
        nid = str(node.target) if node.op in ("call_module", "get_attr") and str(node.target) not in g else node.name
        ids[node] = nid
        meta = node.meta.get("tensor_meta")
        attrs = {"kind": "", "label": node.name, "module_type": "", "params": 0, "shape": _shape_of(meta), "target": str(node.target)}
        if node.op == "placeholder":
            attrs.update(kind="input", label=str(node.target))
        elif node.op == "output":
            attrs.update(kind="output", label="output")
        elif node.op == "call_module":
            mod = modules[node.target]
            attrs.update(kind="layer", label=str(node.target), module_type=type(mod).__name__, params=_own_param_count(mod))
        elif node.op == "get_attr":
            val = attribute_at(gm, str(node.target))
            n = val.numel() if isinstance(val, torch.Tensor) else 0
            attrs.update(kind="attr", label=str(node.target), params=n, shape=_shape_of(val))
        elif node.op == "call_function":
            attrs.update(kind="function", label=getattr(node.target, "__name__", str(node.target)))
        else:  # call_method
            attrs.update(kind="method", label=str(node.target))
        g.add_node(nid, **attrs)
        for inp in node.all_input_nodes:
            src = ids[inp]
            g.add_edge(src, nid, shape=_shape_of(inp.meta.get("tensor_meta")) or g.nodes[src].get("shape"))
    return g


def attribute_at(root: nn.Module, path: str):
    """The object at a dotted attribute path of ``root`` (a parameter, buffer or submodule)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _export_graph(model: nn.Module, example: torch.Tensor) -> nx.DiGraph:
    """ATen-level graph from torch.export (non-strict); parameters become attributes of the ops
    that read them, and each op is labelled with the module it runs in."""
    import_unlocked("torch._dynamo", "torch.export")  # seconds on first use: never under the lock
    with exclusive("torch.export (graph)"):
        ep = torch.export.export(model, (example,), strict=False)
    sig = ep.graph_signature
    param_of_input = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    state = ep.state_dict
    g = nx.DiGraph()
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in param_of_input:
            continue
        val = node.meta.get("val")
        stack = node.meta.get("nn_module_stack") or {}
        owner = list(stack.values())[-1][0] if stack else ""
        params = 0
        for inp in node.all_input_nodes:
            pname = param_of_input.get(inp.name)
            if pname is not None and pname in state and pname in sig.inputs_to_parameters.values():
                params += state[pname].numel()
        kind = {"placeholder": "input", "output": "output"}.get(node.op, "function")
        label = getattr(node.target, "__name__", str(node.target))
        g.add_node(node.name, kind=kind, label=f"{owner}:{label}" if owner else label, module_type=owner,
                   params=params, shape=_shape_of(val), target=str(node.target))
        for inp in node.all_input_nodes:
            if inp.name in param_of_input:
                continue
            g.add_edge(inp.name, node.name, shape=_shape_of(inp.meta.get("val")))
    return g


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def _hook_graph(model: nn.Module, example: torch.Tensor) -> nx.DiGraph:
    calls: list[tuple[str, nn.Module, list[int] | None, list[int] | None]] = []
    handles = []

    def make_hook(name):
        def hook(mod, inputs, output):
            inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            out = output[0] if isinstance(output, tuple) else output
            calls.append((name, mod, _shape_of(inp), _shape_of(out) if isinstance(out, torch.Tensor) else None))

        return hook

    for name, mod in _leaf_modules(model):
        handles.append(mod.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    g = nx.DiGraph()
    g.add_node("input", kind="input", label="input", module_type="", params=0, shape=_shape_of(example), target="")
    prev = "input"
    for i, (name, mod, in_shape, out_shape) in enumerate(calls):
        node = name if name not in g else f"{name}#{i}"  # a module called twice appears twice
        g.add_node(node, kind="layer", label=name, module_type=type(mod).__name__,
                   params=_own_param_count(mod) if node == name else 0, shape=out_shape, target=name)
        g.add_edge(prev, node, shape=in_shape)
        prev = node
    return g


def _hierarchy_graph(model: nn.Module) -> nx.DiGraph:
    g = nx.DiGraph()
    for name, mod in model.named_modules():
        node = name or "model"
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        g.add_node(node, kind="module", label=node, module_type=getattr(mod, "original_name", type(mod).__name__),
                   params=own, shape=None, target=name)
        if name:
            parent = name.rpartition(".")[0] or "model"
            g.add_edge(parent, node, shape=None, relation="contains")
    return g



def fx_trace(model: nn.Module):
    """torch.fx trace in which the modules shrinking introduces stay leaves, so that a shrunk
    model's graph has the same node names as the original's (branch removal relies on it)."""
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if type(m).__name__ in ("InputSelect", "PrunedMultiheadAttention") and \
                    type(m).__module__.startswith("visualizer.core.structure.shrink"):
                return True
            return super().is_leaf_module(m, qualname)

    root = model
    with exclusive("torch.fx trace"):
        graph = _Tracer().trace(root)
    return torch.fx.GraphModule(root, graph, type(root).__name__)
