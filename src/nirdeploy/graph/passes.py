"""Normalisation passes: pure functions ``Graph -> Graph`` (the argument is never modified).

``PASSES`` names every pass; :func:`normalize` validates its argument (raising
:class:`~nirdeploy.errors.GraphValidationError`), then runs :data:`PIPELINE`:

    infer_shapes -> inline_subgraphs -> broadcast_params -> drop_identities -> infer_shapes
    -> topo_sort -> mark_recurrent

* ``inline_subgraphs``: nested NIRGraph nodes are flattened into the parent with dotted names
  (``lif1.lif``, ``lif1.w_rec``); edges into the subgraph go to the successors of its Input,
  edges out of it leave from the predecessors of its Output; those inner Input/Output nodes
  disappear. A name that already exists in the parent gets a ``_1``, ``_2``... suffix.
* ``broadcast_params``: one-element (0-d or size-1) neuron / Delay / Threshold / Scale
  parameters are broadcast to the layer shape (the largest parameter's shape, or the inferred
  input shape when every parameter is a scalar) (NIR issue #176).
* ``drop_identities``: removes Scale of all ones, Delay of 0, shape-preserving Flatten, and
  square identity Affine (zero bias) / Linear; conservative: never a node on a cycle, a node
  touching a delayed edge, or one whose removal would create a duplicate edge.
* ``topo_sort``: canonical order: Inputs (original order), then Kahn's algorithm on the edges
  without the DFS back edges, ties broken by the original order, Outputs last; edges sorted by
  (source position, destination position).
* ``mark_recurrent``: the DFS back edges (DFS from the Inputs in order, successors in edge
  order) become ``Graph.delayed_edges``: for ``fc1 -> lif1 <-> w_rec`` it is
  ``w_rec -> lif1`` (the recurrent weight reads the previous step's spikes, as in snnTorch
  RLeaky/RSynaptic and nirtorch).
"""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from ..errors import GraphValidationError, Problem, UnsupportedError
from .ir import STATEFUL_TYPES, Graph, Node
from .validate import MAX_DECLARED_ELEMENTS, _shape_params, check, infer_shapes

__all__ = [
    "PASSES",
    "PIPELINE",
    "normalize",
    "inline_subgraphs",
    "broadcast_params",
    "drop_identities",
    "topo_sort",
    "mark_recurrent",
    "recurrent_loops",
    "back_edges",
    "is_identity",
]


# ------------------------------------------------------------------------------------------------
# inline_subgraphs
# ------------------------------------------------------------------------------------------------


def inline_subgraphs(g: Graph) -> Graph:
    """Flatten every nested NIRGraph (recursively) into ``g``; see the module docstring."""
    return _inline(g.copy(), 0)


