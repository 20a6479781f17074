"""Lower a NIR graph onto Speck: structure, quantization, memory, core mapping and fit rules.

Structure (speck.md sections 2 and 5). A core is ``[Conv2d | Affine | Linear] -> IF`` followed,
per destination, by sum pooling:

* every IF (or, with ``lif_leak="bias"``, LIF) node is one layer, fed by exactly one weight node;
* the path from a layer's spikes (or from the Input) to a weight node may hold SumPool2d /
  AvgPool2d nodes (merged into one sum pooling per destination; an AvgPool's 1/(kh*kw) is folded
  into the destination's weights, exactly, and reported) and, just before an Affine/Linear, a
  Flatten: the Affine/Linear then becomes a convolution whose kernel is its whole input map;
* several paths into one weight node add their spikes (sinabs' Merge); one layer may feed at most
  ``max_destinations`` weight nodes; the Output reads one layer's spikes (host-side pooling).

Every violation is collected. Nodes Speck cannot run are named one by one (the layers NIR lacks,
``ir.NON_NIR_TYPES``, with their own hint) and then looked through: leaky or synaptic neurons still
end a layer, and BatchNorm, Dropout, Scale, Delay and MaxPool2d are passed over, so that kernel,
stride, padding, channels, map sizes, per-core memory, the core count and the mapping are checked
on the rest of the network in the same report (a layer whose neurons Speck cannot run is not
quantized). No network is built then.

Discretization: an IF integrates ``v += r*dt*x`` (graph.discretize), so ``r*dt`` multiplies the
incoming weights and bias. Speck has one threshold per core: thresholds (and ``r``) that differ
between channels are folded into each channel's weights (exact for an integrate-and-fire neuron);
differences inside a channel cannot be (the weights are shared over space) and are rejected.

Quantization follows sinabs' ``discretize_conv_spike_`` (speck.md section 3), in float32 as sinabs
computes it, so the integers equal sinabs' ones: one scale per layer, the smallest of the weights'
8-bit range scale, the bias's 8-bit scale and the 16-bit scale of (lower bound, threshold); values
rounded half to even. The difference is the lower bound: with ``lower_bound="none"`` (default; NIR's
IF has no lower bound) it is the state format's minimum and takes no part in the scale, which
avoids sinabs' trap where ``min_v_mem=None`` puts -32768 into the scale and rounds small weights to
zero (sinabs #128). ``lower_bound="-threshold"`` is sinabs' ``from_nir`` convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nirdeploy.backend.hwconfig import HWConfig
from nirdeploy.backend.report import FitReport, NodeUsage
from nirdeploy.backend.rules import LimitChecker, non_nir_violation, violation
from nirdeploy.backend.target import CompileOptions
from nirdeploy.errors import UsageError
from nirdeploy.graph.discretize import discretize_node
from nirdeploy.graph.ir import NON_NIR_TYPES, Graph, Node

from .config import INPUT, SpeckLayer, SpeckNetwork
from .mapping import LayerMemory, assign_cores, candidate_cores, memory

__all__ = ["lower", "Lowered", "SUPPORTED_NODES", "OPTIONS", "resolve_options", "range_scale"]

WEIGHT_TYPES = ("Conv2d", "Affine", "Linear")
NEURON_TYPES = ("IF", "LIF")
POOL_TYPES = ("SumPool2d", "AvgPool2d")
SUPPORTED_NODES = frozenset(("Input", "Output", "NIRGraph", "Flatten", "IF") + WEIGHT_TYPES + POOL_TYPES)
# For the checks only (so that every violation is reported together): neuron nodes that end a
# layer even when Speck cannot run them, and nodes Speck cannot run whose shape flow is known,
# looked through between layers (elementwise ones also between a layer's weights and neurons)
LAYER_NEURONS = ("IF", "LIF", "LI", "CubaLI", "CubaLIF", "I", "Threshold")
ELEMENTWISE_LOOKED_THROUGH = ("BatchNorm1d", "BatchNorm2d", "Dropout", "Scale", "Delay")
LOOKED_THROUGH = ELEMENTWISE_LOOKED_THROUGH + ("MaxPool2d",)

#: target options (``CompileOptions.extra``): name -> (allowed values or type, default, meaning)
OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "lower_bound": (("none", "-threshold"), "none",
                    "threshold_low: 'none' = the 16-bit state minimum (NIR's IF has no lower bound); "
                    "'-threshold' = minus the threshold (sinabs from_nir's min_v_mem)"),
    "lif_leak": (("error", "bias"), "error",
                 "LIF layers: 'error' rejects them; 'bias' approximates the leak by a constant negative bias "
                 "(the decay at half the threshold), the only leak Speck has"),
    "sim_mode": (("event", "binned"), "event",
                 "what simulate runs: 'event' = event-driven chip semantics, 'binned' = sinabs' time-binned forward"),
    "binned_spikes": (("multi", "single"), "multi", "binned mode: sinabs MultiSpike (default) or SingleSpike"),
    "spike_test": ((">=", ">"), ">=",
                   "event mode: fire when v >= threshold_high (sinabs' convention; unconfirmed on silicon) or v > it"),
    "state_overflow": (("saturate", "wrap"), None,
                       "event mode: what the 16-bit state does at its limits (default: the hw_config's state format; unconfirmed)"),
    "slow_clock_ticks_per_step": (int, 1,
                                  "event mode: bias (leak) updates per time step; each is applied before the step's "
                                  "events and may make a neuron fire (timing unconfirmed)"),
}


def option_range(key: str, hw: HWConfig | None) -> tuple[int, int]:
    """The allowed range of an integer target option: the hw_config's limit of the same name
    (``[min, max]``) where it has one, else 0.. unbounded."""
    rng = hw.limits.get(key) if hw is not None else None
    return (int(rng[0]), int(rng[1])) if rng is not None else (0, 2**63 - 1)


def resolve_options(extra: dict | None, hw: HWConfig | None = None) -> dict[str, Any]:
    """Target options with defaults filled in; unknown names or bad values raise UsageError."""
    extra = dict(extra or {})
    out: dict[str, Any] = {}
    for k, v in extra.items():
        if k not in OPTIONS:
            continue  # core options (CompileOptions.extra may carry others); target_options are checked in the API
        allowed = OPTIONS[k][0]
        if allowed is int:
            try:
                iv = int(v)
            except (TypeError, ValueError):
                raise UsageError(f"speck option {k} must be an integer >= 0, got {v!r}") from None
            if iv < 0 or (isinstance(v, float) and v != iv):
                raise UsageError(f"speck option {k} must be an integer >= 0, got {v!r}")
            lo, hi = option_range(k, hw)
            if not lo <= iv <= hi:
                raise UsageError(f"speck option {k} must lie in {lo}..{hi}" + (f" (the {hw.name} hw_config's {k})" if hw is not None else "")
                                 + f"; got {v!r}")
            out[k] = iv
        else:
            if v not in allowed:
                raise UsageError(f"speck option {k} must be one of {', '.join(allowed)}; got {v!r}")
            out[k] = v
    for k, (_, default, _) in OPTIONS.items():
        out.setdefault(k, default)
    if out["state_overflow"] is None:
        out["state_overflow"] = hw.fmt("state").overflow if hw is not None else "saturate"
    return out


@dataclass
class Lowered:
    network: SpeckNetwork | None
    report: FitReport
    options: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    # per layer: how far calibration can raise the weight scale before the bias or the threshold
    # would leave its range (1: not at all)
    scale_room: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _pair(v, default: int) -> tuple[int, int]:
    if v is None:
        return (default, default)
    a = np.asarray(v).ravel()
    if a.size == 1:
        return (int(a[0]), int(a[0]))
    return (int(a[0]), int(a[1]))


def range_scale(t: np.ndarray, bits: int) -> float:
    """sinabs' ``determine_discretization_scale`` (speck.md section 3) in float32: the factor that
    brings the larger side of ``t`` to the edge of the signed ``bits`` range (inf for all zeros)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    t = np.asarray(t, dtype=np.float32)
    mn, mx = np.float32(t.min()), np.float32(t.max())
    ratio = np.float32(abs(lo / hi))
    with np.errstate(divide="ignore"):
        if abs(mn) <= abs(mx) * ratio:
            return float(np.abs(np.float32(hi) / mx))
        return float(np.abs(np.float32(lo) / mn))


