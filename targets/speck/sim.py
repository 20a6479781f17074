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

How it is computed (the semantics above are the specification; tests/speck_naive.py implements
them one event at a time, and the tests compare on random networks). Both modes work on sparse
event lists and compute a layer's synaptic input with one im2col of only the (bin, output
position) rows some input event reaches; the product with the integer weights is a float32 BLAS
product when no partial sum can reach 2^24 (float64 below 2^53), or an int64 segment sum, so
every value is an exact integer. The time-binned mode then steps only the neurons that receive
input in a bin (all of them where a bias or SingleSpike's leftover can fire without input). The
event-driven mode runs layer by layer over all bins, in windows of bins: a neuron whose running
value provably stays in [threshold_low, threshold_high) and inside the state format whatever the
order of its events (bounded by the sums of its positive and of its negative contributions) just
adds its input; every other neuron is stepped through its events of the window in order,
vectorized over neurons and over the stretches between events that fire, clamp, saturate or wrap.

Event order, which the chip's documentation does not fix (speck.md section 7), is defined so that
results are reproducible: the events of one input bin arrive in raster order (channel, y, x), a
count n giving n consecutive events; an output spike inherits the position of the event that
caused it (zero latency), spikes caused by one event leave in neuron order (channel, y, x), and
events a layer receives from several sources are ordered by the input event that caused them,
then by source (in the layer's source order), then by their order in the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nirdeploy.backend.intformat import IntFormat
from nirdeploy.errors import UsageError

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
def _taps(y, x, l: SpeckLayer):
    """For input events at rows ``y`` and columns ``x`` of layer ``l``'s input map: every (event,
    kernel tap) that reaches an output neuron, as (event index, output position oy*W + ox, weight
    column (c*kh + ky)*kw + kx without the channel term)."""
    _, Ho, Wo = l.neuron_shape
    kh, kw = l.kernel
    sy, sx = l.stride
    py, px = l.padding
    ny = y[:, None] + py - np.arange(kh)[None, :]
    nx = x[:, None] + px - np.arange(kw)[None, :]
    oy, ox = ny // sy, nx // sx
    vy = (ny % sy == 0) & (oy >= 0) & (oy < Ho)
    vx = (nx % sx == 0) & (ox >= 0) & (ox < Wo)
    e, a, b = np.nonzero(vy[:, :, None] & vx[:, None, :])
    return e, oy[e, a] * Wo + ox[e, b], a * kw + b


def _exact_sum(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = sum of weights[index == i]`` (int64), exactly: numpy's bincount (float64) while no
    sum can reach 2^53, integer scatter-add beyond."""
    if not index.size:
        return np.zeros(size, np.int64)
    if float(np.abs(weights).sum(dtype=np.float64)) < 2**53:
        return np.bincount(index, weights=weights, minlength=size).astype(np.int64)
    out = np.zeros(size, np.int64)
    np.add.at(out, index, weights.astype(np.int64))
    return out


@dataclass
class _Rows:
    """A layer's synaptic input over all bins, one row per (bin, output position) that some input
    event reaches, sorted by bin: ``loc`` = b*H*W + oy*W + ox, ``sums`` (rows, k) the sums of
    count * weight-column over the row's events, ``hits`` the number of input events, and
    ``bounds``: the rows of bin t are ``bounds[t]:bounds[t + 1]``."""

    loc: np.ndarray
    sums: np.ndarray
    hits: np.ndarray
    bounds: np.ndarray


#: elements of one dense im2col block (float32: 16 MB)
_BLOCK = 1 << 22


def _rows(t, b, c, y, x, n, l: SpeckLayer, wmat: np.ndarray, B: int, T: int) -> _Rows:
    """The convolution of layer ``l`` over sparse input counts ``n`` at (bin t, batch b, channel c,
    y, x) (``n=None``: one event each), as per-row sums of ``wmat`` ((c_in*kh*kw, k) integer weight columns), one row per
    reached (bin, batch, position): an im2col of the reached rows only. Its product with ``wmat``
    is a BLAS matrix product in float32 (or float64) when no partial sum can reach 2^24 (2^53),
    so every sum is an exact integer; an int64 segment sum otherwise, or when the rows are so
    sparse that summing the terms directly is cheaper."""
    _, H, W = l.neuron_shape
    HW = H * W
    kk = l.kernel[0] * l.kernel[1]
    ci, hi, wi = l.input_shape
    # events at one address of one bin (repeated, or from several sources) become one count, so
    # that each (row, column) of the im2col below holds one term
    pix, inv = np.unique((((t * B + b) * ci + c) * hi + y) * wi + x, return_inverse=True)
    n = np.bincount(inv, weights=n, minlength=pix.size).astype(np.int64)
    pix, x = np.divmod(pix, wi)
    pix, y = np.divmod(pix, hi)
    pix, c = np.divmod(pix, ci)
    t, b = np.divmod(pix, B)
    e, pos, tap = _taps(y, x, l)
    K, k = wmat.shape
    if not e.size:
        z = np.zeros(0, np.int64)
        return _Rows(z, np.zeros((0, k), np.int64), z, np.zeros(T + 1, np.int64))
    key = (t[e] * B + b[e]) * HW + pos
    order = np.argsort(key, kind="stable")
    key, e, tap = key[order], e[order], tap[order]
    starts = _starts(key)
    ne = n[e]
    col = c[e] * kk + tap
    hits = np.add.reduceat(ne, starts)
    rows = key[starts]
    R = rows.size
    dt = _exact_dtype(float(hits.max()) * float(np.abs(wmat).max(initial=0)))
    if dt is None or e.size * k * 16 < R * K * (1 + k / 16):  # terms are few: sum them directly (int64)
        sums = np.add.reduceat(ne[:, None] * wmat[col], starts, axis=0)
    else:
        row_of = np.repeat(np.arange(R), np.diff(np.append(starts, e.size)))
        wm = wmat.astype(dt)
        sums = np.empty((R, k), np.int64)
        step = max(1, _BLOCK // K)
        for r0 in range(0, R, step):  # dense im2col blocks of the reached rows, one product each
            r1 = min(R, r0 + step)
            a, z = np.searchsorted(row_of, [r0, r1])
            D = np.zeros((r1 - r0, K), dt)
            D[row_of[a:z] - r0, col[a:z]] = ne[a:z]  # one term per (row, column): an input pixel seen through one tap
            sums[r0:r1] = D @ wm  # whole numbers, exactly
    bounds = np.searchsorted(rows, np.arange(T + 1) * (B * HW))
    return _Rows(rows - (rows // (B * HW)) * (B * HW), sums, hits, bounds)


def _exact_dtype(bound: float):
    """The float dtype whose sums of integers stay exact below ``bound`` (None: none does)."""
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    return None


def _weight_matrix(l: SpeckLayer) -> np.ndarray:
    """(c_in*kh*kw, c_out): the weights in the order of the tap columns."""
    return l.weight.reshape(l.c_out, -1).T


@dataclass
class _Spikes:
    """Sparse spike counts of one layer over all bins: bin, batch, channel, y, x, count."""

    t: np.ndarray
    b: np.ndarray
    c: np.ndarray
    y: np.ndarray
    x: np.ndarray
    n: np.ndarray

    def pooled(self, pool: int, shape) -> "_Spikes":
        """Sum pooling by address division; addresses past the last full window are dropped."""
        if pool == 1:
            return self
        y, x = self.y // pool, self.x // pool
        m = (y < shape[1]) & (x < shape[2])
        return _Spikes(self.t[m], self.b[m], self.c[m], y[m], x[m], self.n[m])

    def dense(self, B: int, T: int, shape) -> np.ndarray:
        """(B, T, *shape) counts."""
        C, H, W = shape
        idx = (((self.b * T + self.t) * C + self.c) * H + self.y) * W + self.x
        return _exact_sum(idx, self.n, B * T * C * H * W).reshape((B, T) + tuple(shape))

    @staticmethod
    def cat(parts: list["_Spikes"]) -> "_Spikes":
        return _Spikes(*(np.concatenate([getattr(p, k) for p in parts]) if parts else np.zeros(0, np.int64)
                         for k in ("t", "b", "c", "y", "x", "n")))


def _dense_input(x: np.ndarray) -> _Spikes:
    """(B, T, C, H, W) counts -> sparse."""
    b, t, c, y, xx = np.nonzero(x)
    return _Spikes(t, b, c, y, xx, x[b, t, c, y, xx])


def simulate_binned(net: SpeckNetwork, x, *, spikes: str = "multi", record: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> SpeckSimResult:
    """sinabs' time-binned forward on the integer network (see the module docstring)."""
    if spikes not in ("multi", "single"):
        raise UsageError(f"binned spikes must be 'multi' or 'single', got {spikes!r}")
    x = _prepare_input(net, x)
    B, T = x.shape[:2]
    out: dict[str, _Spikes] = {INPUT: _dense_input(x)}
    states: dict[str, dict[str, np.ndarray]] = {}
    for li, l in enumerate(net.layers):
        inp = _Spikes.cat([out[src].pooled(pool, l.input_shape) for src, pool in l.sources])
        C, H, W = l.neuron_shape
        HW = H * W
        r = _rows(inp.t, inp.b, inp.c, inp.y, inp.x, inp.n, l, _weight_matrix(l), B, T)
        v = np.zeros((B * HW, C), dtype=np.int64)  # channel-last: a row of r is one position's channels
        th, low, multi, rtz = l.threshold_high, l.threshold_low, spikes == "multi", l.return_to_zero
        bias = l.bias[None, :] if l.has_bias and np.any(l.bias != 0) else None
        # without a bias, and unless SingleSpike leaves v above the threshold, every v < th after a
        # bin: only the neurons that receive input can fire or change
        dense = bias is not None or (not multi and not rtz)
        vrec = np.zeros((T, B * HW, C), dtype=np.int64) if record else None
        found = []
        for ti in range(T):
            r0, r1 = r.bounds[ti], r.bounds[ti + 1]
            if dense:
                if bias is not None:
                    v += bias
                if r1 > r0:
                    v[r.loc[r0:r1]] += r.sums[r0:r1]
                loc, blk = None, v
            elif r1 > r0:
                loc = r.loc[r0:r1]
                blk = v[loc] + r.sums[r0:r1]
            else:
                if vrec is not None:
                    vrec[ti] = v
                continue
            i, k = np.nonzero(blk >= th)  # MultiSpike: floor(v / th) > 0 exactly where v >= th (th >= 1)
            if i.size:
                vf = blk[i, k]
                z = vf // th if multi else np.ones_like(vf)
                blk[i, k] = 0 if rtz else vf - z * th
                found.append((np.full(i.size, ti), i if loc is None else loc[i], k, z))
            np.maximum(blk, low, out=blk)
            if loc is not None:
                v[loc] = blk
            if vrec is not None:
                vrec[ti] = v
        ti, where, k, z = (np.concatenate(a) for a in zip(*found)) if found else (np.zeros(0, np.int64),) * 4
        bb, p = where // HW, where % HW
        out[l.name] = _Spikes(ti, bb, k, p // W, p % W, z)
        if record:
            states[l.name] = {"v": vrec.reshape(T, B, H, W, C).transpose(1, 0, 4, 2, 3).copy(),
                              "spikes": out[l.name].dense(B, T, l.neuron_shape)}
        if progress is not None:
            progress(li + 1, len(net.layers))
    return SpeckSimResult(_finish(net, out[net.output_layer].dense(B, T, net.layer(net.output_layer).neuron_shape)), states)


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


def _lexorder(*keys: np.ndarray) -> np.ndarray:
    """The stable order that sorts by ``keys[0]``, then ``keys[1]``, ... (non-negative integers):
    one argsort of a combined key while it fits in 62 bits, else numpy's lexsort."""
    if not keys[0].size:
        return np.zeros(0, np.int64)
    radix = [int(k.max()) + 1 for k in keys]
    if math.prod(radix) >= 2**62:
        return np.lexsort(keys[::-1])
    combined = keys[0].astype(np.int64)
    for k, r in zip(keys[1:], radix[1:]):
        combined = combined * r + k
    return np.argsort(combined, kind="stable")


def _starts(a: np.ndarray) -> np.ndarray:
    """Where the runs of equal values of a non-empty sorted array begin."""
    change = np.empty(a.size, bool)
    change[0] = True
    np.not_equal(a[1:], a[:-1], out=change[1:])
    return np.flatnonzero(change)


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
    """One layer of the event-driven simulation, run over all bins (see the module docstring)."""

    def __init__(self, l: SpeckLayer, B: int, sfmt: IntFormat, spike_test: str, overflow: str, ticks: int):
        self.l = l
        self.B = B
        C, H, W = l.neuron_shape
        self.HW = H * W
        self.N = C * self.HW
        self.V = np.zeros(B * self.N, dtype=np.int64)  # (b, c, y, x) flat
        self.sfmt = sfmt
        self.ge = spike_test == ">="
        self.wrap = overflow == "wrap"
        self.lo = max(l.threshold_low, sfmt.min)
        self.ticks = ticks if l.has_bias and np.any(l.bias != 0) else 0
        self.wflat = l.weight.reshape(C, -1)
        wm = _weight_matrix(l)
        self.wpn = np.concatenate([np.maximum(wm, 0), np.minimum(wm, 0)], axis=1)  # (c_in*kh*kw, 2 c_out)
        self.chan = np.arange(C, dtype=np.int64) * self.HW
        self.pending = np.zeros(B * self.N, np.int64)
        self.pos_mask = np.zeros(B * self.HW, bool)
        if self.ticks:
            b = l.bias.astype(np.int64)
            self.tick_terms = (self.ticks * np.maximum(b, 0), self.ticks * np.minimum(b, 0), self.ticks * (b != 0))
            self.all_loc = np.arange(B * self.HW, dtype=np.int64)

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

    def run(self, ins: list[_Stream], after_bin: Callable[[int, _Stream], None], window: int = 8) -> list[_Stream]:
        """The layer's output stream of every bin, from its (merged) input streams.

        A neuron adds its input bin after bin while its running value provably stays in [lo, th)
        and inside the state format whatever the order of its events; from its first other bin it
        is pending until the end of the ``window`` of bins, when every pending neuron is stepped
        through its events of those bins, in order, at once. ``after_bin(t, stream)`` runs after
        each window for its bins; ``window=1`` makes the state exact after every bin (``record``)."""
        l = self.l
        B, T, HW, N = self.B, len(ins), self.HW, self.N
        sizes = [s.b.size for s in ins]
        ev = {k: np.concatenate([getattr(s, k) for s in ins]) if ins else np.zeros(0, np.int64) for k in ("b", "c", "y", "x", "root")}
        tb = np.repeat(np.arange(T), sizes)
        r = _rows(tb, ev["b"], ev["c"], ev["y"], ev["x"], None, l, self.wpn, B, T)
        base = (r.loc // HW) * N + r.loc % HW  # neuron id of channel 0 at each row
        # the order key of every event inside its bin: (root, position among the root's events)
        within = _rank_in_groups(tb, ev["b"], ev["root"])
        M = np.ones(T, np.int64)
        if within.size:
            np.maximum.at(M, tb, within + 2)
        key = ev["root"] * M[tb] + within + 1
        # every (event, kernel tap) that reaches a neuron, by bin
        e, pos, tap = _taps(ev["y"], ev["x"], l)
        terms = (ev["b"][e] * HW + pos, key[e], ev["c"][e] * (l.kernel[0] * l.kernel[1]) + tap, tb[e])
        tbounds = np.searchsorted(tb[e], np.arange(T + 1))
        if self.ticks:
            dense_base = (self.all_loc // HW) * N + self.all_loc % HW
        self.none = T
        self.pending.fill(T)  # the bin from which a neuron's events wait for the sequential step (T: none)
        outs: list[_Stream] = []
        row_bin = np.repeat(np.arange(T), np.diff(r.bounds))
        for w0 in range(0, T, window):
            w1 = min(T, w0 + window)
            if self.ticks:
                for ti in range(w0, w1):
                    self._screen_ticks(r, ti, dense_base)
            elif r.bounds[w1] > r.bounds[w0]:
                self._screen(r, base, row_bin, r.bounds[w0], r.bounds[w1])
            outs += self._sequential(w0, w1, [x[tbounds[w0]:tbounds[w1]] for x in terms], M)
            for ti in range(w0, w1):
                after_bin(ti, outs[ti])
        return outs

    def _quiet(self, v, P, Nn):
        """Where a neuron at ``v`` that receives events summing to at most ``P`` and at least
        ``Nn`` (in any order) provably neither fires, clamps, saturates nor wraps."""
        hi = v + P
        ok = hi < self.l.threshold_high if self.ge else hi <= self.l.threshold_high
        if self.l.threshold_high > self.sfmt.max:
            ok &= hi <= self.sfmt.max
        ok &= v + Nn >= self.lo
        return ok

    def _screen(self, r: _Rows, base: np.ndarray, row_bin: np.ndarray, ra: int, rb: int) -> None:
        """Rows ``ra:rb`` of one window (no ticks), all bins at once: each neuron adds its input
        bin after bin while it is provably quiet (see :meth:`_quiet`); from its first other bin
        on it is pending (``self.pending``: that bin), its state kept for the sequential step."""
        C, V, pending = self.l.c_out, self.V, self.pending
        o = np.argsort(r.loc[ra:rb], kind="stable") + ra  # by position, each in bin order
        starts = _starts(r.loc[o])
        S = r.sums[o]
        gid = base[o[starts]][:, None] + self.chan[None, :]
        # first the whole window at once: most neurons stay quiet through it
        tot = np.add.reduceat(S, starts, axis=0)
        V0 = V[gid]
        calm = self._quiet(V0, tot[:, :C], tot[:, C:])
        V[gid[calm]] = V0[calm] + tot[:, :C][calm] + tot[:, C:][calm]
        busy = ~calm.all(axis=1)
        if not busy.any():
            return
        # the other positions bin by bin: the value before each bin if quiet so far
        lens = np.diff(np.append(starts, o.size))
        keep = np.repeat(busy, lens)
        S, o, lens, gid, V0, calm = S[keep], o[keep], lens[busy], gid[busy], V0[busy], calm[busy]
        starts = np.cumsum(lens) - lens
        P, Nn = S[:, :C], S[:, C:]
        inc = P + Nn
        cs = np.cumsum(inc, axis=0)
        before = cs - inc
        before -= np.repeat(before[starts], lens, axis=0)
        Vb = before + np.repeat(V0, lens, axis=0)
        rows = np.where(self._quiet(Vb, P, Nn), o.size, np.arange(o.size)[:, None])
        first = np.minimum.reduceat(rows, starts, axis=0)  # each neuron's first row that is not quiet
        quiet = (first == o.size) & ~calm
        V[gid[quiet]] = V0[quiet] + (cs[starts + lens - 1] - cs[starts] + inc[starts])[quiet]
        loud = first < o.size
        fr = first[loud]
        V[gid[loud]] = Vb[fr, np.nonzero(loud)[1]]
        pending[gid[loud]] = row_bin[o[fr]]

    def _screen_ticks(self, r: _Rows, ti: int, dense_base: np.ndarray) -> None:
        """Bin ``ti`` of a layer whose neurons get slow-clock ticks: every position takes part."""
        B, HW, C, V, pending = self.B, self.HW, self.l.c_out, self.V, self.pending
        r0, r1 = r.bounds[ti], r.bounds[ti + 1]
        tp, tn, tc = self.tick_terms
        P = np.tile(tp, (B * HW, 1))
        Nn = np.tile(tn, (B * HW, 1))
        hits = np.tile(tc, (B * HW, 1))
        loc = r.loc[r0:r1]
        P[loc] += r.sums[r0:r1, :C]
        Nn[loc] += r.sums[r0:r1, C:]
        hits[loc] += r.hits[r0:r1, None]
        gid = dense_base[:, None] + self.chan[None, :]
        Vb = V[gid]
        unsafe = ~self._quiet(Vb, P, Nn)
        unsafe |= pending[gid] < self.none
        unsafe &= hits > 0
        V[gid] = np.where(unsafe, Vb, Vb + P + Nn)
        new = gid[unsafe]
        pending[new] = np.minimum(pending[new], ti)

    def _sequential(self, w0: int, w1: int, terms: list[np.ndarray], M: np.ndarray) -> list[_Stream]:
        """The pending neurons stepped through their events of bins ``w0:w1`` in order; their
        output streams, one per bin. ``terms``: the window's (event, tap) pairs as (position id
        b*H*W + oy*W + ox, order key, weight column, bin); ``M[t]``: bin t's key multiplier
        (a tick j has key j*M[t])."""
        l = self.l
        _, H, W = l.neuron_shape
        B, HW, N, T = self.B, self.HW, self.N, len(M)
        pending = self.pending
        cand = np.flatnonzero(pending < T)
        if not cand.size:
            return [_Stream.empty() for _ in range(w0, w1)]
        gpos, gkey, gcol, gbin = terms
        if self.ticks:  # tick j of every bin at every position, as terms of weight column -1 - j
            nb = w1 - w0
            tb = np.tile(np.repeat(np.arange(w0, w1), B * HW), self.ticks)
            tj = np.repeat(np.arange(self.ticks), nb * B * HW)
            gpos = np.concatenate([gpos, np.tile(np.arange(B * HW), nb * self.ticks)])
            gkey = np.concatenate([gkey, tj * M[tb]])
            gcol = np.concatenate([gcol, -1 - tj])
            gbin = np.concatenate([gbin, tb])
            o = _lexorder(gpos, gbin - w0, gkey)
        else:  # the terms of one position already come in (bin, key) order
            o = np.argsort(gpos, kind="stable")
        gpos, gkey, gcol, gbin = gpos[o], gkey[o], gcol[o], gbin[o]
        # every pending neuron's terms, neuron by neuron, each in (bin, key) order
        cpos = (cand // N) * HW + cand % HW
        lo_, hi_ = np.searchsorted(gpos, cpos), np.searchsorted(gpos, cpos, side="right")
        cnt = hi_ - lo_
        ti = np.arange(int(cnt.sum())) + np.repeat(lo_ - (np.cumsum(cnt) - cnt), cnt)
        gid = np.repeat(cand, cnt)
        cc = (gid % N) // HW
        col, tbin = gcol[ti], gbin[ti]
        keep = tbin >= pending[gid]
        if self.ticks:
            keep &= (col >= 0) | (l.bias[cc] != 0)
        gid, cc, col, tbin, k = gid[keep], cc[keep], col[keep], tbin[keep], gkey[ti[keep]]
        w = self.wflat[cc, np.maximum(col, 0)]
        if self.ticks:
            w = np.where(col >= 0, w, l.bias[cc])
        pending[cand] = T
        spk = self._step_sequences(gid, w)
        # -- output events of each bin, in causal order ---------------------------------------------
        sg, sk, st = gid[spk], k[spk], tbin[spk]
        b = sg // N
        o = _lexorder(st - w0, b, sk, sg - b * N)
        sg, sk, st, b = sg[o], sk[o], st[o], b[o]
        nid = sg - b * N
        c, rem = nid // HW, nid % HW
        y, x, root = rem // W, rem % W, sk // M[st]
        cut = np.searchsorted(st, np.arange(w0, w1 + 1))
        return [_Stream(b[i:j], c[i:j], y[i:j], x[i:j], root[i:j], np.arange(j - i, dtype=np.int64)) for i, j in zip(cut[:-1], cut[1:])]

    def _step_sequences(self, gid: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Apply the contributions ``w`` to the neurons ``gid`` (grouped, in order), one event at a
        time: add, saturate or wrap, fire at most once, reset, clamp at the lower bound. Returns
        which contributions made their neuron fire. Vectorized over neurons and, inside a
        neuron's sequence, over the stretches between events that do something (fire, clamp,
        saturate, wrap): each round sums a stretch and applies the rule to its last event."""
        l = self.l
        th, low, lo = l.threshold_high, l.threshold_low, self.lo
        smin, smax = self.sfmt.min, self.sfmt.max
        n = gid.size
        starts = _starts(gid)
        ends = np.append(starts[1:], n)
        g = gid[starts]
        v = self.V[g]
        spk = np.zeros(n, bool)
        ptr = starts.copy()
        act = np.arange(starts.size)
        idx = None  # first round: every contribution, in place
        while act.size:
            if idx is None:
                off, lens, ww = starts, ends - starts, w
            else:
                p = ptr[act]
                lens = ends[act] - p
                off = np.cumsum(lens) - lens  # where each active sequence starts in idx
                idx = np.arange(int(off[-1] + lens[-1])) + np.repeat(p - off, lens)
                ww = w[idx]
            cs = np.cumsum(ww)
            run = cs + np.repeat(v[act] - cs[off] + ww[off], lens)  # the value after each event if nothing happens
            bad = run >= th if self.ge else run > th
            bad |= run < lo
            bad |= run > smax
            q = np.flatnonzero(bad)
            quiet = np.ones(act.size, bool)
            if q.size:
                grp = np.searchsorted(off, q, side="right") - 1
                first = _starts(grp)
                q, grp = q[first], grp[first]  # the first event of each sequence that does something
                quiet[grp] = False
            v[act[quiet]] = run[(off + lens - 1)[quiet]]
            if not q.size:
                break
            vq = run[q]
            vq = self.sfmt.wrap(vq) if self.wrap else np.minimum(np.maximum(vq, smin), smax)
            s = vq >= th if self.ge else vq > th
            if l.return_to_zero:
                vq[s] = 0
            else:
                vq[s] -= th
            gq = act[grp]
            v[gq] = np.maximum(vq, low)
            qi = q if idx is None else idx[q]
            spk[qi] = s
            ptr[gq] = qi + 1
            act = gq[ptr[gq] < ends[gq]]
            idx = np.zeros(0, np.int64)
        self.V[g] = v
        return spk


def simulate_events(net: SpeckNetwork, x, *, state_format: IntFormat, spike_test: str = ">=", state_overflow: str = "saturate",
                    ticks_per_step: int = 1, record: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> SpeckSimResult:
    """Event-driven integer simulation (see the module docstring), layer by layer over all bins."""
    if spike_test not in (">=", ">"):
        raise UsageError(f"spike_test must be '>=' or '>', got {spike_test!r}")
    if state_overflow not in ("saturate", "wrap"):
        raise UsageError(f"state_overflow must be 'saturate' or 'wrap', got {state_overflow!r}")
    x = _prepare_input(net, x)
    B, T = x.shape[:2]
    layers = [_EventLayer(l, B, state_format, spike_test, state_overflow, int(ticks_per_step)) for l in net.layers]
    rec = {l.name: {"v": np.zeros((B, T) + tuple(l.neuron_shape), np.int64),
                    "spikes": np.zeros((B, T) + tuple(l.neuron_shape), np.int64)} for l in net.layers} if record else {}
    n_ticks = max([el.ticks for el in layers] + [0])
    streams: dict[str, list[_Stream]] = {INPUT: [_input_stream(x[:, t], n_ticks) for t in range(T)]}
    for li, el in enumerate(layers):

        def after_bin(t: int, s: _Stream, el=el, li=li) -> None:
            if record:
                r = rec[el.l.name]
                r["v"][:, t] = el.V.reshape((B,) + tuple(el.l.neuron_shape))
                _, H, W = el.l.neuron_shape
                r["spikes"][:, t] = _exact_sum(s.b * el.N + (s.c * H + s.y) * W + s.x, np.ones(s.b.size, np.int64),
                                               B * el.N).reshape((B,) + tuple(el.l.neuron_shape))
            if progress is not None:
                progress(li * T + t + 1, len(layers) * T)

        ins = [el.merge([(streams[s][t], p) for s, p in el.l.sources]) for t in range(T)]
        streams[el.l.name] = el.run(ins, after_bin, window=1) if record else el.run(ins, after_bin)
    out_l = net.layer(net.output_layer)
    C, H, W = out_l.neuron_shape
    outs = streams[net.output_layer]
    t = np.repeat(np.arange(T), [s.b.size for s in outs])
    cat = _Spikes(t, *(np.concatenate([getattr(s, k) for s in outs]) for k in ("b", "c", "y", "x")), np.ones(t.size, np.int64))
    return SpeckSimResult(_finish(net, cat.dense(B, T, out_l.neuron_shape)), rec)
