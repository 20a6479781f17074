"""Chip models: differentiable torch modules that compute what a target chip computes.

:func:`chip_model` builds one for a NIR graph (compiled here for the target) or for a compiled
:class:`~nirdeploy.api.Deployment`, through the target's optional contract method
``Target.chip_model(artifact, weights=...)``. The core never imports a target: each target
implements its chip model in its own package (``nirdeploy_targets.xylo.torch_model``, ...).

What every chip model does
--------------------------
``model(x)`` takes ``x`` (batch, time, *input_shape) event counts and returns the chip's output
(batch, time, *output_shape): spike counts, or for a voltage readout the membrane divided by the
compiled readout scale, exactly what ``Target.simulate`` returns. The dynamics are the chip's own
integer rules (decays, spike rule, reset, saturation / wrap-around, latency), computed in float64
on integer values, so they are exact. In ``eval()`` mode (and in training mode too: the forward
values never change, only the gradients) the output equals the target's bit-accurate simulator
array for array; ``tests/test_chip_model_*.py`` check that on random networks per target.

Gradients (training): every rounding or floor inside the dynamics is a straight-through estimator
(value exact, derivative 1), every spike count has the derivative of a fast sigmoid at the
threshold crossing (:class:`nirdeploy.torch.neurons.SurrogateSpike`, on ``(v - threshold) /
threshold``), a saturating clamp has derivative 1 inside its range and 0 outside.

Parameters: two forms
---------------------
* **From a graph** (:class:`GraphWeights`): the trainable parameters are the graph's own
  weights (every Affine / Linear / Conv2d ``weight`` of the normalized graph, float64, in NIR
  units). Each forward quantizes them with the **target's own lowering** (the compile function,
  run on a copy of the graph holding the current weights; cached while the weights do not
  change), so the integers the chip model runs are by construction the integers ``compile``
  gives for the written-back graph (:meth:`ChipModel.to_graph`); the gradient reaches the NIR
  weights through the straight-through estimate ``q + (w * c - (w * c).detach())``, where ``w * c``
  is the lowering's pre-rounding value (``c``: the per-neuron scale and shift the lowering chose).
  Thresholds, time constants and biases are not trained: on every target the threshold fixes
  the neuron's quantization scale, so scaling a neuron's input weights is what a trained
  threshold would do.
* **From a deployment** (:class:`IntegerWeights`): the parameters are the deployment's integer
  weights in chip units (float tensors holding integers), quantized by a straight-through
  ``round`` and clipped to the chip's weight format. A deployment carries no graph form of its
  integers, so such a model has no :meth:`ChipModel.to_graph`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DoesNotFitError, UnsupportedError, UsageError
from ..graph.ir import Graph
from .neurons import SurrogateSpike

__all__ = [
    "chip_model",
    "ChipModel",
    "GraphWeights",
    "IntegerWeights",
    "ste_round",
    "ste_floor",
    "ste_trunc",
    "spike_surrogate",
    "clamp_sequence",
    "path_matrix",
    "TRAINABLE_TYPES",
]

#: node types whose ``weight`` a chip model trains (from a graph)
TRAINABLE_TYPES = ("Affine", "Linear", "Conv2d")


# -- straight-through estimators --------------------------------------------------------------
def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (IntFormat.quantize's rule); derivative 1."""
    r = torch.sign(x) * torch.floor(torch.abs(x) + 0.5)
    return x + (r - x).detach()


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    """floor(x) in the forward pass; derivative 1."""
    return x + (torch.floor(x) - x).detach()


def ste_trunc(x: torch.Tensor) -> torch.Tensor:
    """Rounding toward zero in the forward pass; derivative 1."""
    return x + (torch.trunc(x) - x).detach()


