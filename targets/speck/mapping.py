"""Per-core memory of a layer and the assignment of layers to DYNAP-CNN cores.

Memory (speck.md section 1; the formulas of sinabs' ``DynapcnnLayer.memory_summary``, which the
chip tools use; weight shape (c_out, c_in, k_h, k_w), neuron shape = convolution output before
pooling)::

    kernel = c_in * 2 ** (ceil(log2(k_h * k_w)) + ceil(log2(c_out)))
    neuron = c_out * 2 ** (ceil(log2(H_out)) + ceil(log2(W_out)))
    bias   = c_out if the layer has a bias else 0

A layer fits a core when each of the three is at most that core's limit. nirdeploy counts bias
memory only for a layer with a non-zero bias; sinabs counts ``c_out`` whenever the torch layer has
a bias parameter (``from_nir`` always adds one). With at most 1024 channels per layer and 1024 bias
entries per core this never changes a fit or a mapping on Speck 2e/2f. Mapping is a bipartite
matching of layers to cores (speck.md section 5): augmenting paths found by breadth-first search
from the layers in order, over candidate cores in ascending order, until no path is left. This
visits the residual graph in the same order as sinabs' ``mapping.get_valid_mapping``, so the
assignment it returns is the one sinabs returns (tests/test_speck_mapping.py checks it on random
layer stacks). Topology is ignored: any core can send to any core.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["LayerMemory", "memory", "candidate_cores", "assign_cores", "MappingResult"]


def _ceil_log2(n: int) -> int:
    return 0 if n <= 1 else math.ceil(math.log2(n))


@dataclass(frozen=True)
class LayerMemory:
    kernel: int
    neuron: int
    bias: int

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "neuron": self.neuron, "bias": self.bias}


def memory(c_out: int, c_in: int, k_h: int, k_w: int, h_out: int, w_out: int, has_bias: bool) -> LayerMemory:
    """Kernel, neuron and bias memory (words) of one layer."""
    kernel = int(c_in) * 2 ** (_ceil_log2(int(k_h) * int(k_w)) + _ceil_log2(int(c_out)))
    neuron = int(c_out) * 2 ** (_ceil_log2(int(h_out)) + _ceil_log2(int(w_out)))
    return LayerMemory(kernel, neuron, int(c_out) if has_bias else 0)


def candidate_cores(mem: LayerMemory, kernel_limits, neuron_limits, bias_limits) -> list[int]:
    """Cores (ascending) whose three memories each hold the layer."""
    return [i for i, (k, n, b) in enumerate(zip(kernel_limits, neuron_limits, bias_limits))
            if mem.kernel <= k and mem.neuron <= n and mem.bias <= b]


@dataclass
class MappingResult:
    assignment: dict[int, int]  # layer index -> core
    unplaced: list[int]  # layer indices left without a core
    # for an incomplete matching: groups (layers, the only cores they fit) with more layers than cores
    conflicts: list[tuple[list[int], list[int]]]

    @property
    def complete(self) -> bool:
        return not self.unplaced


def assign_cores(candidates: list[list[int]], n_cores: int) -> MappingResult:
    """Maximum matching of layers to cores. ``candidates[i]`` lists the cores layer i fits.

    Breadth-first augmenting paths (Edmonds-Karp on source -> layer -> core -> sink with unit
    capacities). From a layer the search tries its candidate cores in ascending order; from a core
    it first goes back to the layer currently matched to it, then to the sink when the core is
    free; each search completes before the first path to the sink is taken. This is the visiting
    order of sinabs' flow graph, so the assignment equals sinabs' one."""
    n = len(candidates)
    core_of: list[int | None] = [None] * n  # layer -> core
    layer_of: list[int | None] = [None] * n_cores  # core -> layer
    while True:
        # BFS state: nodes are ("L", i) and ("C", c); pred maps node -> previous node
        pred: dict[tuple[str, int], tuple[str, int] | None] = {}
        q: deque[tuple[str, int]] = deque()
        for i in range(n):
            if core_of[i] is None:
                pred[("L", i)] = None
                q.append(("L", i))
        sink_pred: int | None = None
        while q:
            kind, idx = q.popleft()
            if kind == "L":
                for c in candidates[idx]:
                    if core_of[idx] == c:
                        continue  # the matched edge has no residual capacity forward
                    if ("C", c) not in pred:
                        pred[("C", c)] = ("L", idx)
                        q.append(("C", c))
            else:
                m = layer_of[idx]
                if m is not None and ("L", m) not in pred:
                    pred[("L", m)] = ("C", idx)
                    q.append(("L", m))
                if m is None and sink_pred is None:
                    sink_pred = idx
        if sink_pred is None:
            break
        # augment along the path to core `sink_pred`
        node: tuple[str, int] | None = ("C", sink_pred)
        while node is not None:
            c = node[1]
            layer_node = pred[node]
            assert layer_node is not None
            i = layer_node[1]
            prev_core = core_of[i]
            core_of[i] = c
            layer_of[c] = i
            node = pred[layer_node]  # the core layer i was matched to before, or None
            if node is not None:
                assert prev_core == node[1]
    assignment = {i: c for i, c in enumerate(core_of) if c is not None}
    unplaced = [i for i, c in enumerate(core_of) if c is None]
    conflicts = _hall_conflicts(candidates, core_of, layer_of) if unplaced else []
    return MappingResult(assignment, unplaced, conflicts)


def _hall_conflicts(candidates, core_of, layer_of) -> list[tuple[list[int], list[int]]]:
    """For each unplaced layer that has candidates: the layers reachable by alternating paths and
    the cores they all compete for (more layers than cores: Hall's condition fails)."""
    out = []
    seen_groups = set()
    for start, c0 in enumerate(core_of):
        if c0 is not None or not candidates[start]:
            continue
        layers, cores = {start}, set()
        q = deque([start])
        while q:
            i = q.popleft()
            for c in candidates[i]:
                if c not in cores:
                    cores.add(c)
                    m = layer_of[c]
                    if m is not None and m not in layers:
                        layers.add(m)
                        q.append(m)
        key = (tuple(sorted(layers)), tuple(sorted(cores)))
        if key not in seen_groups:
            seen_groups.add(key)
            out.append((sorted(layers), sorted(cores)))
    return out
