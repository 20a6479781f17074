"""Checks collect every violation (developers' guide): on every target, a graph with several
independent faults gets all of them in one report, each naming its node, rule and hint (and the
limit and the actual value where the rule has a number), the CLI exits 1 and its text lists them.

One graph per target, because what is a fault differs per chip; each puts an unsupported node
next to faults the target can only find by lowering around it (sizes, fan-out, geometry, a dead
synaptic decay, a threshold, a delay)."""

from __future__ import annotations

import json
import subprocess
import sys

import nir
import numpy as np
import pytest

import nirdeploy

from graphs import cuba, lif, write
from speck_graphs import chain_graph


def _xylo_graph():
    """Hidden layer of 1200 neurons (limit 1000) with dense recurrence (fan-out 1200, limit 64),
    20 input channels (16), an IF (no Xylo neuron), 12 outputs (8) whose tau_syn = 1e-7 s is a
    dead synaptic decay at dt = 1e-4 s."""
    rng = np.random.default_rng(0)
    h = 1200
    nodes = {
        "input": nir.Input(input_type={"input": np.array([20])}),
        "fc1": nir.Linear(weight=rng.normal(size=(h, 20))),
        "lif1": cuba(h),
        "w_rec": nir.Linear(weight=rng.normal(size=(h, h))),
        "fc2": nir.Linear(weight=rng.normal(size=(6, h))),
        "if2": nir.IF(r=np.ones(6), v_threshold=np.ones(6), v_reset=np.zeros(6)),
        "fc3": nir.Linear(weight=rng.normal(size=(12, 6))),
        "dead": cuba(12, tau_syn=1e-7),
        "output": nir.Output(output_type={"output": np.array([12])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"), ("fc2", "if2"),
             ("if2", "fc3"), ("fc3", "dead"), ("dead", "output")]
    expected = {("unsupported_node", "if2"), ("hidden_neurons", "lif1, if2"), ("max_fanout", "lif1"), ("input_channels", "input"),
                ("output_neurons", "dead"), ("unstable_discretization", "dead"), ("recurrent_weight_memory", "lif1")}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), expected


def _loihi2_graph():
    """A negative threshold, a 100-step synaptic delay (limit 63), a non-spiking LI as a hidden
    layer and a Threshold node (no Loihi 2 lowering); the last layer's tau_syn is a dead decay
    (a warning: Loihi replaces u by the input)."""
    rng = np.random.default_rng(0)
    bad = lif(8)
    bad.v_threshold[2] = -1.0
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc1": nir.Linear(weight=rng.normal(size=(8, 4))),
        "lif1": bad,
        "delay": nir.Delay(delay=np.full(8, 100e-4)),
        "fc2": nir.Linear(weight=rng.normal(size=(6, 8))),
        "li": nir.LI(tau=np.full(6, 1e-3), r=np.full(6, 10.0), v_leak=np.zeros(6)),
        "fc3": nir.Linear(weight=rng.normal(size=(6, 6))),
        "thr": nir.Threshold(threshold=np.ones(6)),
        "fc4": nir.Linear(weight=rng.normal(size=(3, 6))),
        "dead": cuba(3, tau_syn=1e-7),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "delay"), ("delay", "fc2"), ("fc2", "li"), ("li", "fc3"), ("fc3", "thr"),
             ("thr", "fc4"), ("fc4", "dead"), ("dead", "output")]
    expected = {("unsupported_node", "thr"), ("hidden_must_spike", "li"), ("threshold_not_positive", "lif1"),
                ("synaptic_delay_range", "li")}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), expected


def _speck_graph():
    """Kernel 17 (limit 16), stride 3, eleven layers (nine cores) and a leaky LIF (Speck neurons
    do not leak) in place of the first IF."""
    g = chain_graph([{"k": 17, "c_out": 4, "padding": 8}, {"k": 3, "c_out": 4, "stride": 3, "padding": 1}] + [{"k": 1, "c_out": 4}] * 9,
                    (2, 24, 24), seed=2)
    shape = g.nodes["if0"].v_threshold.shape
    one = np.ones(shape)
    g.nodes["if0"] = nir.LIF(tau=one * 1e-3, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one)
    expected = {("unsupported_node", "if0"), ("max_kernel_size", "conv0"), ("strides", "conv1"), ("cores", "")}
    return g, expected


GRAPHS = {"xylo": _xylo_graph, "loihi2": _loihi2_graph, "speck": _speck_graph}
# rules that are a fault of kind, not of amount: they have no number to name
NO_NUMBER = {"unsupported_node", "hidden_must_spike"}


@pytest.mark.parametrize("target", sorted(GRAPHS))
def test_several_independent_faults_are_all_reported(target, tmp_path):
    graph, expected = GRAPHS[target]()
    rep = nirdeploy.check(graph, target=target, dt=1e-4)
    assert not rep.fits
    errors = {(v.rule, v.node): v for v in rep.violations if v.severity == "error"}
    assert expected <= set(errors), (expected - set(errors), sorted(errors))
    for v in rep.violations:
        assert v.rule and v.message
        if v.severity == "error":
            assert v.hint, v
            assert v.node or v.rule == "cores", v  # (Speck's core count belongs to the whole network)
            if v.rule not in NO_NUMBER:
                assert v.limit is not None and v.actual is not None, v

    path = write(graph, tmp_path / "faults.nir")
    r = subprocess.run([sys.executable, "-m", "nirdeploy.cli", "check", str(path), "--target", target, "--dt", "1e-4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    for rule, node in expected:  # each on its own row of the violations table, with its node
        assert any(rule in ln and node in ln for ln in lines), (rule, node, r.stdout)
    rj = subprocess.run([sys.executable, "-m", "nirdeploy.cli", "check", str(path), "--target", target, "--dt", "1e-4", "--json"],
                        capture_output=True, text=True, timeout=300)
    assert rj.returncode == 1
    assert expected <= {(v["rule"], v["node"]) for v in json.loads(rj.stdout)["violations"]}
