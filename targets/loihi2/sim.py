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

All arithmetic runs in float64 on integer values below 2**53, so it is exact and uses BLAS for the
synapses. Recorded states (``record=True``) are the values after the step (v after reset); with
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


class _Syn:
    def __init__(self, syn, net: Loihi2Network, c: Constants):
        self.src = syn.src
        self.kind = syn.kind
        w = syn.effective().astype(np.float64)
        self.exp = syn.weight_exp
        if syn.kind == "dense":
            self.wt = np.ascontiguousarray(w.T)  # (n_src, n_dst)
            row_bound = np.abs(w).sum(axis=1) if w.size else np.zeros(0)
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


def simulate(
    net: Loihi2Network,
    x: np.ndarray,
    *,
    constants: Constants = Constants(),
    record: bool = False,
    spike_voltage: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``net`` on ``x`` (batch, time, *input_shape) non-negative counts (binary on Loihi:
    any count > 0 is one spike). Returns :class:`SimResult`; output step t is the chip's step t.

    Raises ValueError for an input of the wrong shape."""
    x = np.asarray(x)
    if x.ndim != 2 + len(net.input_shape) or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ValueError(f"input has shape {x.shape}; expected (batch, time, {', '.join(map(str, net.input_shape))})")
    B, T = int(x.shape[0]), int(x.shape[1])
    xin = (x.reshape(B, T, -1) > 0).astype(np.float64)
    c = constants
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
