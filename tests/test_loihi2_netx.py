"""Opt-in: lava-dl's netx loads nirdeploy's ``network.net`` (dense, dense_rec, conv and flatten
layers, synaptic delays) and runs it (Lava fixed-point, CPU) with spikes identical to nirdeploy's simulator.

lava-dl 0.6.0 drags a 5.6 GB CUDA torch into its environment, so this is not part of the normal
suite (the format round trips are: test_loihi2_target.py::test_netx_export_*). To run it::

    bash scripts/netx_env.sh
    NIRDEPLOY_NETX_PYTHON=.venv-netx/bin/python python -m pytest -q tests/test_loihi2_netx.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np
import pytest

import nirdeploy
from nirdeploy_targets.loihi2.target import NETX_FILE

from conftest import CORPUS
from graphs import delay_graph, ff_graph

NETX_PY = os.path.abspath(os.environ["NIRDEPLOY_NETX_PYTHON"]) if os.environ.get("NIRDEPLOY_NETX_PYTHON") else None
pytestmark = pytest.mark.skipif(not NETX_PY, reason="opt-in (5.6 GB lava-dl environment): bash scripts/netx_env.sh, then set "
                                "NIRDEPLOY_NETX_PYTHON=.venv-netx/bin/python")

RUNNER = r"""
import sys, numpy as np
from lava.lib.dl import netx
from lava.proc.io.source import RingBuffer as Source
from lava.proc.io.sink import RingBuffer as Sink
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.run_conditions import RunSteps

def main():
    path, xin, out = sys.argv[1:4]
    x = np.load(xin)                       # (T, *input_shape); (C, H, W) inputs in nirdeploy's order
    T = x.shape[0]
    net = netx.hdf5.Network(net_config=path)
    if x.ndim == 4:                        # Lava's conv layers take (W, H, C)
        x = x.transpose(0, 3, 2, 1)
    src = Source(data=np.moveaxis(x.reshape((T,) + tuple(net.inp.shape)), 0, -1).astype(float))
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sk = Sink(shape=layer.out.shape, buffer=T)
        layer.out.connect(sk.a_in)
        sinks.append(sk)
    net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    spikes = [np.asarray(s.data.get()) for s in sinks]  # (*shape, T); (W, H, C, T) for conv layers
    net.stop()
    np.savez(out, *[np.moveaxis(s.transpose(2, 1, 0, 3) if s.ndim == 4 else s, -1, 0).reshape(T, -1) for s in spikes])

if __name__ == "__main__":
    main()
"""


CASES = {
    "dense_chain_5": lambda: (ff_graph(n_in=20, n_hid=12, n_out=4, seed=5, scale=1.5), 1e-3, 120, 0.3),
    "dense_chain_6": lambda: (ff_graph(n_in=20, n_hid=12, n_out=4, seed=6, scale=1.5), 1e-3, 120, 0.3),
    "dense_rec": lambda: (ff_graph(n_in=20, n_hid=12, n_out=4, seed=5, scale=1.5, recurrent=True), 1e-3, 120, 0.3),
    "braille_rec_bias": lambda: (CORPUS / "braille_noDelay_bias_zero.nir", 1e-4, 120, 0.3),
    "cnn_conv_flatten": lambda: (CORPUS / "cnn_sinabs.nir", 1.0, 25, 0.2),
    "dense_delays": lambda: (delay_graph("post", steps=(0, 1, 2, 3, 5, 7)), 1e-4, 120, 0.3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_netx_loads_and_runs_our_export(tmp_path, case):
    """Every layer's spikes in netx (lava-dl 0.6.0, Lava fixed point) equal nirdeploy's simulator:
    dense chains, dense_rec (recurrent) layers with biases, conv layers with a flatten, and a dense
    layer with synaptic delays (netx's DelayDense)."""
    g, dt, T, rate = CASES[case]()
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(g, target="loihi2", dt=dt, target_options={"loihi_mode": "netx"}, out=out)
    assert (out / NETX_FILE).is_file()
    net = dep.artifact.payload.network
    x = np.random.default_rng(len(case)).binomial(1, rate, (1, T) + net.input_shape)
    ours = dep.simulate(x, record=True).states
    np.save(tmp_path / "x.npy", x[0])
    (tmp_path / "run_netx.py").write_text(RUNNER)
    r = subprocess.run([NETX_PY, str(tmp_path / "run_netx.py"), str(out / NETX_FILE), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
                       capture_output=True, text=True, timeout=900, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(tmp_path / "y.npz") as z:
        lava = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    names = [L.name for L in net.layers]
    assert len(lava) == len(names)
    for name, s in zip(names, lava):
        assert np.array_equal(s.astype(np.int64), ours[name]["s"][0].reshape(T, -1)), name
    assert sum(int(s.sum()) for s in lava) > 0
