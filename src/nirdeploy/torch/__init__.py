"""nirdeploy's own torch modules (optional extra ``nirdeploy[torch]``; importing this package
imports torch, importing ``nirdeploy`` does not).

:func:`to_torch` turns a NIR graph into a differentiable :class:`GraphModule` with the reference
semantics: same outputs as :func:`nirdeploy.simulate_reference` (float64 by default; the same
operations in the same order, so spikes are equal and states agree to rounding, ~1e-12). It is
the float side of fine-tuning.

:func:`chip_model` is the chip side: a differentiable module that computes what a target chip
computes (its integer rules, exactly equal to the target's bit-accurate simulator), built by the
target itself (:mod:`nirdeploy.torch.chip`).
"""

from __future__ import annotations

from ..errors import MissingDependencyError, UsageError

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without torch installed
    raise MissingDependencyError("torch", "pip install 'nirdeploy[torch]'", str(e)) from None

from .graph_module import BuildContext, GraphModule, default_node_module
from .neurons import MultiSpike, ReferenceNeuron, SpikeRule, StrictThreshold, SurrogateSpike, spike_rule_for
from .chip import ChipModel, GraphWeights, IntegerWeights, chip_model

__all__ = [
    "to_torch",
    "GraphModule",
    "BuildContext",
    "default_node_module",
    "SpikeRule",
    "StrictThreshold",
    "MultiSpike",
    "SurrogateSpike",
    "ReferenceNeuron",
    "spike_rule_for",
    "chip_model",
    "ChipModel",
    "GraphWeights",
    "IntegerWeights",
]


def to_torch(
    graph,
    *,
    dt: float | None = None,
    reset: str | None = None,
    scheme: str = "euler",
    spikes_per_step: int | None = None,
    dtype=None,
    factory=None,
) -> GraphModule:
    """The reference semantics of ``graph`` (a path, ``nir.NIRGraph`` or Graph) as a torch module.

    ``dt`` (s) and ``reset`` default to what nirdeploy recorded when it exported the graph, else dt
    is inferred as for ``compile`` and reset is ``"zero"``; the notices are in ``module.notes``.
    ``spikes_per_step`` N > 1 (0 = unbounded) uses the multi-spike rule (floor(v / threshold)
    spikes capped at N, subtractive reset). ``dtype`` (a floating torch dtype) defaults to
    float64. Raises :class:`~nirdeploy.errors.UsageError` (a bad argument) /
    :class:`~nirdeploy.errors.UnsupportedError` as ``simulate_reference`` does.
    """
    import torch as _torch

    from ..api import load_graph
    from ..graph.discretize import resolve_dt, resolve_reset, validate_scheme

    from ..inputs import check_callable, check_int

    g = load_graph(graph)
    validate_scheme(scheme)
    if dtype is not None and not (isinstance(dtype, _torch.dtype) and dtype.is_floating_point):
        raise UsageError(f"dtype must be a floating torch dtype such as torch.float32 (or None for float64), got {dtype!r}")
    if spikes_per_step is not None:
        spikes_per_step = check_int("spikes_per_step", spikes_per_step, 0)
    check_callable("factory", factory)
    notes: list[str] = []
    reset, n1 = resolve_reset(g, reset)
    dt, n2 = resolve_dt(g, dt)
    notes += [n for n in (n1, n2) if n]
    if spikes_per_step is None and reset == "subtract":
        from ..graph.provenance import recorded

        if recorded(g).spike_rule == "multi":
            spikes_per_step = 0
            notes.append("multi-spike steps (floor(v / threshold) spikes per step), as recorded in the graph")
    ctx = BuildContext(dt=dt, scheme=scheme, spike_rule=spike_rule_for(reset, spikes_per_step),
                       dtype=dtype or _torch.float64, notes=notes)
    m = GraphModule(g, ctx, factory)
    m.reset = reset
    return m