def _round32(x: np.ndarray, s: float) -> np.ndarray:
    """round(x * s) half to even, computed in float32 like torch.round in sinabs."""
    return np.rint(np.asarray(x, dtype=np.float32) * np.float32(s)).astype(np.int64)


@dataclass
class _Path:
    src: str  # INPUT or neuron node name
    pool: int = 1
    avg_factor: float = 1.0  # product of AvgPool 1/(kh*kw) on the path
    flatten: bool = False
    nodes: list[str] = field(default_factory=list)
    exact: bool = True  # False: a node Speck cannot run lies on the path (looked through for the other checks)


@dataclass
class _Layer:
    node: Node  # the neuron node (IF; LIF with lif_leak=bias; or a stand-in Speck cannot run)
    wnode: Node  # Conv2d / Affine / Linear
    paths: list[_Path] = field(default_factory=list)
    # False: the neuron, or a node between the weights and it, is unsupported: the layer's
    # geometry, memory and core are still checked, its quantization is not
    runnable: bool = True


@dataclass
class _Structure:
    layers: dict[str, _Layer]
    out_path: _Path | None
    ok: bool  # a Speck network can be built: every node is supported and the wiring is a Speck network


def _supported(n: Node, opts: dict) -> bool:
    return n.type in SUPPORTED_NODES or (n.type == "LIF" and opts["lif_leak"] == "bias")


def _unsupported_violation(n: Node):
    if n.type in NON_NIR_TYPES:
        why = "Speck has no max pooling" if n.type.startswith("MaxPool") else f"Speck has no {n.type} layer"
        return non_nir_violation(n, why)
    if n.type == "LIF":
        return violation("unsupported_node", "LIF: Speck neurons do not leak (integrate-and-fire only)", n,
                         hint="train with IF neurons, or compile with the target option lif_leak=bias to approximate the leak "
                              "by a constant bias (-T lif_leak=bias)")
    if n.type in ("LI", "CubaLI", "CubaLIF", "I"):
        return violation("unsupported_node", f"{n.type}: Speck neurons are non-leaky integrate-and-fire with no synaptic current", n,
                         hint="use IF neurons")
    return violation("unsupported_node", f"{n.type} has no Speck equivalent", n,
                     hint="Speck runs Conv2d / Affine / Linear into IF neurons, with SumPool2d / AvgPool2d and Flatten between layers")


