"""Sinabs frontend (pinned 3.1.3; 2.0.3 behaves the same here) (the Speck world): IAF networks to NIR and back.

Sinabs' IAF is not NIR's IF: by default it fires **floor(v / threshold) spikes per step**
(``MultiSpike``; the test is v >= threshold, NIR's is v > threshold) and subtracts them
(``MembraneSubtract``), and ``min_v_mem`` clamps the membrane from below. nirdeploy records
``reset = "subtract"`` and ``spike_rule = "multi"`` in the graph's metadata, so
``nirdeploy.to_torch(graph)`` (multi-spike rule) reproduces the Sinabs model exactly, while
``simulate_reference`` (and every chip) keeps NIR's one-spike rule: the two agree only on steps
where v never reaches 2x threshold and never equals the threshold exactly; ``nirdeploy compare``
explains the difference. ``SingleSpike`` layers export with ``spike_rule = "strict"``.

Repairs of ``sinabs.to_nir`` (nir 1.0.8): type inference needed before writing (nirdeploy
infers shapes itself); scalar thresholds broadcast; IF ``r = 1`` (v += x per step) written as
``r = 1/dt`` so the graph means the same at the recorded dt; the reset and spike rule recorded;
SumPool2d padding and Linear without bias kept as they are (Sinabs writes a zero bias); Conv1d
with a bias fails in Sinabs (``if module.bias``) and exports here; ``IAFRecurrent`` (not
supported by ``to_nir``) exports as a ``lif <-> w_rec`` loop. LIF/ExpLeak layers read tau as a
number of steps and are not exported (Speck runs IAF only).

What NIR cannot express is named, never dropped: ``MembraneReset(reset_value != 0)`` (Sinabs
adds the value to every non-spiking neuron too), ``MembraneSubtract(subtract_value !=
threshold)``, ``tau_syn`` and ``MaxSpike`` are errors; ``min_v_mem`` (a lower clamp) and a bias in
an ``IAFRecurrent``'s ``rec_connect`` are warned about even when the sample agrees, and fail the
verification when they change it. The recurrent bias: Sinabs' recurrent input is 0 at t = 0 and
``rec_connect(spikes[t-1])`` from t = 1, so the bias arrives from t = 1; nirdeploy's reading of
the NIR loop (delay on ``lif -> w_rec``, snnTorch's RLeaky convention) adds it at t = 0 too,
which for a non-leaky IF is a permanent membrane offset, and NIR has no initial state to cancel
it (:data:`RECURRENT_BIAS`; ``rec_connect`` without a bias is exact).

Why nirdeploy's module map and not ``sinabs.nir._extract_sinabs_module``: for Linear with a bias,
Conv2d and Flatten the two agree, but that function is private, the plain torch layers map
through one function shared by the three frontends, and the IAF node must be rebuilt (r, shapes,
reset, spike rule); tracing is Sinabs' own (``nirtorch.extract_nir_graph``, as ``to_nir``).
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..graph.ir import Graph, Node
from . import _common as C

__all__ = ["LIBRARY", "PINS", "export", "run_model", "build", "native_import"]

LIBRARY = "sinabs"
PINS = "sinabs==3.1.3 (pip install --no-deps sinabs==3.1.3) matplotlib==3.11.2 nirtorch==2.6 nir==1.0.8"


def _sl():
    if C.samna_is_stub():
        # sinabs.layers does not import samna, but say why sinabs.backend.dynapcnn would fail
        pass
    return C.require("sinabs.layers", PINS, "Sinabs")


def _squeezed(model) -> bool:
    sl = _sl()
    return any(isinstance(m, (sl.IAFSqueeze,)) or type(m).__name__.endswith("Squeeze") for m in model.modules())


def _rules(module):
    """(spike rule, reset, Unsupported | None) of one IAF layer; every Sinabs setting NIR cannot
    express is named (none is dropped silently)."""
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike

    if module.spike_fn is MultiSpike:
        rule = "multi"
    elif module.spike_fn is SingleSpike:
        rule = "strict"
    else:
        return None, None, C.Unsupported(f"spike_fn {getattr(module.spike_fn, '__name__', module.spike_fn)}",
                                         "use MultiSpike or SingleSpike (MaxSpike's cap is not recorded in NIR)")
    if isinstance(module.reset_fn, MembraneSubtract):
        sv = module.reset_fn.subtract_value
        if sv is not None and not np.allclose(np.asarray(C.as_numpy(sv)), C.as_numpy(module.spike_threshold)):
            return None, None, C.Unsupported(
                f"MembraneSubtract(subtract_value={sv})",
                "NIR's subtractive reset subtracts the threshold; use subtract_value=None")
        reset = "subtract"
    elif isinstance(module.reset_fn, MembraneReset):
        if float(module.reset_fn.reset_value) != 0.0:
            return None, None, C.Unsupported(
                f"MembraneReset(reset_value={module.reset_fn.reset_value})",
                "Sinabs computes v * (spikes == 0) + reset_value, which adds reset_value to every NON-spiking neuron "
                "at every step as well; NIR's v_reset applies to spiking neurons only. Use reset_value=0")
        reset = "zero"
    else:
        return None, None, C.Unsupported(f"reset_fn {type(module.reset_fn).__name__}", "use MembraneSubtract or MembraneReset")
    if getattr(module, "tau_syn", None) is not None:
        return None, None, C.Unsupported(
            f"{type(module).__name__}(tau_syn=...)",
            "Sinabs' synaptic current i = alpha_syn * (i + x) feeding a non-leaky membrane has no NIR neuron "
            "(CubaLIF needs a finite tau_mem); use tau_syn=None")
    return rule, reset, None


#: why a Sinabs recurrent layer with a bias in ``rec_connect`` is not reproduced (measured: 43-60 %
#: spike agreement on three random 4-16-3 networks, spike-for-spike equal without the bias)
RECURRENT_BIAS = (
    "{name}: Sinabs' recurrent input starts at 0 (rec_out = 0 at t = 0, rec_connect(spikes[t-1]) from t = 1), so "
    "rec_connect's bias arrives from t = 1; in the NIR loop lif -> w_rec -> lif nirdeploy delays lif -> w_rec "
    "(snnTorch's RLeaky convention), so the Affine's bias also arrives at t = 0. For an IF neuron (no leak) that one "
    "extra bias is a permanent membrane offset (max |bias| = {bmax:.3g}, threshold {thr:.3g}), and NIR has no initial "
    "membrane state to cancel it. Build rec_connect with bias=False (exact), or fold the bias into the preceding "
    "layer and retrain")


def _node_map(st: dict):
    import nir

    sl = _sl()

    def m(module):
        if type(module) in (sl.IAF, sl.IAFSqueeze, sl.IAFRecurrent):
            rule, reset, bad = _rules(module)
            if bad:
                return bad
            st["rules"].add(rule)
            st["resets"].add(reset)
            if module.min_v_mem is not None:
                st["differences"].append(f"{type(module).__name__}(min_v_mem={float(module.min_v_mem):g}): Sinabs clamps "
                                         "the membrane from below; NIR has no lower bound (set min_v_mem=None)")
            if rule == "strict":
                st["reasons"].append("Sinabs' SingleSpike fires at v >= threshold, NIR at v > threshold")
            shape = tuple(module.v_mem.shape[1:])
            thr = np.broadcast_to(C.as_numpy(module.spike_threshold), shape).copy()
            one = np.ones(shape)
            neuron = nir.IF(r=one / st["dt"], v_threshold=thr, v_reset=0 * one)
            if type(module) is not sl.IAFRecurrent:
                return neuron
            rec = module.rec_connect
            if not isinstance(rec, __import__("torch").nn.Linear):
                return C.Unsupported("IAFRecurrent with a non-Linear rec_connect", "use nn.Linear")
            w = C.as_numpy(rec.weight)
            b = None if rec.bias is None else C.as_numpy(rec.bias)
            if b is not None and np.any(b != 0):
                st["differences"].append(RECURRENT_BIAS.format(name=type(module).__name__, bmax=float(np.abs(b).max()),
                                                               thr=float(np.max(thr))))
            wr = nir.Linear(weight=w) if b is None or not np.any(b != 0) else nir.Affine(weight=w, bias=b)
            return nir.NIRGraph(
                nodes={"input": nir.Input(input_type={"input": np.array(shape)}), "lif": neuron, "w_rec": wr,
                       "output": nir.Output(output_type={"output": np.array(shape)})},
                edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                type_check=False,
            )
        if isinstance(module, sl.SumPool2d):
            k = C._pair(module.kernel_size)
            return nir.SumPool2d(kernel_size=np.array(k), stride=np.array(C._pair(module.stride or k)), padding=np.array([0, 0]))
        if isinstance(module, (sl.LIF, sl.LIFSqueeze, sl.ExpLeak, sl.ExpLeakSqueeze)):
            return C.Unsupported(type(module).__name__, "Sinabs reads tau as a number of time steps and Speck runs IAF only; "
                                 "use IAF layers, or export a leaky model from snnTorch or Norse")
        return C.common_node(module, st["dt"])

    return m


def _reset_states(model) -> None:
    for mod in model.modules():
        if hasattr(mod, "reset_states") and hasattr(mod, "v_mem"):
            mod.reset_states()
            # forget the batch size too, so the next forward re-initialises the state shape
            for k in ("v_mem", "i_syn"):
                if isinstance(getattr(mod, k, None), __import__("torch").Tensor):
                    setattr(mod, k, getattr(mod, k).new_zeros(0))


def export(model, sample, *, dt: float | None = None, strict: bool = True, fold_batchnorm: bool = False) -> Graph:
    """A Sinabs IAF model as a nirdeploy Graph, verified on ``sample`` (batch, time, *input) by
    nirdeploy's torch module with the recorded spike rule. ``dt`` (s) is the time step the graph
    is meant to run at (Sinabs models have none; default 1e-3 s, Speck's usual 1 ms bins)."""

    _sl()
    import sinabs

    from ..graph.discretize import validate_dt
    from ..graph.provenance import with_recorded

    dt = validate_dt(1e-3 if dt is None else dt)
    x = C.export_arguments(model, sample, strict, fold_batchnorm, LIBRARY)
    st = {"dt": dt, "rules": set(), "resets": set(), "reasons": [], "differences": []}
    squeeze = _squeezed(model)
    step = x.reshape((-1,) + tuple(x.shape[2:])) if squeeze else x[:, :1]
    g = C.trace_to_ir(model, step.float(), _node_map(st), ignore_dims=[0] if squeeze else [0, 1],
                      fold_batchnorm=fold_batchnorm, library=LIBRARY, reset_states=_reset_states)
    for what, vals in (("spike functions", st["rules"]), ("reset functions", st["resets"])):
        if len(vals) > 1:
            raise UnsupportedError(f"sinabs: the model mixes {what} {sorted(vals)}; nirdeploy graphs carry one")
    rule = st["rules"].pop() if st["rules"] else "strict"
    reset = st["resets"].pop() if st["resets"] else "subtract"
    if rule == "multi" and reset != "subtract":
        raise UnsupportedError("sinabs: MultiSpike with MembraneReset has no nirdeploy equivalent; use MembraneSubtract")
    # no recurrent-bias repair: Sinabs' rec_connect bias arrives from t = 1 (see RECURRENT_BIAS)
    g = with_recorded(g, dt=dt, reset=reset, source=f"sinabs {sinabs.__version__}", spike_rule=rule)
    from ..torch import to_torch

    y_model = run_model(model, x.float())
    y_graph = to_torch(g).forward(x.double()).detach().numpy()
    v = C.verify_export(y_model, y_graph, spiking=True)
    v.reasons = list(dict.fromkeys(st["reasons"]))
    v.differences = list(dict.fromkeys(st["differences"]))
    C.settle(v, LIBRARY, strict)
    return g


def run_model(model, x) -> np.ndarray:
    """The Sinabs model on x (batch, time, *input) -> (batch, time, *output); Squeeze layers get
    (batch*time, ...) as Sinabs expects."""
    import torch

    _sl()
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    x = x.float()
    B, T = x.shape[:2]
    _reset_states(model)
    with torch.no_grad():
        if _squeezed(model):
            y = model(x.reshape((B * T,) + tuple(x.shape[2:])))
            y = y.reshape((B, T) + tuple(y.shape[1:]))
        else:
            y = model(x)
    _reset_states(model)
    return C.as_numpy(y)


def _neuron_factory(reset: str, rule: str):
    sl = _sl()
    import torch
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike

    from ..graph.discretize import discretize_node

    class SinabsIAF(torch.nn.Module):
        """NIR IF as ``sinabs.layers.IAF`` (input x r*dt, min_v_mem=None), one step per call."""

        def __init__(self, name, node: Node, ctx):
            super().__init__()
            d = discretize_node(node, ctx.dt, ctx.scheme, name=name)
            if np.any(d.v_reset != 0):
                raise UnsupportedError(f"{name}: Sinabs resets to 0 or subtracts; v_reset != 0 cannot be built")
            self.layer = sl.IAF(spike_threshold=torch.as_tensor(d.threshold, dtype=ctx.dtype),
                                spike_fn=MultiSpike if rule == "multi" else SingleSpike,
                                reset_fn=MembraneSubtract() if reset == "subtract" else MembraneReset(),
                                min_v_mem=None)
            self.register_buffer("gain", torch.as_tensor(d.gain_v, dtype=ctx.dtype))

        def initial_state(self, x):
            self.layer.reset_states()
            self.layer.v_mem = self.layer.v_mem.new_zeros(0)
            return None

        def forward_step(self, x, state):
            return self.layer((x * self.gain).unsqueeze(1)).squeeze(1), None

    def factory(name, node, ctx):
        if node.type == "IF":
            return SinabsIAF(name, node, ctx)
        if node.type in ("LIF", "CubaLIF", "LI", "CubaLI", "I"):
            raise UnsupportedError(f"{name}: nirdeploy builds Sinabs models of IF neurons only (Speck); got {node.type}")
        return None

    return factory


def build(graph, *, dt: float | None = None, reset: str | None = None, scheme: str = "euler", dtype=None):
    """``graph`` (IF neurons) as a runnable module of ``sinabs.layers.IAF`` layers with the
    recorded reset and spike rule (default: subtract, MultiSpike as Sinabs does)."""
    from ..api import load_graph
    from ..graph.discretize import resolve_reset
    from ..graph.provenance import recorded
    from ..torch import to_torch

    _sl()
    g = load_graph(graph)
    rec = recorded(g)
    reset, _ = resolve_reset(g, reset if reset is not None else (rec.reset or "subtract"))
    rule = rec.spike_rule or ("multi" if reset == "subtract" else "strict")
    spikes = 0 if rule == "multi" else None
    return to_torch(g, dt=dt, reset=reset, scheme=scheme, dtype=dtype, factory=_neuron_factory(reset, rule),
                    spikes_per_step=spikes)


def native_import(path: str):
    """Sinabs' own importer (``sinabs.from_nir``), as a user would call it."""
    _sl()
    import nir
    import sinabs
    import torch

    g = nir.read(str(path), type_check=False)

    def run(x):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        B, T = x.shape[:2]
        net = sinabs.from_nir(g, batch_size=B)
        with torch.no_grad():
            y = net(x.reshape((B * T,) + tuple(x.shape[2:])))
        if isinstance(y, tuple):
            y = y[0]
        return C.as_numpy(y.reshape((B, T) + tuple(y.shape[1:])))

    return run