def spike_surrogate(v: torch.Tensor, threshold: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``count`` (the exact spike count, any derivative dropped) with the derivative of one
    surrogate spike at the threshold crossing, measured in thresholds."""
    scale = torch.where(threshold.abs() > 0, threshold.abs(), torch.ones_like(threshold))
    s = SurrogateSpike.apply((v - threshold) / scale)
    return count.detach() + (s - s.detach())


def clamp_sequence(s: torch.Tensor, terms: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The result of adding ``terms[..., k]`` to ``s`` one after the other, clamping to
    ``[lo, hi]`` after every addition (per-add saturation, in order k = 0, 1, ...).

    Computed exactly and differentiably by composing the maps ``f_k(v) = clamp(v + c_k, lo, hi)``
    pairwise (a tree reduction, log2(K) steps): a composition of such maps is again
    ``v -> min(max(v + a, L), H)`` with ``L <= H``, and ``g o f`` has ``a = a_f + a_g``,
    ``L = clamp(L_f + a_g, L_g, H_g)``, ``H = clamp(H_f + a_g, L_g, H_g)``.
    ``s``: (...,); ``terms``: (..., K). Exact for integer values below 2**53 in float64."""
    a = terms
    K = a.shape[-1]
    if K == 0:
        return s
    L = torch.full_like(a, lo)
    H = torch.full_like(a, hi)
    while a.shape[-1] > 1:
        if a.shape[-1] % 2:  # pad with the identity map
            pad = a.shape[:-1] + (1,)
            a = torch.cat([a, torch.zeros(pad, dtype=a.dtype)], -1)
            L = torch.cat([L, torch.full(pad, -np.inf, dtype=a.dtype)], -1)
            H = torch.cat([H, torch.full(pad, np.inf, dtype=a.dtype)], -1)
        af, ag = a[..., 0::2], a[..., 1::2]
        Lf, Lg = L[..., 0::2], L[..., 1::2]
        Hf, Hg = H[..., 0::2], H[..., 1::2]
        L = torch.minimum(torch.maximum(Lf + ag, Lg), Hg)
        H = torch.minimum(torch.maximum(Hf + ag, Lg), Hg)
        a = af + ag
    return torch.minimum(torch.maximum(s + a[..., 0], L[..., 0]), H[..., 0])


# -- the graph's weights as parameters ------------------------------------------------------------
def _key(name: str) -> str:
    return name.replace(".", "__")


def path_matrix(nodes, weights: "GraphWeights", src_shape: tuple[int, ...]) -> torch.Tensor:
    """The linear map of a chain of stateless nodes (names in ``weights.graph``, source side
    first) as a (n_dst, n_src) float64 tensor, differentiable in the trained weights: the chain
    applied to an identity basis of the source (shaped ``src_shape``), biases removed."""
    import torch.nn.functional as F

    from .graph_module import BuildContext, default_node_module
    from .neurons import StrictThreshold

    n_src = int(np.prod(src_shape)) if src_shape else 1
    x = torch.eye(n_src, dtype=torch.float64).reshape((n_src,) + tuple(src_shape))
    ctx = BuildContext(dt=1.0, scheme="euler", spike_rule=StrictThreshold())
    for name in nodes:
        node = weights.graph.nodes[name]
        if node.type in TRAINABLE_TYPES:
            w = weights.weight(name) if weights.has(name) else torch.as_tensor(np.asarray(node.params["weight"], dtype=np.float64))
            if node.type == "Conv2d":
                m = default_node_module(name, node, ctx)
                x = F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)
            else:
                x = x @ w.reshape(w.shape[-2], w.shape[-1]).T
        else:  # Scale, Flatten, pooling: linear and bias-free
            x = default_node_module(name, node, ctx)(x)
    return x.reshape(n_src, -1).T


class GraphWeights(torch.nn.Module):
    """The trainable weights of a NIR graph and the target's quantization of them.

    ``graph``: the graph as given (written back by :meth:`to_graph`); its normalized form
    (``self.graph``, subgraphs inlined with dotted names) names the parameters.
    ``compile_fn(graph) -> Artifact``: the target's lowering with fixed settings.
    :meth:`artifact` compiles the graph holding the current weights, once per change."""

    def __init__(self, graph: Graph, compile_fn: Callable[[Graph], Any], types=TRAINABLE_TYPES):
        super().__init__()
        from ..graph.passes import normalize

        self.source = graph.copy()
        self.graph = normalize(graph)
        self._compile = compile_fn
        self.params = torch.nn.ParameterDict()
        self.names: dict[str, str] = {}
        for name, node in self.graph.nodes.items():
            if node.type in types and node.params.get("weight") is not None:
                w = np.asarray(node.params["weight"], dtype=np.float64)
                self.params[_key(name)] = torch.nn.Parameter(torch.as_tensor(w.copy()))
                self.names[_key(name)] = name
        self._targets = self._locate()
        self._cache: tuple[bytes, Any] | None = None
        #: per parameter, the entries that are exactly 0 in the graph (see :meth:`keep_zeros`)
        self.zero_masks = {k: p.detach() == 0 for k, p in self.params.items()}

    def keep_zeros(self) -> None:
        """Keep the graph's zero weights at zero while training (their gradients are dropped), so
        that a pruned or block-structured graph keeps its structure: fan-out, weight memory and
        the synapses a chip stores do not change."""
        for k, p in self.params.items():
            m = self.zero_masks[k]
            if bool(m.any()):
                p.register_hook(lambda g, m=m: g.masked_fill(m, 0.0))

    def _locate(self) -> dict[str, tuple[Any, tuple]]:
        """Normalized name -> (node of ``self.source`` holding that weight, its weight shape)."""
        found = dict(self.source.iter_nodes_recursive())
        out = {}
        for name in self.names.values():
            n = found.get(name)
            if n is None or n.params.get("weight") is None:
                raise UnsupportedError(f"{name}: the normalized graph's weight node has no counterpart in the graph as given, "
                                       "so trained weights could not be written back")
            if np.size(n.params["weight"]) != np.size(self.graph.nodes[name].params["weight"]):
                raise UnsupportedError(f"{name}: its weight changes size in normalization; cannot write it back")
            out[name] = (n, np.shape(n.params["weight"]))
        return out

    def has(self, name: str) -> bool:
        return _key(name) in self.params

    def weight(self, name: str) -> torch.Tensor:
        return self.params[_key(name)]

    def digest(self) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for k in sorted(self.params.keys()):
            h.update(self.params[k].detach().cpu().numpy().tobytes())
        return h.digest()

    def to_graph(self) -> Graph:
        """A copy of the graph as given with the current weights written into it (float64)."""
        g = self.source.copy()
        found = dict(g.iter_nodes_recursive())
        for key, name in self.names.items():
            _, shape = self._targets[name]
            found[name].params["weight"] = self.params[key].detach().cpu().numpy().astype(np.float64).reshape(shape).copy()
        return g

    def artifact(self):
        """The target's compiled artifact of the current weights (cached while they do not change)."""
        d = self.digest()
        if self._cache is None or self._cache[0] != d:
            art = self._compile(self.to_graph())
            self._cache = (d, art)
        return self._cache[1]