def _inline(g: Graph, depth: int) -> Graph:
    if not any(n.type == "NIRGraph" and n.subgraph is not None for n in g.nodes.values()):
        return g
    new_nodes: dict[str, Node] = {}
    # edge mapping for each old endpoint: where edges into / out of a node go now
    into: dict[str, list[str]] = {}  # old name -> new names that receive its input
    outof: dict[str, list[str]] = {}  # old name -> new names that produce its output
    inner_by_sub: dict[str, list[tuple[str, str]]] = {}
    inner_delayed: set[tuple[str, str]] = set()
    passthrough: dict[str, bool] = {}
    taken = set(g.nodes)

    def fresh(base: str) -> str:
        if base not in taken and base not in new_nodes:
            return base
        i = 1
        while f"{base}_{i}" in taken or f"{base}_{i}" in new_nodes:
            i += 1
        return f"{base}_{i}"

    for name, n in g.nodes.items():
        if n.type != "NIRGraph" or n.subgraph is None:
            new_nodes[name] = n
            into[name] = [name]
            outof[name] = [name]
            continue
        sub = _inline(n.subgraph, depth + 1)
        taken.discard(name)
        rename: dict[str, str] = {}
        for iname, inode in sub.nodes.items():
            if inode.type in ("Input", "Output"):
                continue
            new = fresh(f"{name}.{iname}")
            rename[iname] = new
            inode = inode.copy()
            inode.name = new
            new_nodes[new] = inode
        in_ports = {k for k, v in sub.nodes.items() if v.type == "Input"}
        out_ports = {k for k, v in sub.nodes.items() if v.type == "Output"}
        into[name] = [rename[b] for a, b in sub.edges if a in in_ports and b in rename]
        outof[name] = [rename[a] for a, b in sub.edges if b in out_ports and a in rename]
        passthrough[name] = any(a in in_ports and b in out_ports for a, b in sub.edges)
        inner_by_sub[name] = []
        for a, b in sub.edges:
            if a in rename and b in rename:
                inner_by_sub[name].append((rename[a], rename[b]))
                if (a, b) in sub.delayed_edges:
                    inner_delayed.add((rename[a], rename[b]))

    edges: list[tuple[str, str]] = []
    delayed: set[tuple[str, str]] = set()

    def add(e: tuple[str, str], is_delayed: bool) -> None:
        edges.append(e)  # a duplicate here (pass-through + parallel edge) is left for validate
        if is_delayed:
            delayed.add(e)

    preds: dict[str, list[str]] = {}
    for a, b in g.edges:
        preds.setdefault(b, []).append(a)

    def sources(x: str, seen: frozenset = frozenset()) -> list[str]:
        """New nodes producing what old node ``x`` outputs (through pass-through subgraphs)."""
        res = list(outof.get(x, [x]))
        if passthrough.get(x) and x not in seen:
            for p in preds.get(x, []):
                res += [s for s in sources(p, seen | {x}) if s not in res]
        return res

    # parent edges in order; a subgraph's own edges follow the first parent edge touching it
    placed: set[str] = set()
    for a, b in g.edges:
        dl = (a, b) in g.delayed_edges
        for s in sources(a):
            for d in into.get(b, [b]):
                add((s, d), dl)
        for x in (a, b):
            if x in inner_by_sub and x not in placed:
                placed.add(x)
                for e in inner_by_sub[x]:
                    add(e, e in inner_delayed)
    for x, es in inner_by_sub.items():
        if x not in placed:
            for e in es:
                add(e, e in inner_delayed)
    out = Graph(nodes=new_nodes, edges=edges, metadata=g.metadata, nir_version=g.nir_version,
                delayed_edges=frozenset(delayed))
    return out


# ------------------------------------------------------------------------------------------------
# broadcast_params
# ------------------------------------------------------------------------------------------------


def broadcast_params(g: Graph) -> Graph:
    """Broadcast one-element neuron / Delay / Threshold / Scale parameters to the layer shape."""
    shaped = infer_shapes(g)
    out = g.copy()
    _broadcast(out, shaped, "")
    return out


def _broadcast(g: Graph, shaped: Graph, prefix: str) -> None:
    for name, n in g.nodes.items():
        sn = shaped.nodes.get(name)
        if n.type == "NIRGraph" and n.subgraph is not None and sn is not None and sn.subgraph is not None:
            _broadcast(n.subgraph, sn.subgraph, prefix + name + ".")
            continue
        keys = [k for k in _shape_params(n) if isinstance(n.params.get(k), np.ndarray)]
        if not keys:
            continue
        arrs = {k: n.params[k] for k in keys}
        big = [a for a in arrs.values() if a.size != 1]
        if big:
            layer = max(big, key=lambda a: a.size).shape
        elif sn is not None and sn.input_shape is not None:
            layer = tuple(sn.input_shape)
        else:
            continue
        total = int(np.prod(layer, dtype=np.float64)) if len(layer) else 1
        if total > MAX_DECLARED_ELEMENTS:
            raise GraphValidationError(
                [Problem(prefix + name, n.type, "shape", f"layer shape {tuple(layer)} is too large to broadcast to",
                         f"<= {MAX_DECLARED_ELEMENTS} elements", total)]
            )
        for k, a in arrs.items():
            if a.size == 1 and tuple(a.shape) != tuple(layer):
                n.params[k] = np.full(layer, a.reshape(-1)[0], dtype=np.float64)
        if sn is not None:
            n.input_shape, n.output_shape = sn.input_shape, sn.output_shape


# ------------------------------------------------------------------------------------------------
# drop_identities
# ------------------------------------------------------------------------------------------------


def is_identity(n: Node) -> bool:
    """Conservatively: does ``n`` pass its input through unchanged? (needs inferred shapes)"""
    p = n.params
    same = n.input_shape is not None and n.input_shape == n.output_shape
    try:
        if n.type == "Scale":
            s = p.get("scale")
            return same and isinstance(s, np.ndarray) and s.size > 0 and bool(np.all(s == 1.0)) and (
                s.size == 1 or tuple(s.shape) == tuple(n.input_shape)
            )
        if n.type == "Delay":
            d = p.get("delay")
            return same and isinstance(d, np.ndarray) and d.size > 0 and bool(np.all(d == 0.0))
        if n.type == "Flatten":
            return same
        if n.type in ("Affine", "Linear"):
            w = p.get("weight")
            if not (same and isinstance(w, np.ndarray) and w.ndim == 2 and w.shape[0] == w.shape[1]):
                return False
            if not np.array_equal(w, np.eye(w.shape[0])):
                return False
            if n.type == "Affine":
                b = p.get("bias")
                return isinstance(b, np.ndarray) and bool(np.all(b == 0.0))
            return True
    except Exception:
        return False
    return False


