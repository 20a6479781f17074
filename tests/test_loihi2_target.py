"""Loihi 2 target: the NIR paper's hardware trace, the corpus, fit reports and placement, export
and load, the Lava path, and the NIR reference."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile

import nir
import numpy as np
import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy.cli import main
from nirdeploy.errors import DeploymentFolderError, UsageError
from nirdeploy_targets.loihi2.config import INPUT, Loihi2Network, NeuronLayer, Synapse
from nirdeploy_targets.loihi2.netx import read_netx
from nirdeploy_targets.loihi2.sim import simulate
from nirdeploy_targets.loihi2.target import META_FILE, NETWORK_FILE, NETX_FILE

from conftest import CORPUS, ROOT
from graphs import cuba, ff_graph, write
from loihi2_oracle import lava_python, run_batch

LIF_NIR = CORPUS / "lif_norse.nir"
HW_CSV = np.loadtxt(CORPUS / "lif_lava_loihi_fixed.csv", delimiter=",")  # columns: input spike, v, output spike (Loihi 2)
CPU_CSV = np.loadtxt(CORPUS / "lif_lava_cpu_fixed.csv", delimiter=",")  # the same run in Lava's CPU fixed-point model
X_LIF = HW_CSV[:, 0].astype(np.int64)[None, :, None]  # (batch 1, 1000 steps, 1 input)
HW_SPIKE_ROWS = np.flatnonzero(HW_CSV[:, 2])
BRAILLE = [CORPUS / "braille_noDelay_noBias_subtract.nir", CORPUS / "braille_noDelay_bias_zero.nir"]


@pytest.fixture(scope="module")
def lif_out(tmp_path_factory):
    """The Done-when command: nirdeploy compile lif_norse.nir --target loihi2 --dt 1e-4 -o OUT."""
    out = tmp_path_factory.mktemp("lif") / "OUT"
    r = CliRunner().invoke(main, ["compile", str(LIF_NIR), "--target", "loihi2", "--dt", "1e-4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


# -- first proof: the NIR paper's Loihi 2 hardware trace --------------------------------------------
def test_hardware_spike_times_and_voltage(lif_out):
    """Driven by the CSV's input column, the compiled neuron spikes exactly at the hardware's rows.

    Timing: our step t is Lava's time step t + 1; the Dense synapse of the 1x1 Affine adds one step,
    so the report's latency is 1 and the CSV rows are our output steps directly. Voltage: ours is
    v_NIR * S with S = (vth << 6) / v_threshold (the report's voltage_scale); the CSV's is the
    paper's integer v with S = (25 << 6) / 0.1 = 16000. They agree within 1.3e-3 (NIR units)
    outside spike steps: the paper truncates dv to 163 (int(4095 dt / tau)), we round 4096 dt / tau
    to 164. At spike steps Loihi 2 reads v = 128 where the model holds 0 (lava #282; the next step is
    unaffected)."""
    dep = nirdeploy.load_deployment(lif_out)
    assert dep.artifact.latency_steps == 1
    res = dep.simulate(X_LIF, record=True)
    assert np.array_equal(np.flatnonzero(res.output[0, :, 0]), HW_SPIKE_ROWS)
    assert HW_SPIKE_ROWS.tolist() == [461, 511, 711, 761]
    usage = {n.node: n.usage for n in dep.report.nodes}
    (name,) = usage
    S = float(usage[name]["voltage_scale"])
    assert S == pytest.approx(usage[name]["vth"] * 64 / 0.1)
    v = res.states[name]["v"][0, :, 0]
    quiet = np.ones(len(v), bool)
    quiet[HW_SPIKE_ROWS] = False
    err = np.abs(v / S - HW_CSV[:, 1] / 16000.0)
    assert err[quiet].max() < 1.3e-3
    assert np.all(v[HW_SPIKE_ROWS] == 0) and np.all(HW_CSV[HW_SPIKE_ROWS, 1] == 128)


def test_paper_mode_reproduces_the_hardware_trace_bit_for_bit():
    """With the NIR paper's constants (du 4095, dv 163, vth 25, weight 10) every voltage of the
    Loihi 2 CSV is reproduced exactly; modelling the hardware's spike-step read (128) makes all
    1000 rows equal, and the CPU CSV (0 at spike steps) equals our model as it is."""
    dep = nirdeploy.compile(LIF_NIR, target="loihi2", dt=1e-4, target_options={"loihi_mode": "paper"})
    L = dep.artifact.payload.network.layers[0]
    assert (L.du, L.dv, L.vth, int(L.synapses[0].weight[0, 0]), L.synapses[0].weight_exp) == (4095, 163, 25, 10, 0)
    cpu = simulate(dep.artifact.payload.network, X_LIF, record=True).states[L.name]
    hw = simulate(dep.artifact.payload.network, X_LIF, record=True, spike_voltage=128).states[L.name]
    assert np.array_equal(hw["v"][0, :, 0], HW_CSV[:, 1].astype(np.int64))
    assert np.array_equal(cpu["v"][0, :, 0], CPU_CSV[:, 1].astype(np.int64))
    assert np.array_equal(cpu["s"][0, :, 0], HW_CSV[:, 2].astype(np.int64))


def _paper_converter_net(dep) -> Loihi2Network:
    """The structure the NIR paper's converter builds: Affine -> Dense (weight int(256 W) = 256,
    clipped to 255), whose integer output feeds the LIF's own 1x1 Dense as a binary spike. A relay
    layer that spikes on any input stands in for the binary cast (same timing: no extra step)."""
    L = dep.artifact.payload.network.layers[0]
    relay = NeuronLayer("relay", (1,), 4095, 4095, 0, [0], [0], [Synapse(INPUT, "dense", [[255]], 0, 8, "excitatory")])
    lif = NeuronLayer("lif", (1,), L.du, L.dv, L.vth, [0], [0], [Synapse(0, "dense", [[10]], 0, 8, "excitatory")])
    return Loihi2Network((1,), [relay, lif], 1)


@pytest.fixture(scope="module")
def lava_runs(lif_out):
    """Lava 0.10.0 runs: our compiled lif_norse, the paper converter's two-Dense structure, and a
    compiled recurrent Braille network on one input sample (the Via-Lava path, lava.build)."""
    lava_python()
    paper = nirdeploy.compile(LIF_NIR, target="loihi2", dt=1e-4, target_options={"loihi_mode": "paper"})
    braille = nirdeploy.compile(BRAILLE[0], target="loihi2", dt=1e-4)
    xb = np.load(ROOT / "examples" / "braille_input.npy")[0]
    jobs = [(nirdeploy.load_deployment(lif_out).artifact.payload.network, X_LIF[0]), (_paper_converter_net(paper), X_LIF[0]),
            (braille.artifact.payload.network, xb)]
    return jobs, run_batch(jobs)


def test_lava_runs_our_compiled_network_at_the_hardware_rows(lava_runs):
    jobs, res = lava_runs
    (name,) = res[0]
    ours = simulate(jobs[0][0], X_LIF, record=True).states[name]
    for var in ("s", "u", "v"):
        assert np.array_equal(res[0][name][var], ours[var][0])
    assert np.array_equal(np.flatnonzero(res[0][name]["s"][:, 0]), HW_SPIKE_ROWS)


def test_paper_converter_is_one_step_late_in_lava_0_10(lava_runs):
    """Explains loihi2.md section 11: the NIR paper's converter run on Lava 0.10.0 spikes at rows
    462/512/712/762, one step after the stored CSVs. Its LIF has its own 1x1 Dense behind the
    Affine's Dense, and every Dense delays by one step in 0.10.0; the CSVs were recorded with a
    Lava whose chain was one step shorter. nirdeploy lowers Affine -> LIF to ONE Dense, so its
    output rows are the CSV's (test above), in our simulator and in Lava 0.10.0 alike."""
    jobs, res = lava_runs
    lava_s = res[1]["lif"]["s"][:, 0]
    ours = simulate(jobs[1][0], X_LIF, record=True).states["lif"]["s"][0, :, 0]
    assert np.array_equal(lava_s, ours)
    assert np.flatnonzero(lava_s).tolist() == (HW_SPIKE_ROWS + 1).tolist()
    assert np.array_equal(res[1]["lif"]["v"][1:, 0], CPU_CSV[:-1, 1].astype(np.int64))


