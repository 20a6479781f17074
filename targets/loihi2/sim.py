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
layer (:mod:`.sim_numba`): each input spike adds one row of the transposed integer weight table
(int8/uint8, summed in int16 while the step's spikes cannot overflow it), the neurons update in
blocks that stay in L1 (int32 state, float64 arithmetic: exact, vectorized), Conv synapses are
computed for all steps beforehand; large layers run on several threads (samples, or blocks of
neurons of a layer without recurrence, are independent). ``engine="auto"`` picks numba when it
applies. Spike outputs are int8 (0/1), voltage readouts and recorded states int64.
Recorded states (``record=True``) are the values after the step (v after reset); with
``spike_voltage=128`` the recorded v at spike steps reads as Loihi 2 hardware reports it (lava
#282; the dynamics are unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import INPUT, SIGN_MODES, Loihi2Network, NeuronLayer

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
    """``output``: (batch, time, *output_shape): spikes (int8 0/1) or, for a voltage readout, v (int64).
    ``states`` (with ``record``): per layer name, ``{"u", "v", "s"}`` arrays (batch, time, n) int64."""

    output: np.ndarray
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


_I32 = float(1 << 31)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return np.mod(a + _I32, 2 * _I32) - _I32


class _Syn:
    """One synapse in the numpy engine: ``accumulate(s)`` takes its source's spikes of a step and
    returns what it delivers at the next step (a DelayDense keeps the later deliveries in a ring)."""

    def __init__(self, syn, net: Loihi2Network, c: Constants):
        self.src = syn.src
        self.kind = syn.kind
        w = syn.effective().astype(np.float64)
        self.exp = syn.weight_exp
        self.ring = None
        if syn.kind == "dense":
            delay = syn.delay if syn.delay is not None else np.zeros(w.shape, np.int64)
            self.parts = []  # per delay value: (delay, transposed weights of that delay, float32 copy when exact)
            for k in np.unique(delay) if delay.size else [0]:
                wk = np.where(delay == k, w, 0.0)
                exact32 = float(np.abs(wk).sum(axis=1).max(initial=0)) < 2.0**24
                wt = np.ascontiguousarray(wk.T)  # (n_src, n_dst)
                self.parts.append((int(k), wt, wt.astype(np.float32) if exact32 else None))
            self.delayed = syn.delay is not None
            row_bound = np.abs(w).sum(axis=1) if w.size else np.zeros(0)
            floors = len(self.parts) if self.exp < 0 else 0  # each delay's sum is floored on its own
            self.bound = float(row_bound.max(initial=0)) * 2.0**self.exp + floors
        else:
            self.w = w
            self.syn = syn
            self.src_shape = net.src_shape(syn.src)
            self.bound = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        self.conv_half = float(1 << (c.conv_bits - 1))

    def _dense(self, s: np.ndarray, wt: np.ndarray, wt32: np.ndarray | None) -> np.ndarray:
        if s.shape[0] == 1:
            idx = np.flatnonzero(s[0])
            acc = wt[idx].sum(axis=0, keepdims=True) if idx.size else np.zeros((1, wt.shape[1]))
        elif wt32 is not None:  # every partial sum below 2**24: float32 BLAS is exact and twice as fast
            acc = (s.astype(np.float32) @ wt32).astype(np.float64)
        else:
            acc = s @ wt
        if self.exp > 0:
            acc *= float(1 << self.exp)
        elif self.exp < 0:
            acc = np.floor(acc / float(1 << -self.exp))
        return acc

    def accumulate(self, s: np.ndarray) -> np.ndarray:
        """s: (B, n_src) 0/1 float -> (B, n_dst) float."""
        if self.kind == "dense":
            if not self.delayed:
                return self._dense(s, self.parts[0][1], self.parts[0][2])
            if self.ring is None:  # Lava's a_buff: slot k is delivered k steps after the next one (int32)
                self.ring = np.zeros((max(k for k, _, _ in self.parts) + 1, s.shape[0], self.parts[0][1].shape[1]))
            for k, wt, wt32 in self.parts:
                self.ring[k] += self._dense(s, wt, wt32)
                if np.abs(self.ring[k]).max(initial=0) >= _I32:
                    self.ring[k] = _wrap32(self.ring[k])
            out = self.ring[0].copy()
            self.ring[:-1] = self.ring[1:].copy()
            self.ring[-1] = 0.0
            return out
        from nirdeploy.sim.reference import conv_nd

        x = s.reshape((s.shape[0],) + tuple(self.src_shape))
        y = conv_nd(x, self.w, None, self.syn.stride, self.syn.padding, self.syn.dilation, self.syn.groups)
        y = y.reshape(s.shape[0], -1)
        h = self.conv_half
        if np.abs(y).max(initial=0) >= h:
            y = np.mod(y + h, 2 * h) - h
        return y

    def all_steps(self, s: np.ndarray, T: int) -> np.ndarray:
        """What the synapse delivers at every step, from its source's whole spike train ``s``
        (B, T, n_src) 0/1 float: (B, T, n_dst) int64 (one step of delay, plus the synapse's own)."""
        B = s.shape[0]
        flat = s.reshape(B * T, -1)
        if self.kind == "conv":
            parts = [(0, self.accumulate(flat))]
        else:
            parts = [(k, self._dense(flat, wt, wt32)) for k, wt, wt32 in self.parts]
        out = np.zeros((B, T, parts[0][1].shape[-1]), np.int64)
        for k, acc in parts:
            if T > 1 + k:
                out[:, 1 + k:] += acc.reshape(B, T, -1)[:, :T - 1 - k].astype(np.int64)
        return out


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
    threads: int | None = None,
) -> SimResult:
    """Run ``net`` on ``x`` (batch, time, *input_shape) non-negative counts (binary on Loihi:
    any count > 0 is one spike). Returns :class:`SimResult`; output step t is the chip's step t.
    ``threads`` (numba engine): how many threads a large layer may use (default: the CPUs this
    process may run on); every result is the same for any number.

    Raises ValueError for an input of the wrong shape, an unknown ``engine`` (or ``"numba"``
    when it does not apply) or ``threads`` < 1."""
    x = np.asarray(x)
    if x.ndim != 2 + len(net.input_shape) or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ValueError(f"input has shape {x.shape}; expected (batch, time, {', '.join(map(str, net.input_shape))})")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if threads is not None and (not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    B, T = int(x.shape[0]), int(x.shape[1])
    spk = x.reshape(B, T, -1) > 0
    c = constants
    if engine != "numpy":
        why, plans = _numba_plan(net, c)
        if why is None:
            return _simulate_numba(net, spk.view(np.int8), plans, c, record, spike_voltage, progress,
                                   default_threads() if threads is None else threads)
        if engine == "numba":
            raise ValueError(f"the numba engine does not apply: {why}")
    return _simulate_numpy(net, spk.astype(np.float64), c, record, spike_voltage, progress)


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
    bias = [L.effective_bias().astype(np.int32) for L in layers]
    has_bias = [bool(np.any(b != 0)) for b in bias]
    # Lava carries activations in int32: emulate its wraps only where they can happen
    wide = [sum(s.bound for s in sl) * act + 2 * M >= _I32 for sl in syns]
    u = [np.zeros((B, k)) for k in n]
    v = [np.zeros((B, k)) for k in n]
    spk = [np.zeros((B, k)) for k in n]
    buf = [[np.zeros((B, k)) for _ in sl] for k, sl in zip(n, syns)]
    vmax = M - 1
    rec = {L.name: {k: np.zeros((B, T, m), dtype=np.int64) for k in ("u", "v", "s")} for L, m in zip(layers, n)} if record else {}
    outs = net.output_layers
    out_parts = [np.zeros((B, T, n[k]), dtype=np.int64 if net.readout == "v" else np.int8) for k in outs]
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
        for part, k in zip(out_parts, outs):
            part[:, t] = v[k] if net.readout == "v" else spk[k]
        # synapses accumulate this step's spikes for the next step
        for i, sl in enumerate(syns):
            for j, sy in enumerate(sl):
                src = xin[:, t] if sy.src == INPUT else spk[sy.src]
                buf[i][j] = sy.accumulate(src)
        if progress is not None and (t % tick == 0 or t == T - 1):
            progress(t + 1, T)
    out = net.merge_groups(out_parts, net.output)
    return SimResult(out.reshape((B, T) + tuple(net.output_shape)), rec)


# -- the numba engine ------------------------------------------------------------------------------
def _numba():
    """The compiled kernels (:mod:`.sim_numba`), or None without numba."""
    try:
        from . import sim_numba
    except ImportError:
        return None
    return sim_numba


@dataclass
class _LayerPlan:
    dense: list  # feed-forward Dense synapses (src != own index)
    w0: np.ndarray  # the first one's effective weights, transposed, compact: int8 (mixed, halved) or uint8 (magnitudes)
    factor0: int  # w0 * factor0 = the effective weights (2, 1 or -1)
    kmax16: int  # at most this many of its spikes in one step sum within int16
    wx: np.ndarray  # the others' effective weights, transposed and stacked (int16, 9-bit values)
    seg_hi: np.ndarray
    seg_exp: np.ndarray
    convs: list  # Conv and DelayDense synapses, whose deliveries are computed beforehand for all steps
    wrec: np.ndarray | None  # (n, n) int16, transposed, or None
    rec_exp: int
    wrap: bool  # whether u can reach the 24-bit wrap (False: provably never)


def _numba_plan(net: Loihi2Network, c: Constants) -> tuple[str | None, list[_LayerPlan]]:
    """(why the numba engine does not apply, or None; per layer its prepared weights). Each
    Dense matrix's effective weights are computed once here."""
    if _numba() is None:
        return "numba is not installed (pip install nirdeploy[fast])", []
    K = _numba()
    M = float(1 << (c.uv_bits - 1))
    plans = []
    for i, L in enumerate(net.layers):
        own = [s for s in L.synapses if s.src == i]
        if len(own) > 1 or any(s.kind != "dense" or s.delay is not None for s in own):
            return f"layer {L.name} has a recurrent synapse that is not one Dense without delays", []
        if any(s.src > i for s in L.synapses):
            return f"layer {L.name} is fed back from a later layer", []
        dense = [s for s in L.synapses if s.kind == "dense" and s.src != i and s.delay is None]
        convs = [s for s in L.synapses if s.kind == "conv" or (s.src != i and s.delay is not None)]  # computed beforehand
        bound = 0  # the largest |activation| of one step (integer, exact)
        mats = []
        for k, s in enumerate(dense + own):
            mode = SIGN_MODES[s.sign_mode] if s.sign_mode is not None else K.sign_mode(s.weight)
            if k == 0 and dense:  # the first Dense in compact form: mixed-sign weights are even (halved into int8), others fit uint8
                f0 = 2 if mode == SIGN_MODES["mixed"] else -1 if mode == SIGN_MODES["inhibitory"] else 1
                wt = np.empty(s.weight.shape[::-1], np.int8 if f0 == 2 else np.uint8)
                raw, top = K.prep_dense(s.weight, mode, s.num_weight_bits, wt, 1 if f0 > 0 else -1, 1 if f0 == 2 else 0)
                kmax16 = 32767 // top if top else 1 << 30  # spikes per step whose sum fits int16
            else:  # effective weights transposed to int16 (9-bit values)
                wt = np.empty(s.weight.shape[::-1], np.int16)
                raw, _ = K.prep_dense(s.weight, mode, s.num_weight_bits, wt, 1, 0)
            raw = int(raw)  # the largest row sum of |effective weights|
            if raw >= 1 << 31:  # the int32 accumulator holds the sum before the shift
                return f"layer {L.name}: a Dense sum before its weight_exp can exceed int32", []
            e = s.weight_exp
            bound += raw << e if e >= 0 else (raw >> -e) + 1  # |floor(x / 2**k)| <= (|x| >> k) + 1
            mats.append(wt)
        bound += sum(math.ceil(_Syn(s, net, c).bound) for s in convs)
        D = bound << c.activation_shift
        if D + 2 * M >= _I32:
            return f"layer {L.name} can reach int32 activations (Lava's 32-bit wraps are emulated step by step)", []
        # |u_t| <= |u_t-1| fu + D with fu = 1 - (du + offset) / 4096, so |u_t| < D 4096 / (du + offset): below M, u never wraps
        decay = L.du + c.current_decay_offset
        wrap = not (D == 0 or D * (1 << c.decay_shift) < int(M) * decay)
        nd = len(dense)
        w0 = mats[0] if nd else np.zeros((0, L.n), np.uint8)
        if not nd:
            f0, kmax16 = 1, 0
        wx = np.concatenate(mats[1:nd], axis=0) if nd > 1 else np.zeros((0, L.n), np.int16)
        seg_hi = np.cumsum([s.weight.shape[1] for s in dense], dtype=np.int64)
        seg_exp = np.array([s.weight_exp for s in dense], np.int64)
        plans.append(_LayerPlan(dense, w0, f0, kmax16, wx, seg_hi, seg_exp, convs, mats[nd] if own else None, own[0].weight_exp if own else 0,
                                wrap))
    return None, plans


def _numba_unsupported(net: Loihi2Network, c: Constants) -> str | None:
    """Why the numba engine does not apply to ``net`` (None: it does)."""
    return _numba_plan(net, c)[0]


def _scan_args(L: NeuronLayer, P: _LayerPlan, c: Constants, ptr, idx, ext, s_out, keep: bool, spike_voltage: int, u_out, v_out,
               lo: int = 0, hi: int | None = None) -> tuple:
    """The arguments of :func:`.sim_numba.scan` for one layer, or for its neurons lo..hi (the
    arrays ``ext``, ``s_out``, ``u_out``, ``v_out`` are then already those neurons' views)."""
    unity = 1 << c.decay_shift
    M = 1 << (c.uv_bits - 1)
    bias = L.effective_bias().astype(np.int32)
    w0, wx = P.w0, P.wx
    if lo != 0 or (hi is not None and hi != L.n):
        w0, wx, bias = np.ascontiguousarray(w0[:, lo:hi]), np.ascontiguousarray(wx[:, lo:hi]), bias[lo:hi]
    return (ptr, idx, P.seg_hi, P.seg_exp, w0, float(P.factor0), int(P.kmax16), wx, ext, bool(P.convs), _NO_REC if P.wrec is None else P.wrec,
            int(P.rec_exp), P.wrec is not None, P.wrap, float(unity - (L.du + c.current_decay_offset)) / unity, float(unity - L.dv) / unity,
            float(1 << c.activation_shift), float(L.vth << c.threshold_shift), bias, float(M), float(M - 1), s_out, bool(keep), int(spike_voltage),
            u_out, v_out)


def _split(total: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering 0..total, boundaries on multiples of ``align``."""
    cuts = [min(total, -(-total * k // parts // align) * align) for k in range(parts + 1)]
    cuts[-1] = total
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _run_scan(L: NeuronLayer, P: _LayerPlan, c: Constants, ptr, idx, ext, s_out, keep: bool, spike_voltage: int, u_out, v_out,
              threads: int) -> None:
    """:func:`.sim_numba.scan` for one layer, on up to ``threads`` threads (the kernel releases
    the GIL): samples are independent, and so are the neurons of a layer without recurrence, so
    each thread runs whole samples, or (batch 1) a block of neurons over all steps."""
    K = _numba()
    B, T, n = s_out.shape
    g = max(1, min(int(threads), 64)) if B * T * n >= MIN_THREAD_WORK else 1
    if g == 1:
        K.scan(*_scan_args(L, P, c, ptr, idx, ext, s_out, keep, spike_voltage, u_out, v_out))
        return
    jobs = []
    if B > 1 and (B >= g or P.wrec is not None):  # whole samples per thread
        for b0, b1 in _split(B, g):
            sl = slice(b0, b1)
            jobs.append(_scan_args(L, P, c, ptr[b0 * T:b1 * T + 1], idx, ext[sl] if P.convs else ext, s_out[sl], keep, spike_voltage,
                                   u_out[sl] if keep else u_out, v_out[sl] if keep else v_out))
    elif P.wrec is None:  # blocks of neurons, each over all steps (no recurrence: they do not interact)
        from .sim_numba import CHUNK

        for lo, hi in _split(n, g, CHUNK if n >= g * CHUNK else 64):
            cut = slice(lo, hi)
            jobs.append(_scan_args(L, P, c, ptr, idx, np.ascontiguousarray(ext[:, :, cut]) if P.convs else ext, s_out[:, :, cut], keep,
                                   spike_voltage, u_out[:, :, cut] if keep else u_out, v_out[:, :, cut] if keep else v_out, lo, hi))
    if len(jobs) < 2:
        K.scan(*_scan_args(L, P, c, ptr, idx, ext, s_out, keep, spike_voltage, u_out, v_out))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(jobs)) as ex:
        for f in [ex.submit(K.scan, *a) for a in jobs]:
            f.result()


MIN_THREAD_WORK = 1 << 22  # neuron-steps (a few ms) below which one thread is faster


def default_threads() -> int:
    """The CPUs this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_NO_REC = np.zeros((1, 1), np.int16)


def _simulate_numba(net: Loihi2Network, x_spk: np.ndarray, plans: list[_LayerPlan], c: Constants, record: bool, spike_voltage: int,
                    progress, threads: int) -> SimResult:
    """Layer after layer over all steps (:func:`.sim_numba.scan`): Dense synapses are summed
    event by event inside the compiled loop, Conv synapses are computed for all steps at once
    beforehand. ``x_spk``: (B, T, n_in) int8 0/1."""
    K = _numba()
    B, T = int(x_spk.shape[0]), int(x_spk.shape[1])
    layers = net.layers
    rec = {}
    outs = net.output_layers
    out_parts: dict[int, np.ndarray] = {}
    dummy3 = np.zeros((1, 1, 1), np.int64)
    spikes: list[np.ndarray] = []
    for i, (L, P) in enumerate(zip(layers, plans)):
        if P.dense:
            srcs = [x_spk if s.src == INPUT else spikes[s.src] for s in P.dense]
            ptr, idx = K.spike_lists(srcs[0] if len(srcs) == 1 else np.concatenate(srcs, axis=2))
        else:
            ptr, idx = np.zeros(1, np.int64), np.zeros(0, np.int32)
        if P.convs:  # Conv and DelayDense synapses: everything they deliver, computed beforehand from their sources' spikes
            ext = np.zeros((B, T, L.n), np.int64)
            for syn in P.convs:
                ext += _Syn(syn, net, c).all_steps((x_spk if syn.src == INPUT else spikes[syn.src]).astype(np.float64), T)
        else:
            ext = dummy3
        s_out = np.empty((B, T, L.n), np.int8)
        keep = record or (net.readout == "v" and i in outs)  # a voltage readout needs v
        if keep:
            u_out, v_out = np.empty((B, T, L.n), np.int64), np.empty((B, T, L.n), np.int64)
        else:
            u_out = v_out = dummy3
        _run_scan(L, P, c, ptr, idx, ext, s_out, keep, spike_voltage if record else 0, u_out, v_out, threads)
        spikes.append(s_out)
        if record:
            rec[L.name] = {"u": u_out, "v": v_out, "s": s_out.astype(np.int64)}
        if i in outs:
            out_parts[i] = v_out if net.readout == "v" else s_out
        if progress is not None:
            progress(i + 1, len(layers))
    out = net.merge_groups([out_parts[k] for k in outs], net.output)
    if net.readout == "v" and record:
        if out is out_parts[outs[0]]:
            out = out.copy()  # not the recorded array itself
        if spike_voltage:  # the readout is v as it is; only the record shows the hardware's spike-step read
            out[net.merge_groups([spikes[k] for k in outs], net.output) != 0] = 0
    return SimResult(out.reshape((B, T) + tuple(net.output_shape)), rec)
