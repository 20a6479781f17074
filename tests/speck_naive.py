"""Plain-Python oracles for the Speck simulators, written from the semantics in
targets/speck/sim.py's docstring with one loop per event and per time bin and no vectorization,
so that the fast numpy simulators can be compared with something obviously right. Slow: small
networks only. Also a generator of random SpeckNetworks that exercises what the fast paths must
get right (weights above the threshold, signed weights, biases on slow-clock ticks, lower
bounds, narrow state formats that saturate or wrap, branches, merges, pooling that drops
addresses, Linear layers)."""

from __future__ import annotations

import numpy as np

from nirdeploy_targets.speck.config import INPUT, SpeckLayer, SpeckNetwork
from nirdeploy_targets.speck.sim import _finish

__all__ = ["naive_events", "naive_binned", "random_network"]


def _targets(l: SpeckLayer, y: int, x: int):
    """(ky, kx, oy, ox) of every kernel tap through which an input event at (y, x) reaches a neuron."""
    _, H, W = l.neuron_shape
    kh, kw = l.kernel
    for ky in range(kh):
        for kx in range(kw):
            ny, nx = y + l.padding[0] - ky, x + l.padding[1] - kx
            if ny % l.stride[0] or nx % l.stride[1]:
                continue
            oy, ox = ny // l.stride[0], nx // l.stride[1]
            if 0 <= oy < H and 0 <= ox < W:
                yield ky, kx, oy, ox


def naive_events(net: SpeckNetwork, x, *, state_format, spike_test=">=", state_overflow="saturate", ticks_per_step=1, states=False):
    """Event by event: per sample and bin, the roots (slow-clock ticks, then the input events in
    raster order, a count n giving n events) are followed through every layer in turn; a layer
    takes its tick first, then the events its sources emitted for the same root (source order,
    then emission order); each event updates its projective field (add, saturate or wrap, fire
    at most once, reset, clamp at the lower bound) and the spikes leave in neuron order. With
    ``states``: also {layer: (B, T, C, H, W) membrane state after each bin}."""
    x = np.asarray(x, dtype=np.int64)
    B, T = x.shape[:2]
    x = x.reshape((B, T) + tuple(net.input_shape))
    lo_s, hi_s, bits = state_format.min, state_format.max, state_format.bits
    ticks = {l.name: (ticks_per_step if l.has_bias and np.any(l.bias != 0) else 0) for l in net.layers}
    n_ticks = max(ticks.values(), default=0)
    out_l = net.layer(net.output_layer)
    counts = np.zeros((B, T) + tuple(out_l.neuron_shape), dtype=np.int64)
    rec = {l.name: np.zeros((B, T) + tuple(l.neuron_shape), dtype=np.int64) for l in net.layers}

    def update(l, V, c, y, xx, w) -> bool:
        v = int(V[c, y, xx]) + int(w)
        if state_overflow == "wrap":
            v = ((v - lo_s) % (1 << bits)) + lo_s
        else:
            v = min(max(v, lo_s), hi_s)
        fire = v >= l.threshold_high if spike_test == ">=" else v > l.threshold_high
        if fire:
            v = 0 if l.return_to_zero else v - l.threshold_high
        V[c, y, xx] = max(v, l.threshold_low)
        return fire

    for b in range(B):
        V = {l.name: np.zeros(l.neuron_shape, dtype=np.int64) for l in net.layers}
        for t in range(T):
            roots = [("tick", j) for j in range(n_ticks)]
            for c, y, xx in zip(*np.nonzero(x[b, t])):
                roots += [("event", (int(c), int(y), int(xx)))] * int(x[b, t, c, y, xx])
            for kind, what in roots:
                emitted = {INPUT: [what] if kind == "event" else []}
                for l in net.layers:
                    seq = []
                    C, H, W = l.neuron_shape
                    if kind == "tick" and what < ticks[l.name]:
                        for c in range(C):
                            if l.bias[c] != 0:
                                for y in range(H):
                                    for xx in range(W):
                                        if update(l, V[l.name], c, y, xx, l.bias[c]):
                                            seq.append((c, y, xx))
                    for src, pool in l.sources:
                        for c, y, xx in emitted[src]:
                            y, xx = y // pool, xx // pool
                            if y >= l.input_shape[1] or xx >= l.input_shape[2]:
                                continue
                            fired = []
                            for ky, kx, oy, ox in _targets(l, y, xx):
                                for co in range(C):
                                    if update(l, V[l.name], co, oy, ox, l.weight[co, c, ky, kx]):
                                        fired.append((co, oy, ox))
                            seq += sorted(fired)
                    emitted[l.name] = seq
                for c, y, xx in emitted[net.output_layer]:
                    counts[b, t, c, y, xx] += 1
            for l in net.layers:
                rec[l.name][b, t] = V[l.name]
    return (_finish(net, counts), rec) if states else _finish(net, counts)


