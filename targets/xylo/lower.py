"""Lower a NIR graph onto Xylo: structure, discretization, quantization and fit rules.

Structure (the Xylo core is one recurrent population between an input and an output layer):

* every neuron layer that feeds the graph's Output is an **output layer** (``weights_out``);
  all other neuron layers are **hidden** and share the hidden population;
* weights from the Input go to ``weights_in``; weights from a hidden layer to another hidden
  layer (feed-forward or recurrent alike) go to ``weights_rec``; weights into an output layer go
  to ``weights_out``. Chains of Affine / Linear / Scale nodes are folded into one matrix, and
  an edge straight from the Input or a neuron layer is an identity matrix;
* an LI node that feeds only LIF layers of its own size is a synaptic current (NIR's
  composition CubaLIF = LI;LIF) and becomes a Xylo synapse of those neurons; a layer fed
  through two such filters with different time constants uses Isyn and Isyn2 (Audio 2 / 3);
* every hidden->hidden and hidden->output hop costs one Xylo step; the reference simulator pays
  one step only on recurrent (delayed) edges. The difference is the **latency** in the report.

Discretization: ``dash = round(-log2(1 - alpha))`` where alpha is the discrete decay of the
chosen scheme, rounded to the nearest integer in the log domain (half up), then clipped to the
dash format. For forward Euler this is ``round(log2(tau/dt))``.

Matching the update (see xylo.md section 6): Xylo adds an input event to Isyn *before* the synaptic
decay, so an event arrives scaled by ``(1 - 2**-dash_syn)``; we divide the weights by that factor
(Rockpool does not), and fold the neuron's input gain ``gain_v * gain_i`` into the weights so
that Xylo's ``v += Isyn`` matches ``v = alpha_v v + gain_v i``. A LIF has no synaptic current; Xylo
always has one, so a LIF gets ``dash_syn = 1`` and weights that deliver the same total charge,
spread over a few steps (a warning says so).

Quantization: per post-neuron scale ``s`` (``"channel"``) or one scale for the hidden population
and one for the outputs (``"global"``). The scale aims the threshold at ``THRESHOLD_TARGET`` for
state resolution and headroom, and each weight matrix gets the smallest left shift that lets the
largest weight use the int8 range; then ``s`` is lowered where a weight would not fit. A neuron
that would lose every input weight gets a larger scale when its threshold leaves room (else it is
a blocking violation); a Vmem readout gets a smaller one when a single source firing every step
would overflow int16. Calibration (``calibrate.py``) multiplies the scales by per-neuron factors.

Nothing is lost silently: synapses whose decay would round to dash 0 (no signal at all) are
raised to the hw_config's ``dash_min_useful`` with a warning stating the effective tau, forward
Euler with dt > 2 tau is a blocking violation, a time constant that changes by more than 5 % and
a matrix that loses more than 5 % of its weights to int8 rounding are warnings with numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nirdeploy.graph.discretize import NeuronDiscretization, discretize_node
from nirdeploy.backend.hwconfig import HWConfig
from nirdeploy.graph.ir import Graph, Node
from nirdeploy.backend.report import FitReport, NodeUsage, Resource, Violation
from nirdeploy.backend.target import CompileOptions

from .config import XyloConfig
from .rules import LayerMap, fit_rules, size_rules

__all__ = ["lower", "Lowered", "SUPPORTED_NODES", "THRESHOLD_TARGET"]

LINEAR_TYPES = ("Affine", "Linear", "Scale", "Flatten")
NEURON_TYPES = ("LIF", "CubaLIF", "LI", "CubaLI")
SPIKING = ("LIF", "CubaLIF")
SUPPORTED_NODES = frozenset(("Input", "Output", "NIRGraph") + LINEAR_TYPES + NEURON_TYPES)
THRESHOLD_TARGET = 4096  # quantized threshold aimed at: 2**12 leaves 8x headroom for Vmem in int16


@dataclass
class _Contribution:
    src: str  # "__input__" or a neuron layer name
    matrix: np.ndarray | None  # (n_dst, n_src); None where a node on the path has no known weights (checks only)
    bias: np.ndarray | None  # (n_dst,); None with the matrix
    delays: int  # delayed (recurrent) edges on the path in the reference graph
    filt: str | None = None  # the LI node acting as this input's synapse (see _structure)
    nodes: tuple[str, ...] = ()  # the linear nodes on the path, source side first (for the chip model)


@dataclass
class _Layer:
    name: str
    node: Node
    n: int
    role: str = "hidden"  # hidden | output
    contributions: list[_Contribution] = field(default_factory=list)
    offset: int = 0  # first hidden / output id
    disc: NeuronDiscretization | None = None
    latency: int = 0
    kinds: list = field(default_factory=list)  # synapse kinds: None (own / direct) or LI filter names
    stand_in: bool = False  # neurons Xylo cannot run (named as unsupported), counted for the checks


@dataclass
class Lowered:
    config: XyloConfig | None
    report: FitReport
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    latency_steps: int = 0
    readout: str = "spikes"  # spikes | vmem
    output_scale: np.ndarray | None = None  # Vmem_out / output_scale = reference voltage (LI readout)
    output_offset: int = 0
    layers: "LayerMap | None" = None  # which NIR layer owns which chip neuron (None after load: see the report's nodes)
    scales: tuple | None = None  # (hidden, output) quantization scales: chip units per reference unit
    #: per layer (hidden ones first, then the output layer): how NIR weights become chip weights,
    #: for the chip model (nirdeploy_targets.xylo.torch_model); None after load
    paths: list | None = None
    # the configuration the fit rules ran on when nodes Xylo cannot run were looked through (not deployable; config is None)
    checked_config: XyloConfig | None = None


INPUT = "__input__"


def _named(layers) -> "Node | None":
    """Several layers as one violation location: their names, and their type when they share one."""
    layers = [l for l in layers if l is not None]
    if not layers:
        return None
    nodes = [getattr(l, "node", l) for l in layers]
    types = {n.type for n in nodes}
    return Node(", ".join(n.name for n in nodes), types.pop() if len(types) == 1 else "", {})


def _v(rule, message, node: Node | None = None, *, limit=None, actual=None, hint="", severity="error") -> Violation:
    return Violation(
        rule=rule,
        message=message,
        node=node.name if node is not None else "",
        node_type=node.type if node is not None else "",
        limit=limit,
        actual=actual,
        hint=hint,
        severity=severity,
    )


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------
def _linear_apply(node: Node, m: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = node.type
    if t in ("Affine", "Linear"):
        w = np.asarray(node.params["weight"], dtype=np.float64)
        w = w.reshape(w.shape[-2], w.shape[-1])
        bias = np.asarray(node.params.get("bias", 0.0), dtype=np.float64).reshape(-1) if t == "Affine" else 0.0
        return w @ m, w @ b + bias
    if t == "Scale":
        s = np.asarray(node.params["scale"], dtype=np.float64).reshape(-1)
        return s[:, None] * m, s * b
    return m, b  # Flatten of a 1-D vector


def _size(shape) -> int:
    return int(np.prod(shape)) if shape is not None else 0


# For the checks only, so that every violation is reported together: nodes Xylo cannot run are
# named, then looked through. Neurons Xylo cannot run still make a layer (its neurons are counted
# and its role is checked); elementwise nodes are passed over as if removed (Delay, Dropout) or
# folded into the weights (BatchNorm, as its hint says); through any other node (convolution,
# pooling) the sources are followed but the weights are not known.
STAND_IN_NEURONS = ("IF", "I", "Threshold")
ELEMENTWISE_LOOKED_THROUGH = ("Delay", "Dropout", "BatchNorm1d", "BatchNorm2d")
# the rules on the chip's weight matrices (windows, fan-out, memory, quantization, formats) run on
# dense float matrices; past this many entries (inputs + neurons, squared) a network is far beyond
# every Xylo (at least 4x its neurons) and only the size rules run, with a note
MAX_WEIGHT_ENTRIES = 1 << 24


@dataclass
class _Structure:
    inputs: list[Node]
    out: Node  # the first Output node
    layers: dict[str, _Layer]
    filters: dict[str, Node]
    out_layers: list[str]  # the layers that feed the Output(s)
    n_in: int  # input channels (every Input together)
    unsupported: list[str]  # nodes Xylo cannot run, in graph order (named as violations)
    no_weights: str  # why some path's weights are not known ("" when all are)
    wired: bool  # no structural violation: the chip's matrices can be built (perhaps with nodes looked through)

    @property
    def ok(self) -> bool:
        """A configuration can be built and deployed: wired, every weight known and every node supported."""
        return self.wired and not self.no_weights and not self.unsupported


def _elementwise(node: Node, m: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A looked-through elementwise node on a 1-D path: Delay and Dropout as if removed, BatchNorm
    folded (y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, PyTorch's defaults)."""
    if not node.type.startswith("BatchNorm"):
        return m, b
    p, n = node.params, b.shape[0]

    def par(key: str, default: float) -> np.ndarray:
        return _vec(p[key], n) if p.get(key) is not None else np.full(n, default)

    eps = float(np.asarray(p["eps"], dtype=np.float64).reshape(-1)[0]) if p.get("eps") is not None else 1e-5
    gain = par("weight", 1.0) / np.sqrt(par("running_var", 1.0) + eps)
    return gain[:, None] * m, gain * (b - par("running_mean", 0.0)) + par("bias", 0.0)