def _trace_back(g: Graph, start: str, viol: list, opts: dict, stack: tuple[str, ...] = ()) -> tuple[list[_Path], bool]:
    """Paths from the neuron layers / Input to ``start`` through pooling and Flatten nodes (and,
    marked inexact, through the nodes Speck cannot run but whose shape flow is known). Also
    whether a failure is already explained (a violation added, or an unsupported node met)."""
    n = g.nodes[start]
    if n.type in LAYER_NEURONS or n.type == "Input":
        return [_Path(INPUT if n.type == "Input" else start)], False
    supported = _supported(n, opts)
    if start in stack or not (n.type in POOL_TYPES or n.type in LOOKED_THROUGH or n.type == "Flatten"):
        return [], not supported  # anything else: the caller names it (unless it is already named as unsupported)
    preds = g.predecessors(start)
    if len(preds) != 1:
        if supported:
            viol.append(violation("structure", f"{n.type} with {len(preds)} inputs: on Speck pooling and Flatten take one source", n,
                                  hint="sum the sources with a convolution layer first"))
        return [], True
    out = []
    found, named = _trace_back(g, preds[0], viol, opts, stack + (start,))
    for p in found:
        p = _Path(p.src, p.pool, p.avg_factor, p.flatten, p.nodes + [start], p.exact and supported)
        if n.type == "Flatten":
            p.flatten = True
        elif n.type in POOL_TYPES or n.type == "MaxPool2d":
            k = _pair(n.params.get("kernel_size"), 1)
            s = _pair(n.params.get("stride"), k[0]) if n.params.get("stride") is not None else k
            pad = _pair(n.params.get("padding"), 0)
            if supported and p.flatten:
                viol.append(violation("structure", "pooling after a Flatten", n, hint="pool before flattening"))
            if supported and (k[0] != k[1] or s != k or pad != (0, 0)):
                viol.append(violation("pooling_shape", f"pooling kernel {k}, stride {s}, padding {pad}: Speck pools with square "
                                      "kernels, stride = kernel and no padding", n, limit="square, stride = kernel, padding 0",
                                      actual={"kernel": list(k), "stride": list(s), "padding": list(pad)},
                                      hint="use SumPool2d(k, stride=k) with k in 1, 2, 4"))
            p.pool *= k[0]
            if n.type == "AvgPool2d":
                p.avg_factor /= float(k[0] * k[1])
        out.append(p)
    return out, named


def _chain(g: Graph, start: str, step) -> tuple[list[str], list[str]]:
    """Follow ``step`` (predecessors or successors) from ``start`` through single LOOKED_THROUGH
    elementwise nodes (BatchNorm, Dropout, Scale, Delay): (the nodes passed, the next step's names)."""
    chain: list[str] = []
    nxt = step(start)
    while len(nxt) == 1 and g.nodes[nxt[0]].type in ELEMENTWISE_LOOKED_THROUGH and nxt[0] not in chain:
        chain.append(nxt[0])
        nxt = step(nxt[0])
    return chain, nxt


def _structure(g: Graph, opts: dict, viol: list) -> _Structure:
    """Every layer that can be identified, even when some nodes are unsupported: those are named
    one by one, then looked through, so that the geometry, memory and mapping checks still run on
    the rest of the network (every violation is reported together)."""
    ok = True
    inputs, outputs = g.inputs, g.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        viol.append(violation("single_input_output", f"Speck takes one Input and one Output node; the graph has {len(inputs)} and {len(outputs)}",
                              limit=1, actual=max(len(inputs), len(outputs)), hint="split the graph"))
        ok = False
    unsupported = {n.name for n in g.nodes.values() if not _supported(n, opts)}
    for name in [n for n in g.nodes if n in unsupported]:  # in graph order
        viol.append(_unsupported_violation(g.nodes[name]))
    ok = ok and not unsupported
    layers: dict[str, _Layer] = {}
    for n in g.nodes.values():
        if n.type not in LAYER_NEURONS:
            continue
        chain, preds = _chain(g, n.name, g.predecessors)
        wn = [g.nodes[p] for p in preds]
        if len(wn) != 1 or wn[0].type not in WEIGHT_TYPES:
            if not unsupported & {n.name, *preds, *chain}:
                viol.append(violation("structure", f"a Speck neuron layer is fed by exactly one Conv2d / Affine / Linear node; {n.name} is fed by "
                                      f"{', '.join(f'{w.name} ({w.type})' for w in wn) or 'nothing'}", n,
                                      hint="sum convolutions before their neurons by merging them into one convolution"))
            ok = False
            continue
        layers[n.name] = _Layer(n, wn[0], runnable=n.name not in unsupported and not chain)
    # weight nodes: fed through pooling / flatten paths; each feeds one neuron layer
    for w in g.nodes.values():
        if w.type not in WEIGHT_TYPES:
            continue
        chain, succ = _chain(g, w.name, g.successors)
        if len(succ) != 1 or g.nodes[succ[0]].type not in LAYER_NEURONS:
            if not unsupported & {*succ, *chain}:
                viol.append(violation("structure", f"on Speck a weight layer feeds exactly one IF layer; {w.name} feeds "
                                      f"{', '.join(succ) or 'nothing'}", w, hint="put IF neurons after every Conv2d / Affine / Linear"))
            ok = False
            continue
        layer = layers.get(succ[0])
        if layer is None or layer.wnode is not w:
            continue
        for p in g.predecessors(w.name):
            pt = g.nodes[p].type
            paths, named = _trace_back(g, p, viol, opts)
            if not paths:
                ok = False
                if pt in WEIGHT_TYPES:
                    viol.append(violation("structure", f"{g.nodes[p].name} ({pt}) feeds {w.name} ({w.type}) directly: two weight layers "
                                          "in a row cannot share a core", w, hint="fold the two weight matrices into one, or put IF neurons between them"))
                elif not named:
                    viol.append(violation("structure", f"{w.name} is fed by {g.nodes[p].name} ({pt}), which is not a neuron layer or the input", w))
            for path in paths:
                if path.flatten and w.type == "Conv2d":
                    viol.append(violation("structure", "Flatten before a Conv2d", w, hint="Flatten may only precede an Affine / Linear layer"))
                    ok = False
                if path.src == INPUT and path.pool != 1 and path.exact:
                    viol.append(violation("input_pooling", f"pooling ({path.pool}) between the input and {w.name}: pooling on Speck happens "
                                          "on the way out of a core (or in the DVS layer, which nirdeploy does not configure)", w,
                                          hint="pool the input events before sending them, or use a strided convolution"))
                    ok = False
                layer.paths.append(path)
        srcs = [p.src for p in layer.paths]
        if len(srcs) != len(set(srcs)):
            dup = sorted({s for s in srcs if srcs.count(s) > 1})
            viol.append(violation("structure", f"{w.name} receives {', '.join(dup)} along two paths: one core sends one event stream to a "
                                  "destination, with one pooling", w, hint="merge the two paths"))
            ok = False
    # the output
    out_path = None
    if len(outputs) == 1:
        out = outputs[0]
        opreds = g.predecessors(out.name)
        out_paths: list[_Path] = []
        named = False
        for p in opreds:
            ps, nm = _trace_back(g, p, viol, opts)
            out_paths += ps
            named |= nm
        if len(out_paths) != 1 or out_paths[0].src == INPUT or any(g.nodes[p].type in WEIGHT_TYPES for p in opreds):
            if not named:
                viol.append(violation("output", "the Output must read the spikes of one neuron layer (optionally pooled / flattened)", out,
                                      hint="end the network with an IF layer"))
            ok = False
        else:
            out_path = out_paths[0]
    if not layers:
        neurons = [n.name for n in g.nodes.values() if n.type in ("IF", "LIF", "CubaLIF")]
        what = (f"no neuron layer Speck can run: {', '.join(neurons[:5])} {'is' if len(neurons) == 1 else 'are'} not fed by a "
                "Conv2d / Affine / Linear layer" if neurons else "the graph has no IF layer")
        viol.append(violation("structure", what, hint="Speck runs Conv2d / Affine / Linear into IF neurons (a core is weights, then neurons)"))
        ok = False
    return _Structure(layers, out_path, ok)


