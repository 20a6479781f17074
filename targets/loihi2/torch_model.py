"""Loihi 2's chip model in torch: Lava's fixed-point CUBA LIF and Dense/Conv synapses as ``sim.py``
computes them (``shared/chips/loihi2.md`` sections 2-3), differentiable, for fine-tuning (see
:mod:`nirdeploy.torch.chip`).

Per step, every layer, exactly as the bit-accurate simulator (no case excluded):

1. ``a`` = sum of its synapses' outputs from their sources' spikes of the previous step (network
   input: ``x > 0``). Dense: the sum of the effective weights of the active inputs (sign-mode clip
   and low bits dropped, :func:`~nirdeploy_targets.loihi2.config.effective_weights`), shifted by
   ``weight_exp`` (an arithmetic right shift, i.e. floor, for a negative exponent). Conv: the
   cross-correlation, wrapped at 24 bits. Where a layer's activation could reach int32 (its static
   bound), Lava's 32-bit wraps of each synapse's output, of their sum and of ``a << 6``;
2. ``u = wrap24(trunc(u (4096 - du - 1) / 4096) + (a << 6))`` (one conditional wrap into
   (-2**23, 2**23]);
3. ``v = clip(trunc(v (4096 - dv) / 4096) + u + bias, +-(2**23 - 1))``;
4. ``s = v > vth << 6`` (strict), ``v = 0`` where s; u is not reset.

Output: the output layer's spikes, or for a voltage readout its v divided by the readout scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nirdeploy.errors import UnsupportedError
from nirdeploy.graph.discretize import discretize_node
from nirdeploy.torch.chip import ChipInfo, ChipModel, GraphWeights, IntegerWeights, path_matrix, spike_surrogate, ste_floor, ste_trunc

from .config import INPUT, Loihi2Network, infer_sign_mode
from .sim import Constants

__all__ = ["Loihi2ChipModel", "build"]

_I32 = float(1 << 31)


def build(target, artifact, weights: GraphWeights | None = None, **options) -> "Loihi2ChipModel":
    if options:
        raise UnsupportedError(f"the Loihi 2 chip model takes no options; got {', '.join(sorted(options))}")
    if artifact.payload.network is None:
        raise UnsupportedError("this network did not lower onto Loihi 2; see its report")
    return Loihi2ChipModel(artifact, target.hwconfig(artifact.variant), weights)


def _wrap(v: torch.Tensor, half: float) -> torch.Tensor:
    """Two's-complement wrap into [-half, half), derivative 1."""
    w = torch.remainder(v + half, 2 * half) - half
    return v + (w - v).detach()


def _effective(w: torch.Tensor, mode: str, bits: int) -> torch.Tensor:
    """:func:`~nirdeploy_targets.loihi2.config.effective_weights` in torch (straight-through)."""
    mixed = mode == "mixed"
    if mode == "inhibitory":
        w = -w
    w = torch.clamp(w, -256.0 if mixed else 0.0, 255.0)
    k = 8 - int(bits) + (1 if mixed else 0)
    if k:
        w = ste_floor(w / 2.0**k) * 2.0**k
    return -w if mode == "inhibitory" else w