def _proxy(node: Node, dt: float, hw: HWConfig) -> Node:
    """For the checks only: a Xylo neuron standing in for a neuron Xylo cannot run (named as
    unsupported), so that the weight rules (windows, fan-out, memory, quantization) run on its
    layer: an integrator (IF, I) as the chip's slowest leak (dash 2**max), a Threshold as a LIF
    that forgets in one step. Its own parameters never reach a violation."""
    n = _size(node.output_shape)
    p = node.params
    tau = np.full(n, (2.0 ** hw.fmt("dash").max) * dt if node.type in ("IF", "I") else dt)
    r = _vec(p["r"], n) if p.get("r") is not None else np.ones(n)
    params = {"tau": tau, "r": r * tau / dt, "v_leak": np.zeros(n)}  # the integrator's input gain r dt kept (LIF: r dt / tau)
    typ = "LI"
    if node.type != "I":
        thr = p.get("v_threshold", p.get("threshold"))
        params.update(v_threshold=_vec(thr, n) if thr is not None else np.ones(n), v_reset=np.zeros(n))
        typ = "LIF"
    return Node(node.name, typ, params, output_shape=(n,))


def _unsupported_violation(n: Node) -> Violation:
    if n.type in STAND_IN_NEURONS:
        msg = f"{n.type} has no Xylo equivalent: Xylo neurons are leaky (LIF with a synaptic current)"
    else:
        msg = f"{n.type} has no Xylo equivalent"
    return _v("unsupported_node", msg, n, hint="Xylo runs Affine/Linear weights into LIF or CubaLIF neurons (LI/CubaLI as readout)")