def _order(layers: dict[str, _Layer], viol: list) -> tuple[list[str], bool]:
    """Layers in evaluation order, and False (with a violation) when they form a loop (then the
    rest follow in graph order, so that their other checks still run)."""
    deps = {k: {p.src for p in l.paths if p.src != INPUT and p.src in layers} for k, l in layers.items()}
    order: list[str] = []
    done: set[str] = set()
    names = list(layers)
    while len(order) < len(names):
        ready = [k for k in names if k not in done and deps[k] <= done]
        if not ready:
            rest = [k for k in names if k not in done]
            viol.append(violation("recurrence", f"layers {', '.join(rest)} form a loop: nirdeploy maps feed-forward networks onto Speck",
                                  hint="remove the recurrent connection"))
            return order + rest, False
        order.append(ready[0])
        done.add(ready[0])
    return order, True


# ---------------------------------------------------------------------------------------------
# per-layer lowering
# ---------------------------------------------------------------------------------------------
def _conv_geometry(w: Node, in_shape, viol) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]:
    """(stride, padding, dilation, groups) of a Conv2d."""
    stride = _pair(w.params.get("stride"), 1)
    dil = _pair(w.params.get("dilation"), 1)
    groups = int(np.asarray(w.params.get("groups", 1) if w.params.get("groups") is not None else 1).ravel()[0])
    pad = w.params.get("padding", 0)
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, np.ndarray) and pad.dtype.kind in "USO":
        pad = str(pad.ravel()[0])
    k = np.asarray(w.params["weight"]).shape[2:]
    if isinstance(pad, str):
        if pad == "valid":
            padding = (0, 0)
        else:  # "same", stride 1 (validated by the loader)
            tot = [d * (kk - 1) for kk, d in zip(k, dil)]
            if any(t % 2 for t in tot):
                viol.append(violation("padding", f"padding='same' with an even kernel {tuple(k)} pads unevenly; Speck pads both sides equally", w,
                                      hint="use an odd kernel or explicit padding"))
            padding = (tot[0] // 2, tot[1] // 2)
    else:
        padding = _pair(pad, 0)
    return stride, padding, dil, groups


def _geometry(l: _Layer, g: Graph, viol: list) -> dict | None:
    """The layer as a convolution: float weights (c_out, c_in, kh, kw), the float bias of the
    weight node, stride, padding, dilation, groups, input map and neuron shape (C, H, W). Depends
    on the weight node and the shapes only, so it is known even for a layer whose neurons Speck
    cannot run. None when the weights cannot form a convolution (a violation says why)."""
    w = l.wnode
    W = np.asarray(w.params["weight"], dtype=np.float64)
    if w.type == "Conv2d":
        in_shape = tuple(int(s) for s in w.input_shape)
        stride, padding, dil, groups = _conv_geometry(w, in_shape, viol)
        b = w.params.get("bias")
        bias = np.zeros(W.shape[0]) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64).ravel(), (W.shape[0],)).copy()
        neuron_shape = tuple(int(s) for s in w.output_shape)
        kind = "conv"
    else:
        flat_in = int(W.shape[-1])
        # the Linear's input map: the shape the first Flatten on a path reads (or (N, 1, 1) for a vector)
        in_shape = None
        for path in l.paths:
            if path.flatten:
                first = next(x for x in path.nodes if g.nodes[x].type == "Flatten")
                in_shape = g.nodes[g.predecessors(first)[0]].output_shape
                break
        pre = w.input_shape
        if in_shape is None:
            in_shape = (flat_in, 1, 1) if pre is None or len(pre) == 1 else tuple(pre)
        in_shape = tuple(int(s) for s in in_shape)
        in_shape = (in_shape + (1, 1))[:3] if len(in_shape) < 3 else in_shape
        if len(in_shape) != 3 or int(np.prod(in_shape)) != flat_in or W.ndim != 2:
            viol.append(violation("structure", f"{w.type} input map {in_shape} is not a (C, H, W) map of {flat_in} elements", w))
            return None
        W = W.reshape((W.shape[0],) + in_shape)
        stride, padding, dil, groups = (1, 1), (0, 0), (1, 1), 1
        bias = np.asarray(w.params.get("bias"), dtype=np.float64).ravel() if w.type == "Affine" else np.zeros(W.shape[0])
        bias = np.broadcast_to(bias, (W.shape[0],)).copy()
        neuron_shape = (int(W.shape[0]), 1, 1)
        kind = "linear"
    return dict(W=W, bias=bias, stride=stride, padding=padding, dilation=dil, groups=groups, in_shape=in_shape,
                neuron_shape=neuron_shape, kind=kind)