def test_via_lava_recurrent_braille_equals_our_simulator(lava_runs):
    jobs, res = lava_runs
    net, x = jobs[2]
    ours = simulate(net, x[None], record=True).states
    assert len(res[2]) == 2
    for name, r in res[2].items():
        for var in ("s", "u", "v"):
            assert np.array_equal(r[var], ours[name][var][0]), (name, var)
    assert sum(int(r["s"].sum()) for r in res[2].values()) > 0


def test_lava_module_runs_a_compiled_folder(lif_out, tmp_path):
    """``python -m nirdeploy_targets.loihi2.lava run OUT X.npy Y.npz`` inside the Lava environment
    reads the folder through nirdeploy's checked reads and matches our simulator."""
    py = lava_python()
    np.save(tmp_path / "x.npy", X_LIF)
    r = subprocess.run([py, "-m", "nirdeploy_targets.loihi2.lava", "run", str(lif_out), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
                       capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(tmp_path / "y.npz") as z:
        (skey,) = [k for k in z.files if k.endswith(".s")]
        assert np.array_equal(np.flatnonzero(z[skey][:, 0]), HW_SPIKE_ROWS)
    # Y.npz is a file output like any other: an existing file is kept unless --force, and even
    # then a link or an input is never replaced
    y = tmp_path / "y.npz"
    mine = b"my earlier result"
    y.write_bytes(mine)
    cmd = [py, "-m", "nirdeploy_targets.loihi2.lava", "run", str(lif_out), str(tmp_path / "x.npy")]
    r = subprocess.run(cmd + [str(y)], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert r.returncode == 2 and f"{y} already exists; --force replaces it" in r.stderr, r.stderr[-2000:]
    assert y.read_bytes() == mine
    os.symlink(y, tmp_path / "link.npz")
    r = subprocess.run(cmd + [str(tmp_path / "link.npz"), "--force"], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert r.returncode == 2 and "symbolic link" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(cmd + [str(tmp_path / "x.npy"), "--force"], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert r.returncode == 2 and "input" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(cmd + [str(y), "--force"], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(y) as z:
        assert any(k.endswith(".s") for k in z.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "x.npy", "y.npz"]  # no temporary left


# -- the corpus ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", BRAILLE, ids=lambda p: p.stem)
def test_braille_compiles_with_a_fit_report(path, tmp_path):
    out = tmp_path / "OUT"
    r = CliRunner().invoke(main, ["compile", str(path), "--target", "loihi2", "--dt", "1e-4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "Resources" in r.output and "estimate" in r.output and "placement: 2 core(s) on 1 chip(s)" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["fits"] and rep["details"]["latency_steps"] == 2
    conf = {x["name"]: x.get("confidence") for x in rep["resources"]}
    assert conf["neurons per core (max)"] == "estimate" and conf["synapse memory per core (max)"] == "estimate"
    dep = nirdeploy.load_deployment(out)
    x = np.load(ROOT / "examples" / "braille_input.npy")
    y = dep.simulate(x)
    assert y.shape == (4, 256, 7) and y.sum() > 0


def test_cnn_compiles_with_conv_synapses_and_placement(tmp_path):
    rep = nirdeploy.check(CORPUS / "cnn_sinabs.nir", target="loihi2")  # dt 1 inferred (Sinabs convention), with a notice
    assert rep.fits, rep.render()
    part = rep.details["partition"]
    assert part["chips"] == 1 and part["cores"] == sum(len(x["cores"]) for x in part["layers"]) > 5
    for lay in part["layers"]:
        for core in lay["cores"]:
            assert core["neurons"] <= 1024 and core["synapse_bits"] <= 1048576
            assert core["input_axons"] <= 4096 and core["output_axons"] <= 4096
    kinds = [s.kind for L in nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="loihi2").artifact.payload.network.layers
             for s in L.synapses]
    assert kinds == ["conv", "conv", "conv", "dense", "dense"]  # SumPool folded into the next conv / the dense matrix
    assert "placement:" in rep.render()
    json.loads(rep.to_json())  # RFC JSON: an IF layer's infinite time constant is null, not inf
    assert {n.node: n.usage for n in rep.nodes}["1"]["tau_mem_effective_s"] is None


def test_cnn_chip_simulation_follows_the_reference():
    """Conv, SumPool-as-conv and flatten lowering: every layer's spikes track the float graph's
    (shifted by that layer's latency); the first conv layer agrees on > 99 % of its spikes."""
    from nirdeploy.sim.reference import simulate_reference

    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="loihi2", dt=1.0)
    x = (np.random.default_rng(0).random((2, 30, 2, 34, 34)) < 0.05).astype(np.int64)
    chip = dep.simulate(x, record=True).states
    ref = simulate_reference(nirdeploy.load_graph(CORPUS / "cnn_sinabs.nir"), x, 1.0, record=True).states
    assert dep.artifact.latency_steps == 5
    for lat, name in enumerate(["1", "3", "6", "10", "12"], start=1):
        c = chip[name]["s"].reshape(2, 30, -1)[:, lat:]
        r = ref[name]["spikes"].reshape(2, 30, -1)[:, : 30 - lat]
        assert r.sum() > 0
        assert abs(int(c.sum()) - int(r.sum())) <= 0.1 * r.sum() + 3, name
        if name == "1":
            assert (c == r).mean() > 0.99


# -- placement: cores, chips, --max-chips -------------------------------------------------------------
def _wide_graph(n_out: int, n_in: int = 8):
    rng = np.random.default_rng(0)
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n_in])}),
                               "fc": nir.Linear(weight=rng.normal(0, 1, (n_out, n_in))), "lif": cuba(n_out),
                               "output": nir.Output(output_type={"output": np.array([n_out])})},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


def test_more_than_one_chip_is_counted_not_rejected():
    g = _wide_graph(130 * 1024)  # 130 cores at 1024 neurons per core: two chips of 120
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    assert rep.fits
    assert rep.details["partition"]["cores"] == 130 and rep.details["partition"]["chips"] == 2
    assert any(v.rule == "multi_chip" and v.severity == "warning" for v in rep.violations)
    rep1 = nirdeploy.check(g, target="loihi2", dt=1e-4, target_options={"max_chips": 1})
    assert not rep1.fits
    (v,) = [v for v in rep1.violations if v.rule == "max_chips"]
    assert (v.limit, v.actual) == (1, 2)
    assert nirdeploy.check(g, target="loihi2", dt=1e-4, target_options={"max_chips": 2}).fits


def test_max_chips_on_the_command_line(tmp_path):
    p = write(_wide_graph(130 * 1024), tmp_path / "wide.nir")
    r = CliRunner().invoke(main, ["check", str(p), "-t", "loihi2", "--dt", "1e-4", "--max-chips", "1"])
    assert r.exit_code == 1 and "max_chips" in r.output
    r = CliRunner().invoke(main, ["check", str(p), "-t", "loihi2", "--dt", "1e-4", "--max-chips", "0"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["check", str(p), "-t", "loihi2", "--dt", "1e-4", "-T", "nonsense=1"])
    assert r.exit_code == 2 and "nonsense" in r.output


def test_synapse_memory_splits_a_layer_across_cores():
    """A 4096-input Dense layer of 64 neurons: 4096 * (8 + 6) bits per neuron, so at most 18
    neurons fit the 1 Mbit (estimate) synapse memory of one core: four cores, not one."""
    g = _wide_graph(64, n_in=4096)
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    (lay,) = rep.details["partition"]["layers"]
    assert lay["neurons_per_core"] == 1048576 // (4096 * 14) == 18
    assert len(lay["cores"]) == 4


# -- discretization and quantization ------------------------------------------------------------------
def test_decays_thresholds_and_effective_parameters():
    g = ff_graph(n_in=4, n_hid=6, n_out=3, seed=3)  # CubaLIF tau_syn 0.2 ms, tau_mem 1 ms at dt 0.1 ms
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4)
    L1 = dep.artifact.payload.network.layers[0]
    assert L1.du == round(4096 * 0.5) - 1 and L1.dv == round(4096 * 0.1)
    u = {n.node: n.usage for n in dep.report.nodes}["lif1"]
    assert u["tau_mem_effective_s"] == pytest.approx(1e-4 / (410 / 4096))
    assert u["tau_mem_max_rel_error"] < 1e-3
    exact = nirdeploy.compile(g, target="loihi2", dt=1e-4, scheme="exact").artifact.payload.network.layers[0]
    assert exact.dv == round(4096 * (1 - np.exp(-0.1)))
    for s in L1.synapses:
        assert s.sign_mode in ("mixed", "excitatory", "inhibitory")  # always explicit (loihi2.md pitfall 3)
        if s.sign_mode == "mixed":
            assert np.all(s.weight % 2 == 0)  # mixed matrices keep even integers only


def test_chip_simulation_tracks_the_reference():
    g = ff_graph(n_in=6, n_hid=20, n_out=5, seed=1, recurrent=True, scale=0.6)
    x = np.random.default_rng(2).binomial(1, 0.3, (4, 300, 6))
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4)
    y = dep.simulate(x)
    ref = nirdeploy.simulate_reference(g, x, dt=1e-4)
    lat = dep.artifact.latency_steps
    assert lat == 2
    cmp = nirdeploy.compare_outputs(y, ref, lat)
    assert cmp["count_correlation"] > 0.9, cmp


