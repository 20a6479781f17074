"""Speck simulators (numpy, batched): an event-driven one with the chip's integer semantics and a
time-binned one equal to sinabs' forward.

Input ``x``: (batch, time, *input_shape) non-negative integer event counts per time bin.
Output: (batch, time, *output_shape) spike counts of the output layer per bin (several per bin are
possible in both modes).

**Time-binned mode** (``simulate_binned``): sinabs' ``DynapcnnLayer`` forward on the integer
parameters (speck.md section 6): per bin and layer, I = conv(sum of the sources' sum-pooled spikes)
+ bias; v += I; spikes = floor(v / threshold_high) where v > 0 (MultiSpike; SingleSpike: 1 where
v >= threshold_high); subtract spikes * threshold_high (or return to zero where a spike fired);
then clamp v >= threshold_low. No 16-bit saturation and no event order, as in sinabs.

**Event-driven mode** (``simulate_events``): speck.md section 6 and 7. Each input event updates
every neuron of its projective field, one at a time: ``v += w`` (w may be 0), saturate to the state
format (or wrap: option ``state_overflow``), fire at most one spike when ``v >= threshold_high``
(option ``spike_test``), subtract the threshold or return to zero, clamp at ``threshold_low``.
The bias is added on slow-clock ticks (``ticks_per_step`` per bin, before the bin's events; a tick
updates every neuron like an event of weight ``bias[c]`` and may make it fire). Sum pooling divides
event addresses (x // k, y // k); addresses past the last full window are dropped, as in sinabs.

Event order, which the chip's documentation does not fix (speck.md section 7), is defined so that
results are reproducible: the events of one input bin arrive in raster order (channel, y, x), a
count n giving n consecutive events; an output spike inherits the position of the event that
caused it (zero latency), spikes caused by one event leave in neuron order (channel, y, x), and
events a layer receives from several sources are ordered by the input event that caused them,
then by source (in the layer's source order), then by their order in the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nirdeploy.backend.intformat import IntFormat
from nirdeploy.errors import UsageError
from nirdeploy.sim.reference import conv_nd

from .config import INPUT, SpeckLayer, SpeckNetwork

__all__ = ["SpeckSimResult", "simulate_binned", "simulate_events", "sum_pool"]


@dataclass
class SpeckSimResult:
    output: np.ndarray  # (batch, time, *output_shape) spike counts
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # layer -> {"v", "spikes"}: (B, T, C, H, W)


def sum_pool(x: np.ndarray, k: int) -> np.ndarray:
    """Sum pooling over the last two axes with kernel = stride = k (partial windows dropped)."""
    if k == 1:
        return x
    H, W = x.shape[-2] // k, x.shape[-1] // k
    x = x[..., : H * k, : W * k]
    return x.reshape(x.shape[:-2] + (H, k, W, k)).sum(axis=(-3, -1))


def _prepare_input(net: SpeckNetwork, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise UsageError(f"input must be (batch, time, ...), got shape {x.shape}")
    B, T = x.shape[:2]
    if int(np.prod(x.shape[2:])) != int(np.prod(net.input_shape)):
        raise UsageError(f"input has shape {x.shape}; expected (batch, time) + a map of {net.input_shape}")
    x = x.reshape((B, T) + tuple(net.input_shape))
    if x.dtype.kind == "f":
        if np.any(x != np.round(x)):
            raise UsageError("Speck input must be integer event counts")
    if np.any(x < 0):
        raise UsageError("Speck input must be non-negative event counts")
    return x.astype(np.int64)


def _finish(net: SpeckNetwork, counts: np.ndarray) -> np.ndarray:
    """(B, T, C, H, W) counts of the output layer -> host-side pooling -> graph output shape."""
    y = sum_pool(counts, net.output_pool)
    B, T = y.shape[:2]
    if net.output_shape and int(np.prod(net.output_shape)) == int(np.prod(y.shape[2:])):
        return y.reshape((B, T) + tuple(net.output_shape))
    return y


# -------------------------------------------------------------------------------------------------
# time-binned (sinabs) mode
# -------------------------------------------------------------------------------------------------
def simulate_binned(net: SpeckNetwork, x, *, spikes: str = "multi", record: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> SpeckSimResult:
    """sinabs' time-binned forward on the integer network (see the module docstring)."""
    if spikes not in ("multi", "single"):
        raise UsageError(f"binned spikes must be 'multi' or 'single', got {spikes!r}")
    x = _prepare_input(net, x)
    B, T = x.shape[:2]
    out: dict[str, np.ndarray] = {INPUT: x}
    states: dict[str, dict[str, np.ndarray]] = {}
    for li, l in enumerate(net.layers):
        inp = None
        for src, pool in l.sources:
            s = sum_pool(out[src], pool)
            s = s[..., : l.input_shape[1], : l.input_shape[2]]
            inp = s if inp is None else inp + s
        flat = inp.reshape((B * T,) + tuple(l.input_shape)).astype(np.float64)
        cur = conv_nd(flat, l.weight.astype(np.float64), l.bias.astype(np.float64), l.stride, l.padding)
        cur = np.rint(cur).astype(np.int64).reshape((B, T) + tuple(l.neuron_shape))
        v = np.zeros((B,) + tuple(l.neuron_shape), dtype=np.int64)
        spk = np.zeros_like(cur)
        vrec = np.zeros_like(cur) if record else None
        th, low = l.threshold_high, l.threshold_low
        for t in range(T):
            v += cur[:, t]
            if spikes == "multi":
                z = np.where(v > 0, v // th, 0)
            else:
                z = (v >= th).astype(np.int64)
            if l.return_to_zero:
                v = np.where(z > 0, 0, v)
            else:
                v = v - z * th
            np.maximum(v, low, out=v)
            spk[:, t] = z
            if vrec is not None:
                vrec[:, t] = v
        out[l.name] = spk
        if record:
            states[l.name] = {"v": vrec, "spikes": spk}
        if progress is not None:
            progress(li + 1, len(net.layers))
    return SpeckSimResult(_finish(net, out[net.output_layer]), states)


# -------------------------------------------------------------------------------------------------
# event-driven mode
# -------------------------------------------------------------------------------------------------
@dataclass
class _Stream:
    """Events of one bin, sorted by (batch, root, pos): address (c, y, x), the input event (or
    slow-clock tick) that caused them (root), and their position in the stream (pos)."""

    b: np.ndarray
    c: np.ndarray
    y: np.ndarray
    x: np.ndarray
    root: np.ndarray
    pos: np.ndarray

    @staticmethod
    def empty() -> "_Stream":
        z = np.zeros(0, np.int64)
        return _Stream(z, z, z, z, z, z)

    def take(self, m) -> "_Stream":
        return _Stream(self.b[m], self.c[m], self.y[m], self.x[m], self.root[m], self.pos[m])


def _input_stream(xt: np.ndarray, n_ticks: int) -> _Stream:
    """Events of one bin (B, C, H, W counts) in raster order, a count n giving n events."""
    idx = np.nonzero(xt)
    if not idx[0].size:
        return _Stream.empty()
    cnt = xt[idx]
    rep = np.repeat(np.arange(cnt.size), cnt)
    b, c, y, x = (a[rep].astype(np.int64) for a in idx)
    n = b.size
    starts = np.searchsorted(b, np.arange(xt.shape[0]))
    root = np.arange(n, dtype=np.int64) - starts[b] + n_ticks
    return _Stream(b, c, y, x, root, root.copy())


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    n = keys[0].size
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.zeros(n, bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _rank_in_groups(*keys: np.ndarray) -> np.ndarray:
    """For arrays sorted by ``keys``: the position of each element inside its group."""
    n = keys[0].size
    starts = _group_starts(*keys)
    lens = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lens)


class _EventLayer:
    def __init__(self, l: SpeckLayer, B: int, sfmt: IntFormat, spike_test: str, overflow: str, ticks: int):
        self.l = l
        self.B = B
        C, H, W = l.neuron_shape
        self.N = C * H * W
        self.V = np.zeros(B * self.N, dtype=np.int64)
        self.sfmt = sfmt
        self.ge = spike_test == ">="
        self.wrap = overflow == "wrap"
        self.ticks = ticks if l.has_bias and np.any(l.bias != 0) else 0
        kh, kw = l.kernel
        self.offs = np.array([(ky, kx) for ky in range(kh) for kx in range(kw)], dtype=np.int64).reshape(-1, 2)
        if self.ticks:
            nz = np.flatnonzero(np.repeat(l.bias != 0, H * W))  # neuron ids (c, y, x) with a bias
            self.tick_neurons = nz
            self.tick_w = np.repeat(l.bias, H * W)[nz]

    def merge(self, streams: list[tuple[_Stream, int]]) -> _Stream:
        """Pool each source's events by address division, then merge them in causal order."""
        _, Hin, Win = self.l.input_shape
        parts, srcs = [], []
        for j, (s, pool) in enumerate(streams):
            if pool != 1:
                s = _Stream(s.b, s.c, s.y // pool, s.x // pool, s.root, s.pos)
            m = (s.y < Hin) & (s.x < Win)
            if not m.all():
                s = s.take(m)
            parts.append(s)
            srcs.append(np.full(s.b.size, j, np.int64))
        if len(parts) == 1:
            return parts[0]
        cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("b", "c", "y", "x", "root", "pos")}
        src = np.concatenate(srcs)
        o = np.lexsort((cat["pos"], src, cat["root"], cat["b"]))
        s = _Stream(*(cat[k][o] for k in ("b", "c", "y", "x", "root", "pos")))
        s.pos = np.arange(s.b.size, dtype=np.int64)
        return s

    def step(self, ev: _Stream) -> _Stream:
        l = self.l
        C, H, W = l.neuron_shape
        sy, sx = l.stride
        py, px = l.padding
        # -- position of each event inside the events of its cause ------------------------------
        within = _rank_in_groups(ev.b, ev.root)
        M = int(within.max()) + 2 if within.size else 1
        key = ev.root * M + within + 1
        # -- contributions: event x kernel offset x output channel --------------------------------
        gids, keys, ws = [], [], []
        if ev.b.size:
            ny = ev.y[:, None] + py - self.offs[None, :, 0]
            nx = ev.x[:, None] + px - self.offs[None, :, 1]
            oy, ox = ny // sy, nx // sx
            ok = (ny % sy == 0) & (nx % sx == 0) & (oy >= 0) & (oy < H) & (ox >= 0) & (ox < W)
            e_idx, o_idx = np.nonzero(ok)
            if e_idx.size:
                oy, ox = oy[e_idx, o_idx], ox[e_idx, o_idx]
                wv = l.weight[:, ev.c[e_idx], self.offs[o_idx, 0], self.offs[o_idx, 1]]  # (C, n)
                n = e_idx.size
                co = np.repeat(np.arange(C, dtype=np.int64), n)
                base = ev.b[e_idx] * self.N + oy * W + ox
                gids.append(np.tile(base, C) + co * (H * W))
                keys.append(np.tile(key[e_idx], C))
                ws.append(wv.reshape(-1))
        if self.ticks:
            nn_ = self.tick_neurons.size
            for j in range(self.ticks):
                gids.append((np.arange(self.B, dtype=np.int64)[:, None] * self.N + self.tick_neurons[None, :]).reshape(-1))
                keys.append(np.full(self.B * nn_, j * M, np.int64))
                ws.append(np.tile(self.tick_w, self.B))
        if not gids:
            return _Stream.empty()
        gid = np.concatenate(gids)
        k = np.concatenate(keys)
        w = np.concatenate(ws)
        o = np.lexsort((k, gid))
        gid, k, w = gid[o], k[o], w[o]
        rank = _rank_in_groups(gid)
        spk = np.zeros(gid.size, bool)
        by_rank = np.argsort(rank, kind="stable")
        counts = np.bincount(rank)
        th, low = l.threshold_high, l.threshold_low
        smin, smax = self.sfmt.min, self.sfmt.max
        V = self.V
        off = 0
        for cnt in counts:
            idx = by_rank[off : off + cnt]
            off += cnt
            g = gid[idx]
            v = V[g] + w[idx]
            v = self.sfmt.wrap(v) if self.wrap else np.clip(v, smin, smax)
            s = v >= th if self.ge else v > th
            if l.return_to_zero:
                v = np.where(s, 0, v)
            else:
                v = np.where(s, v - th, v)
            np.maximum(v, low, out=v)
            V[g] = v
            spk[idx] = s
        # -- output events, in causal order -----------------------------------------------------
        sg, sk = gid[spk], k[spk]
        if not sg.size:
            return _Stream.empty()
        b = sg // self.N
        o = np.lexsort((sg, sk, b))
        sg, sk, b = sg[o], sk[o], b[o]
        nid = sg - b * self.N
        c, rem = nid // (H * W), nid % (H * W)
        return _Stream(b, c, rem // W, rem % W, sk // M, np.arange(sg.size, dtype=np.int64))


def simulate_events(net: SpeckNetwork, x, *, state_format: IntFormat, spike_test: str = ">=", state_overflow: str = "saturate",
                    ticks_per_step: int = 1, record: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> SpeckSimResult:
    """Event-driven integer simulation (see the module docstring)."""
    if spike_test not in (">=", ">"):
        raise UsageError(f"spike_test must be '>=' or '>', got {spike_test!r}")
    if state_overflow not in ("saturate", "wrap"):
        raise UsageError(f"state_overflow must be 'saturate' or 'wrap', got {state_overflow!r}")
    x = _prepare_input(net, x)
    B, T = x.shape[:2]
    layers = [_EventLayer(l, B, state_format, spike_test, state_overflow, int(ticks_per_step)) for l in net.layers]
    out_l = net.layer(net.output_layer)
    C, H, W = out_l.neuron_shape
    counts = np.zeros((B, T, C * H * W), dtype=np.int64)
    rec = {l.name: {"v": np.zeros((B, T) + tuple(l.neuron_shape), np.int64),
                    "spikes": np.zeros((B, T) + tuple(l.neuron_shape), np.int64)} for l in net.layers} if record else {}
    n_ticks = max([el.ticks for el in layers] + [0])
    for t in range(T):
        streams: dict[str, _Stream] = {INPUT: _input_stream(x[:, t], n_ticks)}
        for el in layers:
            ev = el.merge([(streams[s], p) for s, p in el.l.sources])
            streams[el.l.name] = el.step(ev)
            if record:
                r = rec[el.l.name]
                r["v"][:, t] = el.V.reshape((B,) + tuple(el.l.neuron_shape))
                s = streams[el.l.name]
                flat = np.zeros(B * el.N, np.int64)
                np.add.at(flat, s.b * el.N + (s.c * el.l.neuron_shape[1] + s.y) * el.l.neuron_shape[2] + s.x, 1)
                r["spikes"][:, t] = flat.reshape((B,) + tuple(el.l.neuron_shape))
        s = streams[net.output_layer]
        if s.b.size:
            flat = np.bincount(s.b * (C * H * W) + (s.c * H + s.y) * W + s.x, minlength=B * C * H * W)
            counts[:, t] = flat.reshape(B, -1)
        if progress is not None:
            progress(t + 1, T)
    return SpeckSimResult(_finish(net, counts.reshape((B, T, C, H, W))), rec)
