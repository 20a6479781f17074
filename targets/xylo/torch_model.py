"""Xylo's chip model in torch: the integer update rule of ``sim.py`` (xylosim v2, ``shared/chips/
xylo.md`` section 2), differentiable, for fine-tuning (see :mod:`nirdeploy.torch.chip`).

Per step, exactly as the bit-accurate simulator (every case below is computed, none excluded):

1. delivery: input counts ``min(x, 15)`` and the previous step's hidden spike counts, one
   saturating add of ``n * int16(w << shift)`` per (source, synapse) in the order input channels
   ascending, then hidden neurons ascending (``n`` adds of one weight with saturation after each
   equal one saturating add of ``n * w``). Where no partial sum in that order leaves int16 the
   result is the plain sum; the state entries where one does are computed term by term, in order,
   by :func:`nirdeploy.torch.chip.clamp_sequence`;
2. synaptic decay ``I -= max(I >> dash, min(I, 1))``;
3. ``dv = wrap16(-D(V, dash_mem))`` (only V = -32768 with dash 0 wraps), ``dv = sat(dv + sum
   Isyn)``, ``dv = sat(dv + bias)`` when the bias is enabled, ``V = sat(V + dv)``;
4. spikes: ``while V >= theta and n < cap: n += 1; V = wrap16(V - theta)`` (caps 31 hidden, 1
   output): ``min(floor(V / theta), cap)`` for theta > 0, the literal loop for theta <= 0;
   aliases in xylosim's order (hidden neurons ascending; a neuron's count, its received alias
   spikes included, is added, capped, to its alias target);
5. output: output spike counts, or for an LI readout ``Vmem_out / output_scale``.

Gradients: see :mod:`nirdeploy.torch.chip` (straight-through floors and wraps, surrogate spikes,
the reset detached through the spike count).
"""

from __future__ import annotations

import numpy as np
import torch

from nirdeploy.errors import UnsupportedError
from nirdeploy.torch.chip import ChipInfo, ChipModel, GraphWeights, IntegerWeights, clamp_sequence, path_matrix, spike_surrogate, ste_floor

from .config import XyloConfig
from .lower import INPUT

__all__ = ["XyloChipModel", "build"]

_WEIGHT_KEYS = ("weights_in", "weights_rec", "weights_out")


def build(target, artifact, weights: GraphWeights | None = None, **options) -> "XyloChipModel":
    if options:
        raise UnsupportedError(f"the Xylo chip model takes no options; got {', '.join(sorted(options))}")
    low = artifact.payload
    if low.config is None:
        raise UnsupportedError("this network did not lower onto Xylo; see its report")
    if weights is not None and low.paths is None:
        raise UnsupportedError("the compiled network carries no layer paths (a reloaded folder): build the chip model from the graph")
    return XyloChipModel(artifact, target.hwconfig(artifact.variant), weights)


