"""Differential tests of the numpy Xylo simulator against SynSense's xylosim (v2 XyloLayer).

* 300 random networks (100 per variant: Audio 2 and Audio 3 with 2 synapses, IMU with 1),
  small sizes, six regimes of parameters chosen to hit every corner of the update rule
  (saturation at both bounds, int16 wrap of shifted weights, dash 0 and 15, theta <= 0,
  the -32768 membrane wrap, aliases in both directions, input counts above the cap); every
  output spike and every recorded state must be identical (np.array_equal);
* batched runs equal per-sample oracle runs;
* hand-derived single-neuron traces (expected arrays worked out by hand below, not by a
  simulator), also checked against the oracle when it is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nirdeploy.backend.hwconfig import load_hwconfig
from nirdeploy_targets.xylo.config import XyloConfig
from nirdeploy_targets.xylo.sim import SimResult, XyloSimulator, simulate

if str(Path(__file__).resolve().parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from xylo_oracle import OracleNetwork, require_xylosim  # noqa: E402

VARIANTS = ("audio2", "audio3", "imu")
REGIMES = ("mild", "saturate", "wrap", "theta", "alias", "wild")
N_NETWORKS = 300
STATE_KEYS = ("Vmem", "Isyn", "Isyn2", "Spikes", "Vmem_out", "Isyn_out")


def _hw(variant: str):
    try:
        return load_hwconfig("xylo", variant)
    except Exception:  # package data not installed: read the repository's copy
        return load_hwconfig("xylo", variant, folder=Path(__file__).resolve().parents[1] / "hw_configs")


# ------------------------------------------------------------------------------ generators --
def _weights(rng, shape, density, extremes):
    W = rng.integers(-128, 128, size=shape)
    if extremes:
        pick = rng.random(shape)
        W = np.where(pick < 0.15, 127, W)
        W = np.where(pick > 0.85, -128, W)
        W = np.where((pick > 0.45) & (pick < 0.5), -127, W)
    return np.where(rng.random(shape) < density, W, 0)


def _dashes(rng, n, regime):
    d = rng.integers(0, 16, size=n)
    r = rng.random(n)
    d = np.where(r < 0.1, 0, d)
    d = np.where(r > 0.9, 15, d)
    if regime == "mild":
        d = rng.integers(1, 6, size=n)
    return d


def _thresholds(rng, n, regime):
    kind = rng.random(n)
    th = np.exp(rng.uniform(0, np.log(32767), size=n)).astype(np.int64)
    if regime in ("theta", "wild"):
        th = np.where(kind < 0.15, 0, th)
        th = np.where((kind >= 0.15) & (kind < 0.35), -rng.integers(1, 32769, size=n), th)
        th = np.where((kind >= 0.35) & (kind < 0.45), rng.integers(1, 4, size=n), th)
    elif regime == "mild":
        th = rng.integers(500, 30000, size=n)
    else:
        th = np.where(kind < 0.1, rng.integers(1, 4, size=n), th)
    return np.clip(th, -32768, 32767)


def random_network(seed: int):
    """A random small network and input; variant and regime are functions of the seed."""
    variant = VARIANTS[seed % 3]
    regime = REGIMES[(seed // 3) % len(REGIMES)]
    hw = _hw(variant)
    rng = np.random.default_rng(1000 + seed)
    ns = int(hw.limit("synapses_per_hidden"))
    nin, nh, no = int(rng.integers(1, 17)), int(rng.integers(1, 41)), int(rng.integers(1, 9))
    extremes = regime != "mild"
    dens = rng.uniform(0.1, 1.0)
    w_in = _weights(rng, (nin, nh, ns), dens, extremes)
    w_rec = _weights(rng, (nh, nh, ns), rng.uniform(0.0, 0.6), extremes)
    w_out = _weights(rng, (nh, no), rng.uniform(0.2, 1.0), extremes)
    if regime == "mild":
        shifts = rng.integers(0, 2, size=3)
    elif regime == "saturate":
        shifts = rng.integers(6, 16, size=3)
    elif regime == "wrap":
        shifts = rng.integers(9, 16, size=3)
    else:
        shifts = rng.integers(0, 16, size=3)
    bias_enable = bool(rng.random() < 0.6)
    bias_scale = {"mild": 200, "saturate": 32768, "wrap": 32768}.get(regime, int(rng.choice([10, 1000, 32768])))
    bias = rng.integers(-bias_scale, bias_scale, size=nh)
    bias_out = rng.integers(-bias_scale, bias_scale, size=no)
    aliases = [[] for _ in range(nh)]
    if regime in ("alias", "wild") and nh > 1:
        n_alias = int(rng.integers(1, nh + 1)) if regime == "alias" else int(rng.integers(0, 3))
        for j in rng.choice(nh, size=n_alias, replace=False):
            aliases[int(j)] = [int(rng.integers(0, nh))]
    cfg = XyloConfig(
        weights_in=w_in,
        weights_rec=w_rec,
        weights_out=w_out,
        dash_mem=_dashes(rng, nh, regime),
        dash_syn=_dashes(rng, nh, regime),
        dash_syn_2=_dashes(rng, nh, regime),
        dash_mem_out=_dashes(rng, no, regime),
        dash_syn_out=_dashes(rng, no, regime),
        threshold=_thresholds(rng, nh, regime),
        threshold_out=_thresholds(rng, no, regime),
        bias=np.clip(bias, -32768, 32767),
        bias_out=np.clip(bias_out, -32768, 32767),
        weight_shift_in=int(shifts[0]),
        weight_shift_rec=int(shifts[1]),
        weight_shift_out=int(shifts[2]),
        bias_enable=bias_enable,
        aliases=aliases,
    )
    B, T = int(rng.integers(1, 4)), int(rng.integers(20, 90))
    rate = rng.choice([0.05, 0.3]) if regime == "mild" else rng.choice([0.05, 0.3, 1.0, 4.0])
    x = rng.poisson(rate, size=(B, T, nin))
    burst = rng.random((B, T, nin)) < 0.03
    x = np.where(burst, rng.integers(16, 256, size=(B, T, nin)), x)  # above the 15-event cap
    return variant, regime, hw, cfg, x


def _assert_same(ours: SimResult, ref: dict, ns: int, where: str) -> None:
    assert ours.spikes_out.shape == ref["spikes_out"].shape, where
    assert np.array_equal(ours.spikes_out, ref["spikes_out"]), f"{where}: output spikes differ"
    keys = [k for k in STATE_KEYS if k != "Isyn2" or ns == 2]
    assert sorted(ours.states) == sorted(keys), where
    for k in keys:
        a, b = ours.states[k], ref[k]
        assert a.shape == b.shape, f"{where}: {k} shape {a.shape} vs {b.shape}"
        if not np.array_equal(a, b):
            bad = np.argwhere(a != b)[0]
            raise AssertionError(f"{where}: {k} differs first at {tuple(bad)}: ours {a[tuple(bad)]} xylosim {b[tuple(bad)]}")


# -------------------------------------------------------------------------- random oracle ---
@pytest.mark.parametrize("seed", range(N_NETWORKS))
def test_random_network_matches_xylosim(seed):
    v2 = require_xylosim()
    variant, regime, hw, cfg, x = random_network(seed)
    ref = OracleNetwork(cfg, v2).run(x)
    sim = XyloSimulator(cfg, hw)
    ours = sim.run(x, record=True)
    _assert_same(ours, ref, cfg.n_syn, f"seed {seed} ({variant}, {regime})")
    # each regime must really exercise what it is named after
    smax, smin = hw.fmt("state").max, hw.fmt("state").min
    if regime == "saturate":
        states = [ours.states[k] for k in ("Isyn", "Isyn2", "Vmem", "Isyn_out", "Vmem_out") if k in ours.states]
        at_bound = any(((s == smax) | (s == smin)).any() for s in states)
        assert at_bound or sim.stats["delivery_saturated"] > 0, "no saturation reached"
    if regime == "wrap":
        sw = hw.fmt("shifted_weight")
        wrapped = [
            (sw.apply(w.astype(np.int64) << s) != (w.astype(np.int64) << s)).any()
            for w, s in ((cfg.weights_in, cfg.weight_shift_in), (cfg.weights_rec, cfg.weight_shift_rec),
                         (cfg.weights_out, cfg.weight_shift_out))
        ]
        assert any(wrapped), "no shifted weight wrapped"
    if regime == "alias" and cfg.n_hidden > 1:
        assert any(cfg.aliases)


def test_random_suite_covers_the_corners():
    """Across the random networks every corner case of the rule occurs (checked on the configs
    and on our states, which the oracle tests prove equal to xylosim's)."""
    seen = dict(wrap16=0, theta_nonpos=0, dash0=0, dash15=0, cap_in=0, alias_back=0, alias_fwd=0, vmin=0)
    for seed in range(0, N_NETWORKS, 5):
        variant, regime, hw, cfg, x = random_network(seed)
        sw = hw.fmt("shifted_weight")
        w = cfg.weights_rec.astype(np.int64) << cfg.weight_shift_rec
        seen["wrap16"] += int((sw.apply(w) != w).any())
        seen["theta_nonpos"] += int((cfg.threshold <= 0).any())
        seen["dash0"] += int((cfg.dash_syn == 0).any() and (cfg.dash_mem == 0).any())
        seen["dash15"] += int((cfg.dash_syn == 15).any())
        seen["cap_in"] += int((x > 15).any())
        seen["alias_back"] += int(any(a and a[0] < j for j, a in enumerate(cfg.aliases)))
        seen["alias_fwd"] += int(any(a and a[0] > j for j, a in enumerate(cfg.aliases)))
        if regime in ("theta", "saturate", "wild"):
            st = simulate(cfg, hw, x, record=True).states
            seen["vmin"] += int((st["Vmem"] == hw.fmt("state").min).any())
    assert all(v > 0 for v in seen.values()), seen


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_equals_per_sample_oracle(variant):
    v2 = require_xylosim()
    seed = {"audio2": 3, "audio3": 13, "imu": 5}[variant]  # saturate / alias / saturate regimes
    _, _, hw, cfg, _ = random_network(seed)
    rng = np.random.default_rng(7)
    x = rng.poisson(1.5, size=(9, 60, cfg.n_in))
    x[3, 10:20] = 40
    ours = simulate(cfg, hw, x, record=True)
    oracle = OracleNetwork(cfg, v2)
    for b in range(x.shape[0]):
        one = oracle.run_one(x[b])
        single = simulate(cfg, hw, x[b], record=True)  # 2-D input: no batch axis
        assert np.array_equal(single.spikes_out, one["spikes_out"])
        assert np.array_equal(ours.spikes_out[b], one["spikes_out"])
        for k in one:
            if k != "spikes_out":
                assert np.array_equal(ours.states[k][b], one[k]), (b, k)
                assert np.array_equal(single.states[k], one[k]), (b, k)


def test_bigger_network_matches_xylosim():
    """One larger, sparsely active network (mostly the fast, bound-proved delivery path)."""
    v2 = require_xylosim()
    hw = _hw("audio2")
    rng = np.random.default_rng(3)
    nin, nh, no = 16, 300, 8
    w_in = np.where(rng.random((nin, nh, 2)) < 0.3, rng.integers(-128, 128, (nin, nh, 2)), 0)
    w_rec = np.where(rng.random((nh, nh, 2)) < 0.05, rng.integers(-128, 128, (nh, nh, 2)), 0)
    w_out = np.where(rng.random((nh, no)) < 0.3, rng.integers(-128, 128, (nh, no)), 0)
    cfg = XyloConfig(
        weights_in=w_in, weights_rec=w_rec, weights_out=w_out,
        dash_mem=np.full(nh, 4), dash_syn=np.full(nh, 2), dash_syn_2=np.full(nh, 5),
        dash_mem_out=np.full(no, 4), dash_syn_out=np.full(no, 2),
        threshold=rng.integers(200, 1200, nh), threshold_out=np.full(no, 300),
        bias=np.zeros(nh), bias_out=np.zeros(no), weight_shift_in=2, weight_shift_rec=1,
    )
    x = rng.poisson(0.3, size=(4, 150, nin))
    ours = simulate(cfg, hw, x, record=True)
    assert ours.states["Spikes"].sum() > 0
    _assert_same(ours, OracleNetwork(cfg, v2).run(x), 2, "bigger network")


def test_high_activity_batch_matches_xylosim():
    """A densely active network with low thresholds (up to 31 spikes per neuron and step,
    synaptic states pinned at both bounds, fan-outs of very different lengths) run as one
    batch: the exact per-entry delivery (monotone, one-sided and two-sided entries) carries
    almost every step."""
    v2 = require_xylosim()
    hw = _hw("audio2")
    rng = np.random.default_rng(5)
    nin, nh, no = 16, 200, 8
    dens_in, dens_rec = rng.uniform(0.05, 0.9, (nin, 1, 1)), rng.uniform(0.0, 0.2, (nh, 1, 1))  # varied fan-outs
    w_in = np.where(rng.random((nin, nh, 2)) < dens_in, rng.integers(-40, 128, (nin, nh, 2)), 0)
    w_rec = np.where(rng.random((nh, nh, 2)) < dens_rec, rng.integers(-128, 60, (nh, nh, 2)), 0)
    w_out = np.where(rng.random((nh, no)) < 0.5, rng.integers(-128, 128, (nh, no)), 0)
    cfg = XyloConfig(
        weights_in=w_in, weights_rec=w_rec, weights_out=w_out,
        dash_mem=np.full(nh, 4), dash_syn=np.full(nh, 3), dash_syn_2=np.full(nh, 5),
        dash_mem_out=np.full(no, 4), dash_syn_out=np.full(no, 3),
        threshold=rng.integers(100, 1500, nh), threshold_out=np.full(no, 300),
        bias=np.zeros(nh), bias_out=np.zeros(no), weight_shift_in=3, weight_shift_rec=2, weight_shift_out=1,
    )
    x = rng.poisson(0.4, size=(6, 120, nin))
    sim = XyloSimulator(cfg, hw)
    ours = sim.run(x, record=True)
    assert (ours.states["Spikes"] == 31).any()
    assert sim.stats["steps_bound_per_entry"] > 100 and sim.stats["delivery_saturated"] > 0
    _assert_same(ours, OracleNetwork(cfg, v2).run(x), 2, "high-activity batch")


@pytest.mark.parametrize("variant", VARIANTS)
def test_alias_chains_match_xylosim(variant):
    """Forward chains (0->1->2->3), two sources on one target (5->2), self alias (4->4), a
    backward alias onto a chain head (6->0) and two targets on one neuron (7->[8, 3]; xylosim
    accepts lists), with thresholds and biases that make counts hit the cap of 31."""
    v2 = require_xylosim()
    hw = _hw(variant)
    rng = np.random.default_rng(11)
    nh, nin, no, ns = 10, 4, 3, int(hw.limit("synapses_per_hidden"))
    aliases = [[1], [2], [3], [], [4], [2], [0], [8, 3], [], []]
    cfg = XyloConfig(
        weights_in=rng.integers(-128, 128, (nin, nh, ns)), weights_rec=rng.integers(-20, 40, (nh, nh, ns)),
        weights_out=rng.integers(-128, 128, (nh, no)),
        dash_mem=rng.integers(1, 6, nh), dash_syn=rng.integers(1, 6, nh), dash_syn_2=rng.integers(1, 6, nh),
        dash_mem_out=rng.integers(1, 6, no), dash_syn_out=rng.integers(1, 6, no),
        threshold=rng.integers(1, 400, nh), threshold_out=rng.integers(1, 400, no),
        bias=rng.integers(-50, 200, nh), bias_out=rng.integers(-50, 50, no), bias_enable=True,
        weight_shift_in=3, weight_shift_rec=2, aliases=aliases,
    )
    x = rng.poisson(1.0, size=(3, 80, nin))
    ours = simulate(cfg, hw, x, record=True)
    _assert_same(ours, OracleNetwork(cfg, v2).run(x), ns, f"alias chains ({variant})")
    assert (ours.states["Spikes"] == 31).any() and (ours.states["Spikes"][..., 3] > 0).any()


# -------------------------------------------------------------------- hand-derived traces ---
def _one_neuron(hw, *, w_in, dash_syn=1, dash_syn_2=1, dash_mem=15, threshold=32767, bias=0, bias_enable=False,
                w_out=0, threshold_out=32767, dash_syn_out=1, dash_mem_out=15, shift_in=0, w_rec=0, aliases=None):
    """nin x nh x 1-output network from small literal arrays (nh from w_in's second axis)."""
    w_in = np.asarray(w_in)
    ns = int(hw.limit("synapses_per_hidden"))
    if w_in.ndim == 2:
        w_in = np.stack([w_in] + [np.zeros_like(w_in)] * (ns - 1), axis=2)
    nin, nh = w_in.shape[:2]

    def vec(v, n):
        return np.broadcast_to(np.asarray(v), (n,)).copy()

    rec = np.asarray(w_rec)
    if rec.ndim < 2:
        rec = np.full((nh, nh), int(rec))
    if rec.ndim == 2:
        rec = np.stack([rec] + [np.zeros_like(rec)] * (ns - 1), axis=2)
    return XyloConfig(
        weights_in=w_in, weights_rec=rec, weights_out=np.broadcast_to(np.asarray(w_out).reshape(-1, 1), (nh, 1)).copy(),
        dash_mem=vec(dash_mem, nh), dash_syn=vec(dash_syn, nh), dash_syn_2=vec(dash_syn_2, nh),
        dash_mem_out=vec(dash_mem_out, 1), dash_syn_out=vec(dash_syn_out, 1),
        threshold=vec(threshold, nh), threshold_out=vec(threshold_out, 1),
        bias=vec(bias, nh), bias_out=vec(0, 1), bias_enable=bias_enable, weight_shift_in=shift_in,
        aliases=aliases,
    )


def _check_oracle_too(cfg, x, ours):
    """The hand traces must also be what xylosim does (when it is installed)."""
    try:
        from xylosim import v2
    except ImportError:
        return
    _assert_same(ours, OracleNetwork(cfg, v2).run_one(x), cfg.n_syn, "hand trace vs xylosim")


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_synaptic_decay_dash1(variant):
    hw = _hw(variant)
    cfg = _one_neuron(hw, w_in=[[100]], dash_syn=1, dash_mem=15)
    x = np.zeros((10, 1), int)
    x[0, 0] = x[1, 0] = 1
    r = simulate(cfg, hw, x, record=True)
    # Isyn: 100-50=50; 50+100=150 -> 150-75=75; 75-37=38; 38-19=19; 19-9=10; 10-5=5; 5-2=3;
    # 3-1=2; 2-1=1; 1: 1>>1=0 -> sign 1 -> 0
    assert r.states["Isyn"][:, 0].tolist() == [50, 75, 38, 19, 10, 5, 3, 2, 1, 0]
    # Vmem with dash 15 loses exactly 1 per step (0 < V < 2^15): 50, 49+75, 123+38, ...
    assert r.states["Vmem"][:, 0].tolist() == [50, 124, 161, 179, 188, 192, 194, 195, 195, 194]
    assert r.spikes_out.sum() == 0 and r.states["Spikes"].sum() == 0
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_dash0_kills_state(variant):
    hw = _hw(variant)
    cfg = _one_neuron(hw, w_in=[[100]], dash_syn=0, dash_mem=0, bias=7, bias_enable=True)
    x = np.ones((4, 1), int)
    r = simulate(cfg, hw, x, record=True)
    assert r.states["Isyn"][:, 0].tolist() == [0, 0, 0, 0]  # I - (I >> 0) = 0 every step
    assert r.states["Vmem"][:, 0].tolist() == [7, 7, 7, 7]  # V - V + 0 + bias: memoryless
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_asymmetric_decay(variant):
    hw = _hw(variant)
    cfg = _one_neuron(hw, w_in=[[-3, 3]], dash_syn=1)
    x = np.zeros((4, 1), int)
    x[0, 0] = 1
    r = simulate(cfg, hw, x, record=True)
    # -3 >> 1 = -2 -> -1; -1 >> 1 = -1 -> 0.   3 >> 1 = 1 -> 2; 2 -> 1; 1 >> 1 = 0 -> sign -> 0
    assert r.states["Isyn"][:, 0].tolist() == [-1, 0, 0, 0]
    assert r.states["Isyn"][:, 1].tolist() == [2, 1, 0, 0]
    _check_oracle_too(cfg, x, r)


def test_trace_vmem_min_wraps_with_dash_mem0():
    """V = -32768, dash_mem 0: -D(V) = 32768 wraps to -32768, so V stays pinned at -32768."""
    hw = _hw("audio2")
    cfg = _one_neuron(hw, w_in=[[[-128, -128]]], dash_syn=1, dash_syn_2=1, dash_mem=0, shift_in=8)
    x = np.zeros((18, 1), int)
    x[0, 0] = 1
    r = simulate(cfg, hw, x, record=True)
    # w~ = -128 << 8 = -32768 on both synapses; decay by 1 bit: -16384, -8192, ... -1, 0
    isyn = [-16384, -8192, -4096, -2048, -1024, -512, -256, -128, -64, -32, -16, -8, -4, -2, -1, 0, 0, 0]
    assert r.states["Isyn"][:, 0].tolist() == isyn
    assert r.states["Isyn2"][:, 0].tolist() == isyn
    # t0: dv = sat(0 - 32768) -> V = -32768. Afterwards dv = int16(32768) = -32768 and
    # V = sat(-32768 + sat(-32768 + I)) = -32768 for every I <= 0 (without the wrap: -16384 at t1)
    assert r.states["Vmem"][:, 0].tolist() == [-32768] * 18
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_saturation_after_every_add_in_source_order(variant):
    hw = _hw(variant)
    # w~ = 127 << 8 = 32512 (2 events on channel 0), then -128 << 8 = -32768 (channel 1):
    # 32512 -> sat(65024) = 32767 -> 32767 - 32768 = -1 -> decay (dash 15) -> 0.
    # (A single wide sum would give 32256 -> 32255; channel 1 first would give 32256 -> 32255.)
    cfg = _one_neuron(hw, w_in=[[127], [-128]], dash_syn=15, shift_in=8)
    x = np.array([[2, 1]])
    r = simulate(cfg, hw, x, record=True)
    assert r.states["Isyn"][0].tolist() == [0]
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_shifted_weight_wraps_to_int16(variant):
    hw = _hw(variant)
    # 127 << 9 = 65024 -> int16 -512 -> -512 - D(-512, 15) = -511;  -128 << 9 = -65536 -> 0
    cfg = _one_neuron(hw, w_in=[[127, -128]], dash_syn=15, shift_in=9)
    x = np.array([[1]])
    r = simulate(cfg, hw, x, record=True)
    assert r.states["Isyn"][0].tolist() == [-511, 0]
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", ["audio2", "audio3"])
def test_trace_membrane_input_saturates_before_bias(variant):
    hw = _hw(variant)
    # both synapses: 127 << 8 = 32512 -> 32511 after decay (dash 15); I = 65022.
    # dv = sat(0 + 65022) = 32767, then dv = sat(32767 - 32768) = -1, V = -1.
    # (One wide sum I + bias would give 32254.)
    cfg = _one_neuron(hw, w_in=[[[127, 127]]], dash_syn=15, dash_syn_2=15, shift_in=8, bias=-32768, bias_enable=True)
    x = np.array([[1]])
    r = simulate(cfg, hw, x, record=True)
    assert r.states["Isyn"][0].tolist() == [32511] and r.states["Isyn2"][0].tolist() == [32511]
    assert r.states["Vmem"][0].tolist() == [-1]
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_one_step_latency_per_hop(variant):
    hw = _hw(variant)
    cfg = _one_neuron(hw, w_in=[[127]], dash_syn=1, dash_mem=1, threshold=64, w_out=127, threshold_out=64,
                      dash_syn_out=1, dash_mem_out=1)
    x = np.zeros((5, 1), int)
    x[0, 0] = 1
    r = simulate(cfg, hw, x, record=True)
    # hidden: I = 127 - 63 = 64, V = 64 >= 64 -> 1 spike at t=0, V = 0; then I 32, 16, 8, 4 and
    # V = 32, 32-16+16 = 32, 32-16+8 = 24, 24-12+4 = 16 stay below 64
    assert r.states["Spikes"][:, 0].tolist() == [1, 0, 0, 0, 0]
    assert r.states["Vmem"][:, 0].tolist() == [0, 32, 32, 24, 16]
    # output: the t=0 spike arrives at t=1: I = 127 - 63 = 64, V = 64 -> spike, V = 0; then
    # I 32, 16, 8 and V 32, 32, 24
    assert r.spikes_out[:, 0].tolist() == [0, 1, 0, 0, 0]
    assert r.states["Isyn_out"][:, 0].tolist() == [0, 64, 32, 16, 8]
    assert r.states["Vmem_out"][:, 0].tolist() == [0, 0, 32, 32, 24]
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_caps_15_31_1(variant):
    hw = _hw(variant)
    assert (hw.limit("max_input_events_per_step"), hw.limit("max_hidden_spikes_per_step"),
            hw.limit("max_output_spikes_per_step")) == (15, 31, 1)
    # neuron 0: 20 input events of w=127 (only 15 count), theta 1 -> capped at 31 spikes;
    # neuron 1: 40 events of w=1 on channel 1 (15 count) + the 31 spikes of neuron 0 via w_rec=1
    w_in = np.array([[127, 0], [0, 1]])
    w_rec = np.array([[0, 1], [0, 0]])
    cfg = _one_neuron(hw, w_in=w_in, w_rec=w_rec, dash_syn=15, threshold=[1, 32767], w_out=[1, 0],
                      threshold_out=1, dash_syn_out=15)
    x = np.array([[20, 40], [0, 0]])
    r = simulate(cfg, hw, x, record=True)
    # t0: I0 = 15*127 = 1905 -> 1905 - 1 (dash 15) = 1904; V0 = 1904 -> 31 spikes, V = 1873
    assert r.states["Isyn"][0].tolist() == [1904, 14]
    assert r.states["Spikes"][0].tolist() == [31, 0]
    assert r.states["Vmem"][0].tolist() == [1873, 14]
    # t1: neuron 1 receives the 31 (capped) spikes * 1: I = 14 + 31 = 45 -> 44 after decay;
    # output: I = 31 -> 30, V = 30 but only one spike (cap 1), V = 29
    assert r.states["Isyn"][1].tolist()[1] == 44
    assert r.spikes_out[:, 0].tolist() == [0, 1]
    assert r.states["Isyn_out"][1, 0] == 30 and r.states["Vmem_out"][1, 0] == 29
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_threshold_zero_and_negative(variant):
    hw = _hw(variant)
    cfg = _one_neuron(hw, w_in=[[0, 0]], threshold=[0, -20000], bias=[0, 20000], bias_enable=True, dash_mem=15)
    x = np.zeros((2, 1), int)
    r = simulate(cfg, hw, x, record=True)
    # theta 0: V = 0 >= 0 -> 31 spikes every step, V unchanged
    assert r.states["Spikes"][:, 0].tolist() == [31, 31]
    assert r.states["Vmem"][:, 0].tolist() == [0, 0]
    # theta -20000, bias 20000: t0 V = 20000 -> 1 spike, V = 40000 wraps to -25536 < theta.
    # t1: D(-25536, 15) = -1, V = -25536 + 1 + 20000 = -5535 -> 14465 -> 34465 wraps to -31071:
    # 2 spikes
    assert r.states["Spikes"][:, 1].tolist() == [1, 2]
    assert r.states["Vmem"][:, 1].tolist() == [-25536, -31071]
    _check_oracle_too(cfg, x, r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_alias_order(variant):
    hw = _hw(variant)
    base = dict(w_in=[[0, 0]], threshold=[1, 1], bias=[20, 50], bias_enable=True, dash_mem=15)
    x = np.zeros((1, 1), int)
    # forward alias 0 -> 1: neuron 1 starts with 20 spikes, may add only 11 -> V = 50 - 11 = 39
    r = simulate(_one_neuron(hw, aliases=[[1], []], **base), hw, x, record=True)
    assert r.states["Spikes"][0].tolist() == [20, 31]
    assert r.states["Vmem"][0].tolist() == [0, 39]
    _check_oracle_too(_one_neuron(hw, aliases=[[1], []], **base), x, r)
    # backward alias 1 -> 0: neuron 0 already evaluated (20 spikes, V 0); neuron 1 fires 31
    # (V 19) and then adds them to neuron 0's buffer: min(20 + 31, 31)
    r = simulate(_one_neuron(hw, aliases=[[], [0]], **base), hw, x, record=True)
    assert r.states["Spikes"][0].tolist() == [31, 31]
    assert r.states["Vmem"][0].tolist() == [0, 19]
    _check_oracle_too(_one_neuron(hw, aliases=[[], [0]], **base), x, r)


# ------------------------------------------------------------------------------- API -------
def test_api_shapes_progress_and_errors():
    hw = _hw("imu")
    _, _, _, cfg, x = random_network(2)  # an IMU network
    calls = []
    r = simulate(cfg, hw, x, progress=lambda d, n: calls.append((d, n)))
    assert r.states == {}
    assert r.spikes_out.shape == (x.shape[0], x.shape[1], cfg.n_out)
    assert calls[-1] == (x.shape[1], x.shape[1]) and len(calls) <= 101
    assert np.array_equal(XyloSimulator(cfg, hw).run(x).spikes_out, r.spikes_out)
    from nirdeploy.errors import UsageError

    with pytest.raises(UsageError):
        simulate(cfg, hw, -np.ones_like(x))
    with pytest.raises(UsageError):
        simulate(cfg, hw, x[..., :0])
    bad = XyloConfig(**{**cfg.__dict__, "threshold": cfg.threshold + 70000})
    with pytest.raises(UsageError):
        simulate(bad, hw, x)
    a2 = _hw("audio2")
    _, _, _, cfg2, _ = random_network(0)
    with pytest.raises(UsageError):  # 2 synapses on the 1-synapse IMU
        simulate(cfg2, hw, np.zeros((1, 3, cfg2.n_in), int))
    assert simulate(cfg2, a2, np.zeros((1, 3, cfg2.n_in), int)).spikes_out.shape == (1, 3, cfg2.n_out)


# ------------------------------------------------- compiled audio2-sized nets, input fan-out > 64 --
N_COMPILED = 12


def _compiled_audio2_net(seed: int):
    """A random NIR network of Audio 2 size compiled by nirdeploy: 16 input channels each feeding
    far more than 64 hidden neurons (the dense input RAM allows up to 1000), a sparse recurrent
    layer within the 64-target fan-out, and 8 outputs."""
    import nir

    import nirdeploy
    from graphs import cuba

    rng = np.random.default_rng(1000 + seed)
    n_hid = int(rng.integers(100, 400))
    w_in = rng.normal(0, 0.6, (n_hid, 16)) * (rng.random((n_hid, 16)) < rng.uniform(0.5, 1.0))
    fan = int(rng.integers(8, 64))
    w_rec = np.zeros((n_hid, n_hid))
    for j in range(n_hid):  # each hidden neuron drives `fan` recurrent targets (columns of w_rec are pre)
        w_rec[rng.choice(n_hid, fan, replace=False), j] = rng.normal(0, 0.3, fan)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([16])}),
        "fc1": nir.Linear(weight=w_in),
        "lif1": cuba(n_hid, tau_syn=rng.choice([2e-4, 3e-4, 8e-4]), tau_mem=rng.choice([8e-4, 1e-3, 4e-3])),
        "w_rec": nir.Linear(weight=w_rec),
        "fc2": nir.Linear(weight=rng.normal(0, 0.3, (8, n_hid))),
        "lif2": cuba(8),
        "output": nir.Output(output_type={"output": np.array([8])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    dep = nirdeploy.compile(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), target="xylo:audio2", dt=1e-4, reset="subtract")
    x = rng.poisson(rng.uniform(0.2, 3.0), size=(3, 60, 16))
    return dep, x


@pytest.mark.parametrize("seed", range(N_COMPILED))
def test_compiled_audio2_net_with_input_fanout_above_64_matches_xylosim(seed):
    v2 = require_xylosim()
    dep, x = _compiled_audio2_net(seed)
    assert dep.fits, [str(v) for v in dep.report.errors]
    cfg = dep.artifact.payload.config
    per_channel = (cfg.weights_in != 0).any(axis=2).sum(axis=1)
    assert per_channel.max() > 64  # the case the old fan-out rule refused
    hw = _hw("audio2")
    ours = XyloSimulator(cfg, hw).run(x, record=True)
    _assert_same(ours, OracleNetwork(cfg, v2).run(x), cfg.n_syn, f"compiled seed {seed}")
