"""Norse 1.1.0 frontend: export Norse models to NIR and build Norse models from NIR, with the
time step, reset and ``r`` handled (``chips/nir.md`` §6-8).

Export (:func:`export`) uses nirtorch's tracer, as ``norse.torch.to_nir`` does, with these
repairs of Norse's exporter (nir 1.0.8):

=============================================  ===============================================
Norse exporter defect                          nirdeploy
=============================================  ===============================================
batch dim kept in Input -> type check fails    traced with the batch axis dropped
tau = dt / tau_inv (#411)                      tau = 1 / tau_inv (seconds), dt recorded
LIFCell -> CubaLIF without w_in                w_in = tau_syn / dt (Norse adds the input to the
                                               current with gain 1)
IAFCell -> IF with r = 1 (v += x per step)     r = 1 / dt
scalar parameters -> ``nir.write`` fails       broadcast to the layer shape
Linear without bias -> Affine with zero bias   Linear
Conv2d without bias -> AttributeError          Conv2d with zero bias
Flatten, LPPool2d -> ``None`` nodes            Flatten (dims shifted), SumPool2d
reset method not recorded                      recorded (``reset_value`` -> zero,
                                               ``reset_subtract`` -> subtract)
=============================================  ===============================================

Why nirdeploy's module map and not Norse's ``_extract_norse_module``: for Linear with a bias and
Conv2d with a bias the two give the same node, but that function is private, the plain torch
layers map through one function shared by the three frontends (``_common.common_node``: the same
torch layer gives the same node whatever the library), and every Norse neuron node must be
rebuilt (tau, w_in, r, shapes). Tracing is Norse's own: ``nirtorch.extract_nir_graph``, which
``norse.torch.to_nir`` calls; ``to_nir``'s result cannot be repaired afterwards where it fails
(None nodes, AttributeError, files ``nir.write`` rejects).

Norse starts every membrane at ``v_leak``; NIR (and nirdeploy) at 0: with ``v_leak != 0`` the
verification shows the difference. Model convention: a ``norse.torch.SequentialState`` (or any
module with ``forward(x_t, state) -> (y_t, state)``) stepped one time step at a time.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError, UsageError
from ..graph.ir import Graph, Node
from . import _common as C

__all__ = ["LIBRARY", "PINS", "export", "run_model", "build", "native_import"]

LIBRARY = "norse"
PINS = "norse==1.1.0 (pip install --no-deps norse==1.1.0) nirtorch==2.6 nir==1.0.8"


def _norse():
    return C.require("norse.torch", PINS, "Norse")


def _cells():
    _norse()
    import norse.torch.module.iaf as iaf
    import norse.torch.module.leaky_integrator_box as li_box
    import norse.torch.module.lif as lif
    import norse.torch.module.lif_box as lif_box

    return lif_box.LIFBoxCell, lif.LIFCell, li_box.LIBoxCell, iaf.IAFCell


def _reset_mode(p) -> str | C.Unsupported:
    import norse.torch.functional.reset as R

    fn = getattr(p, "reset_method", R.reset_value)
    if fn is R.reset_value:
        return "zero"
    if fn is R.reset_subtract:
        return "subtract"
    return C.Unsupported(f"reset_method {getattr(fn, '__name__', fn)}", "use reset_value or reset_subtract")


def _node_map(state: dict):
    import nir

    LIFBoxCell, LIFCell, LIBoxCell, IAFCell = _cells()

    def a(t):
        return C.as_numpy(t)

    import norse.torch.module.lif as lif_mod

    def m(module):
        if isinstance(module, lif_mod.LIFRecurrentCell):
            # i = i + W_in x + W_rec z[t-1], then as LIFCell: a CubaLIF between two Linear nodes
            inner = m(lif_mod.LIFCell(module.p, dt=module.dt))
            if isinstance(inner, C.Unsupported):
                return inner
            w_in, w_rec = a(module.input_weights), a(module.recurrent_weights)
            n = w_rec.shape[0]
            one = np.ones(n)
            inner = nir.CubaLIF(**{k: np.asarray(getattr(inner, k)) * one for k in
                                   ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")})
            return nir.NIRGraph(
                nodes={"input": nir.Input(input_type={"input": np.array([w_in.shape[1]])}), "w_in": nir.Linear(weight=w_in),
                       "lif": inner, "w_rec": nir.Linear(weight=w_rec), "output": nir.Output(output_type={"output": np.array([n])})},
                edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                type_check=False,
            )
        if isinstance(module, (LIFBoxCell, LIFCell, LIBoxCell, IAFCell)):
            mdt = float(module.dt)
            state["dts"].add(mdt)
            p = module.p
            if isinstance(module, LIBoxCell):
                tau = 1.0 / a(p.tau_mem_inv)
                shape = np.broadcast(tau, a(p.v_leak)).shape
                one = np.ones(shape)
                return nir.LI(tau=tau * one, r=one, v_leak=a(p.v_leak) * one)
            if hasattr(p, "v_leak") and np.any(a(p.v_leak) != 0):
                state["reasons"].append("Norse starts the membrane at v_leak, NIR at 0: the first steps differ")
            if isinstance(module, IAFCell):
                state["resets"].add("zero")
                shape = np.broadcast(a(p.v_th), a(p.v_reset)).shape
                one = np.ones(shape)
                return nir.IF(r=one / mdt, v_threshold=a(p.v_th) * one, v_reset=a(p.v_reset) * one)
            if isinstance(module, LIFBoxCell):
                mode = _reset_mode(p)
                if isinstance(mode, C.Unsupported):
                    return mode
                state["resets"].add(mode)
                tau = 1.0 / a(p.tau_mem_inv)
                shape = np.broadcast(tau, a(p.v_leak), a(p.v_th), a(p.v_reset)).shape
                one = np.ones(shape)
                return nir.LIF(tau=tau * one, r=one, v_leak=a(p.v_leak) * one, v_threshold=a(p.v_th) * one,
                               v_reset=a(p.v_reset) * one)
            # LIFCell: i_new = i + x; v += dt/tau_mem*((v_leak - v) + i_new); i = (1 - dt/tau_syn) i_new
            state["resets"].add("zero")
            tau_m = 1.0 / a(p.tau_mem_inv)
            tau_s = 1.0 / a(p.tau_syn_inv)
            shape = np.broadcast(tau_m, tau_s, a(p.v_leak), a(p.v_th), a(p.v_reset)).shape
            one = np.ones(shape)
            return nir.CubaLIF(tau_syn=tau_s * one, tau_mem=tau_m * one, r=one, v_leak=a(p.v_leak) * one,
                               v_threshold=a(p.v_th) * one, v_reset=a(p.v_reset) * one, w_in=tau_s / mdt * one)
        return C.common_node(module, 0.0)

    return m


def export(model, sample, *, dt: float | None = None, strict: bool = True, fold_batchnorm: bool = False) -> Graph:
    """A Norse model as a nirdeploy Graph that reproduces it (verified on ``sample``, (batch,
    time, *input_shape)). ``dt`` defaults to the cells' own ``dt``; a different value raises
    :class:`UsageError`. Errors as in :func:`nirdeploy.frontends.snntorch.export`."""

    _norse()
    from ..graph.discretize import validate_dt
    from ..graph.provenance import with_recorded

    if dt is not None:
        dt = validate_dt(dt)
    x = C.export_arguments(model, sample, strict, fold_batchnorm, LIBRARY)
    st = {"dts": set(), "resets": set(), "reasons": []}
    g = C.trace_to_ir(_Stepper(model), x[:, 0].float(), _node_map(st), ignore_dims=[0],
                      fold_batchnorm=fold_batchnorm, library=LIBRARY)
    if len(st["dts"]) > 1:
        raise UnsupportedError(f"norse: the cells integrate with different dt {sorted(st['dts'])}; use one dt")
    mdt = st["dts"].pop() if st["dts"] else None
    if dt is not None and mdt is not None and not np.isclose(dt, mdt, rtol=1e-9):
        raise UsageError(f"norse: the model's cells integrate with dt = {mdt:g} s, not {dt:g} s; pass dt={mdt:g} or rebuild the cells")
    dt = validate_dt(dt if dt is not None else (mdt if mdt is not None else 1e-3))
    if len(st["resets"]) > 1:
        raise UnsupportedError(f"norse: the model mixes reset methods {sorted(st['resets'])}; nirdeploy graphs carry one reset mode")
    reset = st["resets"].pop() if st["resets"] else "zero"
    import norse

    g = with_recorded(g, dt=dt, reset=reset, source=f"norse {getattr(norse, '__version__', '1.1.0')}")
    from ..sim.reference import simulate_reference

    y_model = run_model(model, x.float())
    y_graph = simulate_reference(g, x.numpy(), dt, reset=reset).output
    v = C.verify_export(y_model, y_graph, spiking=_spiking(g))
    v.reasons = list(dict.fromkeys(st["reasons"]))
    C.settle(v, LIBRARY, strict)
    return g


def _spiking(g: Graph) -> bool:
    from ..graph.ir import SPIKING_TYPES

    out = g.outputs[0].name
    src = [s for s, d in g.edges if d == out]
    return bool(src) and g.nodes[src[0]].type in SPIKING_TYPES


class _Stepper:
    """Wraps a stateful Norse model for nirtorch's tracer, which calls ``model(x)`` once."""

    def __new__(cls, model):
        return model


