"""Compiled kernels of the Loihi 2 simulator's ``"numba"`` engine (imported only when numba is
installed: ``pip install nirdeploy[fast]``). :mod:`.sim` prepares the arrays and calls :func:`scan`
once per layer; the rules are those of :mod:`.sim` (``shared/chips/loihi2.md`` sections 2-3).

Per time step a layer costs, for ``k`` input spikes and ``n`` neurons, in blocks of
:data:`CHUNK` neurons that stay in L1 (:func:`step`):

* **delivery** (:func:`deliver`): one contiguous row add of ``n`` values per input spike of the
  first Dense (its effective weights stored transposed, one row per source neuron, as int8 halves
  of mixed-sign weights or uint8 magnitudes, summed in int16 while ``k`` spikes cannot overflow
  it, else in int32); other Dense synapses and a recurrent one add int16 rows into an int32
  accumulator (:func:`add_rows`) and are shifted by their own ``weight_exp`` (:func:`shift_into`);
* **neuron update** (:func:`update`): one branch-free, vectorized pass over the neurons: int32
  state computed in float64 (every value is an integer below 2**53, so products, ``trunc`` and
  ``floor`` are exact), which also applies the first Dense's ``weight_exp``, clears the
  accumulators and writes the spikes (int8);
* **spike extraction** (:func:`spike_list`), only for a recurrent layer: the indices of this
  step's spikes, which the recurrent Dense delivers at the next step (a layer feeding the next
  one is turned into per-step index lists once, :func:`spike_lists`);
* **recording** (:func:`record`), only with ``record`` or a voltage readout.

Input spike trains reach a layer as per-step index lists (:func:`spike_lists`), so a step without
input spikes costs nothing in delivery. :func:`prep_dense` computes a Dense matrix's effective
weights (:func:`.config.effective_weights`), transposed, in one pass.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scan", "spike_lists", "add_rows", "shift_into", "deliver", "update", "step", "spike_list", "record", "sign_mode", "prep_dense"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def spike_lists(s):
    """(B, T, n) int8 0/1 spikes -> ``ptr`` (B*T + 1,) int64 and ``idx`` int32: the indices of
    the spikes of sample b at step t are ``idx[ptr[b*T + t]:ptr[b*T + t + 1]]``, ascending."""
    B, T, n = s.shape
    ptr = np.zeros(B * T + 1, np.int64)
    total = 0
    for b in range(B):
        for t in range(T):
            c = 0
            for i in range(n):
                c += s[b, t, i] != 0
            total += c
            ptr[b * T + t + 1] = total
    idx = np.empty(total + n, np.int32)  # (n spare slots: the fill below writes before it tests)
    k = 0
    for b in range(B):
        for t in range(T):
            row = s[b, t]
            for i in range(n):  # branch-free: spikes are irregular, so a branch would mispredict
                idx[k] = i
                k += row[i] != 0
    return ptr, idx[:total]


@_jit
def add_rows(acc, w, idx, p0, p1, hi, off):
    """``acc += w[j - off]`` for the spikes ``j = idx[p]``, p from p0 on, while p < p1 and j < hi;
    returns the first p not consumed."""
    p = p0
    n = acc.size
    while p < p1 and idx[p] < hi:
        row = w[idx[p] - off]
        for i in range(n):
            acc[i] += row[i]
        p += 1
    return p


@_jit
def shift_into(dst, src, e):
    """``dst += src << e`` (arithmetic ``>> -e`` for e < 0), then ``src = 0``."""
    left = max(e, 0)
    right = max(-e, 0)
    for i in range(dst.size):
        dst[i] += (np.int64(src[i]) << left) >> right
        src[i] = 0


CHUNK = 1024  # neurons per block: the block's accumulators, u and v stay in L1 while its synapses are summed


@_jit
def deliver(ac, w, idx, p0, p1, c0):
    """``ac += w[idx[p], c0:c0 + len(ac)]`` for p0 <= p < p1 (``ac`` int16 or int32, ``w`` int8 or
    uint8: the adds narrow to the accumulator's width)."""
    m = ac.size
    for p in range(p0, p1):
        row = w[idx[p], c0:c0 + m]
        for i in range(m):
            ac[i] += row[i]


@_jit
def update(ac, uc, vc, ax, bc, sc, scale, neg, has_x, wrap, fu, fv, act, th, M, vmax):
    """The neuron update of one block (see :func:`step`); clears ``ac`` (and ``ax``)."""
    M2 = 2.0 * M
    for i in range(uc.size):
        x = ac[i] * scale
        ac[i] = 0
        if neg:
            x = np.floor(x) * act
        if has_x:
            x += ax[i] * act
            ax[i] = 0
        uu = np.trunc(uc[i] * fu) + x
        if wrap:
            uu = uu - M2 if uu > M else uu
            uu = uu + M2 if uu <= -M else uu
        uc[i] = uu
        vv = min(max(np.trunc(vc[i] * fv) + uu + bc[i], -vmax), vmax)
        sp = vv > th
        vc[i] = 0.0 if sp else vv
        sc[i] = sp


@_jit
def step(u, v, acc16, acc32, narrow, w0, idx, p0, p1, scale, neg, accx, has_x, wrap, fu, fv, act, th, bias, M, vmax, s_out):
    """One CUBA LIF step of every neuron, block by block (the block's accumulators, u and v stay
    in L1): first the primary Dense's spikes p0 <= p < p1 are summed, ``acc += w0[idx[p]]`` (in
    ``acc16`` when ``narrow``: the caller has checked that the sum fits int16, else in
    ``acc32``), then per neuron the activation ``a act`` with ``a = floor(acc scale)`` when
    ``neg`` (scale = f 2**weight_exp) or ``a act = acc scale`` (scale = act f 2**weight_exp), f
    the factor of the compact weights ``w0`` (2: mixed-sign weights are even and stored halved in
    int8; 1 excitatory, -1 inhibitory: magnitudes in uint8), plus ``accx act``; ``u = trunc(u fu)
    + a act``, wrapped into (-M, M] when ``wrap``; ``v = clip(trunc(v fv) + u + bias, -vmax,
    vmax)``; spike ``v > th``, reset ``v = 0``. Clears the accumulators, writes ``s_out`` (int8).

    u, v and bias are int32 arrays computed in float64: every intermediate is an integer below
    2**53 (a 24-bit value times a 12-bit factor at most; scale is a signed power of two), so
    products, ``trunc`` and ``floor`` are exact. The caller sets ``wrap`` False only when u
    provably never leaves (-M, M)."""
    n = u.size
    for c0 in range(0, n, CHUNK):  # (loops over range(m) on slices vectorize; range(c0, c1) does not)
        m = min(CHUNK, n - c0)
        uc, vc, ax, bc, sc = u[c0:c0 + m], v[c0:c0 + m], accx[c0:c0 + m], bias[c0:c0 + m], s_out[c0:c0 + m]
        if narrow:
            ac16 = acc16[c0:c0 + m]
            deliver(ac16, w0, idx, p0, p1, c0)
            update(ac16, uc, vc, ax, bc, sc, scale, neg, has_x, wrap, fu, fv, act, th, M, vmax)
        else:
            ac32 = acc32[c0:c0 + m]
            deliver(ac32, w0, idx, p0, p1, c0)
            update(ac32, uc, vc, ax, bc, sc, scale, neg, has_x, wrap, fu, fv, act, th, M, vmax)


@_jit
def spike_list(s, lst):
    """Indices of the spikes in ``s`` written to ``lst``; returns their count."""
    k = 0
    for i in range(s.size):
        if s[i] != 0:
            lst[k] = i
            k += 1
    return k


@_jit
def record(u, v, s, spike_voltage, u_out, v_out):
    for i in range(u.size):
        u_out[i] = u[i]
        v_out[i] = spike_voltage if s[i] else v[i]


@_jit
def scan(ptr, idx, seg_hi, seg_exp, w0, factor0, kmax16, wx, ext, has_ext, wrec, rec_exp, has_rec, wrap, fu, fv, act, th, bias, M, vmax,
         s_out, keep, spike_voltage, u_out, v_out):
    """One layer over all samples and steps.

    ``ptr``/``idx``: the layer's feed-forward Dense sources as spike lists (:func:`spike_lists`)
    over the concatenated source index space, segment k ending at ``seg_hi[k]`` with exponent
    ``seg_exp[k]``. The first segment's weights ``w0`` (n_src0, n) are compact (int8 or uint8
    times ``factor0``, see :func:`step`); a step with at most ``kmax16`` of its spikes sums them
    in int16. The other segments' weights ``wx`` (n_sources_total - n_src0, n) are int16. All
    weights are transposed effective weights. ``ext`` (B, T, n): activations from elsewhere (Conv
    synapses, already delayed), when ``has_ext``. ``wrec`` (n, n) transposed recurrent weights
    with ``rec_exp``, when ``has_rec``. ``wrap``: whether u can leave (-M, M] (see :func:`step`).
    Writes ``s_out`` (B, T, n) int8 and, when ``keep``, ``u_out``/``v_out`` (B, T, n) int64."""
    B, T, n = s_out.shape
    nseg = seg_hi.size
    u = np.zeros(n, np.int32)  # 24-bit values
    v = np.zeros(n, np.int32)
    acc16 = np.zeros(n, np.int16)  # the first Dense's raw sum; its exponent is applied in step()
    acc32 = np.zeros(n, np.int32)
    accx = np.zeros(n, np.int32)  # every other input, already shifted
    tmp = np.zeros(n, np.int32)
    lst = np.zeros(n, np.int32)  # this layer's spikes of the previous step (recurrence)
    e0 = seg_exp[0] if nseg > 0 else 0
    neg = e0 < 0
    scale = factor0 * 2.0**e0 if neg else act * factor0 * 2.0**e0
    has_x = has_ext or has_rec or nseg > 1
    hi0 = seg_hi[0] if nseg > 0 else 0
    for b in range(B):
        u[:] = 0
        v[:] = 0
        nl = 0
        for t in range(T):
            p0 = p1 = 0
            if t > 0 and nseg > 0:  # Dense inputs: the sources' spikes of step t - 1
                q = b * T + t - 1
                end = ptr[q + 1]
                p0 = p1 = ptr[q]
                while p1 < end and idx[p1] < hi0:  # the first Dense: summed inside step()
                    p1 += 1
                p = p1
                for k in range(1, nseg):
                    p2 = add_rows(tmp, wx, idx, p, end, seg_hi[k], hi0)
                    if p2 > p:
                        shift_into(accx, tmp, seg_exp[k])
                    p = p2
            if nl > 0:
                add_rows(tmp, wrec, lst, 0, nl, n, 0)
                shift_into(accx, tmp, rec_exp)
            if has_ext:
                e = ext[b, t]
                for i in range(n):
                    accx[i] += e[i]
            step(u, v, acc16, acc32, p1 - p0 <= kmax16, w0, idx, p0, p1, scale, neg, accx, has_x, wrap, fu, fv, act, th, bias, M, vmax,
                 s_out[b, t])
            if has_rec:
                nl = spike_list(s_out[b, t], lst)
            if keep:
                record(u, v, s_out[b, t], spike_voltage, u_out[b, t], v_out[b, t])
    return 0


@_jit
def sign_mode(w):
    """Lava's inferred sign mode of a weight matrix: 2 excitatory (all >= 0), 3 inhibitory (all
    <= 0), 1 mixed (:func:`.config.infer_sign_mode`)."""
    lo, hi = 0, 0
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            lo = min(lo, w[i, j])
            hi = max(hi, w[i, j])
    return 2 if lo >= 0 else (3 if hi <= 0 else 1)


@_jit
def prep_dense(w, mode, nb, out, flip, sh):
    """A Dense matrix as :func:`.config.effective_weights` defines it, in one pass: ``w``
    (n_dst, n_src) int64 integers, ``mode`` 1 mixed / 2 excitatory / 3 inhibitory, ``nb`` weight
    bits. Writes ``out[j, i] = (effective[i, j] * flip) >> sh`` (transposed; int16, or compact:
    int8 halves of mixed-sign weights, which are even, or uint8 magnitudes). Returns the largest
    row sum of the effective weights' magnitudes and the largest ``|out|``."""
    n_dst, n_src = w.shape
    k = 8 - nb + (1 if mode == 1 else 0)
    cmin = -256 if mode == 1 else 0
    mf = -1 if mode == 3 else 1
    rs = np.zeros(n_dst, np.int64)
    top = 0
    B = 64  # transposed in 64 x 64 tiles (each tile's lines stay in L1)
    for i0 in range(0, n_dst, B):
        for j0 in range(0, n_src, B):
            for i in range(i0, min(i0 + B, n_dst)):
                s = 0
                for j in range(j0, min(j0 + B, n_src)):
                    x = min(max(w[i, j] * mf, cmin), 255)
                    y = ((x >> k) << k) * mf
                    z = (y * flip) >> sh
                    out[j, i] = z
                    s += abs(y)
                    top = max(top, abs(z))
                rs[i] += s
    rmax = 0
    for i in range(n_dst):
        rmax = max(rmax, rs[i])
    return rmax, top
