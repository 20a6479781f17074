"""Bit-accurate, batched numpy simulator of Loihi 2's fixed-point CUBA LIF neurons and Dense/Conv
synapses, as Lava 0.10.0's CPU models define them (``Loihi2SimCfg(select_tag="fixed_pt")``).

An independent implementation of the rules in ``shared/chips/loihi2.md`` sections 2-3 (no vendor
code), checked for exact equality of spikes, u and v against Lava itself by
``tests/test_loihi2_lava_oracle.py``. Widths come from the hw_config (formats ``u``, ``v``,
``conv_output``; limits ``decay_shift``, ``activation_shift``, ``threshold_shift``,
``current_decay_offset``).

Per step ``t`` every layer (one Lava LIF process) does, with R(x) = x / 4096 rounded toward zero:

1. ``a`` = sum of its synapses' outputs, each computed from its source's spikes of step t-1
   (one step of delay per Dense/Conv; the network input x[t-1] counts as binary spikes x > 0);
2. ``u = wrap(R(u * (4096 - (du + 1))) + (a << 6))``: one conditional wrap into
   (-2**23, 2**23] (Lava's rule: +2**23 is kept);
3. ``v = clip(R(v * (4096 - dv)) + u + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)``;
4. ``s = v > vth << 6`` (strict), ``v = 0`` where s; u is never reset.

A Dense synapse's output is ``(sum of effective weights of active inputs) << weight_exp`` (an
arithmetic right shift for a negative exponent), with the weights clipped and truncated by sign
mode (:func:`config.effective_weights`); a Conv synapse's output wraps at 24 bits. Lava's CPU
models carry activations in int32: when a layer's static activation bound could exceed int32,
the simulator reproduces those 32-bit wraps too (a fit rule warns long before that).

Two engines compute the same thing. ``"numpy"`` steps the whole network in time, in float64 on
integer values below 2**53 (exact; BLAS for the synapses). ``"numba"`` (used when numba is
installed, ``pip install nirdeploy[fast]``, no layer is fed back from a later layer and no
activation can reach int32) runs layer after layer over ALL time steps in one compiled loop per
layer: Dense synapses are summed event by event from the sources' spike trains (integers), Conv
synapses are computed for all steps beforehand, the neurons run in float64 (exact, vectorized).
``engine="auto"`` picks numba when it applies.
Recorded states (``record=True``) are the values after the step (v after reset); with
``spike_voltage=128`` the recorded v at spike steps reads as Loihi 2 hardware reports it (lava
#282; the dynamics are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import INPUT, Loihi2Network

__all__ = ["SimResult", "simulate", "Constants"]


@dataclass(frozen=True)
class Constants:
    """Fixed-point constants of the LIF model (from the hw_config; defaults are Lava 0.10.0's)."""

    uv_bits: int = 24
    decay_shift: int = 12
    activation_shift: int = 6
    threshold_shift: int = 6
    current_decay_offset: int = 1
    conv_bits: int = 24

    @classmethod
    def from_hw(cls, hw) -> "Constants":
        lim = hw.limits
        return cls(
            uv_bits=hw.fmt("u").bits,
            decay_shift=int(lim["decay_shift"]),
            activation_shift=int(lim["activation_shift"]),
            threshold_shift=int(lim["threshold_shift"]),
            current_decay_offset=int(lim["current_decay_offset"]),
            conv_bits=hw.fmt("conv_output").bits,
        )


@dataclass
class SimResult:
    """``output``: (batch, time, *output_shape): spikes (0/1) or, for a voltage readout, v.
    ``states`` (with ``record``): per layer name, ``{"u", "v", "s"}`` arrays (batch, time, n) int64."""

    output: np.ndarray
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


_I32 = float(1 << 31)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return np.mod(a + _I32, 2 * _I32) - _I32


def _bound(syn) -> float:
    """Largest |output| a synapse can send in one step (every input active)."""
    w = np.abs(syn.effective())
    if syn.kind == "dense":
        return float(w.sum(axis=1).max(initial=0)) * 2.0**syn.weight_exp
    return float(w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0))


