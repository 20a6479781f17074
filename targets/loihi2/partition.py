"""Place a Loihi 2 network on neuro cores and check every per-core and per-chip limit.

Placement: each layer (one LIF process) gets its own cores; its neurons are cut into equal,
contiguous chunks, the largest chunk size for which every core respects the per-core limits of
the hw_config:

* neurons per core;
* synapse memory: the synapses of the core's neurons (a Dense stores its whole matrix; a Conv is
  counted expanded, one synapse per connected input, since Loihi 2's shared-kernel encoding is not
  public), each costing ``num_weight_bits + synapse_index_bits`` bits (plus ``synapse_delay_bits``
  on a DelayDense);
* input axons: distinct source neurons (or input channels) that reach any neuron on the core.

Output axons are counted after placement: each neuron needs one per destination core it reaches.
Cores are summed over layers; ``chips = ceil(cores / cores_per_chip)``. More than one chip is
counted, not rejected, unless ``max_chips`` (``--max-chips``) is set. Loihi 2's per-core limits
are Loihi 1 proxies (confidence "estimate"), and every resource line and violation says so.
"""

from __future__ import annotations

import math

import numpy as np

from nirdeploy.backend.report import FitReport, Resource
from nirdeploy.backend.rules import LimitChecker
from nirdeploy.backend.rules import violation as _v

from .config import INPUT, Loihi2Network, Synapse

__all__ = ["fit_rules", "fanin_indices", "partition"]

MAX_INDEX_ELEMENTS = 50_000_000