def _neuron_params(l: _Layer, geo: dict, opts: CompileOptions, topts: dict, viol: list, usage: dict) -> dict | None:
    """The geometry with r*dt, AvgPool factors and threshold folding applied to weights and bias,
    and the layer threshold. None when the neurons cannot map (a violation says why)."""
    n, w = l.node, l.wnode
    ok = True
    disc = discretize_node(n, opts.dt, opts.scheme, name=n.name)
    shape = tuple(int(s) for s in (n.output_shape or disc.shape))
    W, bias = geo["W"], geo["bias"]
    c_out = W.shape[0]
    # per-neuron gain and threshold must be uniform inside each channel
    def per_channel(a, what):
        a = np.broadcast_to(np.asarray(a, dtype=np.float64), shape).reshape(c_out, -1)
        if np.any(a != a[:, :1]):
            bad = int(np.sum(np.any(a != a[:, :1], axis=1)))
            viol.append(violation("per_neuron_" + what, f"{what} differs between neurons of the same channel in {bad} channel(s); Speck shares "
                                  "weights over space and has one threshold per core, so this cannot be folded into the weights", n,
                                  hint=f"use one {what} per channel (or one per layer)"))
            return None
        return a[:, 0].copy()

    gain = per_channel(disc.gain_v, "input gain r*dt")
    thr = per_channel(disc.threshold, "threshold")
    if gain is None or thr is None:
        return None
    if np.any(~(thr > 0)):
        viol.append(violation("threshold_not_positive", f"{int(np.sum(~(thr > 0)))} channel(s) have v_threshold <= 0", n,
                              limit="> 0", actual=float(thr.min()), hint="Speck thresholds must be positive"))
        return None
    if np.any(gain == 0):
        viol.append(violation("zero_gain", "r*dt is 0 for some channels: their input is ignored", n, severity="warning"))
    theta = float(thr.max())
    fold = gain * theta / thr  # exact for IF: v_c * theta/thr_c has the same spikes
    if np.any(thr != theta):
        viol.append(violation("threshold_folded", f"thresholds differ between channels ({thr.min():g} .. {thr.max():g}); folded into each channel's "
                              f"weights and bias (exact for integrate-and-fire; one threshold {theta:g} per core)", n, severity="info"))
    Wf = W * fold[:, None, None, None]
    # AvgPool factors on the input paths: exact only if all sources share one factor
    factors = {p.avg_factor for p in l.paths}
    if len(factors) > 1:
        viol.append(violation("avgpool_rescale", f"sources of {w.name} carry different AvgPool factors {sorted(factors)}: one weight layer "
                              "cannot rescale them differently", w, hint="use SumPool2d and rescale the weights in training"))
        return None
    f = factors.pop() if factors else 1.0
    if f != 1.0:
        Wf = Wf * f
        usage["avgpool_rescale"] = f
        viol.append(violation("avgpool_rescale", f"AvgPool lowered to sum pooling; its 1/{round(1 / f):d} is folded into {w.name}'s weights", w,
                              severity="info"))
    bf = bias * gain * theta / thr
    leak = 0.0
    if n.type == "LIF":
        # the chip has no multiplicative decay: a constant leak current approximates it
        alpha = np.broadcast_to(disc.alpha_v, shape).reshape(c_out, -1)[:, 0]
        bias_v = np.broadcast_to(disc.bias_v, shape).reshape(c_out, -1)[:, 0]
        leak_c = -(1.0 - alpha) * thr / 2.0
        bf = bf + (bias_v + leak_c) * theta / thr
        leak = float(np.min(leak_c))
        viol.append(violation("lif_leak_approximation", f"LIF leak approximated by a constant bias (the decay at half the threshold, "
                              f"{leak:.4g} per step; exact bias v_leak*dt/tau added): the chip's leak is linear, not exponential, and runs "
                              "on the slow clock", n, severity="warning", hint="train with IF neurons for an exact deployment"))
    v_reset = np.asarray(disc.v_reset if disc.v_reset is not None else 0.0)
    if opts.reset == "zero" and np.any(v_reset != 0):
        viol.append(violation("v_reset", "v_reset != 0: Speck resets to zero (return_to_zero) or subtracts the threshold", n,
                              limit=0, actual=float(np.max(np.abs(v_reset))), hint="use v_reset = 0, or compile with --reset subtract"))
        ok = False
    if not ok:
        return None
    return dict(geo, W=Wf, bias=bf, theta=theta)