def _learned_taus(recurrent=True, seed=1):
    g = ff_graph(n_in=6, n_hid=20, n_out=5, seed=seed, recurrent=recurrent, scale=0.6)
    rng = np.random.default_rng(seed)
    g.nodes["lif1"].tau_mem = rng.choice([1e-3, 1.5e-3, 3e-3], 20)  # snnTorch learnable beta: one per neuron
    g.nodes["lif1"].r = g.nodes["lif1"].tau_mem / 1e-4
    return g


def test_layers_with_several_time_constants_are_split_and_reported(tmp_path):
    """A layer whose neurons discretize to different (du, dv) runs as one LIF process per pair: the
    report says how many (rule split_by_time_constant, usage decay_groups), the outputs and recorded
    states come back in the layer's own neuron order under its own name, the compiled folder
    round-trips, and the chip still tracks the float network."""
    g = _learned_taus()
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4, out=out)
    assert dep.fits
    (v,) = [v for v in dep.report.violations if v.rule == "split_by_time_constant"]
    assert v.node == "lif1" and v.actual == 3 and "3 LIF processes" in v.message
    assert {n.node: n.usage for n in dep.report.nodes}["lif1"]["decay_groups"] == 3
    net = dep.artifact.payload.network
    groups = [L for L in net.layers if L.origin == "lif1"]
    assert len(groups) == 3 and len({(L.du, L.dv) for L in groups}) == 3
    assert sorted(np.concatenate([L.neurons for L in groups]).tolist()) == list(range(20))
    x = np.random.default_rng(2).binomial(1, 0.3, (3, 300, 6))
    res = dep.simulate(x, record=True)
    assert set(res.states) == {"lif1", "lif2"} and res.states["lif1"]["v"].shape == (3, 300, 20)
    for L in groups:  # merged states: each group's neurons at their own positions
        own = simulate(net, x, record=True).states[L.name]
        assert np.array_equal(res.states["lif1"]["u"][:, :, L.neurons], own["u"])
    loaded = nirdeploy.load_deployment(out)
    assert np.array_equal(loaded.simulate(x), res.output)
    ref = nirdeploy.simulate_reference(g, x, dt=1e-4)
    assert nirdeploy.compare_outputs(res.output, ref, dep.artifact.latency_steps)["count_correlation"] > 0.9
    assert "one iDecay and vDecay" in "; ".join(__import__("nirdeploy_targets.loihi2.netx", fromlist=["x"]).netx_problems(net))


