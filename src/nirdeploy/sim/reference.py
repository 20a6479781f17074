"""Float64 numpy reference simulator of a NIR graph (the "what the graph means" oracle).

The graph is first run through ``passes.normalize`` (validation, subgraphs inlined with dotted
names such as ``lif1.lif``, scalar parameters broadcast, identity nodes such as a 1x1 unit
Affine dropped, ``delayed_edges`` marked). ``states`` and ``order`` use the normalized names;
dropped identity nodes have no entry.

Semantics (one discrete time step ``t`` of length ``dt``):

* Nodes are evaluated in topological order of the non-delayed edges. A node's input is the SUM of
  its predecessors' outputs at step ``t``, except for edges in ``graph.delayed_edges`` (recurrent
  back edges), which carry the source's output of step ``t-1`` (zero at ``t = 0``). For the
  recurrent pattern ``lif -> w_rec -> lif`` the delayed edge is ``w_rec -> lif``, so an Affine
  ``w_rec`` with a bias contributes W s[t-1] + b from t = 1 on and nothing at t = 0 (snnTorch's
  RLeaky/RSynaptic would add b at t = 0 as well). A cycle without a delayed edge is an algebraic
  loop (rejected by validation, or UnsupportedError here).
* Neurons use :mod:`nirdeploy.graph.discretize` (scheme ``"euler"`` or ``"exact"``). All state starts
  at zero (v = 0, i = 0, empty delay lines), whatever ``v_leak``. Per step::

      [Cuba]     i = alpha_i*i + gain_i*x                    (never reset)
      v = alpha_v*v + gain_v*(i or x) + bias_v
      [spiking]  z = v > v_threshold (strict); where z: v = v_reset ("zero") or v -= v_threshold
                 ("subtract", at most one spike per step)

  Spiking nodes output z (0/1); I, LI and CubaLI output v. The recorded ``"v"`` is the value
  after the reset, i.e. the state carried into the next step.
* Affine y = W x + b, Linear y = W x (on the last axis), Scale y = s*x, Threshold z = x > theta
  (strict), Conv1d/Conv2d with PyTorch semantics (stride, integer/'valid'/'same' padding,
  dilation, groups; 'same' with stride > 1 is rejected as PyTorch does), SumPool2d/AvgPool2d with
  zero padding (AvgPool divides by kh*kw, padding included, as "SumPool then Scale"), Flatten
  with NIR's batch-less ``start_dim``/``end_dim``.
* The well-known layers NIR lacks (``ir.NON_NIR_TYPES``: MaxPool, BatchNorm, Dropout) have no NIR
  semantics to simulate: UnsupportedError naming the node and the hint of its type.
* Chip spiking rule (``spikes_per_step=N``, or per node through :class:`ChipSemantics`): a
  spiking node emits ``n = min(floor(v / v_threshold), N)`` spikes per step (0 when v < threshold;
  N every step when threshold <= 0) and subtracts ``n * v_threshold``; its output is the count n.
  This is the rule of chips that fire several spikes per step by subtraction (Xylo: N = 31 for
  hidden and 1 for output neurons), so the float reference can show what that rule does to a
  network trained with one spike per step. ``spikes_per_step`` implies subtractive reset.
* :class:`ChipSemantics` also replaces a neuron's per-step decays by the chip's effective ones
  (``alpha_v``, ``alpha_i``; the gains stay those of the graph), clamps states to the chip's
  range, and clips input counts.
* Affine/Linear applied to sparse input (spikes: few inputs active in a step) use only the weight
  rows of the inputs that are active in some sample of the batch instead of the whole matrix;
  the result equals the dense product up to floating-point summation order.
* A state that overflows float64 or grows beyond 1e100 is reported in ``notes`` (divergence,
  e.g. forward Euler with dt > 2 tau); numpy's overflow warnings are suppressed.
* Delay: y[t] = x[t - k] with k = round(delay/dt) per element, zero before the line fills.
  A delay that is not a whole number of steps (|delay/dt - k| > 1e-3) or is negative raises
  UnsupportedError; k = 0 passes the input through in the same step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..graph.discretize import (
    check_delays,
    DISCRETIZED_TYPES,
    RESET_SUBTRACT,
    RESET_ZERO,
    SCHEME_EULER,
    UNBOUNDED_SPIKES,
    NeuronDiscretization,
    discretize_node,
    validate_dt,
    validate_reset,
    validate_scheme,
)
from ..errors import UnsupportedError, UsageError
from ..inputs import check_real_array
from ..graph.passes import evaluation_order
from ..graph.ir import NON_NIR_TYPES, Graph, Node

__all__ = ["ReferenceResult", "ChipSemantics", "simulate_reference", "prepare_graph", "conv_nd", "pool2d", "apply_stateless",
           "DELAY_STEP_TOLERANCE", "SPARSE_MAX_DENSITY", "SPARSE_MIN_WEIGHTS", "DIVERGENCE_LIMIT", "delay_steps"]

DELAY_STEP_TOLERANCE = 1e-3  # in steps: how far delay/dt may be from an integer
SPARSE_MAX_DENSITY = 0.5  # Affine/Linear: when at most this share of the inputs is active in the batch, only their rows are used
SPARSE_MIN_WEIGHTS = 16384  # ... when the weight matrix is at least this large (below, a dense product is cheaper)
DIVERGENCE_LIMIT = 1e100  # a neuron state beyond this magnitude is reported as diverging


@dataclass
class ChipSemantics:
    """What a chip does differently from the NIR graph, applied by :func:`simulate_reference`.

    ``spikes_per_step``: node -> N, the chip's spiking rule for that spiking node (see the module
    docstring); ``decay``: node -> {"alpha_v": array, "alpha_i": array}, the chip's effective
    per-step decays (either key may be missing); ``state_range``: node -> {"v": (lo, hi),
    "i": (lo, hi)}, the chip's state range in reference units (its integer bounds divided by the
    neuron's scale): the state is clamped to it after each update, before spikes (the chip
    saturates after every addition, so this is the saturation's first-order effect);
    ``input_max``: input counts per step above this are clipped (the chip drops the extra events). Node names are those of the normalized graph
    (subgraph nodes dotted). Targets build one from a compiled network
    (``Target.chip_semantics``); ``description`` says what it contains."""

    spikes_per_step: dict[str, int] = field(default_factory=dict)
    decay: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    input_max: float | None = None
    state_range: dict[str, dict[str, tuple]] = field(default_factory=dict)
    description: str = ""


@dataclass
class ReferenceResult:
    output: np.ndarray  # (batch, time, *output_shape)
    states: dict[str, dict[str, np.ndarray]] | None = None  # node -> var -> (batch, time, *shape)
    dt: float = 0.0
    scheme: str = SCHEME_EULER
    reset: str = RESET_ZERO
    order: list[str] = field(default_factory=list)
    delayed_edges: list[tuple[str, str]] = field(default_factory=list)
    discretization: dict[str, NeuronDiscretization] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what happened (discretization findings, divergence)
    notices: list[str] = field(default_factory=list)  # how settings were chosen (set by nirdeploy.simulate_reference)


# -- graph preparation ---------------------------------------------------------------------------


def prepare_graph(graph: Graph) -> tuple[Graph, list[str]]:
    """(normalized graph, evaluation order): ``passes.normalize`` (validation, inlining with dotted
    names, scalar broadcasting, identity removal, shapes, ``delayed_edges``), imported lazily.
    Normalizing an already normalized graph is harmless. The order is re-derived here (Kahn on
    the non-delayed edges, ties by node order) so that a cycle without a delayed edge is caught."""
    from ..graph.passes import normalize

    g = normalize(graph)
    return g, evaluation_order(g)


# -- numeric kernels -----------------------------------------------------------------------------


def _tuple(v: Any, nd: int, name: str) -> tuple[int, ...]:
    a = np.asarray(v).ravel()
    if a.size == 1:
        return (int(a[0]),) * nd
    if a.size != nd:
        raise UnsupportedError(f"{name} must have {nd} entries, got {v!r}")
    return tuple(int(x) for x in a)


def conv_nd(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """PyTorch-style N-d cross-correlation. x: (B, Cin, *S); weight: (Cout, Cin/groups, *K)."""
    w = np.asarray(weight, dtype=np.float64)
    nd = w.ndim - 2
    if x.ndim != nd + 2:
        raise UnsupportedError(f"conv{nd}d expects input (C, {'H, W' if nd == 2 else 'L'}), got shape {x.shape[1:]}")
    B, C = x.shape[:2]
    cout = w.shape[0]
    K = w.shape[2:]
    groups = int(np.asarray(groups).ravel()[0]) if np.size(groups) else 1
    st = _tuple(stride, nd, "stride")
    dil = _tuple(dilation, nd, "dilation")
    if groups < 1 or C != w.shape[1] * groups or cout % groups:
        raise UnsupportedError(
            f"conv: input has {C} channels, weight {w.shape} with groups={groups} expects {w.shape[1] * groups}"
        )
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "USO":
        padding = str(padding.ravel()[0])
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in st):
                raise UnsupportedError("conv padding='same' with stride > 1 is undefined in PyTorch")
            pads = []
            for k, d in zip(K, dil):
                tot = d * (k - 1)
                pads.append((tot // 2, tot - tot // 2))
        else:
            raise UnsupportedError(f"conv padding {padding!r} is not 'same', 'valid' or integers")
    else:
        pads = [(p, p) for p in _tuple(padding, nd, "padding")]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads) if any(p != (0, 0) for p in pads) else x
    span = tuple(d * (k - 1) + 1 for k, d in zip(K, dil))
    if any(xp.shape[2 + i] < span[i] for i in range(nd)):
        raise UnsupportedError(f"conv: padded input {xp.shape[2:]} smaller than the dilated kernel {span}")
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))  # (B, C, *O', *span)
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in st) + tuple(slice(None, None, d) for d in dil)
    win = win[sl]  # (B, C, *O, *K)
    O = win.shape[2 : 2 + nd]
    cin_g, cout_g = C // groups, cout // groups
    out = np.empty((B, cout) + tuple(O), dtype=np.float64)
    ax_x = [1] + list(range(2 + nd, 2 + 2 * nd))
    ax_w = [1] + list(range(2, 2 + nd))
    for gi in range(groups):
        xg = win[:, gi * cin_g : (gi + 1) * cin_g]
        wg = w[gi * cout_g : (gi + 1) * cout_g]
        res = np.tensordot(xg, wg, axes=(ax_x, ax_w))  # (B, *O, cout_g)
        out[:, gi * cout_g : (gi + 1) * cout_g] = np.moveaxis(res, -1, 1)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        if b.size:
            out += b.reshape((1, cout) + (1,) * nd)
    return out


def pool2d(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0, average: bool = False) -> np.ndarray:
    """Sum (or average, padding counted) pooling over the last two axes of x (B, C, H, W)."""
    if x.ndim != 4:
        raise UnsupportedError(f"pool2d expects input (C, H, W), got shape {x.shape[1:]}")
    k = _tuple(kernel_size, 2, "kernel_size")
    s = k if stride is None else _tuple(stride, 2, "stride")
    p = (0, 0) if padding is None else _tuple(padding, 2, "padding")
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])]) if any(p) else x
    if xp.shape[2] < k[0] or xp.shape[3] < k[1]:
        raise UnsupportedError(f"pool: padded input {xp.shape[2:]} smaller than kernel {k}")
    win = sliding_window_view(xp, k, axis=(2, 3))[:, :, :: s[0], :: s[1]]
    y = win.sum(axis=(-2, -1))
    if average:
        y = y / float(k[0] * k[1])
    return y


def _flatten(x: np.ndarray, node: Node) -> np.ndarray:
    nd = x.ndim - 1  # batch-less dims
    s = int(np.asarray(node.params.get("start_dim", 1) if node.params.get("start_dim") is not None else 1))
    e = int(np.asarray(node.params.get("end_dim", -1) if node.params.get("end_dim") is not None else -1))
    s = s + nd if s < 0 else s
    e = e + nd if e < 0 else e
    if not (0 <= s < nd and 0 <= e < nd) or s > e:
        if nd == 0 or s == e:
            return x
        raise UnsupportedError(f"{node.name} (Flatten): start_dim/end_dim {s}/{e} invalid for input shape {x.shape[1:]}")
    shp = x.shape[1:]
    new = shp[:s] + (int(np.prod(shp[s : e + 1])),) + shp[e + 1 :]
    return x.reshape((x.shape[0],) + new)


def _linear(x: np.ndarray, w: np.ndarray, node: Node) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 1:
        w = w.reshape(1, -1) if w.size == x.shape[-1] else w.reshape(-1, 1)
    if w.ndim != 2:
        raise UnsupportedError(f"{node.name} ({node.type}): weight of shape {w.shape} is not a matrix")
    if x.shape[-1] != w.shape[1]:
        raise UnsupportedError(
            f"{node.name} ({node.type}): input shape {x.shape[1:]} does not match weight {w.shape} (in = {w.shape[1]})"
        )
    return x @ w.T


class _Dense:
    """Affine/Linear weights prepared once: ``W.T`` contiguous, so that sparse input (spikes)
    multiplies only the rows of the active inputs instead of the whole matrix."""

    def __init__(self, node: Node):
        self.node = node
        self.bias = None if node.type != "Affine" or node.params.get("bias") is None else np.asarray(node.params["bias"], dtype=np.float64)
        self.wt: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.wt is None:
            w = np.asarray(self.node.params["weight"], dtype=np.float64)
            if w.ndim == 1:
                w = w.reshape(1, -1) if w.size == x.shape[-1] else w.reshape(-1, 1)
            _linear(x[:1], w, self.node)  # shape checks with the usual messages
            self.wt = np.ascontiguousarray(w.T)
        wt = self.wt
        if x.ndim == 2 and x.shape[1] == wt.shape[0] and x.size and wt.size >= SPARSE_MIN_WEIGHTS:
            # only the weight rows of the inputs that are active in some sample take part
            # (spikes are mostly 0: the product over them is the product over all inputs)
            cols = np.flatnonzero(x.any(axis=0))
            if cols.size <= SPARSE_MAX_DENSITY * x.shape[1]:
                y = x[:, cols] @ wt[cols]
            else:
                y = x @ wt
        else:
            if x.shape[-1] != wt.shape[0]:
                _linear(x, wt.T, self.node)  # raises the shape error
            y = x @ wt
        return y + self.bias if self.bias is not None else y


def apply_stateless(node: Node, x: np.ndarray) -> np.ndarray:
    """One stateless node (Affine, Linear, Scale, Conv, pooling, Flatten, Threshold) applied to a
    batch ``x`` (B, *input_shape), with exactly the semantics of this simulator. Targets use it to
    compose linear paths into their synapse operators."""
    if node.type in DISCRETIZED_TYPES or node.type == "Delay":
        raise UnsupportedError(f"{node.name} ({node.type}) has state; apply_stateless takes stateless nodes only")
    return _eval(node, np.asarray(x, dtype=np.float64), None, None)


# -- per-node runtime ----------------------------------------------------------------------------


class _Neuron:
    def __init__(self, d: NeuronDiscretization, reset: str, cap: int | None = None, ranges: dict | None = None):
        self.d = d
        self.reset = reset
        self.cap = cap  # None: one spike per step with `reset`; N: floor(v/theta) spikes, at most N, subtracted
        self.ranges = ranges or {}  # "v" / "i": (lo, hi) clamps (a chip's saturation)
        self.v: np.ndarray | None = None
        self.i: np.ndarray | None = None
        self.diverged_at: int | None = None
        self.t = 0

    def step(self, x: np.ndarray, rec: dict | None) -> np.ndarray:
        d = self.d
        if self.v is None:
            shp = x.shape[1:]
            try:
                ok = np.broadcast_shapes(d.shape, shp) == tuple(shp)
            except ValueError:
                ok = False
            if not ok:
                raise UnsupportedError(f"{d.name} ({d.type}): input shape {tuple(shp)} does not match the neuron shape {d.shape}")
            self.v = np.zeros(x.shape)
            if d.cuba:
                self.i = np.zeros(x.shape)
        if d.cuba:
            self.i = d.alpha_i * self.i + d.gain_i * x
            if "i" in self.ranges:
                self.i = np.clip(self.i, *self.ranges["i"])
            drive = self.i
        else:
            drive = x
        v = d.alpha_v * self.v + d.gain_v * drive + d.bias_v
        if "v" in self.ranges:
            v = np.clip(v, *self.ranges["v"])
        if d.spiking and self.cap is not None:
            th = d.threshold
            with np.errstate(divide="ignore", invalid="ignore"):
                n = np.where(th > 0, np.clip(np.floor(v / np.where(th > 0, th, 1.0)), 0, self.cap), np.where(v >= th, self.cap, 0))
            n = np.nan_to_num(n, nan=0.0)
            v = v - n * th
            out = n
        elif d.spiking:
            z = v > d.threshold
            if self.reset == RESET_ZERO:
                v = np.where(z, d.v_reset, v)
            else:
                v = v - z * d.threshold
            out = z.astype(np.float64)
        else:
            out = v
        if self.diverged_at is None and not (np.abs(v).max(initial=0.0) <= DIVERGENCE_LIMIT):
            self.diverged_at = self.t
        self.t += 1
        self.v = v
        if rec is not None:
            rec.setdefault("v", []).append(v)
            if d.cuba:
                rec.setdefault("i", []).append(self.i)
            if d.spiking:
                rec.setdefault("spikes", []).append(out)
        return out


def delay_steps(node: Node, dt: float) -> np.ndarray:
    """A Delay node's delays in whole steps of ``dt``: round(delay / dt) per element, as float64
    (integers). Raises UnsupportedError for a negative or non-finite delay, or one more than
    :data:`DELAY_STEP_TOLERANCE` steps away from a whole number of steps."""
    d = np.asarray(node.params["delay"], dtype=np.float64)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise UnsupportedError(f"{node.name} (Delay): delays must be finite and >= 0")
    q = d / dt
    k = np.rint(q)
    off = np.abs(q - k)
    if np.any(off > DELAY_STEP_TOLERANCE):
        raise UnsupportedError(
            f"{node.name} (Delay): delay {d.ravel()[np.argmax(off.ravel())]:g} s is not a whole number "
            f"of steps of dt = {dt:g} s (off by {np.max(off):.3g} steps)"
        )
    return k


class _Delay:
    def __init__(self, node: Node, dt: float, notes: list[str], T: int):
        k = delay_steps(node, dt)
        # a delay of T steps or more outputs zeros for the whole run: the line never needs more
        # than T + 1 slots (check_delays has bounded k, so the cast cannot overflow)
        self.k = np.minimum(k, T).astype(np.int64)
        self.K = int(self.k.max()) if self.k.size else 0
        self.name = node.name
        self.buf: np.ndarray | None = None
        self.t = 0

    def step(self, x: np.ndarray) -> np.ndarray:
        if self.buf is None:
            shp = x.shape[1:]
            if self.k.shape not in ((), tuple(shp)) and np.broadcast_shapes(self.k.shape, shp) != tuple(shp):
                raise UnsupportedError(f"{self.name} (Delay): input shape {tuple(shp)} does not match delay shape {self.k.shape}")
            self.kf = np.broadcast_to(self.k, shp).ravel()
            self.buf = np.zeros((self.K + 1, x.shape[0], int(np.prod(shp))))
        L = self.K + 1
        flat = x.reshape(x.shape[0], -1)
        self.buf[self.t % L] = flat
        idx = (self.t - self.kf) % L
        y = self.buf[idx[None, :], np.arange(flat.shape[0])[:, None], np.arange(flat.shape[1])[None, :]]
        self.t += 1
        return y.reshape(x.shape)


def _static_out_shape(node: Node) -> tuple[int, ...] | None:
    if node.output_shape is not None:
        return tuple(int(v) for v in node.output_shape)
    if node.type in ("Input", "Output"):
        return tuple(int(v) for v in np.asarray(node.params.get("shape", ())).ravel())
    if node.type in ("Affine", "Linear"):
        return (int(np.asarray(node.params["weight"]).shape[0]),)
    if node.type in DISCRETIZED_TYPES or node.type in ("Scale", "Threshold", "Delay"):
        for k in node.spec.neuron_params + (("scale",) if node.type == "Scale" else ()):
            v = node.params.get(k)
            if v is not None and np.ndim(v):
                return tuple(np.shape(v))
    return None


# -- main entry point ----------------------------------------------------------------------------


def simulate_reference(
    graph: Graph,
    x,
    dt: float | None,
    *,
    scheme: str = SCHEME_EULER,
    reset: str | None = None,
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
    spikes_per_step: int | None = None,
    chip: ChipSemantics | None = None,
) -> ReferenceResult:
    """Simulate ``graph`` on ``x`` of shape (batch, time, *input_shape) in float64.

    ``graph`` is an :class:`~nirdeploy.graph.ir.Graph` (normalized here; an already normalized graph is
    fine). ``dt=None`` resolves dt from the graph (:func:`~nirdeploy.graph.discretize.resolve_dt`) and
    records the notice in ``notes``. Returns ``.output`` (batch, time, *output_shape) from the
    single Output node and, with ``record=True``, ``.states[node][var]`` (batch, time, *shape) with
    vars ``"v"``, ``"i"`` (Cuba), ``"spikes"`` (spiking) and ``"out"`` (every node).

    ``reset``: ``"zero"`` or ``"subtract"``; None means ``"zero"``, or ``"subtract"`` with
    ``spikes_per_step``. ``spikes_per_step=N`` (N >= 1) applies the chip spiking rule to every
    spiking node (output = spike counts); ``chip`` applies a target's :class:`ChipSemantics`
    (per-node caps, which take precedence, effective decays, input clipping). Without either,
    the spike rule the graph records applies (a graph exported from Sinabs' MultiSpike fires
    floor(v / threshold) spikes per step unless ``reset="zero"``; ``notes`` says so). Raises
    UsageError for ``reset="zero"`` together with a spike cap (the rule subtracts).
    """
    validate_scheme(scheme)
    caps_given = spikes_per_step is not None or (chip is not None and bool(chip.spikes_per_step))
    if reset is None:
        reset = RESET_SUBTRACT if caps_given else RESET_ZERO
    validate_reset(reset)
    notes: list[str] = []
    if not caps_given:  # the spike rule the graph records (Sinabs' MultiSpike), for every caller
        from ..graph.discretize import resolve_spike_rule

        spikes_per_step, rule_note = resolve_spike_rule(graph, None, reset)
        caps_given = spikes_per_step is not None
        notes += [rule_note] if rule_note else []
    if spikes_per_step is not None:
        if isinstance(spikes_per_step, bool) or not isinstance(spikes_per_step, (int, np.integer)) or not 1 <= spikes_per_step <= UNBOUNDED_SPIKES:
            raise UsageError(f"spikes_per_step must be an integer from 1 to {UNBOUNDED_SPIKES}, got {spikes_per_step!r}")
        spikes_per_step = int(spikes_per_step)
    if caps_given and reset == RESET_ZERO:
        raise UsageError("spikes_per_step fires floor(v / threshold) spikes and subtracts them (subtractive reset); it cannot be combined with reset='zero'")
    if dt is None:
        from ..graph.discretize import resolve_dt

        dt, notice = resolve_dt(graph, None)
        if notice:
            notes.append(notice)
    dt = validate_dt(dt)

    g, order = prepare_graph(graph)
    ins = [k for k in order if g.nodes[k].type == "Input"]
    outs = [k for k in order if g.nodes[k].type == "Output"]
    if len(ins) != 1 or len(outs) != 1:
        raise UnsupportedError(f"the reference simulator needs exactly one Input and one Output node, got {len(ins)} and {len(outs)}")
    in_name, out_name = ins[0], outs[0]
    in_shape = _static_out_shape(g.nodes[in_name])
    # real, finite, (batch, time, *input_shape) with batch, time >= 1: the shared validator
    # (without the event-count rule: this float simulator also takes currents)
    x = check_real_array(x, in_shape if in_shape is not None else (), what="input").astype(np.float64, copy=False)
    B, T = x.shape[:2]
    check_delays(g, dt)

    delayed = set(g.delayed_edges)
    preds: dict[str, list[tuple[str, bool]]] = {k: [] for k in g.nodes}
    for s, d in g.edges:
        preds[d].append((s, (s, d) in delayed))

    runtimes: dict[str, Any] = {}
    discr: dict[str, NeuronDiscretization] = {}
    if chip is not None:
        unknown = sorted((set(chip.spikes_per_step) | set(chip.decay) | set(chip.state_range)) - set(g.nodes))
        if unknown:
            raise UsageError(f"chip semantics name node(s) the graph does not have: {', '.join(unknown)}")
        if chip.input_max is not None:
            x = np.minimum(x, float(chip.input_max))
    for k in order:
        n = g.nodes[k]
        if n.type in DISCRETIZED_TYPES:
            discr[k] = discretize_node(n, dt, scheme, name=k)
            notes.extend(discr[k].notes)
            cap = spikes_per_step
            if chip is not None:
                cap = chip.spikes_per_step.get(k, cap)
                for key, val in chip.decay.get(k, {}).items():
                    if key not in ("alpha_v", "alpha_i") or (key == "alpha_i" and discr[k].alpha_i is None):
                        raise UsageError(f"chip semantics: {k} ({n.type}) has no decay {key!r}")
                    setattr(discr[k], key, np.broadcast_to(np.asarray(val, dtype=np.float64), discr[k].shape).copy())
            ranges = None
            if chip is not None and k in chip.state_range:
                ranges = {key: tuple(np.broadcast_to(np.asarray(b, dtype=np.float64), discr[k].shape) for b in lohi)
                          for key, lohi in chip.state_range[k].items() if key in ("v", "i")}
            runtimes[k] = _Neuron(discr[k], reset, cap, ranges)
        elif n.type in ("Affine", "Linear"):
            runtimes[k] = _Dense(n)
        elif n.type == "Delay":
            runtimes[k] = _Delay(n, dt, notes, T)
        elif n.type in NON_NIR_TYPES:
            raise UnsupportedError(
                f"{k} ({n.type}): not a NIR 1.0 primitive, so the reference simulator (NIR's semantics) does not run it "
                f"-- hint: {NON_NIR_TYPES[n.type].hint}"
            )
        elif n.type not in (
            "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d",
            "SumPool2d", "AvgPool2d", "Flatten", "Threshold",
        ):
            raise UnsupportedError(f"{k}: node type {n.type!r} is not supported by the reference simulator")

    rec: dict[str, dict[str, list]] | None = {k: {} for k in order} if record else None
    outputs: list[np.ndarray] = []
    prev: dict[str, np.ndarray] = {}
    err = np.seterr(over="ignore", invalid="ignore")  # divergence is reported in notes instead
    try:
        for t in range(T):
            cur: dict[str, np.ndarray] = {}
            for k in order:
                n = g.nodes[k]
                if n.type == "Input":
                    y = x[:, t]
                else:
                    parts = []
                    for s, is_delayed in preds[k]:
                        if is_delayed:
                            if s in prev:
                                parts.append(prev[s])
                        else:
                            parts.append(cur[s])
                    if parts:
                        inp = parts[0]
                        for p in parts[1:]:
                            if p.shape != inp.shape:
                                raise UnsupportedError(
                                    f"{k} ({n.type}): inputs of different shapes are summed: {inp.shape[1:]} and {p.shape[1:]}"
                                )
                            inp = inp + p
                    else:
                        shp = None
                        for s, _ in preds[k]:
                            shp = _static_out_shape(g.nodes[s])
                            if shp is not None:
                                break
                        if shp is None and n.input_shape is not None:
                            shp = tuple(n.input_shape)
                        if shp is None:
                            raise UnsupportedError(f"{k} ({n.type}): no input at step {t} and its input shape is unknown")
                        inp = np.zeros((B,) + tuple(shp))
                    y = _eval(n, inp, runtimes.get(k), rec[k] if rec is not None else None)
                cur[k] = y
                if rec is not None:
                    rec[k].setdefault("out", []).append(y)
            outputs.append(cur[out_name])
            prev = cur
            if progress is not None:
                progress(t + 1, T)
    finally:
        np.seterr(**err)
    for k, rt in runtimes.items():
        if isinstance(rt, _Neuron) and rt.diverged_at is not None:
            notes.append(f"{k} ({g.nodes[k].type}): the state diverges (|v| beyond {DIVERGENCE_LIMIT:g} or not finite from step {rt.diverged_at} on): "
                         "the discretization is unstable (forward Euler with dt > 2 tau; a tau in the wrong unit?) and the output is meaningless")

    if T:
        output = np.stack(outputs, axis=1)
    else:
        oshape = _static_out_shape(g.nodes[out_name]) or ()
        output = np.zeros((B, 0) + tuple(oshape))
    oshape_param = _static_out_shape(g.nodes[out_name])
    if T and oshape_param is not None and tuple(output.shape[2:]) != tuple(oshape_param):
        notes.append(f"Output node {out_name} declares shape {tuple(oshape_param)} but receives {tuple(output.shape[2:])}")

    states = None
    if rec is not None:
        states = {k: {var: np.stack(vals, axis=1) for var, vals in d.items()} for k, d in rec.items()} if T else {}
    return ReferenceResult(
        output=output,
        states=states,
        dt=dt,
        scheme=scheme,
        reset=reset,
        order=list(order),
        delayed_edges=sorted(delayed),
        discretization=discr,
        notes=notes,
    )


def _eval(n: Node, x: np.ndarray, rt: Any, rec: dict | None) -> np.ndarray:
    t = n.type
    p = n.params
    if t == "Output":
        return x
    if t in ("Affine", "Linear"):
        return rt(x) if rt is not None else _Dense(n)(x)
    if t == "Scale":
        return x * np.asarray(p["scale"], dtype=np.float64)
    if t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        w = np.asarray(p["weight"], dtype=np.float64)
        if w.ndim != nd + 2:
            raise UnsupportedError(f"{n.name} ({t}): weight of shape {w.shape} is not (Cout, Cin/groups, *kernel)")
        try:
            return conv_nd(
                x, w, p.get("bias"), p.get("stride", 1) if p.get("stride") is not None else 1,
                p.get("padding", 0) if p.get("padding") is not None else 0,
                p.get("dilation", 1) if p.get("dilation") is not None else 1,
                p.get("groups", 1) if p.get("groups") is not None else 1,
            )
        except UnsupportedError as e:
            raise UnsupportedError(f"{n.name} ({t}): {e}") from None
    if t in ("SumPool2d", "AvgPool2d"):
        try:
            return pool2d(x, p["kernel_size"], p.get("stride"), p.get("padding"), average=(t == "AvgPool2d"))
        except UnsupportedError as e:
            raise UnsupportedError(f"{n.name} ({t}): {e}") from None
    if t == "Flatten":
        return _flatten(x, n)
    if t == "Threshold":
        return (x > np.asarray(p["threshold"], dtype=np.float64)).astype(np.float64)
    if t == "Delay":
        return rt.step(x)
    if t in DISCRETIZED_TYPES:
        return rt.step(x, rec)
    raise UnsupportedError(f"{n.name}: node type {t!r} is not supported by the reference simulator")  # pragma: no cover
