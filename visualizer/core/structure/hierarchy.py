"""The traced graph nested by the module tree: containers, folded repeats, nested layout.

A model's traced graph (:mod:`visualizer.core.structure.graph`) has one node per layer or
operation; a real model has thousands. Here the same graph is nested by the module tree, as graph
viewers for large models do (Google's Model Explorer: layers laid out only when their group is
opened):

- every module that owns traced nodes (a block, a stage, an encoder layer) is a *container*; it
  is one node until opened;
- consecutive sibling containers with the same structure (same module type, same children, same
  internal edges, same parameter counts) fold into one *run* node "× N" (12 encoder layers, 16
  bottlenecks); opening the run unfolds it into its members;
- an edge of the traced graph is drawn between the visible representatives of its endpoints (the
  deepest open container's child on each side), so a closed container shows exactly the edges
  that cross its boundary.

Layout is nested: each open container orders its own children with the layered layout of
:mod:`visualizer.core.structure.layout` (cached per container: opening a container lays out only
its children, in a job for large ones), then boxes are sized bottom-up and placed top-down
(:func:`place`). Pure numpy/networkx: no Qt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from visualizer.core.structure.layout import layout_job
from visualizer.core.tasks import Step, exclusive, run

ROOT = ""  # key of the whole model
MIN_RUN = 2  # this many identical consecutive siblings fold
LARGE_CONTAINER = 300  # children above which a container's layout runs in a job (GUI)
LAYOUT_BUDGET_S = 5.0  # a container whose ordering takes longer keeps the best order found so far

# geometry, in data units (the view scales them); a closed node is NODE_W x NODE_H
NODE_W, NODE_H = 1.6, 0.5
HGAP, VGAP = 0.5, 0.25  # between columns / between nodes of a column
PAD, HEADER = 0.2, 0.42  # inside an open box / the title strip on top of it


@dataclass
class HNode:
    """One node of the hierarchy.

    kind: ``root`` (the model), ``module`` (a container module), ``run`` (folded identical
    siblings; ``children`` are its members, ``repeat`` their count, ``first`` the first one) or
    ``node`` (a traced layer or operation; ``layer`` is its module path for layers).
    params: parameters of a traced node, or the sum over everything inside a container.
    """

    key: str
    kind: str
    label: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    module_type: str = ""
    params: int = 0
    leaves: int = 0  # traced nodes inside (1 for a traced node)
    repeat: int = 1
    first: str = ""
    layer: str = ""
    op: str = ""  # traced node kind: input, layer, function, method, attr, output, module
    signature: str = ""

    @property
    def is_container(self) -> bool:
        return self.kind != "node"

    def title(self) -> str:
        """Text drawn on the node."""
        if self.kind == "run":
            return f"{self.module_type or self.label} × {self.repeat}"
        if self.kind == "root":
            return self.label
        return self.label.rsplit(".", 1)[-1]


@dataclass
class Hierarchy:
    """The nested graph. ``nodes`` by key; traced nodes keep their graph keys (layers are named
    by module path), containers are named by module path (the root is ``""``), runs by
    ``first..last``. ``edges`` are the traced graph's edges; ``edge_kind`` is ``data`` (traced
    data flow) or ``order`` (registration order of an untraced model's modules)."""

    nodes: dict[str, HNode]
    edges: list[tuple[str, str]]
    method: str = "fx"
    notices: list[str] = field(default_factory=list)
    edge_kind: str = "data"
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # traced node -> its containers
    level_edges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # LCA container -> edges
    leaf_order: list[str] = field(default_factory=list)  # traced nodes in trace order
    leaf_index: dict[str, np.ndarray] = field(default_factory=dict)  # container -> rows of leaf_order

    # --- queries -----------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self.nodes

    @property
    def root(self) -> HNode:
        return self.nodes[ROOT]

    def containers(self) -> list[str]:
        return [k for k, n in self.nodes.items() if n.is_container]

    def ancestors(self, key: str) -> list[str]:
        """Containers above ``key``, root first."""
        out = []
        parent = self.nodes[key].parent
        while parent is not None:
            out.append(parent)
            parent = self.nodes[parent].parent
        return out[::-1]

    def find(self, text: str, limit: int = 50) -> list[str]:
        """Keys whose name contains ``text`` (case-insensitive): exact matches first, then
        shorter names (a search for "layer1" finds the stage before its convolutions)."""
        t = text.strip().lower()
        if not t:
            return []
        hits = [k for k, n in self.nodes.items() if k and (t in k.lower() or t in n.label.lower())]
        hits.sort(key=lambda k: (k.lower() != t, not k.lower().endswith(t), len(k), k))
        return hits[:limit]

    def resolve(self, name: str) -> str | None:
        """The node a layer or parameter name stands for (``x.weight`` -> the layer ``x``)."""
        if name in self.nodes:
            return name
        base = name.rsplit(".", 1)[0]
        if base in self.nodes:
            return base
        for k, n in self.nodes.items():
            if n.layer and n.layer in (name, base):
                return k
        return None

    def opened_for(self, key: str) -> list[str]:
        """The containers to open so that ``key`` is visible (its ancestors)."""
        return self.ancestors(key)

    def representative(self, key: str, opened: set[str]) -> str:
        """The visible node standing for ``key``: the first closed container on its path."""
        chain = self.chains.get(key)
        if chain is None:
            chain = tuple(self.ancestors(key)[1:])
        for c in chain:
            if c not in opened:
                return c
        return key

    def visible(self, opened: set[str]) -> list[str]:
        """Closed nodes on screen (traced nodes and closed containers), in drawing order."""
        out: list[str] = []
        stack = [iter(self.nodes[ROOT].children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
            elif self.nodes[child].is_container and child in opened:
                stack.append(iter(self.nodes[child].children))
            else:
                out.append(child)
        return out

    def visible_edges(self, opened: set[str]) -> list[tuple[str, str, int]]:
        """Edges between visible nodes, as (source, target, traced edges bundled). Only the open
        containers' own edges are read: a closed container costs nothing however large."""
        counts: dict[tuple[str, str], int] = {}
        stack = [ROOT]
        while stack:
            key = stack.pop()
            for u, v in self.level_edges.get(key, ()):
                a, b = self.representative(u, opened), self.representative(v, opened)
                if a != b:
                    counts[(a, b)] = counts.get((a, b), 0) + 1
            stack.extend(c for c in self.nodes[key].children if c in opened and self.nodes[c].is_container)
        return [(a, b, n) for (a, b), n in counts.items()]

    def child_graph(self, key: str):
        """The container's children and the edges among them (traced edges lifted to this
        level): what its layout orders."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.nodes[key].children)
        depth = len(self.ancestors(key)) + 1 if key != ROOT else 1
        for u, v in self.level_edges.get(key, ()):
            a, b = self._at_depth(u, depth), self._at_depth(v, depth)
            if a != b:
                g.add_edge(a, b)
        return g

    def _at_depth(self, leaf: str, depth: int) -> str:
        chain = self.chains[leaf]  # containers below the root, outermost first
        return chain[depth - 1] if depth - 1 < len(chain) else leaf

    # --- json --------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Every container with its children; a folded run with ``repeat`` and ``first``."""
        out = []
        for k, n in self.nodes.items():
            if not n.is_container:
                continue
            entry = {"id": k, "kind": n.kind, "label": n.label, "module_type": n.module_type,
                     "parent": n.parent, "children": list(n.children), "params": n.params,
                     "leaves": n.leaves}
            if n.kind == "run":
                entry.update(repeat=n.repeat, first=n.first)
            out.append(entry)
        return {"root": ROOT, "edge_kind": self.edge_kind, "containers": out,
                "runs": sum(1 for n in self.nodes.values() if n.kind == "run")}


# --- building -------------------------------------------------------------------------------------


def _parent_path(path: str) -> str:
    return path.rpartition(".")[0]


def _prefixes(path: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']; '' -> []."""
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def build_hierarchy(graph, owners: Mapping[Hashable, str], module_types: Mapping[str, str] | None = None,
                    method: str = "fx", notices: Iterable[str] = (), edge_kind: str = "data",
                    fold: bool = True) -> Hierarchy:
    """Nest ``graph`` (a traced ``networkx.DiGraph``) by ``owners`` (traced node -> dotted path
    of the module it runs in, ``""`` for the model itself). ``module_types`` names container
    types (``"Bottleneck"``); identical consecutive siblings fold into runs when ``fold``."""
    module_types = module_types or {}
    nodes: dict[str, HNode] = {ROOT: HNode(ROOT, "root", "model", None, module_type=module_types.get("", ""))}
    leaf_keys: list[str] = []
    cont: dict[str, str] = {"": ROOT}  # module path -> container key
    for n, attrs in graph.nodes(data=True):
        key = str(n)
        owner = owners.get(n, "") or ""
        for path in _prefixes(owner):
            if path in cont:
                continue
            # a container named like a traced node (a module called as a leaf that also owns
            # operations) gets a mark, so both stay addressable
            ckey = f"{path}#" if path in graph else path
            parent = cont.get(_parent_path(path), ROOT)
            cont[path] = ckey
            nodes[ckey] = HNode(ckey, "module", path, parent, module_type=module_types.get(path, ""))
            nodes[parent].children.append(ckey)
        parent = cont.get(owner, ROOT)
        kind = attrs.get("kind", "")
        layer = str(attrs.get("target") or "") if kind in ("layer", "module") else ""
        nodes[key] = HNode(key, "node", str(attrs.get("label") or key), parent,
                           module_type=str(attrs.get("module_type") or ""), params=int(attrs.get("params") or 0),
                           leaves=1, layer=layer, op=kind)
        nodes[parent].children.append(key)
        leaf_keys.append(key)
    edges = [(str(u), str(v)) for u, v in graph.edges() if u != v]
    h = Hierarchy(nodes, edges, method, list(notices), edge_kind)
    _index(h, leaf_keys)
    _signatures(h)
    if fold:
        _fold_runs(h)
        _index(h, leaf_keys)
    return h


def _index(h: Hierarchy, leaf_keys: list[str]) -> None:
    """Chains (containers above each traced node), per-level edges, sums and leaf rows."""
    nodes = h.nodes
    h.leaf_order = list(leaf_keys)
    h.chains = {}
    for key in leaf_keys:
        chain = []
        p = nodes[key].parent
        while p is not None and p != ROOT:
            chain.append(p)
            p = nodes[p].parent
        h.chains[key] = tuple(chain[::-1])
    level: dict[str, list[tuple[str, str]]] = {}
    for u, v in h.edges:
        cu, cv = h.chains[u], h.chains[v]
        d = 0
        while d < len(cu) and d < len(cv) and cu[d] == cv[d]:
            d += 1
        lca = cu[d - 1] if d else ROOT
        level.setdefault(lca, []).append((u, v))
    h.level_edges = level
    rows: dict[str, list[int]] = {k: [] for k, n in nodes.items() if n.is_container}
    for i, key in enumerate(leaf_keys):
        rows[ROOT].append(i)
        for c in h.chains[key]:
            rows[c].append(i)
    h.leaf_index = {k: np.asarray(r, dtype=np.int64) for k, r in rows.items()}
    for k, n in nodes.items():
        if n.is_container:
            idx = h.leaf_index[k]
            n.leaves = len(idx)
            n.params = int(sum(nodes[leaf_keys[i]].params for i in idx))


def _op_signature(n: HNode) -> str:
    if n.op == "layer":
        return f"L:{n.module_type}:{n.params}"
    if n.op in ("function", "method"):
        return f"F:{n.label}"
    return f"{n.op}:{n.module_type}:{n.params}"


def _signatures(h: Hierarchy) -> None:
    """Structural hash of every node, bottom-up: type, children's hashes in order and the
    edges among the children (as positions), so equal hashes mean interchangeable blocks."""
    order = sorted(h.containers(), key=lambda k: -len(h.ancestors(k)))
    for n in h.nodes.values():
        if not n.is_container:
            n.signature = _op_signature(n)
    for key in order:
        n = h.nodes[key]
        pos = {c: i for i, c in enumerate(n.children)}
        g = h.child_graph(key)
        inner = sorted((pos[a], pos[b]) for a, b in g.edges())
        text = "|".join([n.module_type, ",".join(h.nodes[c].signature for c in n.children), repr(inner)])
        n.signature = hashlib.sha1(text.encode()).hexdigest()[:16]


def _fold_runs(h: Hierarchy) -> None:
    """Replace each maximal run of >= MIN_RUN consecutive sibling containers with equal
    signatures by one ``run`` node whose children are the members."""
    for key in list(h.containers()):
        n = h.nodes[key]
        if n.kind == "run":
            continue
        out: list[str] = []
        children = n.children
        i = 0
        while i < len(children):
            c = h.nodes[children[i]]
            j = i + 1
            if c.kind == "module":
                while j < len(children) and h.nodes[children[j]].kind == "module" and \
                        h.nodes[children[j]].signature == c.signature:
                    j += 1
            if j - i >= MIN_RUN:
                members = children[i:j]
                rkey = f"{members[0]}..{members[-1]}"
                h.nodes[rkey] = HNode(rkey, "run", _run_label(members), key, list(members),
                                      module_type=c.module_type, repeat=len(members), first=members[0],
                                      signature=c.signature)
                for m in members:
                    h.nodes[m].parent = rkey
                out.append(rkey)
            else:
                out.extend(children[i:j])
            i = j
        n.children = out


def _run_label(members: list[str]) -> str:
    """'blocks.0..blocks.47' -> 'blocks.0–47' (a shared prefix is written once)."""
    a, b = members[0], members[-1]
    pa, _, ta = a.rpartition(".")
    pb, _, tb = b.rpartition(".")
    return f"{pa}.{ta}–{tb}" if pa == pb and pa else f"{a}–{b}"


# --- from a model ---------------------------------------------------------------------------------


def fx_owners(model) -> dict[str, str]:
    """Module path each torch.fx node runs in (its ``nn_module_stack``), keyed by fx node name
    and, for module calls, by target; computed by one symbolic trace (no forward pass). The
    bare graph is enough: no GraphModule is built (its code generation cost a third of it)."""
    import torch.fx

    with exclusive("torch.fx trace (module owners)"):  # fx patches every module while it traces
        graph = torch.fx.Tracer().trace(model)
    out: dict[str, str] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = []
        for k, v in stack.items():
            p = v[0] if isinstance(v, tuple) and isinstance(v[0], str) else str(k)
            paths.append(p)
        if node.op == "call_module":
            out[str(node.target)] = _parent_path(str(node.target))
            out[node.name] = _parent_path(str(node.target))
        elif node.op == "get_attr":
            out[node.name] = _parent_path(str(node.target))
            out[str(node.target)] = _parent_path(str(node.target))
        else:
            out[node.name] = paths[-1] if paths else ""
    return out


def _owners_for(model, traced) -> dict:
    """Owner module path of every traced node, by the trace method."""
    g = traced.graph
    owners: dict = {}
    fx: dict[str, str] = {}
    if traced.method == "fx":
        try:
            fx = fx_owners(model)
        except Exception:  # traced once already; a second trace failing leaves the ops at the top
            fx = {}
    for n, a in g.nodes(data=True):
        kind = a.get("kind")
        target = str(a.get("target") or "")
        if traced.method == "export":
            owners[n] = str(a.get("module_type") or "")
        elif kind in ("layer", "attr"):
            owners[n] = _parent_path(target)
        elif kind in ("input", "output"):
            owners[n] = ""
        else:
            owners[n] = fx.get(str(n), "")
    return owners


def _module_graph(model):
    """An untraceable model: its leaf modules in registration order (edges follow that order,
    not data flow)."""
    import networkx as nx

    g = nx.DiGraph()
    prev = None
    for name, mod in model.named_modules():
        if not name or any(True for _ in mod.children()):
            continue
        params = sum(p.numel() for p in mod.parameters())
        g.add_node(name, kind="layer", label=name, module_type=type(mod).__name__, params=params,
                   shape=None, target=name)
        if prev is not None:
            g.add_edge(prev, name, relation="order")
        prev = name
    owners = {n: _parent_path(n) for n in g.nodes}
    return g, owners


def contracted(graph, keep: Iterable[Hashable]):
    """``graph`` on the nodes of ``keep`` only: an edge u -> v wherever v is reached from u
    through nodes outside ``keep`` (a path through a ReLU or an untouched layer becomes one edge).
    The kept nodes keep their attributes."""
    import networkx as nx

    wanted = set(keep)
    kept = [n for n in graph.nodes if n in wanted]  # in trace order
    out = nx.DiGraph()
    out.add_nodes_from((n, graph.nodes[n]) for n in kept)
    inside = set(kept)
    for source in kept:
        seen, stack = {source}, list(graph.successors(source))
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in inside:
                out.add_edge(source, n)
            else:
                stack.extend(graph.successors(n))
    return out


def focused_hierarchy(model, traced, keep: Iterable[Hashable]) -> Hierarchy:
    """The hierarchy of only the traced nodes ``keep`` (see :func:`contracted`), nested by
    ``model``'s modules and not folded: a picture of one part of the graph (a coupled channel
    group and the merges joining it) that fits a slide, laid out like the whole graph."""
    types = {name: type(m).__name__ for name, m in model.named_modules()}
    owners = _owners_for(model, traced)
    sub = contracted(traced.graph, keep)
    return build_hierarchy(sub, {n: owners.get(n, "") for n in sub.nodes}, types, traced.method, fold=False)


def untraced_notice(traced) -> str:
    """One line for a model drawn without its data flow: why, and what would help."""
    fails = [n for n in traced.notices if "failed" in n or "could not" in n or "cannot" in n]
    why = fails[-1] if fails else "no example input"
    why = why if len(why) <= 110 else why[:109] + "…"
    return (f"could not trace the model ({why}): showing its module hierarchy in registration "
            "order; a model that reads token ids or several tensors traces with an input it "
            "accepts: pass --example-input")


def model_hierarchy(model, traced) -> Hierarchy:
    """The hierarchy of ``model`` for its :class:`~visualizer.core.structure.graph.ModelGraph`."""
    return run(hierarchy_job(model, traced))


def hierarchy_job(model, traced) -> Generator[Step, None, Hierarchy]:
    """Job: nest a traced graph by ``model``'s module tree and fold repeats; a model traced only
    as a module hierarchy gets its leaf modules in registration order and a notice."""
    yield Step("module owners", 0.0)
    types = {name: type(m).__name__ for name, m in model.named_modules()}
    notices = list(traced.notices)
    if traced.method == "hierarchy":
        g, owners = _module_graph(model)
        notices.insert(0, untraced_notice(traced))
        yield Step("nesting", 0.5)
        return build_hierarchy(g, owners, types, traced.method, notices, edge_kind="order")
    owners = _owners_for(model, traced)
    if traced.method == "hooks":
        notices.insert(0, untraced_notice(traced))
    yield Step("nesting", 0.5)
    return build_hierarchy(traced.graph, owners, types, traced.method, notices)


# --- layout ---------------------------------------------------------------------------------------


def order_job(h: Hierarchy, key: str, budget_s: float = LAYOUT_BUDGET_S) -> Generator[Step, None, list[list[str]]]:
    """Job: the columns (layers, top to bottom) of an open container's children: the layered
    layout of :mod:`~visualizer.core.structure.layout` on the children graph."""
    g = h.child_graph(key)
    n = g.number_of_nodes()
    sweeps = 8 if n <= 400 else 2 if n <= 3000 else 0
    lay = yield from layout_job(g, sweeps=sweeps, budget_s=budget_s)
    return [list(layer) for layer in lay.layers]


def order(h: Hierarchy, key: str, budget_s: float = LAYOUT_BUDGET_S) -> list[list[str]]:
    return run(order_job(h, key, budget_s))


@dataclass
class Placement:
    """Boxes of what is on screen: ``rects[key] = (x, y, w, h)`` for every visible node and
    every open container (y grows downwards); ``boxes`` lists the open containers outermost
    first."""

    rects: dict[str, tuple[float, float, float, float]]
    visible: list[str]
    boxes: list[str]
    edges: list[tuple[str, str, int]]

    def bounds(self, keys: Iterable[str] | None = None) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around every box, or around ``keys`` only (those on screen): what a
        view zooms to when it shows one part of the graph."""
        rects = self.rects if keys is None else {k: self.rects[k] for k in keys if k in self.rects}
        if not rects:
            return (0.0, 0.0, NODE_W, NODE_H)
        a = np.array(list(rects.values()))
        return (float(a[:, 0].min()), float(a[:, 1].min()),
                float((a[:, 0] + a[:, 2]).max()), float((a[:, 1] + a[:, 3]).max()))


def place(h: Hierarchy, opened: set[str], orders: Mapping[str, list[list[str]]],
          note_room: float = 0.0) -> Placement:
    """Nested box layout: an open container's children sit in the columns of its order (a
    container without an order yet is drawn closed); sizes bottom-up, positions top-down.
    ``note_room`` is kept free under every closed node (a slide writes a few words there)."""
    opened = {k for k in opened if k in h.nodes and h.nodes[k].is_container and (k in orders)} | {ROOT}
    if ROOT not in orders:
        opened.discard(ROOT)
    # an open container whose parent is closed is not on screen
    shown = {ROOT} if ROOT in opened else set()
    stack = [ROOT] if ROOT in opened else []
    while stack:
        k = stack.pop()
        for c in h.nodes[k].children:
            if c in opened:
                shown.add(c)
                stack.append(c)
    opened = shown
    sizes: dict[str, tuple[float, float]] = {}

    def size(key: str) -> tuple[float, float]:
        if key in sizes:
            return sizes[key]
        if key not in opened:
            s = (NODE_W, NODE_H)
        else:
            cols = orders[key]
            widths, heights = [], []
            for col in cols:
                ss = [slot(c) for c in col]
                widths.append(max(w for w, _ in ss))
                heights.append(sum(hh for _, hh in ss) + VGAP * (len(ss) - 1))
            w = sum(widths) + HGAP * (len(cols) - 1) + 2 * PAD
            s = (max(w, NODE_W + 2 * PAD), (max(heights) if heights else NODE_H) + 2 * PAD + HEADER)
        sizes[key] = s
        return s

    def slot(key: str) -> tuple[float, float]:  # what a child takes of its column
        w, hh = size(key)
        return (w, hh if key in opened else hh + note_room)

    rects: dict[str, tuple[float, float, float, float]] = {}
    boxes: list[str] = []
    if ROOT not in opened:
        rects[ROOT] = (0.0, 0.0, NODE_W, NODE_H)
        return Placement(rects, [ROOT], [], [])
    # iterative top-down placement
    todo = [(ROOT, 0.0, 0.0)]
    while todo:
        key, x, y = todo.pop()
        w, hh = size(key)
        rects[key] = (x, y, w, hh)
        if key not in opened:
            continue
        boxes.append(key)
        inner_h = hh - 2 * PAD - HEADER
        cx = x + PAD
        for col in orders[key]:
            ss = [slot(c) for c in col]
            cw = max(s[0] for s in ss)
            ch = sum(s[1] for s in ss) + VGAP * (len(ss) - 1)
            cy = y + HEADER + PAD + (inner_h - ch) / 2
            for c, (sw, sh) in zip(col, ss):
                todo.append((c, cx + (cw - sw) / 2, cy))
                cy += sh + VGAP
            cx += cw + HGAP
    visible = h.visible(opened)
    edges = h.visible_edges(opened)
    return Placement(rects, visible, boxes, edges)


def edge_curves(p: Placement) -> np.ndarray:
    """Cubic Bezier control points of every visible edge, (m, 4, 2): from the right side of the
    source box to the left side of the target box (edges running backwards leave from the
    bottom and arrive from the top, so they do not cut through their own boxes)."""
    if not p.edges:
        return np.zeros((0, 4, 2))
    out = np.zeros((len(p.edges), 4, 2))
    for i, (a, b, _n) in enumerate(p.edges):
        ax, ay, aw, ah = p.rects[a]
        bx, by, bw, bh = p.rects[b]
        p0 = (ax + aw, ay + ah / 2)
        p3 = (bx, by + bh / 2)
        dx = max(abs(p3[0] - p0[0]) * 0.4, HGAP)
        out[i] = (p0, (p0[0] + dx, p0[1]), (p3[0] - dx, p3[1]), p3)
    return out


# --- overlays on the hierarchy --------------------------------------------------------------------


def name_rows(h: Hierarchy) -> dict[str, int]:
    """Row of ``h.leaf_order`` for every name a value may be given under: the node key, its
    layer and the layer's ``.weight`` (built once per hierarchy)."""
    rows = getattr(h, "_name_rows", None)
    if rows is None:
        rows = {}
        for i, key in enumerate(h.leaf_order):
            n = h.nodes[key]
            for k in (f"{key}.weight", f"{n.layer}.weight" if n.layer else None, n.layer or None, key):
                if k:
                    rows[k] = i
        h._name_rows = rows
    return rows


def leaf_values(h: Hierarchy, values: Mapping[str, float]) -> np.ndarray:
    """One value per traced node (NaN where ``values`` says nothing). Keys may be node keys,
    layer names or parameter names (``x.weight``)."""
    out = np.full(len(h.leaf_order), np.nan)
    if not values:
        return out
    rows = name_rows(h)
    for k, v in values.items():
        i = rows.get(k)
        if i is not None and v is not None:
            out[i] = v
    return out


@dataclass(frozen=True)
class Summary:
    """Statistics of the traced nodes inside a container that carry a value."""

    mean: float
    min: float
    max: float
    count: int


def summarise(h: Hierarchy, leafvals: np.ndarray, key: str) -> Summary:
    """mean / min / max of the values inside ``key`` (a traced node: its own value)."""
    idx = h.leaf_index.get(key)
    vals = leafvals[idx] if idx is not None else leafvals[[h.leaf_order.index(key)]]
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    return Summary(float(vals.mean()), float(vals.min()), float(vals.max()), int(vals.size))


def node_values(h: Hierarchy, leafvals: np.ndarray, keys: list[str]) -> np.ndarray:
    """The value each visible node is painted with: its own, or its container's mean."""
    pos = getattr(h, "_leaf_pos", None)
    if pos is None:
        pos = h._leaf_pos = {k: i for i, k in enumerate(h.leaf_order)}
    out = np.full(len(keys), np.nan)
    for j, k in enumerate(keys):
        if k in pos:
            out[j] = leafvals[pos[k]]
        else:
            vals = leafvals[h.leaf_index[k]]
            vals = vals[~np.isnan(vals)]
            if vals.size:
                out[j] = vals.mean()
    return out


def bar_values(h: Hierarchy, leafvals: np.ndarray, key: str, bins: int = 16) -> np.ndarray:
    """The small colour bar of a closed container: its valued traced nodes in trace order,
    averaged into at most ``bins`` equal chunks."""
    idx = h.leaf_index.get(key)
    if idx is None:
        return np.zeros(0)
    vals = leafvals[idx]
    vals = vals[~np.isnan(vals)]
    if vals.size <= bins:
        return vals
    edges = np.linspace(0, vals.size, bins + 1).astype(int)
    return np.array([vals[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