def test_snntorch_learnable_beta_compiles_as_split_layers():
    """The case users meet: snnTorch's Leaky with a per-neuron learnable beta, exported through
    nirdeploy's snnTorch frontend, lowers to one LIF process per distinct discrete decay."""
    from conftest import require_oracle

    snn = require_oracle("snntorch")
    torch = require_oracle("torch")
    from nirdeploy.frontends import from_torch

    torch.manual_seed(0)
    beta = torch.tensor(np.random.default_rng(0).uniform(0.85, 0.95, 16), dtype=torch.float32)
    zero = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=beta, learn_beta=True, **zero), torch.nn.Linear(16, 3),
                              snn.Leaky(beta=0.8, output=True, **zero))
    with torch.no_grad():
        net[0].weight *= 3
        net[2].weight *= 3
    x = (np.random.default_rng(1).random((3, 200, 4)) < 0.3).astype(np.float32)
    g = from_torch(net, x, library="snntorch")
    dep = nirdeploy.compile(g, target="loihi2")  # dt read back from the export
    (v,) = [v for v in dep.report.violations if v.rule == "split_by_time_constant"]
    groups = len({(L.du, L.dv) for L in dep.artifact.payload.network.layers if L.origin == v.node})
    assert dep.fits and v.actual == groups > 10
    y = dep.simulate(x.astype(np.int64))
    cmp = nirdeploy.compare_outputs(y, nirdeploy.simulate_reference(g, x), dep.artifact.latency_steps)
    assert cmp["count_correlation"] > 0.99 and y.sum() > 20, cmp


def test_split_output_layer_keeps_the_neuron_order():
    g = ff_graph(n_in=6, n_hid=10, n_out=6, seed=4, scale=0.8)
    g.nodes["lif2"].tau_syn = np.array([2e-4, 4e-4, 2e-4, 8e-4, 4e-4, 2e-4])
    g.nodes["lif2"].w_in = g.nodes["lif2"].tau_syn / 1e-4
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4)
    net = dep.artifact.payload.network
    assert len(net.output_layers) == 3
    x = np.random.default_rng(1).binomial(1, 0.4, (2, 200, 6))
    y = dep.simulate(x)
    assert y.shape == (2, 200, 6)
    st = simulate(net, x, record=True).states
    for k in net.output_layers:
        L = net.layers[k]
        assert np.array_equal(y[:, :, L.neurons], st[L.name]["s"])
    ref = nirdeploy.simulate_reference(g, x, dt=1e-4)
    assert nirdeploy.compare_outputs(y, ref, dep.artifact.latency_steps)["count_correlation"] > 0.9


def test_split_warns_where_group_sums_are_floored_apart():
    """An outgoing synapse with a negative weight_exp is summed per group, each sum floored: the
    report says so (warning, with the bound)."""
    g = _learned_taus(recurrent=False, seed=3)
    g.nodes["fc2"].weight = g.nodes["fc2"].weight * 0.002  # small weights: a negative exponent
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    (v,) = [v for v in rep.violations if v.rule == "split_by_time_constant"]
    assert v.severity == "warning" and "floors each group's sum separately" in v.message and "up to 2 activation units" in v.message


def test_conv_layer_with_several_time_constants_is_refused():
    from nirdeploy_targets.loihi2.lower import split_by_decay

    g = nirdeploy.load_graph(CORPUS / "cnn_sinabs.nir")
    node = g.nodes["1"]
    n = int(np.prod(node.output_shape))
    node.params["tau"] = np.linspace(1.0, 3.0, n).reshape(node.output_shape)  # an IF made leaky, per neuron
    node.type = "LIF"
    node.params.setdefault("v_leak", np.zeros(node.output_shape))
    rep = nirdeploy.check(g, target="loihi2", dt=1.0)
    assert not rep.fits
    (v,) = [v for v in rep.violations if v.rule == "non_uniform_decay"]
    assert "Conv synapses" in v.message and v.actual > 1
    net = Loihi2Network((2, 4, 4), [NeuronLayer("c", (1, 4, 4), 0, 0, 10, np.zeros(16, int), np.zeros(16, int),
                                                [Synapse(INPUT, "conv", np.ones((1, 2, 1, 1), int))])], 0)
    with pytest.raises(ValueError, match="Conv"):
        split_by_decay(net, {0: (np.arange(16) % 2, np.zeros(16, int))})