def drop_identities(g: Graph) -> Graph:
    """Remove identity nodes (see :func:`is_identity`) and rewire their edges; recursive."""
    out = infer_shapes(g)
    _drop(out)
    # restore the caller's shape annotations policy: shapes stay inferred (they are still valid)
    return out


def _drop(g: Graph) -> None:
    for n in g.nodes.values():
        if n.type == "NIRGraph" and n.subgraph is not None:
            _drop(n.subgraph)
    from .validate import _adjacency, _sccs

    succ, _ = _adjacency(g)
    cyclic: set[str] = set()  # removing an acyclic node never creates or breaks a cycle
    for comp in _sccs(list(g.nodes), succ):
        if len(comp) > 1 or comp[0] in succ.get(comp[0], []):
            cyclic.update(comp)
    # edges keyed by a sortable position; edges that replace a node take its first out-edge's place
    key: dict[tuple[str, str], tuple] = {}
    ins: dict[str, list[tuple[str, str]]] = {n: [] for n in g.nodes}
    outs: dict[str, list[tuple[str, str]]] = {n: [] for n in g.nodes}
    extra: list[tuple[str, str]] = []  # duplicates and dangling edges: kept as they are
    for i, e in enumerate(g.edges):
        if e in key or e[0] not in outs or e[1] not in ins:
            extra.append(e)
            key.setdefault(e, (i,))
            continue
        key[e] = (i,)
        outs[e[0]].append(e)
        ins[e[1]].append(e)
    for name in list(g.nodes):
        n = g.nodes[name]
        if name in cyclic or not is_identity(n):
            continue
        my_in, my_out = ins[name], outs[name]
        if any(e in g.delayed_edges for e in my_in + my_out) or any(name in e for e in extra):
            continue
        new = [(a, d) for a, _ in my_in for _, d in my_out]
        if len(set(new)) != len(new) or any(e in key and e not in my_in and e not in my_out for e in new):
            continue  # would add a signal twice
        base = min((key[e] for e in my_out), default=max((key[e] for e in my_in), default=(len(g.edges),)))
        for e in my_in + my_out:
            del key[e]
            if e in outs.get(e[0], []):
                outs[e[0]].remove(e)
            if e in ins.get(e[1], []):
                ins[e[1]].remove(e)
        for j, e in enumerate(new):
            key[e] = base + (j,)
            outs[e[0]].append(e)
            ins[e[1]].append(e)
        del g.nodes[name], ins[name], outs[name]
    kept = sorted(key.items(), key=lambda kv: kv[1])
    g.edges = [e for e, _ in kept] + [e for e in extra if e not in key]


# ------------------------------------------------------------------------------------------------
# traversal: back edges, topological order, loops
# ------------------------------------------------------------------------------------------------


def back_edges(g: Graph, rotate: bool = True) -> list[tuple[str, str]]:
    """The one-step delayed edges: one per cycle found by a DFS from the Inputs (in order;
    successors in edge order), then from any node not reached yet (in node order).

    The delay sits on the edge LEAVING the first stateful node of the cycle (for
    ``fc1 -> lif <-> w_rec`` that is ``lif -> w_rec``): the recurrent weights then read the
    previous step's spikes and their bias is applied from step 0, as snnTorch's RLeaky /
    RSynaptic and nirtorch compute it. If that choice would leave a cycle (overlapping loops),
    the plain DFS back edges are used instead. ``rotate=False`` gives the plain DFS back edges
    (used for the canonical node order, so that a loop reads ``lif -> w_rec``)."""
    succ: dict[str, list[str]] = {n: [] for n in g.nodes}
    for a, b in g.edges:
        if a in succ and b in succ:
            succ[a].append(b)
    state: dict[str, int] = {}  # 1 on stack, 2 done
    backs: list[tuple[str, str]] = []
    rotated: list[tuple[str, str]] = []
    backset: set[tuple[str, str]] = set()
    roots = [n for n, x in g.nodes.items() if x.type == "Input"] + list(g.nodes)
    for r in roots:
        if r in state:
            continue
        state[r] = 1
        work = [(r, 0)]
        while work:
            v, i = work[-1]
            if i < len(succ[v]):
                work[-1] = (v, i + 1)
                w = succ[v][i]
                s = state.get(w)
                if s is None:
                    state[w] = 1
                    work.append((w, 0))
                elif s == 1 and (v, w) not in backset:
                    backset.add((v, w))
                    backs.append((v, w))
                    path = [n for n, _ in work]
                    cycle = path[path.index(w):] + [w]
                    rot = _feedback_edge(g, cycle, succ) or (v, w)
                    if rot not in rotated:
                        rotated.append(rot)
            else:
                state[v] = 2
                work.pop()
    if not rotate or (rotated != backs and not _acyclic_without(g, set(rotated))):
        return backs
    return rotated


