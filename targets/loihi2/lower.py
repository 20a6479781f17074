"""Lower a NIR graph onto Loihi 2: structure, fixed-point discretization, quantization, fit rules.

Structure
---------
Every neuron node (IF, LIF, CubaLIF; LI / CubaLI as a voltage readout) becomes one Lava ``LIF``
process (a :class:`~.config.NeuronLayer`). Every path of linear nodes (Affine, Linear, Scale,
Flatten, Conv2d, SumPool2d, AvgPool2d) from the Input or a neuron layer into a neuron layer becomes
one synapse: a ``Conv`` when the path is a Conv2d, optionally after one pooling, or pooling alone
(SumPool as a depthwise convolution with unit kernels, composed into the following Conv2d);
otherwise a ``Dense`` whose matrix is the composed linear map. A path through ``Delay`` nodes (whole
steps of dt, at most ``max_synaptic_delay``) becomes a ``DelayDense``: one delay per synapse, or,
where a Delay between two linear nodes gives one pair of neurons several delays, one DelayDense per
delay. Loops (``lif <-> w_rec``) are
recurrent synapses. Every synapse adds one time step, so a layer's **latency** is
``latency(source) + 1 - (delayed edges on the path)``; the chip's output at step t + latency is
the reference's output at step t.

Discretization (per layer; ``du``, ``dv`` and ``vth`` are per-process scalars on Loihi)
--------------------------------------------------------------------------------------
With ``alpha_v``, ``gain_v``, ``alpha_i``, ``gain_i`` from :mod:`nirdeploy.graph.discretize`
(scheme ``euler`` or ``exact``) and Loihi's ``u = u (4096 - du - 1)/4096 + a << 6``,
``v = v (4096 - dv)/4096 + u + bias``::

    dv = round(4096 (1 - alpha_v))            IF: 0
    du = round(4096 (1 - alpha_i)) - 1        LIF/IF/LI (no synaptic current): 4095 (u = input)

A neuron's voltage is held scaled by ``S`` (integer units per unit of NIR voltage); NIR's reset to
``v_reset`` becomes Loihi's reset to 0 by shifting v by ``v_reset``: threshold ``v_th - v_reset``
and bias ``bias_v - (1 - alpha_v) v_reset``. ``vth`` is one mantissa per layer, so ``S`` is
chosen per neuron, ``S_i = (vth << 6) / (v_th - v_reset)_i`` (per output channel for Conv), with
``vth = 2**14`` by default (threshold at 2**20: 8x headroom below the 24-bit voltage range).
The synaptic gain ``S_i * gain_v * gain_i / 64`` per unit of NIR weight goes into the weights.

Quantization
------------
Dense: sign mode set explicitly (excitatory, inhibitory or mixed; mixed matrices carry even
integers in -256..254 because Loihi drops their lowest bit), one ``weight_exp`` per matrix, the
smallest that keeps the largest weight in range, weights rounded half away from zero. Conv:
``weight_exp`` 0 (Lava's CPU Conv has none), so ``S`` is lowered until the kernel fits 8 bits.
Bias: per neuron the smallest ``bias_exp`` (0..7) that keeps ``bias_mant`` in 13 bits.

``loihi_mode="paper"`` (``--loihi-mode paper``) uses the NIR paper's Lava constants instead
(``paper/nir_to_lava.py``, loihi2.md section 5): ``du = 4095``, ``dv = int(4095 dt / tau)``,
``vth = int(v_th 131071) >> 9`` (S = 2**14), weights ``int(256 W')`` truncated, exponent 0.
It reproduces the NIR paper's Loihi 2 trace of ``lif_norse.nir`` (one difference: the paper's
converter passes the Affine's output as a binary spike into an extra 1x1 Dense, losing its
magnitude; here ``W' = W r dt / tau`` goes into one Dense).

``loihi_mode="netx"`` keeps what a lava-dl netx file can hold exactly: weight exponent 0 (``S``
lowered until the weights fit 8 bits) and bias exponent 6, so ``network.net`` is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nirdeploy.backend.hwconfig import HWConfig
from nirdeploy.backend.report import FitReport, NodeUsage, Resource
from nirdeploy.backend.rules import violation as _v
from nirdeploy.backend.target import CompileOptions
from nirdeploy.graph.discretize import discretize_node
from nirdeploy.errors import UnsupportedError
from nirdeploy.graph.ir import Graph, Node

from .config import INPUT, Loihi2Network, NeuronLayer, Synapse, effective_weights

__all__ = ["lower", "Lowered", "SUPPORTED_NODES", "LOIHI_MODES", "VTH_TARGET", "split_by_decay"]

LINEAR_TYPES = ("Affine", "Linear", "Scale", "Flatten", "Conv2d", "SumPool2d", "AvgPool2d")
NEURON_TYPES = ("IF", "LIF", "CubaLIF", "LI", "CubaLI")
SPIKING = ("IF", "LIF", "CubaLIF")
SUPPORTED_NODES = frozenset(("Input", "Output", "NIRGraph", "Delay") + LINEAR_TYPES + NEURON_TYPES)
LOIHI_MODES = ("default", "paper", "netx")
VTH_TARGET = 1 << 14  # threshold mantissa aimed at: v threshold 2**20, 8x below the 24-bit range
READOUT_SCALE = float(1 << 16)  # S of a non-spiking (LI / CubaLI) readout layer
MAX_DENSE_ELEMENTS = 64_000_000  # a composed Dense matrix larger than this is refused


@dataclass
class _Path:
    src: str  # INPUT_NAME or a neuron layer name
    nodes: list[Node]  # linear nodes from source to destination
    delays: int


@dataclass
class _Layer:
    name: str
    node: Node
    shape: tuple[int, ...]
    paths: list[_Path] = field(default_factory=list)
    latency: int = 0


@dataclass
class Lowered:
    network: Loihi2Network | None
    report: FitReport
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    latency_steps: int = 0
    output_scale: np.ndarray | None = None  # v / output_scale = reference voltage (readout "v")


INPUT_NAME = "__input__"


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------
def _shape(n: Node) -> tuple[int, ...]:
    s = n.output_shape if n.type != "Output" else n.input_shape
    return tuple(int(x) for x in s) if s is not None else ()


@dataclass
class _Structure:
    inp: Node
    layers: dict[str, _Layer]
    out_name: str  # the layer read as the output (for the checks: the last layer when none feeds the Output)
    unsupported: list[str]  # nodes Loihi 2 cannot run, named as violations; paths through them are not lowered
    ok: bool  # no structural violation and every node supported: the network can be built


def _structure(g: Graph, viol: list) -> _Structure | None:
    """Neuron layers and the linear paths into them, whatever else is wrong: each problem is a
    violation, and what can still be identified is returned so that the per-layer and placement
    rules run on it (checks collect every violation). Nodes Loihi 2 cannot run are named, then
    looked through: paths are followed through them, but a path through one is not lowered.
    None only when there is not exactly one Input, no Output or no neuron layer."""
    inputs, outputs = g.inputs, g.outputs
    ok = True
    if len(inputs) != 1 or len(outputs) != 1:
        viol.append(_v("single_input_output", f"Loihi 2 networks here take one Input and one Output node; the graph has {len(inputs)} and "
                       f"{len(outputs)}", limit=1, actual=max(len(inputs), len(outputs)), hint="split the graph, or merge its inputs into one tensor"))
        ok = False
        if len(inputs) != 1 or not outputs:
            return None
    inp, out = inputs[0], outputs[0]
    unsupported = [name for name, n in g.nodes.items() if n.type not in SUPPORTED_NODES]
    for name in unsupported:
        viol.append(_v("unsupported_node", f"{g.nodes[name].type} has no Loihi 2 lowering here", g.nodes[name],
                       hint="Loihi 2 runs Dense/Conv synapses (Affine, Linear, Conv2d, SumPool2d) into CUBA LIF neurons (IF, LIF, CubaLIF)"))
    layers = {name: _Layer(name, n, _shape(n)) for name, n in g.nodes.items() if n.type in NEURON_TYPES}
    if not layers:
        if not unsupported:
            viol.append(_v("output_must_be_one_neuron_layer", "the graph has no neuron layer", out,
                           hint="end the network with one IF/LIF/CubaLIF (or LI/CubaLI readout) layer"))
        return None

    def paths_into(name: str, stack: tuple[str, ...] = ()) -> list[_Path]:
        res = []
        for p in g.predecessors(name):
            d = 1 if (p, name) in g.delayed_edges else 0
            if p == inp.name:
                res.append(_Path(INPUT_NAME, [], d))
            elif p in layers:
                res.append(_Path(p, [], d))
            elif p in stack:
                raise ValueError(f"algebraic loop through {p}")  # validation rejects these first
            elif g.nodes[p].type not in ("Input", "Output"):
                for q in paths_into(p, stack + (p,)):
                    res.append(_Path(q.src, q.nodes + [g.nodes[p]], q.delays + d))
        return res

    for name, L in layers.items():
        L.paths = paths_into(name)
        if not L.paths:
            ok = False
            viol.append(_v("unconnected_layer", "neuron layer receives no input", L.node, hint="remove it or connect it"))
        for p in L.paths:
            if p.delays > 1:
                ok = False
                viol.append(_v("multi_step_delay", f"a path from {p.src} carries {p.delays} one-step delays", L.node, limit=1, actual=p.delays))
    feeding = g.predecessors(out.name)
    out_layers = [p for p in feeding if p in layers]
    if len(feeding) != 1 or not out_layers:
        ok = False
        if not (len(feeding) == 1 and feeding[0] in unsupported):  # an unsupported node is named already
            delayed = [p for p in feeding if g.nodes[p].type == "Delay"]
            viol.append(_v("output_must_be_one_neuron_layer", f"the Output is fed by {', '.join(feeding) or 'nothing'}; Loihi reads the spikes "
                           "(or voltage) of one neuron layer", out,
                           hint=("Loihi 2 delays spikes on synapses, and no synapse follows the last layer: shift the output by the delay "
                                 "after reading it" if delayed else "end the network with one IF/LIF/CubaLIF (or LI/CubaLI readout) layer")))
    out_name = out_layers[0] if out_layers else list(layers)[-1]
    for name, L in layers.items():
        if L.node.type not in SPIKING and name != out_name:
            ok = False
            viol.append(_v("hidden_must_spike", f"{L.node.type} neurons do not spike; only spikes travel between Loihi layers", L.node,
                           hint="use IF/LIF/CubaLIF in hidden layers; LI/CubaLI only as the output readout"))
    return _Structure(inp, layers, out_name, unsupported, ok and not unsupported)


def _latencies(order: list[_Layer], viol: list) -> None:
    lat: dict[str, int] = {INPUT_NAME: 0}
    for _ in range(len(order) + 2):
        for L in order:
            c = [lat[p.src] + 1 - p.delays for p in L.paths if p.src in lat]
            if c:
                lat[L.name] = max(c)
    bad = sorted({f"{p.src} -> {L.name}" for L in order for p in L.paths
                  if p.src in lat and L.name in lat and lat[p.src] + 1 - p.delays != lat[L.name]})
    for L in order:
        L.latency = lat.get(L.name, 0)
    if bad:
        viol.append(_v("latency_mismatch", "paths into a layer reach it with different Loihi latencies (one step per synapse), so the chip's "
                       f"timing differs from the reference by more than a constant shift: {', '.join(bad)}", severity="warning",
                       hint="avoid skip connections around layers, or retrain with the per-synapse delay"))


# ---------------------------------------------------------------------------------------------
# linear paths -> synapse operators
# ---------------------------------------------------------------------------------------------
def apply_path(nodes: list[Node], x: np.ndarray) -> np.ndarray:
    """Apply a chain of linear nodes to a batch x (B, *shape) with the reference's semantics."""
    from nirdeploy.sim.reference import apply_stateless

    for n in nodes:
        x = apply_stateless(n, x)
    return x