def test_v_reset_and_subtract_reset_are_reported():
    g = ff_graph(seed=0)
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4, reset="subtract")
    assert any(v.rule == "reset_semantics" for v in rep.violations)
    g.nodes["lif1"].v_reset = np.full(8, 0.25)
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    assert any(v.rule == "v_reset_shifted" for v in rep.violations)


def test_unsupported_nodes_are_named():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "t": nir.Threshold(threshold=np.full(3, 0.5)),
                            "lif": cuba(3), "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "t"), ("t", "lif"), ("lif", "output")], type_check=False)
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    assert not rep.fits and [v.node for v in rep.violations if v.rule == "unsupported_node"] == ["t"]


@pytest.mark.parametrize("where", ["pre", "post", "middle"])
def test_nir_delays_become_synaptic_delays(where):
    """A NIR Delay of whole steps becomes Lava DelayDense delays: one delay per synapse when it sits
    on the sources or destinations of a Linear, one DelayDense per delay when it sits between two
    Linears; the chip tracks the float network at the usual latency."""
    from graphs import delay_graph

    g = delay_graph(where, recurrent=True)
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4)
    assert dep.fits, dep.report.render()
    lif1 = dep.artifact.payload.network.layers[0]
    ff = [s for s in lif1.synapses if s.src == INPUT]
    delays = sorted({int(d) for s in ff for d in np.unique(s.delay if s.delay is not None else [0])})
    assert delays == [0, 1, 2, 3]
    assert len(ff) == (4 if where == "middle" else 1)
    if where == "pre":  # per source: every row carries the delays of the inputs
        assert np.array_equal(ff[0].delay[ff[0].weight != 0], np.broadcast_to([0, 1, 2, 3, 1, 0], ff[0].weight.shape)[ff[0].weight != 0])
    (rec,) = [s for s in lif1.synapses if s.src == 0]
    assert np.all(rec.delay == 3)
    x = np.random.default_rng(1).binomial(1, 0.3, (4, 300, 6))
    cmp = nirdeploy.compare_outputs(dep.simulate(x), nirdeploy.simulate_reference(g, x, dt=1e-4), dep.artifact.latency_steps)
    assert dep.artifact.latency_steps == 2 and cmp["count_correlation"] > 0.99, cmp


def test_delays_that_loihi_cannot_express_are_errors():
    from graphs import delay_graph

    rep = nirdeploy.check(delay_graph("pre", steps=(0, 0.5, 1, 2, 1, 0)), target="loihi2", dt=1e-4)
    (v,) = [v for v in rep.violations if v.rule == "delay_not_whole_steps"]
    assert not rep.fits and "0.5 steps" in v.message and "whole time steps" in v.message
    rep = nirdeploy.check(delay_graph("pre", steps=(0, 70, 1, 2, 1, 0)), target="loihi2", dt=1e-4)
    (v,) = [v for v in rep.violations if v.rule == "synaptic_delay_range"]
    assert not rep.fits and (v.limit, v.actual) == (63, 70)
    assert nirdeploy.check(delay_graph("pre", steps=(0, 63, 1, 2, 1, 0)), target="loihi2", dt=1e-4).fits
    g = delay_graph("pre")
    g.nodes["d_out"] = nir.Delay(delay=np.full(4, 2e-4))
    g.edges = [e for e in g.edges if e != ("lif2", "output")] + [("lif2", "d_out"), ("d_out", "output")]
    rep = nirdeploy.check(g, target="loihi2", dt=1e-4)
    (v,) = [v for v in rep.violations if v.rule == "output_must_be_one_neuron_layer"]
    assert "no synapse follows the last layer" in v.hint


def test_delays_cost_synapse_memory_and_survive_the_compiled_folder(tmp_path):
    from graphs import delay_graph

    plain = nirdeploy.check(delay_graph("pre", steps=(0,) * 6), target="loihi2", dt=1e-4).details["synapse_bits_total"]
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(delay_graph("pre"), target="loihi2", dt=1e-4, out=out)
    assert dep.report.details["synapse_bits_total"] == plain + 10 * 6 * 6  # 6 delay bits on each of lif1's 10 x 6 synapses
    x = np.random.default_rng(0).binomial(1, 0.3, (2, 100, 6))
    assert np.array_equal(nirdeploy.load_deployment(out).simulate(x), dep.simulate(x))


def test_netx_export_carries_delays(tmp_path):
    from graphs import delay_graph

    out = tmp_path / "OUT"
    dep = nirdeploy.compile(delay_graph("post"), target="loihi2", dt=1e-4, target_options={"loihi_mode": "netx"}, out=out)
    back = read_netx(out / NETX_FILE)
    assert back.layers[0].synapses[0].max_delay == 3
    net = dep.artifact.payload.network
    x = np.random.default_rng(0).binomial(1, 0.3, (2, 100, 6))
    a, b = simulate(net, x, record=True), simulate(back, x, record=True)
    for L, M in zip(net.layers, back.layers):
        for var in ("s", "u", "v"):
            assert np.array_equal(a.states[L.name][var], b.states[M.name][var])
    rec = nirdeploy.compile(delay_graph("post", recurrent=True), target="loihi2", dt=1e-4, target_options={"loihi_mode": "netx"})
    assert any("RecurrentDense" in n for n in rec.report.notes)


# -- export, netx, load ---------------------------------------------------------------------------------
def test_netx_export_round_trips(tmp_path):
    g = ff_graph(n_in=20, n_hid=12, n_out=4, seed=5)
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-3, target_options={"loihi_mode": "netx"}, out=out)
    assert (out / NETX_FILE).is_file()
    back = read_netx(out / NETX_FILE)
    x = np.random.default_rng(0).binomial(1, 0.3, (3, 80, 20))
    ours = dep.simulate(x)
    assert ours.sum() > 0
    assert np.array_equal(simulate(back, x).output, ours)
    assert json.loads((out / META_FILE).read_text())["netx"] is True


