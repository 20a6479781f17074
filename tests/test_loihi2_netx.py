"""Opt-in: lava-dl's netx loads nirdeploy's ``network.net`` and runs it (Lava fixed-point, CPU)
with spikes identical to nirdeploy's simulator.

lava-dl 0.6.0 drags a 5.6 GB CUDA torch into its environment, so this is not part of the normal
suite (the format round trip is: test_loihi2_target.py::test_netx_export_round_trips). To run it::

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

from graphs import ff_graph

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
    x = np.load(xin)                       # (T, n_in)
    T = x.shape[0]
    net = netx.hdf5.Network(net_config=path)
    src = Source(data=x.T.astype(float))
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sk = Sink(shape=layer.out.shape, buffer=T)
        layer.out.connect(sk.a_in)
        sinks.append(sk)
    net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    spikes = [np.asarray(s.data.get()).T for s in sinks]
    net.stop()
    np.savez(out, *spikes)

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("seed", [5, 6])
def test_netx_loads_and_runs_our_export(tmp_path, seed):
    g = ff_graph(n_in=20, n_hid=12, n_out=4, seed=seed, scale=1.5)
    out = tmp_path / "OUT"
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-3, target_options={"loihi_mode": "netx"}, out=out)
    assert (out / NETX_FILE).is_file()
    x = np.random.default_rng(seed).binomial(1, 0.3, (1, 120, 20))
    ours = dep.simulate(x, record=True).states
    np.save(tmp_path / "x.npy", x[0])
    (tmp_path / "run_netx.py").write_text(RUNNER)
    r = subprocess.run([NETX_PY, str(tmp_path / "run_netx.py"), str(out / NETX_FILE), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
                       capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(tmp_path / "y.npz") as z:
        lava = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    names = [L.name for L in dep.artifact.payload.network.layers]
    assert len(lava) == len(names) == 2
    for name, s in zip(names, lava):
        assert np.array_equal(s.astype(np.int64), ours[name]["s"][0]), name
    assert sum(int(s.sum()) for s in lava) > 0
