"""Run a nirdeploy Loihi 2 network with Intel's Lava (``lava-nc``, Python 3.10 only).

:func:`build` turns a :class:`~.config.Loihi2Network` (or a compiled folder, :func:`load_network`)
into a Lava process graph: one ``LIF`` process per layer and one ``Dense`` (``DelayDense`` with synaptic delays) process per synapse,
with exactly the fixed-point parameters nirdeploy chose (weights, ``weight_exp``,
``num_weight_bits``, explicit ``sign_mode``, ``du``, ``dv``, ``vth``, ``bias_mant``,
``bias_exp``). With access to Loihi 2 hardware run it with ``Loihi2HwCfg``; on a CPU,
:func:`run_fixed_point` runs Lava's bit-accurate models (``Loihi2SimCfg(select_tag="fixed_pt")``),
which is how nirdeploy's simulator is checked against Lava.

Command line (inside the Lava environment; see ``scripts/lava_env.sh``)::

    python -m nirdeploy_targets.loihi2.lava run OUT X.npy Y.npz [--force]  # a compiled folder, one sample
    python -m nirdeploy_targets.loihi2.lava batch JOBS_DIR Y.npz           # many networks (the test oracle)

``Y.npz`` is written like every nirdeploy file output (:func:`nirdeploy.outputs.atomic_file`):
a new file, or with ``--force`` an existing regular file that is not an input; anything else is
exit 2 with the reason, and the file is left as it was.

Lava's runtime is multi-process and can hang (loihi2.md section 8): callers run this module in a
subprocess under a timeout; ``batch`` also bounds every job with an alarm. Conv synapses are not
built here (Lava's CPU Conv model has no weight exponent); they raise NotImplementedError.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .config import INPUT, SIGN_MODES, Loihi2Network

__all__ = ["build", "run_fixed_point", "load_network", "main"]

LAVA_INSTALL = "bash scripts/lava_env.sh  (a Python 3.10 virtual environment with lava-nc==0.10.0 and numpy<2)"


def _lava():
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense, DelayDense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.proc.monitor.process import Monitor
        from lava.utils.weightutils import SignMode
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"Lava (lava-nc) is not importable here ({e}); it needs Python 3.10: {LAVA_INSTALL}") from None
    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, DelayDense=DelayDense, Sink=Sink, Source=Source, LIF=LIF,
                Monitor=Monitor, SignMode=SignMode)


def build(net: Loihi2Network, x: np.ndarray, *, record: bool = True, sinks: bool = True) -> dict:
    """Lava processes for ``net`` driven by ``x`` (time, *input_shape) binary spikes.

    Returns ``{"lifs", "denses", "source", "sinks", "monitors", "steps"}``; ``sinks[i]`` holds
    layer i's spikes (with ``sinks``; reading a large sink back is slow in Lava), ``monitors[i]``
    its ``u`` and ``v`` (with ``record``)."""
    L = _lava()
    x = np.asarray(x)
    T = int(x.shape[0])
    data = (x.reshape(T, -1) > 0).astype(np.float64).T  # (n_in, T); RingBuffer sends column t-1 at step t
    source = L["Source"](data=data)
    lifs = []
    for layer in net.layers:
        lifs.append(L["LIF"](shape=(layer.n,), du=layer.du, dv=layer.dv, vth=layer.vth,
                             bias_mant=layer.bias_mant.astype(np.int32), bias_exp=layer.bias_exp.astype(np.int32), name=layer.name))
    denses = []
    for i, layer in enumerate(net.layers):
        for syn in layer.synapses:
            if syn.kind != "dense":
                raise NotImplementedError(f"layer {layer.name}: {syn.kind} synapses are not built for Lava here (Dense only)")
            sign = None if syn.sign_mode is None else L["SignMode"](SIGN_MODES[syn.sign_mode])
            kw = dict(weights=syn.weight.astype(np.int32), weight_exp=syn.weight_exp, num_weight_bits=syn.num_weight_bits, sign_mode=sign,
                      num_message_bits=0)
            if syn.delay is None:
                d = L["Dense"](**kw)
            else:  # synaptic delays: DelayDense (delay k delivers k steps after a Dense)
                d = L["DelayDense"](delays=syn.delay.astype(int), max_delay=max(syn.max_delay, 1), **kw)  # (it insists on dtype int)
            (source.s_out if syn.src == INPUT else lifs[syn.src].s_out).connect(d.s_in)
            d.a_out.connect(lifs[i].a_in)
            denses.append(d)
    sink_list, monitors = [], []
    for i, layer in enumerate(net.layers):
        if sinks:
            sk = L["Sink"](shape=(layer.n,), buffer=T)
            lifs[i].s_out.connect(sk.a_in)
            sink_list.append(sk)
        if record:
            mu, mv = L["Monitor"](), L["Monitor"]()
            mu.probe(lifs[i].u, T)
            mv.probe(lifs[i].v, T)
            monitors.append((mu, mv))
    return {"lifs": lifs, "denses": denses, "source": source, "sinks": sink_list, "monitors": monitors, "steps": T}


def run_fixed_point(net: Loihi2Network, x: np.ndarray, *, record: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Run ``net`` for ``len(x)`` steps on Lava's CPU fixed-point models.

    Returns ``{layer name: {"s", "u", "v"}}``, each (time, n) int64, indexed like nirdeploy's
    simulator (Lava step t is index t - 1)."""
    L = _lava()
    g = build(net, x, record=record)
    T = g["steps"]
    first = g["lifs"][0]
    first.run(condition=L["RunSteps"](num_steps=T), run_cfg=L["Loihi2SimCfg"](select_tag="fixed_pt"))
    try:
        res = {}
        for i, layer in enumerate(net.layers):
            r = {"s": np.asarray(g["sinks"][i].data.get()).T.astype(np.int64)}
            if record:
                mu, mv = g["monitors"][i]
                lif = g["lifs"][i]
                r["u"] = np.asarray(mu.get_data()[lif.name]["u"]).reshape(T, -1).astype(np.int64)
                r["v"] = np.asarray(mv.get_data()[lif.name]["v"]).reshape(T, -1).astype(np.int64)
            res[layer.name] = r
    finally:
        first.stop()
    return res