def _netx_types(path) -> list[str]:
    import h5py

    with h5py.File(path, "r") as f:
        return [f["layer"][k]["type"][()].decode() for k in sorted(f["layer"].keys(), key=int)]


@pytest.mark.parametrize("case", ["recurrent", "cnn", "braille_bias"])
def test_netx_export_covers_recurrent_and_conv_layers(case, tmp_path):
    """netx's dense_rec (a recurrent Dense of the layer's own spikes) and conv layers (with the
    flatten before the first dense layer) are written, and our reader, which loads the weights as
    netx does (optimize_weight_bits), gives back a network with exactly the same states."""
    g, dt, want = {
        "recurrent": (ff_graph(n_in=20, n_hid=12, n_out=4, seed=5, recurrent=True), 1e-3, ["input", "dense_rec", "dense"]),
        "cnn": (CORPUS / "cnn_sinabs.nir", 1.0, ["input", "conv", "conv", "conv", "flatten", "dense", "dense"]),
        "braille_bias": (BRAILLE[1], 1e-4, ["input", "dense_rec", "dense"]),
    }[case]
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(g, target="loihi2", dt=dt, target_options={"loihi_mode": "netx"}, out=out)
    assert _netx_types(out / NETX_FILE) == want
    net = dep.artifact.payload.network
    back = read_netx(out / NETX_FILE)
    assert back.input_shape == net.input_shape and [L.shape for L in back.layers] == [L.shape for L in net.layers]
    x = (np.random.default_rng(0).random((2, 60) + net.input_shape) < 0.2).astype(np.int64)
    a, b = simulate(net, x, record=True), simulate(back, x, record=True)
    assert np.array_equal(a.output, b.output)
    for L, M in zip(net.layers, back.layers):
        for var in ("s", "u", "v"):
            assert np.array_equal(a.states[L.name][var], b.states[M.name][var]), (L.name, var)
    assert sum(int(st["s"].sum()) for st in a.states.values()) > 0


def test_netx_weight_scaling_follows_optimize_weight_bits():
    """Hand-derived from lava-dl 0.6.0 netx/utils.py optimize_weight_bits: scale = 255/max
    (excitatory), -256/min (inhibitory), min(127/max, -128/min) (mixed, +1 bit); num_weight_bits
    = 8 - shift - (trailing zero bits - signed)."""
    from nirdeploy_targets.loihi2.netx import netx_dense_synapses

    def run(w):
        (m,), nb, exp = netx_dense_synapses([np.array(w)])
        return m.tolist(), nb, exp

    assert run([[254, -256]]) == ([[254, -256]], 8, 0)
    assert run([[64]]) == ([[128]], 1, -1)
    assert run([[-100, -4]]) == ([[-200, -8]], 5, -1)
    assert run([[3, -5]]) == ([[96, -160]], 4, -5)  # odd mixed weights survive: the shift makes room for the dropped bit
    (w, wr), nb, exp = netx_dense_synapses([np.array([[100, 2]]), np.array([[-3]])])  # dense_rec: one scaling for both
    assert (w.tolist(), wr.tolist(), nb, exp) == ([[200, 4]], [[-6]], 8, -1)
    for bad in ([[0, 0]], [[300, 5]]):
        with pytest.raises(ValueError):
            netx_dense_synapses([np.array(bad)])


def test_netx_refuses_what_it_would_load_differently():
    from nirdeploy_targets.loihi2.netx import NetxUnsupported, netx_problems, write_netx

    def one(w, mode, exp=0, readout="spikes", shape=(2,)):
        n = int(np.prod(shape))
        layer = NeuronLayer("l", shape, 100, 100, 100, np.zeros(n, int), np.zeros(n, int), [Synapse(INPUT, "dense", w, exp, 8, mode)])
        return Loihi2Network((np.shape(w)[1],), [layer], 0, readout)

    assert netx_problems(one([[1, 2], [3, 4]], "excitatory")) == []
    probs = {
        "all-zero": one([[0, 0], [0, 0]], "excitatory"),
        "-256 in an all-negative": one([[-256, 0], [-4, 0]], "mixed"),  # Lava infers inhibitory and clips -256 to -255
        "beyond netx's 8-bit range": one([[200, 1], [3, 4]], "excitatory", exp=1),
        "finer than netx's integer weights": one([[3, 1], [3, 4]], "excitatory", exp=-1),
        "reads a voltage": one([[1, 2], [3, 4]], "excitatory", readout="v"),
    }
    for what, net in probs.items():
        msg = "; ".join(netx_problems(net))
        assert what in msg, (what, msg)
        with pytest.raises(NetxUnsupported):
            write_netx(net, "/nonexistent/never-written.net")
    conv_after_dense = one([[1, 2], [3, 4]], "excitatory", shape=(1, 1, 2))
    conv_after_dense.layers.append(NeuronLayer("c", (1, 1, 2), 100, 100, 100, np.zeros(2, int), np.zeros(2, int),
                                               [Synapse(0, "conv", np.ones((1, 1, 1, 1), int))]))
    conv_after_dense.output = 1
    assert "cannot convolve the output of a dense layer" in "; ".join(netx_problems(conv_after_dense))


def test_default_lowering_says_why_there_is_no_netx_file(lif_out):
    rep = json.loads((lif_out / "report.json").read_text())
    assert not (lif_out / NETX_FILE).exists()
    assert any("no network.net" in n and "loihi_mode=netx" in n for n in rep["notes"])