def _structure(g: Graph, hw: HWConfig, viol: list[Violation]) -> _Structure | None:
    """Neuron layers with their input contributions, whatever else is wrong: each problem is a
    violation, and what can still be identified (layers, roles, sources, weights where known) is
    returned so that the size and per-layer rules run on it. None only when the graph has no
    Input or no Output."""
    wired = True
    inputs, outputs = g.inputs, g.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        viol.append(_v("single_input_output", f"Xylo takes one Input and one Output node; the graph has {len(inputs)} and {len(outputs)}",
                       _named(inputs + outputs) if inputs or outputs else Node("graph", "NIRGraph", {}), limit=1, actual=max(len(inputs), len(outputs)), hint="split the graph, or merge its inputs into one vector"))
        wired = False
        if not inputs or not outputs:
            return None
    out = outputs[0]
    out_names = {o.name for o in outputs}
    unsupported = [name for name, n in g.nodes.items() if n.type not in SUPPORTED_NODES]
    for name in unsupported:  # first: the most useful thing to know
        viol.append(_unsupported_violation(g.nodes[name]))

    def flattened(name: str) -> bool:  # every path out of `name` passes a Flatten to one dimension
        succ = g.successors(name)
        return bool(succ) and all(g.nodes[s].type == "Flatten" and g.nodes[s].output_shape is not None
                                  and len(g.nodes[s].output_shape) <= 1 for s in succ)

    one_d = True
    for n in g.nodes.values():
        if n.type != "NIRGraph":
            shp = n.output_shape if n.type != "Output" else n.input_shape
            if shp is not None and len(shp) > 1:
                if n.type == "Input" and flattened(n.name):
                    continue  # an N-d input flattened before any weight: the chip sees the flat vector
                one_d = False
                if n.name in unsupported:
                    continue  # already named
                if n.type == "Flatten":
                    msg, hint = (f"Flatten {n.name!r} leaves shape {tuple(shp)}; Xylo layers are vectors",
                                 "flatten every dimension (start_dim 0, end_dim -1 in NIR's batch-less dims)")
                else:
                    msg, hint = (f"Xylo layers are vectors; {n.type} has shape {tuple(shp)}",
                                 "flatten the network to 1-D layers" + (": put a Flatten right after the Input" if n.type == "Input" else ""))
                viol.append(_v("not_one_dimensional", msg, n, limit=1, actual=len(shp), hint=hint))

    layers: dict[str, _Layer] = {n: _Layer(n, g.nodes[n], _size(g.nodes[n].output_shape), stand_in=g.nodes[n].type in STAND_IN_NEURONS)
                                 for n in g.nodes if g.nodes[n].type in NEURON_TYPES + STAND_IN_NEURONS}
    # An LI node that feeds only LIF layers of its own size, directly, is a synaptic current
    # (NIR's documented composition CubaLIF = LI;LIF): it becomes a Xylo synapse of those
    # neurons. Two such filters with different time constants use Isyn and Isyn2.
    filters: dict[str, Node] = {}
    for name, n in g.nodes.items():
        succ = g.successors(name)
        if n.type == "LI" and succ and all(s in layers and g.nodes[s].type == "LIF" and layers[s].n == layers[name].n for s in succ):
            filters[name] = n
    for name in filters:
        del layers[name]
    in_off: dict[str, tuple[int, int]] = {}
    n_in = 0
    for i in inputs:  # several Inputs: checked as one vector, in graph order
        in_off[i.name] = (n_in, _size(i.output_shape))
        n_in += in_off[i.name][1]
    n_all = n_in + sum(l.n for l in layers.values()) + sum(_size(f.output_shape) for f in filters.values())
    no_weights = ("some layers are not vectors" if not one_d else
                  f"the network has {n_in} inputs and {n_all - n_in} neurons, far beyond any Xylo" if n_all * n_all > MAX_WEIGHT_ENTRIES else "")
    weights = not no_weights
    memo: dict[str, list[_Contribution]] = {}
    opaque: list[str] = []  # nodes whose weights are not known

    def contributions(name: str, stack: tuple[str, ...] = ()) -> list[_Contribution]:
        node = g.nodes[name]
        if name in in_off:
            off, k = in_off[name]
            m = np.eye(k, n_in, off) if weights else None
            return [_Contribution(INPUT, m, np.zeros(k) if weights else None, 0)]
        if name in layers:
            n = layers[name].n
            return [_Contribution(name, np.eye(n) if weights else None, np.zeros(n) if weights else None, 0)]
        if name in memo:
            return memo[name]
        if name in stack:  # a cycle without neurons: validation rejects it; guard anyway
            raise ValueError(f"algebraic loop through {name}")
        res: list[_Contribution] = []
        for p in g.predecessors(name):
            d = 1 if (p, name) in g.delayed_edges else 0
            for c in contributions(p, stack + (name,)):
                if c.matrix is None:
                    m, b = None, None
                elif node.type in LINEAR_TYPES:
                    m, b = _linear_apply(node, c.matrix, c.bias)
                elif node.type in ELEMENTWISE_LOOKED_THROUGH:
                    m, b = _elementwise(node, c.matrix, c.bias)
                else:  # a node Xylo cannot run whose map is not elementwise: sources only
                    m, b = None, None
                    opaque.append(name)
                res.append(_Contribution(c.src, m, b, c.delays + d, nodes=c.nodes + (name,)))
        memo[name] = res
        return res

    def feeds_output(name: str) -> bool:  # `name` reaches an Output directly or through looked-through elementwise nodes only
        succ = g.successors(name)
        return bool(succ) and all(s in out_names or (g.nodes[s].type in ELEMENTWISE_LOOKED_THROUGH and feeds_output(s)) for s in succ)

    def output_feeders(name: str, seen: tuple[str, ...] = ()) -> list[str]:  # back from an Output through looked-through nodes
        res = []
        for p in g.predecessors(name):
            if g.nodes[p].type in ELEMENTWISE_LOOKED_THROUGH and p not in seen:
                res += output_feeders(p, seen + (p,))
            else:
                res.append(p)
        return res

    for name, layer in layers.items():
        for p in g.predecessors(name):
            d = 1 if (p, name) in g.delayed_edges else 0
            if p in filters:
                for pp in g.predecessors(p):
                    d2 = 1 if (pp, p) in g.delayed_edges else 0
                    for c in contributions(pp):
                        layer.contributions.append(_Contribution(c.src, c.matrix, c.bias, c.delays + d + d2, filt=p, nodes=c.nodes))
                continue
            for c in contributions(p):
                layer.contributions.append(_Contribution(c.src, c.matrix, c.bias, c.delays + d, nodes=c.nodes))
        layer.kinds = list(dict.fromkeys(c.filt for c in layer.contributions))
        lim_syn = hw.limits["synapses_per_output" if feeds_output(name) else "synapses_per_hidden"]
        if len(layer.kinds) > lim_syn:
            viol.append(_v("synapses_per_neuron", f"the layer needs {len(layer.kinds)} synaptic time constants "
                           f"({', '.join(k or 'direct input' for k in layer.kinds)}); {hw.name} has {lim_syn} synapse(s) per neuron here",
                           layer.node, limit=lim_syn, actual=len(layer.kinds),
                           hint="merge the synaptic filters into one time constant" + (" or use Xylo Audio 2/3 (two synapses)" if lim_syn == 1 else "")))
            wired = False
        if not layer.contributions:
            viol.append(_v("unconnected_layer", "neuron layer receives no input", layer.node, hint="remove it or connect it"))
            wired = False

    # which layers feed the Output node (directly: Xylo has no weights after the output neurons)
    feeding = list(dict.fromkeys(p for o in outputs for p in output_feeders(o.name)))
    for p in feeding:
        if p not in layers:
            if p not in unsupported:  # an unsupported node is named already
                viol.append(_v("output_must_be_neurons", f"the Output is fed by {g.nodes[p].type} {p!r}, not by a neuron layer", out,
                               hint="end the network with a LIF/CubaLIF (or LI/CubaLI readout) layer: Xylo reads output neurons"))
            wired = False
    out_layers = [p for p in feeding if p in layers]
    if len(out_layers) > 1:
        viol.append(_v("single_output_layer", f"{len(out_layers)} neuron layers feed the Output: {', '.join(out_layers)}", out,
                       limit=1, actual=len(out_layers), hint="concatenate them into one output layer"))
        wired = False
    if not out_layers:
        if not feeding:
            viol.append(_v("output_must_be_neurons", "no neuron layer feeds the Output", out))
        wired = False
    for name in out_layers:
        layers[name].role = "output"
    # rules on roles
    for name, layer in layers.items():
        if layer.role == "output":
            if not feeds_output(name):
                viol.append(_v("output_neurons_cannot_be_recurrent", "the output layer also feeds other nodes; Xylo output neurons only drive the output", layer.node,
                               hint="add a hidden copy of this layer for the recurrent/forward path"))
                wired = False
            if any(c.src == INPUT for c in layer.contributions):
                viol.append(_v("input_to_output", "the Input connects straight to the output layer; Xylo inputs only reach hidden neurons", layer.node,
                               hint="insert a hidden LIF layer between the input and the output (Xylo needs at least two neuron layers)"))
                wired = False
        elif layer.node.type not in SPIKING and not layer.stand_in:  # a stand-in is named already
            viol.append(_v("hidden_must_spike", f"hidden {layer.node.type} neurons do not spike; only spikes travel between Xylo neurons", layer.node,
                           hint="use LIF/CubaLIF in hidden layers; LI/CubaLI only as the output readout"))
            wired = False
        for c in layer.contributions:
            if c.delays > 1:
                viol.append(_v("multi_step_delay", f"a path from {c.src} carries {c.delays} one-step delays", layer.node, limit=1, actual=c.delays))
                wired = False
    if opaque and not no_weights:
        names = list(dict.fromkeys(opaque))
        no_weights = f"the weights through {', '.join(names)} ({', '.join(dict.fromkeys(g.nodes[n].type for n in names))}) are not known"
    return _Structure(inputs, out, layers, filters, out_layers, n_in, unsupported, no_weights, wired and one_d)


def _order_hidden(g: Graph, layers: dict[str, _Layer]) -> list[_Layer]:
    """Input-fed layers first (Audio 3 / IMU input window), output-feeding layers last (output window)."""
    order = {n: i for i, n in enumerate(g.nodes)}
    hidden = [l for l in layers.values() if l.role == "hidden"]
    feeds_out = {c.src for l in layers.values() if l.role == "output" for c in l.contributions}

    def key(l: _Layer):
        input_fed = any(c.src == INPUT for c in l.contributions)
        return (0 if input_fed else 1, 1 if l.name in feeds_out else 0, order[l.name])

    return sorted(hidden, key=key)


def _latencies(hidden: list[_Layer], out_layer: _Layer, viol: list[Violation]) -> int:
    lat: dict[str, int] = {INPUT: 0}
    for _ in range(len(hidden) + 2):  # relax (graphs are small)
        for l in hidden + [out_layer]:
            cands = [lat[c.src] + (0 if c.src == INPUT else 1) - c.delays for c in l.contributions if c.src in lat]
            if cands:
                lat[l.name] = max(cands)
    mismatch = []
    for l in hidden + [out_layer]:
        for c in l.contributions:
            if c.src in lat and l.name in lat:
                if lat[c.src] + (0 if c.src == INPUT else 1) - c.delays != lat[l.name]:
                    mismatch.append(f"{c.src} -> {l.name}")
        l.latency = lat.get(l.name, 0)
    if mismatch:
        viol.append(_v("latency_mismatch", "paths into a layer reach it with different Xylo latencies, so the chip's timing differs from the "
                       f"reference by more than a constant shift: {', '.join(sorted(set(mismatch)))}",
                       _named([l for l in hidden + [out_layer] if any(m.endswith(f"-> {l.name}") for m in mismatch)]), severity="warning",
                       hint="avoid skip connections around hidden layers, or retrain with the per-hop delay"))
    return lat.get(out_layer.name, 0)


