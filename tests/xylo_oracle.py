"""Adapter that runs an :class:`XyloConfig` on SynSense's ``xylosim.v2.XyloLayer`` (the oracle).

Used by ``tests/test_xylo_sim_oracle.py`` and ``benchmarks/bench_xylo_sim.py``. xylosim is an
optional dependency; :func:`require_xylosim` skips a test when it is missing, but fails it when
``NIRDEPLOY_REQUIRE_ORACLES=1`` (CI) so a missing oracle can never pass as green.

Facts about the oracle this adapter relies on (xylosim 0.1.3):

* ``XyloSynapse`` objects are held by raw pointer: the Python objects must stay alive as long as
  the layer, or ``evolve`` reads freed memory (segfault). :class:`OracleNetwork` keeps them.
* ``evolve`` continues from the current state; ``reset_all()`` is needed between samples.
* Inputs are converted to ``uint8``: counts must be at most 255.
* ``rec_v_mem`` etc. are lists (per neuron) of lists (per step); ``rec_i_syn2`` stays empty
  with one synapse; ``rec_recurrent_spikes`` / the return value are (time, neurons).
"""

from __future__ import annotations

import os

import numpy as np


def require_xylosim():
    """Return ``xylosim.v2``; skip when missing, fail when NIRDEPLOY_REQUIRE_ORACLES=1."""
    import pytest

    try:
        from xylosim import v2  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        if os.environ.get("NIRDEPLOY_REQUIRE_ORACLES") == "1":
            pytest.fail(f"xylosim is required (NIRDEPLOY_REQUIRE_ORACLES=1) but cannot be imported: {e}")
        pytest.skip(f"xylosim not installed: {e}")
    return v2


class OracleNetwork:
    """One ``XyloLayer`` built from an XyloConfig (keeps the synapse objects alive)."""

    def __init__(self, cfg, v2=None):
        if v2 is None:
            from xylosim import v2  # noqa: PLC0415
        S = v2.XyloSynapse
        nh, ns, no = cfg.n_hidden, cfg.n_syn, cfg.n_out

        def syn_lists(W):  # W: (pre, post, syn) -> per pre: syn 0 targets ascending, then syn 1
            out = []
            for i in range(W.shape[0]):
                row = []
                for k in range(W.shape[2]):
                    for j in np.flatnonzero(W[i, :, k]):
                        row.append(S(int(j), int(k), int(W[i, j, k])))
                out.append(row)
            return out

        self._keep = (
            syn_lists(cfg.weights_in),
            syn_lists(cfg.weights_rec),
            syn_lists(cfg.weights_out[:, :, None]),
        )
        dash_syns = [[int(cfg.dash_syn[j])] + ([int(cfg.dash_syn_2[j])] if ns == 2 else []) for j in range(nh)]
        self.layer = v2.XyloLayer(
            *self._keep,
            [[int(a) for a in al] for al in cfg.aliases],
            [int(v) for v in cfg.threshold],
            [int(v) for v in cfg.threshold_out],
            bool(cfg.bias_enable),
            [int(v) for v in cfg.bias],
            [int(v) for v in cfg.bias_out],
            int(cfg.weight_shift_in),
            int(cfg.weight_shift_rec),
            int(cfg.weight_shift_out),
            [int(v) for v in cfg.dash_mem],
            [int(v) for v in cfg.dash_mem_out],
            dash_syns,
            [[int(v)] for v in cfg.dash_syn_out],
            "oracle",
        )
        self.nh, self.ns, self.no = nh, ns, no

    def run_one(self, x: np.ndarray, record: bool = True) -> dict:
        """One sample (time, n_in) from reset; returns arrays (time, ...)."""
        lay = self.layer
        lay.reset_all()
        T = x.shape[0]
        out = np.asarray(lay.evolve(np.asarray(x, dtype=np.int64).tolist()), dtype=np.int64).reshape(T, self.no)
        res = {"spikes_out": out}
        if record:
            def tn(rec, n):
                return np.asarray(rec, dtype=np.int64).reshape(n, T).T

            res["Vmem"] = tn(lay.rec_v_mem, self.nh)
            res["Isyn"] = tn(lay.rec_i_syn, self.nh)
            if self.ns == 2:
                res["Isyn2"] = tn(lay.rec_i_syn2, self.nh)
            res["Spikes"] = np.asarray(lay.rec_recurrent_spikes, dtype=np.int64).reshape(T, self.nh)
            res["Vmem_out"] = tn(lay.rec_v_mem_out, self.no)
            res["Isyn_out"] = tn(lay.rec_i_syn_out, self.no)
        return res

    def run(self, x: np.ndarray, record: bool = True) -> dict:
        """Batch (batch, time, n_in): one reset run per sample, stacked to (batch, time, ...)."""
        runs = [self.run_one(xb, record) for xb in np.asarray(x)]
        return {k: np.stack([r[k] for r in runs]) for k in runs[0]}
