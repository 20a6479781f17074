"""The Speck target without oracles: fit rules and their messages, CLI exit codes, hand-derived
event traces where the chip and sinabs differ, event == binned where they coincide, options,
export / load, and the hardware path without samna."""

from __future__ import annotations

import json
import subprocess
import sys

import nir
import numpy as np
import pytest

import nirdeploy
from nirdeploy.backend.hwconfig import load_hwconfig
from nirdeploy.errors import MissingDependencyError, UsageError
from nirdeploy.graph.ir import Graph, Node
from nirdeploy_targets.speck.config import INPUT, SpeckLayer, SpeckNetwork
from nirdeploy_targets.speck.sim import simulate_binned, simulate_events

from conftest import CORPUS
from graphs import write
from speck_graphs import chain_graph, if_node, random_specs

HW = load_hwconfig("speck", "speck2f")
STATE = HW.fmt("state")


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "nirdeploy.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


# -- fit rules --------------------------------------------------------------------------------------
def test_cnn_sinabs_fits_speck2f_with_a_per_core_memory_table():
    rep = nirdeploy.check(CORPUS / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0)
    assert rep.fits
    res = {r.name: r for r in rep.resources}
    for c in range(9):
        assert f"core {c} kernel memory" in " ".join(res) and any(n.startswith(f"core {c} neuron memory") for n in res)
    assert res["core 3 kernel memory (10)"].used == 32768 and res["core 3 kernel memory (10)"].limit == 32768
    assert [n.usage["core"] for n in rep.nodes] == [0, 1, 2, 3, 4]
    text = rep.render()
    assert "core 5 kernel memory" in text and "65536" in text


def _bad_graph():
    """Too much kernel memory, kernel 17, stride 3 and eleven layers at once."""
    specs = [{"k": 17, "c_out": 4, "padding": 8}, {"k": 3, "c_out": 4, "stride": 3, "padding": 1}, {"k": 3, "c_out": 256, "padding": 1},
             {"k": 3, "c_out": 256, "padding": 1}] + [{"k": 1, "c_out": 4}] * 7
    return chain_graph(specs, (2, 24, 24), seed=1)


def test_a_network_that_does_not_fit_gets_every_violation():
    rep = nirdeploy.check(_bad_graph(), target="speck:speck2e", dt=1.0)
    assert not rep.fits
    rules = {v.rule for v in rep.errors}
    assert {"max_kernel_size", "strides", "cores", "core_memory"} <= rules, rules
    v = next(v for v in rep.errors if v.rule == "core_memory")
    assert v.node == "if3" and "kernel memory 1048576 > 65536" in v.message
    assert next(v for v in rep.errors if v.rule == "cores").actual == 11
    assert next(v for v in rep.errors if v.rule == "max_kernel_size").actual == 17
    assert next(v for v in rep.errors if v.rule == "strides").actual == 3


def test_cli_exit_codes_and_check_all_lists_both_variants(tmp_path):
    bad = write(_bad_graph(), tmp_path / "bad.nir")
    r = _cli("check", bad, "--target", "speck:speck2f", "--dt", "1", "--json")
    assert r.returncode == 1, r.stderr
    assert {"max_kernel_size", "strides", "cores", "core_memory"} <= {v["rule"] for v in json.loads(r.stdout)["violations"]}
    r = _cli("check", CORPUS / "cnn_sinabs.nir", "--target", "all", "--dt", "1", "--json")
    assert r.returncode == 0, r.stderr
    rows = {(d["target"], d["variant"]): d["fits"] for d in json.loads(r.stdout)}
    assert rows[("speck", "speck2e")] and rows[("speck", "speck2f")]
    r = _cli("check", CORPUS / "cnn_sinabs.nir", "--target", "speck", "--dt", "1", "-T", "nonsense=1")
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = _cli("check", CORPUS / "cnn_sinabs.nir", "--target", "speck", "--dt", "1", "-T", "lower_bound=zero")
    assert r.returncode == 2 and "lower_bound" in r.stderr
    out = tmp_path / "o"
    r = _cli("compile", bad, "--target", "speck", "--dt", "1", "-o", out)
    assert r.returncode == 1 and not out.exists()


