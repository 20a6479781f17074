"""Small NIR graphs built with the nir package, for tests."""

from __future__ import annotations

import nir
import numpy as np

from nirdeploy.graph.ir import Graph, Node


def cuba(n, tau_syn=2e-4, tau_mem=1e-3, thr=1.0, dt=1e-4, v_leak=0.0):
    """A CubaLIF layer with snnTorch's encoding (r = tau_mem/dt, w_in = tau_syn/dt)."""
    one = np.ones(n)
    return nir.CubaLIF(
        tau_syn=tau_syn * one, tau_mem=tau_mem * one, r=tau_mem / dt * one, v_leak=v_leak * one,
        v_threshold=thr * one, v_reset=0 * one, w_in=tau_syn / dt * one,
    )


def lif(n, tau=1e-3, thr=1.0, dt=1e-4):
    one = np.ones(n)
    return nir.LIF(tau=tau * one, r=tau / dt * one, v_leak=0 * one, v_threshold=thr * one, v_reset=0 * one)


def ff_graph(n_in=4, n_hid=8, n_out=3, seed=0, recurrent=False, scale=1.0, neuron="cuba"):
    rng = np.random.default_rng(seed)
    mk = cuba if neuron == "cuba" else lif
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Linear(weight=rng.normal(0, scale, (n_hid, n_in))),
        "lif1": mk(n_hid),
        "fc2": nir.Linear(weight=rng.normal(0, scale, (n_out, n_hid))),
        "lif2": mk(n_out),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    if recurrent:
        nodes["w_rec"] = nir.Linear(weight=rng.normal(0, scale * 0.5, (n_hid, n_hid)))
        edges += [("lif1", "w_rec"), ("w_rec", "lif1")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def unsupported_if_graph(name: str):
    """input -> Linear -> IF named ``name`` (Xylo has no IF: one violation naming the node) ->
    Linear -> LIF -> output; for tests of how names are escaped in messages and reports."""
    rng = np.random.default_rng(0)
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Linear(weight=rng.normal(size=(4, 3))),
        name: nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "fc2": nir.Linear(weight=rng.normal(size=(2, 4))),
        "out": nir.LIF(tau=np.ones(2) * 1e-3, r=np.ones(2) * 10, v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }, edges=[("input", "fc"), ("fc", name), (name, "fc2"), ("fc2", "out"), ("out", "output")], type_check=False)


def write(graph, path):
    nir.write(str(path), graph)
    return path


def chain(*nodes: Node, extra_edges=()) -> Graph:
    """An IR graph that connects ``nodes`` in order (plus ``extra_edges``)."""
    g = Graph(nodes={n.name: n for n in nodes})
    names = [n.name for n in nodes]
    g.edges = list(zip(names, names[1:])) + list(extra_edges)
    return g


def N(name, type_, **params) -> Node:
    """An IR node with the given parameters."""
    return Node(name, type_, params)


def ir_lif(name, n=4, **over):
    """An IR LIF node (tau 1 ms, r 1, threshold 1), parameters overridable."""
    p = dict(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    p.update(over)
    return Node(name, "LIF", p)


def delay_graph(where="pre", steps=(0, 1, 2, 3, 1, 0), dt=1e-4, recurrent=False, seed=0):
    """Input(6) -> ... -> CubaLIF(10) -> Linear -> CubaLIF(4) with a NIR Delay of ``steps`` x dt:
    ``pre`` on the inputs (per source), ``post`` after the first Linear (per destination),
    ``middle`` between two Linears (one pair of neurons gets several delays); ``recurrent`` adds
    lif1 -> Delay(3 steps) -> w_rec -> lif1."""
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = 6, 10, 4
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc1": nir.Linear(weight=rng.normal(0, 1.5, (n_hid, n_in))), "lif1": cuba(n_hid),
             "fc2": nir.Linear(weight=rng.normal(0, 1.0, (n_out, n_hid))), "lif2": cuba(n_out),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    if where == "pre":
        nodes["d"] = nir.Delay(delay=np.resize(np.array(steps, float), n_in) * dt)
        edges = [("input", "d"), ("d", "fc1"), ("fc1", "lif1")]
    elif where == "post":
        nodes["d"] = nir.Delay(delay=np.resize(np.array(steps, float), n_hid) * dt)
        edges = [("input", "fc1"), ("fc1", "d"), ("d", "lif1")]
    else:
        nodes["pre"] = nir.Linear(weight=rng.normal(0, 1, (5, n_in)))
        nodes["d"] = nir.Delay(delay=np.resize(np.array(steps, float), 5) * dt)
        nodes["fc1"] = nir.Linear(weight=rng.normal(0, 1.5, (n_hid, 5)))
        edges = [("input", "pre"), ("pre", "d"), ("d", "fc1"), ("fc1", "lif1")]
    edges += [("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    if recurrent:
        nodes["w_rec"] = nir.Linear(weight=rng.normal(0, 0.5, (n_hid, n_hid)))
        nodes["d_rec"] = nir.Delay(delay=np.full(n_hid, 3 * dt))
        edges += [("lif1", "d_rec"), ("d_rec", "w_rec"), ("w_rec", "lif1")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
