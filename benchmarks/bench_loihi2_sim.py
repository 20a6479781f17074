"""Speed: nirdeploy's Loihi 2 simulator vs Lava's fixed-point CPU run (lava-nc 0.10.0,
``Loihi2SimCfg(select_tag="fixed_pt")``), Dense -> LIF networks of 1,000 and 10,000 neurons, 1,000
steps, measured in one process run (Lava in its Python 3.10 side environment, as a subprocess).

    python benchmarks/bench_loihi2_sim.py [--neurons 1000 10000] [--steps 1000] [--batch 64]

Lava's time is its ``run`` of the steps after a one-step warm-up run (which pays the compile and
process start-up, printed separately), without a sink (reading a large sink back from Lava's
runtime takes minutes); ours is the median of three ``simulate`` calls. Both get the same network and input, and a
second Lava run with a sink checks the output spikes of the first ``--check-steps`` steps equal
before any number is printed. A batch row shows
our throughput in sample-steps per second (Lava runs one sample at a time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nirdeploy_targets.loihi2.config import INPUT, Loihi2Network, NeuronLayer, Synapse
from nirdeploy_targets.loihi2.sim import Constants, _numba_unsupported, simulate

ROOT = Path(__file__).resolve().parents[1]

LAVA_SCRIPT = r"""
import json, sys, time, numpy as np
from nirdeploy_targets.loihi2.config import Loihi2Network
from nirdeploy_targets.loihi2.lava import build, _lava

def main():
    d, mode = sys.argv[1], sys.argv[2]
    meta = json.load(open(d + "/meta.json"))
    with np.load(d + "/arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    net = Loihi2Network.from_parts(meta, arrays)
    x = arrays["x"]
    L = _lava()
    cfg = L["Loihi2SimCfg"](select_tag="fixed_pt")
    if mode == "spikes":  # reading a sink back is slow in Lava: only for the equality check
        g = build(net, x, record=False)
        g["lifs"][0].run(condition=L["RunSteps"](num_steps=len(x)), run_cfg=cfg)
        np.save(d + "/lava_s.npy", np.asarray(g["sinks"][0].data.get()).T)
        g["lifs"][0].stop()
        return
    t0 = time.perf_counter()
    g = build(net, x, record=False, sinks=False)
    lif = g["lifs"][0]
    lif.run(condition=L["RunSteps"](num_steps=1), run_cfg=cfg)  # compile and start-up
    t1 = time.perf_counter()
    lif.run(condition=L["RunSteps"](num_steps=len(x) - 1), run_cfg=cfg)
    t2 = time.perf_counter()
    lif.stop()
    json.dump({"startup_s": t1 - t0, "run_s": t2 - t1, "steps": len(x) - 1}, open(d + "/lava.json", "w"))

if __name__ == "__main__":
    main()
"""


def network(n: int, n_in: int = 100, seed: int = 0) -> Loihi2Network:
    rng = np.random.default_rng(seed)
    w = rng.integers(-100, 101, (n, n_in))
    layer = NeuronLayer("lif", (n,), 1000, 300, 3000, rng.integers(-20, 20, n), np.zeros(n, int),
                        [Synapse(INPUT, "dense", w, 0, 8, "mixed")])
    return Loihi2Network((n_in,), [layer], 0)


def lava_python() -> str:
    p = ROOT / ".venv-lava" / "bin" / "python"
    if not p.exists():
        sys.exit("no Lava environment: run bash scripts/lava_env.sh first")
    return str(p)


def run_lava(net: Loihi2Network, x: np.ndarray, mode: str, timeout: float):
    """mode "time": Lava's start-up and run seconds; mode "spikes": its output spikes."""
    with tempfile.TemporaryDirectory(prefix="bench-lava-") as td:
        meta, arrays = net.to_parts()
        Path(td, "meta.json").write_text(json.dumps(meta))
        np.savez(Path(td, "arrays.npz"), x=x, **arrays)
        Path(td, "run.py").write_text(LAVA_SCRIPT)
        r = subprocess.run([lava_python(), str(Path(td, "run.py")), td, mode], capture_output=True, text=True, timeout=timeout, cwd=td)
        if r.returncode != 0:
            sys.exit(f"Lava failed: {r.stderr[-2000:]}")
        if mode == "spikes":
            return np.load(Path(td, "lava_s.npy"))
        return json.loads(Path(td, "lava.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--check-steps", type=int, default=100, help="steps over which Lava's spikes are read back and compared")
    a = ap.parse_args()
    rows = []
    for n in a.neurons:
        net = network(n)
        rng = np.random.default_rng(1)
        x = (rng.random((a.steps, net.n_in)) < 0.1).astype(np.int64)
        info = run_lava(net, x, "time", a.timeout)
        lava_s = run_lava(net, x[: a.check_steps], "spikes", a.timeout)
        t_eng = {}
        for eng in ("numba", "numpy"):
            if eng == "numba" and _numba_unsupported(net, Constants()) is not None:
                continue
            simulate(net, x[None, :3], engine=eng)  # warm-up (numba compiles once, cached on disk)
            times = []
            for _ in range(3):  # the median of three: the machine is shared
                t0 = time.perf_counter()
                ours = simulate(net, x[None], engine=eng)
                times.append(time.perf_counter() - t0)
            t_eng[eng] = sorted(times)[1]
            if not np.array_equal(ours.output[0, : a.check_steps], lava_s):
                sys.exit(f"n={n}, engine {eng}: spikes differ between nirdeploy and Lava; no timing reported")
        xb = (rng.random((a.batch, a.steps, net.n_in)) < 0.1).astype(np.int64)
        t0 = time.perf_counter()
        simulate(net, xb)
        t_batch = time.perf_counter() - t0
        lava_sps = info["steps"] / info["run_s"]
        for eng, t in t_eng.items():
            rows.append((n, eng, lava_sps, info["startup_s"], a.steps / t, a.steps / t / lava_sps, int(ours.output.sum())))
        rows.append((n, f"auto, batch {a.batch}", lava_sps, info["startup_s"], a.batch * a.steps / t_batch,
                     a.batch * a.steps / t_batch / lava_sps, int(ours.output.sum())))
    print(f"{'neurons':>8} {'engine':>16} {'Lava steps/s':>13} {'Lava start s':>13} {'ours steps/s':>13} {'ratio':>8} {'spikes':>12}")
    for r in rows:
        print(f"{r[0]:>8} {r[1]:>16} {r[2]:>13.1f} {r[3]:>13.2f} {r[4]:>13.1f} {r[5]:>7.1f}x {r[6]:>12}")
    print("(batch rows: our sample-steps per second; Lava runs one sample at a time)")
    print(f"output spikes of the first {a.check_steps} steps equal between nirdeploy (every engine) and Lava for every size, "
          "checked before any timing was printed")


if __name__ == "__main__":
    main()
