"""Shape inference and validation of nirdeploy graphs.

* :func:`infer_shapes` returns a NEW graph whose nodes carry ``input_shape`` / ``output_shape``
  (tuples of ints, no batch dim), recursively. It never raises on a bad graph: what cannot be
  inferred stays ``None`` and :func:`validate` says why.
* :func:`validate` returns every problem it finds (a list of :class:`~nirdeploy.errors.Problem`,
  empty when the graph is fine); :func:`check` raises them as one
  :class:`~nirdeploy.errors.GraphValidationError`.

Shape rules (PyTorch semantics, NIR's batch-less shapes):

* ``Input`` / ``Output``: their ``shape``; Affine / Linear: in = ``weight.shape[:-2] +
  (weight.shape[-1],)``, out = ``weight.shape[:-2] + (weight.shape[-2],)``;
* neurons, ``Delay``, ``Threshold``, ``Scale``: the shape of their largest parameter; when every
  parameter is a scalar (0-d or one element) the shape flows in from the predecessors;
* ``Conv1d`` / ``Conv2d``: ``(Cout, *spatial)`` with ``floor((n + 2p - d (k - 1) - 1) / s) + 1``
  per dim (non-square kernels, ``'same'`` (stride 1 only, as in PyTorch), ``'valid'``), input
  channels ``weight.shape[1] * groups``; spatial input from ``input_shape`` if declared,
  else from the predecessor;
* ``SumPool2d`` / ``AvgPool2d``: ``floor((n + 2p - k) / s) + 1``, channels kept;
* ``Flatten``: ``start_dim`` / ``end_dim`` applied to the batch-less shape (NIR's default
  ``start_dim=1`` turns ``[C, H, W]`` into ``[C, H*W]``), negative dims count from the end;
* a nested ``NIRGraph``: its Input's shape in, its Output's shape out;
* the non-NIR layers of ``ir.NON_NIR_TYPES``: ``MaxPool1d`` / ``MaxPool2d`` as PyTorch pools
  (``floor((n + 2p - d (k - 1) - 1) / s) + 1``, or ``ceil`` with ``ceil_mode`` where the last
  window starts inside the input or its left padding); ``BatchNorm1d`` / ``BatchNorm2d`` and
  ``Dropout`` keep their input's shape (BatchNorm's channel count, dim 0, must equal its
  parameters' length).

Shapes flow along edges; several edges into one node are summed, so each must carry the node's
input shape. Nodes are visited per strongly connected component in topological order, and
inside a cycle the shapes coming from outside the cycle are used first.

Checks made by :func:`validate` (each Problem names node, type, field, expected, actual;
nested graphs use dotted names such as ``lif1.w_rec``):

* graph: no nodes; no ``Input``; no ``Output``; a nested NIRGraph with edges must have exactly
  one Input and one Output;
* names: empty, or containing ``'/'`` (HDF5 cannot store it);
* edges: naming a missing node (dangling); duplicates; into an ``Input`` or out of an
  ``Output``; ``delayed_edges`` that are not edges;
* node type unknown (neither a NIR 1.0 primitive nor in ``ir.NON_NIR_TYPES``); required parameter missing; parameter of the wrong kind (strings,
  complex, objects, non-integers where integers go);
* NaN or inf in any numeric parameter; time constants (``NODE_TYPES[t].time_constants``)
  <= 0; negative ``Delay``;
* parameter shapes: all non-scalar neuron parameters of one node alike; Affine/Linear weight
  at least 2-D; Affine bias shape == output shape; Conv weight 3-D/4-D, ``groups`` divides
  ``Cout``, bias ``(Cout,)``, stride/dilation >= 1, padding >= 0, ``'same'`` only with
  stride 1; pool kernel/stride >= 1, padding >= 0 (MaxPool: also dilation >= 1, padding at most
  half the kernel as in PyTorch, ceil_mode 0 or 1); BatchNorm parameters 1-D of one length,
  ``running_var`` >= 0, ``eps`` > 0; Dropout ``p`` in [0, 1]; declared shapes (Input, Output, Conv and
  Flatten ``input_shape``) 1-D, all dims >= 1 and at most :data:`MAX_DECLARED_ELEMENTS`
  elements (checked without allocating anything);
* shapes: an edge whose source's output shape differs from the destination's input shape;
  Conv input channels; a Conv/pool output dim < 1; Flatten dims out of range; a node whose
  shape cannot be inferred;
* algebraic loops: a cycle made only of stateless nodes (``ir.STATEFUL_TYPES``; a nested
  NIRGraph is stateful when it contains a stateful node). ``delayed_edges`` do not excuse a
  stateless cycle: NIR itself has no delayed edge.

Warnings (returned only with ``validate(g, include_warnings=True)`` or by
:func:`graph_warnings`; :func:`check` ignores them): nodes not reachable from any ``Input``,
and nodes from which no ``Output`` is reachable. Their messages start with ``"warning:"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GraphValidationError, Problem
from .ir import KNOWN_TYPES, STATEFUL_TYPES, Graph, Node

__all__ = [
    "PARAM_KINDS",
    "MAX_DECLARED_ELEMENTS",
    "MAX_PROBLEMS",
    "infer_shapes",
    "validate",
    "check",
    "graph_warnings",
    "node_output_shape",
    "intrinsic_input_shape",
    "conv_output_size",
    "pool_output_size",
    "maxpool_output_size",
    "flatten_shape",
    "is_stateful",
    "ShapeError",
]

#: the largest tensor (elements) a declared shape may describe
MAX_DECLARED_ELEMENTS = 100_000_000

#: validate() lists at most this many problems (then one "... and N more")
MAX_PROBLEMS = 25

# how each parameter is represented in the IR: "array" float64 ndarray; "int" Python int;
# "ints" tuple of ints, one per spatial dim; "shape" tuple of ints; "padding" ints or a string
_ARR = "array"
PARAM_KINDS: dict[str, dict[str, str]] = {
    "Input": {"shape": "shape"},
    "Output": {"shape": "shape"},
    "NIRGraph": {},
    "Affine": {"weight": _ARR, "bias": _ARR},
    "Linear": {"weight": _ARR},
    "Scale": {"scale": _ARR},
    "Conv1d": {
        "weight": _ARR,
        "bias": _ARR,
        "stride": "ints",
        "padding": "padding",
        "dilation": "ints",
        "groups": "int",
        "input_shape": "shape",
    },
    "SumPool2d": {"kernel_size": "ints", "stride": "ints", "padding": "ints"},
    "Flatten": {"start_dim": "int", "end_dim": "int", "input_shape": "shape"},
}
PARAM_KINDS["Conv2d"] = dict(PARAM_KINDS["Conv1d"])
PARAM_KINDS["AvgPool2d"] = dict(PARAM_KINDS["SumPool2d"])
# the non-NIR layers (ir.NON_NIR_TYPES); BatchNorm and Dropout hold arrays (the loop below)
PARAM_KINDS["MaxPool2d"] = {"kernel_size": "ints", "stride": "ints", "padding": "ints", "dilation": "ints", "ceil_mode": "int"}
PARAM_KINDS["MaxPool1d"] = dict(PARAM_KINDS["MaxPool2d"])
for _t, _s in KNOWN_TYPES.items():
    if _t not in PARAM_KINDS:
        PARAM_KINDS[_t] = {k: _ARR for k in (*_s.required, *_s.optional)}

WARNING_PREFIX = "warning: "


class ShapeError(Exception):
    """Why a node's output shape cannot be computed."""

    def __init__(self, field: str, message: str, expected: Any = None, actual: Any = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.expected = expected
        self.actual = actual


# ================================================================================================
# shape arithmetic
# ================================================================================================


def conv_output_size(n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """PyTorch's output length of a convolution along one dim."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def pool_output_size(n: int, k: int, stride: int, padding: int = 0) -> int:
    """PyTorch's output length of a pooling window along one dim (ceil_mode=False)."""
    return (n + 2 * padding - k) // stride + 1


def maxpool_output_size(n: int, k: int, stride: int, padding: int = 0, dilation: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's output length of a max pooling window along one dim (``MaxPool1d/2d``)."""
    span = n + 2 * padding - dilation * (k - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1  # floor division rounds down, as PyTorch's div_rtn
    if ceil_mode and (out - 1) * stride >= n + padding:  # the last window must start inside the input or its left padding
        out -= 1
    return out


def flatten_shape(shape: tuple[int, ...], start_dim: int, end_dim: int) -> tuple[int, ...]:
    """``torch.flatten`` on a batch-less shape; raises ValueError on bad dims."""
    nd = len(shape)
    if nd == 0:
        return (1,)
    s = start_dim + nd if start_dim < 0 else start_dim
    e = end_dim + nd if end_dim < 0 else end_dim
    if not (0 <= s < nd) or not (0 <= e < nd):
        raise ValueError(
            f"dims ({start_dim}, {end_dim}) out of range for a {nd}-D input {tuple(shape)} "
            "(NIR shapes have no batch dim: dim 0 is the first non-batch dim)"
        )
    if s > e:
        raise ValueError(f"start_dim {start_dim} comes after end_dim {end_dim} for a {nd}-D input")
    return tuple(shape[:s]) + (math.prod(shape[s : e + 1]),) + tuple(shape[e + 1 :])


def _is_int_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in x)


def _valid_shape(x: Any) -> bool:
    return (
        _is_int_tuple(x)
        and len(x) >= 1
        and all(v >= 1 for v in x)
        and math.prod(int(v) for v in x) <= MAX_DECLARED_ELEMENTS
    )


def _arr(node: Node, k: str) -> np.ndarray | None:
    v = node.params.get(k)
    return v if isinstance(v, np.ndarray) else None


def _shape_params(node: Node) -> list[str]:
    if node.type == "Scale":
        return ["scale"]
    spec = KNOWN_TYPES.get(node.type)
    return list(spec.neuron_params) if spec else []


def intrinsic_input_shape(node: Node) -> tuple[int, ...] | None:
    """The input shape a node's own parameters fix (None when it comes from predecessors)."""
    t = node.type
    try:
        if t in ("Input", "Output"):
            s = node.params.get("shape")
            return tuple(int(v) for v in s) if _valid_shape(s) else None
        if t in ("Affine", "Linear"):
            w = _arr(node, "weight")
            if w is None or w.ndim < 2:
                return None
            return tuple(w.shape[:-2]) + (int(w.shape[-1]),)
        if t in ("Conv1d", "Conv2d"):
            w = _arr(node, "weight")
            ins = node.params.get("input_shape")
            nd = 1 if t == "Conv1d" else 2
            g = node.params.get("groups", 1)
            if w is None or w.ndim != nd + 2 or not _valid_shape(ins) or len(ins) != nd:
                return None
            if not isinstance(g, (int, np.integer)) or g < 1:
                return None
            return (int(w.shape[1]) * int(g),) + tuple(int(v) for v in ins)
        if t == "Flatten":
            s = node.params.get("input_shape")
            return tuple(int(v) for v in s) if _valid_shape(s) else None
        if t == "NIRGraph":
            sub = node.subgraph
            if sub is None:
                return None
            ins = sub.inputs
            if len(ins) != 1:
                return None
            return ins[0].output_shape
        names = _shape_params(node)
        if names:
            arrs = [a for a in (_arr(node, k) for k in names) if a is not None]
            big = [a for a in arrs if a.size != 1]
            if big:
                return tuple(int(v) for v in max(big, key=lambda a: a.size).shape)
            return None
    except Exception:
        return None
    return None


def _fallback_input_shape(node: Node) -> tuple[int, ...] | None:
    """For a node with only one-element parameters and no known predecessor: their shape."""
    names = _shape_params(node)
    arrs = [a for a in (_arr(node, k) for k in names) if a is not None and a.ndim >= 1]
    if arrs:
        return tuple(int(v) for v in max(arrs, key=lambda a: a.ndim).shape)
    return None


def _spatial(node: Node, k: str, nd: int, lo: int) -> tuple[int, ...]:
    v = node.params.get(k)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v),) * nd
    if not _is_int_tuple(v):
        raise ShapeError(k, f"{k} must be integers", f"{nd} integers", v)
    if len(v) == 1 and nd > 1:
        v = v * nd
    if len(v) != nd:
        raise ShapeError(k, f"{k} must have {nd} entries", nd, len(v))
    if any(x < lo for x in v):
        raise ShapeError(k, f"{k} must be >= {lo}", f">= {lo}", list(v))
    return tuple(int(x) for x in v)


def node_output_shape(node: Node, in_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """Output shape of ``node`` for input ``in_shape``; raises :class:`ShapeError` with the reason."""
    t = node.type
    if t == "Input":
        s = intrinsic_input_shape(node)
        return s if s is not None else in_shape
    if t == "Output":
        return in_shape if in_shape is not None else intrinsic_input_shape(node)
    if t == "NIRGraph":
        sub = node.subgraph
        if not isinstance(sub, Graph):
            raise ShapeError("subgraph", "NIRGraph node has no subgraph")
        outs = sub.outputs
        if len(outs) != 1:
            raise ShapeError("subgraph", "a nested NIRGraph needs exactly one Output", 1, len(outs))
        return outs[0].input_shape
    if in_shape is None:
        return None
    if t in ("Affine", "Linear"):
        w = _arr(node, "weight")
        if w is None or w.ndim < 2:
            raise ShapeError("weight", "weight must be an array with at least 2 dims", ">= 2", None if w is None else w.ndim)
        return tuple(int(v) for v in w.shape[:-2]) + (int(w.shape[-2]),)
    if t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        w = _arr(node, "weight")
        if w is None or w.ndim != nd + 2:
            raise ShapeError("weight", f"{t} weight must be {nd + 2}-D (Cout, Cin/groups, *kernel)", nd + 2, None if w is None else w.ndim)
        g = node.params.get("groups", 1)
        if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1:
            raise ShapeError("groups", "groups must be an integer >= 1", ">= 1", g)
        if len(in_shape) != nd + 1:
            raise ShapeError("input", f"{t} input must be (C, {'L' if nd == 1 else 'H, W'})", nd + 1, tuple(in_shape))
        cin = int(w.shape[1]) * int(g)
        if in_shape[0] != cin:
            raise ShapeError("input", f"input channels must be weight.shape[1] * groups = {cin}", cin, int(in_shape[0]))
        stride = _spatial(node, "stride", nd, 1)
        dil = _spatial(node, "dilation", nd, 1)
        pad = node.params.get("padding", 0)
        kernel = tuple(int(v) for v in w.shape[2:])
        if isinstance(pad, str):
            if pad == "same":
                if any(s != 1 for s in stride):
                    raise ShapeError("padding", "padding='same' needs stride 1 (as in PyTorch)", 1, list(stride))
                return (int(w.shape[0]),) + tuple(int(v) for v in in_shape[1:])
            if pad != "valid":
                raise ShapeError("padding", "padding must be 'same', 'valid' or integers", "'same'|'valid'|ints", pad)
            pad = (0,) * nd
        else:
            pad = _spatial(node, "padding", nd, 0)
        out = tuple(
            conv_output_size(int(n), k, s, p, d) for n, k, s, p, d in zip(in_shape[1:], kernel, stride, pad, dil)
        )
        if any(o < 1 for o in out):
            raise ShapeError("weight", f"kernel {kernel} (dilation {dil}) does not fit the padded input {tuple(in_shape[1:])}", ">= 1", out)
        return (int(w.shape[0]),) + out
    if t in ("SumPool2d", "AvgPool2d"):
        if len(in_shape) != 3:
            raise ShapeError("input", f"{t} input must be (C, H, W)", 3, tuple(in_shape))
        k = _spatial(node, "kernel_size", 2, 1)
        s = _spatial(node, "stride", 2, 1)
        p = _spatial(node, "padding", 2, 0)
        out = tuple(pool_output_size(int(n), kk, ss, pp) for n, kk, ss, pp in zip(in_shape[1:], k, s, p))
        if any(o < 1 for o in out):
            raise ShapeError("kernel_size", f"kernel {k} does not fit the padded input {tuple(in_shape[1:])}", ">= 1", out)
        return (int(in_shape[0]),) + out
    if t == "Flatten":
        sd, ed = node.params.get("start_dim", 1), node.params.get("end_dim", -1)
        for k, v in (("start_dim", sd), ("end_dim", ed)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ShapeError(k, f"{k} must be an integer", "int", v)
        try:
            return flatten_shape(tuple(in_shape), int(sd), int(ed))
        except ValueError as e:
            raise ShapeError("start_dim", str(e), None, (sd, ed)) from None
    if t in ("MaxPool1d", "MaxPool2d"):
        nd = 1 if t == "MaxPool1d" else 2
        if len(in_shape) != nd + 1:
            raise ShapeError("input", f"{t} input must be (C, {'L' if nd == 1 else 'H, W'})", nd + 1, tuple(in_shape))
        k = _spatial(node, "kernel_size", nd, 1)
        s = _spatial(node, "stride", nd, 1) if node.params.get("stride") is not None else k
        p = _spatial(node, "padding", nd, 0)
        d = _spatial(node, "dilation", nd, 1)
        cm = node.params.get("ceil_mode", 0)
        out = tuple(maxpool_output_size(int(n), kk, ss, pp, dd, bool(cm)) for n, kk, ss, pp, dd in zip(in_shape[1:], k, s, p, d))
        if any(o < 1 for o in out):
            raise ShapeError("kernel_size", f"kernel {k} (dilation {d}) does not fit the padded input {tuple(in_shape[1:])}", ">= 1", out)
        return (int(in_shape[0]),) + out
    if t in ("BatchNorm1d", "BatchNorm2d"):
        ok_dims = (1, 2) if t == "BatchNorm1d" else (3,)
        if len(in_shape) not in ok_dims:
            raise ShapeError("input", f"{t} input must be {'(C,) or (C, L)' if t == 'BatchNorm1d' else '(C, H, W)'}",
                             " or ".join(map(str, ok_dims)), tuple(in_shape))
        for k in ("weight", "bias", "running_mean", "running_var"):
            a = _arr(node, k)
            if a is not None and a.ndim == 1 and a.size != in_shape[0]:
                raise ShapeError(k, f"{k} has {a.size} entries but the input has {in_shape[0]} channels", int(in_shape[0]), a.size)
        return tuple(in_shape)
    # elementwise: neurons, Delay, Threshold, Scale, Dropout
    return tuple(in_shape)


# ================================================================================================
# graph traversal helpers
# ================================================================================================


def _sccs(names: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan (iterative). Components come out in reverse topological order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    order = {n: k for k, n in enumerate(names)}
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, i = work[-1]
            nxt = succ.get(v, [])
            if i < len(nxt):
                work[-1] = (v, i + 1)
                w = nxt[i]
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    comp.sort(key=lambda n: order.get(n, 0))
                    out.append(comp)
    return out


def _adjacency(g: Graph, *, restrict: set[str] | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    keep = set(g.nodes) if restrict is None else restrict
    succ: dict[str, list[str]] = {n: [] for n in g.nodes if n in keep}
    pred: dict[str, list[str]] = {n: [] for n in g.nodes if n in keep}
    seen: set[tuple[str, str]] = set()
    for e in g.edges:
        try:
            a, b = e
            hash(a), hash(b)
        except Exception:
            continue
        if a in keep and b in keep and (a, b) not in seen:
            seen.add((a, b))
            succ[a].append(b)
            pred[b].append(a)
    return succ, pred


def is_stateful(node: Node, _depth: int = 0) -> bool:
    """Holds state across steps: a stateful type, or a subgraph containing one."""
    if node.type in STATEFUL_TYPES:
        return True
    if node.type == "NIRGraph" and isinstance(node.subgraph, Graph) and _depth < 64:
        return any(is_stateful(n, _depth + 1) for n in node.subgraph.nodes.values())
    return False


# ================================================================================================
# shape inference
# ================================================================================================


def infer_shapes(g: Graph) -> Graph:
    """A copy of ``g`` with every inferable ``input_shape`` / ``output_shape`` filled in."""
    out = g.copy()
    _infer_in_place(out, 0)
    return out


def _infer_in_place(g: Graph, depth: int) -> None:
    if not isinstance(g, Graph) or not isinstance(g.nodes, dict):
        return
    for n in g.nodes.values():
        if not isinstance(n, Node):
            continue
        n.input_shape = None
        n.output_shape = None
        if n.type == "NIRGraph" and isinstance(n.subgraph, Graph) and depth < 64:
            _infer_in_place(n.subgraph, depth + 1)
    names = [k for k, v in g.nodes.items() if isinstance(v, Node)]
    succ, pred = _adjacency(Graph(nodes={k: g.nodes[k] for k in names}, edges=g.edges if isinstance(g.edges, list) else []))

    def compute_out(n: Node) -> bool:
        if n.output_shape is not None:
            return False
        try:
            o = node_output_shape(n, n.input_shape)
        except ShapeError:
            return False
        except Exception:
            return False
        if o is None:
            return False
        n.output_shape = tuple(int(v) for v in o)
        return True

    for comp in reversed(_sccs(names, succ)):
        members = set(comp)
        for name in comp:
            n = g.nodes[name]
            n.input_shape = intrinsic_input_shape(n)
        # shapes from outside the component first
        for name in comp:
            n = g.nodes[name]
            if n.input_shape is None:
                for p in pred[name]:
                    if p not in members and g.nodes[p].output_shape is not None:
                        n.input_shape = g.nodes[p].output_shape
                        break
            compute_out(n)
        for _ in range(len(comp) * 2 + 2):
            changed = True
            while changed:
                changed = False
                for name in comp:
                    n = g.nodes[name]
                    if n.input_shape is None:
                        for p in pred[name]:
                            if g.nodes[p].output_shape is not None:
                                n.input_shape = g.nodes[p].output_shape
                                changed = True
                                break
                    if n.input_shape is not None or n.type == "NIRGraph":
                        changed |= compute_out(n)
            # nodes with only one-element parameters and no known input: use the parameter shape
            fell_back = False
            for name in comp:
                n = g.nodes[name]
                if n.input_shape is None:
                    fb = _fallback_input_shape(n)
                    if fb is not None:
                        n.input_shape = fb
                        compute_out(n)
                        fell_back = True
                        break
            if not fell_back:
                break


# ================================================================================================
# validation
# ================================================================================================


def check(g: Graph) -> list[Problem]:
    """Raise :class:`GraphValidationError` with all errors; return the warnings otherwise."""
    probs = validate(g, include_warnings=True)
    errors = [p for p in probs if not p.message.startswith(WARNING_PREFIX)]
    if errors:
        raise GraphValidationError(errors)
    return probs


def graph_warnings(g: Graph) -> list[Problem]:
    """Only the warning-level findings (unreachable nodes, dead ends)."""
    return [p for p in validate(g, include_warnings=True) if p.message.startswith(WARNING_PREFIX)]


def validate(g: Graph, *, include_warnings: bool = False) -> list[Problem]:
    """Every problem found in ``g`` (shapes are inferred on a copy first)."""
    try:
        shaped = infer_shapes(g)
    except Exception as e:  # pragma: no cover - inference is defensive
        return [Problem("", "NIRGraph", "", f"shape inference failed: {e}")]
    probs: list[Problem] = []
    _validate_graph(shaped, "", probs, 0)
    if not include_warnings:
        probs = [p for p in probs if not p.message.startswith(WARNING_PREFIX)]
    if len(probs) > MAX_PROBLEMS:
        extra = len(probs) - MAX_PROBLEMS
        probs = probs[:MAX_PROBLEMS] + [Problem("", "NIRGraph", "", f"... and {extra} more problems (not listed)")]
    return probs


def _fmt(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _validate_graph(g: Graph, prefix: str, probs: list[Problem], depth: int) -> None:
    gname = prefix.rstrip(".")
    gtype = "NIRGraph"
    if depth > 64:
        probs.append(Problem(gname, gtype, "", "subgraphs nested too deeply"))
        return
    if not isinstance(g.nodes, dict) or not isinstance(g.edges, (list, tuple)):
        probs.append(Problem(gname, gtype, "", "a graph needs a dict of nodes and a list of edges"))
        return
    if not g.nodes:
        probs.append(Problem(gname, gtype, "nodes", "empty graph: it has no nodes", ">= 1 node", 0))
        return
    ins = [n for n in g.nodes.values() if isinstance(n, Node) and n.type == "Input"]
    outs = [n for n in g.nodes.values() if isinstance(n, Node) and n.type == "Output"]
    if not ins:
        probs.append(Problem(gname, gtype, "nodes", "graph has no Input node", ">= 1 Input", 0))
    if not outs:
        probs.append(Problem(gname, gtype, "nodes", "graph has no Output node", ">= 1 Output", 0))

    # names and per-node checks
    for name, n in g.nodes.items():
        full = _fmt(prefix, str(name))
        if not isinstance(n, Node):
            probs.append(Problem(full, "", "", f"not a Node: {type(n).__name__}"))
            continue
        if not isinstance(name, str) or name == "":
            probs.append(Problem(full, n.type, "name", "node names must be non-empty strings", "non-empty str", repr(name)))
        elif "/" in name:
            probs.append(
                Problem(full, n.type, "name", "node name contains '/', which HDF5 (the NIR file format) cannot store", "no '/'", name)
            )
        try:
            _check_node(n, full, probs, depth)
        except Exception as e:  # never crash on garbage
            probs.append(Problem(full, str(n.type), "", f"cannot check node: {type(e).__name__}: {e}"))
    # from here on only real nodes take part (the others were reported above)
    g = Graph(nodes={k: v for k, v in g.nodes.items() if isinstance(v, Node)}, edges=list(g.edges),
              delayed_edges=g.delayed_edges if isinstance(g.delayed_edges, (set, frozenset)) else frozenset())

    # edges
    seen: set[tuple[str, str]] = set()
    good_edges: list[tuple[str, str]] = []
    counts: dict[tuple[str, str], int] = {}
    for e in g.edges:
        try:
            counts[tuple(e)] = counts.get(tuple(e), 0) + 1
        except TypeError:
            pass
    for e in g.edges:
        try:
            a, b = e
            ok = isinstance(a, str) and isinstance(b, str)
        except Exception:
            ok = False
        if not ok:
            probs.append(Problem(gname, gtype, "edges", "an edge must be a (source, destination) pair of node names", "(str, str)", repr(e)))
            continue
        missing = [x for x in (a, b) if x not in g.nodes]
        for x in missing:
            # located at the edge's existing end, or at the graph that lists it: never at a path
            # that does not exist
            other = b if x == a else a
            where = _fmt(prefix, other) if other in g.nodes else (gname or "graph")
            wtype = _type(g, other) if other in g.nodes else gtype
            inside = f" in subgraph {gname!r}" if gname else ""
            probs.append(
                Problem(
                    where, wtype, "edges", f"dangling edge ({a!r}, {b!r}){inside}: node {x!r} does not exist", "an existing node", x
                )
            )
        if (a, b) in seen:
            if counts.get((a, b), 0) > 0:
                k = counts[(a, b)]
                counts[(a, b)] = 0  # report each duplicated edge once
                probs.append(Problem(_fmt(prefix, b), _type(g, b), "edges", f"duplicate edge ({a!r}, {b!r}): listed {k} times", 1, k))
            continue
        seen.add((a, b))
        if missing:
            continue
        good_edges.append((a, b))
        if g.nodes[b].type == "Input":
            probs.append(Problem(_fmt(prefix, b), "Input", "edges", f"edge ({a!r}, {b!r}) goes into an Input node"))
        if g.nodes[a].type == "Output":
            probs.append(Problem(_fmt(prefix, a), "Output", "edges", f"edge ({a!r}, {b!r}) leaves an Output node"))
    for e in sorted(g.delayed_edges, key=repr) if g.delayed_edges else []:
        if tuple(e) not in seen:
            probs.append(Problem(gname, gtype, "delayed_edges", f"delayed edge {tuple(e)!r} is not an edge of the graph"))

    # shapes along edges
    for a, b in good_edges:
        na, nb = g.nodes[a], g.nodes[b]
        if na.output_shape is not None and nb.input_shape is not None and tuple(na.output_shape) != tuple(nb.input_shape):
            probs.append(
                Problem(
                    _fmt(prefix, b),
                    nb.type,
                    "input",
                    f"shape mismatch on edge {a!r} -> {b!r}: {a!r} outputs {tuple(na.output_shape)} but {b!r} takes "
                    f"{tuple(nb.input_shape)}{_flatten_hint(na, tuple(nb.input_shape))}",
                    tuple(nb.input_shape),
                    tuple(na.output_shape),
                )
            )
    # output shapes that cannot be computed, and shapes that cannot be inferred
    flagged = {(p.node, p.field) for p in probs}
    flagged_nodes = {p.node for p in probs}
    for name, n in g.nodes.items():
        if not isinstance(n, Node) or n.type not in KNOWN_TYPES:
            continue
        full = _fmt(prefix, name)
        if n.input_shape is not None or n.type == "NIRGraph":
            try:
                node_output_shape(n, n.input_shape)
            except ShapeError as e:
                if (full, e.field) not in flagged:
                    probs.append(Problem(full, n.type, e.field, e.message, e.expected, e.actual))
                continue
        if n.output_shape is None and full not in flagged_nodes:
            probs.append(Problem(full, n.type, "shape", "cannot infer the shape of this node (no input shape reaches it)"))

    # nested subgraph ports
    for name, n in g.nodes.items():
        if isinstance(n, Node) and n.type == "NIRGraph" and isinstance(n.subgraph, Graph):
            used = any(name in e for e in good_edges)
            ni, no = len(n.subgraph.inputs), len(n.subgraph.outputs)
            if used and (ni != 1 or no != 1):
                probs.append(
                    Problem(_fmt(prefix, name), "NIRGraph", "subgraph", "a nested NIRGraph used in a graph needs exactly one Input and one Output", "1 and 1", f"{ni} and {no}")
                )

    # algebraic loops
    stateless = {name for name, n in g.nodes.items() if isinstance(n, Node) and not is_stateful(n)}
    succ, _ = _adjacency(Graph(nodes=g.nodes, edges=good_edges), restrict=stateless)
    for comp in _sccs([n for n in g.nodes if n in stateless], succ):
        if len(comp) > 1 or comp[0] in succ.get(comp[0], []):
            cyc = " -> ".join(comp + [comp[0]])
            probs.append(
                Problem(
                    _fmt(prefix, comp[0]),
                    g.nodes[comp[0]].type,
                    "edges",
                    f"algebraic loop {cyc}: a cycle with no stateful node (neuron or Delay) cannot be computed",
                    "a stateful node in every cycle",
                    [_fmt(prefix, c) for c in comp],
                )
            )

    # reachability (warnings)
    succ_all, pred_all = _adjacency(Graph(nodes=g.nodes, edges=good_edges))
    fwd = _reach([n for n, x in g.nodes.items() if isinstance(x, Node) and x.type == "Input"], succ_all)
    bwd = _reach([n for n, x in g.nodes.items() if isinstance(x, Node) and x.type == "Output"], pred_all)
    if ins:
        for name, n in g.nodes.items():
            if name not in fwd:
                probs.append(Problem(_fmt(prefix, name), getattr(n, "type", ""), "edges", WARNING_PREFIX + "not reachable from any Input"))
    if outs:
        for name, n in g.nodes.items():
            if name not in bwd:
                probs.append(Problem(_fmt(prefix, name), getattr(n, "type", ""), "edges", WARNING_PREFIX + "no Output is reachable from this node"))

    # recurse
    for name, n in g.nodes.items():
        if isinstance(n, Node) and n.type == "NIRGraph" and isinstance(n.subgraph, Graph):
            _validate_graph(n.subgraph, _fmt(prefix, name) + ".", probs, depth + 1)


def _flatten_hint(n: Node, wanted: tuple[int, ...]) -> str:
    """When a Flatten's dims look like PyTorch dims (counting the batch), say so."""
    if n.type != "Flatten" or n.input_shape is None:
        return ""
    sd, ed = n.params.get("start_dim", 1), n.params.get("end_dim", -1)
    if not isinstance(sd, int) or not isinstance(ed, int):
        return ""
    alt_sd, alt_ed = (sd - 1 if sd > 0 else sd), (ed - 1 if ed > 0 else ed)
    try:
        alt = flatten_shape(tuple(n.input_shape), alt_sd, alt_ed)
    except ValueError:
        return ""
    if alt == wanted:
        return (
            f" (Flatten dims ({sd}, {ed}) look like PyTorch dims that count the batch; NIR shapes have no batch "
            f"dim, so the exporter should have written ({alt_sd}, {alt_ed}))"
        )
    return ""


def _type(g: Graph, name: str) -> str:
    n = g.nodes.get(name)
    return n.type if isinstance(n, Node) else ""


def _reach(starts: list[str], adj: dict[str, list[str]]) -> set[str]:
    seen = set(starts)
    stack = list(starts)
    while stack:
        v = stack.pop()
        for w in adj.get(v, []):
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


def _check_node(n: Node, full: str, probs: list[Problem], depth: int) -> None:
    t = n.type
    if t not in KNOWN_TYPES:
        probs.append(Problem(full, str(t), "type", f"unknown node type {t!r}", "a NIR 1.0 primitive", t))
        return
    spec = KNOWN_TYPES[t]
    kinds = PARAM_KINDS[t]
    P = lambda fld, msg, exp=None, act=None: probs.append(Problem(full, t, fld, msg, exp, act))  # noqa: E731

    if t == "NIRGraph":
        if not isinstance(n.subgraph, Graph):
            P("subgraph", "NIRGraph node has no subgraph")
        return
    if not isinstance(n.params, dict):
        P("params", "params must be a dict")
        return
    # required / kinds
    required = [k for k in spec.required if not (t == "Output" and k == "shape")]
    for k in required:
        if k not in n.params:
            P(k, f"missing required field '{k}'")
    bad: set[str] = set()
    for k, v in n.params.items():
        kind = kinds.get(k)
        if kind is None:
            continue
        msg = _kind_problem(kind, v)
        if msg:
            P(k, msg[0], msg[1], msg[2])
            bad.add(k)
    # numeric arrays: finiteness
    for k, kind in kinds.items():
        v = n.params.get(k)
        if kind != _ARR or k in bad or not isinstance(v, np.ndarray):
            continue
        nan = int(np.count_nonzero(np.isnan(v)))
        inf = int(np.count_nonzero(np.isinf(v)))
        if nan:
            P(k, f"contains NaN ({nan} of {v.size} values)", "finite values", f"{nan} NaN")
            bad.add(k)
        if inf:
            P(k, f"contains inf ({inf} of {v.size} values)", "finite values", f"{inf} inf")
            bad.add(k)
    for k in spec.time_constants:
        v = n.params.get(k)
        if isinstance(v, np.ndarray) and k not in bad and v.size and np.any(v <= 0):
            P(k, f"time constant must be > 0 (min {float(np.min(v)):g})", "> 0", float(np.min(v)))
    if t == "Delay":
        v = n.params.get("delay")
        if isinstance(v, np.ndarray) and "delay" not in bad and v.size and np.any(v < 0):
            P("delay", f"delay must be >= 0 (min {float(np.min(v)):g})", ">= 0", float(np.min(v)))
    # neuron parameter shapes
    names = _shape_params(n)
    arrs = [(k, n.params[k]) for k in names if isinstance(n.params.get(k), np.ndarray) and k not in bad]
    big = [(k, a) for k, a in arrs if a.size != 1]
    if big:
        ref_k, ref = max(big, key=lambda ka: ka[1].size)
        for k, a in big:
            if a.shape != ref.shape:
                P(k, f"parameter shapes differ: {k} has shape {a.shape}, {ref_k} has {ref.shape}", tuple(ref.shape), tuple(a.shape))
    for k, a in arrs:
        if a.size == 0:
            P(k, "parameter is empty (0 elements)", ">= 1 element", tuple(a.shape))
    # declared shapes
    for k in ("shape", "input_shape"):
        if k in n.params and k not in bad:
            s = n.params[k]
            if len(s) == 0:
                P(k, "declared shape has no dimensions", ">= 1 dim", tuple(s))
            elif any(x < 1 for x in s):
                P(k, f"declared shape {tuple(s)} has a dimension < 1", "all dims >= 1", tuple(s))
            else:
                total = math.prod(int(x) for x in s)
                if total > MAX_DECLARED_ELEMENTS:
                    P(k, f"declared shape {tuple(s)} has {total:.3g} elements: absurdly large (limit {MAX_DECLARED_ELEMENTS:.0e})",
                      f"<= {MAX_DECLARED_ELEMENTS}", total)
    # per type
    if t in ("Affine", "Linear"):
        w = n.params.get("weight")
        if isinstance(w, np.ndarray) and "weight" not in bad:
            if w.ndim < 2:
                P("weight", "weight must have at least 2 dims (out, in)", ">= 2 dims", w.ndim)
            elif t == "Affine":
                b = n.params.get("bias")
                out = tuple(w.shape[:-2]) + (w.shape[-2],)
                if isinstance(b, np.ndarray) and "bias" not in bad and tuple(b.shape) != out:
                    P("bias", f"bias shape {tuple(b.shape)} does not match the output size {out}", out, tuple(b.shape))
    if t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        w = n.params.get("weight")
        g = n.params.get("groups", 1)
        if isinstance(w, np.ndarray) and "weight" not in bad:
            if w.ndim != nd + 2:
                P("weight", f"{t} weight must be {nd + 2}-D (Cout, Cin/groups, *kernel)", nd + 2, w.ndim)
            else:
                if "groups" not in bad and g >= 1 and w.shape[0] % g:
                    P("groups", f"groups {g} does not divide the {w.shape[0]} output channels", f"divides {w.shape[0]}", g)
                b = n.params.get("bias")
                if isinstance(b, np.ndarray) and "bias" not in bad and tuple(b.shape) != (w.shape[0],):
                    P("bias", f"bias shape {tuple(b.shape)} does not match the {w.shape[0]} output channels", (w.shape[0],), tuple(b.shape))
        if "groups" not in bad and "groups" in n.params and g < 1:
            P("groups", "groups must be >= 1", ">= 1", g)
        for k, lo in (("stride", 1), ("dilation", 1), ("padding", 0)):
            v = n.params.get(k)
            if k in bad or v is None:
                continue
            if isinstance(v, str):
                if k == "padding" and v not in ("same", "valid"):
                    P(k, f"padding must be 'same', 'valid' or integers, got {v!r}", "'same'|'valid'|ints", v)
                continue
            if len(v) not in (1, nd):
                P(k, f"{k} must have {nd} entries", nd, len(v))
            elif any(x < lo for x in v):
                P(k, f"{k} must be >= {lo}", f">= {lo}", list(v))
        pad, stride = n.params.get("padding"), n.params.get("stride", (1,))
        if pad == "same" and "stride" not in bad and _is_int_tuple(stride) and any(s != 1 for s in stride):
            P("padding", "padding='same' needs stride 1 (as in PyTorch)", 1, list(stride))
        ins = n.params.get("input_shape")
        if ins is not None and "input_shape" not in bad and len(ins) != nd:
            P("input_shape", f"{t} input_shape must have {nd} entries (spatial dims)", nd, len(ins))
    if t in ("SumPool2d", "AvgPool2d", "MaxPool1d", "MaxPool2d"):
        nd = 1 if t == "MaxPool1d" else 2
        for k, lo in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            v = n.params.get(k)
            if k in bad or v is None:
                continue
            if len(v) not in (1, nd):
                P(k, f"{k} must have {nd} entries", nd, len(v))
            elif any(x < lo for x in v):
                P(k, f"{k} must be >= {lo}", f">= {lo}", list(v))
        if t.startswith("MaxPool"):
            k, p = n.params.get("kernel_size"), n.params.get("padding")
            if _is_int_tuple(k) and _is_int_tuple(p) and len(k) in (1, nd) and len(p) in (1, nd) and "padding" not in bad:
                kk, pp = (k * nd if len(k) == 1 else k), (p * nd if len(p) == 1 else p)
                if any(2 * b > a for a, b in zip(kk, pp)):
                    P("padding", f"padding {list(p)} is more than half the kernel {list(k)} (PyTorch refuses it)",
                      "<= kernel_size / 2", list(p))
            cm = n.params.get("ceil_mode")
            if cm is not None and "ceil_mode" not in bad and cm not in (0, 1):
                P("ceil_mode", "ceil_mode must be 0 or 1", "0 or 1", cm)
    if t in ("BatchNorm1d", "BatchNorm2d"):
        arrs = {k: n.params[k] for k in ("weight", "bias", "running_mean", "running_var")
                if isinstance(n.params.get(k), np.ndarray) and k not in bad}
        for k, a in arrs.items():
            if a.ndim != 1:
                P(k, f"{k} must be 1-D (one value per channel)", "1-D", tuple(a.shape))
        sizes = {a.size for a in arrs.values() if a.ndim == 1}
        if len(sizes) > 1:
            P("weight", f"parameters of different lengths {sorted(sizes)}: one value per channel", "one length", sorted(sizes))
        var = arrs.get("running_var")
        if var is not None and var.size and np.any(var < 0):
            P("running_var", f"running_var must be >= 0 (min {float(np.min(var)):g})", ">= 0", float(np.min(var)))
        eps = n.params.get("eps")
        if isinstance(eps, np.ndarray) and "eps" not in bad and (eps.size != 1 or not np.all(eps > 0)):
            P("eps", "eps must be one number > 0", "> 0", eps.reshape(-1)[:3].tolist())
    if t == "Dropout":
        v = n.params.get("p")
        if isinstance(v, np.ndarray) and "p" not in bad and (v.size != 1 or not np.all((v >= 0) & (v <= 1))):
            P("p", "p must be one probability in [0, 1]", "[0, 1]", v.reshape(-1)[:3].tolist())


def _kind_problem(kind: str, v: Any) -> tuple[str, Any, Any] | None:
    if kind == _ARR:
        if not isinstance(v, np.ndarray):
            return (f"expected a numeric array, got {type(v).__name__}", "float ndarray", type(v).__name__)
        if v.dtype.kind == "c":
            return ("complex numbers are not allowed", "real numbers", str(v.dtype))
        if v.dtype.kind not in "biuf":
            return (f"expected numbers, got dtype {v.dtype}", "float ndarray", str(v.dtype))
        return None
    if kind == "int":
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            return (f"expected an integer, got {type(v).__name__}", "int", repr(v))
        return None
    if kind in ("ints", "shape"):
        if not _is_int_tuple(v):
            return (f"expected a tuple of integers, got {v!r}", "tuple of ints", repr(v))
        return None
    if kind == "padding":
        if isinstance(v, str) or _is_int_tuple(v):
            return None
        return (f"expected 'same', 'valid' or a tuple of integers, got {v!r}", "'same'|'valid'|ints", repr(v))
    return None
