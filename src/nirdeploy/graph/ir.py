"""nirdeploy's own graph IR.

NIR's dataclasses run type inference in their constructors (with known shape bugs) and accept
hostile files poorly, so nirdeploy reads NIR into this small, explicit IR instead:

* :class:`Node`: a name, a NIR type name, its parameters (numpy arrays as float64 / int64, or
  plain Python values such as ``padding="same"``), inferred shapes and, for ``NIRGraph`` nodes,
  the nested :class:`Graph`.
* :class:`Graph`: ordered nodes, edges ``(src, dst)``, metadata, the nir version that wrote it,
  and ``delayed_edges``: recurrent edges that carry the previous step's value (set by the
  ``mark_recurrent`` pass; explicit so that every consumer agrees where the one-step delay is).

``NODE_TYPES`` is the single table of what every NIR 1.0.x primitive holds.
``NON_NIR_TYPES`` is the small table of well-known ML layers that NIR 1.0 lacks but that turn up in
``.nir`` files written by hand or by exporters that go beyond the standard (MaxPool1d/2d,
BatchNorm1d/2d, Dropout). nirdeploy loads them (with a notice: they are not NIR 1.0 primitives),
infers their shapes, validates their parameters, and then refuses them everywhere with the hint
their spec carries: every target reports each one as an ``unsupported_node`` violation
(:func:`nirdeploy.backend.rules.non_nir_violations`) and the reference simulator raises
UnsupportedError. ``KNOWN_TYPES`` is the union; any other type name is an unknown type (a load
error). Their parameters follow PyTorch's names and defaults:

==============  ==================================================  ====================================
type            parameters (required first; defaults)               shape
==============  ==================================================  ====================================
MaxPool2d       kernel_size; stride (= kernel_size), padding (0),    (C, H, W) -> PyTorch's pooled size
                dilation (1), ceil_mode (0)
MaxPool1d       as MaxPool2d, one entry per parameter                (C, L) -> pooled length
BatchNorm2d     weight, bias, running_mean, running_var (each (C,)),  (C, H, W), unchanged
                eps (1e-5); all optional
BatchNorm1d     as BatchNorm2d                                       (C,) or (C, L), unchanged
Dropout         p (optional)                                         unchanged
==============  ==================================================  ====================================
Graphs are treated as values: passes return new graphs and never mutate their argument
(:meth:`Graph.copy` is a deep copy).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

__all__ = [
    "NodeSpec",
    "NODE_TYPES",
    "NON_NIR_TYPES",
    "KNOWN_TYPES",
    "NEURON_TYPES",
    "STATEFUL_TYPES",
    "SPIKING_TYPES",
    "Node",
    "Graph",
    "non_nir_nodes",
    "non_nir_notice",
]


@dataclass(frozen=True)
class NodeSpec:
    type: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    category: str = "op"  # io | linear | conv | pool | reshape | neuron | delay | threshold | graph
    stateful: bool = False  # holds state across time steps (breaks algebraic loops)
    spiking: bool = False  # emits spikes (threshold + reset)
    # parameters that must all share the neuron shape (the neuron count comes from them)
    neuron_params: tuple[str, ...] = ()
    # parameters that are time constants (must be finite and > 0)
    time_constants: tuple[str, ...] = ()
    # False for the well-known layers NIR 1.0 lacks (NON_NIR_TYPES)
    nir: bool = True
    # for those: what to do instead (every target's unsupported_node violation and the reference
    # simulator's error carry it)
    hint: str = ""


def _spec(*a, **k) -> NodeSpec:
    return NodeSpec(*a, **k)


NODE_TYPES: dict[str, NodeSpec] = {
    s.type: s
    for s in [
        _spec("Input", ("shape",), category="io"),
        _spec("Output", ("shape",), category="io"),
        _spec("NIRGraph", (), category="graph"),
        _spec("Affine", ("weight", "bias"), category="linear"),
        _spec("Linear", ("weight",), category="linear"),
        _spec("Scale", ("scale",), category="linear"),
        _spec("Conv1d", ("weight",), ("input_shape", "stride", "padding", "dilation", "groups", "bias"), category="conv"),
        _spec("Conv2d", ("weight",), ("input_shape", "stride", "padding", "dilation", "groups", "bias"), category="conv"),
        _spec("SumPool2d", ("kernel_size", "stride", "padding"), category="pool"),
        _spec("AvgPool2d", ("kernel_size", "stride", "padding"), category="pool"),
        _spec("Flatten", (), ("start_dim", "end_dim", "input_shape"), category="reshape"),
        _spec("Delay", ("delay",), category="delay", stateful=True, neuron_params=("delay",)),
        _spec("Threshold", ("threshold",), category="threshold", neuron_params=("threshold",)),
        _spec("I", ("r",), category="neuron", stateful=True, neuron_params=("r",)),
        _spec(
            "IF",
            ("r", "v_threshold"),
            ("v_reset",),
            category="neuron",
            stateful=True,
            spiking=True,
            neuron_params=("r", "v_threshold", "v_reset"),
        ),
        _spec(
            "LI",
            ("tau", "r", "v_leak"),
            category="neuron",
            stateful=True,
            neuron_params=("tau", "r", "v_leak"),
            time_constants=("tau",),
        ),
        _spec(
            "LIF",
            ("tau", "r", "v_leak", "v_threshold"),
            ("v_reset",),
            category="neuron",
            stateful=True,
            spiking=True,
            neuron_params=("tau", "r", "v_leak", "v_threshold", "v_reset"),
            time_constants=("tau",),
        ),
        _spec(
            "CubaLI",
            ("tau_syn", "tau_mem", "r", "v_leak"),
            ("w_in",),
            category="neuron",
            stateful=True,
            neuron_params=("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
            time_constants=("tau_syn", "tau_mem"),
        ),
        _spec(
            "CubaLIF",
            ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"),
            ("v_reset", "w_in"),
            category="neuron",
            stateful=True,
            spiking=True,
            neuron_params=("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
            time_constants=("tau_syn", "tau_mem"),
        ),
    ]
}

_MAXPOOL = dict(required=("kernel_size",), optional=("stride", "padding", "dilation", "ceil_mode"), category="pool", nir=False)
_BATCHNORM = dict(required=(), optional=("weight", "bias", "running_mean", "running_var", "eps"), category="norm", nir=False,
                  hint="fold it into the preceding Conv / Affine layer before export (per channel, g = weight / sqrt(running_var + "
                       "eps): w' = w g, b' = (b - running_mean) g + bias; nirdeploy.from_torch(..., fold_batchnorm=True) does "
                       "this for torch models); NIR 1.0 has no batch normalization")

#: well-known layers that are not NIR 1.0 primitives: recognised, shape-inferred, validated, and
#: refused by every target and the reference simulator with ``hint`` (see the module docstring)
NON_NIR_TYPES: dict[str, NodeSpec] = {
    s.type: s
    for s in [
        _spec("MaxPool2d", **_MAXPOOL,
              hint="replace it by SumPool2d (or AvgPool2d) or by a strided convolution, retrain and export again; NIR 1.0 has "
                   "no max pooling"),
        _spec("MaxPool1d", **_MAXPOOL,
              hint="replace it by a strided Conv1d, retrain and export again; NIR 1.0 has no max pooling (and no 1-D pooling)"),
        _spec("BatchNorm2d", **_BATCHNORM),
        _spec("BatchNorm1d", **_BATCHNORM),
        _spec("Dropout", (), ("p",), nir=False,
              hint="remove it before export (at inference dropout is the identity); NIR 1.0 has no Dropout node"),
    ]
}

#: every type name the loader accepts: the NIR 1.0 primitives and the non-NIR table
KNOWN_TYPES: dict[str, NodeSpec] = {**NODE_TYPES, **NON_NIR_TYPES}

NEURON_TYPES = frozenset(t for t, s in NODE_TYPES.items() if s.category == "neuron")
STATEFUL_TYPES = frozenset(t for t, s in NODE_TYPES.items() if s.stateful)
SPIKING_TYPES = frozenset(t for t, s in NODE_TYPES.items() if s.spiking)


@dataclass
class Node:
    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    subgraph: "Graph | None" = None

    @property
    def spec(self) -> NodeSpec:
        return KNOWN_TYPES[self.type]

    def p(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    @property
    def n_neurons(self) -> int:
        """Element count of a neuron-like node (0 for others)."""
        if self.type not in NODE_TYPES or not NODE_TYPES[self.type].neuron_params:
            return 0
        for k in NODE_TYPES[self.type].neuron_params:
            v = self.params.get(k)
            if isinstance(v, np.ndarray):
                return int(v.size)
        return 0

    def copy(self) -> "Node":
        return _copy.deepcopy(self)


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    nir_version: str | None = None
    delayed_edges: frozenset[tuple[str, str]] = frozenset()

    # -- construction ------------------------------------------------------------------------
    def copy(self) -> "Graph":
        return _copy.deepcopy(self)

    def with_(self, **changes) -> "Graph":
        """A deep copy with some fields replaced."""
        g = self.copy()
        return replace(g, **changes)

    # -- queries -----------------------------------------------------------------------------
    def predecessors(self, name: str) -> list[str]:
        return [s for s, d in self.edges if d == name]

    def successors(self, name: str) -> list[str]:
        return [d for s, d in self.edges if s == name]

    def by_type(self, *types: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.type in types]

    @property
    def inputs(self) -> list[Node]:
        return self.by_type("Input")

    @property
    def outputs(self) -> list[Node]:
        return self.by_type("Output")

    def iter_nodes_recursive(self, prefix: str = "") -> Iterable[tuple[str, Node]]:
        for name, n in self.nodes.items():
            full = f"{prefix}{name}"
            yield full, n
            if n.subgraph is not None:
                yield from n.subgraph.iter_nodes_recursive(full + ".")

    def summary_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, n in self.iter_nodes_recursive():
            counts[n.type] = counts.get(n.type, 0) + 1
        return counts


def non_nir_nodes(g: Graph) -> list[tuple[str, Node]]:
    """(dotted name, node) of every node of a type in :data:`NON_NIR_TYPES`, nested graphs included."""
    return [(name, n) for name, n in g.iter_nodes_recursive() if n.type in NON_NIR_TYPES]


def non_nir_notice(g: Graph) -> str | None:
    """One line naming the nodes that are not NIR 1.0 primitives (None when there are none)."""
    found = non_nir_nodes(g)
    if not found:
        return None
    names = ", ".join(f"{name} ({n.type})" for name, n in found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    one = len(found) == 1
    return (f"{names}: {'not a NIR 1.0 primitive' if one else 'not NIR 1.0 primitives'}; nirdeploy loads "
            f"{'it' if one else 'them'} only to name {'it' if one else 'them'}: no target and not the reference simulator runs "
            f"{'it' if one else 'them'}")
