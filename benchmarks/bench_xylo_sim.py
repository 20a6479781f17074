"""Benchmark: nirdeploy's numpy Xylo simulator vs SynSense's xylosim (C++), full-size Audio 2.

Network (fixed seed): 16 inputs, 1000 hidden neurons with 2 synapses, 8 outputs.
* input weights: every channel reaches 512 random (neuron, synapse) pairs, 90 % excitatory;
* recurrent weights: fan-out 32 random (neuron, synapse) pairs per hidden neuron, 30 %
  excitatory (an inhibition-dominated, non-runaway network);
* readout: every hidden neuron projects to 2 of the 8 outputs;
* weights uniform in 1..127 in magnitude, shifts 0, dash_mem 4, dash_syn 3 / dash_syn_2 5,
  hidden thresholds 5000, output thresholds 300, no bias, no aliases.
Input: Poisson event counts, rate 0.05 per channel per step (--rate). The script prints the
resulting hidden activity so the regime is visible (default: ~3 % of hidden neurons spike per
step, mostly 1 spike, no saturation).

It times xylosim per sample (reset + evolve + input/output list conversion, batch 1), ours at
batch 1 on the same samples and ours at one larger batch (best of --repeats each, no state
recording, preparation timed separately), all in this process, and asserts that our output
spikes (and, with --check-states, in an extra untimed run, every recorded state) equal
xylosim's on the xylosim samples.

    python benchmarks/bench_xylo_sim.py                  # T=1000, batch 64, 3 repeats
    python benchmarks/bench_xylo_sim.py --steps 200 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _imports():
    """Import the simulator from the installed package, or straight from a checkout."""
    try:
        import nirdeploy  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    try:
        import nirdeploy_targets  # noqa: F401
    except ImportError:  # checkout without `pip install -e .`: targets/ is nirdeploy_targets
        spec = importlib.util.spec_from_file_location(
            "nirdeploy_targets", ROOT / "targets" / "__init__.py", submodule_search_locations=[str(ROOT / "targets")]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["nirdeploy_targets"] = mod
        spec.loader.exec_module(mod)
    from nirdeploy.backend.hwconfig import load_hwconfig
    from nirdeploy_targets.xylo.config import XyloConfig
    from nirdeploy_targets.xylo.sim import XyloSimulator

    return load_hwconfig, XyloConfig, XyloSimulator


def _load_hw(load_hwconfig, variant):
    try:
        return load_hwconfig("xylo", variant)
    except Exception:
        return load_hwconfig("xylo", variant, folder=ROOT / "hw_configs")


def make_network(XyloConfig, seed=0, n_in=16, n_hid=1000, n_out=8, n_syn=2, fan_in=512, fan_rec=32, fan_out=2,
                 threshold=5000):
    rng = np.random.default_rng(seed)

    def sparse(n_pre, n_post, ns, fan, exc):
        W = np.zeros((n_pre, n_post * ns), dtype=np.int64)
        for i in range(n_pre):
            idx = rng.choice(n_post * ns, size=min(fan, n_post * ns), replace=False)
            sign = np.where(rng.random(idx.size) < exc, 1, -1)
            W[i, idx] = rng.integers(1, 128, size=idx.size) * sign
        return W.reshape(n_pre, n_post, ns)

    w_in = sparse(n_in, n_hid, n_syn, fan_in, 0.9)
    w_rec = sparse(n_hid, n_hid, n_syn, fan_rec, 0.3)
    w_out = sparse(n_hid, n_out, 1, fan_out, 0.5)[:, :, 0]
    return XyloConfig(
        weights_in=w_in, weights_rec=w_rec, weights_out=w_out,
        dash_mem=np.full(n_hid, 4), dash_syn=np.full(n_hid, 3), dash_syn_2=np.full(n_hid, 5),
        dash_mem_out=np.full(n_out, 4), dash_syn_out=np.full(n_out, 3),
        threshold=np.full(n_hid, threshold), threshold_out=np.full(n_out, 300),
        bias=np.zeros(n_hid), bias_out=np.zeros(n_out),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="time steps per sample (default 1000)")
    ap.add_argument("--batch", type=int, default=64, help="batch size of the batched run (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats, best is reported (default 3)")
    ap.add_argument("--oracle-samples", type=int, default=3, help="samples run on xylosim (default 3)")
    ap.add_argument("--rate", type=float, default=0.05, help="input events per channel per step (default 0.05)")
    ap.add_argument("--threshold", type=int, default=5000, help="hidden thresholds (default 5000)")
    ap.add_argument("--check-states", action="store_true", help="also compare every recorded state")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    load_hwconfig, XyloConfig, XyloSimulator = _imports()
    sys.path.insert(0, str(ROOT / "tests"))
    from xylo_oracle import OracleNetwork

    hw = _load_hw(load_hwconfig, "audio2")
    cfg = make_network(XyloConfig, seed=a.seed, threshold=a.threshold)
    rng = np.random.default_rng(a.seed + 1)
    B, T, K = max(a.batch, a.oracle_samples), a.steps, a.oracle_samples
    x = rng.poisson(a.rate, size=(B, T, cfg.n_in)).astype(np.int64)
    print(f"network: {cfg.n_in}/{cfg.n_hidden}/{cfg.n_out}, {cfg.n_syn} synapses, "
          f"{np.count_nonzero(cfg.weights_in)} input / {np.count_nonzero(cfg.weights_rec)} recurrent / "
          f"{np.count_nonzero(cfg.weights_out)} readout weights; T={T}, input rate {a.rate}/channel/step")

    # -- xylosim --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    oracle = OracleNetwork(cfg)
    t_build = time.perf_counter() - t0
    ref, t_ref = [], []
    for k in range(K):
        best = np.inf
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            r = oracle.run_one(x[k], record=False)
            best = min(best, time.perf_counter() - t0)
        ref.append(r)
        t_ref.append(best)
    t_xs = float(np.mean(t_ref))

    # -- ours, batch 1 ------------------------------------------------------------------------
    t0 = time.perf_counter()
    sim = XyloSimulator(cfg, hw)
    t_prep = time.perf_counter() - t0
    t_one, ours1 = [], []
    for k in range(K):
        best = np.inf
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            r = sim.run(x[k : k + 1], record=False)
            best = min(best, time.perf_counter() - t0)
        ours1.append(r)
        t_one.append(best)
    t_b1 = float(np.mean(t_one))
    stats1 = dict(sim.stats)

    # -- ours, batched ------------------------------------------------------------------------
    best = np.inf
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        rb = sim.run(x[:B], record=False)
        best = min(best, time.perf_counter() - t0)
    t_bb = best
    statsB = dict(sim.stats)

    # -- bit-exactness on the xylosim samples (not timed) -------------------------------------
    for k in range(K):
        assert np.array_equal(ours1[k].spikes_out[0], ref[k]["spikes_out"]), f"batch-1 output differs, sample {k}"
        assert np.array_equal(rb.spikes_out[k], ref[k]["spikes_out"]), f"batched output differs, sample {k}"
    if a.check_states:
        rs = sim.run(x[:K], record=True)
        for k in range(K):
            full = oracle.run_one(x[k], record=True)
            for key, v in full.items():
                got = rs.spikes_out[k] if key == "spikes_out" else rs.states[key][k]
                assert np.array_equal(got, v), f"{key} differs, sample {k}"
    act = sim.run(x[:1], record=True).states["Spikes"][0]
    print(f"hidden activity (sample 0): {act.sum() / T:.1f} spikes/step, {(act > 0).mean() * 100:.2f} % of neurons "
          f"active per step, max {act.max()} spikes; output spikes {sum(int(r['spikes_out'].sum()) for r in ref)} "
          f"over {K} samples")
    print(f"delivery bound, batch 1: {stats1}")
    print(f"delivery bound, batch {B}: {statsB}")
    print(f"bit-exact vs xylosim on {K} sample(s): output spikes equal at batch 1 and batch {B}"
          + (f"; every recorded state equal (batch {K} run)" if a.check_states else ""))
    print()
    print(f"{'':28s}{'s/sample':>12s}{'samples/s':>12s}{'vs xylosim':>12s}")
    print(f"{'xylosim (C++), batch 1':28s}{t_xs:12.4f}{1 / t_xs:12.1f}{1.0:11.2f}x")
    print(f"{'nirdeploy numpy, batch 1':28s}{t_b1:12.4f}{1 / t_b1:12.1f}{t_xs / t_b1:11.2f}x")
    print(f"{f'nirdeploy numpy, batch {B}':28s}{t_bb / B:12.4f}{B / t_bb:12.1f}{t_xs / (t_bb / B):11.2f}x")
    print(f"(set-up: xylosim build {t_build:.3f} s, ours prepare {t_prep:.3f} s; batch-{B} run {t_bb:.3f} s; "
          f"best of {a.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