def _quantize(p: dict, hw: HWConfig, topts: dict, factor: float = 1.0) -> dict:
    """One scale per layer (see the module docstring); integers and statistics. ``factor``
    (calibration) multiplies the weights' 8-bit range scale only, so that above 1 the largest
    weights clip while the bias and the threshold never leave their ranges."""
    wfmt, bfmt, tfmt, sfmt = hw.fmt("weight"), hw.fmt("bias"), hw.fmt("threshold"), hw.fmt("state")
    W32 = np.asarray(p["W"], dtype=np.float32)
    b32 = np.asarray(p["bias"], dtype=np.float32)
    theta = np.float32(p["theta"])
    s_w = range_scale(W32, wfmt.bits)
    s_b = range_scale(b32, bfmt.bits)
    if topts["lower_bound"] == "-threshold":
        s_t = range_scale(np.array([-theta, theta], dtype=np.float32), tfmt.bits)
    else:
        s_t = range_scale(np.array([theta], dtype=np.float32), tfmt.bits)
    s = min(s_w * factor, s_b, s_t)
    if not math.isfinite(s):
        s = 1.0
    Wq_raw = _round32(W32, s)
    bq_raw = _round32(b32, s)
    th_raw = int(_round32(np.array([theta]), s)[0])
    Wq, bq = wfmt.apply(Wq_raw), bfmt.apply(bq_raw)
    th = int(tfmt.apply(np.array([th_raw]))[0])
    if topts["lower_bound"] == "-threshold":
        low = int(tfmt.apply(_round32(np.array([-theta]), s))[0])
    else:
        low = sfmt.min
    nz = W32 != 0
    return dict(
        weight=Wq, bias=bq, threshold_high=th, threshold_low=low, scale=float(s),
        clipped=int(np.sum(Wq != Wq_raw) + np.sum(bq != bq_raw) + (th != th_raw)),
        zeroed=int(np.sum(nz & (Wq == 0))), nonzero=int(np.sum(nz)),
        bias_zeroed=int(np.sum((b32 != 0) & (bq == 0))),
        scale_parts={"weight": s_w, "bias": s_b, "threshold": s_t},
    )


# ---------------------------------------------------------------------------------------------
# main entry point
# ---------------------------------------------------------------------------------------------
def lower(graph: Graph, hw: HWConfig, opts: CompileOptions, *, scale_factor: dict[str, float] | None = None) -> Lowered:
    """Check and lower ``graph``. ``scale_factor``: layer (neuron node) -> factor on its weight
    scale (calibration; see :func:`_quantize`). Every check runs on whatever can be lowered: unsupported nodes
    are named one by one and looked through, so that the other rules (geometry, quantization,
    memory, cores, mapping) still report on the rest of the network. ``Lowered.network`` is None
    unless a Speck network could be built."""
    from nirdeploy.graph.passes import normalize

    topts = resolve_options(opts.extra, hw)
    g = normalize(graph)
    report = FitReport(target=hw.target, variant=hw.variant, settings=opts.to_dict())
    for k in OPTIONS:
        report.settings.pop(k, None)  # recorded once, with defaults, as speck.<option>
    report.settings.update({f"speck.{k}": v for k, v in topts.items()})
    viol = report.violations
    chk = LimitChecker(hw, report)
    st = _structure(g, topts, viol)
    layers = st.layers
    order, acyclic = _order(layers, viol)
    buildable = st.ok and acyclic and st.out_path is not None

    # -- reset / semantics notes ------------------------------------------------------------------
    if opts.reset == "zero":
        report.notes.append("reset: return_to_zero (NIR >= 1.0.6 semantics: v -> v_reset = 0 after a spike)")
    else:
        report.notes.append("reset: subtract the threshold (sinabs' default MembraneSubtract)")
    if opts.quantization != "channel":
        report.notes.append("Speck has one threshold per core: weights always use one scale per layer (the quantization option is ignored)")
    report.notes.append(
        "Speck fires when v >= threshold_high (NIR: v > threshold; option spike_test) and emits at most one spike per input event, so "
        "a step can carry several spikes where the reference emits one; the input events of a step are processed in raster order "
        "(channel, y, x)")

    # -- per layer -------------------------------------------------------------------------------
    usage: dict[str, dict] = {}
    room: dict[str, float] = {}
    built: dict[str, SpeckLayer] = {}
    mems: dict[str, LayerMemory] = {}
    for name in order:
        l = layers[name]
        u: dict[str, Any] = {"weight_node": l.wnode.name}
        usage[name] = u
        geo = _geometry(l, g, viol)
        if geo is None:
            buildable = False
            continue
        c_out, c_in, kh, kw = geo["W"].shape
        sources = [(pa.src, pa.pool) for pa in l.paths]
        u.update({
            "kind": geo["kind"], "input_shape": list(geo["in_shape"]), "neuron_shape": list(geo["neuron_shape"]),
            "kernel": [kh, kw], "stride": list(geo["stride"]), "padding": list(geo["padding"]),
            "sources": [[s if s != INPUT else "input", pool] for s, pool in sources],
        })
        _geometry_rules(l, geo, hw, chk, viol)
        p = _neuron_params(l, geo, opts, topts, viol, u) if l.runnable else None
        if p is None:
            buildable = False
            has_bias = bool(np.any(geo["bias"] != 0))
        else:
            factor = float((scale_factor or {}).get(name, 1.0))
            q = _quantize(p, hw, topts, factor)
            parts = q["scale_parts"]
            room[name] = max(1.0, min(parts["bias"], parts["threshold"]) / parts["weight"]) if parts["weight"] > 0 else 1.0
            has_bias = bool(np.any(p["bias"] != 0))
            sl = SpeckLayer(name=name, weight=q["weight"], bias=q["bias"], threshold_high=q["threshold_high"],
                            threshold_low=q["threshold_low"], return_to_zero=(opts.reset == "zero"), stride=p["stride"],
                            padding=p["padding"], input_shape=p["in_shape"], neuron_shape=p["neuron_shape"], sources=sources,
                            kind=p["kind"], has_bias=has_bias, scale=q["scale"], weight_node=l.wnode.name)
            built[name] = sl
            if factor != 1.0:
                u["scale_factor"] = factor
            u.update({"scale": q["scale"], "threshold_high": q["threshold_high"], "threshold_low": q["threshold_low"],
                      "zeroed_weights": q["zeroed"], "nonzero_weights": q["nonzero"], "clipped_values": q["clipped"]})
            _quantization_rules(sl, l, q, viol)
        mems[name] = memory(c_out, c_in, kh, kw, geo["neuron_shape"][1], geo["neuron_shape"][2], has_bias)
        u["memory"] = mems[name].to_dict()

    # -- wiring: destinations and their pooling ----------------------------------------------------
    _wiring_rules(layers, order, hw, chk, viol)
    if st.out_path is not None and st.out_path.pool != 1:
        report.notes.append(f"the output layer {st.out_path.src} is read before pooling (monitored events are not pooled); the simulator "
                            f"sum-pools them by {st.out_path.pool} on the host side")

    # -- mapping -----------------------------------------------------------------------------
    cores = _map(order, mems, layers, hw, chk, viol, usage, report)
    report.nodes = [NodeUsage(k, layers[k].node.type, usage[k]) for k in order]
    report.details["quantization"] = {k: {"scale": usage[k]["scale"], "threshold_high": usage[k]["threshold_high"],
                                          "threshold_low": usage[k]["threshold_low"], "zeroed_weights": usage[k]["zeroed_weights"],
                                          "clipped_values": usage[k]["clipped_values"]} for k in order if k in built}
    report.details["cores"] = {k: cores.get(k) for k in order if k in mems}
    if not buildable or len(built) != len(order):
        return Lowered(None, report, topts)
    for k, sl in built.items():
        sl.core = cores.get(k)
    out = st.out_path
    net = SpeckNetwork([built[k] for k in order], _input_shape(g), out.src, out.pool,
                       tuple(int(s) for s in (g.outputs[0].input_shape or g.outputs[0].output_shape or ())))
    in_shape = tuple(int(s) for s in (g.inputs[0].output_shape or ()))
    return Lowered(net, report, topts, input_shape=in_shape, output_shape=net.output_shape, scale_room=room)


