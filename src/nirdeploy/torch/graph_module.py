"""A NIR graph as a torch module, stepped in time exactly like the reference simulator.

:class:`GraphModule` runs a normalized :class:`~nirdeploy.graph.ir.Graph` (subgraphs inlined,
``delayed_edges`` marked) with the reference simulator's rules (``sim/reference.py``): nodes in
:func:`~nirdeploy.graph.passes.evaluation_order`, a node's input is the sum of its
predecessors' outputs of this step, delayed (recurrent back) edges carry the previous step's
output (nothing at t = 0).

Every node becomes one submodule with ``initial_state(x)`` and ``forward_step(x, state) ->
(y, state)``. Which module a node becomes is decided by a *node factory*
``factory(name, node, ctx) -> module | None`` (``None``: use the default). The defaults are the
reference semantics (:func:`default_node_module`); library importers (``nirdeploy.frontends``)
pass factories that build snnTorch / Norse / Sinabs neurons instead, and chip models can pass
factories with their own decays, spike rules and quantized weights.

Weights of Affine / Linear / Conv are ``torch.nn.Parameter``; the module is differentiable
(spikes through a surrogate gradient, see :mod:`nirdeploy.torch.neurons`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedError, UsageError
from ..graph.discretize import DISCRETIZED_TYPES, discretize_node
from ..graph.ir import Graph, Node
from ..sim.reference import DELAY_STEP_TOLERANCE, prepare_graph
from .neurons import ReferenceNeuron, SpikeRule

__all__ = ["BuildContext", "GraphModule", "default_node_module", "NodeFactory"]


@dataclass
class BuildContext:
    """What a node factory may need: the time step (s), scheme, spike rule, dtype and the
    inferred input shape of the node (without batch)."""

    dt: float
    scheme: str
    spike_rule: SpikeRule
    dtype: torch.dtype = torch.float64
    notes: list[str] = field(default_factory=list)


NodeFactory = Callable[[str, Node, BuildContext], "torch.nn.Module | None"]


def _t(a, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)


class _Stateless(torch.nn.Module):
    def initial_state(self, x):
        return None

    def forward_step(self, x, state):
        return self(x), None


class Identity(_Stateless):
    def forward(self, x):
        return x


class AffineOp(_Stateless):
    """y = x W^T (+ b) on the last axis. weight (out, in)."""

    def __init__(self, weight, bias, dtype):
        super().__init__()
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 2:
            raise UnsupportedError(f"weight of shape {w.shape} is not a matrix")
        self.weight = torch.nn.Parameter(_t(w, dtype))
        self.bias = None if bias is None else torch.nn.Parameter(_t(bias, dtype))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class ScaleOp(_Stateless):
    def __init__(self, scale, dtype):
        super().__init__()
        self.register_buffer("scale", _t(scale, dtype))

    def forward(self, x):
        return x * self.scale


class ConvOp(_Stateless):
    """PyTorch convolution (1d or 2d); integer or 'same'/'valid' padding."""

    def __init__(self, node: Node, dtype):
        super().__init__()
        p = node.params
        w = np.asarray(p["weight"], dtype=np.float64)
        self.nd = 1 if node.type == "Conv1d" else 2
        self.weight = torch.nn.Parameter(_t(w, dtype))
        b = p.get("bias")
        self.bias = None if b is None else torch.nn.Parameter(_t(b, dtype))
        self.stride = tuple(int(s) for s in p.get("stride", (1,) * self.nd))
        self.dilation = tuple(int(s) for s in p.get("dilation", (1,) * self.nd))
        pad = p.get("padding", (0,) * self.nd)
        self.padding = pad if isinstance(pad, str) else tuple(int(s) for s in pad)
        self.groups = int(p.get("groups", 1))

    def forward(self, x):
        fn = F.conv1d if self.nd == 1 else F.conv2d
        return fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PoolOp(_Stateless):
    """Sum pooling (NIR SumPool2d) or average pooling with padding counted (AvgPool2d)."""

    def __init__(self, node: Node):
        super().__init__()
        p = node.params
        self.k = tuple(int(v) for v in p["kernel_size"])
        self.s = tuple(int(v) for v in (p.get("stride") or self.k))
        self.p = tuple(int(v) for v in (p.get("padding") or (0, 0)))
        self.average = node.type == "AvgPool2d"

    def forward(self, x):
        y = F.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True)
        return y if self.average else y * float(self.k[0] * self.k[1])


class FlattenOp(_Stateless):
    """NIR Flatten: start_dim / end_dim count without the batch axis."""

    def __init__(self, node: Node):
        super().__init__()
        self.start = int(node.params.get("start_dim", 1) if node.params.get("start_dim") is not None else 1)
        self.end = int(node.params.get("end_dim", -1) if node.params.get("end_dim") is not None else -1)

    def forward(self, x):
        nd = x.ndim - 1
        s = self.start + nd if self.start < 0 else self.start
        e = self.end + nd if self.end < 0 else self.end
        if nd == 0 or s >= e:
            return x
        return torch.flatten(x, s + 1, e + 1)


class ThresholdOp(_Stateless):
    def __init__(self, threshold, dtype):
        super().__init__()
        self.register_buffer("threshold", _t(threshold, dtype))

    def forward(self, x):
        from .neurons import SurrogateSpike

        return SurrogateSpike.apply(x - self.threshold)


class DelayOp(torch.nn.Module):
    """y[t] = x[t - k], k = round(delay / dt) per element; zeros before the line fills."""

    def __init__(self, node: Node, dt: float):
        super().__init__()
        d = np.asarray(node.params["delay"], dtype=np.float64)
        if np.any(~np.isfinite(d)) or np.any(d < 0):
            raise UnsupportedError(f"{node.name} (Delay): delays must be finite and >= 0")
        q = d / dt
        k = np.rint(q)
        if np.any(np.abs(q - k) > DELAY_STEP_TOLERANCE):
            raise UnsupportedError(f"{node.name} (Delay): delay is not a whole number of steps of dt = {dt:g} s")
        self.register_buffer("k", torch.as_tensor(k.astype(np.int64)))
        self.K = int(k.max()) if k.size else 0

    def initial_state(self, x):
        return [torch.zeros_like(x) for _ in range(self.K)]  # most recent first

    def forward_step(self, x, hist):
        line = [x] + hist  # line[j] = x[t - j]
        stacked = torch.stack(line, 0)  # (K+1, B, *shape)
        k = torch.broadcast_to(self.k, x.shape[1:]).expand_as(x)
        y = torch.gather(stacked, 0, k.unsqueeze(0)).squeeze(0)
        return y, line[: self.K]


def default_node_module(name: str, node: Node, ctx: BuildContext) -> torch.nn.Module:
    """The reference-semantics module of one (normalized) node."""
    t = node.type
    p = node.params
    if t in ("Input", "Output"):
        return Identity()
    if t == "Affine":
        return AffineOp(p["weight"], p.get("bias"), ctx.dtype)
    if t == "Linear":
        return AffineOp(p["weight"], None, ctx.dtype)
    if t == "Scale":
        return ScaleOp(p["scale"], ctx.dtype)
    if t in ("Conv1d", "Conv2d"):
        return ConvOp(node, ctx.dtype)
    if t in ("SumPool2d", "AvgPool2d"):
        return PoolOp(node)
    if t == "Flatten":
        return FlattenOp(node)
    if t == "Threshold":
        return ThresholdOp(p["threshold"], ctx.dtype)
    if t == "Delay":
        return DelayOp(node, ctx.dt)
    if t in DISCRETIZED_TYPES:
        d = discretize_node(node, ctx.dt, ctx.scheme, name=name)
        ctx.notes.extend(d.notes)
        return ReferenceNeuron(d, ctx.spike_rule, ctx.dtype)
    raise UnsupportedError(f"{name}: node type {t!r} has no torch module")


class GraphModule(torch.nn.Module):
    """A NIR graph as a torch module. ``forward(x)``: x (batch, time, *input_shape) ->
    (batch, time, *output_shape); ``forward(x, record=True)`` -> (output, states) with
    ``states[node]["out"|"v"|"i"|"spikes"]`` of shape (batch, time, *shape), as the reference
    simulator records them. Attributes ``dt`` (s), ``scheme``, ``spike_rule``, ``notes``."""

    def __init__(self, graph: Graph, ctx: BuildContext, factory: NodeFactory | None = None):
        super().__init__()
        g, order = prepare_graph(graph)
        ins = [k for k in order if g.nodes[k].type == "Input"]
        outs = [k for k in order if g.nodes[k].type == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise UnsupportedError(f"a torch module needs exactly one Input and one Output node, got {len(ins)} and {len(outs)}")
        self.graph = g
        self.order = list(order)
        self.input_name, self.output_name = ins[0], outs[0]
        self.input_shape = tuple(int(v) for v in g.nodes[ins[0]].params.get("shape", g.nodes[ins[0]].output_shape or ()))
        self.dt = ctx.dt
        self.scheme = ctx.scheme
        self.spike_rule = ctx.spike_rule
        self.dtype = ctx.dtype
        self.nodes = torch.nn.ModuleDict()
        self._keys: dict[str, str] = {}
        for k in order:
            m = factory(k, g.nodes[k], ctx) if factory is not None else None
            if m is None:
                m = default_node_module(k, g.nodes[k], ctx)
            key = k.replace(".", "__")
            self._keys[k] = key
            self.nodes[key] = m
        self.notes = ctx.notes
        delayed = set(g.delayed_edges)
        self.preds: dict[str, list[tuple[str, bool]]] = {k: [] for k in order}
        for s, d in g.edges:
            self.preds[d].append((s, (s, d) in delayed))

    def module_of(self, node_name: str) -> torch.nn.Module:
        return self.nodes[self._keys[node_name]]

    def forward(self, x: torch.Tensor, record: bool = False):
        if not isinstance(x, torch.Tensor):
            from ..inputs import check_real_array

            x = torch.as_tensor(np.asarray(check_real_array(x, self.input_shape), dtype=np.float64), dtype=self.dtype)
        elif x.is_complex():
            raise UsageError(f"input holds complex numbers (dtype {x.dtype}); expected real numbers")
        if x.ndim != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise UsageError(f"input must have shape (batch, time, {', '.join(map(str, self.input_shape))}); got {tuple(x.shape)}")
        x = x.to(self.dtype)
        B, T = x.shape[:2]
        states: dict[str, Any] = {}
        rec: dict[str, dict[str, list]] = {k: {} for k in self.order} if record else {}
        prev: dict[str, torch.Tensor] = {}
        outs = []
        for t in range(T):
            cur: dict[str, torch.Tensor] = {}
            for k in self.order:
                m = self.nodes[self._keys[k]]
                if k == self.input_name:
                    inp = x[:, t]
                else:
                    inp = None
                    for s, is_delayed in self.preds[k]:
                        part = prev.get(s) if is_delayed else cur[s]
                        if part is None:
                            continue
                        inp = part if inp is None else inp + part
                    if inp is None:  # only delayed inputs, at t = 0: zeros of the source's shape
                        inp = self._zeros_like_source(k, B, x)
                if k not in states:
                    states[k] = m.initial_state(inp)
                y, states[k] = m.forward_step(inp, states[k])
                cur[k] = y
                if record:
                    r = rec[k]
                    r.setdefault("out", []).append(y)
                    if isinstance(m, ReferenceNeuron):
                        for var, val in m.record(states[k], y, m.spiking).items():
                            r.setdefault(var, []).append(val)
            outs.append(cur[self.output_name])
            prev = cur
        out = torch.stack(outs, 1) if outs else torch.zeros((B, 0) + tuple(self.graph.nodes[self.output_name].params.get("shape", ())), dtype=self.dtype)
        if not record:
            return out
        return out, {k: {var: torch.stack(v, 1) for var, v in d.items()} for k, d in rec.items()}

    def _zeros_like_source(self, k: str, B: int, x: torch.Tensor) -> torch.Tensor:
        for s, _ in self.preds[k]:
            shp = self.graph.nodes[s].output_shape
            if shp is not None:
                return torch.zeros((B,) + tuple(int(v) for v in shp), dtype=self.dtype, device=x.device)
        shp = self.graph.nodes[k].input_shape
        if shp is None:
            raise UnsupportedError(f"{k}: no input at t = 0 and its input shape is unknown")
        return torch.zeros((B,) + tuple(int(v) for v in shp), dtype=self.dtype, device=x.device)