def _pair(v, default) -> tuple[int, int]:
    if v is None:
        return (default, default)
    a = np.asarray(v).ravel()
    if a.dtype.kind in "USO":
        raise ValueError("string padding")
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _delay_ops(p: _Path, ops: list[tuple[int, np.ndarray]], node: Node, viol: list, max_delay: int) -> list:
    """Synapse operators ("dense", path, (matrix, delays)) for the delay classes of one path: one
    DelayDense when every weight has one delay (the classes do not overlap), else one per class."""
    worst = max(k for k, _ in ops)
    if worst > max_delay:
        viol.append(_v("synaptic_delay_range", f"a delay of {worst} steps on the path from {p.src}; Loihi 2's synaptic delays reach "
                       f"{max_delay} steps (6 bits)", node, limit=max_delay, actual=worst,
                       hint="use a larger dt (fewer, longer steps) or shorter delays"))
    support = sum((m != 0).astype(np.int64) for _, m in ops)
    if np.all(support <= 1):
        m = sum(m for _, m in ops)
        d = sum(np.where(mk != 0, k, 0) for k, mk in ops)
        return [("dense", p, (m, np.asarray(d, dtype=np.int64)))]
    return [("dense", p, (m, np.full(m.shape, k, np.int64))) for k, m in ops]