def _wiring_rules(layers: dict[str, _Layer], order: list[str], hw: HWConfig, chk: LimitChecker, viol: list) -> None:
    """At most ``max_destinations`` destinations per core; sum pooling by the sizes Speck has."""
    lim = hw.limits
    dests: dict[str, list[tuple[str, _Path]]] = {}
    for name in order:
        for pa in layers[name].paths:
            dests.setdefault(pa.src, []).append((name, pa))
    for name in [INPUT] + order:
        mine = dests.get(name, [])
        if name != INPUT:
            chk.check("max_destinations", len(mine), what=f"destinations of {name}", unit="cores", node=layers[name].node,
                      hint="a core sends its spikes to at most two cores: restructure the branches", record=len(mine) > lim["max_destinations"])
        for d, pa in mine:
            if pa.exact and pa.pool not in lim["pooling_sizes"] and not (name == INPUT and pa.pool != 1):
                viol.append(violation("pooling_sizes", f"sum pooling {pa.pool} from {name if name != INPUT else 'the input'} to {d}: Speck pools by "
                                      f"{', '.join(map(str, lim['pooling_sizes']))}", layers[d].node, limit=lim["pooling_sizes"], actual=pa.pool,
                                      hint="use pooling 1, 2 or 4 (chain poolings multiply) or a strided convolution"))


def _input_shape(g: Graph) -> tuple[int, int, int]:
    s = tuple(int(v) for v in (g.inputs[0].output_shape or ()))
    if len(s) == 1:
        return (s[0], 1, 1)
    if len(s) == 2:
        return (s[0], s[1], 1)
    return s  # type: ignore[return-value]


def _geometry_rules(l: _Layer, geo: dict, hw: HWConfig, chk: LimitChecker, viol: list) -> None:
    """Kernel, stride, padding, dilation, groups, channels and map sizes of one layer."""
    lim = hw.limits
    node = l.node
    c_out, _, kh, kw = geo["W"].shape
    linear = geo["kind"] == "linear"
    if kh != kw:
        viol.append(violation("square_kernel", f"kernel {kh}x{kw} is not square" + (" (a Linear layer's kernel is its whole input map)"
                              if linear else ""), l.wnode, limit="square", actual=[kh, kw],
                              hint="use square kernels; for a Linear layer, pool or reshape its input to a square map"))
    chk.check("max_kernel_size", max(kh, kw), what=f"kernel size of {l.wnode.name}", unit="px", node=l.wnode,
              hint="kernels up to 16x16 (a Linear layer's kernel is its whole input map: pool more before it)", record=False)
    for ax, s in zip("yx", geo["stride"]):
        if s not in lim["strides"]:
            viol.append(violation("strides", f"stride {s} (in {ax}) is not one of {', '.join(map(str, lim['strides']))}", l.wnode,
                                  limit=lim["strides"], actual=s, hint="use stride 1, 2, 4 or 8"))
    chk.check("max_padding", max(geo["padding"]), what=f"padding of {l.wnode.name}", unit="px", node=l.wnode, record=False,
              hint="padding up to 7 in each direction")
    chk.check("dilation", max(geo["dilation"]), what=f"dilation of {l.wnode.name}", node=l.wnode, record=False,
              hint="Speck has no dilated convolutions")
    chk.check("groups", geo["groups"], what=f"groups of {l.wnode.name}", node=l.wnode, record=False,
              hint="Speck has no grouped convolutions: expand the weights to a dense kernel")
    chk.check("max_output_channels", c_out, what=f"output channels of {l.wnode.name}", unit="channels", node=l.wnode, record=False,
              hint="at most 1024 features per layer")
    chk.check("max_output_size", max(geo["neuron_shape"][1:]), what=f"output map side of {node.name}", unit="px", node=node, record=False,
              hint="output maps up to 64x64: use a larger stride")
    h, w = geo["in_shape"][1:]
    if max(h, w) > lim["max_input_size"]:
        chk.check("max_input_size", max(h, w), what=f"input map side of {node.name}", unit="pixels", node=node,
                  hint="crop or pool the input to 128x128")


