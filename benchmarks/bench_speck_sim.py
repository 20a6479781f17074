"""Speed of nirdeploy's Speck simulators against sinabs' forward, measured in one process.

Network: the NIR paper's N-MNIST CNN (examples/nir-corpus/cnn_sinabs.nir) compiled for speck2f.
Input: 2x34x34, 300 time bins, N-MNIST-like event density (about 4 000 events per 300 ms sample,
~13 events per bin spread over 2312 pixels). Three runs on the same input batch:

* nirdeploy event-driven simulator (chip semantics, one event at a time),
* nirdeploy time-binned simulator (numpy, equal to sinabs' forward),
* sinabs' forward (DynapcnnLayer per core with the same integer weights, torch on CPU).

Prints samples per second and the ratios against sinabs (wall clock, and CPU time, which a busy
shared machine disturbs less), best of ``--repeat`` rounds that each run every variant once.
Not a test: a measurement.

    python benchmarks/bench_speck_sim.py [--batch 8] [--events 4000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _threads_from_argv() -> str:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# numpy's BLAS gets the thread count torch gets (set before numpy loads it)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--events", type=int, default=4000, help="events per sample (N-MNIST: ~4000 in 300 ms)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; each runs every variant once (best round counts)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, and numpy's BLAS threads")
    a = ap.parse_args()

    import nirdeploy
    from nirdeploy_targets.speck.sim import simulate_binned, simulate_events
    from speck_oracle import sinabs_layers

    import torch

    torch.set_num_threads(a.threads)
    dep = nirdeploy.compile(ROOT / "examples" / "nir-corpus" / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0, reset="subtract")
    net = dep.artifact.payload.network
    hw = dep.target.hwconfig("speck2f")
    rng = np.random.default_rng(0)
    B, T = a.batch, a.steps
    density = a.events / (T * 2 * 34 * 34)
    x = (rng.random((B, T, 2, 34, 34)) < density).astype(np.int64)
    print(f"cnn_sinabs.nir on speck2f, batch {B}, {T} bins, {x.sum() / B:.0f} events per sample, torch threads {a.threads}")

    def run_sinabs():
        layers = sinabs_layers(net, B)
        h = torch.tensor(x.reshape((B * T, 2, 34, 34)), dtype=torch.float32)
        with torch.no_grad():
            for dl in layers:
                h = dl(h)
        return h.numpy().reshape(B, T, -1)

    runs = {
        "sinabs forward (torch)": run_sinabs,
        "nirdeploy binned (numpy)": lambda: simulate_binned(net, x).output,
        "nirdeploy event-driven (numpy)": lambda: simulate_events(net, x, state_format=hw.fmt("state")).output,
    }
    # round-robin: each round runs every variant once, so that a change of machine load between
    # rounds affects all of them alike; best of the rounds, wall clock and CPU time
    best, cpu, outs = {}, {}, {}
    for _ in range(a.repeat):
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            outs[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            cpu[name] = min(cpu.get(name, float("inf")), time.process_time() - c0)
    base = best["sinabs forward (torch)"]
    cbase = cpu["sinabs forward (torch)"]
    for name, t in best.items():
        print(f"{name:34s} {t:8.3f} s  {B / t:9.1f} samples/s  {base / t:6.3f}x sinabs' speed   "
              f"(CPU {cpu[name]:.3f} s, {cbase / cpu[name]:.3f}x)")
    same = np.array_equal(outs["sinabs forward (torch)"].astype(np.int64), outs["nirdeploy binned (numpy)"].reshape(B, T, -1))
    spikes = {k: int(np.asarray(v).sum()) for k, v in outs.items()}
    print(f"binned == sinabs: {same}; output spikes: {spikes}")


if __name__ == "__main__":
    main()