class IntegerWeights(torch.nn.Module):
    """Chip-unit weights (float64 tensors holding the deployment's integers) with a
    straight-through round and a clip to ``[lo, hi]`` per array."""

    def __init__(self, arrays: dict[str, np.ndarray], ranges: dict[str, tuple[float, float]]):
        super().__init__()
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.as_tensor(np.asarray(v, dtype=np.float64).copy()))
                                              for k, v in arrays.items()})
        self.ranges = dict(ranges)

    def get(self, key: str) -> torch.Tensor:
        lo, hi = self.ranges[key]
        return torch.clamp(ste_round(self.params[key]), lo, hi)


# -- the base class -----------------------------------------------------------------------------
@dataclass
class ChipInfo:
    """What a chip model computes: target, variant, readout (``"spikes"`` or ``"vmem"``), latency
    (the chip's output at t + latency is the graph's at t), shapes, dt (s)."""

    target: str
    variant: str
    readout: str
    latency_steps: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dt: float | None = None
    notes: list[str] = field(default_factory=list)


class ChipModel(torch.nn.Module):
    """Base class of the targets' chip models (see the module docstring).

    ``forward(x, record=False)``: ``x`` (batch, time, *input_shape) event counts (tensor or
    array) -> output (batch, time, *output_shape) float64; with ``record=True`` also a dict of
    recorded integer states (target-specific names, like the target's simulator records) and
    ``"membrane"``: a list of (batch, time, n) tensors, each spiking layer's membrane before its
    spikes divided by its threshold (what a membrane-headroom penalty acts on).

    ``quantized()``: the integer parameters the chip runs now (numpy, target-specific keys).
    ``to_graph()``: the NIR graph with the trained weights (graph form only); compiling it gives
    ``quantized()``. ``deployment()``: that compiled deployment."""

    info: ChipInfo
    weights: GraphWeights | IntegerWeights

    @property
    def readout(self) -> str:
        return self.info.readout

    @property
    def latency_steps(self) -> int:
        return self.info.latency_steps

    def _input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        want = tuple(self.info.input_shape)
        if x.ndim != 2 + len(want) or tuple(x.shape[2:]) != want:
            if not (x.ndim >= 2 and int(np.prod(x.shape[2:])) == int(np.prod(want))):
                raise UsageError(f"input must have shape (batch, time, {', '.join(map(str, want))}); got {tuple(x.shape)}")
        x = x.detach().to(torch.float64)
        if x.numel() and (bool((x < 0).any()) or bool((x != torch.round(x)).any())):
            raise UsageError("chip input must be non-negative integer event counts")
        return x

    def to_graph(self) -> Graph:
        if not isinstance(self.weights, GraphWeights):
            raise UnsupportedError("this chip model was built from a deployment's integers: it has no NIR graph form "
                                   "(build it from the graph to fine-tune and write back)")
        return self.weights.to_graph()

    def quantized(self) -> dict[str, np.ndarray]:  # pragma: no cover - every target overrides it
        raise NotImplementedError

    def _current_artifact(self, chip: str, lowered: str = "network"):
        """The compiled artifact the chip runs now: for graph weights the lowering of the current
        weights (cached while they do not change), else the one the model was built from
        (``self._artifact``). Raises UnsupportedError when the trained weights no longer lower
        (the payload's ``lowered`` attribute is None)."""
        if isinstance(self.weights, GraphWeights):
            art = self.weights.artifact()
            if getattr(art.payload, lowered) is None:
                raise UnsupportedError(f"the trained weights no longer lower onto {chip}: " + "; ".join(str(v) for v in art.report.errors))
            return art
        return self._artifact

    def deployment(self):
        """The deployment compiled from :meth:`to_graph` with the model's compile settings (graph
        form only; raises UnsupportedError for a model built from a deployment)."""
        from ..api import compile as _compile

        g = self.to_graph()
        s = self.compile_settings
        return _compile(g, target=s["target"], dt=s["dt"], reset=s["reset"], scheme=s["scheme"], quantization=s["quantization"],
                        target_options=s["target_options"] or None)

    def _output(self, y: torch.Tensor, rec, record: bool, output_scale):
        """Shape the output layer's (batch, time, n) result as the simulator returns it: a
        voltage readout divided by the compiled readout scale, reshaped to the output shape."""
        if self.info.readout == "vmem":
            y = y / torch.as_tensor(np.asarray(output_scale, dtype=np.float64).reshape(-1))
        y = y.reshape((y.shape[0], y.shape[1]) + tuple(self.info.output_shape))
        return (y, rec) if record else y


