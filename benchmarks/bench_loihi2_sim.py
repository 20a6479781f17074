"""Speed: nirdeploy's Loihi 2 simulator vs Lava's fixed-point CPU run (lava-nc 0.10.0,
``Loihi2SimCfg(select_tag="fixed_pt")``), Dense -> LIF networks of 1,000 and 10,000 neurons (100
inputs spiking at 10 %), 1,000 steps, batch 1, measured in one process run (Lava in its Python 3.10
side environment, as a subprocess).

    python benchmarks/bench_loihi2_sim.py [--neurons 1000 10000] [--steps 1000] [--rounds 3] [--batch 16] [--profile]

Lava's time is its ``run`` of the steps after a one-step warm-up run (which pays the compile and
process start-up, printed separately), without a sink (reading a large sink back from Lava's
runtime takes minutes). Ours is a whole ``simulate`` call (weight preparation, input conversion,
output allocation included), the median of ``--repeats`` calls or of half a second of calls. The machine is shared, so Lava
and ours are timed in ``--rounds`` interleaved rounds and the load average is printed; the ratio
is Lava's median over ours. A second Lava run with a sink checks that the output spikes of the
first ``--check-steps`` steps are equal before any number is printed. A batch row shows our
throughput in sample-steps per second (Lava runs one sample at a time).

``--profile`` splits the numba engine's cost per step: preparation (effective weights,
transposed), input spike lists, delivery (the Dense row adds of the input spikes), neuron update,
spike extraction (index lists of a layer's spikes, needed where it feeds a layer or itself) and
recording (u, v, s with ``record=True``), each measured by running the same kernel with and
without that part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nirdeploy_targets.loihi2.config import INPUT, Loihi2Network, NeuronLayer, Synapse
from nirdeploy_targets.loihi2.sim import Constants, _numba, _numba_plan, _scan_args, default_threads, simulate

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


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def time_ours(net, x, engine: str, threads: int | None, repeats: int) -> float:
    """Median seconds of at least ``repeats`` simulate calls, and of enough calls to fill half a
    second (after a warm-up: numba compiles once, cached): a millisecond call on a shared machine
    needs many samples."""
    simulate(net, x[None, :3], engine=engine)
    t0 = time.perf_counter()
    simulate(net, x[None], engine=engine, threads=threads)
    repeats = max(repeats, min(100, int(0.5 / max(time.perf_counter() - t0, 1e-6))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        simulate(net, x[None], engine=engine, threads=threads)
        times.append(time.perf_counter() - t0)
    return _median(times)


def profile(net: Loihi2Network, x: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """Microseconds per step of each part of the numba engine on ``net`` (one layer) and ``x``."""
    K, c = _numba(), Constants()
    T = x.shape[0]
    L = net.layers[0]

    def best(f) -> float:
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return _median(ts) / T * 1e6

    spk = (x[None] > 0).view(np.int8)
    _, plans = _numba_plan(net, c)
    P = plans[0]
    ptr, idx = K.spike_lists(spk)
    none_ptr, none_idx = np.zeros_like(ptr), idx[:0]
    d3 = np.zeros((1, 1, 1), np.int64)
    s_out = np.empty((1, T, L.n), np.int8)
    u_out, v_out = np.empty((1, T, L.n), np.int64), np.empty((1, T, L.n), np.int64)
    full = best(lambda: K.scan(*_scan_args(L, P, c, ptr, idx, d3, s_out, False, 0, d3, d3)))
    upd = best(lambda: K.scan(*_scan_args(L, P, c, none_ptr, none_idx, d3, s_out, False, 0, d3, d3)))
    K.scan(*_scan_args(L, P, c, ptr, idx, d3, s_out, False, 0, d3, d3))
    rec = best(lambda: K.scan(*_scan_args(L, P, c, ptr, idx, d3, s_out, True, 0, u_out, v_out)))
    rows = [
        ("preparation (effective weights, transposed int16)", best(lambda: _numba_plan(net, c))),
        ("input spike lists", best(lambda: K.spike_lists(spk))),
        (f"delivery ({len(idx) / T:.1f} input spikes/step x {L.n} row adds)", full - upd),
        (f"neuron update ({L.n} CUBA LIF neurons; 24-bit wrap {'checked' if P.wrap else 'provably impossible, skipped'})", upd),
        ("spike extraction (index lists; only where the layer feeds a layer or itself)", best(lambda: K.spike_lists(s_out))),
        ("recording (u, v, s; only with record=True)", rec - full),
        ("output allocation (int8 spikes)", best(lambda: np.empty((1, T, L.n), np.int8).fill(0))),
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved Lava / nirdeploy timing rounds")
    ap.add_argument("--repeats", type=int, default=5, help="simulate calls per round (median)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--check-steps", type=int, default=100, help="steps over which Lava's spikes are read back and compared")
    ap.add_argument("--profile", action="store_true", help="split the numba engine's time per step")
    a = ap.parse_args()
    load0 = os.getloadavg()
    rows, profiles = [], {}
    for n in a.neurons:
        net = network(n)
        rng = np.random.default_rng(1)
        x = (rng.random((a.steps, net.n_in)) < 0.1).astype(np.int64)
        lava_s = run_lava(net, x[: a.check_steps], "spikes", a.timeout)
        nthreads = default_threads()
        if _numba_plan(net, Constants())[0] is None:
            engines = [("numba, 1 thread", "numba", 1)] + ([(f"numba, {nthreads} threads", "numba", nthreads)] if nthreads > 1 else [])
        else:
            engines = []
        engines.append(("numpy", "numpy", None))
        for _, eng, th in engines:
            ours = simulate(net, x[None], engine=eng, threads=th)
            if not np.array_equal(ours.output[0, : a.check_steps], lava_s):
                sys.exit(f"n={n}, engine {eng}: spikes differ between nirdeploy and Lava; no timing reported")
        lava_sps, ours_sps, startup = [], {e[0]: [] for e in engines}, []
        for r in range(a.rounds):
            info = run_lava(net, x, "time", a.timeout)
            lava_sps.append(info["steps"] / info["run_s"])
            startup.append(info["startup_s"])
            for label, eng, th in engines:
                if eng == "numpy" and r > 0:
                    continue  # one round is enough to show the numpy engine's order of magnitude
                ours_sps[label].append(a.steps / time_ours(net, x, eng, th, a.repeats if eng == "numba" else 1))
        lm = _median(lava_sps)
        for label, _, _ in engines:
            ratios = [o / l for o, l in zip(ours_sps[label], lava_sps)]
            rows.append((n, label, lm, _median(startup), _median(ours_sps[label]), _median(ours_sps[label]) / lm, min(ratios), max(ratios),
                         int(ours.output.sum())))
        xb = (rng.random((a.batch, a.steps, net.n_in)) < 0.1).astype(np.int64)
        simulate(net, xb[:, :3])
        tb = []
        for _ in range(3):
            t0 = time.perf_counter()
            simulate(net, xb)
            tb.append(time.perf_counter() - t0)
        bsps = a.batch * a.steps / _median(tb)
        rows.append((n, f"auto, batch {a.batch}", lm, _median(startup), bsps, bsps / lm, None, None, None))
        if a.profile and engines[0][1] == "numba":
            profiles[n] = (profile(net, x, a.repeats), lm)
    load1 = os.getloadavg()
    print(f"{'neurons':>8} {'engine':>18} {'Lava steps/s':>13} {'Lava start s':>13} {'ours steps/s':>13} {'ratio':>8} "
          f"{'per round':>15} {'spikes':>10}")
    for r in rows:
        rng_s = f"{r[6]:.0f}-{r[7]:.0f}x" if r[6] is not None else ""
        print(f"{r[0]:>8} {r[1]:>18} {r[2]:>13.1f} {r[3]:>13.2f} {r[4]:>13.1f} {r[5]:>7.1f}x {rng_s:>15} {'' if r[8] is None else r[8]:>10}")
    print(f"(medians over {a.rounds} interleaved rounds; 'per round': the lowest and highest ratio of one round; batch rows: our "
          "sample-steps per second, Lava runs one sample at a time)")
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load0)}; after: {', '.join(f'{v:.2f}' for v in load1)}; "
          f"{os.cpu_count()} CPUs")
    print(f"output spikes of the first {a.check_steps} steps equal between nirdeploy (every engine) and Lava for every size, "
          "checked before any timing was printed")
    for n, (parts, lava_sps) in profiles.items():
        print(f"\nnumba engine, one thread, {n} neurons, microseconds per step (medians of {a.repeats} runs of {a.steps} steps):")
        for name, us in parts:
            print(f"  {us:8.2f}  {name}")
        need = 1e6 / lava_sps / 100
        floor = sum(us for name, us in parts if name.startswith(("delivery", "neuron update")))
        print(f"  100x Lava ({lava_sps:.0f} steps/s) needs <= {need:.2f} us per step in all; delivery + neuron update alone take "
              f"{floor:.2f} us on one thread, i.e. at most {1e6 / lava_sps / floor:.0f}x")


if __name__ == "__main__":
    main()