def naive_binned(net: SpeckNetwork, x, *, spikes="multi"):
    """sinabs' time-binned forward, one neuron at a time: per bin, I = conv(sum of the sources'
    sum-pooled spikes) + bias; v += I; MultiSpike floor(v / th) spikes where v > 0 (SingleSpike: one
    where v >= th); subtract them (or return to zero); clamp at the lower bound."""
    x = np.asarray(x, dtype=np.int64)
    B, T = x.shape[:2]
    outs = {INPUT: x.reshape((B, T) + tuple(net.input_shape))}
    for l in net.layers:
        C, H, W = l.neuron_shape
        spk = np.zeros((B, T, C, H, W), dtype=np.int64)
        for b in range(B):
            v = np.zeros((C, H, W), dtype=np.int64)
            for t in range(T):
                cur = np.repeat(l.bias, H * W).reshape(C, H, W).copy()
                for src, pool in l.sources:
                    s = outs[src][b, t]
                    for c, y, xx in zip(*np.nonzero(s)):
                        y2, x2 = y // pool, xx // pool
                        if y2 >= l.input_shape[1] or x2 >= l.input_shape[2]:
                            continue
                        for ky, kx, oy, ox in _targets(l, y2, x2):
                            cur[:, oy, ox] += s[c, y, xx] * l.weight[:, c, ky, kx]
                v += cur
                for c, y, xx in np.ndindex(C, H, W):
                    z = (v[c, y, xx] // l.threshold_high if v[c, y, xx] > 0 else 0) if spikes == "multi" else int(v[c, y, xx] >= l.threshold_high)
                    if z:
                        v[c, y, xx] = 0 if l.return_to_zero else v[c, y, xx] - z * l.threshold_high
                    spk[b, t, c, y, xx] = z
                np.maximum(v, l.threshold_low, out=v)
        outs[l.name] = spk
    return _finish(net, outs[net.output_layer])


def random_network(rng, *, bias=True, branches=True) -> SpeckNetwork:
    """A random integer network: 1-4 layers, small maps, thresholds of a few units, signed weights
    that reach past the threshold, optional biases, a second source (merge) and pooling by 2 on
    odd maps (the last address dropped), and sometimes a Linear read-out."""
    c_in = int(rng.integers(1, 3))
    side = int(rng.integers(4, 8))
    shape = (c_in, side, side)
    layers: list[SpeckLayer] = []
    avail = [(INPUT, shape)]
    for i in range(int(rng.integers(1, 5))):
        src, (sc, sh, sw) = avail[int(rng.integers(len(avail)))] if branches else avail[-1]
        pool = 2 if min(sh, sw) >= 4 and rng.random() < 0.3 and src != INPUT else 1
        in_shape = (sc, sh // pool, sw // pool)
        sources = [(src, pool)]
        if branches and rng.random() < 0.3:  # a second source of the same pooled shape
            same = [n for n, s in avail if n not in (src, INPUT) and (s[0], s[1] // pool, s[2] // pool) == in_shape]
            if same:
                sources.append((same[0], pool))
        k = int(rng.integers(1, min(in_shape[1:]) + 1)) if rng.random() < 0.8 else 1
        k = min(k, 3)
        stride = int(rng.choice([1, 2])) if min(in_shape[1:]) > k + 1 else 1
        pad = int(rng.integers(0, k // 2 + 1))
        c_out = int(rng.integers(1, 4))
        ho, wo = (in_shape[1] + 2 * pad - k) // stride + 1, (in_shape[2] + 2 * pad - k) // stride + 1
        th = int(rng.integers(2, 12))
        w = rng.integers(-th, 2 * th + 1, (c_out, in_shape[0], k, k))
        b = rng.integers(-2, 3, c_out) * (rng.random(c_out) < 0.5) if bias and rng.random() < 0.5 else np.zeros(c_out, np.int64)
        low = int(rng.choice([-32768, -th, -2 * th, -1]))
        layers.append(SpeckLayer(f"l{i}", w, b, th, low, bool(rng.random() < 0.4), (stride, stride), (pad, pad), in_shape,
                                 (c_out, ho, wo), sources, core=i, has_bias=bool(np.any(b != 0))))
        avail.append((f"l{i}", (c_out, ho, wo)))
    last = layers[-1]
    return SpeckNetwork(layers, shape, last.name, 1, tuple(last.neuron_shape))
