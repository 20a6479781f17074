"""lava-dl netx HDF5 export (``network.net``) and reader, with h5py only.

Format facts (``shared/chips/loihi2.md`` section 6; read in lava-dl 0.6.0 ``netx/hdf5.py``,
``netx/utils.py`` and ``netx/blocks/process.py``): groups ``/layer/<i>`` for i = 0..n-1 form a
sequential chain; netx reads ``type`` as a fixed-length ASCII string and these keys:

* ``input``: ``shape`` (C, H, W) stored, netx reverses it to (W, H, C); without a ``neuron`` group
  it only sets the input shape of a following ``conv``;
* ``conv``: ``shape`` (C, H, W), ``weight`` (out, in/groups, kh, kw) in PyTorch's
  cross-correlation layout (netx flips and transposes it into Lava's convolution), ``stride``,
  ``padding``, ``dilation`` as (y, x) pairs, ``groups``, optional ``bias`` (per channel, or per
  neuron in (W, H, C) order), ``neuron``; Lava's Conv uses the integers as given (no exponent,
  no clipping; output wrapped at 24 bits);
* ``flatten``: the next dense layer reads the previous (W, H, C) output transposed to (C, H, W)
  and flattened, i.e. in nirdeploy's (C, H, W) order;
* ``dense``: ``shape`` [n_out], ``weight`` (n_out, n_in), optional ``bias`` (per neuron) and
  ``delay`` (synaptic delays in steps, clamped to 0..62; netx then builds a ``DelayDense``),
  ``neuron``; ``dense_rec`` adds ``weight_rec`` (n_out, n_out), a recurrent Dense of the layer's own
  spikes (lava-dl PR #324; with delays netx would drop its weight exponent, so none are written);
* ``neuron``: ``type`` CUBA, ``iDecay`` (du = iDecay - 1), ``vDecay`` (dv), ``vThMant`` (vth),
  ``refDelay``, ``gradedSpike``; biases are ``bias_mant`` with ``bias_exp`` 6.

A dense layer's integers are not loaded as written: netx's ``optimize_weight_bits`` picks
``num_weight_bits`` and a left shift s (``weight_exp = -s``) from the matrix (for ``dense_rec``
from both matrices side by side), and Lava infers each matrix's sign mode and clips and truncates
it (:func:`.config.effective_weights`). :func:`netx_dense_synapses` re-implements that choice, so
:func:`read_netx` returns the network Lava builds, and :func:`netx_problems` accepts a layer only
when Lava's sums equal nirdeploy's for every input. Otherwise :class:`NetxUnsupported` says which
rule fails; ``-T loihi_mode=netx`` lowers with those constraints from the start.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .config import INPUT, Loihi2Network, NeuronLayer, Synapse, effective_weights, infer_sign_mode

__all__ = ["NetxUnsupported", "write_netx", "read_netx", "netx_problems", "netx_dense_synapses"]

NETX_BIAS_EXP = 6  # netx sets bias_exp 6 for every CUBA neuron
NETX_TYPES = ("input", "conv", "flatten", "dense", "dense_rec")
NETX_MAX_DELAY = 62  # netx clamps larger delays (hdf5.py create_dense)


class NetxUnsupported(ValueError):
    """The network cannot be written as an exact netx file (the message says why)."""


def netx_dense_synapses(weights: list[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """What netx loads for a dense layer's integer matrices (``[weight]`` or ``[weight,
    weight_rec]``, read side by side): (the matrices shifted left by s, num_weight_bits,
    weight_exp = -s), following lava-dl 0.6.0 ``optimize_weight_bits``. Raises ValueError where
    netx itself fails (an all-zero matrix: it divides by the largest weight)."""
    cat = np.hstack([np.asarray(w, dtype=np.int64) for w in weights])
    hi, lo = int(cat.max()), int(cat.min())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        cat = np.clip(cat, -256, 254)  # netx prints a warning and clips
        hi, lo = int(cat.max()), int(cat.min())
    if hi < 0:
        scale, signed = -256 / lo, 0
    elif lo >= 0:
        if hi == 0:
            raise ValueError("an all-zero weight matrix (netx's optimize_weight_bits divides by the largest weight)")
        scale, signed = 255 / hi, 0
    else:
        scale, signed = min(127 / hi if hi > 0 else math.inf, -128 / lo), 1
    s = int(math.floor(math.log2(scale))) + signed
    if s < 0:
        raise ValueError(f"weights up to {hi} exceed netx's 8-bit range (netx would shift them right)")
    n = 8
    while n > 0 and np.any(cat % (1 << n)):  # the largest power of two dividing every weight (8 at most)
        n -= 1
    nb = 8 - s - (n - signed)
    out, k = [], 0
    for w in weights:
        out.append(cat[:, k:k + w.shape[1]] << s)
        k += w.shape[1]
    return out, nb, -s


def _activation(w: np.ndarray, exp: int) -> np.ndarray:
    """Per-input integer contributions whose sums equal ``floor(sum(w) * 2**exp)`` for every
    input set, or None when no integer matrix does (a negative exponent over non-multiples)."""
    if exp >= 0:
        return w << exp
    if np.any(w % (1 << -exp)):
        return None
    return w >> -exp


def _exact_in_netx(syns: list[Synapse]) -> str | None:
    """Why netx would not load these dense synapses (feed-forward, then recurrent) exactly."""
    files = []
    for s in syns:
        a = _activation(s.effective(), s.weight_exp)
        if a is None:
            return f"weights with weight_exp {s.weight_exp} are finer than netx's integer weights"
        if a.size and (a.min() < -256 or a.max() > 255):
            return f"weights << weight_exp {s.weight_exp} span {int(a.min())}..{int(a.max())}, beyond netx's 8-bit range -256..255"
        files.append(a)
    try:
        loaded, nb, exp = netx_dense_synapses(files)
    except ValueError as e:
        return str(e)
    if not 1 <= nb <= 8:
        return f"netx would choose {nb} weight bits"
    for want, w in zip(files, loaded):
        # Lava sums effective_weights(w) and shifts the sum right by -exp: exact iff that keeps w and w = want << -exp
        if not (np.array_equal(effective_weights(w, infer_sign_mode(w), nb), w) and np.array_equal(w, want << -exp)):
            return "netx's weight scaling or Lava's sign-mode clipping would change these weights (e.g. -256 in an all-negative matrix)"
    return None


def _bias_problem(L: NeuronLayer) -> str | None:
    b = L.effective_bias()
    if np.any(b % (1 << NETX_BIAS_EXP)) or np.any(np.abs(b >> NETX_BIAS_EXP) > 4095):
        return f"biases are not multiples of 64 within 13 bits (netx fixes bias_exp at {NETX_BIAS_EXP})"
    return None


def netx_problems(net: Loihi2Network) -> list[str]:
    """Why ``net`` cannot be written exactly as netx (empty: it can)."""
    probs = []
    if net.readout != "spikes":
        probs.append("netx networks output spikes; this one reads a voltage")
    if net.output != len(net.layers) - 1:
        probs.append("the output is not the last layer of the chain")
    split = sorted({L.origin for L in net.layers if L.origin})
    for o in split:
        probs.append(f"layer {o} runs as {sum(L.origin == o for L in net.layers)} LIF processes (one per time constant); a netx layer has "
                     "one iDecay and vDecay")
    if split:
        return probs
    flat = False  # a dense layer has been seen: no conv may follow
    for i, L in enumerate(net.layers):
        prev = INPUT if i == 0 else i - 1
        ff = [s for s in L.synapses if s.src == prev]
        rec = [s for s in L.synapses if s.src == i]
        if len(ff) != 1 or len(rec) > 1 or len(ff) + len(rec) != len(L.synapses):
            probs.append(f"layer {L.name} is not fed by exactly the previous layer (and at most one recurrent Dense): netx files are chains")
            continue
        s = ff[0]
        if s.kind == "conv":
            if rec:
                probs.append(f"layer {L.name}: netx has no recurrent conv layer")
            elif flat:
                probs.append(f"layer {L.name}: netx cannot convolve the output of a dense layer")
            elif s.weight_exp != 0:
                probs.append(f"layer {L.name}: netx's Conv has no weight exponent")
        else:
            flat = True
            why = _exact_in_netx(ff + rec)
            if why:
                probs.append(f"layer {L.name}: {why}")
            if rec and (s.delay is not None or rec[0].delay is not None):
                probs.append(f"layer {L.name}: netx's recurrent layer with delays (RecurrentDense) drops the weight exponent")
            elif s.max_delay > NETX_MAX_DELAY:
                probs.append(f"layer {L.name}: a synaptic delay of {s.max_delay} steps; netx clamps delays to {NETX_MAX_DELAY}")
        why = _bias_problem(L)
        if why:
            probs.append(f"layer {L.name}: {why}")
    return probs


def _str(g, key: str, value: str) -> None:
    g.create_dataset(key, data=np.bytes_(value), dtype=f"S{max(10, len(value))}")


def _neuron(g, L: NeuronLayer) -> None:
    import h5py

    nr = g.create_group("neuron")
    nr.create_dataset("type", data="CUBA", dtype=h5py.string_dtype())
    nr.create_dataset("iDecay", data=np.int64(L.du + 1))
    nr.create_dataset("vDecay", data=np.int64(L.dv))
    nr.create_dataset("vThMant", data=np.int64(L.vth))
    nr.create_dataset("refDelay", data=np.int64(1))
    nr.create_dataset("gradedSpike", data=np.bool_(False))


def _bias(g, L: NeuronLayer) -> None:
    b = L.effective_bias() >> NETX_BIAS_EXP
    if not np.any(b):
        return
    if len(L.shape) == 3:
        per = b.reshape(L.shape)
        ch = per.reshape(L.shape[0], -1)
        if np.all(ch == ch[:, :1]):
            b = ch[:, 0]  # one bias per channel
        else:
            b = per.transpose(2, 1, 0)  # per neuron, in Lava's (W, H, C) order
    g.create_dataset("bias", data=b.astype(np.float32))


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
        k = 0

        def group():
            nonlocal k
            g = lay.create_group(str(k))
            k += 1
            return g

        g = group()
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array(net.input_shape, dtype=np.int64))
        prev_conv = len(net.input_shape) == 3
        for i, L in enumerate(net.layers):
            s = next(x for x in L.synapses if x.src != i)
            rec = [x for x in L.synapses if x.src == i]
            if s.kind == "conv":
                g = group()
                _str(g, "type", "conv")
                g.create_dataset("shape", data=np.array(L.shape, dtype=np.int64))
                g.create_dataset("weight", data=s.weight.astype(np.float32))
                g.create_dataset("inChannels", data=np.int64(s.weight.shape[1] * s.groups))
                g.create_dataset("outChannels", data=np.int64(s.weight.shape[0]))
                g.create_dataset("kernelSize", data=np.array(s.weight.shape[2:], dtype=np.int64))
                for key, v in (("stride", s.stride), ("padding", s.padding), ("dilation", s.dilation)):
                    g.create_dataset(key, data=np.array(v, dtype=np.int64))
                g.create_dataset("groups", data=np.int64(s.groups))
                prev_conv = True
            else:
                if prev_conv:
                    _str(group(), "type", "flatten")
                    prev_conv = False
                files = [_activation(x.effective(), x.weight_exp) for x in [s] + rec]
                g = group()
                _str(g, "type", "dense_rec" if rec else "dense")
                g.create_dataset("shape", data=np.array([L.n], dtype=np.int64))
                g.create_dataset("inFeatures", data=np.int64(files[0].shape[1]))
                g.create_dataset("outFeatures", data=np.int64(L.n))
                g.create_dataset("weight", data=files[0].astype(np.float32))
                if rec:
                    g.create_dataset("weight_rec", data=files[1].astype(np.float32))
                if s.delay is not None:  # netx builds a DelayDense
                    g.create_dataset("delay", data=s.delay.astype(np.int64))
            _bias(g, L)
            _neuron(g, L)


def _ints(ds, what: str) -> np.ndarray:
    a = np.asarray(ds[()])
    if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
        raise ValueError(f"{what} does not hold integers")
    return a.astype(np.int64)


def _pair(ds) -> tuple[int, int]:
    a = np.asarray(ds[()]).astype(np.int64).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _netx_delay(g, shape: tuple[int, int]) -> np.ndarray:
    """A dense layer's ``delay`` as netx expands it: clamped to 0..62; a scalar for every synapse,
    a vector per output (n_out) or per input (n_in), or the full (n_out, n_in) matrix."""
    d = np.clip(_ints(g["delay"], "delay"), 0, NETX_MAX_DELAY)
    if d.ndim == 0:
        return np.full(shape, int(d))
    if d.ndim == 1 and d.size == shape[0]:
        return np.repeat(d.reshape(-1, 1), shape[1], axis=1)
    if d.ndim == 1 and d.size == shape[1]:
        return np.repeat(d.reshape(1, -1), shape[0], axis=0)
    if d.shape != shape:
        raise ValueError(f"delay of shape {d.shape} does not fit weights of shape {shape}")
    return d


def read_netx(path) -> Loihi2Network:
    """Read a netx file of the layer types :func:`write_netx` writes (``input``, ``conv``,
    ``flatten``, ``dense``, ``dense_rec``; CUBA neurons) into the network Lava builds from it:
    dense weights as netx's ``optimize_weight_bits`` scales them, sign modes inferred as Lava
    does (:func:`netx_dense_synapses`), delays as netx expands them. Raises ValueError for anything
    else (other layer or neuron types, delays outside dense layers, an input layer with neurons)
    or inconsistent shapes."""
    import h5py

    layers: list[NeuronLayer] = []
    input_shape: tuple[int, ...] | None = None
    with h5py.File(Path(path), "r") as f:
        grp = f["layer"]
        keys = sorted(grp.keys(), key=int)
        for k in keys:
            g = grp[k]
            t = g["type"][()]
            t = (t[0] if np.ndim(t) else t)
            t = t.decode("ascii") if isinstance(t, bytes) else str(t)
            if t not in NETX_TYPES:
                raise ValueError(f"layer {k}: type {t!r}; nirdeploy reads {', '.join(NETX_TYPES)}")
            if "delay" in g and t != "dense":
                raise ValueError(f"layer {k}: synaptic delays on a {t} layer are not read here")
            if t == "input":
                if "neuron" in g:
                    raise ValueError(f"layer {k}: an input layer with neurons (netx's Input block) is not read here")
                input_shape = tuple(int(v) for v in np.asarray(g["shape"][()]).ravel())
                continue
            if t == "flatten":
                continue
            src = INPUT if not layers else len(layers) - 1
            src_shape = input_shape if src == INPUT else layers[-1].shape
            shape = tuple(int(v) for v in np.asarray(g["shape"][()]).ravel())
            n = int(np.prod(shape))
            nr = g["neuron"]
            ntype = nr["type"][()]
            ntype = ntype.decode("ascii") if isinstance(ntype, bytes) else str(ntype)
            if ntype not in ("CUBA", "LOIHI"):
                raise ValueError(f"layer {k}: neuron type {ntype!r}; nirdeploy reads CUBA")
            if t == "conv":
                w = _ints(g["weight"], f"layer {k} weight")
                w = w.reshape(w.shape[:4])
                syns = [Synapse(src, "conv", w, 0, 8, None, _pair(g["stride"]), _pair(g["padding"]), _pair(g["dilation"]),
                                int(np.asarray(g["groups"][()]).ravel()[0]))]
                if src_shape is None or len(src_shape) != 3:
                    raise ValueError(f"layer {k}: a conv layer needs a (C, H, W) input")
            else:
                mats = [_ints(g["weight"], f"layer {k} weight").reshape(n, -1)]
                if t == "dense_rec":
                    mats.append(_ints(g["weight_rec"], f"layer {k} weight_rec").reshape(n, n))
                if src_shape is not None and int(np.prod(src_shape)) != mats[0].shape[1]:
                    raise ValueError(f"layer {k}: weight has {mats[0].shape[1]} inputs, the previous layer {int(np.prod(src_shape))} outputs")
                loaded, nb, exp = netx_dense_synapses(mats)
                delay = _netx_delay(g, loaded[0].shape) if "delay" in g else None
                syns = [Synapse(src, "dense", loaded[0], exp, nb, None, delay=delay)]
                if t == "dense_rec":
                    syns.append(Synapse(len(layers), "dense", loaded[1], exp, nb, None))
                if input_shape is None and not layers:
                    input_shape = (mats[0].shape[1],)
            bias = np.zeros(n, np.int64)
            if "bias" in g:
                b = _ints(g["bias"], f"layer {k} bias")
                if len(shape) == 3 and b.shape == shape[::-1]:
                    b = b.transpose(2, 1, 0)  # (W, H, C) -> (C, H, W)
                elif len(shape) == 3 and b.shape == (shape[0],):
                    b = np.repeat(b, n // shape[0])
                bias = b.reshape(-1)
            layers.append(NeuronLayer(str(k), shape, int(nr["iDecay"][()]) - 1, int(nr["vDecay"][()]), int(nr["vThMant"][()]), bias,
                                      np.full(n, NETX_BIAS_EXP), syns))
    if not layers:
        raise ValueError("the file holds no neuron layer")
    return Loihi2Network(input_shape, layers, len(layers) - 1, "spikes")
