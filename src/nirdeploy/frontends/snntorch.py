"""snnTorch 1.0.0 frontend: export a trained snnTorch model to NIR, and build snnTorch models
from NIR, with the time step, reset and ``r`` handled (``chips/nir.md`` §6-8).

Export (:func:`export`) traces the model with nirtorch's tracer, as
``snntorch.export_nir.export_to_nir`` does, maps each module with nirdeploy's table below and
verifies the graph against the model's own forward on the sample. Defects of snnTorch's exporter
(nir 1.0.8) and what nirdeploy does (each has a test in ``tests/test_exporter_defects.py`` or
``tests/test_frontends.py`` that shows both sides):

===========================================  =================================================
snnTorch exporter defect                     nirdeploy
===========================================  =================================================
batch dim in Input -> type check fails       trace with the batch axis dropped
scalar beta / threshold -> ``input_type=[]``  broadcast to the layer shape after tracing
dt = 1e-4 s hard-coded in tau and r          the caller's dt (default 1e-4) and r = tau/dt;
                                             dt is recorded in the graph's metadata
reset mechanism not recorded (v_reset = 0)   recorded (``zero``/``subtract``)
late reset (``reset_delay=True``, default)   exact where it is the same as NIR's reset
not mentioned                                (Leaky with ``zero``; ``subtract`` with beta = 1);
                                             otherwise named with its arithmetic (subtract =
                                             threshold/beta in the spike's step; zero = a
                                             refractory step that drops the input) and warned
                                             about even when the sample agrees
RSynaptic(reset_delay=False) crashes         the snnTorch 1.0.0 bug is detected and stated
                                             (:data:`RSYNAPTIC_BUG`); RSynaptic exports only
                                             with its late reset, with the warning above
recurrent bias kept in ``w_rec``: whether it  moved into the feed-forward Affine before the
arrives at t = 0 depends on where a NIR       neuron (exact under both readings); kept, with
consumer puts the loop's one-step delay       a reason, when there is no such Affine
no IF (beta = 1 gives tau = inf)             beta = 1 exports as IF with r = 1/dt
AvgPool2d padding dropped (type mismatch)    kept
sinabs SumPool2d / LPPool2d(1) -> None node  SumPool2d
MaxPool, BatchNorm -> "not implemented"      an error naming the module with a hint
===========================================  =================================================

Why nirdeploy's module map and not snnTorch's ``_extract_snntorch_module``: for Linear, Flatten
and Conv2d the two give the same node, but that function is private (no API promise), and the
plain torch layers map through one shared function (``_common.common_node``) so the same layer
gives the same node whichever library the model comes from (the three libraries' exporters
disagree on Linear without bias and Conv without bias). For every neuron snnTorch's node has to
be rebuilt anyway (dt, shapes, reset). The part worth sharing, tracing the module graph, is the
library's: ``nirtorch.extract_nir_graph``, which ``export_to_nir`` itself calls. Calling
``export_to_nir`` first and repairing its result is not possible where it matters: it raises
before returning a graph (type checks, None nodes).

Model convention: a module that takes one time step ``(batch, *input_shape)`` and returns the
spikes of that step (snnTorch layers with ``init_hidden=True``; ``output=True`` layers return
``(spk, mem)``, the spikes are used), as in snnTorch's own export example.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..graph.ir import Graph, Node
from . import _common as C

__all__ = ["LIBRARY", "PINS", "DEFAULT_DT", "export", "run_model", "build", "native_import"]

LIBRARY = "snntorch"
PINS = "snntorch==1.0.0 nirtorch==2.6 nir==1.0.8"
DEFAULT_DT = 1e-4  # snnTorch's exporter convention


def _snn():
    return C.require("snntorch", PINS, "snnTorch")


def _arr(t, shape=None) -> np.ndarray:
    a = C.as_numpy(t)
    return a if shape is None else np.broadcast_to(a, shape).copy()


class _ExportState:
    def __init__(self, dt: float):
        self.dt = dt
        self.resets: dict[str, str] = {}
        self.reasons: list[str] = []  # what may cause a mismatch
        self.differences: list[str] = []  # behaviour the graph does not have (warned even when the sample agrees)
        self.rec_bias: list[tuple[str, np.ndarray]] = []


#: snnTorch 1.0.0's RSynaptic cannot reset in the step of the spike (``_rsynaptic_reset_delay_bug``)
RSYNAPTIC_BUG = (
    "snnTorch 1.0.0 bug: RSynaptic(reset_delay=False).forward computes `do_reset = spk / graded_spikes_factor - "
    "self.reset` and `mem = mem - do_reset * ...` from its spk/mem ARGUMENTS instead of self.spk/self.mem: with "
    "init_hidden=True they are None and forward raises TypeError; with explicit states the result goes to a local "
    "variable that is never stored, so the reset silently stays one step late (reset_delay=True). "
)


def _late_reset(kind: str, mech: str, beta: np.ndarray) -> str | None:
    """Why snnTorch's one-step-late reset (``reset_delay=True``, its default) differs from NIR's
    reset in the step of the spike, or None where the two are the same (derived from snnTorch
    1.0.0's ``_base_sub`` / ``_base_zero``; the tests check both kinds spike-for-spike)."""
    if mech == "subtract":
        if np.all(beta == 1.0):
            return None  # no decay between the spike and the late subtraction: identical
        b = float(np.min(beta))
        return (f"{kind}(reset_mechanism='subtract', reset_delay=True) subtracts the threshold one step AFTER the spike, "
                f"after the membrane has decayed once more: that is subtracting threshold/beta (beta = {b:g}: "
                f"{1 / b:.3g} x threshold) in the step of the spike, while NIR subtracts exactly the threshold")
    if kind == "Leaky":
        return None  # mem = beta*(1 - reset)*mem + x: the same as zeroing in the step of the spike
    return (f"{kind}(reset_mechanism='zero', reset_delay=True) zeroes the membrane one step after the spike, AFTER adding "
            "that step's input (mem = (1 - reset) * (beta*mem + input)): a one-step refractory period that drops the "
            "input; NIR zeroes in the step of the spike and integrates the next input")


def _neuron_common(module, kind: str, st: _ExportState):
    if getattr(module, "inhibition", False):
        return C.Unsupported(f"{kind}(inhibition=True)", "NIR has no winner-take-all inhibition")
    if getattr(module, "state_quant", False):
        return C.Unsupported(f"{kind}(state_quant=...)", "quantize with nirdeploy's target instead")
    g = float(np.asarray(C.as_numpy(module.graded_spikes_factor)).ravel()[0])
    if g != 1.0:
        return C.Unsupported(f"{kind}(graded_spikes_factor={g:g})", "NIR spikes are unit events; use 1.0")
    mech = module.reset_mechanism
    if mech == "none":
        return C.Unsupported(f"{kind}(reset_mechanism='none')", "NIR neurons always reset; use 'zero' or 'subtract'")
    if module.reset_delay:
        late = _late_reset(kind, mech, np.clip(_arr(module.beta), 0.0, 1.0))
        if late is not None:
            hint = (" Use RLeaky, or Synaptic with reset_delay=False (RSynaptic cannot reset on time in snnTorch 1.0.0)"
                    if kind == "RSynaptic" else " Train with reset_delay=False")
            st.differences.append(late + "." + hint)
    elif mech == "subtract":
        st.reasons.append(
            f"{kind}(reset_mechanism='subtract', reset_delay=False): when the membrane is still above threshold "
            "after one subtraction (it exceeded 2x threshold, a multi-spike step), snnTorch subtracts again in the "
            "next step before testing; NIR tests first. Lower the input scale, train with a membrane penalty, or "
            "use reset_mechanism='zero'")
    return mech


def _rsynaptic_reset_delay_bug(model) -> None:
    """Raise a precise error for RSynaptic(reset_delay=False) when it fails as snnTorch 1.0.0's
    does (a fixed snnTorch runs, and is verified like every other layer)."""
    import torch

    snn = _snn()
    for name, mod in model.named_modules():
        if isinstance(mod, snn.RSynaptic) and not mod.reset_delay:
            # one neuron driven to 2x threshold in one step: a working reset_delay=False resets it in that step
            probe = snn.RSynaptic(alpha=0.5, beta=0.5, linear_features=1, reset_delay=False,
                                  reset_mechanism=mod.reset_mechanism)
            z = torch.zeros(1, 1)
            try:
                with torch.no_grad():
                    probe.recurrent.weight.zero_()
                    probe.recurrent.bias.zero_()
                    spk, _, mem = probe(torch.full((1, 1), 2.0), z, z, z)
                broken = bool(spk.item() == 1 and mem.item() > 1.0)
            except TypeError:
                broken = True
            if broken:
                raise UnsupportedError(
                    f"snntorch: layer {name or type(mod).__name__} (RSynaptic, reset_delay=False): " + RSYNAPTIC_BUG
                    + "The model cannot run as built. With reset_delay=True (the only RSynaptic snnTorch 1.0.0 runs) "
                    "nirdeploy exports it and reports the late reset's difference (strict=False); for an exact export "
                    "use RLeaky, or Synaptic with reset_delay=False") from None
            return


def _lif_params(beta, threshold, dt):
    beta = np.clip(beta, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        tau = dt / (1.0 - beta)
    return beta, tau


def _node_map(st: _ExportState):
    snn = _snn()
    import nir
    import torch

    def leaky(module, shape_from=None):
        beta = _arr(module.beta)
        thr = _arr(module.threshold)
        return beta, thr

    def m(module):
        mech = None
        if isinstance(module, (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic)):
            mech = _neuron_common(module, type(module).__name__, st)
            if isinstance(mech, C.Unsupported):
                return mech
        if isinstance(module, snn.Leaky):
            beta, thr = leaky(module)
            st.resets[id(module)] = mech
            beta, tau = _lif_params(beta, thr, st.dt)
            if np.all(beta == 1.0):
                return nir.IF(r=np.full(np.broadcast(beta, thr).shape, 1.0 / st.dt), v_threshold=thr * np.ones_like(beta),
                              v_reset=np.zeros(np.broadcast(beta, thr).shape))
            if np.any(beta == 1.0):
                return C.Unsupported("Leaky with beta = 1 for some neurons only", "use one beta < 1 per layer, or an IF layer")
            shape = np.broadcast(beta, thr).shape
            return nir.LIF(tau=np.broadcast_to(tau, shape).copy(), r=np.broadcast_to(tau / st.dt, shape).copy(),
                           v_leak=np.zeros(shape), v_threshold=np.broadcast_to(thr, shape).copy(), v_reset=np.zeros(shape))
        if isinstance(module, (snn.Synaptic, snn.RSynaptic)) or isinstance(module, snn.RLeaky):
            st.resets[id(module)] = mech
            beta = np.clip(_arr(module.beta), 0, 1)
            thr = _arr(module.threshold)
            cuba = not isinstance(module, snn.RLeaky)
            alpha = np.clip(_arr(module.alpha), 0, 1) if cuba else None
            if np.any(beta == 1.0) or (cuba and np.any(alpha == 1.0)):
                return C.Unsupported(f"{type(module).__name__} with alpha or beta = 1", "NIR time constants must be finite; use < 1")
            w_rec = None
            if isinstance(module, (snn.RLeaky, snn.RSynaptic)):
                rec = module.recurrent
                if isinstance(rec, torch.nn.Linear):
                    w_rec = _arr(rec.weight)
                    if rec.bias is not None:
                        st.rec_bias.append((type(module).__name__, _arr(rec.bias)))
                        b = _arr(rec.bias)
                    else:
                        b = None
                elif hasattr(rec, "V"):
                    w_rec, b = np.diag(np.ravel(_arr(rec.V))), None
                else:
                    return C.Unsupported(f"{type(module).__name__} with a convolutional recurrence", "use all_to_all Linear or one-to-one recurrence")
                n = w_rec.shape[0]
                shape = (n,)
            else:
                shape = np.broadcast(beta, thr, alpha).shape
            one = np.ones(shape)
            tau_m = st.dt / (1 - beta) * one
            if cuba:
                tau_s = st.dt / (1 - alpha) * one
                neuron = nir.CubaLIF(tau_syn=tau_s, tau_mem=tau_m, r=tau_m / st.dt, v_leak=0 * one, v_threshold=thr * one,
                                     v_reset=0 * one, w_in=tau_s / st.dt)
            else:
                neuron = nir.LIF(tau=tau_m, r=tau_m / st.dt, v_leak=0 * one, v_threshold=thr * one, v_reset=0 * one)
            if w_rec is None:
                return neuron
            wr = nir.Linear(weight=w_rec) if b is None else nir.Affine(weight=w_rec, bias=b)
            return nir.NIRGraph(
                nodes={"input": nir.Input(input_type={"input": np.array(shape)}), "lif": neuron, "w_rec": wr,
                       "output": nir.Output(output_type={"output": np.array(shape)})},
                edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                type_check=False,
            )
        node = C.common_node(module, st.dt)
        if node is not None:
            return node
        try:
            import sinabs.layers as sl  # an snnTorch model may borrow Sinabs' sum pool

            if isinstance(module, sl.SumPool2d):
                k = C._pair(module.kernel_size)
                return nir.SumPool2d(kernel_size=np.array(k), stride=np.array(C._pair(module.stride or k)), padding=np.array([0, 0]))
        except ImportError:
            pass
        return None

    return m


def export(model, sample, *, dt: float | None = None, strict: bool = True, fold_batchnorm: bool = False) -> Graph:
    """An snnTorch model as a nirdeploy Graph that reproduces it (verified on ``sample``).

    ``sample``: (batch, time, *input_shape) tensor or array. ``dt`` (s, default 1e-4, snnTorch's
    convention) sets the time scale: tau = dt/(1 - beta), r = tau/dt. Raises
    :class:`~nirdeploy.errors.UnsupportedError` for layers NIR cannot express (with a hint),
    :class:`~nirdeploy.frontends._common.ExportMismatchError` when the graph does not reproduce
    the model (``strict``; otherwise a :class:`ConversionWarning`).
    """
    _snn()
    from ..graph.discretize import validate_dt
    from ..graph.provenance import with_recorded

    dt = validate_dt(DEFAULT_DT if dt is None else dt)
    x = C.export_arguments(model, sample, strict, fold_batchnorm, LIBRARY)
    st = _ExportState(dt)
    snn = _snn()
    _rsynaptic_reset_delay_bug(model)
    _reset(model)
    g = C.trace_to_ir(model, x[:, 0].float(), _node_map(st), ignore_dims=[0],
                      ignore_submodules_of=[snn.RLeaky, snn.RSynaptic], fold_batchnorm=fold_batchnorm, library=LIBRARY,
                      reset_states=_reset)
    modes = set(st.resets.values())
    if len(modes) > 1:
        raise UnsupportedError(f"snntorch: the model mixes reset mechanisms {sorted(modes)}; nirdeploy graphs carry one reset mode")
    reset = modes.pop() if modes else "zero"
    if st.rec_bias:
        g = C.fold_recurrent_bias(g, st.reasons, LIBRARY)
    g = with_recorded(g, dt=dt, reset=reset, source=f"snntorch {snn.__version__}")
    _verify(model, g, x, dt, reset, st, strict, fold_batchnorm)
    return g


def _verify(model, g, x, dt, reset, st: _ExportState, strict, fold_batchnorm):
    import copy

    from ..sim.reference import simulate_reference

    # snnTorch's spike functions return float32 whatever the input, so the model runs in float32
    m = copy.deepcopy(model).eval().float()
    if fold_batchnorm:
        m = C._fold_batchnorm(m)
    y_model = run_model(m, x.float())
    y_graph = simulate_reference(g, x.numpy(), dt, reset=reset).output
    v = C.verify_export(y_model, y_graph, spiking=True)
    v.reasons = list(dict.fromkeys(st.reasons))
    v.differences = list(dict.fromkeys(st.differences))
    C.settle(v, LIBRARY, strict)


def _reset(model) -> None:
    snn = _snn()
    for mod in model.modules():
        if isinstance(mod, snn.SpikingNeuron) and getattr(mod, "init_hidden", False):
            for k in ("mem", "syn", "spk"):
                if hasattr(mod, k) and isinstance(getattr(mod, k), __import__("torch").Tensor):
                    setattr(mod, k, getattr(mod, k).new_zeros(0) if k != "spk" else getattr(mod, k).new_zeros(0))
    try:
        from snntorch import utils

        utils.reset(model)
    except Exception:  # pragma: no cover - models without hidden state
        pass


def run_model(model, x) -> np.ndarray:
    """The model's forward over time: ``x`` (batch, time, *input_shape) -> spikes (batch, time,
    *output_shape). The model takes one step at a time (``init_hidden=True``)."""
    import torch

    _snn()
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.to(dtype)
    _reset(model)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y = model(x[:, t])
            if isinstance(y, tuple):
                y = y[0]
            outs.append(y)
    _reset(model)
    return C.as_numpy(torch.stack(outs, 1))


# -- import: NIR -> snnTorch ------------------------------------------------------------------


def _neuron_factory(reset: str, spike_multi: bool):
    snn = _snn()
    import torch

    from ..graph.discretize import discretize_node

    class SnnTorchNeuron(torch.nn.Module):
        """One NIR neuron node as an snnTorch layer: input scaled by the NIR gain (r*dt/tau for
        Euler) plus the v_leak bias, then snnTorch's beta*mem + input update."""

        def __init__(self, name, node: Node, ctx):
            super().__init__()
            d = discretize_node(node, ctx.dt, ctx.scheme, name=name)
            ctx.notes.extend(d.notes)
            dt_ = ctx.dtype
            self.cuba = d.cuba
            self.spiking = d.spiking
            if d.spiking and np.any(d.v_reset != 0) and reset == "zero":
                raise UnsupportedError(f"{name}: snnTorch resets to zero; v_reset != 0 cannot be built")
            if d.cuba and np.any(d.bias_v != 0):
                raise UnsupportedError(f"{name}: snnTorch's Synaptic has no membrane bias; v_leak != 0 cannot be built")
            mech = reset if d.spiking else "none"
            thr = torch.as_tensor(d.threshold if d.spiking else np.full(d.shape, np.inf), dtype=dt_)
            kw = dict(threshold=thr, reset_mechanism=mech, reset_delay=False, init_hidden=False)
            if d.cuba:
                self.layer = snn.Synaptic(alpha=torch.as_tensor(d.alpha_i, dtype=dt_), beta=torch.as_tensor(d.alpha_v, dtype=dt_), **kw)
                gain = d.gain_i * d.gain_v
            else:
                self.layer = snn.Leaky(beta=torch.as_tensor(d.alpha_v, dtype=dt_), **kw)
                gain = d.gain_v
            self.layer.to(dt_)
            self.register_buffer("gain", torch.as_tensor(gain, dtype=dt_))
            self.register_buffer("bias", torch.as_tensor(d.bias_v, dtype=dt_))

        def initial_state(self, x):
            z = torch.zeros_like(x)
            return (z, z.clone()) if self.cuba else z

        def forward_step(self, x, state):
            x = x * self.gain + self.bias
            if self.cuba:
                spk, syn, mem = self.layer(x, state[0], state[1])
                new = (syn, mem)
            else:
                spk, mem = self.layer(x, state)
                new = mem
            return (spk if self.spiking else mem), new

    def factory(name, node, ctx):
        if node.type in ("LIF", "CubaLIF", "IF", "LI", "CubaLI", "I"):
            return SnnTorchNeuron(name, node, ctx)
        return None

    return factory


def build(graph, *, dt: float | None = None, reset: str | None = None, scheme: str = "euler", dtype=None):
    """A runnable torch module of ``graph`` whose neurons are snnTorch layers (Leaky for
    LIF/LI/IF/I, Synaptic for CubaLIF/CubaLI, ``reset_delay=False``), stepped by nirdeploy's graph
    runner (recurrent edges included). ``forward(x)``: (batch, time, *input) -> (batch, time,
    *output). dt and reset default to the values recorded in the graph."""
    _snn()
    return _build_with(graph, dt, reset, scheme, dtype, lambda r: _neuron_factory(r, False))


def _build_with(graph, dt, reset, scheme, dtype, make_factory):
    """to_torch with a library neuron factory (reset resolved first, so the factory knows it)."""
    from ..api import load_graph
    from ..graph.discretize import resolve_reset
    from ..torch import to_torch

    g = load_graph(graph)
    reset, _ = resolve_reset(g, reset)
    return to_torch(g, dt=dt, reset=reset, scheme=scheme, dtype=dtype, factory=make_factory(reset))


def native_import(path: str):
    """snnTorch's own importer (``snntorch.import_nir.import_from_nir``), as a user would call it;
    returns a function x (batch, time, *input) -> output spikes."""
    _snn()
    import nir
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(str(path)))
    return lambda x: C.run_steps(net, x)
