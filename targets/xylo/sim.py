"""Bit-accurate, batched numpy simulator of Xylo (Audio 2, Audio 3, IMU).

It reproduces the integer update rule of SynSense's ``xylosim.v2`` (see
``shared/chips/xylo.md`` section 2) exactly, for every recorded state, and runs many samples at
once. This is an independent implementation of the documented rule (no vendor code), checked
against xylosim by ``tests/test_xylo_sim_oracle.py``.

Per step ``t`` (all widths and caps come from the variant's hw_config):

1. input events ``min(x[t, i], 15)`` and the previous step's hidden spike counts (``<= 31``) are
   delivered: one saturating add of the shifted weight ``int16(w << shift)`` per event, in the
   order input channels ascending, then hidden neurons ascending (readout synapses receive the
   same hidden spikes);
2. every synaptic state decays, ``I -= D(I, dash)`` with ``D(x, d) = x >> d`` or ``sign(x)``
   when that is 0;
3. ``dv = wrap16(-D(V, dash_mem))``, ``dv = sat(dv + sum(Isyn))``, ``dv = sat(dv + bias)``
   (bias only when enabled), ``V = sat(V + dv)``;
4. spikes by subtraction, ``while V >= theta and n < cap: n += 1; V -= theta`` (``V`` wraps at 16
   bits; theta <= 0 is simulated literally), hidden neurons in ascending order so that alias
   spikes land exactly as in the reference; caps 31 hidden, 1 output;
5. the states are recorded after spike subtraction.

How it stays exact while vectorised
-----------------------------------
*Delivery.* Per (sample, state) the adds of one step form a sequence ``c_1 .. c_m`` (one term
``n * w`` per source: ``n`` adds of the *same* weight with saturation after each equal one
saturated add of ``n * w``, because the partial sums are monotone). If the state ``s`` satisfies
``s + P <= max`` and ``s + N >= min``, with ``P``/``N`` the sums of the positive/negative terms,
every partial sum lies in range and the result is simply ``s + sum(c)``. The simulator first
checks a cheap global bound (``max |s| + max_sample sum_src n * max|w_row|``; skipped for a
while after it fails); when that fails it computes ``P`` and ``N`` per entry. An entry whose
bound fails is still closed-form: with one-signed terms the partial sums are monotone and the
result is the clamped total; if only ``s + P > max`` (``s + N >= min``: the lower bound is never
reached), unrolling ``s_k = min(s_{k-1} + c_k, max)`` gives ``S_m + min(s, max - max_k S_k)``
with the prefix sums ``S_k`` in source order (symmetrically at the lower bound). These prefix
maxima come from one stable radix sort of the events of such entries by state column (the
events are generated in (sample, source) order) and segmented ``cumsum``/``reduceat``; only the
entries that may touch both bounds are replayed term by term (:func:`_saturating_sequence`,
which jumps from one saturation event to the next).
*Neurons* are element-wise, except aliases, whose targets depend on the evaluation order: the
neurons taking part in an alias (source or target) are evaluated one by one in ascending order,
vectorised over the batch.

The delivery is sparse: the active (sample, source) pairs of a step gather their synapse rows
(padded to a common length: per class of similar fan-out for the global-bound path, cut into
sub-rows of one width for the per-entry path) and ``np.add.at`` scatters them into the flat
``(batch * states)`` array, so the cost follows the number of events; every other operation
runs over the whole batch at once. The large per-event work arrays are reused from step to step
(fresh ones cost more in page faults than the arithmetic on them). Synaptic states are held as
int16 (the decay cannot leave the range and the delivery writes only final, in-range values),
neuron arithmetic in int32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nirdeploy.errors import UsageError
from nirdeploy.backend.hwconfig import HWConfig

from .config import XyloConfig

__all__ = ["SimResult", "XyloSimulator", "simulate"]


@dataclass
class SimResult:
    """Result of :func:`simulate`.

    ``spikes_out``: output spike counts, ``(batch, time, n_out)`` int64 (``(time, n_out)`` when
    the input had no batch axis).

    ``states`` (only with ``record=True``, else empty): int16 arrays shaped like ``spikes_out``
    with the neuron axis of each population, recorded after the step exactly as xylosim's
    ``rec_*`` attributes: ``"Vmem"``, ``"Isyn"``, ``"Isyn2"`` (only with 2 synapses),
    ``"Spikes"`` (hidden spike counts, alias spikes included), ``"Vmem_out"``, ``"Isyn_out"``.
    """

    spikes_out: np.ndarray
    states: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(
    cfg: XyloConfig,
    hw: HWConfig,
    x,
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``cfg`` on the input event counts ``x`` and return the output spikes (and states).

    ``x``: non-negative integer event counts, ``(batch, time, n_in)``, or ``(time, n_in)`` for a
    single sample (then the result has no batch axis either). Counts above the chip's per-step
    input cap (15) are dropped like on the chip. Every sample starts from the reset state.

    ``progress``: optional ``callable(steps_done, total_steps)``, called about 100 times.
    """
    return XyloSimulator(cfg, hw).run(x, record=record, progress=progress)


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    span = 1 << bits
    half = span >> 1
    return ((x + half) & (span - 1)) - half