def _conv_operator(nodes: list[Node], src_shape: tuple[int, ...], dst_shape: tuple[int, ...]):
    """A composite Conv2d (weight, bias, stride, padding, dilation, groups) for paths
    [Conv2d], [SumPool/AvgPool, Conv2d] or [SumPool/AvgPool] alone, verified numerically against the
    reference ops; None when the path is not such a convolution."""
    types = [n.type for n in nodes]
    if len(src_shape) != 3 or len(dst_shape) != 3 or not types:
        return None
    try:
        pool = conv = None
        if types == ["Conv2d"]:
            conv = nodes[0]
        elif len(types) == 2 and types[0] in ("SumPool2d", "AvgPool2d") and types[1] == "Conv2d":
            pool, conv = nodes
        elif types in (["SumPool2d"], ["AvgPool2d"]):
            pool = nodes[0]
        else:
            return None
        C = src_shape[0]
        if pool is not None:
            k = _pair(pool.params["kernel_size"], 1)
            s = _pair(pool.params.get("stride"), 0)
            s = k if s == (0, 0) else s
            if any(_pair(pool.params.get("padding"), 0)):
                return None
            pw = np.ones((C, 1) + k) / (k[0] * k[1] if pool.type == "AvgPool2d" else 1.0)
            op = dict(weight=pw, stride=s, padding=(0, 0), dilation=(1, 1), groups=C, bias=np.zeros(C))
        if conv is not None:
            w = np.asarray(conv.params["weight"], dtype=np.float64)
            if w.ndim != 4:
                return None
            cs = _pair(conv.params.get("stride"), 1)
            cp = _pair(conv.params.get("padding"), 0)
            cd = _pair(conv.params.get("dilation"), 1)
            cg = int(np.asarray(conv.params.get("groups", 1) if conv.params.get("groups") is not None else 1).ravel()[0])
            b = conv.params.get("bias")
            b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64).ravel(), (w.shape[0],))
            if pool is None:
                op = dict(weight=w, stride=cs, padding=cp, dilation=cd, groups=cg, bias=b)
            else:
                if cd != (1, 1) or cg != 1 or op["weight"][0, 0, 0, 0] != 1.0 or op["stride"] != k:
                    return None  # compose only plain pooling (kernel == stride) into a plain conv
                kh, kw = w.shape[2:]
                K = np.zeros(w.shape[:2] + (k[0] * kh, k[1] * kw))
                for a in range(k[0]):
                    for c in range(k[1]):
                        K[:, :, a :: k[0], c :: k[1]] = w
                op = dict(weight=K, stride=(k[0] * cs[0], k[1] * cs[1]), padding=(k[0] * cp[0], k[1] * cp[1]), dilation=(1, 1),
                          groups=1, bias=b)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    # verify on random input that the composite equals the chain
    from nirdeploy.sim.reference import conv_nd

    rng = np.random.default_rng(0)
    x = (rng.random((2,) + tuple(src_shape)) < 0.3).astype(np.float64)
    try:
        want = apply_path(nodes, x)
        got = conv_nd(x, op["weight"], op["bias"], op["stride"], op["padding"], op["dilation"], op["groups"])
    except Exception:
        return None
    if got.shape != want.shape or tuple(got.shape[1:]) != tuple(dst_shape) or not np.allclose(got, want, rtol=1e-9, atol=1e-9):
        return None
    return op


def _delayed_operators(nodes: list[Node], src_shape: tuple[int, ...], n_dst: int, dt: float):
    """A path with Delay nodes as a sum of Dense operators, one per total delay in steps:
    ``([(steps, matrix (n_dst, n_src)), ...], bias (n_dst,))``, or None when the matrices would be
    too large. The identity basis (and the zero input, for the affine part) is carried through the
    path split by delay: a Delay moves each element's share to its delay class, a linear node acts
    on every class. The bias is the steady state (a Delay passes a constant). Raises
    UnsupportedError for a delay that is not a whole number of steps of ``dt``."""
    from nirdeploy.sim.reference import delay_steps

    n_src = int(np.prod(src_shape)) if src_shape else 1
    if n_src * max(n_dst, 1) > MAX_DENSE_ELEMENTS:
        return None
    X = {0: np.eye(n_src).reshape((n_src,) + tuple(src_shape))}
    Z = {0: np.zeros((1,) + tuple(src_shape))}
    for node in nodes:
        if node.type != "Delay":
            X = {k: apply_path([node], a) for k, a in X.items()}
            Z = {k: apply_path([node], a) for k, a in Z.items()}
            continue
        steps = delay_steps(node, dt)
        for cls in (X, Z):
            moved: dict[int, np.ndarray] = {}
            for k, a in cls.items():
                kk = np.broadcast_to(steps, a.shape[1:])
                for v in np.unique(kk):
                    part = a * (kk == v)
                    moved[k + int(v)] = moved[k + int(v)] + part if k + int(v) in moved else part
            cls.clear()
            cls.update(moved)
    bias = sum(z.reshape(-1) for z in Z.values())
    ops = []
    for k in sorted(X):
        m = X[k].reshape(n_src, -1) - (Z[k].reshape(1, -1) if k in Z else 0.0)
        if np.any(m) or not ops and k == max(X):
            ops.append((k, m.T))
    return ops, bias


def _dense_operator(nodes: list[Node], src_shape: tuple[int, ...], n_dst: int):
    n_src = int(np.prod(src_shape)) if src_shape else 1
    if n_src * max(n_dst, 1) > MAX_DENSE_ELEMENTS:
        return None
    eye = np.eye(n_src).reshape((n_src,) + tuple(src_shape))
    zero = np.zeros((1,) + tuple(src_shape))
    m = apply_path(nodes, eye).reshape(n_src, -1)
    b = apply_path(nodes, zero).reshape(-1)
    return (m - b[None, :]).T, b  # (n_dst, n_src), (n_dst,)


# ---------------------------------------------------------------------------------------------
# discretization
# ---------------------------------------------------------------------------------------------
def _int_span(a: np.ndarray) -> int | list[int]:
    a = np.asarray(a).ravel()
    lo, hi = int(a.min()), int(a.max())
    return lo if lo == hi else [lo, hi]


def _tau_span(f: np.ndarray, dt: float, scheme: str):
    """Effective time constants of per-step factors ``f`` (per neuron): one value or [min, max];
    None stands for an infinite one (JSON-safe)."""
    taus = sorted(_tau(float(x), dt, scheme) for x in np.unique(np.asarray(f).ravel()))
    return _finite(taus[0]) if taus[0] == taus[-1] else [_finite(taus[0]), _finite(taus[-1])]


@dataclass
class _Params:
    du: np.ndarray  # per neuron (a LIF process has one: layers whose neurons differ are split, see split_by_decay)
    dv: np.ndarray
    gain: np.ndarray  # per neuron: NIR weight unit -> v units (float), before S
    bias: np.ndarray  # per neuron, v units per step (float), before S
    threshold: np.ndarray | None  # per neuron, shifted by v_reset; None for readouts
    usage: dict