def _paths(g, layer_names: list[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """Per layer, the paths of linear nodes into it as the lowering finds them (source, nodes
    source side first), in the lowering's order (``lower._structure``)."""
    inp = g.inputs[0].name
    layers = set(layer_names)

    def into(name: str, stack: tuple = ()) -> list[tuple[str, list[str]]]:
        res = []
        for p in g.predecessors(name):
            if p == inp:
                res.append(("__input__", []))
            elif p in layers:
                res.append((p, []))
            elif p not in stack:
                res.extend((src, nodes + [p]) for src, nodes in into(p, stack + (p,)))
        return res

    return {n: into(n) for n in layer_names}


class Loihi2ChipModel(ChipModel):
    """The chip model of one compiled Loihi 2 network (see the module docstring).

    ``quantized()`` keys: ``L{i}.S{j}.weight`` (the integers given to Lava), ``L{i}.bias_mant``,
    ``L{i}.bias_exp`` as in the compiled folder, plus ``L{i}.du/dv/vth`` and ``L{i}.S{j}.weight_exp``."""

    def __init__(self, artifact, hw, weights: GraphWeights | None):
        super().__init__()
        low = artifact.payload
        net: Loihi2Network = low.network
        self.hw = hw
        self.c = Constants.from_hw(hw)
        readout = "vmem" if net.readout == "v" else "spikes"
        self.info = ChipInfo("loihi2", artifact.variant, readout, int(low.latency_steps), tuple(low.input_shape), tuple(low.output_shape),
                             artifact.report.settings.get("dt"))
        self._artifact = artifact
        self._settings = artifact.report.settings
        if weights is None:
            arrays = {f"L{i}_S{j}": s.weight for i, L in enumerate(net.layers) for j, s in enumerate(L.synapses)}
            rng = {k: (-np.inf, np.inf) for k in arrays}  # the sign modes clip (see _effective)
            weights = IntegerWeights(arrays, rng)
        self.weights = weights

    # -- parameters --------------------------------------------------------------------------
    def _current(self):
        return self._current_artifact("Loihi 2")

    def _synapse_weights(self, art) -> list[list[torch.Tensor]]:
        """Effective weights per layer and synapse (float64 tensors holding integers), with
        straight-through gradients to the trainable parameters."""
        net: Loihi2Network = art.payload.network
        if isinstance(self.weights, IntegerWeights):
            out = []
            for i, L in enumerate(net.layers):
                row = []
                for j, s in enumerate(L.synapses):
                    w = self.weights.get(f"L{i}_S{j}")
                    if s.kind == "conv":
                        row.append(w)
                    else:
                        mode = s.sign_mode or infer_sign_mode(w.detach().numpy())
                        row.append(_effective(w, mode, s.num_weight_bits))
                out.append(row)
            return out
        ints = [[torch.as_tensor(s.effective().astype(np.float64)) for s in L.synapses] for L in net.layers]
        if not torch.is_grad_enabled():
            return ints
        for (i, j), pre in self._pre_rounding(art).items():
            ints[i][j] = ints[i][j] + (pre - pre.detach())
        return ints

    def _pre_rounding(self, art) -> dict[tuple[int, int], torch.Tensor]:
        """Per trained synapse (layer i, synapse j): the lowering's value before rounding, as a
        differentiable function of the graph's weights (shape of the synapse's integers)."""
        net: Loihi2Network = art.payload.network
        out = {}
        g = self.weights.graph
        origin = [L.origin or L.name for L in net.layers]  # a layer split by (du, dv) runs as groups name#k (lower.split_by_decay)
        paths = _paths(g, list(dict.fromkeys(origin)))
        full = {}  # per source layer of the graph: its neuron count (the groups partition it)
        for L, o in zip(net.layers, origin):
            full[o] = full.get(o, 0) + L.n
        in_shape = tuple(net.input_shape)
        unit_shift = float(1 << self.c.activation_shift)
        for i, L in enumerate(net.layers):
            ps = paths.get(origin[i])
            pairs = self._match(net, i, ps or [], origin)
            if pairs is None:
                raise UnsupportedError(f"{L.name}: its Loihi 2 synapses do not correspond to the graph's paths into {origin[i]} "
                                       "(a merged layer, or parallel paths from one source into a split layer): the chip model cannot "
                                       "train it from the graph")
            unit = torch.as_tensor(self._unit(g.nodes[origin[i]], L, art, full[origin[i]]) / unit_shift)
            for j, ((src, nodes), s) in enumerate(zip(pairs, L.synapses)):
                if not any(self.weights.has(n) for n in nodes):
                    continue
                if src == "__input__":
                    src_shape = in_shape
                elif net.layers[s.src].neurons is not None:
                    src_shape = (full[src],)
                else:
                    src_shape = tuple(net.layers[s.src].shape)
                if s.kind == "dense":
                    A = unit[:, None] * path_matrix(nodes, self.weights, src_shape)
                    if L.neurons is not None:
                        A = A[torch.as_tensor(L.neurons)]
                    if src != "__input__" and net.layers[s.src].neurons is not None:
                        A = A[:, torch.as_tensor(net.layers[s.src].neurons)]
                    pre = A / 2.0**s.weight_exp
                else:  # Conv synapses never touch a split layer (split_by_decay refuses them)
                    pre = self._conv_pre(nodes, unit, s)
                if pre is None or tuple(pre.shape) != tuple(s.weight.shape):
                    continue  # a composite the gradient estimate does not cover: this synapse is not trained
                out[i, j] = pre
        return out

    @staticmethod
    def _match(net: Loihi2Network, i: int, ps, origin) -> list | None:
        """The graph path (source, nodes) of each synapse of layer ``i``, or None when they do not
        correspond. An unsplit layer fed by unsplit layers has one synapse per path, in order; a
        split layer, or one fed by a split layer, has one synapse per (path, source group) with its
        all-zero blocks left out: each is found by its source's graph layer, which must be unique."""
        L = net.layers[i]
        split = L.neurons is not None or any(s.src != INPUT and net.layers[s.src].neurons is not None for s in L.synapses)
        if not split:
            if len(ps) != len(L.synapses) or any(f"{src} -> {L.name}" != s.name for (src, _), s in zip(ps, L.synapses) if s.name):
                return None
            return list(ps)
        out = []
        for s in L.synapses:
            src = "__input__" if s.src == INPUT else origin[s.src]
            hits = [p for p in ps if p[0] == src]
            if len(hits) != 1:
                return None
            out.append(hits[0])
        return out

    def _unit(self, node, L, art, n: int) -> np.ndarray:
        """Per neuron of the graph's layer ``node`` (``n`` neurons; for a layer split by (du, dv)
        all its groups): integer voltage units (S, the lowering's voltage scale) times the
        synaptic gain, per unit of NIR weight, before the activation shift. ``L.vth`` is the same
        in every group of a split layer."""
        s = self._settings
        d = discretize_node(node, s["dt"], s.get("scheme", "euler"), name=L.origin or L.name)
        gain = np.broadcast_to(np.asarray(d.gain_v, dtype=np.float64).reshape(-1), (n,))
        if d.cuba:
            gain = gain * np.broadcast_to(np.asarray(d.gain_i, dtype=np.float64).reshape(-1), (n,))
        if d.spiking:
            vr = np.broadcast_to(np.asarray(d.v_reset if d.v_reset is not None else 0.0, dtype=np.float64).reshape(-1), (n,))
            thr = np.broadcast_to(np.asarray(d.threshold, dtype=np.float64).reshape(-1), (n,)) - vr
            if s.get("loihi_mode") == "paper":  # the NIR paper's constants: S = 2**14 for every neuron (lower.py)
                S = np.full(n, float(1 << 14))
            else:
                S = float(L.vth << self.c.threshold_shift) / np.where(thr > 0, thr, 1.0)
        else:
            S = np.broadcast_to(np.asarray(art.payload.output_scale, dtype=np.float64).reshape(-1), (n,))
        return S * gain

    def _conv_pre(self, nodes, unit, s):
        """Pre-rounding conv weights for the paths [Conv2d] and [SumPool2d, Conv2d] (the
        lowering's composites); None for others."""
        g = self.weights.graph
        types = [g.nodes[n].type for n in nodes]
        if types == ["Conv2d"]:
            w = self.weights.weight(nodes[0])
        elif len(types) == 2 and types[0] == "SumPool2d" and types[1] == "Conv2d":
            k = np.asarray(g.nodes[nodes[0]].params["kernel_size"]).ravel()
            k0, k1 = (int(k[0]), int(k[0])) if k.size == 1 else (int(k[0]), int(k[1]))
            w = self.weights.weight(nodes[1]).repeat_interleave(k0, dim=2).repeat_interleave(k1, dim=3)
        else:
            return None
        cout = w.shape[0]
        u_ch = unit.reshape(cout, -1)[:, 0]
        return w * u_ch[:, None, None, None]

    def quantized(self) -> dict[str, np.ndarray]:
        art = self._current()
        net = art.payload.network
        _, arrays = net.to_parts()
        d = dict(arrays)
        if isinstance(self.weights, IntegerWeights):
            with torch.no_grad():
                for i, L in enumerate(net.layers):
                    for j, _ in enumerate(L.synapses):
                        d[f"L{i}.S{j}.weight"] = self.weights.get(f"L{i}_S{j}").numpy().astype(np.int64)
        for i, L in enumerate(net.layers):
            d[f"L{i}.du"], d[f"L{i}.dv"], d[f"L{i}.vth"] = np.int64(L.du), np.int64(L.dv), np.int64(L.vth)
            for j, s in enumerate(L.synapses):
                d[f"L{i}.S{j}.weight_exp"] = np.int64(s.weight_exp)
        return d

    # -- dynamics ----------------------------------------------------------------------------
    def forward(self, x, record: bool = False):
        x = self._input(x)
        art = self._current()
        net: Loihi2Network = art.payload.network
        W = self._synapse_weights(art)
        y, rec = self._run(net, W, x, record)
        return self._output(y, rec, record, art.payload.output_scale)

    def _run(self, net: Loihi2Network, W, x, record):
        c = self.c
        B, T = int(x.shape[0]), int(x.shape[1])
        xin = (x.reshape(B, T, -1) > 0).to(torch.float64)
        M = float(1 << (c.uv_bits - 1))
        unity = float(1 << c.decay_shift)
        act = float(1 << c.activation_shift)
        conv_half = float(1 << (c.conv_bits - 1))
        layers = net.layers
        n = [L.n for L in layers]
        fu = [(unity - (L.du + c.current_decay_offset)) / unity for L in layers]
        fv = [(unity - L.dv) / unity for L in layers]
        th = [float(L.vth << c.threshold_shift) for L in layers]
        bias = [torch.as_tensor(L.effective_bias().astype(np.float64)) for L in layers]

        def bound(s, w):
            a = w.detach().abs()
            if s.kind == "dense":
                return float(a.sum(dim=1).max()) * 2.0**s.weight_exp if a.numel() else 0.0
            return float(a.reshape(a.shape[0], -1).sum(dim=1).max()) if a.numel() else 0.0

        wide = [sum(bound(s, w) for s, w in zip(L.synapses, Wl)) * act + 2 * M >= _I32 for L, Wl in zip(layers, W)]
        u = [torch.zeros((B, k), dtype=torch.float64) for k in n]
        v = [torch.zeros((B, k), dtype=torch.float64) for k in n]
        spk = [torch.zeros((B, k), dtype=torch.float64) for k in n]
        buf = [[None for _ in L.synapses] for L in layers]
        outs = []
        rec = {L.name: {"u": [], "v": [], "s": []} for L in layers} if record else None
        mem = {i: [] for i in range(len(layers))}
        spiking_out = net.readout != "v"
        for t in range(T):
            for i, L in enumerate(layers):
                parts = [b for b in buf[i] if b is not None]
                uu = ste_trunc(u[i] * fu[i]) if fu[i] != 0.0 else torch.zeros_like(u[i])
                if parts:
                    if wide[i]:
                        a = _wrap(sum(_wrap(p, _I32) for p in parts), _I32)
                        uu = _wrap(uu + _wrap(a * act, _I32), _I32)
                    else:
                        uu = uu + sum(parts) * act
                uu = torch.where(uu > M, uu - 2 * M, torch.where(uu <= -M, uu + 2 * M, uu))
                u[i] = uu
                vv = ste_trunc(v[i] * fv[i]) if fv[i] != 1.0 else v[i]
                vv = torch.clamp(vv + uu + bias[i], -(M - 1), M - 1)
                thr = torch.tensor(th[i], dtype=torch.float64)
                fired = (vv > thr).to(torch.float64)
                s = spike_surrogate(vv, thr, fired)
                mem[i].append(vv / max(th[i], 1.0))
                vv = vv * (1.0 - fired)
                v[i] = vv
                spk[i] = s
                if rec is not None:
                    rec[L.name]["u"].append(uu)
                    rec[L.name]["v"].append(vv)
                    rec[L.name]["s"].append(fired)
            o = net.output
            outs.append(v[o] if net.readout == "v" else spk[o])
            # the synapses accumulate this step's spikes for the next step
            for i, L in enumerate(layers):
                for j, syn in enumerate(L.synapses):
                    src = xin[:, t] if syn.src == INPUT else spk[syn.src]
                    buf[i][j] = self._accumulate(syn, W[i][j], src, net, conv_half)
        y = torch.stack(outs, 1) if outs else torch.zeros((B, 0, n[net.output]), dtype=torch.float64)
        if rec is None:
            return y, None
        states = {k: {var: torch.stack(vals, 1) for var, vals in d.items()} for k, d in rec.items()}
        states["membrane"] = [torch.stack(mem[i], 1) for i, L in enumerate(layers)
                              if (i != net.output or spiking_out) and mem[i]]
        return y, states

    @staticmethod
    def _accumulate(syn, w, s, net, conv_half):
        if syn.kind == "dense":
            acc = s @ w.T
            if syn.weight_exp > 0:
                acc = acc * 2.0**syn.weight_exp
            elif syn.weight_exp < 0:
                acc = ste_floor(acc / 2.0 ** (-syn.weight_exp))
            return acc
        src_shape = tuple(net.src_shape(syn.src))
        y = F.conv2d(s.reshape((s.shape[0],) + src_shape), w, None, syn.stride, syn.padding, syn.dilation, syn.groups)
        y = y.reshape(s.shape[0], -1)
        if bool((y.detach().abs() >= conv_half).any()):
            y = _wrap(y, conv_half)
        return y