def load_network(folder) -> Loihi2Network:
    """The network of a compiled folder (read through nirdeploy's bounded, schema-checked reads)."""
    from .target import read_network

    return read_network(Path(folder))[0]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Timeout()


def _batch(jobs_dir: Path, out: Path) -> int:
    """Every job of ``jobs_dir`` (jobs.json + arrays.npz), each under its own alarm."""
    jobs = json.loads((jobs_dir / "jobs.json").read_text())
    with np.load(jobs_dir / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    results: dict[str, np.ndarray] = {}
    status = []
    signal.signal(signal.SIGALRM, _alarm)
    for k, job in enumerate(jobs):
        pre = f"J{k}."
        arr = {key[len(pre):]: a for key, a in arrays.items() if key.startswith(pre)}
        net = Loihi2Network.from_parts(job["meta"], arr)
        t0 = time.time()
        signal.alarm(int(job.get("timeout_s", 120)))
        try:
            res = run_fixed_point(net, arr["x"], record=job.get("record", True))
            status.append({"ok": True, "seconds": time.time() - t0})
        except _Timeout:
            status.append({"ok": False, "error": f"timed out after {job.get('timeout_s', 120)} s"})
            continue
        except Exception as e:  # one bad job must not hide the others
            status.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
            continue
        finally:
            signal.alarm(0)
        for lname, r in res.items():
            for key, a in r.items():
                results[f"{pre}{lname}.{key}"] = a
    results["status"] = np.frombuffer(json.dumps(status).encode(), dtype=np.uint8)
    return _save_npz(out, results, inputs=[jobs_dir / "jobs.json", jobs_dir / "arrays.npz"])  # OUT may sit in JOBS_DIR


def _save_npz(out: Path, arrays: dict, *, inputs=(), force: bool = False) -> int:
    """``arrays`` to ``out`` atomically (never replacing a file without ``force``); 0, or 2 with
    the reason on stderr."""
    from nirdeploy.errors import NirDeployError
    from nirdeploy.outputs import atomic_file

    try:
        with atomic_file(out, inputs=inputs, force=force) as f:
            np.savez(f, **arrays)
    except NirDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _run_folder(folder: Path, x_path: Path, out: Path, force: bool = False) -> int:
    from nirdeploy.errors import NirDeployError
    from nirdeploy.outputs import check_output_file

    try:
        check_output_file(out, [folder, x_path], force=force)  # before the run, not after it
    except NirDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    net = load_network(folder)
    x = np.load(x_path, allow_pickle=False)
    if x.ndim == len(net.input_shape) + 2:
        if x.shape[0] != 1:
            print("Lava runs one sample at a time; pass x of shape (time, *input_shape) or batch 1", file=sys.stderr)
            return 2
        x = x[0]
    res = run_fixed_point(net, x)
    return _save_npz(out, {f"{name}.{k}": a for name, r in res.items() for k, a in r.items()}, inputs=[folder, x_path], force=force)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 3 and argv[0] == "batch":
        return _batch(Path(argv[1]), Path(argv[2]))
    if len(argv) >= 4 and argv[0] == "run" and argv[4:] in ([], ["--force"]):
        return _run_folder(Path(argv[1]), Path(argv[2]), Path(argv[3]), force=argv[4:] == ["--force"])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
