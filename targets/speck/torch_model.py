"""Speck's chip model in torch, in the two modes of ``sim.py`` (see :mod:`nirdeploy.torch.chip`).

**binned** (sinabs' time-binned forward on the integer network): per bin and layer, ``I =
conv(sum of the sources' sum-pooled spikes) + bias``, ``v += I``, spikes ``floor(v / threshold)``
where v > 0 (``binned_spikes="multi"``) or one where ``v >= threshold`` ("single"), subtract
``spikes * threshold`` (or return to zero), clamp ``v >= threshold_low``. Differentiable.

**event** (the chip's event-driven integer semantics, the target's default): every input event
updates every neuron of its projective field one at a time, ``v += w`` saturated (or wrapped) to
16 bits, at most one spike per update when ``v >= threshold`` (or ``>``: option ``spike_test``),
subtract or return to zero, clamp at ``threshold_low``; biases on ``slow_clock_ticks_per_step``
ticks before a bin's events; sum pooling by address division; the event order of ``sim.py`` (raster
order inside a bin, spikes inheriting the position of the event that caused them, sources merged
by cause, then source order, then position). Computed here independently, in torch integer
arithmetic, and exactly equal to ``simulate_events``. It has no useful derivative, so each layer's
forward value is its exact event-driven spike count and its gradient is that of the binned layer
on the same input (a straight-through estimate: ``z = z_event + (z_binned - z_binned.detach())``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nirdeploy.errors import UnsupportedError
from nirdeploy.graph.discretize import discretize_node
from nirdeploy.torch.chip import ChipInfo, ChipModel, GraphWeights, IntegerWeights, spike_surrogate, ste_floor

from .config import INPUT, SpeckNetwork

__all__ = ["SpeckChipModel", "build", "MODES"]

MODES = ("event", "binned")


def build(target, artifact, weights: GraphWeights | None = None, mode: str | None = None, **options) -> "SpeckChipModel":
    if options:
        raise UnsupportedError(f"the Speck chip model takes the option mode ('event' or 'binned'); got {', '.join(sorted(options))}")
    low = artifact.payload
    if low.network is None:
        raise UnsupportedError("this network did not lower onto Speck; see its report")
    mode = mode or low.options.get("sim_mode", "event")
    if mode not in MODES:
        from nirdeploy.errors import UsageError

        raise UsageError(f"Speck chip model mode must be 'event' or 'binned', got {mode!r}")
    return SpeckChipModel(artifact, target.hwconfig(artifact.variant), weights, mode)


def _sum_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum pooling over the last two axes, kernel = stride = k, partial windows dropped."""
    if k == 1:
        return x
    H, W = x.shape[-2] // k, x.shape[-1] // k
    x = x[..., : H * k, : W * k]
    return x.reshape(x.shape[:-2] + (H, k, W, k)).sum(dim=(-3, -1))


def _lexsort(*keys: torch.Tensor) -> torch.Tensor:
    """Indices sorting by keys[0], then keys[1], ... (non-negative integer keys; stable). One
    sort of a combined key when it fits 62 bits, else one stable sort per key."""
    n = keys[0].numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    combined, span = torch.zeros(n, dtype=torch.int64), 1
    for k in reversed(keys):
        top = int(k.max()) + 1
        if span * top >= 1 << 62:
            break
        combined = combined + k * span
        span *= top
    else:
        return torch.sort(combined * n + torch.arange(n)).indices  # ties broken by position: stable
    order = torch.arange(n)
    for k in reversed(keys):
        order = order[torch.sort(k[order], stable=True).indices]
    return order


