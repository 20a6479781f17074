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
Graphs are treated as values: passes return new graphs and never mutate their argument
(:meth:`Graph.copy` is a deep copy).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

__all__ = ["NodeSpec", "NODE_TYPES", "NEURON_TYPES", "STATEFUL_TYPES", "SPIKING_TYPES", "Node", "Graph"]


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
        return NODE_TYPES[self.type]

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
