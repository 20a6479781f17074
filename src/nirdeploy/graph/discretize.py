"""Time discretization of NIR's continuous-time neurons, and the choice of dt.

NIR has no ``dt`` (see ``chips/nir.md`` §6): exporters hide their training step inside ``r`` and
``w_in``. This module turns the ODEs of §2 into per-step update coefficients for a given ``dt``,
infers plausible dt values from parameter conventions, and holds the reset-mode constants.

Schemes
-------
``"euler"`` (forward Euler; what snnTorch, Norse, Lava and Xylo do)::

    LI/LIF      v[t] = v + dt/tau * (v_leak - v + r*x[t])
                     = alpha_v*v + gain_v*x[t] + bias_v,
                       alpha_v = 1 - dt/tau, gain_v = r*dt/tau, bias_v = v_leak*dt/tau
    Cuba*       I[t] = alpha_i*I + gain_i*x[t],  alpha_i = 1 - dt/tau_syn, gain_i = w_in*dt/tau_syn
                v[t] = alpha_v*v + gain_v*I[t] + bias_v   (with tau = tau_mem)

``"exact"`` (exponential integration with the stage input held constant over the step, i.e.
zero-order hold)::

    v[t] = v_inf + (v - v_inf)*exp(-dt/tau),  v_inf = v_leak + r*x[t]
         -> alpha_v = exp(-dt/tau), gain_v = r*(1-alpha_v), bias_v = v_leak*(1-alpha_v)
    Cuba*: the same for the current (alpha_i = exp(-dt/tau_syn), gain_i = w_in*(1-alpha_i)) and the
    NEW current I[t] held over the step for the voltage. For Cuba nodes this is per-stage exact,
    not the exact solution of the coupled two-stage linear ODE.

In both schemes the new current feeds the voltage in the same step (snnTorch ``Synaptic`` order).
``I``/``IF`` are pure integrators: alpha_v = 1, gain_v = r*dt, bias_v = 0 in both schemes.

With snnTorch's encoding (r = tau/dt, w_in = tau_syn/dt) forward Euler reduces to snnTorch's
``v = beta*v + I`` with gain 1 (beta = 1 - dt/tau).

Spikes and reset (see :data:`RESETS`): spike when v > v_threshold (strict); then ``"zero"``
sets v to ``v_reset`` (NIR >= 1.0.6 semantics) and ``"subtract"`` does v -= v_threshold (at most
one spike per step). The synaptic current of Cuba nodes is never reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphValidationError, Problem, UsageError
from .ir import Graph, Node

__all__ = [
    "SCHEME_EULER",
    "SCHEME_EXACT",
    "SCHEMES",
    "RESET_ZERO",
    "RESET_SUBTRACT",
    "RESETS",
    "validate_scheme",
    "validate_reset",
    "validate_dt",
    "check_delays",
    "MAX_DELAY_STEPS",
    "NeuronDiscretization",
    "discretize",
    "discretize_node",
    "DtCandidate",
    "infer_dt",
    "resolve_dt",
    "resolve_reset",
]

SCHEME_EULER = "euler"
SCHEME_EXACT = "exact"
SCHEMES: tuple[str, ...] = (SCHEME_EULER, SCHEME_EXACT)

RESET_ZERO = "zero"  # v <- v_reset (NIR >= 1.0.6)
RESET_SUBTRACT = "subtract"  # v <- v - v_threshold
RESETS: tuple[str, ...] = (RESET_ZERO, RESET_SUBTRACT)

# node types this module discretizes
_LEAKY = ("LI", "LIF")
_CUBA = ("CubaLI", "CubaLIF")
_INTEGRATORS = ("I", "IF")
DISCRETIZED_TYPES: tuple[str, ...] = _INTEGRATORS + _LEAKY + _CUBA


def validate_scheme(scheme: str) -> str:
    """``scheme`` if it is one of :data:`SCHEMES`, else UsageError (:func:`nirdeploy.inputs.check_choice`)."""
    from ..inputs import check_choice

    return check_choice("scheme", scheme, SCHEMES)


def validate_reset(reset: str) -> str:
    """``reset`` if it is one of :data:`RESETS`, else UsageError (:func:`nirdeploy.inputs.check_choice`)."""
    from ..inputs import check_choice

    return check_choice("reset", reset, RESETS)


def validate_dt(dt: Any) -> float:
    """``dt`` as a positive finite float (seconds), else :class:`UsageError` (also for a bool,
    None, a list or an array; a numeric string such as ``"1e-4"`` is accepted)."""
    if isinstance(dt, (bool, np.bool_, bytes, list, tuple, dict, set, np.ndarray)) or dt is None:
        raise UsageError(f"dt must be a positive number of seconds, got {dt!r}")
    try:
        f = float(dt)
    except (TypeError, ValueError):
        raise UsageError(f"dt must be a positive number of seconds, got {dt!r}") from None
    if not math.isfinite(f) or f <= 0.0:
        raise UsageError(f"dt must be a positive finite number of seconds, got {dt!r}")
    if not MIN_DT <= f <= MAX_DT:
        raise UsageError(f"dt = {f:g} s is outside [{MIN_DT:g}, {MAX_DT:g}] s: at such a step dt/tau over- or underflows "
                         "float64 in the discretized parameters (a unit error? dt is in seconds; nirdeploy inspect lists dt candidates)")
    return f


#: the range of dt (s) nirdeploy accepts: beyond it dt/tau and tau/dt leave float64 (dt = 5e-324 or
#: 1.7e308 crashed the Xylo and Loihi 2 lowerings); every chip steps far inside it
MIN_DT, MAX_DT = 1e-12, 1e6


#: the longest Delay nirdeploy accepts, in steps of dt (a 32-bit step counter)
MAX_DELAY_STEPS = 2**31 - 1


def check_delays(g: Graph, dt: float) -> None:
    """Every Delay's delay must be at most :data:`MAX_DELAY_STEPS` steps of ``dt``; raise one
    :class:`GraphValidationError` listing every Delay that overflows at this ``dt``."""
    probs: list[Problem] = []
    for name, n in g.iter_nodes_recursive():
        if n.type != "Delay":
            continue
        try:
            d = np.asarray(n.params.get("delay", 0.0), dtype=np.float64)
        except (TypeError, ValueError):
            continue  # the graph validator reports a non-numeric delay
        if d.size == 0:
            continue
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            steps = np.abs(d) / dt
        worst = float(np.max(np.where(np.isfinite(steps), steps, np.inf)))
        if worst > MAX_DELAY_STEPS:
            dmax = float(np.max(np.abs(d)))
            probs.append(Problem(
                name, "Delay", "delay",
                f"a delay of {dmax:g} s is {worst:.3g} steps of dt = {dt:g} s; at most {MAX_DELAY_STEPS} steps are supported",
                f"<= {MAX_DELAY_STEPS * dt:g} s", dmax,
            ))
    if probs:
        raise GraphValidationError(probs)


# -- per-node discretization -------------------------------------------------------------------


@dataclass
class NeuronDiscretization:
    """Per-step update coefficients of one neuron node (all arrays float64, neuron-shaped).

    Update per step (``x`` = the node's summed input)::

        [Cuba]  i = alpha_i*i + gain_i*x ; drive = i      [others] drive = x
        v = alpha_v*v + gain_v*drive + bias_v
        [spiking] z = v > threshold ; reset where z

    ``tau_effective`` is the continuous membrane time constant that the discrete decay really
    implements, ``-dt/ln(alpha_v)`` (equal to tau for "exact"; inf for integrators; nan when the
    Euler decay is <= 0). ``notes`` are warn-level findings (e.g. dt >= tau).
    """

    name: str
    type: str
    scheme: str
    dt: float
    alpha_v: np.ndarray
    gain_v: np.ndarray
    bias_v: np.ndarray
    alpha_i: np.ndarray | None = None
    gain_i: np.ndarray | None = None
    threshold: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    tau_effective: np.ndarray | None = None
    tau_effective_syn: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None

    @property
    def cuba(self) -> bool:
        return self.alpha_i is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.alpha_v.shape)

    def to_dict(self) -> dict:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=np.float64).tolist()

        return {
            "name": self.name,
            "type": self.type,
            "scheme": self.scheme,
            "dt": self.dt,
            "alpha_v": arr(self.alpha_v),
            "gain_v": arr(self.gain_v),
            "bias_v": arr(self.bias_v),
            "alpha_i": arr(self.alpha_i),
            "gain_i": arr(self.gain_i),
            "threshold": arr(self.threshold),
            "v_reset": arr(self.v_reset),
            "tau_effective": arr(self.tau_effective),
            "tau_effective_syn": arr(self.tau_effective_syn),
            "notes": list(self.notes),
        }


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _neuron_shape(node: Node) -> tuple[int, ...]:
    shapes = [np.shape(node.params[k]) for k in node.spec.neuron_params if node.params.get(k) is not None]
    try:
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()
    except ValueError:
        raise UsageError(f"{node.name} ({node.type}): neuron parameters have incompatible shapes {shapes}") from None


def _param(node: Node, key: str, shape, default: float | None = None) -> np.ndarray:
    v = node.params.get(key)
    if v is None:
        if default is None:
            raise UsageError(f"{node.name} ({node.type}): missing parameter {key!r}")
        v = default
    return np.broadcast_to(_f64(v), shape).copy()


def _tau_eff(alpha: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(alpha >= 1.0, np.inf, np.where(alpha > 0.0, -dt / np.log(np.where(alpha > 0, alpha, 1.0)), np.nan))
    return out


def _decay(tau: np.ndarray, dt: float, scheme: str, what: str, node: Node, notes: list[str]) -> np.ndarray:
    """(alpha, k) with alpha the per-step decay and k the weight of the held input (1 - alpha for
    exact, dt/tau for Euler)."""
    if np.any(~np.isfinite(tau)) or np.any(tau <= 0):
        raise UsageError(f"{node.name} ({node.type}): {what} must be finite and > 0, got min {np.min(tau)!r}")
    ratio = dt / tau
    if scheme == SCHEME_EULER:
        alpha = 1.0 - ratio
        k = ratio
        n_bad = int(np.sum(ratio >= 1.0))
        if n_bad:
            n_div = int(np.sum(ratio > 2.0))
            msg = (
                f"{node.name} ({node.type}): dt={dt:g} >= {what} for {n_bad} of {tau.size} neuron(s) "
                f"(min {what} {np.min(tau):.4g}); forward-Euler decay 1 - dt/{what} <= 0 "
                f"(min {np.min(alpha):.4g}): the update oscillates instead of decaying"
            )
            if n_div:
                msg += f", and diverges for {n_div} neuron(s) with dt > 2*{what}"
            notes.append(msg)
    else:
        alpha = np.exp(-ratio)
        k = -np.expm1(-ratio)
        n_bad = int(np.sum(ratio >= 1.0))
        if n_bad:
            notes.append(
                f"{node.name} ({node.type}): dt={dt:g} >= {what} for {n_bad} of {tau.size} neuron(s) "
                f"(min {what} {np.min(tau):.4g}); the exponential update is stable but dt is coarse "
                f"(decay exp(-dt/{what}) down to {np.min(alpha):.3g} per step)"
            )
    return alpha, k


def discretize_node(node: Node, dt: float, scheme: str = SCHEME_EULER, name: str | None = None) -> NeuronDiscretization:
    """Discretization of one neuron node (types in :data:`DISCRETIZED_TYPES`)."""
    dt = validate_dt(dt)
    validate_scheme(scheme)
    name = node.name if name is None else name
    t = node.type
    if t not in DISCRETIZED_TYPES:
        raise UsageError(f"{name} ({t}) is not a neuron node")
    shape = _neuron_shape(node)
    notes: list[str] = []
    r = _param(node, "r", shape)
    alpha_i = gain_i = tau_eff_syn = None
    if t in _INTEGRATORS:
        alpha_v = np.ones(shape)
        gain_v = r * dt
        bias_v = np.zeros(shape)
    else:
        v_leak = _param(node, "v_leak", shape)
        tau = _param(node, "tau" if t in _LEAKY else "tau_mem", shape)
        alpha_v, k = _decay(tau, dt, scheme, "tau" if t in _LEAKY else "tau_mem", node, notes)
        gain_v = r * k
        bias_v = v_leak * k
        if t in _CUBA:
            tau_syn = _param(node, "tau_syn", shape)
            w_in = _param(node, "w_in", shape, default=1.0)
            alpha_i, k_i = _decay(tau_syn, dt, scheme, "tau_syn", node, notes)
            gain_i = w_in * k_i
            tau_eff_syn = _tau_eff(alpha_i, dt)
    threshold = v_reset = None
    if t in ("IF", "LIF", "CubaLIF"):
        threshold = _param(node, "v_threshold", shape)
        v_reset = _param(node, "v_reset", shape, default=0.0)
    return NeuronDiscretization(
        name=name,
        type=t,
        scheme=scheme,
        dt=dt,
        alpha_v=alpha_v,
        gain_v=gain_v,
        bias_v=bias_v,
        alpha_i=alpha_i,
        gain_i=gain_i,
        threshold=threshold,
        v_reset=v_reset,
        tau_effective=_tau_eff(alpha_v, dt),
        tau_effective_syn=tau_eff_syn,
        notes=notes,
    )


def discretize(g: Graph, dt: float, scheme: str = SCHEME_EULER) -> dict[str, NeuronDiscretization]:
    """One :class:`NeuronDiscretization` per neuron node, keyed by (dotted, for subgraphs) name.

    Raises :class:`UsageError` for dt <= 0 or non-finite, or an unknown scheme. Warn-level
    findings (dt >= tau) are in each entry's ``notes``; :func:`discretization_notes` collects them.
    """
    dt = validate_dt(dt)
    validate_scheme(scheme)
    out: dict[str, NeuronDiscretization] = {}
    for full, n in g.iter_nodes_recursive():
        if n.type in DISCRETIZED_TYPES:
            out[full] = discretize_node(n, dt, scheme, name=full)
    return out


def discretization_notes(d: dict[str, NeuronDiscretization]) -> list[str]:
    return [m for nd in d.values() for m in nd.notes]


# -- dt inference ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DtCandidate:
    """A dt (seconds) that one library convention implies for the graph's parameters."""

    dt: float
    convention: str  # "snntorch" | "rockpool" | "sinabs"
    evidence: str
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"dt": self.dt, "convention": self.convention, "evidence": self.evidence, "nodes": list(self.nodes)}

    def __str__(self) -> str:
        return f"dt={self.dt:g} s ({self.convention}: {self.evidence})"