def test_load_refuses_damaged_folders(lif_out, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(lif_out, bad)
    meta = json.loads((bad / META_FILE).read_text())
    meta["network"]["layers"][0]["du"] = 5000
    (bad / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(DeploymentFolderError, match="du"):
        nirdeploy.load_deployment(bad)
    shutil.copy(lif_out / META_FILE, bad / META_FILE)
    np.savez(bad / NETWORK_FILE, **{"L0.bias_mant": np.zeros(3), "L0.bias_exp": np.zeros(1), "L0.S0.weight": np.zeros((1, 1))})
    with pytest.raises(DeploymentFolderError):
        nirdeploy.load_deployment(bad)
    (bad / NETWORK_FILE).unlink()
    (bad / NETWORK_FILE).symlink_to("/dev/zero")
    with pytest.raises(DeploymentFolderError, match="symbolic link"):
        nirdeploy.load_deployment(bad)


def test_readout_layer_voltage_is_scaled_back():
    rng = np.random.default_rng(0)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "fc": nir.Linear(weight=rng.normal(0, 1, (4, 3))),
                            "lif": cuba(4), "fc2": nir.Linear(weight=rng.normal(0, 1, (2, 4))),
                            "li": nir.CubaLI(tau_syn=np.full(2, 2e-4), tau_mem=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2),
                                             w_in=np.full(2, 2.0)),
                            "output": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")], type_check=False)
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4)
    x = rng.binomial(1, 0.4, (2, 200, 3))
    y = dep.simulate(x)
    ref = nirdeploy.simulate_reference(g, x, dt=1e-4)
    lat = dep.artifact.latency_steps
    assert np.corrcoef(y[:, lat:].ravel(), ref[:, : 200 - lat].ravel())[0, 1] > 0.99
    with pytest.raises(UsageError):
        nirdeploy.compile(g, target="loihi2", dt=1e-4, target_options={"loihi_mode": "nope"})


# -- the two simulator engines ------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed (pip install nirdeploy[fast])")
@pytest.mark.parametrize("path", [BRAILLE[1], CORPUS / "cnn_sinabs.nir"], ids=["braille_recurrent", "cnn_conv"])
def test_numba_engine_equals_numpy_engine(path):
    """Multi-layer, recurrent and convolutional networks: the layer-by-layer numba engine records
    exactly the numpy engine's states (the numpy engine is the one checked step by step against Lava
    on multi-layer networks above)."""
    dt = 1.0 if path.stem == "cnn_sinabs" else 1e-4
    net = nirdeploy.compile(path, target="loihi2", dt=dt).artifact.payload.network
    rng = np.random.default_rng(3)
    x = (rng.random((3, 40) + net.input_shape) < 0.2).astype(np.int64)
    a = simulate(net, x, record=True, engine="numba")
    b = simulate(net, x, record=True, engine="numpy")
    assert np.array_equal(a.output, b.output)
    for name in a.states:
        for var in ("s", "u", "v"):
            assert np.array_equal(a.states[name][var], b.states[name][var]), (name, var)
    assert sum(int(s["s"].sum()) for s in a.states.values()) > 0


NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed (pip install nirdeploy[fast])")


@NUMBA
def test_numba_weight_tables_are_the_effective_weights():
    """The numba engine's one-pass weight preparation (transposed; int16, or compact int8 halves of
    mixed-sign weights and uint8 magnitudes) equals config.effective_weights for every sign mode,
    inferred or explicit, and 1..8 weight bits, on clipped and out-of-range integers."""
    from nirdeploy_targets.loihi2 import sim_numba as K
    from nirdeploy_targets.loihi2.config import SIGN_MODES, effective_weights, infer_sign_mode

    rng = np.random.default_rng(0)
    for t in range(120):
        w = rng.integers(-700, 700, (int(rng.integers(1, 90)), int(rng.integers(1, 90))))
        w = np.abs(w) if t % 3 == 1 else -np.abs(w) if t % 3 == 2 else w
        nb = int(rng.integers(1, 9))
        assert K.sign_mode(w) == SIGN_MODES[infer_sign_mode(w)]
        for mode in SIGN_MODES:
            e = effective_weights(w, mode, nb)
            out = np.empty(w.shape[::-1], np.int16)
            raw, _ = K.prep_dense(w, SIGN_MODES[mode], nb, out, 1, 0)
            assert np.array_equal(out, e.T) and raw == np.abs(e).sum(axis=1).max()
            f = 2 if mode == "mixed" else -1 if mode == "inhibitory" else 1
            q = np.empty(w.shape[::-1], np.int8 if f == 2 else np.uint8)
            _, top = K.prep_dense(w, SIGN_MODES[mode], nb, q, 1 if f > 0 else -1, 1 if f == 2 else 0)
            assert np.array_equal(q.astype(np.int64) * f, e.T) and top == np.abs(q.astype(np.int64)).max()


def _random_chain(rng, n_in=12, sizes=(40, 30), recurrent=True, du=None) -> Loihi2Network:
    layers = []
    src_n = n_in
    for i, n in enumerate(sizes):
        mode = ("mixed", "excitatory", "inhibitory", None)[int(rng.integers(0, 4))]
        w = rng.integers(-300, 300, (n, src_n))
        w = np.abs(w) if mode == "excitatory" else w
        syns = [Synapse(INPUT if i == 0 else i - 1, "dense", w, int(rng.integers(-3, 4)), int(rng.integers(1, 9)), mode)]
        if i == 0 and n_in > 3:  # a second feed-forward Dense from the input
            syns.append(Synapse(INPUT, "dense", rng.integers(-100, 100, (n, src_n)), int(rng.integers(-2, 2)), 8, "mixed"))
        if recurrent:
            syns.append(Synapse(i, "dense", rng.integers(-150, 150, (n, n)), int(rng.integers(-2, 2)), 8, None))
        d = int(rng.integers(0, 4096)) if du is None else du
        layers.append(NeuronLayer(f"L{i}", (n,), d, int(rng.integers(0, 800)), int(rng.integers(1, 3000)), rng.integers(-300, 300, n),
                                  rng.integers(0, 5, n), syns))
        src_n = n
    return Loihi2Network((n_in,), layers, len(layers) - 1)


