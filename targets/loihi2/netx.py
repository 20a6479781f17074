"""lava-dl netx HDF5 export (``network.net``) and reader, with h5py only.

Format facts (``shared/chips/loihi2.md`` section 6, lava-dl 0.6.0 ``netx/hdf5.py``): groups
``/layer/<i>`` for i = 0..n-1, a sequential chain. A ``dense`` layer holds ``type`` (fixed-length
bytes), ``shape`` = [n_out], ``weight`` (n_out, n_in) integers, optional ``bias`` (per neuron, in
bias_mant units with bias_exp 6), and ``neuron/{type, iDecay, vDecay, vThMant, refDelay,
gradedSpike}`` with netx's mapping ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``.
netx re-derives each matrix's ``weight_exp``/``num_weight_bits``/sign mode from the integers
(``optimize_weight_bits``: it can only shift weights left, i.e. ``weight_exp <= 0``).

So a layer is written only when netx reproduces it exactly: every Dense synapse's effective
integers ``w << weight_exp`` lie in -256..255 (even numbers for a mixed-sign matrix), every bias
``bias_mant << bias_exp`` is a multiple of 64 within 13 bits after dividing, and the network is a
chain (layer i fed only by layer i-1, the first by the input; no recurrence; spiking readout).
Otherwise :class:`NetxUnsupported` says which rule fails; ``-T loihi_mode=netx`` lowers with
those constraints from the start.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import INPUT, Loihi2Network, NeuronLayer, Synapse

__all__ = ["NetxUnsupported", "write_netx", "read_netx", "netx_problems"]


class NetxUnsupported(ValueError):
    """The network cannot be written as an exact netx file (the message says why)."""


def _dense_ints(s: Synapse) -> np.ndarray:
    w = s.effective()
    return w << s.weight_exp if s.weight_exp >= 0 else w >> -s.weight_exp


def netx_problems(net: Loihi2Network) -> list[str]:
    """Why ``net`` cannot be written exactly as netx (empty: it can)."""
    probs = []
    if net.readout != "spikes":
        probs.append("netx networks output spikes; this one reads a voltage")
    for i, L in enumerate(net.layers):
        if len(L.synapses) != 1 or L.synapses[0].src != (INPUT if i == 0 else i - 1):
            probs.append(f"layer {L.name} is not fed by exactly the previous layer (netx files are chains without recurrence)")
            continue
        s = L.synapses[0]
        if s.kind != "dense":
            probs.append(f"layer {L.name}: {s.kind} synapses are not written to netx here (Dense only)")
            continue
        if s.weight_exp < 0 and np.any(s.effective() % (1 << -s.weight_exp)):
            probs.append(f"layer {L.name}: weights with weight_exp {s.weight_exp} are finer than netx's integer weights")
            continue
        w = _dense_ints(s)
        if w.size and (w.min() < -256 or w.max() > 255):
            probs.append(f"layer {L.name}: weights << weight_exp {s.weight_exp} leave netx's 8-bit range -256..255")
        elif w.size and w.min() < 0 < w.max() and np.any(w % 2):
            probs.append(f"layer {L.name}: a mixed-sign matrix with odd weights loses their lowest bit in netx")
        b = L.effective_bias()
        if np.any(b % 64) or np.any(np.abs(b // 64) > 4095):
            probs.append(f"layer {L.name}: biases are not multiples of 64 within 13 bits (netx fixes bias_exp at 6)")
    if net.output != len(net.layers) - 1:
        probs.append("the output is not the last layer of the chain")
    return probs


def write_netx(net: Loihi2Network, path, dt: float | None = None) -> None:
    """Write ``net`` as a netx HDF5 file; raises :class:`NetxUnsupported` when it would not be exact."""
    import h5py

    probs = netx_problems(net)
    if probs:
        raise NetxUnsupported("; ".join(probs) + " (compile with -T loihi_mode=netx for a netx-exact lowering)")
    with h5py.File(Path(path), "w") as f:
        if dt is not None:
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=float(dt))
        lay = f.create_group("layer")
        for i, L in enumerate(net.layers):
            g = lay.create_group(str(i))
            g.create_dataset("type", data=np.bytes_("dense"), dtype="S10")
            g.create_dataset("shape", data=np.array([L.n], dtype=np.int64))
            g.create_dataset("inFeatures", data=np.int64(_dense_ints(L.synapses[0]).shape[1]))
            g.create_dataset("outFeatures", data=np.int64(L.n))
            g.create_dataset("weight", data=_dense_ints(L.synapses[0]).astype(np.float32))
            b = L.effective_bias() // 64
            if np.any(b):
                g.create_dataset("bias", data=b.astype(np.float32))
            nr = g.create_group("neuron")
            nr.create_dataset("type", data="CUBA", dtype=h5py.string_dtype())
            nr.create_dataset("iDecay", data=np.int64(L.du + 1))
            nr.create_dataset("vDecay", data=np.int64(L.dv))
            nr.create_dataset("vThMant", data=np.int64(L.vth))
            nr.create_dataset("refDelay", data=np.int64(1))
            nr.create_dataset("gradedSpike", data=np.bool_(False))


def read_netx(path) -> Loihi2Network:
    """Read a dense-chain netx file (as :func:`write_netx` writes) back into a network whose
    synapses carry the integers netx loads (weight_exp 0, sign mode inferred as netx does)."""
    import h5py

    layers = []
    with h5py.File(Path(path), "r") as f:
        grp = f["layer"]
        keys = sorted(grp.keys(), key=int)
        n_in = None
        for i, k in enumerate(keys):
            g = grp[k]
            t = g["type"][()]
            t = t.decode() if isinstance(t, bytes) else str(t)
            if t != "dense":
                raise ValueError(f"layer {k}: type {t!r}; only dense layers are read")
            w = np.asarray(g["weight"][()])
            if not np.all(w == np.round(w)):
                raise ValueError(f"layer {k}: weights are not integers")
            w = w.astype(np.int64)
            if i == 0:
                n_in = w.shape[1]
            nr = g["neuron"]
            n = int(np.prod(g["shape"][()]))
            bias = np.asarray(g["bias"][()]).astype(np.int64) if "bias" in g else np.zeros(n, np.int64)
            layers.append(NeuronLayer(str(k), (n,), int(nr["iDecay"][()]) - 1, int(nr["vDecay"][()]), int(nr["vThMant"][()]), bias,
                                      np.full(n, 6), [Synapse(INPUT if i == 0 else i - 1, "dense", w, 0, 8, None)]))
    return Loihi2Network((int(n_in),), layers, len(layers) - 1, "spikes")