class XyloSimulator:
    """A configuration prepared for simulation (weights shifted and laid out once).

    Layouts: neurons ``[hidden (Nh) | output (No)]``; synaptic states
    ``[Isyn hidden (Nh) | Isyn output (No) | Isyn2 hidden (Nh, only with 2 synapses)]``; two
    groups of spike sources (input channels; hidden neurons, whose rows hold both their
    recurrent and their readout synapses).

    ``XyloSimulator(cfg, hw).run(x, record, progress)`` is :func:`simulate` without repeating
    the preparation (useful for many calls on one configuration).
    """

    def __init__(self, cfg: XyloConfig, hw: HWConfig):
        self.cfg = cfg
        self.hw = hw
        st = hw.fmt("state")
        self.smin, self.smax, self.sbits = int(st.min), int(st.max), int(st.bits)
        self.cap_in = int(hw.limit("max_input_events_per_step"))
        self.cap_hid = int(hw.limit("max_hidden_spikes_per_step"))
        self.cap_out = int(hw.limit("max_output_spikes_per_step"))
        # neuron arithmetic: int32 is exact for every intermediate while states are at most ~24
        # bits wide. Synaptic states are stored in the narrowest type holding them (int16 on
        # Xylo): their decay never leaves the range, and the fast delivery is used only when no
        # partial sum can leave it either.
        self.dtype = np.int32 if self.sbits <= 24 else np.int64
        wbits = int(hw.fmt("shifted_weight").bits)
        self.idtype = np.int16 if max(self.sbits, wbits) <= 16 else self.dtype
        self._validate()
        self._prepare()
        #: counters of the last :meth:`run`: steps whose delivery was proved saturation-free by
        #: the global bound / needed the per-entry bound, state entries whose delivery was
        #: computed in exact order because the per-entry bound could not rule out saturation,
        #: and how many of those saturated
        self.stats = {"steps_bound_global": 0, "steps_bound_per_entry": 0, "delivery_replayed": 0, "delivery_saturated": 0}

    # ------------------------------------------------------------------------------- set-up --
    def _validate(self) -> None:
        c, hw = self.cfg, self.hw
        nh, ns, no, nin = c.n_hidden, c.n_syn, c.n_out, c.n_in
        syn_allowed = int(hw.limit("synapses_per_hidden"))
        if ns < 1 or ns > syn_allowed:
            raise UsageError(f"{hw.name} has {syn_allowed} synapse(s) per hidden neuron; the config has {ns}")
        shapes = {
            "weights_in": (nin, nh, ns), "weights_rec": (nh, nh, ns), "weights_out": (nh, no),
            "dash_mem": (nh,), "dash_syn": (nh,), "dash_mem_out": (no,), "dash_syn_out": (no,),
            "threshold": (nh,), "threshold_out": (no,), "bias": (nh,), "bias_out": (no,),
        }
        if ns == 2:
            shapes["dash_syn_2"] = (nh,)
        for name, shape in shapes.items():
            a = getattr(c, name)
            if a.shape != shape:
                raise UsageError(f"XyloConfig.{name} has shape {a.shape}; expected {shape}")
        checks = [
            ("weight", ("weights_in", "weights_rec", "weights_out")),
            ("dash", ("dash_mem", "dash_syn", "dash_mem_out", "dash_syn_out") + (("dash_syn_2",) if ns == 2 else ())),
            ("threshold", ("threshold", "threshold_out")),
            ("bias", ("bias", "bias_out")),
        ]
        for fmt_name, names in checks:
            f = hw.fmt(fmt_name)
            for name in names:
                n_bad = f.count_out_of_range(getattr(c, name))
                if n_bad:
                    raise UsageError(f"XyloConfig.{name}: {n_bad} value(s) outside {f} [{f.min}, {f.max}]")
        fs = hw.fmt("weight_shift")
        for name in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
            v = getattr(c, name)
            if not fs.min <= v <= fs.max:
                raise UsageError(f"XyloConfig.{name} = {v} outside [{fs.min}, {fs.max}]")
        if len(c.aliases) != nh:
            raise UsageError(f"XyloConfig.aliases has {len(c.aliases)} entries; expected one list per hidden neuron ({nh})")
        for j, al in enumerate(c.aliases):
            for a in al:
                if not 0 <= int(a) < nh:
                    raise UsageError(f"alias target {a} of hidden neuron {j} is not a hidden neuron index")

    def _prepare(self) -> None:
        c, hw = self.cfg, self.hw
        nh, ns, no, nin = c.n_hidden, c.n_syn, c.n_out, c.n_in
        self.nh, self.ns, self.no, self.nin = nh, ns, no, nin
        self.nn = nn = nh + no  # neurons
        self.m = m = ns * nh + no  # synaptic states
        sw = hw.fmt("shifted_weight")
        dt = self.dtype

        def shifted(w, s):  # int16(int8 w << shift), applied to the non-zero weights only
            return sw.apply(np.asarray(w, dtype=np.int64) << int(s))

        # state columns: [Isyn hidden | Isyn output | Isyn2 hidden]; xylosim's delivery order
        # (its "rank") is input channels first, then hidden neurons ascending
        blocks_in = [(c.weights_in[:, :, 0], c.weight_shift_in, 0)]
        blocks_hid = [(c.weights_rec[:, :, 0], c.weight_shift_rec, 0), (c.weights_out, c.weight_shift_out, nh)]
        if ns == 2:
            blocks_in.append((c.weights_in[:, :, 1], c.weight_shift_in, nn))
            blocks_hid.append((c.weights_rec[:, :, 1], c.weight_shift_rec, nn))
        self.src_in = _Sources(blocks_in, shifted, nin, m, self.idtype)
        self.src_hid = _Sources(blocks_hid, shifted, nh, m, self.idtype)
        self.src_all = _EventTable(self.src_in, self.src_hid, m, (self.cap_in, self.cap_hid), self.sbits)
        self._global_fail = self._global_skip = 0

        dsyn = [c.dash_syn, c.dash_syn_out] + ([c.dash_syn_2] if ns == 2 else [])
        self.dash_syn = np.concatenate(dsyn).astype(self.idtype)
        self.dash_mem = np.concatenate([c.dash_mem, c.dash_mem_out]).astype(dt)
        self.has_dash_mem0 = bool((self.dash_mem == 0).any())
        self.theta = np.concatenate([c.threshold, c.threshold_out]).astype(dt)
        self.theta_pos = bool((self.theta > 0).all())
        if c.bias_enable:
            self.bias = np.concatenate([c.bias, c.bias_out]).astype(dt)
            self.use_bias = True
        else:
            self.bias = np.zeros(nn, dtype=dt)
            self.use_bias = False
        self.cap = np.concatenate([np.full(nh, self.cap_hid), np.full(no, self.cap_out)]).astype(dt)
        # Aliases. xylosim evaluates the hidden neurons in ascending order; neuron j's total
        # count n_j (alias spikes already received + its own) is added, capped, to the buffer of
        # its alias target a. For a > j that seeds a's count before a is evaluated ("forward");
        # for a <= j it only adds to a finished count ("post"). Counts only grow and the cap is
        # a min, so forward deposits can be summed and capped, and post deposits applied at the
        # end. The neurons are evaluated by levels of the forward-alias DAG (level = 1 + the
        # highest level of its forward sources), each level vectorised.
        alias_lists = [[int(a) for a in al] for al in c.aliases]
        edges = [(j, a) for j, al in enumerate(alias_lists) for a in al]
        involved = sorted({j for j, _ in edges} | {a for _, a in edges})
        level = np.zeros(nh, dtype=np.int64)
        for j, a in edges:  # edges are sorted by source j, and a forward source is below its target
            if a > j:
                level[a] = max(level[a], level[j] + 1)
        self.alias_involved = involved
        self.alias_mask = np.zeros(nn, dtype=bool)
        self.alias_mask[involved] = True
        inv = np.array(involved, dtype=np.int64)
        self.alias_levels = []  # per level: (neurons, forward sources, forward targets)
        for lv in range(int(level[inv].max()) + 1 if involved else 0):
            nodes = inv[level[inv] == lv]
            fwd = [(j, a) for j, a in edges if a > j and level[j] == lv]
            self.alias_levels.append((nodes, np.array([e[0] for e in fwd], np.int64), np.array([e[1] for e in fwd], np.int64)))
        post = [(j, a) for j, a in edges if a <= j]
        self.alias_post = (np.array([e[0] for e in post], np.int64), np.array([e[1] for e in post], np.int64))

    # ---------------------------------------------------------------------------------- run --
    def run(self, x, record: bool = False, progress: Callable[[int, int], None] | None = None) -> SimResult:
        """Simulate ``x`` (see :func:`simulate`)."""
        xa = np.asarray(x)
        squeeze = xa.ndim == 2
        if squeeze:
            xa = xa[None]
        if xa.ndim != 3 or xa.shape[2] != self.nin:
            raise UsageError(f"input has shape {np.shape(x)}; expected (batch, time, {self.nin}) or (time, {self.nin})")
        if xa.size and not np.issubdtype(xa.dtype, np.integer):
            if not np.all(np.equal(np.mod(xa, 1), 0)):
                raise UsageError("input must hold integer event counts")
        if xa.size and xa.min() < 0:
            raise UsageError("input event counts must be non-negative")
        B, T, _ = xa.shape
        dt = self.dtype
        nh, no, nn, m, nin = self.nh, self.no, self.nn, self.m, self.nin

        # input events of all steps as (sample, channel, count) triples, grouped by step
        xt = np.ascontiguousarray(np.minimum(xa, self.cap_in).astype(dt).transpose(1, 0, 2))
        f = np.flatnonzero(xt)
        in_t, rem = np.divmod(f, B * nin)
        in_b, in_s = np.divmod(rem, nin)
        in_n = xt.reshape(-1)[f]
        in_start = np.searchsorted(in_t, np.arange(T + 1))
        del xt, f, rem

        smin, smax = dt(self.smin), dt(self.smax)
        idt = self.idtype
        I = np.zeros((B, m), dtype=idt)
        V = np.zeros((B, nn), dtype=dt)
        NB = np.zeros((B, nn), dtype=dt)  # spike counts of this step
        If, Vf, NBf = I.reshape(-1), V.reshape(-1), NB.reshape(-1)
        Itot = I[:, :nn] if self.ns == 1 else np.empty((B, nn), dtype=dt)
        D_m = np.empty((B, m), dtype=idt)
        tmp_m = np.empty((B, m), dtype=idt)
        ones_m = np.ones(m, dtype=idt)  # (np.minimum with a scalar is several times slower)
        ones_n = np.ones(nn, dtype=dt)
        lo_n, hi_n = np.full(nn, smin, dtype=dt), np.full(nn, smax, dtype=dt)  # (faster than np.clip)
        D_n = np.empty((B, nn), dtype=dt)
        dv = np.empty((B, nn), dtype=dt)
        fire = np.empty((B, nn), dtype=bool)
        dash_syn, dash_mem, theta, bias = self.dash_syn, self.dash_mem, self.theta, self.bias
        fast_spikes = self.theta_pos and not self.alias_involved
        empty = np.zeros(0, dtype=np.int64)
        hb = hs = hn = empty  # hidden spikes of the previous step as (sample, neuron, count)

        out = np.zeros((B, T, no), dtype=np.int64)
        rec = None
        if record:
            rec = {
                "Vmem": np.zeros((B, T, nh), np.int16),
                "Isyn": np.zeros((B, T, nh), np.int16),
                "Spikes": np.zeros((B, T, nh), np.int16),
                "Vmem_out": np.zeros((B, T, no), np.int16),
                "Isyn_out": np.zeros((B, T, no), np.int16),
            }
            if self.ns == 2:
                rec["Isyn2"] = np.zeros((B, T, nh), np.int16)
        every = max(1, T // 100)
        self.stats = {"steps_bound_global": 0, "steps_bound_per_entry": 0, "delivery_replayed": 0, "delivery_saturated": 0}
        self._global_fail = self._global_skip = 0
        self._ws = _Work()  # per-event work arrays, reused from step to step

        for t in range(T):
            # -- 1. delivery (inputs of step t, hidden spikes of step t-1) -------------------
            a, z = in_start[t], in_start[t + 1]
            if z > a or hb.size:
                self._deliver(I, If, B, in_b[a:z], in_s[a:z], in_n[a:z], hb, hs, hn)
            # -- 2. synaptic decay: D(I) = max(I >> d, min(I, 1)), i.e. at least 1 for I > 0 --
            np.right_shift(I, dash_syn, out=D_m)
            np.minimum(I, ones_m, out=tmp_m)
            np.maximum(D_m, tmp_m, out=D_m)
            np.subtract(I, D_m, out=I)
            # -- 3. membrane -------------------------------------------------------------------
            if self.ns == 2:
                np.add(I[:, :nh], I[:, nn:], out=Itot[:, :nh], dtype=dt)
                Itot[:, nh:] = I[:, nh:nn]
            np.right_shift(V, dash_mem, out=D_n)
            np.minimum(V, ones_n, out=dv)
            np.maximum(D_n, dv, out=D_n)
            np.subtract(Itot, D_n, out=dv)  # = -D + I; -D wraps at 16 bits:
            if self.has_dash_mem0:
                wrapped = D_n == smin  # only V = -32768 with dash 0: -D = 32768 -> -32768
                if wrapped.any():
                    dv[wrapped] -= dt(1 << self.sbits)
            np.maximum(dv, lo_n, out=dv)
            np.minimum(dv, hi_n, out=dv)
            if self.use_bias:
                np.add(dv, bias, out=dv)
                np.maximum(dv, lo_n, out=dv)
                np.minimum(dv, hi_n, out=dv)
            np.add(V, dv, out=V)
            np.maximum(V, lo_n, out=V)
            np.minimum(V, hi_n, out=V)
            # -- 4. spikes --------------------------------------------------------------------
            NB[:] = 0
            np.greater_equal(V, theta, out=fire)
            if fast_spikes:
                idx = np.flatnonzero(fire)
                if idx.size:
                    bb, col = np.divmod(idx, nn)
                    v = Vf[idx]
                    th = theta[col]
                    k = np.minimum(v // th, self.cap[col])
                    Vf[idx] = v - k * th
                    NBf[idx] = k
                    if no:
                        keep = col < nh
                        hb, hs, hn = bb[keep], col[keep], k[keep]
                    else:
                        hb, hs, hn = bb, col, k
                else:
                    hb = hs = hn = empty
            else:
                self._spikes_general(V, NB, fire, B)
                f = np.flatnonzero(NB)
                hb, hs = np.divmod(f, nn)
                keep = hs < nh
                hb, hs, hn = hb[keep], hs[keep], NBf[f[keep]]
            # -- 5. record -------------------------------------------------------------------
            out[:, t, :] = NB[:, nh:]
            if rec is not None:
                rec["Vmem"][:, t, :] = V[:, :nh]
                rec["Isyn"][:, t, :] = I[:, :nh]
                rec["Spikes"][:, t, :] = NB[:, :nh]
                rec["Vmem_out"][:, t, :] = V[:, nh:]
                rec["Isyn_out"][:, t, :] = I[:, nh:nn]
                if self.ns == 2:
                    rec["Isyn2"][:, t, :] = I[:, nn:]
            if progress is not None and ((t + 1) % every == 0 or t + 1 == T):
                progress(t + 1, T)

        self._ws = None  # (the work buffers can be tens of MB at large batches)
        if squeeze:
            out = out[0]
            if rec is not None:
                rec = {k: v[0] for k, v in rec.items()}
        return SimResult(spikes_out=out, states=rec if rec is not None else {})

    # ---------------------------------------------------------------------------- delivery --
    def _deliver(self, I, If, B, ib, is_, in_, hb, hs, hn) -> None:
        """Add this step's events to the synaptic states ``I`` (flat view ``If``), exactly."""
        gi, gh = self.src_in, self.src_hid
        st = self.stats
        # global bound: max |state| + max over samples of sum_src n * max|w_row| within range
        # (skipped while it keeps failing: the per-entry path below is exact on its own)
        if self._global_skip > 0:
            self._global_skip -= 1
        else:
            mass = np.zeros(B)
            if ib.size:
                mass += gi.mass(ib, is_, in_, B)
            if hb.size:
                mass += gh.mass(hb, hs, hn, B)
            imax = max(int(I.max()), -int(I.min()))
            if imax + float(mass.max()) <= self.smax:
                if ib.size:
                    gi.scatter(If, ib, is_, in_)
                if hb.size:
                    gh.scatter(If, hb, hs, hn)
                st["steps_bound_global"] += 1
                self._global_fail = 0
                return
            self._global_fail = min(self._global_fail + 1, 6)
            self._global_skip = (1 << self._global_fail) - 1
        st["steps_bound_per_entry"] += 1
        # all events in (sample, delivery rank) order: input channels, then hidden neurons
        nin = self.nin
        if ib.size and hb.size:
            b = np.concatenate((ib, hb))
            o = np.argsort(b, kind="stable")  # both groups are sorted by (sample, source)
            b = b[o]
            r = np.concatenate((is_, hs + nin))[o]
            n = np.concatenate((in_, hn))[o]
        elif ib.size:
            b, r, n = ib, is_, in_
        else:
            b, r, n = hb, hs + nin, hn
        ws = self._ws
        key, val = self.src_all.events(b, r, n, ws)
        nev = key.size
        # per-entry bound with the sums of the positive (P) and negative (N) terms: an entry
        # with s + P <= max and s + N >= min never saturates and receives s + P + N
        # (np.add.at with matching integer types is faster than np.bincount here)
        adt = self.src_all.adt
        nS = If.size
        s = ws.get("s", nS, adt)
        s[:] = If
        P = ws.get("P", nS, adt)
        P[:] = s
        N = ws.get("N", nS, adt)
        N[:] = s
        tv = ws.get("tv", nev, adt)
        np.add.at(P, key, np.maximum(val, 0, out=tv))
        np.add.at(N, key, np.minimum(val, 0, out=tv))
        up = P > self.smax  # may saturate at the upper bound
        dn = N < self.smin  # ... at the lower bound
        risky = up | dn
        # entries whose terms all have one sign have monotone partial sums: their result is
        # the clamped total (so is every other entry's but the risky mixed-sign ones')
        mixed = np.not_equal(P, s)
        mixed &= np.not_equal(N, s)
        P += N
        P -= s  # s + sum of all terms
        n_risky = int(np.count_nonzero(risky))
        if n_risky:
            st = self.stats
            st["delivery_replayed"] += n_risky
            out = (P > self.smax) | (P < self.smin)
            mixed &= risky
            out &= ~mixed
            st["delivery_saturated"] += int(np.count_nonzero(out))  # (monotone ones)
            np.maximum(P, self.smin, out=P)
            np.minimum(P, self.smax, out=P)
            bad = np.flatnonzero(mixed)
            if bad.size:
                uk, res = self._exact(bad, up[bad], dn[bad], key, val, If, ws)
                P[uk] = res
        If[:] = P

    def _exact(self, bad, u, d, key, val, If, ws):
        """Exact sequential saturating delivery for the flat state entries ``bad`` (ascending)
        that may saturate at the upper (``u``) or lower (``d``) bound; returns the entries (a
        permutation of ``bad``) and their final values.

        The terms of each entry, in delivery order, are gathered by a stable sort on a 16-bit
        key ``column + m * kind`` (kind: upper-only, lower-only, both); the events are in
        (sample, rank) order, so each entry's terms end up contiguous and in rank order, with
        the entries grouped by kind. With the prefix sums ``P_j`` of an entry's terms, an
        entry that can only saturate at the upper bound ends at ``P_K + min(s, max - max_j
        P_j)``: unrolling ``s_k = min(s_{k-1} + c_k, max)`` gives ``min(s + P_K, min_j (max +
        P_K - P_j))``; symmetrically ``P_K + max(s, min - min_j P_j)`` at the lower bound.
        (An entry with ``s + N >= min`` never reaches the lower bound even after clamping at
        the upper one, as every value is at least ``min(s, max) + N``.) Entries that may
        touch both bounds are replayed term by term (:func:`_saturating_sequence`).
        """
        st = self.stats
        m = self.m
        lo, hi = self.smin, self.smax
        kind = np.where(d, np.where(u, 2, 1), 0)
        skey = (bad % m) + m * kind
        kdt = np.uint16 if self.src_all.radix else np.int64  # 16 bits: numpy's radix sort
        sent = kdt(np.iinfo(kdt).max)
        ek = ws.get("ek", If.size, kdt)
        ek.fill(sent)
        ek[bad] = skey
        nev = key.size
        g = np.take(ek, key, out=ws.get("g", nev, kdt), mode="clip")
        sel = np.flatnonzero(np.not_equal(g, sent, out=ws.get("mask", nev, bool)))
        ne = sel.size
        g = np.take(g, sel, out=ws.get("g2", ne, kdt), mode="clip")
        e1 = int(np.count_nonzero(g < m))  # events of the upper-only entries
        e2 = int(np.count_nonzero(g < 2 * m))  # ... and of the lower-only ones
        order = np.argsort(g, kind="stable")
        # gather in ascending order first (cache-friendly), then permute the smaller arrays
        kq = np.take(key, sel, out=ws.get("kq", ne, np.intp), mode="clip")
        vq = ws.get("vq", ne, np.int64)
        vq[:] = np.take(val, sel, out=ws.get("vq0", ne, val.dtype), mode="clip")
        ks = np.take(kq, order, out=ws.get("ks", ne, np.intp), mode="clip")
        vs = np.take(vq, order, out=ws.get("vs", ne, np.int64), mode="clip")
        brk = np.flatnonzero(ks[1:] != ks[:-1])
        brk += 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [ne]))
        g1, g2 = (int(x) for x in np.searchsorted(starts, [e1, e2]))
        uk = ks[starts]  # the bad entries, grouped by kind
        cs = np.cumsum(vs, out=ws.get("cs", ne, np.int64))
        base = cs[starts] - vs[starts]
        tot = cs[ends - 1] - base
        s0 = If[uk].astype(np.int64)
        res = s0 + tot
        n_sat = 0
        if g1:
            mx = np.maximum.reduceat(cs[:e1], starts[:g1]) - base[:g1]
            a = s0[:g1]
            res[:g1] = tot[:g1] + np.minimum(a, hi - mx)
            n_sat += int(np.count_nonzero(a + mx > hi))
        if g2 > g1:
            mn = np.minimum.reduceat(cs[e1:e2], starts[g1:g2] - e1) - base[g1:g2]
            a = s0[g1:g2]
            res[g1:g2] = tot[g1:g2] + np.maximum(a, lo - mn)
            n_sat += int(np.count_nonzero(a + mn < lo))
        if uk.size > g2:
            cnt = ends[g2:] - starts[g2:]
            K = int(cnt.max())
            C = np.zeros((cnt.size, K), dtype=np.int64)
            row = np.repeat(np.arange(cnt.size), cnt)
            C[row, np.arange(e2, ne) - np.repeat(starts[g2:], cnt)] = vs[e2:]
            res[g2:], nb = _saturating_sequence(s0[g2:], C, lo, hi)
            n_sat += nb
        st["delivery_saturated"] += n_sat
        return uk, res

    # ------------------------------------------------------------------------------ spikes --
    def _spike_fn(self, v, th, n, cap):
        """Literal spike loop, vectorised: ``while v >= th and n < cap: n += 1; v -= th``
        (v wraps at the state width). Arrays of equal shape; returns int64 (v, n) of that shape."""
        shape = np.shape(v)
        v = np.array(v, dtype=np.int64).reshape(-1)
        n = np.array(n, dtype=np.int64).reshape(-1)
        th = np.asarray(th, dtype=np.int64).reshape(-1)
        cap = np.asarray(cap, dtype=np.int64).reshape(-1)
        pos = th > 0
        if pos.any():
            thp = np.where(pos, th, 1)
            k = np.where(pos & (v >= th), np.minimum(v // thp, cap - n), 0)
            k = np.maximum(k, 0)
            v -= k * np.where(pos, th, 0)
            n += k
        if not pos.all():
            sel = np.flatnonzero(~pos)
            vs, ns_, ts, cs = v[sel], n[sel], th[sel], cap[sel]
            while True:
                go = (vs >= ts) & (ns_ < cs)
                if not go.any():
                    break
                ns_ += go
                vs = np.where(go, _wrap(vs - ts, self.sbits), vs)
            v[sel], n[sel] = vs, ns_
        return v.reshape(shape), n.reshape(shape)

    def _spikes_general(self, V, NB, fire, B) -> None:
        """Spikes with thresholds <= 0 and/or aliases (NB is zero on entry)."""
        nn = self.nn
        idx = np.flatnonzero(fire)
        if self.alias_involved:
            idx = idx[~self.alias_mask[idx % nn]]
        if idx.size:
            col = idx % nn
            Vf, NBf = V.reshape(-1), NB.reshape(-1)
            v, n = self._spike_fn(Vf[idx], self.theta[col], np.zeros(idx.size, np.int64), self.cap[col])
            Vf[idx] = v
            NBf[idx] = n
        if not self.alias_involved:
            return
        cap = self.cap_hid
        NBT = NB.T  # (neurons, batch) view, for np.add.at over repeated targets
        for nodes, fsrc, ftgt in self.alias_levels:
            shape = (B, nodes.size)
            v, n = self._spike_fn(V[:, nodes], np.broadcast_to(self.theta[nodes], shape),
                                  np.minimum(NB[:, nodes], cap), np.full(shape, cap))
            V[:, nodes] = v
            NB[:, nodes] = n
            if fsrc.size:
                np.add.at(NBT, ftgt, NB[:, fsrc].T)
                NB[:, ftgt] = np.minimum(NB[:, ftgt], cap)
        psrc, ptgt = self.alias_post
        if psrc.size:
            np.add.at(NBT, ptgt, NB[:, psrc].T.copy())  # counts of the sources as evaluated
            NB[:, ptgt] = np.minimum(NB[:, ptgt], cap)


class _Sources:
    """The synapses of one group of spike sources (input channels or hidden neurons) onto the
    synaptic states, in two layouts: CSR rows (from which :class:`_EventTable` is built) and,
    per class of rows with similar fan-out, rows padded to a common length (for the fast
    scatter; padding entries add 0)."""

    def __init__(self, blocks, shifted, n_rows: int, m: int, dtype):
        rows_l, cols_l, w_l = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for W, shift, off in blocks:  # raw weights (rows, cols), their shift, column offset
            r, c = np.nonzero(W)
            ws = shifted(W[r, c], shift)
            keep = ws != 0  # a shifted weight can wrap to 0
            rows_l.append(r[keep])
            cols_l.append(c[keep] + off)
            w_l.append(ws[keep])
        rows, cols, w = (np.concatenate(a).astype(np.int64) for a in (rows_l, cols_l, w_l))
        order = np.lexsort((cols, rows))
        rows, cols, w = rows[order], cols[order], w[order]
        self.m = m
        self.rowlen = np.bincount(rows, minlength=n_rows).astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(self.rowlen)]).astype(np.int64)
        self.cols, self.w = cols, w
        rowmax = np.zeros(n_rows, dtype=np.int64)
        np.maximum.at(rowmax, rows, np.abs(w))
        self.rowmaxabs = rowmax.astype(np.float64)
        # fan-out classes
        fan = self.rowlen
        F = np.zeros(n_rows, dtype=np.int64)
        nz = fan > 0
        # round each fan-out up to a multiple of a quarter of its power of two (<= 25 % padding)
        q = 1 << np.maximum(np.floor(np.log2(np.maximum(fan[nz], 1))).astype(np.int64) - 2, 0)
        F[nz] = -(-fan[nz] // q) * q
        self.row_cls = np.full(n_rows, -1, dtype=np.int64)
        self.row_loc = np.zeros(n_rows, dtype=np.int64)
        self.classes = []
        pos = np.arange(rows.size) - self.indptr[rows]
        for ci, Fc in enumerate(np.unique(F[nz])):
            rws = np.flatnonzero(F == Fc)
            self.row_cls[rws] = ci
            self.row_loc[rws] = np.arange(rws.size)
            e = np.flatnonzero(F[rows] == Fc)
            # padding adds 0 to distinct columns (one shared column would serialise np.add.at)
            ell_c = np.broadcast_to(np.arange(int(Fc), dtype=np.intp) % m, (rws.size, int(Fc))).copy()
            ell_w = np.zeros((rws.size, int(Fc)), dtype=dtype)
            ell_c[self.row_loc[rows[e]], pos[e]] = cols[e]
            ell_w[self.row_loc[rows[e]], pos[e]] = w[e]
            self.classes.append((ell_c, ell_w))
        self.simple = len(self.classes) == 1 and bool(nz.all())

    def mass(self, b, s, n, B):
        """Per sample: sum over the events of n * max|w| of the source row."""
        return np.bincount(b, weights=n * self.rowmaxabs[s], minlength=B)

    def scatter(self, If, b, s, n) -> None:
        """If[b * m + col] += n * w for every synapse of every (b, s, n); no saturation check."""
        if self.simple:
            self._scatter_cls(0, If, b, s, n)
            return
        cls = self.row_cls[s]
        for ci in range(len(self.classes)):
            sel = np.flatnonzero(cls == ci)
            if sel.size:
                self._scatter_cls(ci, If, b[sel], s[sel], n[sel])

    def _scatter_cls(self, ci, If, b, s, n) -> None:
        ell_c, ell_w = self.classes[ci]
        loc = self.row_loc[s]
        keys = np.take(ell_c, loc, axis=0)  # (np.take is much faster than fancy indexing)
        keys += (b * self.m)[:, None]
        vals = np.take(ell_w, loc, axis=0)
        if n.max() > 1:
            vals *= n[:, None].astype(vals.dtype)
        np.add.at(If, keys.reshape(-1), vals.reshape(-1))


class _EventTable:
    """Both source groups as one table whose rows are the delivery ranks (input channels,
    then hidden neurons), for the per-entry delivery: each row is cut into sub-rows of one
    common width ``W`` (the last one padded with weight-0 synapses onto distinct columns; a
    zero term is the identity of a saturating add, so padding never changes a result), so
    that the events of a step are produced by whole-row gathers, in (sample, rank) order."""

    def __init__(self, gi: "_Sources", gh: "_Sources", m: int, caps, sbits: int):
        self.m = m
        rowlen = np.concatenate((gi.rowlen, gh.rowlen))
        indptr = np.concatenate(([0], np.cumsum(rowlen))).astype(np.intp)
        cols = np.concatenate((gi.cols, gh.cols)).astype(np.intp)
        w = np.concatenate((gi.w, gh.w)).astype(np.int64)
        # the terms n * w and the per-entry sums (plus a state) in int32 when they fit
        rows = np.repeat(np.arange(rowlen.size), rowlen)
        cap = np.repeat(np.asarray(caps, dtype=np.int64), [gi.rowlen.size, gh.rowlen.size])[rows]
        colsum = np.bincount(cols, weights=(np.abs(w) * cap).astype(np.float64), minlength=m)
        big = float(colsum.max(initial=0)) + (1 << sbits)
        self.adt = np.int32 if big < 2**31 else np.int64
        self.radix = 3 * m < 0xFFFF  # 16-bit sort keys (column + m * kind, and a sentinel)
        # sub-row width: least padded size, counting a sub-row as 8 more elements
        nz = rowlen[rowlen > 0]
        W = 1
        if nz.size:
            cand = np.unique(np.concatenate((nz, [1, 2, 4, 8, 16, 32, 64, 128])))
            cost = [(-(-nz // c) * (c + 8)).sum() for c in cand]
            W = int(cand[int(np.argmin(cost))])
        nsub = -(-rowlen // W)
        self.W, self.nsub = W, nsub
        self.sub0 = np.concatenate(([0], np.cumsum(nsub)))[:-1].astype(np.intp)
        S = int(nsub.sum())
        sub_c = np.broadcast_to(np.arange(W, dtype=np.intp) % m, (S, W)).copy()
        sub_w = np.zeros((S, W), dtype=self.adt)
        pos = np.arange(rows.size) - indptr[rows]  # position within the row
        sub_c.reshape(-1)[self.sub0[rows] * W + pos] = cols
        sub_w.reshape(-1)[self.sub0[rows] * W + pos] = w
        self.sub_c, self.sub_w = sub_c, sub_w
        self.multi = bool((nsub != 1).any())  # (rows without synapses have no sub-row)

    def events(self, b, r, n, ws: "_Work"):
        """(flat state index, n * w) of every synapse of the events ``(sample b, rank r,
        count n)``, padding included, in the order of the events (views of ``ws`` buffers)."""
        W = self.W
        if self.multi:
            k = self.nsub[r]
            ends = np.cumsum(k)
            ns = int(ends[-1]) if ends.size else 0
            pair = np.repeat(np.arange(r.size), k)
            sid = self.sub0[r][pair] + (np.arange(ns) - (ends - k)[pair])
            b, n = b[pair], n[pair]
        else:
            sid = self.sub0[r]
            ns = sid.size
        key = np.take(self.sub_c, sid, axis=0, out=ws.get("key", ns * W, np.intp).reshape(ns, W), mode="clip")
        key += (b * self.m)[:, None]
        val = np.take(self.sub_w, sid, axis=0, out=ws.get("val", ns * W, self.adt).reshape(ns, W), mode="clip")
        if n.max(initial=0) > 1:
            val *= n.astype(self.adt)[:, None]
        return key.reshape(-1), val.reshape(-1)


class _Work:
    """Scratch arrays kept between steps: fresh multi-megabyte temporaries every step cost
    more in page faults than the arithmetic done on them. ``get`` returns a view of ``n``
    elements of the buffer ``name`` (contents undefined; valid until the next ``get`` of
    that name)."""

    def __init__(self):
        self._a: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype) -> np.ndarray:
        a = self._a.get(name)
        if a is None or a.size < n or a.dtype != np.dtype(dtype):
            size = max(n, int(1.25 * a.size) if a is not None and a.dtype == np.dtype(dtype) else n)
            a = self._a[name] = np.empty(size, dtype=dtype)
        return a[:n]


def _saturating_sequence(s0: np.ndarray, C: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Final values of ``s = clip(s + C[r, k], lo, hi)`` for k = 0.., per row r (zeros pad), and
    the number of rows that saturated at least once.

    Jumps from one saturation event to the next: between two events the partial sums stay in
    range, so a cumulative sum gives them all at once; after clamping at a bound, the terms of
    the same sign are no-ops and are skipped.
    """
    s = s0.astype(np.int64).copy()
    R, K = C.shape
    p = np.zeros(R, dtype=np.int64)
    active = np.arange(R)
    cols = np.arange(K)
    hit = np.zeros(R, dtype=bool)
    while active.size:
        Ca, sa, pa = C[active], s[active], p[active]
        cs = sa[:, None] + np.cumsum(np.where(cols[None, :] >= pa[:, None], Ca, 0), axis=1)
        viol = (cs > hi) | (cs < lo)
        anyv = viol.any(axis=1)
        done = ~anyv
        s[active[done]] = cs[done, -1]
        rows = np.flatnonzero(anyv)
        if not rows.size:
            break
        k = viol[rows].argmax(axis=1)
        up = cs[rows, k] > hi
        bound = np.where(up, hi, lo)
        r_act = active[rows]
        s[r_act] = bound
        hit[r_act] = True
        # skip the following terms that push further into the same bound (or are 0)
        Cr = C[r_act]
        opposite = np.where(up[:, None], Cr < 0, Cr > 0) & (cols[None, :] > k[:, None])
        has = opposite.any(axis=1)
        nxt = np.where(has, opposite.argmax(axis=1), K)
        p[r_act] = nxt
        active = r_act[nxt < K]
    return s, int(hit.sum())