def _wrap(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap to ``bits`` (value), derivative 1."""
    span = float(1 << bits)
    w = v - span * torch.floor((v + span / 2) / span)
    return v + (w - v).detach()


def _decay(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    """Xylo's D(x, dash): x >> dash, or sign... i.e. max(floor(x / 2**dash), min(x, 1))."""
    return torch.maximum(ste_floor(x / torch.pow(2.0, dash)), torch.clamp(x, max=1.0))


class XyloChipModel(ChipModel):
    """The chip model of one compiled Xylo network (see the module docstring).

    ``quantized()`` keys: those of :class:`~nirdeploy_targets.xylo.config.XyloConfig`."""

    def __init__(self, artifact, hw, weights: GraphWeights | None):
        super().__init__()
        low = artifact.payload
        cfg: XyloConfig = low.config
        if any(len(a) > 1 for a in cfg.aliases):
            raise UnsupportedError("a hidden neuron with more than one alias target: Xylo takes one")
        self.hw = hw
        self.info = ChipInfo("xylo", artifact.variant, low.readout, int(low.latency_steps), tuple(low.input_shape), tuple(low.output_shape),
                             artifact.report.settings.get("dt"))
        st = hw.fmt("state")
        self.smin, self.smax, self.sbits = float(st.min), float(st.max), int(st.bits)
        self.wbits = int(hw.fmt("shifted_weight").bits)
        self.cap_in = float(hw.limit("max_input_events_per_step"))
        self.cap_hid = float(hw.limit("max_hidden_spikes_per_step"))
        self.cap_out = float(hw.limit("max_output_spikes_per_step"))
        self._artifact = artifact
        if weights is None:
            w = hw.fmt("weight")
            weights = IntegerWeights({k: getattr(cfg, k) for k in _WEIGHT_KEYS}, {k: (float(w.min), float(w.max)) for k in _WEIGHT_KEYS})
        self.weights = weights

    # -- parameters --------------------------------------------------------------------------
    def _current(self):
        """(config, output scale, lowered network or None) the chip runs now."""
        low = self._current_artifact("Xylo", "config").payload
        return low.config, low.output_scale, low if isinstance(self.weights, GraphWeights) else None

    def _weights(self, cfg: XyloConfig, low):
        """The three weight arrays as float64 tensors holding integers, with straight-through
        gradients to the trainable parameters."""
        if isinstance(self.weights, IntegerWeights):
            return tuple(self.weights.get(k) for k in _WEIGHT_KEYS)
        ints = [torch.as_tensor(np.asarray(getattr(cfg, k), dtype=np.float64)) for k in _WEIGHT_KEYS]
        if not torch.is_grad_enabled():
            return tuple(ints)
        # the lowering's pre-rounding values w * k * s / 2**shift, as functions of the NIR weights
        s_h, s_o = (torch.as_tensor(np.asarray(s, dtype=np.float64)) for s in low.scales)
        shifts = (cfg.weight_shift_in, cfg.weight_shift_rec, cfg.weight_shift_out)
        pre = [torch.zeros_like(ints[0]), torch.zeros_like(ints[1]), torch.zeros_like(ints[2])]
        used = [False, False, False]
        in_shape = tuple(self.weights.graph.inputs[0].output_shape or (cfg.n_in,))
        for layer in low.paths:
            dst = slice(layer["offset"], layer["offset"] + layer["n"])
            for src, nodes, syn in layer["contributions"]:
                if not any(self.weights.has(n) for n in nodes):
                    continue
                src_shape = in_shape if src == INPUT else (self._layer_size(low, src),)
                M = path_matrix(nodes, self.weights, src_shape)  # (n_dst, n_src)
                m = (torch.as_tensor(layer["k"][syn])[:, None] * M).T  # (n_src, n_dst)
                if layer["role"] == "output":
                    o = layer["src_offset"][src]
                    pre[2] = pre[2].index_put((torch.arange(o, o + m.shape[0])[:, None], torch.arange(cfg.n_out)[None, :]), m, accumulate=True)
                    used[2] = True
                elif src == INPUT:
                    pre[0] = pre[0].index_put((torch.arange(m.shape[0])[:, None], torch.arange(dst.start, dst.stop)[None, :],
                                               torch.tensor(syn)), m, accumulate=True)
                    used[0] = True
                else:
                    o = layer["src_offset"][src]
                    pre[1] = pre[1].index_put((torch.arange(o, o + m.shape[0])[:, None], torch.arange(dst.start, dst.stop)[None, :],
                                               torch.tensor(syn)), m, accumulate=True)
                    used[1] = True
        out = []
        for i, (q, p) in enumerate(zip(ints, pre)):
            if not used[i]:
                out.append(q)
                continue
            s = s_o[None, :] if i == 2 else s_h[None, :, None]
            p = p * s / 2.0 ** shifts[i]
            out.append(q + (p - p.detach()))
        return tuple(out)

    @staticmethod
    def _layer_size(low, name: str) -> int:
        for layer in low.paths:
            if layer["name"] == name:
                return int(layer["n"])
        raise UnsupportedError(f"no layer {name!r} in the lowered network")

    def quantized(self) -> dict[str, np.ndarray]:
        cfg, _, _ = self._current()
        d = cfg.to_arrays()
        if isinstance(self.weights, IntegerWeights):
            with torch.no_grad():
                for k in _WEIGHT_KEYS:
                    d[k] = self.weights.get(k).numpy().astype(np.int64)
        return d

    # -- dynamics ----------------------------------------------------------------------------
    def forward(self, x, record: bool = False):
        x = self._input(x)
        cfg, out_scale, low = self._current()
        w_in, w_rec, w_out = self._weights(cfg, low)
        y, rec = self._run(cfg, w_in, w_rec, w_out, x, record)
        return self._output(y, rec, record, out_scale)

    def _run(self, cfg: XyloConfig, w_in, w_rec, w_out, x, record):
        nin, nh, no, ns = cfg.n_in, cfg.n_hidden, cfg.n_out, cfg.n_syn
        B, T = int(x.shape[0]), int(x.shape[1])
        x = torch.clamp(x.reshape(B, T, -1), max=self.cap_in)
        if x.shape[2] != nin:
            raise UnsupportedError(f"input has {x.shape[2]} channels; the network has {nin}")
        f64 = torch.float64
        lo, hi = self.smin, self.smax
        # shifted weights int16(w << shift), laid out [sources (inputs, hidden)] x [states]
        sw_in = _wrap(w_in * 2.0**cfg.weight_shift_in, self.wbits)
        sw_rec = _wrap(w_rec * 2.0**cfg.weight_shift_rec, self.wbits)
        sw_out = _wrap(w_out * 2.0**cfg.weight_shift_out, self.wbits)
        top = [sw_in[:, :, 0], torch.zeros((nin, no), dtype=f64)] + ([sw_in[:, :, 1]] if ns == 2 else [])
        bot = [sw_rec[:, :, 0], sw_out] + ([sw_rec[:, :, 1]] if ns == 2 else [])
        W = torch.cat([torch.cat(top, 1), torch.cat(bot, 1)], 0)  # (nin + nh, m)
        Wp, Wn = torch.clamp(W, min=0), torch.clamp(W, max=0)
        m = W.shape[1]
        dsyn = torch.as_tensor(np.concatenate([cfg.dash_syn, cfg.dash_syn_out] + ([cfg.dash_syn_2] if ns == 2 else [])).astype(np.float64))
        dmem = torch.as_tensor(np.concatenate([cfg.dash_mem, cfg.dash_mem_out]).astype(np.float64))
        theta = torch.as_tensor(np.concatenate([cfg.threshold, cfg.threshold_out]).astype(np.float64))
        bias = torch.as_tensor(np.concatenate([cfg.bias, cfg.bias_out]).astype(np.float64)) if cfg.bias_enable else None
        cap = torch.as_tensor(np.concatenate([np.full(nh, self.cap_hid), np.full(no, self.cap_out)]))
        pos = theta > 0
        all_pos = bool(pos.all())
        th_safe = torch.where(pos, theta, torch.ones_like(theta))
        aliases = [(j, int(al[0])) for j, al in enumerate(cfg.aliases) if al]
        involved = sorted({j for j, _ in aliases} | {a for _, a in aliases})
        alias_of = dict(aliases)

        I = torch.zeros((B, m), dtype=f64)
        V = torch.zeros((B, nh + no), dtype=f64)
        S = torch.zeros((B, nh), dtype=f64)
        outs, mem = [], []
        rec = {k: [] for k in ("Vmem", "Isyn", "Isyn2", "Spikes", "Vmem_out", "Isyn_out")} if record else None
        for t in range(T):
            # 1. delivery of this step's inputs and the previous step's hidden spikes
            src = torch.cat([x[:, t], S], 1)
            if bool((src != 0).any()):
                P, N = src @ Wp, src @ Wn
                new = I + P + N
                risky = ((I + P) > hi) | ((I + N) < lo)
                if bool(risky.any()):
                    # entries whose positive or negative terms alone could leave int16: the ones
                    # whose partial sums in delivery order really do are added term by term
                    b, c = torch.nonzero(risky, as_tuple=True)
                    terms = src[b] * W[:, c].T  # (entries, sources) in delivery order
                    with torch.no_grad():
                        partial = I[b, c][:, None] + torch.cumsum(terms, 1)
                        sat = ((partial > hi) | (partial < lo)).any(1)
                    if bool(sat.any()):
                        b, c = b[sat], c[sat]
                        new = new.index_put((b, c), clamp_sequence(I[b, c], terms[sat], lo, hi))
                I = new
            # 2. synaptic decay
            I = I - _decay(I, dsyn)
            # 3. membrane
            itot = torch.cat([I[:, :nh] + (I[:, nh + no:] if ns == 2 else 0.0), I[:, nh:nh + no]], 1)
            dv = -_decay(V, dmem)
            dv = torch.where(dv > hi, dv - float(1 << self.sbits), dv)  # int16 wrap: V = -32768 with dash 0
            dv = torch.clamp(dv + itot, lo, hi)
            if bias is not None:
                dv = torch.clamp(dv + bias, lo, hi)
            V = torch.clamp(V + dv, lo, hi)
            mem.append(V / th_safe)
            # 4. spikes by subtraction
            n = torch.clamp(ste_floor(V / th_safe), min=0.0)
            n = torch.minimum(n, cap)
            if not all_pos:
                n = torch.where(pos, n, torch.zeros_like(n))
            z = spike_surrogate(V, theta, n)
            Vn = V - n.detach() * torch.where(pos, theta, torch.zeros_like(theta))
            if not all_pos:
                Vn, z = self._nonpositive(V, Vn, z, theta, pos, cap)
            if involved:
                Vn, z = self._aliases(V, Vn, z, theta, cap, involved, alias_of, nh)
            V = Vn
            S = z[:, :nh]
            outs.append(V[:, nh:] if self.info.readout == "vmem" else z[:, nh:])
            if rec is not None:
                rec["Vmem"].append(V[:, :nh])
                rec["Isyn"].append(I[:, :nh])
                rec["Isyn2"].append(I[:, nh + no:] if ns == 2 else None)
                rec["Spikes"].append(z[:, :nh])
                rec["Vmem_out"].append(V[:, nh:])
                rec["Isyn_out"].append(I[:, nh:nh + no])
        y = torch.stack(outs, 1) if outs else torch.zeros((B, 0, no), dtype=f64)
        if rec is None:
            return y, None
        states = {k: torch.stack(v, 1) for k, v in rec.items() if v and v[0] is not None}
        spiking_out = self.info.readout == "spikes"
        if mem:
            mm = torch.stack(mem, 1)
            states["membrane"] = [mm[:, :, :nh]] + ([mm[:, :, nh:]] if spiking_out else [])
        else:
            states["membrane"] = []
        return y, states

    def _nonpositive(self, V, Vn, z, theta, pos, cap):
        """The literal spike loop for neurons with theta <= 0 (V wraps at 16 bits)."""
        sel = ~pos
        v = V.detach()[:, sel]
        th = theta[sel]
        c = cap[sel]
        n = torch.zeros_like(v)
        for _ in range(int(c.max())):
            go = (v >= th) & (n < c)
            if not bool(go.any()):
                break
            n = n + go.to(n.dtype)
            v = torch.where(go, _wrap(v - th, self.sbits), v)
        Vn = Vn.clone()
        z = z.clone()
        Vn[:, sel] = V[:, sel] + (v - V[:, sel]).detach()
        z[:, sel] = n
        return Vn, z

    def _aliases(self, V, Vn, z, theta, cap, involved, alias_of, nh):
        """Hidden neurons taking part in an alias, one by one in ascending order (xylosim's):
        each starts from the alias spikes already deposited in its buffer; its count is then
        added, capped, to its target's buffer (a target below it only gains spikes)."""
        Vn, z = Vn.clone(), z.clone()
        B = V.shape[0]
        buf = {j: torch.zeros(B, dtype=V.dtype) for j in involved}
        for j in involved:
            v = V[:, j]
            th = theta[j]
            c = cap[j]
            n0 = torch.minimum(buf[j], c)
            if float(th) > 0:
                k = torch.where(v >= th, torch.clamp(torch.minimum(ste_floor(v / th), c - n0), min=0.0), torch.zeros_like(v))
                vj = v - k.detach() * th
                n = n0 + spike_surrogate(v, th, k)
            else:
                vv, nn = v.detach().clone(), n0.clone()
                for _ in range(int(c)):
                    go = (vv >= th) & (nn < c)
                    if not bool(go.any()):
                        break
                    nn = nn + go.to(nn.dtype)
                    vv = torch.where(go, _wrap(vv - th, self.sbits), vv)
                vj, n = v + (vv - v).detach(), nn
            Vn[:, j] = vj
            z[:, j] = n
            a = alias_of.get(j)
            if a is not None:
                if a > j:
                    buf[a] = torch.minimum(buf[a] + n, cap[a])
                else:
                    z[:, a] = torch.minimum(z[:, a] + n, cap[a])
        return Vn, z