def _decays(L: _Layer, opts: CompileOptions, hw: HWConfig, viol: list, mode: str) -> _Params:
    node = L.node
    n = int(np.prod(L.shape)) if L.shape else 1
    d = discretize_node(node, opts.dt, opts.scheme, name=L.name)
    for msg in d.notes:
        viol.append(_v("discretization", msg, node, severity="warning"))
    dfmt = hw.fmt("decay")
    unity = 1 << int(hw.limits["decay_shift"])
    off = int(hw.limits["current_decay_offset"])
    a_v = np.broadcast_to(d.alpha_v, (n,)) if np.ndim(d.alpha_v) == 0 else np.asarray(d.alpha_v).reshape(-1)
    for what, val in (("decay", a_v), ("input gain", d.gain_v), ("current decay", d.alpha_i), ("current gain", d.gain_i)):
        if val is not None and not np.all(np.isfinite(np.asarray(val, dtype=np.float64))):
            _overflow(L.name, opts.dt, what, val)
    usage: dict = {"neurons": n}
    if mode == "paper":
        tau = np.asarray(node.params.get("tau", node.params.get("tau_mem", np.inf)), dtype=np.float64).reshape(-1)
        raw_dv = np.where(np.isfinite(tau), np.trunc((unity - 1) * opts.dt / tau), 0.0) if node.type != "IF" else np.zeros(n)
    else:
        raw_dv = np.round(unity * (1.0 - a_v))
    dv_all = np.clip(raw_dv, dfmt.min, dfmt.max)
    if np.any(raw_dv > dfmt.max):
        viol.append(_v("voltage_decay_clipped", f"dt/tau_mem rounds to a decay of {int(raw_dv.max())}/{unity}; Loihi's dv stops at {dfmt.max}, so "
                       "v keeps 1/4096 of its value per step instead of none", node, limit=dfmt.max, actual=int(raw_dv.max()), severity="warning",
                       hint="use a smaller dt or a longer tau_mem"))
    tau_v = np.asarray(node.params.get("tau", node.params.get("tau_mem", np.inf)), dtype=np.float64).reshape(-1)
    leaks = (a_v < 1) | (np.isfinite(tau_v) if node.type != "IF" else False)  # dt/tau below float resolution leaves a_v == 1.0
    if np.any((raw_dv == 0) & leaks):
        viol.append(_v("voltage_decay_rounds_to_zero", "1 - alpha_v is below 1/8192: Loihi's dv = 0 makes a perfect integrator", node,
                       severity="warning", hint="use a larger dt or a shorter tau_mem"))
    dv = dv_all.astype(np.int64)
    gain_v = np.broadcast_to(np.asarray(d.gain_v, dtype=np.float64).reshape(-1) if np.ndim(d.gain_v) else d.gain_v, (n,)).astype(np.float64)
    if d.cuba:
        a_i = np.broadcast_to(np.asarray(d.alpha_i, dtype=np.float64).reshape(-1), (n,))
        raw_du = np.round(unity * (1.0 - a_i)) - off
        du_all = np.clip(raw_du, dfmt.min, dfmt.max)
        if np.any(raw_du < dfmt.min):
            viol.append(_v("current_decay_clipped", "dt/tau_syn rounds to no current decay, which Loihi cannot express (du = 0 still decays by "
                           "1/4096 per step: the u factor is 4096 - (du + 1))", node, limit=0, actual=int(raw_du.min()), severity="warning",
                           hint="use a larger dt or a shorter tau_syn"))
        if np.any(raw_du > dfmt.max):
            viol.append(_v("current_decay_clipped", "dt/tau_syn is at least 1: u is replaced by the input every step", node, limit=dfmt.max,
                           actual=int(raw_du.max()), severity="warning", hint="use a smaller dt or a longer tau_syn"))
        du = du_all.astype(np.int64)
        gain = gain_v * np.broadcast_to(np.asarray(d.gain_i, dtype=np.float64).reshape(-1), (n,))
        fu = (unity - du - off) / unity
        with np.errstate(divide="ignore"):
            usage["tau_syn_requested_s"] = _span(np.asarray(node.params["tau_syn"], dtype=np.float64))
            usage["tau_syn_effective_s"] = _tau_span(fu, opts.dt, opts.scheme)
        tau_s = np.broadcast_to(np.asarray(node.params["tau_syn"], dtype=np.float64).reshape(-1), (n,))
        _warn_tau_change("tau_syn", "du", tau_s, fu, du, (raw_du >= dfmt.min) & (raw_du <= dfmt.max), unity, opts, node, viol, usage)
    else:
        du = np.full(n, dfmt.max, np.int64)  # u = this step's input only
        gain = gain_v
    fv = (unity - dv) / unity
    usage.update({"du": _int_span(du), "dv": _int_span(dv), "tau_mem_effective_s": _tau_span(fv, opts.dt, opts.scheme)})
    if node.type not in ("IF",):
        tau_m = np.broadcast_to(np.asarray(node.params.get("tau", node.params.get("tau_mem")), dtype=np.float64).reshape(-1), (n,))
        usage["tau_mem_requested_s"] = _span(tau_m)
        _warn_tau_change("tau_mem", "dv", tau_m, fv, dv, (raw_dv > 0) & (raw_dv <= dfmt.max), unity, opts, node, viol, usage)
    bias = np.broadcast_to(np.asarray(d.bias_v, dtype=np.float64).reshape(-1) if np.ndim(d.bias_v) else d.bias_v, (n,)).astype(np.float64)
    thr = None
    if d.spiking:
        vr = np.broadcast_to(np.asarray(d.v_reset, dtype=np.float64).reshape(-1), (n,))
        thr = np.broadcast_to(np.asarray(d.threshold, dtype=np.float64).reshape(-1), (n,)) - vr
        if np.any(vr != 0):
            bias = bias - (1.0 - a_v) * vr
            viol.append(_v("v_reset_shifted", "Loihi resets v to 0: v is held shifted by v_reset (threshold v_th - v_reset, bias adjusted); "
                           "the chip starts at v = v_reset where the reference starts at 0", node, severity="warning"))
    return _Params(du, dv, gain, bias, thr, usage)


def _overflow(name: str, dt: float, what: str, val) -> None:
    """A discretized parameter that left float64 (a tau of 5e-324 s, a dt far from the time
    constants): no 12-bit decay or 8-bit weight can follow it, so the lowering stops here."""
    v = np.abs(np.asarray(val, dtype=np.float64))
    raise UnsupportedError(f"node {name!r}: the discretized {what} at dt = {dt:g} s is not a finite float64 "
                           f"(|value| up to {float(np.max(v)) if v.size else float('nan'):.3g}): a time constant far below dt, or "
                           "weights this large, cannot be lowered to Loihi 2 (check the graph's tau units: seconds; "
                           "nirdeploy inspect lists dt candidates)")