def _rank_in_groups(*keys: torch.Tensor) -> torch.Tensor:
    """For arrays sorted by ``keys``: each element's position inside its group of equal keys."""
    n = keys[0].numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    change = torch.zeros(n, dtype=torch.bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = torch.nonzero(change).flatten()
    lens = torch.diff(torch.cat([starts, torch.tensor([n])]))
    return torch.arange(n) - torch.repeat_interleave(starts, lens)


class _Events:
    """The events of one bin: sample b, address (c, y, x), cause (root) and position (pos),
    sorted by (b, root, pos)."""

    __slots__ = ("b", "c", "y", "x", "root", "pos")

    def __init__(self, b, c, y, x, root, pos):
        self.b, self.c, self.y, self.x, self.root, self.pos = b, c, y, x, root, pos

    @classmethod
    def empty(cls) -> "_Events":
        z = torch.zeros(0, dtype=torch.int64)
        return cls(z, z, z, z, z, z)

    def take(self, m) -> "_Events":
        return _Events(self.b[m], self.c[m], self.y[m], self.x[m], self.root[m], self.pos[m])


class SpeckChipModel(ChipModel):
    """The chip model of one compiled Speck network (see the module docstring).

    ``quantized()`` keys: ``weight_{i}``, ``bias_{i}`` (as in the compiled folder) and
    ``threshold_high_{i}``, ``threshold_low_{i}`` per layer ``i``."""

    def __init__(self, artifact, hw, weights: GraphWeights | None, mode: str):
        super().__init__()
        low = artifact.payload
        self.mode = mode
        self.opts = dict(low.options)
        self.sfmt = hw.fmt("state")
        self.hw = hw
        self.info = ChipInfo("speck", artifact.variant, "spikes", 0, tuple(low.input_shape), tuple(low.output_shape),
                             artifact.report.settings.get("dt"))
        self._artifact = artifact
        self._settings = artifact.report.settings
        if weights is None:
            w = hw.fmt("weight")
            arrays = {f"weight_{i}": l.weight for i, l in enumerate(low.network.layers)}
            weights = IntegerWeights(arrays, {k: (float(w.min), float(w.max)) for k in arrays})
        self.weights = weights

    # -- parameters --------------------------------------------------------------------------
    def _current(self):
        return self._current_artifact("Speck")

    def _layer_weights(self, art) -> list[torch.Tensor]:
        net: SpeckNetwork = art.payload.network
        if isinstance(self.weights, IntegerWeights):
            return [self.weights.get(f"weight_{i}") for i in range(len(net.layers))]
        ints = [torch.as_tensor(l.weight.astype(np.float64)) for l in net.layers]
        if not torch.is_grad_enabled():
            return ints
        s = self._settings
        usage = {u.node: u.usage for u in art.report.nodes}
        for i, l in enumerate(net.layers):
            if not l.weight_node or not self.weights.has(l.weight_node):
                continue
            node = self.weights.graph.nodes[l.name]
            d = discretize_node(node, s["dt"], s.get("scheme", "euler"), name=l.name)
            shape = tuple(l.neuron_shape) if l.kind == "conv" else (l.c_out,)
            c_out = l.c_out
            gain = np.broadcast_to(np.asarray(d.gain_v, dtype=np.float64), shape).reshape(c_out, -1)[:, 0]
            thr = np.broadcast_to(np.asarray(d.threshold, dtype=np.float64), shape).reshape(c_out, -1)[:, 0]
            fold = gain * float(thr.max()) / thr * float(usage.get(l.name, {}).get("avgpool_rescale", 1.0))
            w = self.weights.weight(l.weight_node).reshape(ints[i].shape)
            pre = w * torch.as_tensor(fold * l.scale)[:, None, None, None]
            ints[i] = ints[i] + (pre - pre.detach())
        return ints

    def quantized(self) -> dict[str, np.ndarray]:
        art = self._current()
        net: SpeckNetwork = art.payload.network
        d = net.to_arrays()
        if isinstance(self.weights, IntegerWeights):
            with torch.no_grad():
                for i in range(len(net.layers)):
                    d[f"weight_{i}"] = self.weights.get(f"weight_{i}").numpy().astype(np.int64)
        for i, l in enumerate(net.layers):
            d[f"threshold_high_{i}"] = np.int64(l.threshold_high)
            d[f"threshold_low_{i}"] = np.int64(l.threshold_low)
        return d

    # -- dynamics ----------------------------------------------------------------------------
    def forward(self, x, record: bool = False):
        x = self._input(x)
        art = self._current()
        net: SpeckNetwork = art.payload.network
        W = self._layer_weights(art)
        B, T = int(x.shape[0]), int(x.shape[1])
        x = x.reshape((B, T) + tuple(net.input_shape))
        exact = self._events(net, W, x) if self.mode == "event" else None
        out = {INPUT: x}
        rec: dict = {}
        mem = []
        for i, l in enumerate(net.layers):
            inp = None
            for src, pool in l.sources:
                s = _sum_pool(out[src], pool)[..., : l.input_shape[1], : l.input_shape[2]]
                inp = s if inp is None else inp + s
            z, v, vpre = self._binned_layer(l, W[i], inp, B, T)
            if exact is not None:
                ze = exact["spikes"][l.name]
                z = ze + (z - z.detach())
                v = exact["v"][l.name]
            out[l.name] = z
            mem.append(vpre / float(max(l.threshold_high, 1)))
            if record:
                rec[l.name] = {"v": v.detach(), "spikes": z.detach()}
        y = _sum_pool(out[net.output_layer], net.output_pool)
        if net.output_shape and int(np.prod(net.output_shape)) == int(np.prod(y.shape[2:])):
            y = y.reshape((B, T) + tuple(net.output_shape))
        if not record:
            return y
        rec["membrane"] = [m.reshape(B, T, -1) for m in mem]
        return y, rec

    def _binned_layer(self, l, w, inp, B, T):
        """sinabs' time-binned layer: (spikes, v after each bin, v before spikes) (B, T, C, H, W)."""
        flat = inp.reshape((B * T,) + tuple(l.input_shape))
        cur = F.conv2d(flat, w, torch.as_tensor(l.bias.astype(np.float64)), l.stride, l.padding)
        cur = cur.reshape((B, T) + tuple(l.neuron_shape))
        th, low = float(l.threshold_high), float(l.threshold_low)
        thr = torch.tensor(th, dtype=torch.float64)
        v = torch.zeros((B,) + tuple(l.neuron_shape), dtype=torch.float64)
        zs, vs, pre = [], [], []
        single = self.opts.get("binned_spikes", "multi") == "single"
        for t in range(T):
            v = v + cur[:, t]
            pre.append(v)
            if single:
                n = (v >= th).to(torch.float64)
            else:
                n = torch.where(v > 0, ste_floor(v / th), torch.zeros_like(v)).detach()
            z = spike_surrogate(v, thr, n)
            if l.return_to_zero:
                v = torch.where(n > 0, torch.zeros_like(v), v)
            else:
                v = v - n * th
            v = torch.clamp(v, min=low)
            zs.append(z)
            vs.append(v)
        return torch.stack(zs, 1), torch.stack(vs, 1), torch.stack(pre, 1)

    # -- event-driven semantics (exact, integer) -------------------------------------------------
    def _events(self, net: SpeckNetwork, W, x) -> dict:
        """Spike counts and v after each bin of every layer, event by event (no gradient)."""
        o = self.opts
        ge = o.get("spike_test", ">=") == ">="
        wrap = o.get("state_overflow", self.sfmt.overflow) == "wrap"
        ticks_per_step = int(o.get("slow_clock_ticks_per_step", 1))
        B, T = int(x.shape[0]), int(x.shape[1])
        xi = x.detach().to(torch.int64)
        layers = []
        for l, w in zip(net.layers, W):
            C, H, Wd = l.neuron_shape
            N = C * H * Wd
            ticks = ticks_per_step if l.has_bias and bool(np.any(l.bias != 0)) else 0
            kh, kw = l.kernel
            offs = torch.tensor([(ky, kx) for ky in range(kh) for kx in range(kw)], dtype=torch.int64).reshape(-1, 2)
            st = {"l": l, "N": N, "V": torch.zeros(B * N, dtype=torch.int64), "ticks": ticks, "offs": offs,
                  "w": w.detach().to(torch.int64)}
            if ticks:
                nz = torch.nonzero(torch.as_tensor(np.repeat(l.bias != 0, H * Wd))).flatten()
                st["tick_neurons"] = nz
                st["tick_w"] = torch.as_tensor(np.repeat(l.bias, H * Wd).astype(np.int64))[nz]
            layers.append(st)
        n_ticks = max([st["ticks"] for st in layers] + [0])
        spikes = {l.name: torch.zeros((B, T) + tuple(l.neuron_shape), dtype=torch.float64) for l in net.layers}
        vrec = {l.name: torch.zeros((B, T) + tuple(l.neuron_shape), dtype=torch.float64) for l in net.layers}
        for t in range(T):
            streams = {INPUT: self._input_events(xi[:, t], n_ticks)}
            for st in layers:
                l = st["l"]
                ev = self._merge([(streams[s], p) for s, p in l.sources], l.input_shape)
                out = self._step(st, ev, B, ge, wrap)
                streams[l.name] = out
                C, H, Wd = l.neuron_shape
                cnt = torch.bincount(out.b * st["N"] + (out.c * H + out.y) * Wd + out.x, minlength=B * st["N"])
                spikes[l.name][:, t] = cnt.reshape((B,) + tuple(l.neuron_shape)).to(torch.float64)
                vrec[l.name][:, t] = st["V"].reshape((B,) + tuple(l.neuron_shape)).to(torch.float64)
        return {"spikes": spikes, "v": vrec}

    @staticmethod
    def _input_events(xt: torch.Tensor, n_ticks: int) -> _Events:
        """The events of one bin in raster order (b, c, y, x), a count n giving n events."""
        idx = torch.nonzero(xt)
        if not idx.shape[0]:
            return _Events.empty()
        cnt = xt[tuple(idx.T)]
        rep = torch.repeat_interleave(torch.arange(cnt.numel()), cnt)
        b, c, y, x = (idx[rep, k] for k in range(4))
        starts = torch.searchsorted(b, torch.arange(xt.shape[0]))
        root = torch.arange(b.numel()) - starts[b] + n_ticks
        return _Events(b, c, y, x, root, root.clone())

    @staticmethod
    def _merge(streams, in_shape) -> _Events:
        _, Hin, Win = in_shape
        parts, srcs = [], []
        for j, (s, pool) in enumerate(streams):
            if pool != 1:
                s = _Events(s.b, s.c, torch.div(s.y, pool, rounding_mode="floor"), torch.div(s.x, pool, rounding_mode="floor"), s.root, s.pos)
            m = (s.y < Hin) & (s.x < Win)
            if not bool(m.all()):
                s = s.take(m)
            parts.append(s)
            srcs.append(torch.full((s.b.numel(),), j, dtype=torch.int64))
        if len(parts) == 1:
            return parts[0]
        cat = {k: torch.cat([getattr(p, k) for p in parts]) for k in _Events.__slots__}
        order = _lexsort(cat["b"], cat["root"], torch.cat(srcs), cat["pos"])
        s = _Events(*(cat[k][order] for k in _Events.__slots__))
        s.pos = torch.arange(s.b.numel())
        return s

    def _step(self, st, ev: _Events, B: int, ge: bool, wrap: bool) -> _Events:
        l = st["l"]
        C, H, Wd = l.neuron_shape
        N = st["N"]
        sy, sx = l.stride
        py, px = l.padding
        within = _rank_in_groups(ev.b, ev.root)
        M = int(within.max()) + 2 if within.numel() else 1
        key = ev.root * M + within + 1
        gids, keys, ws = [], [], []
        if ev.b.numel():
            offs = st["offs"]
            ny = ev.y[:, None] + py - offs[None, :, 0]
            nx = ev.x[:, None] + px - offs[None, :, 1]
            oy, ox = torch.div(ny, sy, rounding_mode="floor"), torch.div(nx, sx, rounding_mode="floor")
            ok = (torch.remainder(ny, sy) == 0) & (torch.remainder(nx, sx) == 0) & (oy >= 0) & (oy < H) & (ox >= 0) & (ox < Wd)
            e_idx, o_idx = torch.nonzero(ok, as_tuple=True)
            if e_idx.numel():
                oy, ox = oy[e_idx, o_idx], ox[e_idx, o_idx]
                wv = st["w"][:, ev.c[e_idx], offs[o_idx, 0], offs[o_idx, 1]]  # (C, n)
                n = e_idx.numel()
                co = torch.repeat_interleave(torch.arange(C), n)
                base = ev.b[e_idx] * N + oy * Wd + ox
                gids.append(base.repeat(C) + co * (H * Wd))
                keys.append(key[e_idx].repeat(C))
                ws.append(wv.reshape(-1))
        if st["ticks"]:
            tn = st["tick_neurons"]
            for j in range(st["ticks"]):
                gids.append((torch.arange(B)[:, None] * N + tn[None, :]).reshape(-1))
                keys.append(torch.full((B * tn.numel(),), j * M, dtype=torch.int64))
                ws.append(st["tick_w"].repeat(B))
        if not gids:
            return _Events.empty()
        gid, k, w = torch.cat(gids), torch.cat(keys), torch.cat(ws)
        order = _lexsort(gid, k)
        gid, k, w = gid[order], k[order], w[order]
        # every neuron's contributions are contiguous and in event order: the r-th update of all
        # neurons at once is the element r of every group longer than r
        change = torch.ones(gid.numel(), dtype=torch.bool)
        change[1:] = gid[1:] != gid[:-1]
        starts = torch.nonzero(change).flatten()
        lens = torch.diff(torch.cat([starts, torch.tensor([gid.numel()])]))
        spk = torch.zeros(gid.numel(), dtype=torch.bool)
        th, low = int(l.threshold_high), int(l.threshold_low)
        smin, smax = int(self.sfmt.min), int(self.sfmt.max)
        span = 1 << int(self.sfmt.bits)
        V = st["V"]
        for r in range(int(lens.max())):
            keep = lens > r
            if not bool(keep.all()):
                starts, lens = starts[keep], lens[keep]
            idx = starts + r
            g = gid[idx]
            v = V[g] + w[idx]
            if wrap:
                v = torch.remainder(v - smin, span) + smin
            else:
                v = torch.clamp(v, smin, smax)
            s = v >= th if ge else v > th
            v = torch.where(s, torch.zeros_like(v), v) if l.return_to_zero else torch.where(s, v - th, v)
            v = torch.clamp(v, min=low)
            V[g] = v
            spk[idx] = s
        sg, sk = gid[spk], k[spk]
        if not sg.numel():
            return _Events.empty()
        b = torch.div(sg, N, rounding_mode="floor")
        order = _lexsort(b, sk, sg)
        sg, sk, b = sg[order], sk[order], b[order]
        nid = sg - b * N
        c, rem = torch.div(nid, H * Wd, rounding_mode="floor"), torch.remainder(nid, H * Wd)
        return _Events(b, c, torch.div(rem, Wd, rounding_mode="floor"), torch.remainder(rem, Wd), torch.div(sk, M, rounding_mode="floor"),
                       torch.arange(sg.numel()))
