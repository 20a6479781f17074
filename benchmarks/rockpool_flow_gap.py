"""Rockpool's own Xylo flow vs nirdeploy's, both measured against the float reference.

On the NIR paper's Braille graph (examples/nir-corpus/braille_noDelay_noBias_subtract.nir,
dt = 1e-4, the graph that ran on Xylo Audio 2 hardware) this runs the flow of the paper's
``xylo_apply`` notebook (xylo.md section 4):

    net = rockpool.nn.modules.from_nir(nir.read(path)); force dt = 1e-4 on every neuron layer
    spec = mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float", dash_dtype="float")
    spec.update(channel_quantize(**spec)); spec.pop("mapped_graph")
    XyloSim.from_specification(**spec)      # bit-accurate Xylo Audio 2 simulation (xylosim)

next to ``nirdeploy.compile(path, target="xylo:audio2", dt=1e-4, reset="subtract")``, and
compares both chip outputs with ``nirdeploy.simulate_reference`` (float64) through
``nirdeploy.compare_outputs``. The inputs are those of benchmarks/xylo_gap.py (Poisson spike
counts; the Braille data set is not shipped), so the numbers predict agreement, not accuracy.
It also checks Rockpool's output timing empirically (latency 0, 1, 2) and prints the
quantized specification values of both flows.

Needs torch, nirtorch and Rockpool, which nirdeploy never depends on: run it in a side
environment, never in the project's .venv. It is not run in CI. Install commands that worked
(Python 3.11, offline-capable package index; torch 2.13.0 is the CPU wheel):

    python3.11 -m venv /tmp/rpflow && . /tmp/rpflow/bin/activate
    pip install torch==2.13.0
    pip install nir==1.0.8 nirtorch==2.6
    pip install pybind11 wheel
    pip install --no-deps --no-build-isolation rockpool==3.1.0 xylosim==0.1.3
    pip install scipy h5py click rich
    pip install -e . --no-deps              # nirdeploy itself, from the repository root
    python benchmarks/rockpool_flow_gap.py [--batch 64] [--steps 256] [--rates 0.05 0.15 0.4]

Never install ``samna`` from the package index: it is an installer stub that tries to reach
the network when imported, and importing rockpool imports samna if it is present. The script
refuses to run if the stub is installed, and imports Rockpool's Xylo Audio 2 modules without
``rockpool.devices.xylo.__init__`` (which imports samna outside its guard).

Rockpool workarounds applied (each is printed when it happens):
  * ``rockpool.devices.xylo`` and its sub-packages are registered as empty package modules so
    that ``xylo_mapper`` / ``xylo_sim`` / ``quantize_methods`` import without samna;
  * ``from_nir`` infers a per-layer dt = min(tau_mem / (1 + r)) (8.70e-5 and 7.69e-5 here), so
    the mapper's DRC rejects the graph; dt = 1e-4 is forced on every LIFTorch layer, as the
    paper's notebook does;
  * ``XyloSim.from_specification`` (Audio 2) takes no ``**kwargs``: ``mapped_graph`` is popped.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import warnings
from pathlib import Path

import numpy as np

import nirdeploy
from nirdeploy.errors import MissingDependencyError
from nirdeploy_targets.xylo.hardware import import_rockpool_xylo

GRAPH = Path(__file__).resolve().parents[1] / "examples" / "nir-corpus" / "braille_noDelay_noBias_subtract.nir"
DT = 1e-4
RESET = "subtract"
LATENCIES = (0, 1, 2)


def _num(v) -> float:
    """compare_outputs gives None where a figure is undefined (a silent side): printed as nan."""
    return float("nan") if v is None else float(v)


def _rockpool_parts():
    """mapper, XyloSim (Audio 2) and channel_quantize, imported without rockpool.devices.xylo's
    __init__ (which imports samna)."""
    try:
        mapper = import_rockpool_xylo("syns61201.xylo_mapper").mapper
        XyloSim = import_rockpool_xylo("syns61201.xylo_sim").XyloSim
    except MissingDependencyError as e:
        sys.exit(str(e))
    from rockpool.transform.quantize_methods import channel_quantize

    return mapper, XyloSim, channel_quantize


def rockpool_spec(path: Path, notes: list[str]) -> dict:
    """The paper's flow up to the quantized specification (float mapping, channel_quantize)."""
    import nir
    from rockpool.nn.modules import from_nir

    mapper, _, channel_quantize = _rockpool_parts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = from_nir(nir.read(str(path)))
        lif = [(n, m) for n, m in net.named_modules() if hasattr(m, "tau_mem") and hasattr(m, "dt")]
        try:  # as from_nir leaves it: per-layer inferred dt
            mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float", dash_dtype="float")
            notes.append("mapper accepted the graph without forcing dt")
        except Exception as e:  # noqa: BLE001 - report whatever Rockpool raises
            dts = ", ".join(f"{n} {float(m.dt):.3g}" for n, m in lif)
            notes.append(f"from_nir inferred dt per layer ({dts}); mapper: {type(e).__name__}: {' '.join(str(e).split())}")
        for _, m in lif:
            m.dt = DT
        notes.append(f"forced dt = {DT} on {', '.join(n for n, _ in lif)}")
        spec = mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float", dash_dtype="float")
        float_spec = {k: np.array(v, copy=True) for k, v in spec.items() if k not in ("mapped_graph", "aliases")}
        spec.update(channel_quantize(**spec))
    for w in caught:
        notes.append(f"warning ({w.category.__name__}): {str(w.message).splitlines()[0][:160]}")
    spec.pop("mapped_graph")
    notes.append("popped mapped_graph (XyloSim.from_specification for Audio 2 takes no **kwargs)")
    spec["_float"] = float_spec
    return spec