class _Syn:
    def __init__(self, syn, net: Loihi2Network, c: Constants):
        self.src = syn.src
        self.kind = syn.kind
        w = syn.effective().astype(np.float64)
        self.exp = syn.weight_exp
        if syn.kind == "dense":
            self.wt = np.ascontiguousarray(w.T)  # (n_src, n_dst)
            row_bound = np.abs(w).sum(axis=1) if w.size else np.zeros(0)
            self.exact32 = float(row_bound.max(initial=0)) < 2.0**24
            self.wt32 = self.wt.astype(np.float32) if self.exact32 else None
        else:
            self.w = w
            self.syn = syn
            self.src_shape = net.src_shape(syn.src)
            row_bound = np.full(1, np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        self.bound = float(row_bound.max(initial=0)) * (2.0**self.exp if syn.kind == "dense" else 1.0)
        self.conv_half = float(1 << (c.conv_bits - 1))

    def accumulate(self, s: np.ndarray) -> np.ndarray:
        """s: (B, n_src) 0/1 float -> (B, n_dst) float."""
        if self.kind == "dense":
            if s.shape[0] == 1:
                idx = np.flatnonzero(s[0])
                acc = self.wt[idx].sum(axis=0, keepdims=True) if idx.size else np.zeros((1, self.wt.shape[1]))
            elif self.exact32:  # every partial sum below 2**24: float32 BLAS is exact and twice as fast
                acc = (s.astype(np.float32) @ self.wt32).astype(np.float64)
            else:
                acc = s @ self.wt
            if self.exp > 0:
                acc *= float(1 << self.exp)
            elif self.exp < 0:
                acc = np.floor(acc / float(1 << -self.exp))
            return acc
        from nirdeploy.sim.reference import conv_nd

        x = s.reshape((s.shape[0],) + tuple(self.src_shape))
        y = conv_nd(x, self.w, None, self.syn.stride, self.syn.padding, self.syn.dilation, self.syn.groups)
        y = y.reshape(s.shape[0], -1)
        h = self.conv_half
        if np.abs(y).max(initial=0) >= h:
            y = np.mod(y + h, 2 * h) - h
        return y


ENGINES = ("auto", "numpy", "numba")


def simulate(
    net: Loihi2Network,
    x: np.ndarray,
    *,
    constants: Constants = Constants(),
    record: bool = False,
    spike_voltage: int = 0,
    progress: Callable[[int, int], None] | None = None,
    engine: str = "auto",
) -> SimResult:
    """Run ``net`` on ``x`` (batch, time, *input_shape) non-negative counts (binary on Loihi:
    any count > 0 is one spike). Returns :class:`SimResult`; output step t is the chip's step t.

    Raises ValueError for an input of the wrong shape or an unknown ``engine`` (or ``"numba"``
    when it does not apply)."""
    x = np.asarray(x)
    if x.ndim != 2 + len(net.input_shape) or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ValueError(f"input has shape {x.shape}; expected (batch, time, {', '.join(map(str, net.input_shape))})")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    B, T = int(x.shape[0]), int(x.shape[1])
    xin = (x.reshape(B, T, -1) > 0).astype(np.float64)
    c = constants
    if engine != "numpy":
        why = _numba_unsupported(net, c)
        if why is None:
            return _simulate_numba(net, xin, c, record, spike_voltage, progress)
        if engine == "numba":
            raise ValueError(f"the numba engine does not apply: {why}")
    return _simulate_numpy(net, xin, c, record, spike_voltage, progress)


def _simulate_numpy(net: Loihi2Network, xin: np.ndarray, c: Constants, record: bool, spike_voltage: int, progress) -> SimResult:
    B, T = int(xin.shape[0]), int(xin.shape[1])
    M = float(1 << (c.uv_bits - 1))
    unity = float(1 << c.decay_shift)
    act = float(1 << c.activation_shift)
    layers = net.layers
    syns = [[_Syn(s, net, c) for s in L.synapses] for L in layers]
    n = [L.n for L in layers]
    fu = [(unity - (L.du + c.current_decay_offset)) / unity for L in layers]
    fv = [(unity - L.dv) / unity for L in layers]
    th = [float(L.vth << c.threshold_shift) for L in layers]
    bias = [L.effective_bias().astype(np.float64) for L in layers]
    has_bias = [bool(np.any(b != 0)) for b in bias]
    # Lava carries activations in int32: emulate its wraps only where they can happen
    wide = [sum(s.bound for s in sl) * act + 2 * M >= _I32 for sl in syns]
    u = [np.zeros((B, k)) for k in n]
    v = [np.zeros((B, k)) for k in n]
    spk = [np.zeros((B, k)) for k in n]
    buf = [[np.zeros((B, k)) for _ in sl] for k, sl in zip(n, syns)]
    vmax = M - 1
    rec = {L.name: {k: np.zeros((B, T, m), dtype=np.int64) for k in ("u", "v", "s")} for L, m in zip(layers, n)} if record else {}
    out_layer = net.output
    out = np.zeros((B, T, n[out_layer]), dtype=np.int64)
    tick = max(1, T // 100)
    for t in range(T):
        for i in range(len(layers)):
            # 1. input: the synapses' accumulations of the previous step
            if buf[i]:
                a = buf[i][0] if len(buf[i]) == 1 else np.sum(buf[i], axis=0)
            else:
                a = None
            # 2. current
            uu = np.trunc(u[i] * fu[i]) if fu[i] != 0.0 else np.zeros_like(u[i])
            if a is not None:
                if wide[i]:
                    a = _wrap32(np.sum([_wrap32(b) for b in buf[i]], axis=0))
                    uu = _wrap32(uu + _wrap32(a * act))
                else:
                    uu += a * act
            if uu.size and (uu.max() > M or uu.min() <= -M):
                uu = np.where(uu > M, uu - 2 * M, np.where(uu <= -M, uu + 2 * M, uu))
            u[i] = uu
            # 3. voltage
            vv = np.trunc(v[i] * fv[i]) if fv[i] != 1.0 else v[i].copy()
            vv += uu
            if has_bias[i]:
                vv += bias[i]
            if vv.size and (vv.max() > vmax or vv.min() < -vmax):
                np.clip(vv, -vmax, vmax, out=vv)
            # 4. spikes and reset
            s = vv > th[i]
            vv[s] = 0.0
            v[i] = vv
            spk[i] = s.astype(np.float64)
            if record:
                r = rec[layers[i].name]
                r["u"][:, t] = uu
                r["v"][:, t] = np.where(s, spike_voltage, vv) if spike_voltage else vv
                r["s"][:, t] = s
        if net.readout == "v":
            out[:, t] = v[out_layer]
        else:
            out[:, t] = spk[out_layer]
        # synapses accumulate this step's spikes for the next step
        for i, sl in enumerate(syns):
            for j, sy in enumerate(sl):
                src = xin[:, t] if sy.src == INPUT else spk[sy.src]
                buf[i][j] = sy.accumulate(src)
        if progress is not None and (t % tick == 0 or t == T - 1):
            progress(t + 1, T)
    out_shape = layers[out_layer].shape
    return SimResult(out.reshape((B, T) + tuple(out_shape)), rec)


# -- the numba engine ------------------------------------------------------------------------------
_KERNEL = None


def _kernel():
    """The compiled per-layer time loop (None without numba)."""
    global _KERNEL
    if _KERNEL is None:
        try:
            import numba
        except ImportError:
            _KERNEL = False
            return None

        @numba.njit(cache=True, nogil=True)
        def scan(ext, has_ext, src, seg_lo, seg_hi, seg_exp, wff, wrec, rec_exp, has_rec, fu_num, fv_num, shift, act, th, bias, M, vmax,
                 record, spike_voltage, out_s, out_u, out_v):
            B, T, n = out_s.shape
            nseg = seg_lo.size
            u = np.zeros(n, np.float64)
            v = np.zeros(n, np.float64)
            fu = fu_num / float(1 << shift)
            fv = fv_num / float(1 << shift)
            M2 = 2.0 * M
            a = np.zeros(n, np.int64)
            acc = np.zeros(n, np.int64)
            rb = np.zeros(n, np.int64)
            for b in range(B):
                u[:] = 0
                v[:] = 0
                rb[:] = 0
                for t in range(T):
                    # synaptic input: every Dense sums its source's spikes of step t - 1, then shifts
                    a[:] = 0
                    if t > 0:
                        for k in range(nseg):
                            hit = False
                            for j in range(seg_lo[k], seg_hi[k]):
                                if src[b, t - 1, j]:
                                    if not hit:
                                        acc[:] = 0
                                        hit = True
                                    for i in range(n):
                                        acc[i] += wff[j, i]
                            if hit:
                                e = seg_exp[k]
                                for i in range(n):
                                    x = acc[i]
                                    if e > 0:
                                        x <<= e
                                    elif e < 0:
                                        x >>= -e
                                    a[i] += x
                    if has_ext:
                        for i in range(n):
                            a[i] += ext[b, t, i]
                    # float64 holds every value exactly (< 2**53) and vectorizes: R(x) = trunc(x * f / 4096)
                    for i in range(n):
                        uu = np.trunc(u[i] * fu) + (a[i] + rb[i]) * act
                        uu = uu - M2 if uu > M else uu
                        uu = uu + M2 if uu <= -M else uu
                        u[i] = uu
                        vv = min(max(np.trunc(v[i] * fv) + uu + bias[i], -vmax), vmax)
                        sp = vv > th
                        v[i] = 0.0 if sp else vv
                        out_s[b, t, i] = sp
                    if record:
                        for i in range(n):
                            out_u[b, t, i] = u[i]
                            out_v[b, t, i] = spike_voltage if out_s[b, t, i] else v[i]
                    if has_rec:
                        for i in range(n):
                            rb[i] = 0
                        for j in range(n):
                            if out_s[b, t, j]:
                                for i in range(n):
                                    rb[i] += wrec[j, i]
                        if rec_exp > 0:
                            for i in range(n):
                                rb[i] <<= rec_exp
                        elif rec_exp < 0:
                            for i in range(n):
                                rb[i] >>= -rec_exp
            return 0

        _KERNEL = scan
    return _KERNEL or None


def _numba_unsupported(net: Loihi2Network, c: Constants) -> str | None:
    if _kernel() is None:
        return "numba is not installed (pip install nirdeploy[fast])"
    M = float(1 << (c.uv_bits - 1))
    for i, L in enumerate(net.layers):
        own = [s for s in L.synapses if s.src == i]
        if len(own) > 1 or any(s.kind != "dense" for s in own):
            return f"layer {L.name} has a recurrent synapse that is not one Dense"
        if any(s.src > i for s in L.synapses):
            return f"layer {L.name} is fed back from a later layer"
        bound = sum(_bound(s) for s in L.synapses)
        if bound * float(1 << c.activation_shift) + 2 * M >= _I32:
            return f"layer {L.name} can reach int32 activations (Lava's 32-bit wraps are emulated step by step)"
    return None


def _simulate_numba(net: Loihi2Network, xin: np.ndarray, c: Constants, record: bool, spike_voltage: int, progress) -> SimResult:
    """Layer after layer over all steps: Dense synapses are summed event by event inside the
    compiled loop, Conv synapses are computed for all steps at once beforehand."""
    scan = _kernel()
    B, T = int(xin.shape[0]), int(xin.shape[1])
    layers = net.layers
    rec = {L.name: {k: np.zeros((B, T, L.n), dtype=np.int64) for k in ("u", "v", "s")} for L in layers} if record else {}
    out = None
    M = 1 << (c.uv_bits - 1)
    unity = 1 << c.decay_shift
    dummy3 = np.zeros((1, 1, 1), np.int64)
    x_bool = xin > 0
    spikes: list[np.ndarray] = []
    for i, L in enumerate(layers):
        dense = [s for s in L.synapses if s.kind == "dense" and s.src != i]
        convs = [s for s in L.synapses if s.kind == "conv"]
        own = [s for s in L.synapses if s.src == i]
        if dense:
            srcs = [x_bool if s.src == INPUT else spikes[s.src] for s in dense]
            src = np.ascontiguousarray(np.concatenate(srcs, axis=2)) if len(srcs) > 1 else np.ascontiguousarray(srcs[0])
            wff = np.ascontiguousarray(np.concatenate([s.effective().T for s in dense], axis=0).astype(np.int16))  # 9-bit values
            sizes = np.array([w.shape[1] for w in (s.weight for s in dense)], np.int64)
            seg_hi = np.cumsum(sizes)
            seg_lo = seg_hi - sizes
            seg_exp = np.array([s.weight_exp for s in dense], np.int64)
        else:
            src = np.zeros((B, T, 0), np.bool_)
            wff = np.zeros((0, L.n), np.int16)
            seg_lo = seg_hi = seg_exp = np.zeros(0, np.int64)
        if convs:
            ext = np.zeros((B, T, L.n), np.int64)
            for syn in convs:
                s_src = (x_bool if syn.src == INPUT else spikes[syn.src]).astype(np.float64)
                acc = _Syn(syn, net, c).accumulate(s_src.reshape(B * T, -1)).reshape(B, T, L.n)
                ext[:, 1:] += acc[:, :-1].astype(np.int64)  # one step of synaptic delay
        else:
            ext = dummy3
        wrec, rec_exp, has_rec = np.zeros((1, 1), np.int16), 0, False
        if own:
            wrec, rec_exp, has_rec = np.ascontiguousarray(own[0].effective().T.astype(np.int16)), own[0].weight_exp, True
        s_out = np.zeros((B, T, L.n), np.bool_)
        keep = record or (net.readout == "v" and i == net.output)  # a voltage readout needs v
        if keep:
            u_out, v_out = np.zeros((B, T, L.n), np.int64), np.zeros((B, T, L.n), np.int64)
        else:
            u_out = v_out = dummy3
        scan(ext, bool(convs), src, seg_lo, seg_hi, seg_exp, wff, wrec, int(rec_exp), has_rec, int(unity - (L.du + c.current_decay_offset)),
             int(unity - L.dv), int(c.decay_shift), float(1 << c.activation_shift), float(L.vth << c.threshold_shift),
             L.effective_bias().astype(np.float64), float(M), float(M - 1), bool(keep), int(spike_voltage if record else 0), s_out, u_out, v_out)
        spikes.append(s_out)
        if record:
            r = rec[L.name]
            r["s"][:], r["u"][:], r["v"][:] = s_out, u_out, v_out
        if i == net.output:
            out = v_out.copy() if net.readout == "v" else s_out.astype(np.int64)
        if progress is not None:
            progress(i + 1, len(layers))
    return SimResult(out.reshape((B, T) + tuple(layers[net.output].shape)), rec)