def _round_sig(x: float, sig: int = 3) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{sig - 1}e}")


def _neurons_for_dt(g: Graph):
    """(name, type, tau_mem, r, tau_syn|None, w_in|None) as flat float64 arrays per neuron node."""
    rows = []
    for full, n in g.iter_nodes_recursive():
        if n.type not in DISCRETIZED_TYPES:
            continue
        try:
            shape = _neuron_shape(n)
            r = _param(n, "r", shape).ravel()
            tau = tau_syn = w_in = None
            if n.type in _LEAKY:
                tau = _param(n, "tau", shape).ravel()
            elif n.type in _CUBA:
                tau = _param(n, "tau_mem", shape).ravel()
                tau_syn = _param(n, "tau_syn", shape).ravel()
                w_in = _param(n, "w_in", shape, default=1.0).ravel()
        except (UsageError, ValueError, TypeError):
            continue
        rows.append((full, n.type, tau, r, tau_syn, w_in))
    return rows


def _close(a: np.ndarray, b: float, rtol: float) -> bool:
    return bool(np.all(np.abs(a - b) <= rtol * abs(b)))


def infer_dt(g: Graph) -> list[DtCandidate]:
    """dt values implied by known exporter conventions (``chips/nir.md`` §6), best first.

    * snnTorch: r == tau_mem/dt (and w_in == tau_syn/dt for Cuba) for ONE dt shared by every leaky
      neuron; candidate dt = tau/r, rounded to 3 significant digits (float32 files).
    * Rockpool: r = tau*exp(-dt/tau)/dt, so tau/(1+r) is roughly constant; Rockpool's importer
      uses min over neurons of tau_mem/(1+r) per layer. Only tried when the snnTorch rule fails
      (for snnTorch graphs tau/(1+r) is also constant per layer but equals dt*r/(1+r)).
    * r == 1 everywhere (Norse/Sinabs style): no dt can be inferred from leaky neurons. If the graph
      has only I/IF neurons, report Sinabs' convention (one time step is the unit, dt = 1); if all
      taus are >= 1 (implausible in seconds), report Sinabs' "tau in steps" (dt = 1).

    Returns ``[]`` when nothing can be said.
    """
    rows = _neurons_for_dt(g)
    if not rows:
        return []
    leaky = [row for row in rows if row[2] is not None]
    all_r = np.concatenate([row[3] for row in rows])
    r_is_one = bool(np.all(np.abs(all_r - 1.0) <= 1e-6))

    if r_is_one:
        names = tuple(row[0] for row in rows)
        if not leaky:
            return [
                DtCandidate(
                    1.0,
                    "sinabs",
                    "only I/IF neurons, all with r = 1: the Sinabs convention, one time step is the "
                    "unit of time (dt = 1, v += x per step); r carries no dt",
                    names,
                )
            ]
        taus = np.concatenate([row[2] for row in leaky] + [row[4] for row in leaky if row[4] is not None])
        if np.all(taus >= 1.0):
            return [
                DtCandidate(
                    1.0,
                    "sinabs",
                    f"r = 1 everywhere and every tau >= 1 (min {np.min(taus):g}), implausible in "
                    "seconds: Sinabs reads tau as a number of time steps (dt = 1, decay exp(-1/tau), "
                    "i.e. scheme 'exact')",
                    names,
                )
            ]
        return []  # Norse style: dt must be supplied

    if not leaky:
        return []  # integrators only with r != 1: r*dt is a gain, no dt in it

    # snnTorch: tau/r equal for all leaky neurons
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.concatenate([row[2] / row[3] for row in leaky])
    if ratios.size and np.all(np.isfinite(ratios)) and np.all(ratios > 0):
        rounded = {_round_sig(float(v)) for v in ratios}
        if len(rounded) == 1:
            dt = rounded.pop()
            syn_ok = all(
                _close(row[4] / row[5], dt, 1e-3) for row in leaky if row[4] is not None and np.all(row[5] > 0)
            )
            n_cuba = sum(1 for row in leaky if row[4] is not None)
            ev = f"r == tau_mem/dt for every leaky neuron ({ratios.size} neurons) with one dt = tau/r = {dt:g} s"
            if n_cuba:
                ev += (
                    "; w_in == tau_syn/dt as well" if syn_ok else "; but w_in != tau_syn/dt for some Cuba neurons"
                )
            return [DtCandidate(dt, "snntorch", ev, tuple(row[0] for row in leaky))]

    # Rockpool: tau/(1+r) roughly constant per layer; Rockpool picks the per-layer min
    per_layer: dict[float, list[str]] = {}
    spread_ok = True
    details = []
    for row in leaky:
        q = row[2] / (1.0 + row[3])
        if not (np.all(np.isfinite(q)) and np.all(q > 0)):
            spread_ok = False
            break
        if (np.max(q) - np.min(q)) > 0.05 * np.min(q):
            spread_ok = False
            break
        dmin = _round_sig(float(np.min(q)))
        per_layer.setdefault(dmin, []).append(row[0])
        details.append(f"{row[0]}: {dmin:g}")
    if spread_ok and per_layer:
        vals = sorted(per_layer)
        if (vals[-1] - vals[0]) <= 0.05 * vals[0]:
            cands = []
            for v in vals:
                ev = (
                    "tau_mem/(1+r) roughly constant (Rockpool's exponential-Euler export, r = "
                    "tau*exp(-dt/tau)/dt); dt = min over neurons of tau_mem/(1+r), computed per layer "
                    f"by Rockpool's importer ({'; '.join(details)})"
                )
                cands.append(DtCandidate(v, "rockpool", ev, tuple(per_layer[v])))
            return cands
    return []


