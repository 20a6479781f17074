"""Benchmark: nirdeploy's float64 reference simulator against snnTorch's own forward pass, and the
sparse propagation of spikes against a dense product, all in one process.

Network (fixed seed): snnTorch Linear(16 -> N) -> RSynaptic(N, recurrent) -> Linear(N -> 8) ->
Synaptic(8), per-neuron beta 0.9 / alpha 0.8, threshold 1, exported with snnTorch's exporter
(``export_to_nir(..., ignore_dims=[0])``). snnTorch is run with the update order of the NIR
graph (the membrane reset applied in the step of the spike), so both must produce the same
spikes; the script reports their agreement next to the times.

Timed (best of --repeats, the three interleaved): snnTorch's forward (CPU, no grad, float32, the step loop over its
modules), nirdeploy's reference on the exported graph (float64, no state recording), and the reference with the
sparse path disabled (``SPARSE_MAX_DENSITY = -1``: a dense product for every Affine/Linear). The
ratios are against snnTorch and against the dense reference.

Needs torch==2.13.0 (CPU), snntorch==1.0.0, nirtorch==2.6, nir==1.0.8.

    python benchmarks/bench_reference.py                  # N = 1000, batch 64, 200 steps, ~5 % hidden activity
    python benchmarks/bench_reference.py --hidden 300 --steps 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def best(fn, repeats):
    ts = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.05, help="input events per channel and step")
    ap.add_argument("--input-gain", type=float, default=0.6, help="scale of snnTorch's initial input weights (sets the hidden activity)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        import nir
        import snntorch as snn
        import torch
        from snntorch.export_nir import export_to_nir
        from torch import nn
    except ImportError:
        print("needs torch==2.13.0 (CPU), snntorch==1.0.0, nirtorch==2.6, nir==1.0.8", file=sys.stderr)
        return 2
    from nirdeploy.graph.loading import load
    from nirdeploy.sim import reference as refmod

    torch.manual_seed(0)
    torch.set_num_threads(2)
    N = args.hidden
    fc1, fc2 = nn.Linear(16, N, bias=False), nn.Linear(N, 8, bias=False)
    with torch.no_grad():
        fc1.weight.mul_(args.input_gain)
        fc2.weight.mul_(2.0)
    lif1 = snn.RSynaptic(alpha=torch.full((N,), 0.8), beta=torch.full((N,), 0.9), linear_features=N, threshold=torch.ones(N), init_hidden=True)
    with torch.no_grad():
        lif1.recurrent.bias.zero_()
        lif1.recurrent.weight.mul_(0.5)
    lif2 = snn.Synaptic(alpha=torch.full((8,), 0.8), beta=torch.full((8,), 0.9), threshold=torch.ones(8), init_hidden=True, output=True)

    def snntorch_forward(x):  # (time, batch, 16); NIR's order: reset in the step of the spike
        B = x.shape[1]
        syn1 = mem1 = spk1 = torch.zeros(B, N)
        syn2 = mem2 = torch.zeros(B, 8)
        out = []
        with torch.no_grad():
            for t in range(x.shape[0]):
                syn1 = lif1.alpha * syn1 + fc1(x[t]) + lif1.recurrent(spk1)
                mem1 = lif1.beta * mem1 + syn1
                spk1 = lif1.fire(mem1)
                mem1 = mem1 - spk1 * lif1.threshold
                syn2 = lif2.alpha * syn2 + fc2(spk1)
                mem2 = lif2.beta * mem2 + syn2
                spk2 = lif2.fire(mem2)
                mem2 = mem2 - spk2 * lif2.threshold
                out.append(spk2)
        return torch.stack(out)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rsnn.nir"
        nir.write(str(path), export_to_nir(nn.Sequential(fc1, lif1, fc2, lif2), torch.zeros(1, 16), ignore_dims=[0]))
        g = load(str(path))
    x = np.random.default_rng(1).poisson(args.rate, (args.batch, args.steps, 16)).astype(np.float64)
    xt = torch.tensor(x, dtype=torch.float32).transpose(0, 1)

    run = lambda record=False: refmod.simulate_reference(g, x, 1e-4, reset="subtract", record=record)  # noqa: E731
    old = refmod.SPARSE_MAX_DENSITY

    def dense(record=False):
        refmod.SPARSE_MAX_DENSITY = -1.0
        try:
            return run(record)
        finally:
            refmod.SPARSE_MAX_DENSITY = old

    # interleaved repeats (best of each): a busy machine slows all three alike
    t_snn = t_ref = t_dense = float("inf")
    for _ in range(args.repeats):
        t, y_snn = best(lambda: snntorch_forward(xt), 1)
        t_snn = min(t_snn, t)
        t, res = best(run, 1)
        t_ref = min(t_ref, t)
        t, res_dense = best(dense, 1)
        t_dense = min(t_dense, t)
    y_snn = y_snn.transpose(0, 1).numpy()
    res, res_dense = run(True), dense(True)  # untimed, with states, for the equality checks
    hid = res.states["1.lif"]["spikes"]
    print(f"network: 16 -> {N} recurrent CubaLIF -> 8 (snnTorch RSynaptic export); batch {args.batch}, {args.steps} steps, "
          f"input rate {args.rate}; hidden activity {hid.mean():.3f} spikes per neuron and step")
    print(f"snnTorch forward (float32, torch CPU, 2 threads)   {t_snn:8.3f} s   1.00 x")
    print(f"nirdeploy reference, sparse spikes (float64)      {t_ref:8.3f} s   {t_ref / t_snn:5.2f} x snnTorch")
    print(f"nirdeploy reference, dense products (float64)     {t_dense:8.3f} s   {t_dense / t_snn:5.2f} x snnTorch")
    print(f"sparse vs dense: {t_dense / t_ref:.2f} x faster; outputs identical: {np.array_equal(res.output, res_dense.output)}, "
          f"hidden spikes identical: {np.array_equal(hid, res_dense.states['1.lif']['spikes'])}")
    print(f"reference vs snnTorch (float64 vs float32): output spikes equal in {100 * np.mean(res.output == y_snn):.3f} % of entries, "
          f"spike counts {int(res.output.sum())} vs {int(y_snn.sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