def _quantization_rules(sl: SpeckLayer, l: _Layer, q: dict, viol: list) -> None:
    """What the 8-bit weights and 16-bit thresholds of one layer lose."""
    node = l.node
    if q["nonzero"] and q["zeroed"] == q["nonzero"]:
        viol.append(violation("weights_all_zero", f"all {q['nonzero']} non-zero weights quantize to 0 (scale {q['scale']:.4g})", l.wnode,
                              actual=q["zeroed"], hint="the bias or threshold dominates the scale: reduce the bias or raise the weights"))
    elif q["zeroed"]:
        frac = q["zeroed"] / max(q["nonzero"], 1)
        viol.append(violation("weights_rounded_to_zero", f"{q['zeroed']} of {q['nonzero']} non-zero weights ({100 * frac:.1f} %) quantize to 0 "
                              f"(scale {q['scale']:.4g})", l.wnode, actual=q["zeroed"], severity="warning" if frac > 0.01 else "info",
                              hint="weights far below the largest one lose their 8-bit resolution"))
    if q["bias_zeroed"]:
        viol.append(violation("bias_rounded_to_zero", f"{q['bias_zeroed']} non-zero bias value(s) quantize to 0", l.wnode, severity="warning"))
    if q["threshold_high"] < 1:
        viol.append(violation("threshold_rounds_to_zero", f"threshold quantizes to {q['threshold_high']} (scale {q['scale']:.4g}): every "
                              "event would fire", node, limit=">= 1", actual=q["threshold_high"],
                              hint="the weights are more than 254x the threshold: lower them"))
    big = int(np.sum(np.abs(sl.weight) > sl.threshold_high)) if q["threshold_high"] >= 1 else 0
    if big:
        viol.append(violation("weight_above_threshold", f"{big} weight(s) exceed threshold_high {sl.threshold_high}: one input event crosses the "
                              "threshold more than once, but Speck emits at most one spike per event (sinabs' MultiSpike emits several)", node,
                              actual=big, severity="warning", hint="raise the threshold or train with weights below it"))


def _map(order: list[str], mems: dict[str, LayerMemory], layers, hw: HWConfig, chk: LimitChecker, viol: list, usage,
         report) -> dict[str, int]:
    """Cores for every layer (a layer whose geometry is unknown counts as a core but takes part in
    no matching), with the per-core memory table; returns layer -> core for the placed ones."""
    lim = hw.limits
    K, N, B = lim["kernel_memory"], lim["neuron_memory"], lim["bias_memory"]
    n_cores = int(lim["cores"])
    chk.check("cores", len(order), what="cores (one per neuron layer)", unit="cores",
              hint=f"Speck has {n_cores} cores: merge or remove layers")
    names = [k for k in order if k in mems]
    cands = [candidate_cores(mems[k], K, N, B) for k in names]
    for k, c in zip(names, cands):
        usage[k]["candidate_cores"] = c
        if not c:
            m = mems[k]
            why = []
            if m.kernel > max(K):
                why.append(f"kernel memory {m.kernel} > {max(K)} (largest core)")
            if m.neuron > max(N):
                why.append(f"neuron memory {m.neuron} > {max(N)} (largest core)")
            if m.bias > max(B):
                why.append(f"bias memory {m.bias} > {max(B)}")
            if not why:
                kc = [i for i, x in enumerate(K) if m.kernel <= x]
                nc = [i for i, x in enumerate(N) if m.neuron <= x]
                why.append(f"kernel memory {m.kernel} fits cores {kc} and neuron memory {m.neuron} fits cores {nc}: no core holds both")
            viol.append(violation("core_memory", f"{k} fits no core: " + "; ".join(why), layers[k].node,
                                  limit={"kernel": max(K), "neuron": max(N)}, actual=m.to_dict(),
                                  hint="fewer channels, a smaller kernel, or a larger stride / pooling before this layer"))
    res = assign_cores(cands, n_cores)
    cores = {names[i]: c for i, c in res.assignment.items()}
    for k, c in cores.items():
        usage[k]["core"] = c
    for layers_idx, group in res.conflicts:
        lnames = [names[i] for i in layers_idx]
        viol.append(violation("core_mapping", f"layers {', '.join(lnames)} only fit cores {group}: {len(lnames)} layers for {len(group)} core(s)",
                              layers[lnames[0]].node, limit=len(group), actual=len(lnames),
                              hint="shrink one of these layers so that it fits a smaller core"))
    for i in res.unplaced:
        if cands[i]:
            usage[names[i]]["core"] = None
    # the per-core memory table
    by_core = {c: k for k, c in cores.items()}
    for c in range(n_cores):
        k = by_core.get(c)
        m = mems[k] if k is not None else LayerMemory(0, 0, 0)
        tag = f" ({k})" if k is not None else ""
        chk.check("kernel_memory", m.kernel, what=f"core {c} kernel memory{tag}", unit="words", index=c)
        chk.check("neuron_memory", m.neuron, what=f"core {c} neuron memory{tag}", unit="words", index=c)
        if m.bias:
            chk.check("bias_memory", m.bias, what=f"core {c} bias memory{tag}", unit="words", index=c)
    report.details["memory"] = {k: mems[k].to_dict() for k in names}
    return cores