def test_unsupported_nodes_are_named_one_by_one():
    one = np.ones(4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "lif": nir.LIF(tau=one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one),
        "fc2": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "cuba": nir.CubaLIF(tau_syn=one, tau_mem=one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one, w_in=one),
        "delay": nir.Delay(delay=one),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "cuba"), ("cuba", "delay"), ("delay", "output")]
    rep = nirdeploy.check(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), target="speck", dt=1e-3)
    named = {(v.node, v.rule) for v in rep.errors}
    assert {("lif", "unsupported_node"), ("cuba", "unsupported_node"), ("delay", "unsupported_node")} <= named
    assert "lif_leak=bias" in next(v.hint for v in rep.errors if v.node == "lif")


def test_every_violation_at_once_with_a_maxpool_on_a_real_file(tmp_path):
    """Kernel 17, stride 3, eleven layers, a layer with too much kernel memory and a MaxPool2d
    (not a NIR primitive, written with h5py in NIR's layout) in one network: each is reported,
    in one report, exit 1; the geometry, memory and mapping checks run around the MaxPool."""
    from bad_inputs import insert_node

    specs = [{"k": 17, "c_out": 4, "padding": 8}, {"k": 3, "c_out": 4, "stride": 3, "padding": 1, "pool": 2},
             {"k": 3, "c_out": 256, "padding": 1}, {"k": 3, "c_out": 256, "padding": 1}] + [{"k": 1, "c_out": 4}] * 7
    path = write(chain_graph(specs, (2, 24, 24), seed=1), tmp_path / "bad.nir")
    insert_node(path, "pool1", {"type": "MaxPool2d", "kernel_size": np.array([2, 2])}, replace=True)
    r = _cli("check", path, "--target", "speck:speck2f", "--dt", "1", "--json")
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    errors = {(v["rule"], v["node"]): v for v in rep["violations"] if v["severity"] == "error"}
    assert {("unsupported_node", "pool1"), ("max_kernel_size", "conv0"), ("strides", "conv1"), ("cores", ""),
            ("core_memory", "if3")} <= set(errors), sorted(errors)
    assert "strided convolution" in errors[("unsupported_node", "pool1")]["hint"]
    assert errors[("cores", "")]["actual"] == 11 and errors[("max_kernel_size", "conv0")]["actual"] == 17
    assert errors[("strides", "conv1")]["actual"] == 3 and "kernel memory 1048576 > 65536" in errors[("core_memory", "if3")]["message"]
    nodes = {n["node"]: n["usage"] for n in rep["nodes"]}
    assert len(nodes) == 11 and nodes["if2"]["input_shape"] == [4, 4, 4]  # the layer after the MaxPool is still lowered
    assert sum(1 for v in rep["violations"] if v["rule"] == "unsupported_node") == 1
    out = tmp_path / "o"
    assert _cli("compile", path, "--target", "speck", "--dt", "1", "-o", out).returncode == 1 and not out.exists()


def test_checks_run_around_unsupported_neurons_and_batchnorm():
    """A LIF layer (without lif_leak=bias) and a BatchNorm between a convolution and its IF: both
    named, and the layers' geometry, memory and mapping are still checked."""
    from nirdeploy.graph.ir import Graph as G

    g = chain_graph([{"k": 17, "c_out": 4, "padding": 8}, {"k": 3, "c_out": 4, "stride": 3, "padding": 1}], (2, 24, 24), seed=2)
    ir = nirdeploy.load_graph(g)
    lif = ir.nodes["if0"]
    one = np.ones(lif.params["r"].shape)
    ir.nodes["if0"] = Node("if0", "LIF", {"tau": one, "r": one, "v_leak": 0 * one, "v_threshold": one, "v_reset": 0 * one})
    ir.nodes["bn"] = Node("bn", "BatchNorm2d", {"running_mean": np.zeros(4), "running_var": np.ones(4), "eps": np.array(1e-5)})
    ir.edges = [e for e in ir.edges if e != ("conv1", "if1")] + [("conv1", "bn"), ("bn", "if1")]
    rep = nirdeploy.check(G(ir.nodes, ir.edges), target="speck", dt=1e-3)
    errors = {(v.rule, v.node) for v in rep.errors}
    assert {("unsupported_node", "if0"), ("unsupported_node", "bn"), ("max_kernel_size", "conv0"), ("strides", "conv1")} <= errors, errors
    assert [n.node for n in rep.nodes] == ["if0", "if1"] and all("memory" in n.usage and n.usage.get("core") is not None for n in rep.nodes)
    assert not any(v.rule == "structure" for v in rep.violations)  # no noise caused by the unsupported nodes