# -- entry point -----------------------------------------------------------------------------------
def chip_model(graph_or_deployment, target: str = "xylo", *, dt: float | None = None, reset: str | None = None,
               scheme: str = "euler", quantization: str = "channel", target_options: dict | None = None, **options) -> ChipModel:
    """A differentiable torch module computing what ``target`` computes (see the module docstring).

    ``graph_or_deployment``: a NIR graph (path, ``nir.NIRGraph`` or Graph), compiled here for
    ``target`` (``"name"`` or ``"name:variant"``) with ``dt``, ``reset``, ``scheme``,
    ``quantization`` and ``target_options`` as :func:`nirdeploy.compile` takes them; its weights
    become the trainable parameters. Or a :class:`~nirdeploy.api.Deployment` (``target`` and the
    compile settings are then the deployment's): its integer weights become the parameters.
    ``options``: target-specific chip-model options (e.g. Speck's ``mode="binned"``).

    Raises UsageError (bad argument), DoesNotFitError (the network does not fit the target),
    UnsupportedError (the target has no chip model, or the network has a structure the chip model
    does not cover: the message says which), and the errors of :func:`nirdeploy.compile`."""
    from ..api import Deployment, compile as _compile, load_graph, _options, _target_options
    from ..backend.target import parse_target_spec

    if isinstance(graph_or_deployment, Deployment):
        dep = graph_or_deployment
        if not dep.fits:
            raise DoesNotFitError(dep.report)
        return _build(dep.target, dep.artifact, None, options)
    graph = load_graph(graph_or_deployment)
    t, variant = parse_target_spec(target)
    require_chip_model(t)  # before compiling: the answer does not depend on the graph
    dep = _compile(graph, target=f"{t.name}:{variant}", dt=dt, reset=reset, scheme=scheme, quantization=quantization,
                   target_options=target_options)
    if not dep.fits:
        raise DoesNotFitError(dep.report)
    opts = _options(graph, dep.report.settings["dt"], dep.report.settings.get("reset"), scheme, quantization, None, None, t,
                    _target_options(t, target_options))

    def compile_fn(g: Graph):
        return t.compile(g, variant, opts)

    weights = GraphWeights(graph, compile_fn)
    weights._cache = (weights.digest(), dep.artifact)
    model = _build(t, dep.artifact, weights, options)
    model.info.notes[:0] = list(dep.notices)
    model.compile_settings = {"target": f"{t.name}:{variant}", "dt": opts.dt, "reset": opts.reset, "scheme": opts.scheme,
                              "quantization": opts.quantization, "target_options": dict(target_options or {})}
    return model


def require_chip_model(t) -> None:
    """Raise UnsupportedError when target ``t`` does not implement ``Target.chip_model``."""
    from ..backend.target import Target

    if getattr(type(t), "chip_model", Target.chip_model) is Target.chip_model:
        raise UnsupportedError(_no_chip_model(t.name))


def _no_chip_model(name: str) -> str:
    return (f"target {name!r} has no chip model (Target.chip_model), so it cannot be fine-tuned chip-aware; "
            "fine-tune the float reference semantics instead (mode='float', CLI --float)")


def _build(t, artifact, weights, options) -> ChipModel:
    fn = getattr(t, "chip_model", None)
    model = fn(artifact, weights=weights, **options) if fn is not None else None
    if model is None:
        raise UnsupportedError(_no_chip_model(t.name))
    if not isinstance(model, ChipModel):
        from ..errors import TargetError

        raise TargetError(f"target {t.name!r}: chip_model() must return a nirdeploy.torch.chip.ChipModel")
    return model
