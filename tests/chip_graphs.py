"""Random NIR graphs for the chip-model tests (ours): small recurrent / feed-forward networks of
the shapes Xylo and Loihi 2 take, with the neuron types, readouts, biases and time constants
varied by the seed."""

from __future__ import annotations

import numpy as np

from nirdeploy.graph.ir import Graph, Node


def _neuron(kind: str, n: int, rng, dt: float, thr: float) -> Node:
    tm = dt * float(rng.choice([2.0, 5.0, 10.0, 20.0, 60.0]))
    ts = dt * float(rng.choice([1.5, 3.0, 5.0, 10.0]))
    one = np.ones(n)
    if kind == "CubaLIF":
        p = dict(tau_syn=ts * one, tau_mem=tm * one, r=tm / dt * one, v_leak=np.zeros(n), v_threshold=thr * rng.uniform(0.7, 1.3, n),
                 v_reset=np.zeros(n), w_in=ts / dt * one)
    elif kind == "LIF":
        p = dict(tau=tm * one, r=tm / dt * one, v_leak=np.zeros(n), v_threshold=thr * rng.uniform(0.7, 1.3, n), v_reset=np.zeros(n))
    elif kind == "CubaLI":
        p = dict(tau_syn=ts * one, tau_mem=tm * one, r=tm / dt * one, v_leak=np.zeros(n), w_in=ts / dt * one)
    elif kind == "LI":
        p = dict(tau=tm * one, r=tm / dt * one, v_leak=np.zeros(n))
    else:  # IF
        p = dict(r=one.copy(), v_threshold=thr * rng.uniform(0.7, 1.3, n), v_reset=np.zeros(n))
    return Node("", kind, p)


def random_rsnn(seed: int, *, dt: float = 1e-4, n_in: int | None = None, hidden_kinds=("CubaLIF", "LIF"),
                out_kinds=("CubaLIF", "LIF", "CubaLI", "LI"), max_out: int = 8, scale: float = 1.0) -> Graph:
    """Input -> Linear/Affine -> hidden (recurrent or not; sometimes two hidden layers) ->
    Linear -> output layer -> Output."""
    rng = np.random.default_rng(seed)
    n_in = n_in or int(rng.integers(2, 17))
    layers = [int(rng.integers(3, 24)) for _ in range(1 + int(rng.random() < 0.3))]
    n_out = int(rng.integers(2, max_out + 1))
    nodes = {"input": Node("input", "Input", {"shape": (n_in,)})}
    edges = []
    prev, n_prev = "input", n_in
    for i, n in enumerate(layers):
        w = rng.normal(0, scale * 2.0 / np.sqrt(n_prev), (n, n_prev))
        w[rng.random(w.shape) < 0.2] = 0.0
        if rng.random() < 0.3 and i == 0:
            nodes[f"fc{i}"] = Node(f"fc{i}", "Affine", {"weight": w, "bias": rng.normal(0, 0.02, n)})
        else:
            nodes[f"fc{i}"] = Node(f"fc{i}", "Linear", {"weight": w})
        nk = _neuron(str(rng.choice(hidden_kinds)), n, rng, dt, 1.0)
        nodes[f"h{i}"] = Node(f"h{i}", nk.type, nk.params)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"h{i}")]
        if rng.random() < 0.6:
            nodes[f"rec{i}"] = Node(f"rec{i}", "Linear", {"weight": rng.normal(0, scale * 0.7 / np.sqrt(n), (n, n))})
            edges += [(f"h{i}", f"rec{i}"), (f"rec{i}", f"h{i}")]
        prev, n_prev = f"h{i}", n
    nodes["fc_out"] = Node("fc_out", "Linear", {"weight": rng.normal(0, scale * 2.0 / np.sqrt(n_prev), (n_out, n_prev))})
    ok = _neuron(str(rng.choice(out_kinds)), n_out, rng, dt, 1.0)
    nodes["out"] = Node("out", ok.type, ok.params)
    nodes["output"] = Node("output", "Output", {"shape": (n_out,)})
    edges += [(prev, "fc_out"), ("fc_out", "out"), ("out", "output")]
    return Graph(nodes, edges)


def event_input(rng, batch: int, steps: int, shape, rate: float = 0.3, max_count: int = 3) -> np.ndarray:
    shape = tuple(shape)
    x = rng.random((batch, steps) + shape) < rate
    return (x * rng.integers(1, max_count + 1, (batch, steps) + shape)).astype(np.int64)