@NUMBA
@pytest.mark.parametrize("seed", range(6))
def test_numba_threads_and_wrap_proof_equal_the_numpy_engine(seed, monkeypatch):
    """Random multi-layer networks (second Dense from the input, recurrence, negative exponents,
    every sign mode, batch 1 and 3, record on and off): the numba engine on 1, 2 and 3 threads
    (the thread threshold lowered so these small layers split) equals the numpy engine exactly,
    including networks whose 24-bit u wrap the plan proves impossible and skips."""
    from nirdeploy_targets.loihi2 import sim

    monkeypatch.setattr(sim, "MIN_THREAD_WORK", 0)
    rng = np.random.default_rng(seed)
    net = _random_chain(rng, recurrent=seed % 2 == 0, du=4095 if seed == 1 else None)
    skipped = [not p.wrap for p in sim._numba_plan(net, sim.Constants())[1]]
    for B in (1, 3):
        x = (rng.random((B, 60, 12)) < rng.uniform(0.1, 0.9)).astype(np.int64)
        want = simulate(net, x, record=True, engine="numpy")
        assert want.output.dtype == np.int8
        for th in (1, 2, 3):
            got = simulate(net, x, record=th == 2, engine="numba", threads=th)
            assert got.output.dtype == np.int8 and np.array_equal(got.output, want.output), (B, th)
            for name, st in got.states.items():
                for var in ("s", "u", "v"):
                    assert np.array_equal(st[var], want.states[name][var]), (B, th, name, var)
    if seed == 1:  # du 4095 (u = this step's input): the plan proves the wrap away
        assert all(skipped)


@NUMBA
def test_wrap_is_checked_where_u_can_reach_it():
    """Twelve excitatory 255 x 2**6 activations (12.5 M after the shift by 6) pass 2**23: the
    wrap stays in, and the engines agree on the wrapped (negative) values."""
    from nirdeploy_targets.loihi2 import sim

    layer = NeuronLayer("lif", (3,), 4000, 100, 131071, [0, 0, 0], [0, 0, 0], [Synapse(INPUT, "dense", np.full((3, 12), 255), 6, 8, "excitatory")])
    net = Loihi2Network((12,), [layer], 0)
    assert sim._numba_plan(net, sim.Constants())[1][0].wrap
    x = np.ones((1, 50, 12), np.int64)
    a = simulate(net, x, record=True, engine="numba").states["lif"]["u"]
    b = simulate(net, x, record=True, engine="numpy").states["lif"]["u"]
    assert np.array_equal(a, b) and a.min() < 0


def test_threads_must_be_positive():
    net = nirdeploy.compile(ff_graph(seed=2), target="loihi2", dt=1e-4).artifact.payload.network
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            simulate(net, np.zeros((1, 5, 4)), threads=bad)


def test_feedback_from_a_later_layer_uses_the_numpy_engine():
    net = nirdeploy.compile(ff_graph(seed=2), target="loihi2", dt=1e-4).artifact.payload.network
    net.layers[0].synapses.append(Synapse(1, "dense", np.ones((net.layers[0].n, net.layers[1].n), np.int64), 0, 8, "excitatory"))
    x = np.random.default_rng(0).binomial(1, 0.3, (2, 50, 4))
    with pytest.raises(ValueError, match="fed back from a later layer|numba is not installed"):
        simulate(net, x, engine="numba")
    assert np.array_equal(simulate(net, x).output, simulate(net, x, engine="numpy").output)


def test_hw_config_limits_carry_their_source():
    from nirdeploy.backend.target import get_target

    hw = get_target("loihi2").hwconfig("chip")
    for key in hw.limits:
        src = hw.limit_source(key)
        assert src.confidence != "unspecified" and src.source, key
    for key in ("neurons_per_core", "input_axons_per_core", "output_axons_per_core", "synapse_bits_per_core", "weight_exp_min"):
        assert hw.limit_source(key).confidence == "estimate" and "Loihi 1" in hw.limit_source(key).source or key == "synapse_index_bits"
    assert hw.limits["cores_per_chip"] == 120
    f = hw.formats
    assert (f["u"].bits, f["u"].overflow, f["v"].min, f["v"].max) == (24, "wrap", -(2**23 - 1), 2**23 - 1)
    assert (f["decay"].max, f["threshold"].max, f["bias_mant"].min, f["bias_mant"].max, f["bias_exp"].max) == (4095, 131071, -4096, 4095, 7)
    assert (f["weight_mixed"].min, f["weight_mixed"].max, f["weight"].max, f["weight_exp"].min, f["weight_exp"].max) == (-256, 255, 255, -8, 7)


def test_hardware_path_names_what_is_missing(tmp_path):
    """targets/loihi2/hardware.py, the same role as Xylo's and Speck's: without Lava (this
    Python) both hardware calls raise MissingDependencyError naming the install, never an
    ImportError; the netx file is refused with the compile option that writes it; inside the
    Lava environment the process graph builds and Loihi2HwCfg is refused for want of Intel's
    lava-loihi extension (the public lava-nc has no Nc compiler)."""
    import importlib.util

    from click.testing import CliRunner

    from nirdeploy.cli import main
    from nirdeploy.errors import MissingDependencyError, UsageError
    from nirdeploy_targets.loihi2 import hardware

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(CORPUS / "lif_norse.nir"), "--target", "loihi2", "--dt", "1e-4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with pytest.raises(UsageError, match="loihi_mode=netx"):
        hardware.netx_file(out)
    x = np.zeros((5, 1), dtype=np.int64)
    if importlib.util.find_spec("lava") is None:
        for call in (hardware.process_graph, hardware.run_on_loihi2):
            with pytest.raises(MissingDependencyError, match="lava_env.sh"):
                call(out, x)
    lava_py = lava_python()  # skips, or fails under NIRDEPLOY_REQUIRE_ORACLES=1, without the side environment
    code = ("import sys, numpy as np\n"
            "from nirdeploy_targets.loihi2 import hardware\n"
            "from nirdeploy.errors import MissingDependencyError\n"
            f"g = hardware.process_graph({str(out)!r}, np.zeros((5, 1), dtype=np.int64))\n"
            "assert g['steps'] == 5 and len(g['lifs']) == 1, g\n"
            "try:\n"
            f"    hardware.run_on_loihi2({str(out)!r}, np.zeros((5, 1), dtype=np.int64))\n"
            "except MissingDependencyError as e:\n"
            "    assert 'lava-loihi' in str(e), e\n"
            "    print('refused')\n")
    res = subprocess.run([str(lava_py), "-c", code], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert res.returncode == 0 and "refused" in res.stdout, res.stderr[-2000:]