def _feedback_edge(g: Graph, cycle: list[str], succ: dict[str, list[str]]) -> tuple[str, str] | None:
    """In ``cycle`` (c0 .. ck, c0; ck -> c0 is the DFS back edge), the first edge ci -> ci+1
    leaving a stateful node such that the nodes after it, ci+1 .. ck, serve only the feedback:
    each is fed only from inside that segment (or ci) and feeds only inside it (or c0). Moving
    the delay there leaves every forward path undelayed."""
    pred: dict[str, set[str]] = {}
    for a, b in g.edges:
        pred.setdefault(b, set()).add(a)
    k = len(cycle) - 1  # cycle[k] == cycle[0]
    for i in range(k):
        a = cycle[i]
        if not _stateful(g.nodes[a]):
            continue
        seg = cycle[i + 1 : k]
        segset = set(seg)
        if all(pred.get(n, set()) <= segset | {a} and set(succ[n]) <= segset | {cycle[0]} for n in seg):
            return (a, cycle[i + 1])
    return None


def _stateful(n: Node) -> bool:
    if n.type == "NIRGraph" and n.subgraph is not None:
        return any(_stateful(m) for m in n.subgraph.nodes.values())
    return n.type in STATEFUL_TYPES


def evaluation_order(g: Graph, delayed: set[tuple[str, str]] | None = None) -> list[str]:
    """Order in which one time step evaluates the nodes: Kahn's algorithm on the edges that are
    not delayed (``g.delayed_edges`` unless given), ties by node order. A cycle left without a
    delayed edge raises UnsupportedError (an algebraic loop)."""
    delayed = set(g.delayed_edges) if delayed is None else delayed
    indeg = {k: 0 for k in g.nodes}
    succ: dict[str, list[str]] = {k: [] for k in g.nodes}
    for s, d in g.edges:
        if s not in g.nodes or d not in g.nodes:
            raise UnsupportedError(f"edge {s} -> {d} refers to a node that does not exist")
        if (s, d) in delayed:
            continue
        indeg[d] += 1
        succ[s].append(d)
    pos = {k: i for i, k in enumerate(g.nodes)}
    order: list[str] = []
    heap = [(pos[k], k) for k, v in indeg.items() if v == 0]
    heapq.heapify(heap)
    while heap:
        _, k = heapq.heappop(heap)
        order.append(k)
        for d in succ[k]:
            indeg[d] -= 1
            if indeg[d] == 0:
                heapq.heappush(heap, (pos[d], d))
    if len(order) != len(g.nodes):
        stuck = [k for k in g.nodes if k not in set(order)]
        raise UnsupportedError(
            "algebraic loop: a cycle without a one-step delayed edge through " + ", ".join(stuck)
        )
    return order


def _acyclic_without(g: Graph, removed: set[tuple[str, str]]) -> bool:
    try:
        evaluation_order(g, removed)
    except UnsupportedError:
        return False
    return True


def topo_sort(g: Graph) -> Graph:
    """Canonical node and edge order (see the module docstring); recursive."""
    out = g.copy()
    _topo(out)
    return out


