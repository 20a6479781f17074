"""Predict the Xylo-vs-float gap before anyone touches a board.

For the NIR paper's Braille graphs (examples/nir-corpus), compile for Xylo Audio 2, run the
bit-accurate chip simulation and the float64 reference on the same input, and print how far
they agree (output spike counts, their correlation, element-wise agreement after the latency
shift, and how often the most active output is the same: a proxy for classification
agreement). It also reports how often hidden neurons fire more than one spike per step (the
reference fires at most one) and compares with a lowering that skips the synaptic-gain
compensation (what Rockpool does).

The Braille data set is not shipped, so the input is Poisson spike counts at several rates:
the numbers predict agreement, not accuracy.

    python benchmarks/xylo_gap.py [--batch 64] [--steps 256] [--rates 0.05 0.15 0.4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import nirdeploy
from nirdeploy.graph.loading import load
from nirdeploy.backend.target import CompileOptions, get_target
from nirdeploy_targets.xylo.lower import lower
from nirdeploy_targets.xylo.sim import simulate

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "nir-corpus"
GRAPHS = [("braille_noDelay_noBias_subtract.nir", "subtract"), ("braille_noDelay_bias_zero.nir", "zero")]


def _num(v) -> float:
    """compare_outputs gives None where a figure is undefined (a silent side): printed as nan."""
    return float("nan") if v is None else float(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.15, 0.4])
    ap.add_argument("--variant", default="audio2")
    a = ap.parse_args()
    hw = get_target("xylo").hwconfig(a.variant)
    print(f"xylo:{a.variant}, dt = 1e-4 s, {a.batch} samples x {a.steps} steps of Poisson input per rate")
    print(f"{'graph':34s} {'reset':8s} {'rate':>5s} {'lowering':16s} {'chip spk':>9s} {'ref spk':>8s} {'corr':>6s} {'elem':>6s} {'argmax':>7s} {'multi':>6s}")
    for name, reset in GRAPHS:
        g = load(CORPUS / name)
        for rate in a.rates:
            x = np.random.default_rng(0).poisson(rate, size=(a.batch, a.steps, 12))
            ref = nirdeploy.simulate_reference(g, x, dt=1e-4, reset=reset)
            for label, extra in (("nirdeploy", {}), ("no syn-gain comp", {"compensate_synapse_gain": False})):
                low = lower(g, hw, CompileOptions(dt=1e-4, reset=reset, extra=extra))
                res = simulate(low.config, hw, x, record=True)
                c = nirdeploy.compare_outputs(res.spikes_out, ref, low.latency_steps)
                spk = res.states["Spikes"]
                multi = float(np.sum(spk > 1)) / max(float(np.sum(spk > 0)), 1.0)
                print(
                    f"{name:34s} {reset:8s} {rate:5.2f} {label:16s} {int(sum(c['chip_counts'])):9d} {int(sum(c['reference_counts'])):8d} "
                    f"{_num(c['count_correlation']):6.3f} {c['elementwise_agreement']:6.3f} {_num(c['argmax_agreement']):7.3f} {multi:6.3f}"
                )
    print("corr: correlation of per-sample, per-output spike counts; elem: fraction of equal (time, output) entries;")
    print("argmax: same most-active output; multi: fraction of hidden firing events with more than one spike in a step")


if __name__ == "__main__":
    main()
