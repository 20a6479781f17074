"""Benchmark: the cost of Xylo calibration as a multiple of one chip simulation of the sample.

Calibration (``--calibrate X.npy``) is a guarded search: it evaluates the uncalibrated network and
then candidate moves, each costing one recorded chip simulation of the sample, within a budget
(8 by default). This script compiles one network with and without calibration, times both and
one recorded simulation of the same sample, all in this process, and prints

    calibration cost = (compile with calibration - compile without) / one simulation

next to the number of simulations the search used and its per-round scores.

Network (fixed seed): a recurrent NIR graph of Audio 2 size, 16 inputs, ``--hidden`` recurrent
CubaLIF neurons (fan-out 32), 8 outputs, strong weights so that some neurons saturate (there is
something to calibrate); input Poisson counts, ``--samples`` x ``--steps``.

    python benchmarks/bench_calibration.py                       # 300 hidden, 32 x 100
    python benchmarks/bench_calibration.py --hidden 1000 --samples 64 --steps 200
"""

from __future__ import annotations

import argparse
import time

import nir
import numpy as np


def graph(n_hid: int, seed: int):
    rng = np.random.default_rng(seed)
    w_rec = np.zeros((n_hid, n_hid))
    for j in range(n_hid):
        w_rec[rng.choice(n_hid, 32, replace=False), j] = rng.normal(-0.2, 1.0, 32)
    cuba = lambda n, tm: nir.CubaLIF(tau_syn=2e-4 * np.ones(n), tau_mem=tm * np.ones(n), r=tm / 1e-4 * np.ones(n),  # noqa: E731
                                     v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=2 * np.ones(n))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([16])}),
        "fc1": nir.Linear(weight=rng.normal(0.5, 2.0, (n_hid, 16))),
        "lif1": cuba(n_hid, 4e-3),
        "w_rec": nir.Linear(weight=w_rec),
        "fc2": nir.Linear(weight=rng.normal(0, 1.0, (8, n_hid))),
        "lif2": cuba(8, 1e-3),
        "output": nir.Output(output_type={"output": np.array([8])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=300)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.3)
    ap.add_argument("--budget", type=int, default=8, help="calibration budget in simulations")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import nirdeploy
    from nirdeploy.backend.hwconfig import load_hwconfig
    from nirdeploy.graph.loading import load
    from nirdeploy_targets.xylo.sim import simulate

    g = load(graph(args.hidden, args.seed))
    x = np.random.default_rng(args.seed + 1).poisson(args.rate, (args.samples, args.steps, 16))
    kw = dict(target="xylo:audio2", dt=1e-4, reset="subtract")

    t0 = time.perf_counter()
    plain = nirdeploy.compile(g, **kw)
    t_plain = time.perf_counter() - t0
    hw = load_hwconfig("xylo", "audio2")
    t0 = time.perf_counter()
    simulate(plain.artifact.payload.config, hw, x, record=True)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    nirdeploy.compile(g, sample=x, **kw)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal = nirdeploy.compile(g, calibrate=x, **kw)
    t_cal = time.perf_counter() - t0
    c = cal.report.details["calibration"]

    print(f"network: 16 -> {args.hidden} recurrent (fan-out 32) -> 8 on xylo:audio2; sample {args.samples} x {args.steps} steps, rate {args.rate}")
    print(f"one recorded chip simulation of the sample      {t_sim:8.2f} s   (1.00 x)")
    print(f"compile without sample                          {t_plain:8.2f} s")
    print(f"compile with --sample (fidelity report)         {t_sample:8.2f} s   ({(t_sample - t_plain) / t_sim:5.2f} x one simulation)")
    print(f"compile with --calibrate                        {t_cal:8.2f} s   ({(t_cal - t_plain) / t_sim:5.2f} x one simulation)")
    print(f"calibration: {c['simulations']} of {c['budget_simulations']} simulations, stopped: {c['stopped']}, "
          f"score {c['initial_score']} -> {c['best_score']}")
    for r in c["rounds"]:
        print(f"  round {r['round']}: {r['move']:<20} changed {r['changed']:4d}  score {r['score']}  "
              f"saturating +{r['saturating_pos']}/-{r['saturating_neg']}  {'kept' if r['accepted'] else 'rejected'}")
    print("(the extra cost beyond the simulations: the float reference on the sample, twice - plain and with chip semantics - and re-lowering per candidate)")


if __name__ == "__main__":
    main()