def _topo(g: Graph) -> None:
    for n in g.nodes.values():
        if n.type == "NIRGraph" and n.subgraph is not None:
            _topo(n.subgraph)
    names = list(g.nodes)
    pos = {n: i for i, n in enumerate(names)}
    backs = set(back_edges(g, rotate=False))
    inputs = [n for n in names if g.nodes[n].type == "Input"]
    outputs = [n for n in names if g.nodes[n].type == "Output"]
    middle = [n for n in names if n not in set(inputs) | set(outputs)]
    mid = set(middle)
    indeg = {n: 0 for n in middle}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in dict.fromkeys(g.edges):
        if a in pos and b in pos and (a, b) not in backs:
            succ[a].append(b)
            if b in mid and a in mid:
                indeg[b] += 1
    heap = [(pos[n], n) for n in middle if indeg[n] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, v = heapq.heappop(heap)
        order.append(v)
        for w in succ[v]:
            if w in mid:
                indeg[w] -= 1
                if indeg[w] == 0:
                    heapq.heappush(heap, (pos[w], w))
    if len(order) != len(middle):  # cannot happen without back edges, but stay total
        done = set(order)
        order += [n for n in middle if n not in done]
    final = inputs + order + outputs
    fpos = {n: i for i, n in enumerate(final)}
    g.nodes = {n: g.nodes[n] for n in final}
    big = len(final) + 1
    g.edges = sorted(g.edges, key=lambda e: (fpos.get(e[0], big), fpos.get(e[1], big)))


def recurrent_loops(g: Graph) -> list[list[str]]:
    """Every elementary cycle (node names, starting at the cycle's earliest node in graph order),
    nested subgraphs included with dotted names; at most 10000 cycles are listed."""
    out: list[list[str]] = []
    _loops(g, "", out)
    return out


def _loops(g: Graph, prefix: str, out: list[list[str]], limit: int = 10_000) -> None:
    from .validate import _sccs

    names = list(g.nodes)
    pos = {n: i for i, n in enumerate(names)}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in g.edges:
        if a in pos and b in pos and b not in succ[a]:
            succ[a].append(b)
    found: list[list[str]] = [[n] for n in names if n in succ[n]]  # self loops
    # Johnson's algorithm (iterative): every elementary cycle once, in O((N + E)(C + 1))
    def comps(nodes: set[str]) -> list[list[str]]:
        sub = {n: [w for w in succ[n] if w in nodes and w != n] for n in nodes}
        return [c for c in _sccs([n for n in names if n in nodes], sub) if len(c) > 1]

    work = comps(set(names))
    while work and len(found) < limit:
        comp = work.pop()
        cset = set(comp)
        start = min(comp, key=pos.__getitem__)
        nbrs = {n: [w for w in succ[n] if w in cset and w != n] for n in comp}
        path = [start]
        blocked = {start}
        closed: set[str] = set()
        B: dict[str, set[str]] = {n: set() for n in comp}
        stack = [(start, list(reversed(nbrs[start])))]
        while stack and len(found) < limit:
            v, todo = stack[-1]
            if todo:
                w = todo.pop()
                if w == start:
                    found.append(list(path))
                    closed.update(path)
                elif w not in blocked:
                    path.append(w)
                    stack.append((w, list(reversed(nbrs[w]))))
                    closed.discard(w)
                    blocked.add(w)
                    continue
            if not todo:
                if v in closed:
                    unblock = [v]
                    while unblock:
                        x = unblock.pop()
                        if x in blocked:
                            blocked.discard(x)
                            unblock.extend(B[x])
                            B[x].clear()
                else:
                    for w in nbrs[v]:
                        B[w].add(v)
                stack.pop()
                path.pop()
        work.extend(comps(cset - {start}))
    found.sort(key=lambda c: [pos[x] for x in c])
    out.extend([prefix + x for x in c] for c in found[: max(0, limit - len(out))])
    for name, n in g.nodes.items():
        if n.type == "NIRGraph" and n.subgraph is not None:
            _loops(n.subgraph, prefix + name + ".", out, limit)


def mark_recurrent(g: Graph) -> Graph:
    """Set ``delayed_edges`` to the DFS back edges (see :func:`back_edges`); recursive."""
    out = g.copy()
    _mark(out)
    return out


def _mark(g: Graph) -> None:
    for n in g.nodes.values():
        if n.type == "NIRGraph" and n.subgraph is not None:
            _mark(n.subgraph)
    g.delayed_edges = frozenset(back_edges(g))


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------

PASSES: dict[str, Callable[[Graph], Graph]] = {
    "infer_shapes": infer_shapes,
    "inline_subgraphs": inline_subgraphs,
    "broadcast_params": broadcast_params,
    "drop_identities": drop_identities,
    "topo_sort": topo_sort,
    "mark_recurrent": mark_recurrent,
}

PIPELINE: tuple[str, ...] = (
    "infer_shapes",
    "inline_subgraphs",
    "broadcast_params",
    "drop_identities",
    "infer_shapes",
    "topo_sort",
    "mark_recurrent",
)


def normalize(g: Graph) -> Graph:
    """Validate ``g`` (raising :class:`GraphValidationError`), then run :data:`PIPELINE`."""
    check(g)
    for name in PIPELINE:
        g = PASSES[name](g)
    return g