def resolve_dt(g: Graph, dt: float | None) -> tuple[float, str | None]:
    """The dt to use and an optional notice to print.

    Given ``dt``, it is validated and returned (a notice only when it differs from the dt
    recorded in the graph's metadata by nirdeploy's exporter, see
    :mod:`nirdeploy.graph.provenance`). With ``dt=None``: the recorded dt if there is one (with a
    notice); otherwise exactly one candidate from :func:`infer_dt` is used and a notice says so;
    zero or several candidates raise :class:`UsageError` listing them (compile never guesses
    silently).
    """
    from .provenance import recorded

    rec = recorded(g)
    if dt is not None:
        dt = validate_dt(dt)
        if rec.dt is not None and not math.isclose(dt, rec.dt, rel_tol=1e-9):
            return dt, (
                f"dt = {dt:g} s differs from the dt = {rec.dt:g} s the model was trained with "
                f"({rec.describe()}); the network will not behave as it did in training"
            )
        return dt, None
    if rec.dt is not None:
        return rec.dt, f"dt not given; using dt = {rec.dt:g} s {rec.describe()}. Pass dt explicitly to override."
    cands = infer_dt(g)
    if len(cands) == 1:
        c = cands[0]
        notice = (
            f"dt not given; using dt = {c.dt:g} s inferred from the {c.convention} convention "
            f"({c.evidence}). Pass dt explicitly to override."
        )
        return c.dt, notice
    if not cands:
        raise UsageError(
            "dt not given and it cannot be inferred from the graph's parameters (NIR has no dt; "
            "e.g. r = 1 everywhere as Norse writes). Pass dt in seconds (--dt), e.g. dt=1e-4 for "
            "graphs trained in snnTorch."
        )
    listing = "\n".join(f"  - {c}" for c in cands)
    raise UsageError(f"dt not given and the graph's parameters suggest several values; pass one explicitly:\n{listing}")


