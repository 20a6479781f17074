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
event lists and compute a layer's synaptic input with an im2col of only the rows some input event
reaches; the product with the integer weights is a float32 BLAS product when no partial sum can
reach 2^24 (float64 below 2^53), or an int64 segment sum, so every value is an exact integer. The
time-binned mode has one row per (bin, output position) and steps only the neurons that receive
input in a bin (all of them where a bias or SingleSpike's leftover can fire without input). The
event-driven mode runs layer by layer over all bins, in windows of bins, with one row per
(window, position) holding the window's sums of positive and of negative weights: a neuron whose
running value provably stays in [threshold_low, threshold_high) and inside the state format
whatever the order of its events (the value plus the positive sum, and plus the negative sum,
bound every prefix) just adds its input; the others are screened bin by bin in the same way, and
from their first bin that is not provably quiet they are stepped through their events in order,
vectorized over neurons and over the stretches between events that fire, clamp, saturate or wrap.
With ``record`` the window is one bin, so that the recorded state is the state after each bin.

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

__all__ = ["SpeckSimResult", "simulate_binned", "simulate_events", "simulate_network", "sum_pool"]


@dataclass
class SpeckSimResult:
    output: np.ndarray  # (batch, time, *output_shape) spike counts
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # layer -> {"v", "spikes"}: (B, T, C, H, W)
    saturated: dict[str, bool] = field(default_factory=dict)  # event mode: layer -> its 16-bit state saturated (or wrapped)


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
    event reaches: ``loc`` = b*H*W + oy*W + ox, ``sums`` (rows, k) the sums of count *
    weight-column over the row's events, ``hits`` the number of input events, ``bin`` the bin;
    the rows of window w (of the ``window`` bins :func:`_rows` was given; 1: bin w) are
    ``bounds[w]:bounds[w + 1]``, by position, then bin."""

    loc: np.ndarray
    sums: np.ndarray
    hits: np.ndarray
    bounds: np.ndarray
    bin: np.ndarray
    terms: tuple | None = None  # whole windows: (bin, weight column, count, row starts) of every term


#: elements of one dense im2col block (float32: 16 MB)
_BLOCK = 1 << 22


def _rows(t, b, c, y, x, n, l: SpeckLayer, wmat: np.ndarray, B: int, T: int, window: int = 1, taps_out: list | None = None,
          whole_windows: bool = False) -> _Rows:
    """The convolution of layer ``l`` over sparse input counts ``n`` at (bin t, batch b, channel c,
    y, x) (``n=None``: one event each), as per-row sums of ``wmat`` ((c_in*kh*kw, k) integer weight
    columns), one row per reached (bin, batch, position), sorted by window of ``window`` bins,
    then position, then bin: an im2col of the reached rows only. ``taps_out`` (a list) receives
    every input's (event, kernel tap) pairs as :func:`_taps` gives them. With ``whole_windows``,
    one row per (window, position) sums all the window's bins, and the row's terms (bin, weight
    column, count, in bin order) are kept for the bins one by one. Its product with ``wmat``
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
    inv = inv.reshape(-1)
    n = np.bincount(inv, weights=n, minlength=pix.size).astype(np.int64)
    pix, x = np.divmod(pix, wi)
    pix, y = np.divmod(pix, hi)
    pix, c = np.divmod(pix, ci)
    t, b = np.divmod(pix, B)
    e, pos, tap = _taps(y, x, l)
    if taps_out is not None:  # the inputs' pairs: each input takes its address's pairs
        cnt = np.bincount(e, minlength=pix.size)
        first = np.cumsum(cnt) - cnt
        k_ = cnt[inv]
        ei = np.repeat(np.arange(inv.size), k_)
        ti = np.arange(ei.size) + np.repeat(first[inv] - (np.cumsum(k_) - k_), k_)
        taps_out += [ei, pos[ti], tap[ti]]
    K, k = wmat.shape
    nw = -(-T // window)
    if not e.size:
        z = np.zeros(0, np.int64)
        return _Rows(z, np.zeros((0, k), np.int64), z, np.zeros(nw + 1, np.int64), z, None)
    te = t[e]
    key = (((te // window) * B + b[e]) * HW + pos) * window + te % window
    order = np.argsort(key, kind="stable")
    key, e, tap, te = key[order], e[order], tap[order], te[order]
    ne = n[e]
    col = c[e] * kk + tap
    if whole_windows:
        key //= window
    starts = _starts(key)
    hits = np.add.reduceat(ne, starts)
    rows = key[starts]
    R = rows.size
    dt = _exact_dtype(float(hits.max()) * float(np.abs(wmat).max(initial=0)))
    if dt is None or e.size * k * 16 < R * K * (1 + k / 16):  # terms are few: sum them directly (int64)
        sums = np.add.reduceat(ne[:, None] * wmat[col], starts, axis=0)
    else:
        row_of = np.repeat(np.arange(R), np.diff(np.append(starts, e.size)))
        dr, dc, dn = row_of, col, ne
        if whole_windows:  # one address seen through one tap in several bins of a window: add them up
            u, ui = np.unique(row_of * K + col, return_inverse=True)
            dr, dc = np.divmod(u, K)
            dn = np.bincount(ui.reshape(-1), weights=ne, minlength=u.size).astype(np.int64)
        wm = wmat.astype(dt)
        sums = np.empty((R, k), np.int32 if dt is np.float32 else np.int64)  # float32-exact sums fit in int32
        step = max(1, _BLOCK // K)
        for r0 in range(0, R, step):  # dense im2col blocks of the reached rows, one product each
            r1 = min(R, r0 + step)
            a, z = np.searchsorted(dr, [r0, r1])
            D = np.zeros((r1 - r0, K), dt)
            D[dr[a:z] - r0, dc[a:z]] = dn[a:z]  # one term per (row, column)
            sums[r0:r1] = D @ wm  # whole numbers, exactly
    if whole_windows:
        wi_, loc = np.divmod(rows, B * HW)
        rb_ = wi_ * window
        terms = (te, col, ne, np.append(starts, e.size))
    else:
        wpos, rbin = np.divmod(rows, window)
        wi_, loc = np.divmod(wpos, B * HW)
        rb_ = wi_ * window + rbin
        terms = None
    bounds = np.searchsorted(wi_, np.arange(nw + 1))
    return _Rows(loc, sums, hits, bounds, rb_, terms)


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
class _Events:
    """The events of every bin, sorted by (bin t, batch b, root, pos): address (c, y, x), the
    input event (or slow-clock tick) that caused them (root), and their order inside the bin
    (pos)."""

    t: np.ndarray
    b: np.ndarray
    c: np.ndarray
    y: np.ndarray
    x: np.ndarray
    root: np.ndarray
    pos: np.ndarray

    FIELDS = ("t", "b", "c", "y", "x", "root", "pos")

    def take(self, m) -> "_Events":
        return _Events(*(getattr(self, k)[m] for k in self.FIELDS))

    @staticmethod
    def cat(parts: list["_Events"]) -> "_Events":
        return _Events(*(np.concatenate([getattr(p, k) for p in parts]) if parts else np.zeros(0, np.int64) for k in _Events.FIELDS))


def _input_events(x: np.ndarray, n_ticks: int) -> _Events:
    """(B, T, C, H, W) counts -> events in raster order per bin and sample, a count n giving n
    events; the input events of a sample are roots n_ticks, n_ticks + 1, ... (after the ticks)."""
    t, b, c, y, xx = np.nonzero(x.swapaxes(0, 1))
    cnt = x[b, t, c, y, xx]
    rep = np.repeat(np.arange(cnt.size), cnt)
    t, b, c, y, xx = (a[rep].astype(np.int64) for a in (t, b, c, y, xx))
    root = _rank_in_groups(t, b) + n_ticks
    return _Events(t, b, c, y, xx, root, root.copy())


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
        self.saturated = False
        self.pos_mask = np.zeros(B * self.HW, bool)
        if self.ticks:
            b = l.bias.astype(np.int64)
            self.tick_terms = (self.ticks * np.maximum(b, 0), self.ticks * np.minimum(b, 0), self.ticks * (b != 0))
            self.all_loc = np.arange(B * self.HW, dtype=np.int64)

    def merge(self, sources: list[tuple[_Events, int]]) -> _Events:
        """Pool each source's events by address division (dropping addresses past the last full
        window), then merge them per bin in causal order: (batch, root, source, pos)."""
        _, Hin, Win = self.l.input_shape
        parts = []
        for s, pool in sources:
            if pool != 1:
                s = _Events(s.t, s.b, s.c, s.y // pool, s.x // pool, s.root, s.pos)
            m = (s.y < Hin) & (s.x < Win)
            parts.append(s if m.all() else s.take(m))
        if len(parts) == 1:
            return parts[0]
        cat = _Events.cat(parts)
        src = np.repeat(np.arange(len(parts)), [p.t.size for p in parts])
        cat = cat.take(_lexorder(cat.t, cat.b, cat.root, src, cat.pos))
        cat.pos = _rank_in_groups(cat.t)
        return cat

    def run(self, ev: _Events, T: int, after_window: Callable[[int, int, _Events], None], window: int = 8) -> _Events:
        """The layer's output events over all ``T`` bins, from its (merged) input events.

        A neuron adds its input bin after bin while its running value provably stays in [lo, th)
        and inside the state format whatever the order of its events; from its first other bin it
        is pending until the end of the ``window`` of bins, when every pending neuron is stepped
        through its events of those bins, in order, at once. ``after_window(w0, w1, out)`` runs
        after each window; ``window=1`` makes the state exact after every bin (``record``)."""
        l = self.l
        B, HW, N = self.B, self.HW, self.N
        taps: list = []
        r = _rows(ev.t, ev.b, ev.c, ev.y, ev.x, None, l, self.wpn, B, T, 1 if self.ticks else window, taps,
                  whole_windows=not self.ticks)
        base = (r.loc // HW) * N + r.loc % HW  # neuron id of channel 0 at each row
        # the order key of every event inside its bin: (root, position among the root's events)
        within = _rank_in_groups(ev.t, ev.b, ev.root)
        M = np.ones(T, np.int64)
        if within.size:
            np.maximum.at(M, ev.t, within + 2)
        key = ev.root * M[ev.t] + within + 1
        # every (event, kernel tap) that reaches a neuron, by bin
        e, pos, tap = taps
        terms = (ev.b[e] * HW + pos, key[e], ev.c[e] * (l.kernel[0] * l.kernel[1]) + tap, ev.t[e])
        if not self.ticks:  # by window, then position (each position's terms stay in (bin, key) order)
            o = np.argsort((terms[3] // window) * (B * HW) + terms[0], kind="stable")
            terms = tuple(a[o] for a in terms)
        tbounds = np.searchsorted(terms[3] // window * window if not self.ticks else terms[3], np.arange(T + 1))
        if self.ticks:
            dense_base = (self.all_loc // HW) * N + self.all_loc % HW
        self.none = T
        self.pending.fill(T)  # the bin from which a neuron's events wait for the sequential step (T: none)
        outs: list[_Events] = []
        for w0 in range(0, T, window):
            w1 = min(T, w0 + window)
            if self.ticks:
                for ti in range(w0, w1):
                    self._screen_ticks(r, ti, dense_base)
            elif r.bounds[w0 // window + 1] > r.bounds[w0 // window]:
                self._screen(r, base, r.bounds[w0 // window], r.bounds[w0 // window + 1])
            outs.append(self._sequential(w0, w1, [x[tbounds[w0]:tbounds[w1]] for x in terms], M))
            after_window(w0, w1, outs[-1])
        out = _Events.cat(outs)
        out.pos = _rank_in_groups(out.t) if out.t.size else out.pos
        return out

    def _quiet(self, v, P, Nn):
        """Where a neuron at ``v`` that receives events summing to at most ``P`` and at least
        ``Nn`` (in any order) provably neither fires, clamps, saturates nor wraps."""
        hi = v + P
        ok = hi < self.l.threshold_high if self.ge else hi <= self.l.threshold_high
        if self.l.threshold_high > self.sfmt.max:
            ok &= hi <= self.sfmt.max
        ok &= v + Nn >= self.lo
        return ok

    def _screen(self, r: _Rows, base: np.ndarray, ra: int, rb: int) -> None:
        """Rows ``ra:rb``: one window (no ticks), one row per position holding the window's sums:
        each neuron adds its input bin after bin while it is provably quiet (see :meth:`_quiet`);
        from its first other bin on it is pending (``self.pending``: that bin), its state kept for
        the sequential step."""
        C, V, pending = self.l.c_out, self.V, self.pending
        gid = base[ra:rb][:, None] + self.chan[None, :]
        # first the whole window at once: most neurons stay quiet through it
        Pt, Nt = r.sums[ra:rb, :C], r.sums[ra:rb, C:]
        V0 = V[gid]
        floor_ok = V0 + Nt >= self.lo  # no event of the window can take it below the lower bound
        calm = self._quiet(V0, Pt, Nt)
        V[gid] = np.where(calm, V0 + Pt + Nt, V0)
        gi, ch = np.nonzero(~calm)
        if not gi.size:
            return
        # the other neurons bin by bin, from their terms: hi = the value before each bin if quiet
        # so far, plus the bin's positive input
        tbin, tcol, tn, tstart = r.terms
        first_t = tstart[ra + gi]
        nt = tstart[ra + gi + 1] - first_t
        ti = np.arange(int(nt.sum())) + np.repeat(first_t - (np.cumsum(nt) - nt), nt)
        pair = np.repeat(np.arange(gi.size), nt)
        w = self.wflat[np.repeat(ch, nt), tcol[ti]] * tn[ti]
        bins = tbin[ti]
        seg = np.flatnonzero(np.concatenate(([True], (pair[1:] != pair[:-1]) | (bins[1:] != bins[:-1]))))  # one per (neuron, bin)
        P = np.add.reduceat(np.maximum(w, 0), seg)
        Nn = np.add.reduceat(np.minimum(w, 0), seg)
        lens = np.bincount(pair[seg], minlength=gi.size)
        off = np.cumsum(lens) - lens
        cs = np.cumsum(P + Nn)
        hi = cs - Nn
        hi += np.repeat(V0[gi, ch] - (cs[off] - P[off] - Nn[off]), lens)
        loud = hi >= self.l.threshold_high if self.ge else hi > self.l.threshold_high
        if self.l.threshold_high > self.sfmt.max:
            loud |= hi > self.sfmt.max
        if not floor_ok[gi, ch].all():  # the value after the bin's negative input (its lowest possible)
            loud |= hi - P + Nn < self.lo
        n = seg.size
        first = np.minimum.reduceat(np.where(loud, np.arange(n), n), off)  # each neuron's first loud bin
        late = first < n
        g = gid[gi, ch]
        quiet = ~late
        V[g[quiet]] = (V0[gi, ch] + Pt[gi, ch] + Nt[gi, ch])[quiet]
        fr = first[late]
        V[g[late]] = hi[fr] - P[fr]
        pending[g[late]] = bins[seg[fr]]

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

    def _sequential(self, w0: int, w1: int, terms: list[np.ndarray], M: np.ndarray) -> _Events:
        """The pending neurons stepped through their events of bins ``w0:w1`` in order; their
        output events (``pos`` is filled in by the caller). ``terms``: the window's (event, tap)
        pairs as (position id b*H*W + oy*W + ox, order key, weight column, bin), sorted by
        position (without ticks); ``M[t]``: bin t's key multiplier (a tick j has key j*M[t])."""
        l = self.l
        _, H, W = l.neuron_shape
        B, HW, N, T = self.B, self.HW, self.N, len(M)
        pending = self.pending
        cand = np.flatnonzero(pending < T)
        if not cand.size:
            return _Events.cat([])
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
            gpos, gkey, gcol, gbin = gpos[o], gkey[o], gcol[o], gbin[o]
        # (without ticks the caller sorted the window's terms by position, each in (bin, key) order)
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
        # -- output events, by bin in causal order -----------------------------------------------
        sg, sk, st = gid[spk], k[spk], tbin[spk]
        b = sg // N
        o = _lexorder(st - w0, b, sk, sg - b * N)
        sg, sk, st, b = sg[o], sk[o], st[o], b[o]
        nid = sg - b * N
        c, rem = nid // HW, nid % HW
        return _Events(st, b, c, rem // W, rem % W, sk // M[st], np.zeros(st.size, np.int64))

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
            if th > smax:  # else a saturating value also reaches the threshold
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
            if not self.saturated and ((vq > smax) | (vq < smin)).any():
                self.saturated = True
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
    streams: dict[str, _Events] = {INPUT: _input_events(x, n_ticks)}
    for li, el in enumerate(layers):

        def after_window(w0: int, w1: int, out: _Events, el=el, li=li) -> None:
            if record:  # window 1: the state after bin w0
                r = rec[el.l.name]
                r["v"][:, w0] = el.V.reshape((B,) + tuple(el.l.neuron_shape))
                r["spikes"][:, w0] = _Spikes(out.t - w0, out.b, out.c, out.y, out.x, np.ones(out.t.size, np.int64)).dense(
                    B, 1, el.l.neuron_shape)[:, 0]
            if progress is not None:
                progress(li * T + w1, len(layers) * T)

        ev = el.merge([(streams[s], p) for s, p in el.l.sources])
        streams[el.l.name] = el.run(ev, T, after_window, window=1) if record else el.run(ev, T, after_window)
    out = streams[net.output_layer]
    spikes = _Spikes(out.t, out.b, out.c, out.y, out.x, np.ones(out.t.size, np.int64))
    return SpeckSimResult(_finish(net, spikes.dense(B, T, net.layer(net.output_layer).neuron_shape)), rec,
                          {el.l.name: el.saturated for el in layers})


def simulate_network(net: SpeckNetwork, options: dict, state_format: IntFormat, x, *, mode: str | None = None, record: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> SpeckSimResult:
    """Simulate with a compile's resolved target options: ``mode`` (default: the option
    ``sim_mode``) "event" or "binned", with the options of that mode."""
    mode = mode or options["sim_mode"]
    if mode == "binned":
        return simulate_binned(net, x, spikes=options["binned_spikes"], record=record, progress=progress)
    if mode == "event":
        return simulate_events(net, x, state_format=state_format, spike_test=options["spike_test"], state_overflow=options["state_overflow"],
                               ticks_per_step=options["slow_clock_ticks_per_step"], record=record, progress=progress)
    raise UsageError(f"mode must be 'event' or 'binned', got {mode!r}")