# ---------------------------------------------------------------------------------------------
# discretization
# ---------------------------------------------------------------------------------------------
def _dash(alpha: np.ndarray, fmt) -> np.ndarray:
    """round(-log2(1 - alpha)) in the log domain, half up; alpha <= 0 gives 0, alpha >= 1 the max."""
    a = np.asarray(alpha, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = -np.log2(1.0 - a)
    d = np.where(a <= 0, 0.0, d)
    d = np.where(a >= 1, float(fmt.max) + 1, d)
    return np.floor(d + 0.5)


def _tau_eff(dash: np.ndarray, dt: float, scheme: str) -> np.ndarray:
    d = np.asarray(dash, dtype=np.float64)
    if scheme == "exact":
        with np.errstate(divide="ignore"):
            return np.where(d > 0, -dt / np.log1p(-(2.0 ** -d)), 0.0)
    return np.where(d > 0, dt * 2.0**d, 0.0)


@dataclass
class _ChipLayer:
    """Float chip parameters of one layer, before quantization."""

    dash_mem: np.ndarray
    dash_syn: list[np.ndarray]  # one per synapse kind (layer.kinds)
    k: list[np.ndarray]  # per kind: factor from the layer's NIR input to chip Isyn units
    threshold: np.ndarray
    bias: np.ndarray  # per-step additive term on Vmem (float)


TAU_CHANGE_WARN = 0.05  # requested vs effective time constant: a warning above this relative change


def _stability(tau: np.ndarray, what: str, node: Node, dt: float, scheme: str, viol: list[Violation]) -> None:
    """Forward Euler diverges for dt > 2 tau (|1 - dt/tau| > 1): a blocking violation."""
    if scheme != "euler":
        return
    bad = np.asarray(tau) * 2.0 < dt
    if np.any(bad):
        viol.append(_v("unstable_discretization", f"{int(bad.sum())} neuron(s) have dt = {dt:g} s > 2 {what} (min {what} {float(np.min(tau)):.3g} s): "
                       f"the forward-Euler decay 1 - dt/{what} = {1 - dt / float(np.min(tau)):.3g} makes the state grow without bound, "
                       "so the reference diverges and no chip configuration can follow it", node, limit=f"{what} >= dt/2", actual=float(np.min(tau)),
                       hint=f"a {what} this short is often a unit error in the exporter (seconds vs milliseconds); check it, or pass "
                            "--scheme exact (exponential decay, stable for every dt)"))


def _check_dash(what: str, raw, used, tau, node, dfmt, dt, scheme, viol, usage, label: str) -> None:
    """Record requested vs effective time constants; warn about clipping, dash 0 and changes > 5 %."""
    if np.any(raw > dfmt.max):
        viol.append(_v(f"{what}_clipped", f"{int(np.sum(raw > dfmt.max))} neuron(s) need {what} > {dfmt.max}; clipped (time constant shortened)",
                       node, limit=dfmt.max, actual=int(raw.max()), severity="warning", hint=f"tau/dt must stay below 2**{dfmt.max}: use a larger dt"))
    if what == "dash_mem" and np.any(used == 0):
        viol.append(_v(f"{what}_zero", f"{int(np.sum(used == 0))} neuron(s) round to {what} = 0: the membrane is cleared every step, a memoryless "
                       f"neuron (tau below about 1.41 dt: min tau {float(tau.min()):.3g} s vs dt {dt:.3g} s); a Vmem that reaches -32768 stays there",
                       node, limit=1, actual=0, severity="warning", hint="use a smaller dt or a longer time constant"))
    eff = _tau_eff(used, dt, scheme)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(tau > 0, np.abs(eff - tau) / tau, 0.0)
    usage[f"{label}_requested_s"] = _span(tau)
    usage[f"{label}_effective_s"] = _span(eff)
    usage[what] = _span(used)
    usage[f"{label}_max_rel_error"] = float(np.max(rel)) if rel.size else 0.0
    changed = rel > TAU_CHANGE_WARN
    if np.any(changed):
        i = int(np.argmax(rel))
        viol.append(_v("time_constant_changed", f"{label}: requested {float(tau[i]):.4g} s, effective on the chip {float(eff[i]):.4g} s "
                       f"({100 * (eff[i] - tau[i]) / tau[i]:+.0f} %; {int(changed.sum())} of {changed.size} neuron(s) change by more than "
                       f"{100 * TAU_CHANGE_WARN:.0f} %; Xylo decays by 2**-dash, {what} {int(used[i])})", node, limit=f"{100 * TAU_CHANGE_WARN:.0f} %",
                       actual=f"{100 * float(rel[i]):.0f} %", severity="warning",
                       hint="train with time constants tau = dt * 2**k (Euler) so that they map exactly, or choose dt accordingly"))


def _vec(a, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(a, dtype=np.float64).reshape(-1), (n,)).copy()


def _chip_layer(layer: _Layer, filters: dict[str, Node], hw: HWConfig, opts: CompileOptions, viol: list[Violation], usage: dict) -> _ChipLayer:
    d = layer.disc
    node = layer.node
    n = layer.n
    dfmt = hw.fmt("dash")
    dt = opts.dt
    dash_min = int(hw.limits.get("dash_min_useful", dfmt.min))
    raw_mem = _dash(d.alpha_v, dfmt)
    dash_mem = np.clip(raw_mem, dfmt.min, dfmt.max)
    tau_mem = _vec(node.params["tau_mem" if node.type.startswith("Cuba") else "tau"], n)
    _stability(tau_mem, "tau_mem" if node.type.startswith("Cuba") else "tau", node, dt, opts.scheme, viol)
    _check_dash("dash_mem", raw_mem, dash_mem, tau_mem, node, dfmt, dt, opts.scheme, viol, usage, "tau_mem")
    compensate = opts.extra.get("compensate_synapse_gain", True)  # False: Rockpool's behaviour, for comparisons
    gain_v = _vec(d.gain_v, n)
    dashes, ks = [], []
    bias = _vec(d.bias_v, n)
    for i, kind in enumerate(layer.kinds):
        suffix = "" if i == 0 else "_2"
        b_in = sum((c.bias for c in layer.contributions if c.filt == kind and c.bias is not None), np.zeros(n))
        if kind is None and not d.cuba:
            # a LIF/LI without a synaptic current: Xylo always has one; dash 1, same total charge
            dash = np.full(n, float(max(dash_min, 1)))
            a_syn = 1.0 - 2.0 ** (-dash)
            k = gain_v * (1.0 - a_syn) / (a_syn if compensate else 1.0)
            steady = gain_v * b_in
            viol.append(_v("lif_synapse_added", f"{node.type} has no synaptic current; Xylo always has one, so it gets dash_syn{suffix} = {int(dash[0])} "
                           f"(tau_syn = {_tau_eff(dash[:1], dt, opts.scheme)[0]:.3g} s) and weights that deliver the same total charge "
                           "over a few steps instead of at once", node, severity="warning", hint="export CubaLIF from the training library for an exact match"))
            usage.setdefault("synapse_kinds", []).append("added")
        else:
            if kind is None:  # CubaLIF / CubaLI: the neuron's own synapse
                alpha, gain, tau, cbias = d.alpha_i, d.gain_i, _vec(node.params["tau_syn"], n), np.zeros(n)
                tname, snode = "tau_syn", node
                usage.setdefault("synapse_kinds", []).append("own")
            else:  # an LI node acting as the synapse
                f = discretize_node(filters[kind], dt, opts.scheme, name=kind)
                alpha, gain, tau, cbias = f.alpha_v, f.gain_v, _vec(filters[kind].params["tau"], n), _vec(f.bias_v, n)
                tname, snode = "tau", filters[kind]
                usage.setdefault("synapse_filters", []).append(kind)
                usage.setdefault("synapse_kinds", []).append(kind)
            _stability(tau, tname, snode, dt, opts.scheme, viol)
            alpha, gain = _vec(alpha, n), _vec(gain, n)
            raw = _dash(alpha, dfmt)
            dash = np.clip(raw, max(dfmt.min, dash_min), dfmt.max)
            low = raw < dash_min
            if np.any(low):
                eff = _tau_eff(np.array([float(dash_min)]), dt, opts.scheme)[0]
                viol.append(_v(f"dash_syn{suffix}_raised", f"{int(low.sum())} synapse(s) round to dash_syn{suffix} < {dash_min}: Xylo decays a synaptic "
                               f"current right after delivering the event, so dash 0 would clear it and the neurons would receive no input at all; "
                               f"raised to dash {dash_min}, effective tau_syn {eff:.3g} s (requested {float(np.min(tau)):.3g} s, dt {dt:g} s)",
                               snode, limit=dash_min, actual=int(raw.min()), severity="warning",
                               hint=f"tau_syn below about 1.41 dt cannot be represented: train with tau_syn >= {1.5 * dt:.3g} s, or use a smaller dt"))
            _check_dash(f"dash_syn{suffix}", raw, dash, tau, snode, dfmt, dt, opts.scheme, viol, usage, f"tau_syn{suffix}")
            a_syn = 1.0 - 2.0 ** (-dash)  # gain of an event through Xylo's delivery-then-decay
            safe = np.where((a_syn > 0) & compensate, a_syn, 1.0)
            k = gain_v * gain / safe
            with np.errstate(divide="ignore", invalid="ignore"):
                steady = np.where(alpha < 1, gain_v * (gain * b_in + cbias) / (1.0 - alpha), 0.0)
        if np.any(b_in != 0):
            viol.append(_v("affine_bias_folded", "Xylo weights have no bias: the Affine bias feeding this layer becomes a constant Vmem bias "
                           "(its steady-state value; the synaptic rise time is lost)", node, severity="warning",
                           hint="train with Linear layers (no bias) for an exact match"))
        bias = bias + steady
        dashes.append(dash.astype(np.int64))
        ks.append(k)
    thr = _vec(d.threshold, n) if d.spiking else np.full(n, np.nan)
    return _ChipLayer(dash_mem.astype(np.int64), dashes, ks, thr, bias)


def _span(a) -> list[float] | float:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return 0.0
    lo, hi = float(a.min()), float(a.max())
    return lo if lo == hi else [lo, hi]


# ---------------------------------------------------------------------------------------------
# quantization
# ---------------------------------------------------------------------------------------------
def _shift_for(scale: np.ndarray, wmax: np.ndarray, wfmt, max_shift: int) -> int:
    """Smallest shift so that scale*wmax/2**shift fits the weight format, for every column."""
    m = scale * wmax
    m = m[np.isfinite(m) & (m > 0)]
    if m.size == 0:
        return 0
    need = math.ceil(math.log2(float(m.max()) / wfmt.max)) if float(m.max()) > wfmt.max else 0
    return int(min(max(need, 0), max_shift))


def _choose_scales(wmax_cols: list[tuple[np.ndarray, str]], thr: np.ndarray, bias: np.ndarray, wfmt, tfmt, bfmt, max_shift: int,
                   mode: str, target: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Per-neuron scales and one shift per weight matrix. ``wmax_cols``: (max |w| per post neuron, matrix key)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.where(np.isfinite(thr) & (thr > 0), target / np.abs(thr), np.inf)
        # non-spiking readouts: aim the largest weight at the full int8 range without shift
        cap = np.where(np.isfinite(cap), cap, np.inf)
        cap = np.minimum(cap, np.where(np.abs(bias) > 0, bfmt.max / np.abs(bias), np.inf))
    if mode == "global":
        finite = cap[np.isfinite(cap)]
        cap = np.full_like(cap, float(finite.min()) if finite.size else np.inf)
    shifts = {}
    scale = cap.copy()
    for wmax, key in wmax_cols:
        s_for_shift = np.where(np.isfinite(cap), cap, wfmt.max / np.where(wmax > 0, wmax, 1.0))
        shifts[key] = _shift_for(s_for_shift, wmax, wfmt, max_shift)
        with np.errstate(divide="ignore"):
            limit = np.where(wmax > 0, wfmt.max * 2.0 ** shifts[key] / wmax, np.inf)
        scale = np.minimum(scale, limit)
    if mode == "global":
        finite = scale[np.isfinite(scale)]
        scale = np.full_like(scale, float(finite.min()) if finite.size else 1.0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return scale, shifts


def _quant_matrix(w: np.ndarray, scale_cols: np.ndarray, shift: int, wfmt) -> tuple[np.ndarray, dict]:
    """``w`` is (pre, post) or (pre, post, synapse); ``scale_cols`` is per post neuron."""
    scale_cols = scale_cols.reshape((1, -1) + (1,) * (w.ndim - 2))
    q = wfmt.quantize(w * scale_cols / 2.0**shift)
    deq = q * 2.0**shift / scale_cols
    nz = w != 0
    norm = float(np.linalg.norm(w))
    stats = {
        "shape": list(w.shape),
        "shift": shift,
        "nonzero_float": int(nz.sum()),
        "became_zero": int(np.sum(nz & (q == 0))),
        "saturated": int(np.sum(np.abs(w * scale_cols / 2.0**shift) > wfmt.max + 0.5)),
        "rel_rms_error": float(np.linalg.norm(deq - w) / norm) if norm > 0 else 0.0,
        "max_abs_int": int(np.abs(q).max()) if q.size else 0,
    }
    return q, stats


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def lower(graph: Graph, hw: HWConfig, opts: CompileOptions, *, scale_factor: np.ndarray | None = None) -> Lowered:
    """Lower ``graph`` onto ``hw``. ``scale_factor`` (hidden then output neurons, default 1):
    multipliers of the per-neuron quantization scales, chosen by calibration.

    Extreme but finite parameters (tau = 5e-324 s) overflow float64 on the way; the rules report
    what that means (a dead or diverging layer, a scale that does not fit), so numpy's own
    RuntimeWarnings are not printed on top of the report."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        return _lower(graph, hw, opts, scale_factor=scale_factor)


def _lower(graph: Graph, hw: HWConfig, opts: CompileOptions, *, scale_factor: np.ndarray | None = None) -> Lowered:
    from nirdeploy.graph.passes import normalize

    g = normalize(graph)
    viol: list[Violation] = []
    notes: list[str] = []
    lim = hw.limits
    settings = opts.to_dict()
    report = FitReport(target=hw.target, variant=hw.variant, settings=settings, violations=viol, notes=notes)

    st = _structure(g, hw, viol)
    if st is None:  # no Input or no Output (validation refuses these first): nothing to map
        n_neurons = sum(n.n_neurons for n in g.nodes.values() if n.type in NEURON_TYPES + STAND_IN_NEURONS)
        report.resources.append(Resource("neurons (all layers)", n_neurons, lim["hidden_neurons"] + lim["output_neurons"], "neurons"))
        return Lowered(None, report)
    layers, filters = st.layers, st.filters
    hidden = _order_hidden(g, layers)
    outs = [layers[n] for n in st.out_layers]
    off = 0
    for l in hidden:
        l.offset = off
        off += l.n
    n_hid, n_out, n_in = off, sum(l.n for l in outs), st.n_in
    out_named = _named(outs)
    layer_map = LayerMap([(l.name, l.node.type, l.offset, l.n) for l in hidden],
                         (out_named.name, out_named.type) if out_named is not None else ("", ""), ", ".join(i.name for i in st.inputs))

    # -- reset, threshold semantics ---------------------------------------------------------
    runnable = [l for l in [*hidden, *outs] if not l.stand_in]
    if opts.reset == "zero" and runnable:
        viol.append(_v("reset_semantics", "compiled with --reset zero, but Xylo resets by subtracting the threshold (v -= theta, up to "
                       f"{lim['max_hidden_spikes_per_step']} spikes per step): after a spike the chip keeps the overshoot v - theta where "
                       "the reference restarts from v_reset", _named([l for l in runnable if l.node.type in SPIKING]) or _named(runnable),
                       severity="warning",
                       hint="train with subtractive reset (snnTorch reset_mechanism='subtract') and compile with --reset subtract"))
    for l in runnable:
        vr = l.node.params.get("v_reset")
        if vr is not None and np.any(np.asarray(vr) != 0):
            viol.append(_v("v_reset_ignored", "Xylo has no reset potential; v_reset != 0 is ignored", l.node, severity="warning"))
    notes.append("Xylo fires when Vmem >= threshold (NIR: v > threshold) and may emit several spikes per step "
                 f"(hidden <= {lim['max_hidden_spikes_per_step']}, output <= {lim['max_output_spikes_per_step']}); "
                 f"input events above {lim['max_input_events_per_step']} per channel and step are dropped")

    # -- discretize ---------------------------------------------------------------------------
    usage: dict[str, dict] = {l.name: {"role": l.role, "neurons": l.n} for l in [*hidden, *outs]}
    chip: dict[str, _ChipLayer] = {}
    for l in [*hidden, *outs]:
        if l.stand_in:  # named as unsupported: a proxy's parameters let the weight rules run, its own findings are dropped
            proxy = _Layer(l.name, _proxy(l.node, opts.dt, hw), l.n, l.role, l.contributions, kinds=l.kinds)
            proxy.disc = discretize_node(proxy.node, opts.dt, opts.scheme, name=l.name)
            chip[l.name] = _chip_layer(proxy, filters, hw, opts, [], {})
            l.disc = proxy.disc
            continue
        if l.node.output_shape is not None and len(l.node.output_shape) > 1:  # named by not_one_dimensional: its neurons checked as a vector
            flat = {k: (v.reshape(-1) if isinstance(v, np.ndarray) and v.size == l.n else v) for k, v in l.node.params.items()}
            l = _Layer(l.name, Node(l.name, l.node.type, flat, output_shape=(l.n,)), l.n, l.role, l.contributions, kinds=l.kinds)
        l.disc = discretize_node(l.node, opts.dt, opts.scheme, name=l.name)
        chip[l.name] = _chip_layer(l, filters, hw, opts, viol, usage[l.name])
        for msg in l.disc.notes:
            viol.append(_v("discretization", msg, l.node, severity="warning"))
        if l.node.type in SPIKING:  # (a hidden LI/CubaLI has no threshold: it is named by hidden_must_spike)
            thr = chip[l.name].threshold
            if np.any(~(thr > 0)):
                viol.append(_v("threshold_not_positive", f"{int(np.sum(~(thr > 0)))} neuron(s) have v_threshold <= 0; on Xylo a zero threshold fires "
                               f"{lim['max_hidden_spikes_per_step']} spikes every step and a negative one wraps Vmem", l.node, limit="> 0", actual=float(np.min(thr)),
                               hint="thresholds must be positive"))
    if not st.wired or st.no_weights:
        # the size rules still run on what was identified; the rules on the chip's matrices need them
        size_rules(n_in, n_hid, n_out if outs else None, hw, report, layer_map)
        report.nodes = [NodeUsage(l.name, l.node.type, usage[l.name]) for l in [*hidden, *outs]]
        why = st.no_weights or "the network does not map onto one Xylo population (see the violations)"
        notes.append(f"checked: the Input, hidden and output sizes and each layer's time constants and thresholds; not checked: the input and output "
                     f"windows, fan-out, recurrent weight memory and weight quantization, because {why}")
        return Lowered(None, report)
    out_layer = outs[0]
    latency = _latencies(hidden, out_layer, viol)
    readout = "spikes" if out_layer.node.type in SPIKING else "vmem"

    # -- float chip matrices ------------------------------------------------------------------
    idx = {l.name: l for l in hidden}
    n_syn = max([len(l.kinds) for l in hidden] + [1])
    W_in = np.zeros((n_in, n_hid, n_syn))
    W_rec = np.zeros((n_hid, n_hid, n_syn))
    W_out = np.zeros((n_hid, n_out))
    for l in hidden:
        sl = slice(l.offset, l.offset + l.n)
        for c in l.contributions:
            syn = l.kinds.index(c.filt)
            m = (chip[l.name].k[syn][:, None] * c.matrix).T  # (n_src, n_dst)
            if c.src == INPUT:
                W_in[:, sl, syn] += m
            else:
                s = idx[c.src]
                W_rec[s.offset : s.offset + s.n, sl, syn] += m
    for c in out_layer.contributions:
        s = idx[c.src]
        W_out[s.offset : s.offset + s.n, :] += (chip[out_layer.name].k[0][:, None] * c.matrix).T

    # -- quantize -----------------------------------------------------------------------------
    wfmt, tfmt, bfmt = hw.fmt("weight"), hw.fmt("threshold"), hw.fmt("bias")
    smax = hw.fmt("state").max
    max_shift = min(int(lim.get("max_recommended_weight_shift", hw.fmt("weight_shift").max)), hw.fmt("weight_shift").max)
    thr_h = np.concatenate([chip[l.name].threshold for l in hidden]) if hidden else np.zeros(0)
    bias_h = np.concatenate([chip[l.name].bias for l in hidden]) if hidden else np.zeros(0)
    thr_o, bias_o = chip[out_layer.name].threshold, chip[out_layer.name].bias
    tt = np.full(n_hid + n_out, float(THRESHOLD_TARGET))
    mode = opts.quantization
    wmax_h = [(np.abs(W_in).max(axis=(0, 2), initial=0), "in"), (np.abs(W_rec).max(axis=(0, 2), initial=0), "rec")]
    wmax_o = [(np.abs(W_out).max(axis=0, initial=0), "out")]
    s_h, sh_h = _choose_scales(wmax_h, thr_h, bias_h, wfmt, tfmt, bfmt, max_shift, mode, tt[:n_hid])
    # a Vmem readout has no threshold to aim at: the largest output weight uses the int8 range
    thr_for_scale = np.full(n_out, np.nan) if readout == "vmem" else thr_o
    s_o, sh_o = _choose_scales(wmax_o, thr_for_scale, bias_o, wfmt, tfmt, bfmt, max_shift, mode, tt[n_hid:])
    if scale_factor is not None:  # calibration: per-neuron multipliers of the chosen scales
        f = np.broadcast_to(np.asarray(scale_factor, dtype=np.float64), (n_hid + n_out,))
        f_h, f_o = (np.full(n_hid, f[:n_hid].min(initial=1.0)), np.full(n_out, f[n_hid:].min(initial=1.0))) if mode == "global" else (f[:n_hid], f[n_hid:])
        s_h, s_o = s_h * f_h, s_o * f_o
    if readout == "vmem":
        s_o = _readout_range(W_out, s_o, sh_o["out"], chip[out_layer.name], out_layer.node, wfmt, smax, viol)
    s_h, s_o = _rescue_lost_inputs(hidden, out_layer, readout, [W_in, W_rec], W_out, s_h, s_o, sh_h, sh_o, thr_h, thr_o, wfmt, tfmt, mode, viol)
    qi, st_in = _quant_matrix(W_in, s_h, sh_h["in"], wfmt)
    qr, st_rec = _quant_matrix(W_rec, s_h, sh_h["rec"], wfmt)
    qo, st_out = _quant_matrix(W_out, s_o, sh_o["out"], wfmt)
    _weight_loss(W_in, qi, "weights_in", hidden, None, viol)
    _weight_loss(W_rec, qr, "weights_rec", hidden, None, viol)
    _weight_loss(W_out, qo, "weights_out", None, out_layer, viol)

    def q_thr(thr, s, layer_list):
        raw = np.where(np.isfinite(thr), np.sign(thr) * np.floor(np.abs(thr * s) + 0.5), tfmt.max)
        q = np.clip(raw, 1, tfmt.max).astype(np.int64)
        names = ", ".join(l.name for l in layer_list)
        if np.any(np.isfinite(thr) & (raw < 1)):
            viol.append(_v("threshold_rounds_to_zero", f"{int(np.sum(np.isfinite(thr) & (raw < 1)))} threshold(s) quantize below 1 and were set to 1 "
                           f"(layers {names})", _named(layer_list), severity="warning",
                           hint="weights are large relative to the threshold"))
        if np.any(raw > tfmt.max):
            viol.append(_v("threshold_saturated", f"threshold(s) exceed the 16-bit range and were clipped (layers {names})",
                           _named(layer_list), severity="warning"))
        return q

    th_q = q_thr(thr_h, s_h, hidden)
    tho_q = q_thr(thr_o, s_o, [out_layer])
    b_q = bfmt.quantize(bias_h * s_h)
    bo_q = bfmt.quantize(bias_o * s_o)
    lost_b = np.concatenate([(bias_h != 0) & (b_q == 0), (bias_o != 0) & (bo_q == 0)])
    nz_b = np.concatenate([b_q != 0, bo_q != 0])

    def owners(mask):
        return _named([l for l in hidden if mask[l.offset:l.offset + l.n].any()] + ([out_layer] if mask[n_hid:].any() else []))

    if lost_b.any():
        viol.append(_v("bias_rounds_to_zero", f"{int(lost_b.sum())} non-zero bias value(s) quantize to 0", owners(lost_b), severity="warning",
                       hint="v_leak * dt / tau is below one threshold step / scale"))
    bias_enable = bool(nz_b.any())
    if bias_enable and not lim.get("bias", False):
        viol.append(_v("bias_unsupported", f"{hw.name} has no neuron bias", owners(nz_b), limit=0, actual=int(nz_b.sum())))

    dash_mem = np.concatenate([chip[l.name].dash_mem for l in hidden]) if hidden else np.zeros(0, np.int64)
    dash_syn = np.concatenate([chip[l.name].dash_syn[0] for l in hidden]) if hidden else np.zeros(0, np.int64)
    # a layer with one synapse kind keeps dash_syn_2 = dash_syn (its Isyn2 receives nothing)
    dash_syn_2 = np.concatenate([chip[l.name].dash_syn[-1] for l in hidden]) if hidden else np.zeros(0, np.int64)
    cfg = XyloConfig(
        weights_in=qi,
        weights_rec=qr,
        weights_out=qo,
        dash_mem=dash_mem,
        dash_syn=dash_syn,
        dash_syn_2=dash_syn_2,
        dash_mem_out=chip[out_layer.name].dash_mem,
        dash_syn_out=chip[out_layer.name].dash_syn[0],
        threshold=th_q,
        threshold_out=tho_q,
        bias=b_q,
        bias_out=bo_q,
        weight_shift_in=sh_h["in"],
        weight_shift_rec=sh_h["rec"],
        weight_shift_out=sh_o["out"],
        bias_enable=bias_enable,
    )

    gv_h = np.concatenate([_vec(l.disc.gain_v, l.n) for l in hidden]) if hidden else np.zeros(0)
    gv_o = _vec(out_layer.disc.gain_v, n_out)

    # -- fit rules -------------------------------------------------------------------------------
    fit_rules(cfg, hw, report, layer_map)
    for l in hidden:
        usage[l.name]["hidden_ids"] = [l.offset, l.offset + l.n - 1]
    usage[out_layer.name]["output_ids"] = [0, n_out - 1]
    report.nodes = [NodeUsage(l.name, l.node.type, usage[l.name]) for l in [*hidden, out_layer]]
    report.details.update(
        {
            "latency_steps": latency,
            "readout": readout,
            "quantization": {"mode": mode, "threshold_target": THRESHOLD_TARGET, "weights_in": st_in, "weights_rec": st_rec, "weights_out": st_out,
                             # chip units per reference unit, per neuron: Vmem = v_scale * v, Isyn = i_scale * i
                             "v_scale": {"hidden": s_h.tolist(), "output": s_o.tolist()},
                             "i_scale": {"hidden": (s_h * gv_h).tolist(), "output": (s_o * gv_o).tolist()}},
            "weight_shift": {"in": sh_h["in"], "rec": sh_h["rec"], "out": sh_o["out"]},
            "input_events_cap": lim["max_input_events_per_step"],
        }
    )
    notes.append(f"latency: the chip's output at step t + {latency} corresponds to the reference's output at step t "
                 "(one Xylo step per hidden->hidden and hidden->output hop)")
    if st.unsupported:  # every rule ran with them looked through; nothing is built
        looked = ", ".join(f"{n} ({g.nodes[n].type}) " + ("folded into the weights" if g.nodes[n].type.startswith("BatchNorm") else
                                                           "as a stand-in LIF layer" if g.nodes[n].type in STAND_IN_NEURONS else "removed")
                           for n in st.unsupported)
        notes.append(f"every rule was checked with {looked}; no configuration is built")
        return Lowered(None, report, layers=layer_map, checked_config=cfg)
    inp = st.inputs[0]
    return Lowered(
        cfg,
        report,
        input_shape=tuple(int(v) for v in inp.output_shape) if inp.output_shape is not None else (n_in,),
        output_shape=(n_out,),
        latency_steps=latency,
        readout=readout,
        output_scale=s_o if readout == "vmem" else None,
        layers=layer_map,
        scales=(s_h, s_o),
        paths=[{"name": l.name, "role": l.role, "offset": l.offset, "n": l.n, "k": [np.asarray(k, dtype=np.float64) for k in chip[l.name].k],
                "contributions": [(c.src, c.nodes, l.kinds.index(c.filt)) for c in l.contributions],
                "src_offset": {c.src: (idx[c.src].offset if c.src in idx else 0) for c in l.contributions}}
               for l in [*hidden, out_layer]],
    )


LOSS_WARN = 0.05  # weights of one matrix into one layer that quantize to 0: a warning above this share


def _weight_loss(w: np.ndarray, q: np.ndarray, what: str, hidden: list[_Layer] | None, out_layer: _Layer | None, viol: list[Violation]) -> None:
    """Warn, per destination layer, when more than LOSS_WARN of a matrix's non-zero weights become 0."""
    targets = [(l, slice(l.offset, l.offset + l.n)) for l in hidden] if hidden is not None else [(out_layer, slice(None))]
    for l, sl in targets:
        nz = w[:, sl] != 0
        n_nz = int(nz.sum())
        lost = int((nz & (q[:, sl] == 0)).sum())
        if n_nz and lost / n_nz > LOSS_WARN:
            viol.append(_v("weights_quantized_to_zero", f"{what}: {lost} of {n_nz} non-zero weights into this layer ({100 * lost / n_nz:.0f} %) "
                           "quantize to 0 in int8", l.node, limit=f"{100 * LOSS_WARN:.0f} %", actual=f"{100 * lost / n_nz:.0f} %", severity="warning",
                           hint="the layer's weights span more than the int8 range (8 bits per post-neuron scale): prune or regularise small "
                                "weights in training, or check that --quantization channel is used"))


def _readout_range(W_out: np.ndarray, s_o: np.ndarray, shift: int, cl: "_ChipLayer", node: Node, wfmt, smax: int, viol: list[Violation]) -> np.ndarray:
    """A Vmem readout must not reach the int16 maximum: there it fires (threshold_out is the maximum)
    and subtracts, so the readout collapses where the reference keeps rising.

    In chip units, one source firing every step drives a readout to ``w << shift`` times
    ``G = (2**dash_syn - 1) * 2**dash_mem`` (the steady state of Xylo's two decays). If the largest
    single weight already overflows, the readout's scale is lowered so that it does not (a
    warning states the effective scale); if even a weight of 1 overflows, it is a blocking
    violation. If all sources together could overflow, a warning says so (sample input measures it)."""
    G = (2.0 ** cl.dash_syn[0] - 1.0) * np.where(cl.dash_mem > 0, 2.0 ** cl.dash_mem, 1.0)
    wpos = np.clip(W_out, 0, None) * s_o[None, :]  # shifted integer units, before rounding
    single = wpos.max(axis=0, initial=0) * G
    total = wpos.sum(axis=0) * G
    s_new = s_o.copy()
    over = single > smax
    if np.any(over):
        s_new[over] = s_o[over] * (smax / single[over]) * 0.98
        largest = wpos[:, over].max(axis=0) * (s_new[over] / s_o[over]) / 2.0**shift
        dead = largest < 0.5
        oi = np.nonzero(over)[0]
        if np.any(~dead):
            viol.append(_v("readout_rescaled", f"{int((~dead).sum())} readout neuron(s) would overflow int16 when one hidden neuron fires every step "
                           f"(steady-state gain {float(G[oi[~dead]].max()):.0f} per unit weight): their scale was lowered by up to "
                           f"{float((s_o[oi[~dead]] / s_new[oi[~dead]]).max()):.3g}x, largest int8 weight now {float(largest[~dead].min()):.3g}",
                           node, limit=smax, actual=float(single[oi[~dead]].max()), severity="warning",
                           hint="shorter readout time constants keep more weight resolution"))
        if np.any(dead):
            viol.append(_v("readout_overflow", f"readout neuron(s) {', '.join(map(str, oi[dead]))} overflow int16 even with an int8 weight of 1 when a "
                           f"hidden neuron fires every step (steady-state gain {float(G[oi[dead]].max()):.0f} > {smax}): on the chip the readout fires "
                           "and subtracts its threshold, so it drops to 0 where the reference keeps rising", node, limit=smax,
                           actual=float(G[oi[dead]].max()),
                           hint="shorten the readout's tau_mem / tau_syn (dash_mem + dash_syn must stay below 15), or read out spikes"))
    total_new = total * (s_new / np.where(s_o > 0, s_o, 1.0))
    may = total_new > smax
    if np.any(may):
        viol.append(_v("readout_may_overflow", f"{int(may.sum())} readout neuron(s) overflow int16 if all their positive sources fire once every step "
                       f"(worst case {float(total_new[may].max()):.0f} > {smax}); there the readout fires and drops to 0", node, limit=smax,
                       actual=float(total_new[may].max()), severity="warning",
                       hint="pass --sample X.npy to measure the readout range on real input, or --calibrate X.npy to fit the scale to it"))
    return s_new


def _rescue_lost_inputs(hidden, out_layer, readout, W_h, W_out, s_h, s_o, sh_h, sh_o, thr_h, thr_o, wfmt, tfmt, mode, viol):
    """A neuron whose every input weight rounds to 0 can never fire on the chip. With per-neuron
    scales its scale is raised (up to the int8 range of its largest weight and half the threshold
    range); a neuron that still loses everything is a blocking violation."""
    s_h, s_o = s_h.copy(), s_o.copy()
    shifts_h = [sh_h["in"], sh_h["rec"]]

    def lost_h(s):
        had = np.zeros(s.size, bool)
        kept = np.zeros(s.size, bool)
        for W, sh in zip(W_h, shifts_h):
            had |= (W != 0).any(axis=(0, 2))
            kept |= (np.abs(W) * (s[None, :, None] / 2.0**sh) >= 0.5).any(axis=(0, 2))
        return had & ~kept

    def lost_o(s):
        return (W_out != 0).any(axis=0) & ~(np.abs(W_out) * (s[None, :] / 2.0 ** sh_o["out"]) >= 0.5).any(axis=0)

    for lost, s, thr, Ws, shifts, layers in ((lost_h, s_h, thr_h, W_h, shifts_h, hidden),
                                              (lost_o, s_o, thr_o, [W_out[:, :, None]], [sh_o["out"]], [out_layer])):
        bad = lost(s)
        if not bad.any():
            continue
        if mode != "global":
            lim_w = np.full(s.size, np.inf)
            for W, sh in zip(Ws, shifts):
                wm = np.abs(W).max(axis=(0, 2))
                with np.errstate(divide="ignore"):
                    lim_w = np.minimum(lim_w, np.where(wm > 0, wfmt.max * 2.0**sh / wm, np.inf))
            with np.errstate(divide="ignore", invalid="ignore"):
                lim_t = np.where(np.isfinite(thr) & (thr > 0), 0.5 * tfmt.max / np.abs(thr), np.inf)
            raised = np.minimum(lim_w, lim_t)
            up = bad & np.isfinite(raised) & (raised > s)
            s[up] = raised[up]
            fixed = up & ~lost(s)
            if fixed.any():
                for l in layers:
                    ids = np.nonzero(fixed[l.offset:l.offset + l.n] if l.role == "hidden" else fixed)[0]
                    if ids.size:
                        viol.append(_v("scale_raised", f"{ids.size} neuron(s) (indices {', '.join(map(str, ids[:8]))}{', ...' if ids.size > 8 else ''}) would "
                                       f"lose every input weight at the threshold target {THRESHOLD_TARGET}; their scale was raised so that their largest "
                                       "weights survive (less headroom before Vmem saturates)", l.node, severity="warning",
                                       hint="their weights are small relative to the threshold: rescale them in training"))
        bad = lost(s)
        for l in layers:
            ids = np.nonzero(bad[l.offset:l.offset + l.n] if l.role == "hidden" else bad)[0]
            if ids.size:
                viol.append(_v("inputs_quantized_away", f"{ids.size} neuron(s) (indices {', '.join(map(str, ids[:8]))}{', ...' if ids.size > 8 else ''}) "
                               "lose every input weight in int8 quantization: they receive nothing and can never fire on the chip", l.node,
                               limit=">= 1 weight", actual=0,
                               hint=("--quantization global gives all neurons one scale: use --quantization channel" if mode == "global" else
                                     "their weights are far below their threshold (under 1/(2*32767) of it): retrain with a smaller threshold "
                                     "or larger weights, or prune these neurons")))
    return s_h, s_o