def run_rockpool(spec: dict, x: np.ndarray) -> np.ndarray:
    _, XyloSim, _ = _rockpool_parts()
    sim = XyloSim.from_specification(**{k: v for k, v in spec.items() if k != "_float"})
    out = np.zeros((x.shape[0], x.shape[1], np.shape(spec["weights_out"])[-1]), dtype=np.int64)
    for b in range(x.shape[0]):
        sim.reset_state()
        y, _, _ = sim.evolve(x[b])
        out[b] = np.asarray(y)
    return out


def _rng(a) -> str:
    a = np.asarray(a)
    u = np.unique(a)
    vals = " ".join(f"{v:g}" for v in u) if u.size <= 8 else f"{a.min():g}..{a.max():g} ({u.size} values)"
    return f"{vals}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.15, 0.4])
    a = ap.parse_args()

    vers = ", ".join(f"{p} {md.version(p)}" for p in ("nirdeploy", "nir", "nirtorch", "torch", "rockpool", "xylosim", "numpy"))
    print(f"{GRAPH.name}, xylo:audio2, dt = {DT} s, reset = {RESET}; {a.batch} samples x {a.steps} steps of Poisson input per rate")
    print(f"versions: {vers}")

    notes: list[str] = []
    spec = rockpool_spec(GRAPH, notes)
    dep = nirdeploy.compile(GRAPH, target="xylo:audio2", dt=DT, reset=RESET)
    lat_nd = int(dep.artifact.latency_steps)
    print("Rockpool flow notes:")
    for n in notes:
        print(f"  - {n}")

    rows, sweep = [], []
    for rate in a.rates:
        x = np.random.default_rng(0).poisson(rate, size=(a.batch, a.steps, 12))
        ref = nirdeploy.simulate_reference(GRAPH, x, dt=DT, reset=RESET)
        flows = (("nirdeploy", dep.simulate(x), lat_nd), ("rockpool", run_rockpool(spec, x), 1))
        for label, y, lat in flows:
            c = nirdeploy.compare_outputs(y, ref, lat)
            rows.append((rate, label, lat, c))
            for L in LATENCIES:
                sweep.append((rate, label, L, nirdeploy.compare_outputs(y, ref, L)))

    print()
    print(f"{'rate':>5s} {'flow':10s} {'lat':>3s} {'chip spk':>9s} {'ref spk':>8s} {'count_corr':>10s} {'elem_agree':>10s} {'argmax_agree':>12s}")
    for rate, label, lat, c in rows:
        print(
            f"{rate:5.2f} {label:10s} {lat:3d} {int(sum(c['chip_counts'])):9d} {int(sum(c['reference_counts'])):8d} "
            f"{_num(c['count_correlation']):10.3f} {c['elementwise_agreement']:10.4f} {_num(c['argmax_agreement']):12.3f}"
        )

    print()
    print("output timing: agreement with the reference when the chip output is shifted back by L steps")
    print(f"{'rate':>5s} {'flow':10s} " + " ".join(f"{'corr L=' + str(L):>9s} {'elem L=' + str(L):>10s}" for L in LATENCIES) + "  best elem")
    for rate in a.rates:
        for label in ("nirdeploy", "rockpool"):
            cs = {L: c for r, lb, L, c in sweep if r == rate and lb == label}
            best = max(LATENCIES, key=lambda L: cs[L]["elementwise_agreement"])
            print(f"{rate:5.2f} {label:10s} " + " ".join(
                f"{_num(cs[L]['count_correlation']):9.3f} {cs[L]['elementwise_agreement']:10.4f}" for L in LATENCIES) + f"  L={best}")

    print()
    cfg = dep.artifact.payload.config
    fs = spec["_float"]
    print("specification values (Rockpool: mapper float -> channel_quantize; nirdeploy: dep.artifact.payload.config)")
    keys = ("dash_mem", "dash_syn", "dash_syn_2", "dash_mem_out", "dash_syn_out", "threshold", "threshold_out",
            "weights_in", "weights_rec", "weights_out", "weight_shift_in", "weight_shift_rec", "weight_shift_out",
            "bias", "bias_out")
    print(f"{'key':17s} {'rockpool float':34s} {'rockpool quantized':30s} {'nirdeploy':30s}")
    for k in keys:
        rf = _rng(fs[k]) if k in fs else "-"
        print(f"{k:17s} {rf[:34]:34s} {_rng(spec[k])[:30]:30s} {_rng(getattr(cfg, k))[:30]:30s}")
    print("count_corr: correlation of per-sample, per-output spike counts; elem_agree: fraction of equal (time, output)")
    print("entries after the latency shift; argmax_agree: same most-active output per sample.")
    n_out = np.shape(spec["weights_out"])[-1]
    base = ", ".join(
        f"rate {r:.2f}: {1 - sum(c['reference_counts']) / (a.batch * (a.steps - L) * n_out):.4f}"
        for r, lb, L, c in rows if lb == "rockpool")
    print(f"elem_agree of an all-zero output at latency 1 (sparsity baseline): {base}")


if __name__ == "__main__":
    main()