#: the cap that stands for "no cap" when a graph records Sinabs' unbounded MultiSpike rule
UNBOUNDED_SPIKES = 2**31 - 1


def resolve_spike_rule(g: Graph, spikes_per_step: int | None, reset: str | None) -> tuple[int | None, str | None]:
    """The reference's spike cap and an optional notice, from the rule recorded in the graph
    (:mod:`nirdeploy.graph.provenance`, ``nirdeploy_spike_rule``): ``spikes_per_step`` when
    given; else :data:`UNBOUNDED_SPIKES` (floor(v / threshold) spikes per step, subtracted, as
    Sinabs' MultiSpike) when the graph records ``"multi"`` and ``reset`` is not ``"zero"``;
    else None (NIR's one spike per step). A recorded ``"multi"`` that is not applied (reset
    ``"zero"``) gets a notice too: the reference then differs from the trained model."""
    from .provenance import recorded

    if spikes_per_step is not None:
        return spikes_per_step, None
    rec = recorded(g)
    if rec.spike_rule != "multi":
        return None, None
    if reset == RESET_ZERO:
        return None, (f"the model was trained with multi-spike steps ({rec.describe()}); with reset = 'zero' the reference "
                      "fires at most one spike per step, so it can differ from the trained model")
    return UNBOUNDED_SPIKES, (f"spike rule: multi-spike steps, floor(v / threshold) spikes per step with subtractive reset, as "
                              f"recorded in the graph ({rec.describe()}); --spikes-per-step N caps it")


def resolve_reset(g: Graph, reset: str | None) -> tuple[str, str | None]:
    """The reset mode to use and an optional notice: ``reset`` when given (a notice when it
    differs from the mode recorded in the graph's metadata), else the recorded mode (with a
    notice), else ``"zero"`` (NIR >= 1.0.6 semantics, no notice)."""
    from .provenance import recorded

    rec = recorded(g)
    if reset is not None:
        reset = validate_reset(reset)
        if rec.reset is not None and reset != rec.reset:
            return reset, (
                f"reset = {reset!r} differs from the reset {rec.reset!r} the model was trained with "
                f"({rec.describe()})"
            )
        return reset, None
    if rec.reset is not None:
        return rec.reset, f"reset not given; using reset = {rec.reset!r} {rec.describe()}"
    return RESET_ZERO, None
