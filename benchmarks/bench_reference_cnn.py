"""Benchmark: the float64 reference simulator on the NIR paper's N-MNIST CNN (cnn_sinabs.nir).

Simulates 4 samples x 20 steps of 2 x 34 x 34 Poisson spikes (fixed seed) with state recording,
as tests/test_reference.py::test_cnn_sinabs_corpus_runs does, and prints its time against a
baseline run in this process: nirdeploy's torch module of the same graph (nirdeploy.torch,
float64, the same operations; needs the [torch] extra), whose outputs are also checked equal.

    python benchmarks/bench_reference_cnn.py             # best of 3
    python benchmarks/bench_reference_cnn.py --steps 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import nirdeploy
    from nirdeploy.sim.reference import simulate_reference

    g = nirdeploy.load_graph(ROOT / "examples" / "nir-corpus" / "cnn_sinabs.nir")
    x = (np.random.default_rng(11).random((a.batch, a.steps, 2, 34, 34)) < 0.1).astype(np.float64)
    t_ref, r = best(lambda: simulate_reference(g, x, 1.0, reset="subtract", record=True), a.repeats)
    print(f"reference simulator: {t_ref:.3f} s for {a.batch} x {a.steps} steps ({1e3 * t_ref / (a.batch * a.steps):.2f} ms per sample-step)")
    try:
        import torch

        from nirdeploy.torch import to_torch
    except Exception as e:  # noqa: BLE001 - the baseline is optional
        print(f"no baseline: {e}")
        return
    m = to_torch(g, dt=1.0, reset="subtract")

    def run_torch():
        with torch.no_grad():
            return m(torch.as_tensor(x)).numpy()

    t_torch, y = best(run_torch, a.repeats)
    assert np.array_equal(y, r.output), "the torch module and the reference simulator disagree"
    print(f"baseline (nirdeploy.torch, float64): {t_torch:.3f} s")
    print(f"ratio reference / baseline: {t_ref / t_torch:.2f}")


if __name__ == "__main__":
    main()