def test_lif_leak_only_when_opted_in():
    n = 6
    one = np.ones(n)
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}),
             "fc": nir.Affine(weight=np.random.default_rng(0).normal(0, 1, (n, 3)), bias=np.zeros(n)),
             "lif": nir.LIF(tau=1e-2 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one),
             "output": nir.Output(output_type={"output": np.array([n])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    rep = nirdeploy.check(g, target="speck", dt=1e-3)
    assert not rep.fits and any(v.node == "lif" and v.rule == "unsupported_node" for v in rep.errors)
    dep = nirdeploy.compile(g, target="speck", dt=1e-3, target_options={"lif_leak": "bias"})
    assert dep.fits
    w = next(v for v in dep.report.warnings if v.rule == "lif_leak_approximation")
    assert "-0.05" in w.message  # (1 - alpha) * theta / 2 = 0.1 / 2
    layer = dep.artifact.payload.network.layers[0]
    assert layer.has_bias and np.all(layer.bias < 0)


def test_per_channel_thresholds_fold_exactly_and_spatial_ones_are_refused():
    rng = np.random.default_rng(3)
    g = chain_graph([{"k": 3, "c_out": 4, "padding": 1}], (2, 8, 8), seed=3, thr=1.0, bias=False)
    thr = np.array([1.0, 2.0, 0.5, 4.0])
    g.nodes["if0"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.broadcast_to(thr[:, None, None], (4, 8, 8)).copy(), v_reset=np.zeros((4, 8, 8)))
    # the same network with the thresholds moved into the weights
    g2 = chain_graph([{"k": 3, "c_out": 4, "padding": 1}], (2, 8, 8), seed=3, thr=4.0, bias=False)
    g2.nodes["conv0"].weight = g.nodes["conv0"].weight * (4.0 / thr)[:, None, None, None]
    d1 = nirdeploy.compile(g, target="speck", dt=1.0, reset="subtract")
    d2 = nirdeploy.compile(g2, target="speck", dt=1.0, reset="subtract")
    assert any(v.rule == "threshold_folded" for v in d1.report.violations)
    l1, l2 = d1.artifact.payload.network.layers[0], d2.artifact.payload.network.layers[0]
    assert l1.weight.tolist() == l2.weight.tolist() and l1.threshold_high == l2.threshold_high
    x = (rng.random((2, 20, 2, 8, 8)) < 0.3).astype(int)
    assert np.array_equal(d1.simulate(x), d2.simulate(x))
    bad = np.ones((4, 8, 8))
    bad[0, 0, 0] = 2.0
    g.nodes["if0"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=bad, v_reset=np.zeros((4, 8, 8)))
    rep = nirdeploy.check(g, target="speck", dt=1.0)
    assert any(v.rule == "per_neuron_threshold" and v.node == "if0" for v in rep.errors)


def test_avgpool_becomes_sum_pooling_with_the_rescale_folded():
    specs = [{"k": 3, "c_out": 4, "padding": 1, "pool": 2}, {"k": 3, "c_out": 3}]
    ga = chain_graph(specs, (1, 10, 10), seed=4, pool_type="AvgPool2d", thr=1.0)
    gs = chain_graph(specs, (1, 10, 10), seed=4, thr=1.0)
    gs.nodes["conv1"].weight = gs.nodes["conv1"].weight / 4.0
    da, ds = nirdeploy.compile(ga, target="speck", dt=1.0), nirdeploy.compile(gs, target="speck", dt=1.0)
    assert any(v.rule == "avgpool_rescale" and "1/4" in v.message for v in da.report.violations)
    na, ns = da.artifact.payload.network, ds.artifact.payload.network
    assert [l.weight.tolist() for l in na.layers] == [l.weight.tolist() for l in ns.layers]
    assert na.layers[1].sources == [("if0", 2)]


def test_input_pooling_and_bad_pooling_are_violations():
    g = chain_graph([{"k": 3, "c_out": 2, "pool": 3}, {"k": 1, "c_out": 2}], (1, 12, 12), seed=0)
    rep = nirdeploy.check(g, target="speck", dt=1.0)
    assert any(v.rule == "pooling_sizes" and v.actual == 3 for v in rep.errors)


# -- event-driven semantics: hand-derived traces (speck.md section 6) ----------------------------------
def _one_neuron(weights, th, low=-32768, rtz=False, bias=0):
    """A 1x1 layer: len(weights) input channels into one neuron."""
    c_in = len(weights)
    l = SpeckLayer("n", np.array(weights, dtype=np.int64).reshape(1, c_in, 1, 1), np.array([bias]), th, low, rtz, (1, 1), (0, 0),
                   (c_in, 1, 1), (1, 1, 1), [(INPUT, 1)], core=0, has_bias=bias != 0)
    return SpeckNetwork([l], (c_in, 1, 1), "n", 1, (1,))


def _ev(net, x, **kw):
    r = simulate_events(net, np.asarray(x).reshape((1, len(x)) + net.input_shape), state_format=STATE, record=True, **kw)
    return r.output[0, :, 0].tolist(), int(r.states["n"]["v"][0, -1].ravel()[0])


def _bin(net, x, spikes="multi"):
    r = simulate_binned(net, np.asarray(x).reshape((1, len(x)) + net.input_shape), spikes=spikes, record=True)
    return r.output[0, :, 0].tolist(), int(r.states["n"]["v"][0, -1].ravel()[0])


def test_trace_weight_above_threshold():
    net = _one_neuron([250], 100)
    x = [[1]] * 4
    assert _ev(net, x) == ([1, 1, 1, 1], 600)  # one spike per event; v climbs
    assert _bin(net, x) == ([2, 3, 2, 3], 0)  # sinabs MultiSpike
    assert _bin(net, x, "single") == ([1, 1, 1, 1], 600)


def test_trace_mixed_signs_in_one_bin():
    net = _one_neuron([60, -60], 100)
    assert _ev(net, [[2, 1]]) == ([1], -40)  # +60 +60 (spike, 20) -60
    assert _bin(net, [[2, 1]]) == ([0], 60)


def test_trace_lower_bound_per_event():
    net = _one_neuron([-150, 150], 100, low=-100)
    assert _ev(net, [[1, 1]]) == ([0], 50)  # -150 -> clamp -100, +150 -> 50
    assert _bin(net, [[1, 1]]) == ([0], 0)


def test_trace_return_to_zero_and_spike_test():
    net = _one_neuron([50], 100, rtz=True)
    assert _ev(net, [[1], [1], [3]]) == ([0, 1, 1], 50)  # 50, 100 (>=: spike, 0), 50 100(spike, 0) 50
    assert _ev(net, [[1], [1], [3]], spike_test=">") == ([0, 0, 1], 100)  # 50, 100 (not > 100), 150 (spike, 0) 50 100
    assert _bin(net, [[1], [1], [3]]) == ([0, 1, 1], 0)  # sinabs: v=100 -> 1 spike -> 0; v=150 -> 1 spike -> 0


def test_trace_16_bit_state_saturates_or_wraps():
    net = _one_neuron([127], 32767)
    x = [[200]] + [[1]] * 60
    ev, v = _ev(net, x)
    assert sum(ev) == 1  # 258 events of 127 reach the threshold 32767 once (saturation at 32767 is the threshold)
    net = _one_neuron([-127], 100)
    _, v = _ev(net, [[300]])
    assert v == STATE.min  # clamped by the 16-bit state, not below
    net = _one_neuron([-127], 32767)
    ev, v = _ev(net, [[300]], state_overflow="wrap")
    assert v == 27436 and ev == [0]  # event 259 wraps -32893 to 32643 (below the threshold); -38100 + 65536 at the end


def test_trace_bias_on_slow_clock_ticks():
    net = _one_neuron([0], 10, bias=4)
    out, v = _ev(net, [[0]] * 5)
    assert out == [0, 0, 1, 0, 1] and v == 0  # 4, 8, 12 -> spike 2, 6, 10 -> spike 0
    out, v = _ev(net, [[0]] * 5, ticks_per_step=2)
    assert out == [0, 1, 1, 1, 1]  # 4 8 | 12->2 6 | 10->0 4 | 8 12->2 | 6 10->0
    assert _bin(net, [[0]] * 5)[0] == [0, 0, 1, 0, 1]
    out, _ = _ev(net, [[0]] * 5, ticks_per_step=0)
    assert out == [0] * 5


def test_two_sources_merge_into_one_core():
    """a and b both feed c (sinabs' Merge): their pooled spikes add. Events from the two sources
    hit c's input at the same addresses with the same weights, so their order cannot matter."""
    def L(name, w, th, src, shape_in=(1, 4, 4)):
        return SpeckLayer(name, np.full((1, 1, 1, 1), w), np.zeros(1), th, -32768, False, (1, 1), (0, 0), shape_in, (1,) + shape_in[1:], src)

    net = SpeckNetwork([L("a", 100, 100, [(INPUT, 1)]), L("b", 50, 100, [(INPUT, 1)]),
                        L("c", 30, 100, [("a", 2), ("b", 2)], (1, 2, 2))], (1, 4, 4), "c", 1, (1, 2, 2))
    x = np.random.default_rng(0).integers(0, 3, (2, 10, 1, 4, 4))
    e = simulate_events(net, x, state_format=STATE).output
    assert np.array_equal(e, simulate_binned(net, x).output) and e.sum() > 0
    assert net.destinations("__input__") == [("a", 1), ("b", 1)]


def test_event_equals_binned_where_the_semantics_coincide():
    """Non-negative weights below the threshold, subtractive reset, no bias: every event crosses
    the threshold at most once, so the chip's spike count per bin equals sinabs' MultiSpike."""
    rng = np.random.default_rng(11)
    for seed in range(6):
        side = int(rng.integers(6, 15))
        in_shape = (int(rng.integers(1, 3)), side, side)
        specs = random_specs(rng, in_shape, int(rng.integers(1, 4)), max_c=6)
        g = chain_graph(specs, in_shape, linear_out=4 if seed % 2 else None, seed=seed, positive=True, bias=False)
        dep = nirdeploy.compile(g, target="speck", dt=1.0, reset="subtract")
        net = dep.artifact.payload.network
        assert all(np.all(l.weight >= 0) and l.weight.max() <= l.threshold_high for l in net.layers)
        x = (rng.random((2, 15) + in_shape) < 0.4).astype(np.int64) * rng.integers(1, 4, (2, 15) + in_shape)
        e = simulate_events(net, x, state_format=STATE).output
        b = simulate_binned(net, x).output
        assert np.array_equal(e, b) and b.sum() > 0, seed


# -- export, load, hardware ----------------------------------------------------------------------------
def test_export_load_roundtrip_and_speck_config(tmp_path):
    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0)
    out = tmp_path / "out"
    dep.save(out)
    cfg = json.loads((out / "speck_config.json").read_text())
    assert [c["core"] for c in cfg["cnn_layers"]] == [0, 1, 2, 3, 4]
    c0, c1 = cfg["cnn_layers"][:2]
    assert c0["dimensions"]["kernel_size"] == 5 and c0["dimensions"]["stride"] == {"x": 2, "y": 2}
    assert c0["dimensions"]["input_shape"] == {"size": {"x": 34, "y": 34}, "feature_count": 2}
    assert c0["destinations"] == [{"layer": 1, "enable": True, "pooling": 1, "layer_name": "3"}]
    assert c1["destinations"][0]["pooling"] == 2
    assert c0["threshold_high"] == 72 and c0["threshold_low"] == -32768 and c0["return_to_zero"] is True
    w = dep.artifact.payload.network.layers[0].weight
    assert c0["weights"][3][1][4][0] == w[3, 1, 0, 4]  # samna's [out][in][x][y]
    assert cfg["cnn_layers"][4]["monitor_enable"] and not c0["monitor_enable"]
    assert cfg["input_destinations"] == [{"layer": 0, "layer_name": "1"}]
    dep2 = nirdeploy.load_deployment(out)
    x = (np.random.default_rng(0).random((2, 20, 2, 34, 34)) < 0.05).astype(np.int64)
    assert np.array_equal(dep2.simulate(x), dep.simulate(x))
    assert dep2.report.to_dict() == dep.report.to_dict()
    # a damaged folder is an input error, not a traceback
    meta = json.loads((out / "speck_meta.json").read_text())
    meta["network"]["layers"][0]["stride"] = "x"
    (out / "speck_meta.json").write_text(json.dumps(meta))
    r = _cli("simulate", out, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy") if np.save(tmp_path / "x.npy", x) is None else None
    assert r.returncode == 2 and "stride" in r.stderr


def test_hardware_path_without_samna_names_what_to_install(tmp_path, monkeypatch):
    from nirdeploy_targets.speck import hardware

    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0)
    dep.save(tmp_path / "o")
    if hardware.samna_status() == "missing":
        with pytest.raises(MissingDependencyError, match="samna.*real samna"):
            hardware.samna_config(tmp_path / "o")
    stub = tmp_path / "site" / "samna"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("PYPI_SAMNA = True\nraise RuntimeError('the stub must never be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert hardware.samna_status() == "stub"
    with pytest.raises(MissingDependencyError, match="installer stub"):
        hardware.samna_config(tmp_path / "o")
    assert "samna" not in sys.modules


def test_unknown_option_values_are_usage_errors():
    with pytest.raises(UsageError, match="slow_clock_ticks_per_step"):
        nirdeploy.check(CORPUS / "cnn_sinabs.nir", target="speck", dt=1.0, target_options={"slow_clock_ticks_per_step": -1})
    with pytest.raises(UsageError, match="unknown option"):
        nirdeploy.check(CORPUS / "cnn_sinabs.nir", target="xylo", dt=1.0, target_options={"lower_bound": "none"})


# -- the fast simulators against plain-Python oracles of the same semantics (tests/speck_naive.py) ---
@pytest.mark.parametrize("seed", range(16))
def test_event_and_binned_equal_the_plain_python_oracles(seed):
    """Random integer networks (weights past the threshold, signed weights, biases on slow-clock
    ticks, lower bounds, merges, pooling that drops addresses) on 5- and 6-bit state formats that
    saturate or wrap: every option combination of the event-driven simulator, and both spike
    functions of the time-binned one, equal one-event-at-a-time Python (record=True, which steps
    the event mode bin by bin, is compared in the next test)."""
    from nirdeploy.backend.intformat import IntFormat

    from speck_naive import naive_binned, naive_events, random_network

    rng = np.random.default_rng(seed)
    net = random_network(rng)
    x = rng.integers(0, 3, (2, 7) + net.input_shape) * (rng.random((2, 7) + net.input_shape) < 0.4)
    fmt = IntFormat(int(rng.choice([5, 6, 16])))
    spikes = 0
    combos = [(o, t, k) for o in ("saturate", "wrap") for t in (">=", ">") for k in (0, 1, 2)]
    for overflow, test, ticks in combos[(seed % 3) * 4:(seed % 3) * 4 + 4]:  # every combination on 5 or 6 networks
        kw = dict(state_format=fmt, spike_test=test, state_overflow=overflow, ticks_per_step=ticks)
        want = naive_events(net, x, **kw)
        assert simulate_events(net, x, **kw).output.tolist() == want.tolist(), (overflow, test, ticks)
        spikes += int(want.sum())
    for kind in ("multi", "single"):
        assert simulate_binned(net, x, spikes=kind).output.tolist() == naive_binned(net, x, spikes=kind).tolist(), kind
    assert spikes > 0


def test_recorded_states_equal_the_oracle_state_after_every_bin():
    """record=True: the membrane state and spikes after each bin are exact (the event mode then
    steps bin by bin)."""
    from speck_naive import naive_events, random_network

    rng = np.random.default_rng(7)
    for _ in range(3):
        net = random_network(rng)
        x = rng.integers(0, 3, (2, 6) + net.input_shape)
        res = simulate_events(net, x, state_format=STATE, record=True, ticks_per_step=1)
        out, v = naive_events(net, x, state_format=STATE, ticks_per_step=1, states=True)
        assert res.output.tolist() == out.tolist()
        for l in net.layers:
            assert res.states[l.name]["v"].tolist() == v[l.name].tolist(), l.name
        last = net.layers[-1].name
        assert res.states[last]["spikes"].sum() == res.output.sum()


# -- calibration on sample input (nirdeploy.backend.calibration) ---------------------------------------
def _agreement(y, ref):
    from nirdeploy.evaluation.compare import readout_agreement

    return tuple(readout_agreement(np.asarray(y).reshape(y.shape[0], y.shape[1], -1), np.asarray(ref).reshape(ref.shape[0], ref.shape[1], -1),
                                   0, "spikes")["score"])


def test_calibration_is_guarded_recorded_and_saved(tmp_path):
    """cnn_sinabs.nir on an N-MNIST-like sample: the calibrated network's agreement with the float
    reference on the sample, recomputed here, is the search's best score and never below the
    uncalibrated network's; what changed is in the report, and the folder simulates the same."""
    rng = np.random.default_rng(0)
    x = (rng.random((12, 50, 2, 34, 34)) < 0.02).astype(np.int64)
    kw = dict(target="speck:speck2f", dt=1.0, reset="subtract")
    plain = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", **kw)
    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", calibrate=x, **kw)
    cal = dep.report.details["calibration"]
    assert cal["rounds"][0]["move"] == "uncalibrated" and 1 <= cal["simulations"] <= cal["budget_simulations"] == 8
    ref = nirdeploy.simulate_reference(CORPUS / "cnn_sinabs.nir", x, dt=1.0, reset="subtract")
    base, best = _agreement(plain.simulate(x), ref), _agreement(dep.simulate(x), ref)
    assert tuple(cal["initial_score"]) == base and tuple(cal["best_score"]) == best and best >= base
    factors = [n.usage.get("scale_factor", 1.0) for n in dep.report.nodes]
    assert cal["improved"] == (best > base) == any(f != 1.0 for f in factors)
    assert any("calibration" in n for n in dep.report.notes) and dep.report.details["sample_agreement"]["samples"] == 12
    assert dep.fits and dep.report.settings["calibrated"] is True
    dep.save(tmp_path / "o")
    assert np.array_equal(nirdeploy.load_deployment(tmp_path / "o").simulate(x[:3]), dep.simulate(x[:3]))


@pytest.mark.parametrize("seed", range(3))
def test_calibration_is_never_worse_than_uncalibrated_on_the_sample(seed):
    """Random conv networks (with weight outliers, so that resolution and clipping trade off):
    the calibrated compile agrees with the reference on the sample at least as well."""
    rng = np.random.default_rng(100 + seed)
    g = chain_graph([{"k": 3, "c_out": 6, "padding": 1, "pool": 2}, {"k": 3, "c_out": 5, "padding": 1}], (2, 12, 12), linear_out=4,
                    seed=seed)
    for name in ("conv0", "conv1", "fc"):
        w = g.nodes[name].weight
        w.flat[rng.integers(w.size)] *= 12.0  # one outlier per layer
    x = (rng.random((10, 30, 2, 12, 12)) < 0.15).astype(np.int64)
    for mode in ("event", "binned"):
        kw = dict(target="speck:speck2f", dt=1.0, reset="subtract", target_options={"sim_mode": mode})
        plain, dep = nirdeploy.compile(g, **kw), nirdeploy.compile(g, calibrate=x, **kw)
        ref = nirdeploy.simulate_reference(g, x, dt=1.0, reset="subtract")
        assert _agreement(dep.simulate(x), ref) >= _agreement(plain.simulate(x), ref), mode
        assert tuple(dep.report.details["calibration"]["best_score"]) == _agreement(dep.simulate(x), ref)


def test_sample_is_measured_only_and_nothing_is_calibrated_when_it_does_not_fit(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.random((4, 20, 2, 34, 34)) < 0.02).astype(np.int64)
    kw = dict(target="speck:speck2f", dt=1.0, reset="subtract")
    plain = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", **kw)
    meas = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", sample=x, **kw)
    assert "calibration" not in meas.report.details and meas.report.details["sample_agreement"]["samples"] == 4
    assert [l.weight.tolist() for l in meas.artifact.payload.network.layers] == [l.weight.tolist() for l in plain.artifact.payload.network.layers]
    bad = _bad_graph()
    xb = np.zeros((2, 5, 2, 24, 24), np.int64)
    rep = nirdeploy.check(bad, calibrate=xb, **{**kw, "target": "speck:speck2e"})
    assert not rep.fits and rep.details["calibration"]["skipped"] and any("does not fit" in n for n in rep.notes)
    r = _cli("compile", CORPUS / "cnn_sinabs.nir", "--target", "speck:speck2f", "--dt", "1", "--reset", "subtract", "--calibrate",
             (np.save(tmp_path / "x.npy", x), tmp_path / "x.npy")[1], "-o", tmp_path / "out")
    assert r.returncode == 0 and "calibration" in r.stdout and (tmp_path / "out" / "speck_config.json").is_file(), r.stderr