def run_model(model, x) -> np.ndarray:
    """``model`` stepped over time: x (batch, time, *input) -> (batch, time, *output); each call
    is ``y, state = model(x_t, state)``."""
    _norse()
    return C.run_steps(model, x)


# -- import: NIR -> Norse ---------------------------------------------------------------------


def _neuron_factory(reset: str):
    _norse()
    import torch
    from norse.torch.functional import reset as R
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters, iaf_feed_forward_step
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step

    from ..graph.discretize import discretize_node

    class NorseNeuron(torch.nn.Module):
        """One NIR neuron node as Norse's box cells (forward Euler at ``dt``): LIF -> LIFBox,
        LI -> LIBox, CubaLIF -> LIBox (current, input x w_in) then LIFBox (input x r), IF ->
        IAF (input x r*dt). State starts at 0 (NIR), not at Norse's v_leak."""

        def __init__(self, name, node: Node, ctx):
            super().__init__()
            if ctx.scheme != "euler":
                raise UnsupportedError(f"{name}: Norse integrates with forward Euler; use scheme='euler'")
            d = discretize_node(node, ctx.dt, ctx.scheme, name=name)
            ctx.notes.extend(d.notes)
            self.dt = ctx.dt
            T = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=ctx.dtype)  # noqa: E731
            p = node.params
            self.kind = node.type
            method = R.reset_value if reset == "zero" else R.reset_subtract
            if node.type == "IF":
                if reset != "zero":
                    raise UnsupportedError(f"{name}: Norse's IAF resets to a value only; reset='subtract' cannot be built")
                self.p = IAFParameters(v_th=T(d.threshold), v_reset=T(d.v_reset))
                self.register_buffer("gain", T(d.gain_v))
            elif node.type in ("LIF", "LI", "CubaLIF", "CubaLI"):
                cuba = node.type.startswith("Cuba")
                if cuba:  # the synaptic current: a leaky integrator fed with w_in * x
                    self.syn = LIBoxParameters(tau_mem_inv=T(1.0 / np.asarray(p["tau_syn"], dtype=np.float64)), v_leak=T(0.0))
                    self.register_buffer("w_in", T(p.get("w_in", 1.0)))
                tau_inv = T(1.0 / np.asarray(p["tau_mem" if cuba else "tau"], dtype=np.float64))
                if node.type.endswith("LIF"):
                    self.p = LIFBoxParameters(tau_mem_inv=tau_inv, v_leak=T(p["v_leak"]), v_th=T(d.threshold),
                                              v_reset=T(d.v_reset), reset_method=method)
                else:
                    self.p = LIBoxParameters(tau_mem_inv=tau_inv, v_leak=T(p["v_leak"]))
                self.register_buffer("gain", T(p["r"]))
            else:
                raise UnsupportedError(f"{name}: Norse has no equivalent of NIR {node.type}")

        def initial_state(self, x):
            z = torch.zeros_like(x)
            return (z, z.clone())

        def forward_step(self, x, state):
            v, i = state
            if self.kind == "IF":
                z, s = iaf_feed_forward_step(x * self.gain, IAFFeedForwardState(v=v), self.p, self.dt)
                return z, (s.v, i)
            if self.kind in ("CubaLIF", "CubaLI"):
                i = _li_box(x * self.w_in, i, self.syn, self.dt)
                x = i
            if self.kind in ("LIF", "CubaLIF"):
                z, s = lif_box_feed_forward_step(x * self.gain, LIFBoxFeedForwardState(v=v), self.p, self.dt)
                return z, (s.v, i)
            v = _li_box(x * self.gain, v, self.p, self.dt)
            return v, (v, i)

    def _li_box(x, v, p, dt):
        # norse.torch.functional.leaky_integrator_box.li_box_step's update, without its input weights
        return v + dt * p.tau_mem_inv * ((p.v_leak - v) + x)

    def factory(name, node, ctx):
        if node.type in ("LIF", "CubaLIF", "IF", "LI", "CubaLI"):
            return NorseNeuron(name, node, ctx)
        return None

    return factory


def build(graph, *, dt: float | None = None, reset: str | None = None, scheme: str = "euler", dtype=None):
    """A runnable torch module of ``graph`` whose neurons are Norse's own step functions at the
    given dt (default: the dt recorded in the graph), with ``r`` and ``w_in`` applied as input
    gains (Norse's importer ignores ``r``). ``forward(x)``: (batch, time, *input) -> output."""
    from .snntorch import _build_with

    _norse()
    return _build_with(graph, dt, reset, scheme, dtype, _neuron_factory)


def native_import(path: str):
    """Norse's own importer (``norse.torch.from_nir``, default dt = 1e-3 s, ``r`` ignored), as a
    user would call it; returns a function x (batch, time, *input) -> output."""
    norse_torch = _norse()
    import nir

    net = norse_torch.from_nir(nir.read(str(path), type_check=False))
    return lambda x: C.run_steps(net, x)