def fanin_indices(syn: Synapse, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray | None:
    """(n_dst, k) flat source indices each destination neuron of a conv synapse reads (-1 where the
    kernel covers padding or a zero weight column); None when too large to list."""
    C, H, W = src_shape
    Co, Ho, Wo = dst_shape
    w = syn.weight
    cin_g, kh, kw = w.shape[1:]
    g = syn.groups
    if Co * Ho * Wo * cin_g * kh * kw > MAX_INDEX_ELEMENTS:
        return None
    co = np.arange(Co)[:, None, None, None, None, None]
    oy = np.arange(Ho)[None, :, None, None, None, None]
    ox = np.arange(Wo)[None, None, :, None, None, None]
    ci = np.arange(cin_g)[None, None, None, :, None, None] + (co // (Co // g)) * cin_g
    ky = np.arange(kh)[None, None, None, None, :, None]
    kx = np.arange(kw)[None, None, None, None, None, :]
    y = oy * syn.stride[0] - syn.padding[0] + ky * syn.dilation[0]
    x = ox * syn.stride[1] - syn.padding[1] + kx * syn.dilation[1]
    valid = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    wnz = (w != 0)[:, None, None, :, :, :]
    idx = np.where(valid & wnz, (ci * H + y) * W + x, -1)
    return np.broadcast_to(idx, (Co, Ho, Wo, cin_g, kh, kw)).reshape(Co * Ho * Wo, -1)


class _Conn:
    """Connectivity of one synapse: per destination neuron its synapse count, and which sources
    reach a chunk of destinations."""

    def __init__(self, syn: Synapse, net: Loihi2Network, dst_shape, delay_bits: int = 0):
        self.syn = syn
        self.n_src = int(np.prod(net.src_shape(syn.src)))
        self.bits = syn.num_weight_bits + (delay_bits if syn.delay is not None else 0)
        if syn.kind == "dense":
            self.nz = syn.effective() != 0  # (n_dst, n_src)
            self.count = np.full(self.nz.shape[0], self.nz.shape[1])  # a Dense stores every entry
            self.idx = None
        else:
            self.idx = fanin_indices(syn, net.src_shape(syn.src), dst_shape)
            if self.idx is None:
                k = int(np.prod(syn.weight.shape[1:]))
                self.count = np.full(int(np.prod(dst_shape)), k)
            else:
                self.count = (self.idx >= 0).sum(axis=1)

    def sources(self, lo: int, hi: int) -> np.ndarray:
        """Boolean (n_src,): sources reaching destination neurons lo..hi-1."""
        if self.syn.kind == "dense":
            return self.nz[lo:hi].any(axis=0)
        m = np.zeros(self.n_src, bool)
        if self.idx is None:
            m[:] = True
            return m
        ix = self.idx[lo:hi].ravel()
        m[ix[ix >= 0]] = True
        return m


def _place(L, conns: list, k: int, sbits: int, axin: int, idx_bits: int) -> dict:
    """The largest chunk size <= k whose cores respect the synapse-memory and input-axon limits."""
    per_neuron_bits = sum((c.count * (c.bits + idx_bits) for c in conns), np.zeros(L.n, np.int64))
    csum = np.concatenate([[0], np.cumsum(per_neuron_bits)])

    def usage(k: int):
        cores = []
        for lo in range(0, L.n, k):
            hi = min(L.n, lo + k)
            ax = sum(int(c.sources(lo, hi).sum()) for c in conns)
            cores.append({"neurons": hi - lo, "synapse_bits": int(csum[hi] - csum[lo]), "input_axons": ax, "range": [lo, hi]})
        return cores

    while True:
        cores = usage(k)
        worst = max(max(c["synapse_bits"] / sbits, c["input_axons"] / axin) for c in cores)
        if worst <= 1.0 or k == 1:
            return {"layer": L.name, "neurons_per_core": k, "cores": cores}
        k = max(1, min(k - 1, int(k / worst)))


def partition(net: Loihi2Network, hw) -> dict:
    """Chunks per layer and per-core usage (see the module docstring)."""
    lim = hw.limits
    npc, sbits, axin = int(lim["neurons_per_core"]), int(lim["synapse_bits_per_core"]), int(lim["input_axons_per_core"])
    axout = int(lim["output_axons_per_core"])
    idx_bits = int(lim["synapse_index_bits"])
    delay_bits = int(lim["synapse_delay_bits"])
    conns = [[_Conn(s, net, L.shape, delay_bits) for s in L.synapses] for L in net.layers]
    caps = [min(npc, L.n) for L in net.layers]  # chunk size upper bounds (lowered for output axons)
    for _ in range(12):
        layers = [_place(L, cs, k, sbits, axin, idx_bits) for L, cs, k in zip(net.layers, conns, caps)]
        # output axons: per source neuron, the destination cores it reaches
        out_ax = [np.zeros(L.n, np.int64) for L in net.layers]
        for li in range(len(net.layers)):
            for c in conns[li]:
                if c.syn.src == INPUT:
                    continue
                for core in layers[li]["cores"]:
                    out_ax[c.syn.src] += c.sources(*core["range"])
        over = False
        for li, info in enumerate(layers):
            worst = 0
            for core in info["cores"]:
                lo, hi = core["range"]
                core["output_axons"] = int(out_ax[li][lo:hi].sum())
                worst = max(worst, core["output_axons"])
            if worst > axout and info["neurons_per_core"] > 1:
                caps[li] = max(1, min(info["neurons_per_core"] - 1, int(info["neurons_per_core"] * axout / worst)))
                over = True
        if not over:
            break
    return {"layers": layers, "cores": sum(len(i["cores"]) for i in layers)}


def fit_rules(net: Loihi2Network, hw, report: FitReport, opts, viol: list) -> None:
    """Partition ``net`` and record every resource against the hw_config (all violations)."""
    lim = hw.limits
    chk = LimitChecker(hw, report, viol)
    part = partition(net, hw)
    allc = [c for i in part["layers"] for c in i["cores"]]
    worst = {k: max((c[k] for c in allc), default=0) for k in ("neurons", "synapse_bits", "input_axons", "output_axons")}
    chk.check("neurons_per_core", worst["neurons"], what="neurons per core (max)", unit="neurons")
    chk.check("synapse_bits_per_core", worst["synapse_bits"], what="synapse memory per core (max)", unit="bits",
              hint="a single neuron's fan-in exceeds one core's synapse memory: reduce the fan-in or the weight bits")
    chk.check("input_axons_per_core", worst["input_axons"], what="input axons per core (max)", unit="axons",
              hint="a single neuron reads more sources than one core's input axons: reduce the fan-in")
    chk.check("output_axons_per_core", worst["output_axons"], what="output axons per core (max)", unit="axons",
              hint="neurons reach too many destination cores: reduce the fan-out or the size of the next layer")
    cores = part["cores"]
    per_chip = int(lim["cores_per_chip"])
    chips = max(1, math.ceil(cores / per_chip))
    max_chips = opts.extra.get("max_chips")
    src = hw.limit_source("cores_per_chip")
    report.resources.append(Resource("cores (all chips)", cores, None if max_chips is None else per_chip * int(max_chips), "cores",
                                     src.confidence, src.source))
    report.resources.append(Resource("chips", chips, None if max_chips is None else int(max_chips), "chips", src.confidence,
                                     f"{per_chip} cores per chip"))
    if max_chips is not None and chips > int(max_chips):
        viol.append(_v("max_chips", f"the network needs {chips} Loihi 2 chip(s) ({cores} cores at {per_chip} per chip); --max-chips is {max_chips}",
                       limit=int(max_chips), actual=chips, hint="shrink the network or allow more chips"))
    elif chips > 1:
        viol.append(_v("multi_chip", f"the network needs {chips} Loihi 2 chips ({cores} cores at {per_chip} per chip); counted, not rejected "
                       "(set --max-chips to enforce a board size)", limit=per_chip, actual=cores, severity="warning"))
    n_total = sum(L.n for L in net.layers)
    chk.check("neurons_per_chip", math.ceil(n_total / chips), what="neurons per chip", unit="neurons")
    syn_total = int(sum(sum(int(c["synapse_bits"]) for c in i["cores"]) for i in part["layers"]))
    report.details["synapse_bits_total"] = syn_total
    # u wraps and int32 activations (Lava's CPU model) from the static bound of each layer's input
    act = 1 << int(lim["activation_shift"])
    M = 1 << (hw.fmt("u").bits - 1)
    for L in net.layers:
        bound = 0.0
        for s in L.synapses:
            w = np.abs(s.effective()).astype(np.float64)
            row = w.sum(axis=1) if s.kind == "dense" else np.full(1, w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
            bound += float(row.max(initial=0)) * (2.0**s.weight_exp if s.kind == "dense" else 1.0)
        if bound * act > M:
            viol.append(_v("u_may_wrap", f"if every input of a neuron spikes in one step its synaptic input a << 6 reaches {int(bound * act)}, beyond "
                           f"u's 24-bit range (2**23 = {M}): u would wrap around", L.name, limit=M, actual=int(bound * act), severity="info",
                           hint="this is the worst case; --sample X.npy measures how the chip follows the reference on real input; lower the weights if it is reachable"))
    rows = []
    for info in part["layers"]:
        cs = info["cores"]
        rows.append(f"{info['layer']}: {len(cs)} core(s) x <= {info['neurons_per_core']} neurons, max synapse bits "
                    f"{max(c['synapse_bits'] for c in cs)}, max input axons {max(c['input_axons'] for c in cs)}, "
                    f"max output axons {max(c['output_axons'] for c in cs)}")
    report.notes.append(f"placement: {cores} core(s) on {chips} chip(s); " + "; ".join(rows))
    report.details["partition"] = {"cores": cores, "chips": chips, "cores_per_chip": per_chip,
                                   "layers": [{"layer": i["layer"], "neurons_per_core": i["neurons_per_core"], "cores": i["cores"]}
                                              for i in part["layers"]]}
