"""The reference simulator's chip spiking rule (``spikes_per_step``, ``ChipSemantics``) and its
sparse propagation of spikes.

* hand-derived single-neuron traces of floor(v / threshold) capped at N with subtractive reset;
* against the Xylo integer simulator on *unquantized-equivalent* networks: a random integer
  Xylo configuration and the float NIR graph that means the same thing (tau = dt * 2**dash, so
  the Euler decays are exactly the chip's 1 - 2**-dash; weights = the chip's shifted integer
  weights times the synaptic gain 1 - 2**-dash_syn of Xylo's delivery-then-decay; integer
  thresholds). Only the chip's integer rounding of the decays separates the two, so the spike
  counts per neuron and step must agree almost everywhere, and the multi-spike share must be the
  chip's; the one-spike reference is shown to miss it;
* the sparse path of Affine/Linear gives the dense result.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest

from nirdeploy.errors import UsageError
from nirdeploy.graph.loading import load
from nirdeploy.sim import reference as refmod
from nirdeploy.sim.reference import ChipSemantics, simulate_reference
from nirdeploy_targets.xylo.config import XyloConfig
from nirdeploy_targets.xylo.sim import simulate

from graphs import N, chain, ff_graph, ir_lif
from test_xylo_sim_oracle import _hw

DT = 1e-4


def _one_neuron(thr=1.0):
    # LIF with tau = dt, r = 1: v[t] = 0 * v + x[t] (Euler), a memoryless neuron
    return chain(N("input", "Input", shape=(1,)), ir_lif("lif", 1, tau=np.full(1, DT), v_threshold=np.full(1, thr)),
                 N("output", "Output", shape=(1,)))


def test_spikes_per_step_hand_derived():
    g = _one_neuron(thr=1.0)
    x = np.array([0.5, 1.0, 2.5, 7.9, 100.0, -3.0])[None, :, None]
    out = simulate_reference(g, x, DT, spikes_per_step=4, record=True)
    assert out.reset == "subtract"
    assert out.output[0, :, 0].tolist() == [0, 1, 2, 4, 4, 0]  # floor(v/1) capped at 4; v = 1 fires (>=)
    assert np.allclose(out.states["lif"]["v"][0, :, 0], [0.5, 0.0, 0.5, 3.9, 96.0, -3.0])
    one = simulate_reference(g, x, DT, spikes_per_step=1).output[0, :, 0]
    assert one.tolist() == [0, 1, 1, 1, 1, 0]
    # with memory: tau = 2 dt -> v = v/2 + x; the leftover of the subtraction is carried
    g2 = chain(N("input", "Input", shape=(1,)), ir_lif("lif", 1, tau=np.full(1, 2 * DT), r=np.full(1, 2.0)),
               N("output", "Output", shape=(1,)))
    res = simulate_reference(g2, np.array([[[3.5], [0.0], [1.2]]]), DT, spikes_per_step=31, record=True)
    # v1 = 3.5 -> 3 spikes, 0.5 left; v2 = 0.25 -> 0; v3 = 0.125 + 1.2 = 1.325 -> 1 spike
    assert res.output[0, :, 0].tolist() == [3, 0, 1]
    assert np.allclose(res.states["lif"]["v"][0, :, 0], [0.5, 0.25, 0.325])


def test_spikes_per_step_arguments():
    g = _one_neuron()
    x = np.ones((1, 3, 1))
    with pytest.raises(UsageError, match="reset='zero'"):
        simulate_reference(g, x, DT, reset="zero", spikes_per_step=3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="spikes_per_step"):
            simulate_reference(g, x, DT, spikes_per_step=bad)
    with pytest.raises(UsageError, match="does not have"):
        simulate_reference(g, x, DT, chip=ChipSemantics(spikes_per_step={"nope": 3}))
    # per-node caps take precedence over the global one; input clipping
    r = simulate_reference(g, np.full((1, 2, 1), 40.0), DT, spikes_per_step=31, chip=ChipSemantics(spikes_per_step={"lif": 2}, input_max=15))
    assert r.output[0, :, 0].tolist() == [2, 2]  # 15 (clipped) -> floor(15) = 15 spikes, capped at 2


def _equivalent_pair(seed: int):
    """A random integer Xylo config and the float NIR graph with the same meaning."""
    rng = np.random.default_rng(seed)
    nin, nh, no = 4, int(rng.integers(12, 30)), 3
    dm = rng.integers(2, 6, nh)
    ds = rng.integers(1, 4, nh)
    dmo, dso = rng.integers(2, 6, no), rng.integers(1, 4, no)
    sh = 3
    w_in = np.where(rng.random((nin, nh)) < 0.7, rng.integers(-30, 90, (nin, nh)), 0)
    w_rec = np.where(rng.random((nh, nh)) < 0.2, rng.integers(-20, 30, (nh, nh)), 0)
    np.fill_diagonal(w_rec, 0)
    w_out = np.where(rng.random((nh, no)) < 0.8, rng.integers(-20, 60, (nh, no)), 0)
    th, tho = rng.integers(3000, 6000, nh), rng.integers(3000, 6000, no)
    cfg = XyloConfig(weights_in=w_in, weights_rec=w_rec, weights_out=w_out, dash_mem=dm, dash_syn=ds, dash_syn_2=ds, dash_mem_out=dmo,
                     dash_syn_out=dso, threshold=th, threshold_out=tho, bias=np.zeros(nh), bias_out=np.zeros(no),
                     weight_shift_in=sh, weight_shift_rec=sh, weight_shift_out=sh)
    a_h, a_o = 1 - 2.0 ** -ds, 1 - 2.0 ** -dso  # Xylo delivers, then decays: an event arrives scaled by a

    def cuba_layer(dmem, dsyn, thr):
        tm, tsy = DT * 2.0**dmem, DT * 2.0**dsyn  # Euler: 1 - dt/tau = 1 - 2**-dash exactly
        return nir.CubaLIF(tau_syn=tsy, tau_mem=tm, r=tm / DT, v_leak=0 * tm, v_threshold=thr.astype(float), v_reset=0 * tm, w_in=tsy / DT)

    nodes = {
        "input": nir.Input(input_type={"input": np.array([nin])}),
        "fc1": nir.Linear(weight=(w_in * 2.0**sh * a_h[None, :]).T),
        "lif1": cuba_layer(dm, ds, th),
        "w_rec": nir.Linear(weight=(w_rec * 2.0**sh * a_h[None, :]).T),
        "fc2": nir.Linear(weight=(w_out * 2.0**sh * a_o[None, :]).T),
        "lif2": cuba_layer(dmo, dso, tho),
        "output": nir.Output(output_type={"output": np.array([no])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    x = rng.poisson(rng.uniform(0.5, 1.5), (3, 80, nin))
    return cfg, load(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)), x


@pytest.mark.parametrize("seed", range(6))
def test_chip_rule_matches_the_integer_simulator_on_equivalent_networks(seed):
    cfg, g, x = _equivalent_pair(seed)
    hw = _hw("audio2")
    chip = simulate(cfg, hw, x, record=True)
    st = chip.states
    assert max(np.abs(st["Vmem"]).max(), np.abs(st["Isyn"]).max(), np.abs(st["Vmem_out"]).max()) < 30000  # no saturation: only rounding differs
    sem = ChipSemantics(spikes_per_step={"lif1": 31, "lif2": 1}, input_max=15)
    ref = simulate_reference(g, x, DT, chip=sem, record=True)
    sp_ref, sp_chip = ref.states["lif1"]["spikes"], st["Spikes"]
    assert np.mean(sp_ref == sp_chip) > 0.95, np.mean(sp_ref == sp_chip)  # the rest: integer rounding of the decays
    fire_c, fire_r = np.count_nonzero(sp_chip), np.count_nonzero(sp_ref)
    share_c, share_r = np.count_nonzero(sp_chip >= 2) / fire_c, np.count_nonzero(sp_ref >= 2) / fire_r
    assert share_c > 0.05 and abs(share_c - share_r) < 0.01
    # the chip's output at t + 1 is the reference's at t (one hop of latency)
    assert np.mean(chip.spikes_out[:, 1:] == ref.output[:, :-1]) > 0.85
    # the one-spike reference (NIR semantics, subtract) cannot show any of it
    one = simulate_reference(g, x, DT, reset="subtract", record=True).states["lif1"]["spikes"]
    assert one.max() == 1 and np.mean(one == sp_chip) < np.mean(sp_ref == sp_chip)


def test_sparse_propagation_equals_dense(monkeypatch):
    rng = np.random.default_rng(3)
    for seed in range(4):
        g = load(ff_graph(20, 60, 5, seed=seed, recurrent=True, scale=1.5))
        x = rng.poisson(0.3, (4, 60, 20))
        monkeypatch.setattr(refmod, "SPARSE_MIN_WEIGHTS", 0)
        monkeypatch.setattr(refmod, "SPARSE_MAX_DENSITY", 1.0)  # always the sparse path
        a = simulate_reference(g, x, DT, reset="subtract", record=True)
        monkeypatch.setattr(refmod, "SPARSE_MAX_DENSITY", -1.0)  # never
        b = simulate_reference(g, x, DT, reset="subtract", record=True)
        assert np.array_equal(a.output, b.output)
        for node in ("lif1", "lif2"):
            assert np.array_equal(a.states[node]["spikes"], b.states[node]["spikes"])
            assert np.allclose(a.states[node]["v"], b.states[node]["v"], rtol=1e-12, atol=1e-12)
        # counts (several spikes per step) take the weighted sparse path
        c = simulate_reference(g, x, DT, spikes_per_step=5, record=True)
        monkeypatch.setattr(refmod, "SPARSE_MAX_DENSITY", 1.0)
        d = simulate_reference(g, x, DT, spikes_per_step=5, record=True)
        assert np.array_equal(c.output, d.output) and c.states["lif1"]["spikes"].max() > 1