TAU_CHANGE_WARN = 0.05  # requested vs effective time constant: a warning above this relative change


def _warn_tau_change(label: str, field: str, tau: np.ndarray, f: np.ndarray, code: np.ndarray, in_range: np.ndarray, unity: int,
                     opts: CompileOptions, node: str, viol: list, usage: dict) -> None:
    """Record ``{label}_max_rel_error`` and warn when a rounded 12-bit decay moves a time constant by
    more than :data:`TAU_CHANGE_WARN` (decays clipped or rounded to 0 have their own warnings)."""
    uf, inv = np.unique(f, return_inverse=True)
    eff = np.array([_tau(float(x), opts.dt, opts.scheme) for x in uf])[inv.reshape(-1)]
    ok = np.isfinite(eff) & (eff > 0) & np.isfinite(tau) & (tau > 0)
    if not ok.any():
        return
    rel = np.where(ok, np.abs(eff - tau) / np.where(ok, tau, 1.0), 0.0)
    usage[f"{label}_max_rel_error"] = float(np.max(rel))
    changed = (rel > TAU_CHANGE_WARN) & in_range
    if np.any(changed):
        i = int(np.argmax(np.where(changed, rel, -1.0)))
        viol.append(_v("time_constant_changed", f"{label}: requested {float(tau[i]):.4g} s, effective on the chip {float(eff[i]):.4g} s "
                       f"({100 * (eff[i] - tau[i]) / tau[i]:+.0f} %; {int(changed.sum())} of {changed.size} neuron(s) change by more than "
                       f"{100 * TAU_CHANGE_WARN:.0f} %; Loihi's 12-bit decay {field} = {int(code[i])}, a per-step factor {float(f[i]):.6g}, at dt = {opts.dt:g} s)",
                       node, limit=f"{100 * TAU_CHANGE_WARN:.0f} %", actual=f"{100 * float(rel[i]):.0f} %", severity="warning",
                       hint=f"choose dt so that {unity} * dt / {label} is close to an integer (a larger dt, or a longer time constant), "
                            "or fine-tune with the chip's decays"))


def _finite(x: float) -> float | None:
    """JSON-safe: None stands for an infinite time constant (no decay: a perfect integrator)."""
    return x if math.isfinite(x) else None


def _tau(f: float, dt: float, scheme: str) -> float:
    """The time constant a per-step decay factor f implements under ``scheme`` (s)."""
    if f >= 1.0:
        return float("inf")
    if scheme != "exact":
        return float(dt / (1.0 - f))
    if f <= 0.0:
        return 0.0
    return float(-dt / math.log(f))


def _span(a) -> list[float] | float:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0:
        return 0.0
    lo, hi = float(a.min()), float(a.max())
    return lo if lo == hi else [lo, hi]


# ---------------------------------------------------------------------------------------------
# quantization
# ---------------------------------------------------------------------------------------------
def _weight_ints(A: np.ndarray, hw: HWConfig, mode: str, allow_exp: bool):
    """(ints, weight_exp, sign_mode, stats) for the float activation matrix A (a units)."""
    lim = hw.limits
    e_min, e_max = int(lim["weight_exp_min"]), int(lim["weight_exp_max"])
    nz = A != 0
    if not nz.any():
        return np.zeros(A.shape, np.int64), 0, "excitatory", {"max_abs_int": 0, "became_zero": 0, "saturated": 0, "rel_rms_error": 0.0,
                                                             "nonzero_float": 0, "weight_exp": 0, "sign_mode": "excitatory"}
    sign = "excitatory" if A.min() >= 0 else "inhibitory" if A.max() <= 0 else "mixed"
    mixed = sign == "mixed"
    wmax = 254.0 if mixed else float(hw.fmt("weight").max)
    amax = float(np.abs(A).max())
    if mode == "paper":
        exp = 0
        q = np.trunc(A)
    else:
        exp = math.ceil(math.log2(amax / wmax)) if amax > 0 else 0
        exp = int(min(max(exp, e_min), e_max)) if allow_exp else 0
        if mixed:
            q = 2.0 * np.sign(A) * np.floor(np.abs(A) / 2.0 ** (exp + 1) + 0.5)
        else:
            q = np.sign(A) * np.floor(np.abs(A) / 2.0**exp + 0.5)
    lo, hi = (-256, 254) if mixed else ((0, 255) if sign == "excitatory" else (-255, 0))
    saturated = int(np.sum((q < lo) | (q > hi)))
    q = np.clip(q, lo, hi).astype(np.int64)
    q = effective_weights(q, sign, 8)  # what the chip keeps (idempotent for these values)
    deq = q * 2.0**exp
    norm = float(np.linalg.norm(A))
    stats = {
        "sign_mode": sign,
        "weight_exp": exp,
        "nonzero_float": int(nz.sum()),
        "became_zero": int(np.sum(nz & (q == 0))),
        "saturated": saturated,
        "rel_rms_error": float(np.linalg.norm(deq - A) / norm) if norm > 0 else 0.0,
        "max_abs_int": int(np.abs(q).max()),
    }
    return q, exp, sign, stats


def _bias_ints(b: np.ndarray, hw: HWConfig, fixed_exp: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per neuron (mant, exp) with mant in 13 bits and the smallest exp (or ``fixed_exp``, as netx
    files need 6); returns (mant, exp, saturated count, count of non-zero biases lost)."""
    mf, ef = hw.fmt("bias_mant"), hw.fmt("bias_exp")
    mag = np.abs(b)
    exp = np.zeros(b.shape, np.int64)
    if fixed_exp is not None:
        exp[:] = fixed_exp
    else:
        for e in range(ef.max + 1):
            need = (mag / 2.0**e > mf.max + 0.5) & (exp == e)
            exp = np.where(need, e + 1, exp)
        exp = np.minimum(exp, ef.max)
    mant = np.sign(b) * np.floor(mag / 2.0**exp + 0.5)
    sat = int(np.sum((mant > mf.max) | (mant < mf.min)))
    mant = np.clip(mant, mf.min, mf.max).astype(np.int64)
    lost = int(np.sum((b != 0) & (mant == 0)))
    return mant, exp, sat, lost


def _scale_cap(ops, P: _Params, bias: np.ndarray, mode: str, hw: HWConfig) -> np.ndarray:
    """Largest voltage scale S per neuron for which every weight fits 8 bits at the largest
    exponent (exponent 0 for Conv, and for every synapse in netx mode) and every bias fits its 13-bit
    mantissa << 7."""
    lim = hw.limits
    ash = int(lim["activation_shift"])
    n = P.gain.size
    cap = np.full(n, np.inf)
    for kind, _, op in ops:
        e = 0 if (kind == "conv" or mode == "netx") else int(lim["weight_exp_max"])
        if kind == "dense":
            op = op[0] if isinstance(op, tuple) else op  # (matrix, delays)
            row = np.abs(op).max(axis=1, initial=0) if op.size else np.zeros(n)
        else:
            w = op["weight"]
            row = np.repeat(np.abs(w).reshape(w.shape[0], -1).max(axis=1, initial=0), n // w.shape[0])
        with np.errstate(divide="ignore"):
            cap = np.minimum(cap, np.where(row * np.abs(P.gain) > 0, 254.0 * 2.0**e * (1 << ash) / (row * np.abs(P.gain)), np.inf))
    bmax = hw.fmt("bias_mant").max * 2.0 ** hw.fmt("bias_exp").max
    with np.errstate(divide="ignore"):
        cap = np.minimum(cap, np.where(np.abs(bias) > 0, bmax / np.abs(bias), np.inf))
    return cap


def _choose_vth(ops, P: _Params, bias: np.ndarray, thr: np.ndarray, mode: str, hw: HWConfig) -> int:
    """The layer's threshold mantissa: VTH_TARGET, lowered until, with S_i = (vth << 6) / thr_i,
    every neuron's S_i is within :func:`_scale_cap`."""
    cap = _scale_cap(ops, P, bias, mode, hw)
    ok = np.isfinite(thr) & np.isfinite(cap)
    if not ok.any():
        return VTH_TARGET
    v = float(np.min(cap[ok] * thr[ok])) / (1 << int(hw.limits["threshold_shift"]))
    return int(min(VTH_TARGET, max(1, math.floor(v))))


# ---------------------------------------------------------------------------------------------
# layers with several time constants
# ---------------------------------------------------------------------------------------------
def split_by_decay(net: Loihi2Network, decays: dict[int, tuple[np.ndarray, np.ndarray]]) -> Loihi2Network:
    """Run each layer ``i`` of ``decays`` (per-neuron ``du``, ``dv`` arrays) as one LIF process per
    distinct (du, dv) pair, because Lava's LIF has one du and one dv per process.

    Group g of layer i keeps its neurons' biases and the rows of every synapse into the layer; a
    synapse out of layer i becomes one synapse per group, from that group, with the matching
    columns (a recurrent one: one per pair of groups). Each keeps its matrix's ``weight_exp``,
    ``num_weight_bits`` and (made explicit) sign mode, so every weight is used as before; all-zero
    blocks are left out. Only Dense synapses are split (a Conv's shared kernel cannot be cut per
    neuron): raises ValueError for a Conv into or out of a split layer. Group layers are named
    ``name#g`` and carry ``origin`` (the layer's name) and ``neurons`` (their positions in it)."""
    groups: dict[int, list[np.ndarray | None]] = {}
    new_index: dict[int, list[int]] = {}
    k = 0
    for i, L in enumerate(net.layers):
        if i in decays:
            du, dv = (np.asarray(a, dtype=np.int64).reshape(-1) for a in decays[i])
            keys = sorted(set(zip(du.tolist(), dv.tolist())))
            groups[i] = [np.flatnonzero((du == a) & (dv == b)) for a, b in keys]
        else:
            groups[i] = [None]
        new_index[i] = list(range(k, k + len(groups[i])))
        k += len(groups[i])
    for i, L in enumerate(net.layers):
        touched = [s for s in L.synapses if i in decays or (s.src != INPUT and s.src in decays)]
        if any(s.kind != "dense" for s in touched):
            raise ValueError(f"layer {L.name} has a Conv synapse into or out of a layer with several time constants")
    layers: list[NeuronLayer] = []
    for i, L in enumerate(net.layers):
        for g, rows in enumerate(groups[i]):
            syns = []
            for s in L.synapses:
                srcs = [(INPUT, None)] if s.src == INPUT else list(zip(new_index[s.src], groups[s.src]))
                for src, cols in srcs:
                    w, d = s.weight, s.delay
                    if rows is not None:
                        w, d = w[rows], None if d is None else d[rows]
                    if cols is not None:
                        w, d = w[:, cols], None if d is None else d[:, cols]
                    if (rows is not None or cols is not None) and not np.any(w):
                        continue
                    syns.append(Synapse(src, s.kind, w, s.weight_exp, s.num_weight_bits, s.resolved_sign_mode, s.stride, s.padding, s.dilation,
                                        s.groups, s.name, d))
            if rows is None:
                layers.append(NeuronLayer(L.name, L.shape, L.du, L.dv, L.vth, L.bias_mant, L.bias_exp, syns, L.origin, L.neurons))
            else:
                du, dv = decays[i]
                layers.append(NeuronLayer(f"{L.name}#{g}", (rows.size,), int(np.ravel(du)[rows[0]]), int(np.ravel(dv)[rows[0]]), L.vth,
                                          L.bias_mant[rows], L.bias_exp[rows], syns, L.name, rows))
    return Loihi2Network(net.input_shape, layers, new_index[net.output][0], net.readout)


def _split_layers(net: Loihi2Network, decays, nodes: dict[str, Node], usage: dict, viol: list) -> Loihi2Network:
    """:func:`split_by_decay` with the report: the number of groups per layer, or why a layer
    cannot be split (a non_uniform_decay error)."""
    ok = {}
    for i, (du, dv) in decays.items():
        L = net.layers[i]
        conv = [s for s in L.synapses if s.kind == "conv"] + [s for M in net.layers for s in M.synapses if s.src == i and s.kind == "conv"]
        if conv:
            viol.append(_v("non_uniform_decay", f"du/dv differ between neurons (du {_int_span(du)}, dv {_int_span(dv)}), and Lava's LIF has one "
                           "du and one dv per process; this layer has Conv synapses, whose shared kernels cannot be split by neuron",
                           nodes[L.name], limit=1, actual=int(np.unique(np.stack([du, dv]), axis=1).shape[1]),
                           hint="give a convolutional layer one time constant per layer"))
        else:
            ok[i] = (du, dv)
    if not ok:
        return net
    out = split_by_decay(net, ok)
    for i in ok:
        name = net.layers[i].name
        ks = [k for k, L in enumerate(out.layers) if L.origin == name]
        sizes = [out.layers[k].n for k in ks]
        usage[name]["decay_groups"] = len(ks)
        neg = sorted({s.name or "?" for M in net.layers for s in M.synapses if s.src == i and s.weight_exp < 0})
        msg = (f"{len(ks)} LIF processes, one per distinct (du, dv) pair (Lava's LIF has one du and one dv per process), of "
               f"{', '.join(map(str, sizes))} neurons, each with its slices of the weights in and out; each process takes its own cores")
        if neg:
            msg += (f". The synapses out of it ({', '.join(neg)}) have a negative weight_exp: Lava floors each group's sum separately "
                    f"(up to {len(ks) - 1} activation units lower per step than one floored sum)")
        viol.append(_v("split_by_time_constant", msg, nodes[name], severity="warning" if neg else "info", actual=len(ks),
                       hint="train with one time constant per layer (e.g. snnTorch learn_beta=False or a shared beta) for one process"))
    return out


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def lower(graph: Graph, hw: HWConfig, opts: CompileOptions) -> Lowered:
    from nirdeploy.graph.passes import normalize

    from .partition import fit_rules

    g = normalize(graph)
    viol: list = []
    notes: list[str] = []
    mode = str(opts.extra.get("loihi_mode", "default"))
    report = FitReport(target=hw.target, variant=hw.variant, settings=opts.to_dict(), violations=viol, notes=notes)
    st = _structure(g, viol)
    if st is None:
        n_neurons = sum(n.n_neurons for n in g.nodes.values() if n.type in NEURON_TYPES)
        report.resources.append(Resource("neurons (all layers)", n_neurons, hw.limits["neurons_per_chip"], "neurons"))
        return Lowered(None, report)
    inp, layers, out_name = st.inp, st.layers, st.out_name
    skipped: list[str] = []  # paths through nodes Loihi 2 cannot run: followed, not lowered
    order = [layers[n] for n in g.nodes if n in layers]  # topological (normalize sorts)
    _latencies(order, viol)
    index = {L.name: i for i, L in enumerate(order)}
    in_shape = _shape(inp)
    if opts.reset == "subtract":
        viol.append(_v("reset_semantics", "compiled with --reset subtract, but Loihi's CUBA LIF resets v to 0 after a spike (one spike per step)",
                       severity="warning", hint="train with reset to zero (snnTorch reset_mechanism='zero') and compile with --reset zero"))
    if mode == "paper":
        notes.append("loihi_mode=paper: the NIR paper's Lava constants (du 4095, dv = int(4095 dt/tau), vth = int(v_th 131071) >> 9, "
                     "weights int(256 W') with exponent 0); not the most precise lowering, kept to reproduce the paper's Loihi 2 trace")
    notes.append("Loihi input spikes are binary: an input count above 1 in a step counts as one spike")

    vth_fmt, v_fmt = hw.fmt("threshold"), hw.fmt("v")
    tshift = int(hw.limits["threshold_shift"])
    ashift = int(hw.limits["activation_shift"])
    net_layers: list[NeuronLayer] = []
    usage: dict[str, dict] = {}
    quant: dict[str, dict] = {}
    decays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # layers whose neurons need different du/dv
    output_scale = None
    for L in order:
        P = _decays(L, opts, hw, viol, mode)
        n = int(np.prod(L.shape)) if L.shape else 1
        usage[L.name] = P.usage
        # -- operators of every incoming path (float), with their biases ----------------------
        ops = []
        b_path = np.zeros(n)
        for p in L.paths:
            src_shape = in_shape if p.src == INPUT_NAME else layers[p.src].shape
            if any(x.name in st.unsupported for x in p.nodes):
                skipped.append(f"{p.src} -> {L.name}")
                continue
            if any(x.type == "Delay" for x in p.nodes):  # synaptic delays: DelayDense
                try:
                    dl = _delayed_operators(p.nodes, src_shape, n, opts.dt)
                except UnsupportedError as e:
                    viol.append(_v("delay_not_whole_steps", f"{e}; Loihi 2 delays spikes by whole time steps", L.node,
                                   hint="choose a dt that divides every delay"))
                    continue
                if dl is None:
                    viol.append(_v("dense_too_large", f"the path from {p.src} would hold more than {MAX_DENSE_ELEMENTS} weights as a Dense "
                                   "matrix (Loihi's delays live on Dense synapses)", L.node, limit=MAX_DENSE_ELEMENTS))
                    continue
                ops.extend(_delay_ops(p, dl[0], L.node, viol, int(hw.limits["max_synaptic_delay"])))
                b_path += dl[1]
                continue
            conv = _conv_operator(p.nodes, src_shape, L.shape) if p.nodes and mode != "paper" else None
            if conv is not None:
                ops.append(("conv", p, conv))
                b_path += np.repeat(conv["bias"], n // len(conv["bias"]))
                continue
            dense = _dense_operator(p.nodes, src_shape, n)
            if dense is None:
                viol.append(_v("dense_too_large", f"the path from {p.src} is not a convolution nirdeploy can map, and as a Dense matrix it would "
                               f"hold more than {MAX_DENSE_ELEMENTS} weights", L.node, limit=MAX_DENSE_ELEMENTS,
                               hint="use Conv2d (optionally after one SumPool2d) between convolutional layers"))
                continue
            ops.append(("dense", p, dense[0]))
            b_path += dense[1]
        # -- bias ------------------------------------------------------------------------------------
        bias_float = P.bias.copy()
        if np.any(b_path != 0):
            if L.node.type in ("CubaLIF", "CubaLI"):
                fu = (4096 - P.du - 1) / 4096.0
                bias_float += P.gain * b_path / np.maximum(1.0 - fu, 1e-12)
                viol.append(_v("affine_bias_folded", "Loihi synapses have no bias and u has none: the Affine bias into this CUBA layer becomes a "
                               "constant voltage bias (its steady-state value; the synaptic rise time is lost)", L.node, severity="warning",
                               hint="train with Linear layers (no bias) for an exact match"))
            else:
                bias_float += P.gain * b_path
        # -- per-neuron scale S ------------------------------------------------------------------
        if P.threshold is not None:
            thr = P.threshold
            if np.any(~(thr > 0)):
                viol.append(_v("threshold_not_positive", f"{int(np.sum(~(thr > 0)))} neuron(s) have v_threshold - v_reset <= 0; Loihi's threshold "
                               "is an unsigned mantissa", L.node, limit="> 0", actual=float(thr.min()), hint="thresholds must lie above v_reset"))
                thr = np.where(thr > 0, thr, np.nan)
            if mode == "paper":
                vth = int(np.trunc(float(np.nanmax(thr)) * vth_fmt.max)) >> 9
                vth = max(vth, 1)
                S = np.full(n, float(1 << 14))
            else:
                vth = _choose_vth(ops, P, bias_float, thr, mode, hw)
                if any(kind == "conv" for kind, _, _ in ops) and np.nanmax(thr) != np.nanmin(thr):
                    viol.append(_v("non_uniform_threshold", "a convolutional layer needs one threshold per layer here (shared kernels, one vth)",
                                   L.node, hint="use one v_threshold per conv layer"))
                S = float(vth << tshift) / np.where(np.isfinite(thr), thr, 1.0)
            if vth > vth_fmt.max:
                viol.append(_v("threshold_range", f"vth mantissa {vth} > {vth_fmt.max}", L.node, limit=vth_fmt.max, actual=vth))
                vth = vth_fmt.max
        else:
            vth = vth_fmt.max  # a readout: as high as possible (v can still exceed it near saturation)
            cap = _scale_cap(ops, P, bias_float, mode, hw)
            S = np.full(n, float(min(READOUT_SCALE, cap.min(initial=np.inf))))
            output_scale = S.copy()
            viol.append(_v("readout_voltage", f"{L.node.type} is read as its voltage v (scaled by {S[0]:g}); it spikes only if v passes "
                           f"{vth << tshift}", L.node, severity="info"))
        usage[L.name].update({"vth": vth, "voltage_scale": _span(S), "latency": L.latency})
        # -- synapses -------------------------------------------------------------------------------
        synapses = []
        unit = S * P.gain / float(1 << ashift)  # NIR weight unit -> a units, per destination neuron
        if not np.all(np.isfinite(unit)):
            _overflow(L.name, opts.dt, "input gain", P.gain)
        for kind, p, op in ops:
            src = INPUT if p.src == INPUT_NAME else index[p.src]
            key = f"{p.src} -> {L.name}"
            if kind == "dense":
                delay = None
                if isinstance(op, tuple):  # (matrix, per-synapse delays in steps)
                    op, delay = op
                    key += f" (delays {_int_span(delay[op != 0]) if np.any(op) else 0})" if np.any(delay) else ""
                A = unit[:, None] * op
                q, exp, sign, stats = _weight_ints(A, hw, mode, allow_exp=mode != "netx")
                synapses.append(Synapse(src, "dense", q, exp, 8, sign, name=key, delay=delay if delay is not None and np.any(delay) else None))
            else:
                w = op["weight"]
                cout = w.shape[0]
                u_ch = unit.reshape(cout, -1)[:, 0]
                A = w * u_ch[:, None, None, None]
                q, exp, sign, stats = _weight_ints(A, hw, mode, allow_exp=False)
                synapses.append(Synapse(src, "conv", q, 0, 8, None, op["stride"], op["padding"], op["dilation"], op["groups"], name=key))
            nir_w = op if kind == "dense" else op["weight"]
            lost = int(np.sum((np.asarray(nir_w) != 0) & (q == 0)))  # counted on the graph's weights: scaled ones may underflow to 0.0
            if lost > stats["became_zero"]:
                stats = {**stats, "became_zero": lost, "nonzero_float": int(np.count_nonzero(nir_w))}
            quant[key] = stats
            if stats["saturated"]:
                viol.append(_v("weight_saturated", f"{stats['saturated']} weight(s) of {key} exceed the 8-bit range at weight_exp {exp} and were clipped",
                               L.node, severity="warning", hint="the layer's weights span too wide a range for 8 bits plus one exponent"))
            if stats["nonzero_float"] and stats["became_zero"] >= stats["nonzero_float"]:
                # the synapse delivers nothing: the layer behind it would not see this input at all (Speck: weights_all_zero)
                viol.append(_v("weights_all_zero", f"all {stats['nonzero_float']} non-zero weight(s) of {key} quantize to 0 (8-bit "
                               f"mantissa, {sign} sign mode): {L.name} receives nothing from this input", L.node,
                               limit=">= 1 non-zero weight after quantization", actual=0, hint="the weights are far below the layer's threshold scale: check dt and the graph's "
                               "units (r, w_in), or scale the weights up and retrain"))
            elif stats["became_zero"]:
                frac = stats["became_zero"] / max(stats["nonzero_float"], 1)
                viol.append(_v("weights_round_to_zero", f"{stats['became_zero']} of {stats['nonzero_float']} non-zero weight(s) of {key} "
                               f"({100 * frac:.1f} %) quantize to 0 (8-bit mantissa, {sign} sign mode)", L.node,
                               severity="warning" if frac > 0.01 else "info", hint="small weights next to large ones in one matrix share one exponent"))
        mant, bexp, bsat, blost = _bias_ints(S * bias_float, hw, fixed_exp=6 if mode == "netx" else None)
        if bsat:
            viol.append(_v("bias_saturated", f"{bsat} bias value(s) exceed {hw.fmt('bias_mant').max} << {hw.fmt('bias_exp').max} and were clipped",
                           L.node, severity="warning"))
        if blost:
            viol.append(_v("bias_rounds_to_zero", f"{blost} non-zero bias value(s) quantize to 0", L.node, severity="warning"))
        if np.unique(np.stack([P.du, P.dv]), axis=1).shape[1] > 1:
            decays[len(net_layers)] = (P.du, P.dv)
        net_layers.append(NeuronLayer(L.name, L.shape or (1,), int(P.du[0]), int(P.dv[0]), vth, mant, bexp, synapses))
    net = Loihi2Network(in_shape or (1,), net_layers, index[out_name], "spikes" if layers[out_name].node.type in SPIKING else "v")
    if decays:
        net = _split_layers(net, decays, {L.name: L.node for L in order}, usage, viol)
    latency = layers[out_name].latency
    fit_rules(net, hw, report, opts, viol)
    report.nodes = [NodeUsage(L.name, L.node.type, usage[L.name]) for L in order] + report.nodes
    if not st.ok:  # every rule ran on what was identified; nothing is built
        if skipped:
            notes.append(f"not checked: the synapses of {', '.join(skipped)} (they pass through "
                         f"{', '.join(st.unsupported)}, which Loihi 2 cannot run); core placement counts the rest")
        notes.append("no network is built: see the violations")
        return Lowered(None, report)
    report.details.update({"latency_steps": latency, "loihi_mode": mode, "quantization": quant,
                           # the core's readout vocabulary (nirdeploy.evaluation.compare.READOUTS): "v" is the network's own word
                           "readout": "vmem" if net.readout == "v" else "spikes",
                           "input_events_cap": 1})  # binary input spikes (the note above)
    from .netx import netx_problems

    nx = netx_problems(net)
    report.details["netx_export"] = not nx
    if nx:
        notes.append("no network.net (lava-dl netx) export: " + "; ".join(nx) + (" (compile with -T loihi_mode=netx for a netx-exact "
                     "lowering)" if mode != "netx" else ""))
    notes.append(f"latency: the chip's output at step t + {latency} corresponds to the reference's output at step t "
                 "(one step per Dense/Conv synapse)")
    return Lowered(net, report, in_shape or (1,), layers[out_name].shape or (1,), latency,
                   output_scale if net.readout == "v" else None)
