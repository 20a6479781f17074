"""Xylo fit rules: every limit of the variant's hw_config checked on an integer configuration.

The rules are re-derived from SynSense's sources; each value and its citation live in
``hw_configs/xylo-<variant>.toml`` and reach the report through
:class:`~nirdeploy.backend.rules.LimitChecker`, which records every resource with the limit's
confidence (documented / source / unconfirmed / estimate) and its source. What each rule counts:

* **input channels**: the number of SNN input channels (``input_channels``);
* **input window**: input weights are a dense ``channels x window`` RAM (Audio 2: all 1000 hidden
  neurons; Audio 3 / IMU: the first 128), so an input channel may reach every hidden neuron of
  the window: the highest hidden id with an input weight must lie inside it. Input projections
  take no fan-out entry;
* **fan-out**: the recurrent targets of one hidden neuron (``max_fanout``), counted as distinct
  target neurons: a target reached through synapse 1 and synapse 2 is one fan-out entry (the
  recurrent RAMs hold both weights side by side); output weights are a dense RAM and are not
  counted;
* **recurrent weight memory**: the total of those entries over all hidden neurons
  (``recurrent_weight_words``);
* **output window**: output weights may only come from the last ``output_window`` hidden neurons;
* **number formats**: thresholds in [1, int16 max], int8 weights, shifts, dashes and biases in
  their register formats.

Every violation names the node (the NIR layer, with the neuron index inside it) or the input
channel it is about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nirdeploy.backend.hwconfig import HWConfig
from nirdeploy.backend.report import FitReport, Resource
from nirdeploy.backend.rules import LimitChecker, violation

from .config import XyloConfig

__all__ = ["LayerMap", "fit_rules", "size_rules", "recurrent_fanout"]


@dataclass
class LayerMap:
    """Which NIR layer owns which chip neurons: ``hidden`` is ``[(name, node_type, first_id, n)]``
    in hidden-id order, ``output`` is ``(name, node_type)``, ``input`` the Input node's name."""

    hidden: list[tuple[str, str, int, int]]
    output: tuple[str, str]
    input: str = "input"

    def hidden_neuron(self, hid: int) -> tuple[str, str, int]:
        """(layer name, node type, index inside the layer) of hidden id ``hid``."""
        for name, typ, off, n in self.hidden:
            if off <= hid < off + n:
                return name, typ, hid - off
        return "", "", hid

    def layers_in(self, ids) -> list[str]:
        """Names of the hidden layers that own any of ``ids`` (in layer order)."""
        ids = np.asarray(ids).ravel()
        return [name for name, _, off, n in self.hidden if np.any((ids >= off) & (ids < off + n))]


def recurrent_fanout(cfg: XyloConfig) -> np.ndarray:
    """Distinct recurrent targets per hidden neuron, ``(n_hidden,)`` (synapse 1 and 2 together)."""
    if cfg.n_hidden == 0:
        return np.zeros(0, dtype=np.int64)
    return (cfg.weights_rec != 0).any(axis=2).sum(axis=1).astype(np.int64)


def _neuron_list(idx, limit: int = 5) -> str:
    idx = [int(i) for i in np.asarray(idx).ravel()]
    s = ", ".join(map(str, idx[:limit]))
    return s + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")


@dataclass
class _Named:
    name: str
    type: str


def _window_rule(chk: LimitChecker, report: FitReport, key: str, used: int, spans_all: bool, *, what: str, node, hint: str) -> None:
    """A window that spans the whole hidden population is recorded but not checked: exceeding it
    means more hidden neurons than the chip has, which the hidden-neuron rule reports."""
    if spans_all:
        src = chk.hw.limit_source(key)
        report.resources.append(Resource(what, used, src.value, "neurons", src.confidence, src.source))
    else:
        chk.check(key, used, what=what, unit="neurons", node=node, hint=hint)


def _namer(layers: LayerMap):
    """names -> a node (or a list of layers) with its type when they share one"""
    types = {n: t for n, t, *_ in layers.hidden}
    types[layers.output[0]] = layers.output[1]
    types[layers.input] = "Input"

    def named(names: str) -> _Named:
        parts = [p for p in names.split(", ") if p]
        kinds = {types.get(p, "") for p in parts}
        return _Named(names, kinds.pop() if len(kinds) == 1 else "")

    return named


def size_rules(n_in: int, n_hidden: int, n_out: int | None, hw: HWConfig, report: FitReport, layers: LayerMap,
               chk: LimitChecker | None = None) -> None:
    """The input-channel, hidden-neuron and output-neuron limits (``n_out`` None: no output layer
    was identified, the rule is not evaluated). They need only the sizes and roles of the layers,
    so they also run when no configuration can be built."""
    chk = chk or LimitChecker(hw, report)
    lim, named = hw.limits, _namer(layers)
    chk.check("input_channels", n_in, what="input channels", unit="channels", node=named(layers.input),
              hint=f"reduce the input to {lim['input_channels']} channels (e.g. merge or select channels before the first layer)")
    chk.check("hidden_neurons", n_hidden, what="hidden neurons", unit="neurons", node=named(", ".join(n for n, *_ in layers.hidden)),
              hint=f"shrink the hidden layers ({', '.join(f'{n} {k}' for n, _, _, k in layers.hidden)}) to {lim['hidden_neurons']} neurons in total")
    if n_out is not None:
        chk.check("output_neurons", n_out, what="output neurons", unit="neurons", node=named(layers.output[0]),
                  hint=f"use at most {lim['output_neurons']} output neurons (e.g. fewer classes per chip)")


def fit_rules(cfg: XyloConfig, hw: HWConfig, report: FitReport, layers: LayerMap) -> None:
    """Check ``cfg`` against every limit of ``hw``; resources and violations go into ``report``."""
    chk = LimitChecker(hw, report)
    lim = hw.limits
    out_name, out_type = layers.output
    hidden_names = ", ".join(n for n, *_ in layers.hidden)
    named = _namer(layers)
    size_rules(cfg.n_in, cfg.n_hidden, cfg.n_out, hw, report, layers, chk)
    two_syn = [n for n, _, off, k in layers.hidden if cfg.n_syn > 1 and np.any(cfg.weights_in[:, off:off + k, 1:]) | np.any(cfg.weights_rec[:, off:off + k, 1:])]
    chk.check("synapses_per_hidden", cfg.n_syn, what="synapses per hidden neuron", unit="synapses", node=named(", ".join(two_syn) or hidden_names),
              hint="use one synaptic time constant per neuron")

    # -- input window: inputs reach a dense block of the first `input_window` hidden neurons --
    nz_in = (cfg.weights_in != 0).any(axis=2) if cfg.weights_in.size else np.zeros((cfg.n_in, cfg.n_hidden), bool)
    reached = np.nonzero(nz_in.any(axis=0))[0]
    ien = int(reached.max() + 1) if reached.size else 0
    win = int(lim["input_window"])
    outside = reached[reached >= win]
    chan = np.nonzero(nz_in[:, win:].any(axis=1))[0] if outside.size else np.zeros(0, int)
    spans_all = win >= int(lim["hidden_neurons"])  # Audio 2: the hidden-neuron rule already covers it
    _window_rule(chk, report, "input_window", ien, spans_all, what="input window (hidden ids reached by inputs)",
                 node=named(", ".join(layers.layers_in(outside)) or layers.input),
                 hint=(f"input weights may only reach the first {win} hidden neurons (input channel(s) {_neuron_list(chan)} reach further): "
                       f"make the input-fed layers at most {win} neurons wide together"))
    per_channel = nz_in.sum(axis=1) if nz_in.size else np.zeros(cfg.n_in, int)
    report.details.setdefault("input_projection", {})["per_channel"] = per_channel.tolist()

    # -- recurrent fan-out per hidden neuron (distinct targets; output weights are dense) ------
    fan = recurrent_fanout(cfg)
    fmax = int(fan.max(initial=0))
    src = hw.limit_source("max_fanout")
    # (the resource keeps its name for budget files; it counts recurrent targets, see the module docstring)
    report.resources.append(Resource("max fan-out per neuron", fmax, src.value, "targets", src.confidence, src.source))
    if src.value is not None and fmax > src.value:
        for name, typ, off, n in layers.hidden:
            f = fan[off:off + n]
            bad = np.nonzero(f > src.value)[0]
            if bad.size:
                worst = int(bad[np.argmax(f[bad])])
                report.violations.append(violation(
                    "max_fanout", f"{bad.size} neuron(s) drive more than {src.value} recurrent targets on {chk.chip}: neuron {worst} drives "
                    f"{int(f[worst])} (neurons {_neuron_list(bad)})", name, limit=src.value, actual=int(f[worst]), node_type=typ,
                    hint=f"prune the hidden->hidden weights leaving this layer to at most {src.value} targets per neuron (synapse 1 and 2 to the same target count once)"))
    # -- recurrent weight memory: one entry per (source, target) pair -------------------------
    if "recurrent_weight_words" in lim:
        rec_layers = [n for n, _, off, k in layers.hidden if fan[off:off + k].any()]
        chk.check("recurrent_weight_words", int(fan.sum()), what="recurrent weight entries", unit="weights",
                  rule="recurrent_weight_memory", node=named(", ".join(rec_layers) or hidden_names),
                  hint="prune hidden->hidden weights (one entry per source-target pair, both synapses together)")
    # -- output window: outputs read the last `output_window` hidden neurons --------------------
    rows = np.nonzero((cfg.weights_out != 0).any(axis=1))[0]
    oen = int(cfg.n_hidden - rows.min()) if rows.size else 0
    wout = int(lim["output_window"])
    early = rows[rows < cfg.n_hidden - wout]
    _window_rule(chk, report, "output_window", oen, wout >= int(lim["hidden_neurons"]),
                 what="output window (hidden ids feeding outputs)",
                 node=named(", ".join(layers.layers_in(early)) or out_name),
                 hint=f"output weights may only come from the last {wout} hidden neurons: make the layers that feed {out_name!r} at most {wout} neurons wide together")

    # -- number formats -----------------------------------------------------------------------
    def where(arr_name: str, bad_idx) -> tuple[str, str, str]:
        bad_idx = np.asarray(bad_idx).ravel()
        if arr_name.endswith("_out") or arr_name == "weights_out":
            return out_name, out_type, f"neuron(s) {_neuron_list(bad_idx)}"
        first = int(bad_idx[0]) if bad_idx.size else 0
        name, typ, i = layers.hidden_neuron(first)
        return name, typ, f"neuron {i}" + (f" and {bad_idx.size - 1} more" if bad_idx.size > 1 else "")

    tfmt = hw.fmt("threshold")
    for arr, what in ((cfg.threshold, "threshold"), (cfg.threshold_out, "threshold_out")):
        bad = np.nonzero((arr < 1) | (arr > tfmt.max))[0]
        if bad.size:
            node, typ, which = where(what, bad)
            report.violations.append(violation("threshold_range", f"{bad.size} {what} value(s) outside [1, {tfmt.max}] ({which})", node,
                                               limit=[1, tfmt.max], actual=int(arr[bad].min()), node_type=typ))
    wfmt = hw.fmt("weight")
    for arr, what in ((cfg.weights_in, "weights_in"), (cfg.weights_rec, "weights_rec"), (cfg.weights_out, "weights_out")):
        bad = ~wfmt.in_range(arr)
        if bad.any():
            post = np.nonzero(bad.any(axis=0) if arr.ndim == 2 else bad.any(axis=(0, 2)))[0]
            node, typ, which = where(what, post)
            report.violations.append(violation("weight_range", f"{int(bad.sum())} {what} value(s) outside {wfmt} (into {which})", node,
                                               limit=[wfmt.min, wfmt.max], actual=int(np.abs(arr).max()), node_type=typ))
    sfmt = hw.fmt("weight_shift")
    shift_nodes = {"in": layers.input, "rec": hidden_names, "out": out_name}
    for v, what in ((cfg.weight_shift_in, "in"), (cfg.weight_shift_rec, "rec"), (cfg.weight_shift_out, "out")):
        if not sfmt.in_range(v):
            report.violations.append(violation("weight_shift_range", f"weight_shift_{what} {v} outside {sfmt.min}..{sfmt.max}", shift_nodes[what],
                                               limit=sfmt.max, actual=v))
        elif v > lim.get("max_recommended_weight_shift", sfmt.max):
            report.violations.append(violation("weight_shift_wraps", f"weight_shift_{what} {v}: shifted 8-bit weights can wrap in 16 bits",
                                               shift_nodes[what], limit=lim["max_recommended_weight_shift"], actual=v, severity="warning"))
    dfmt = hw.fmt("dash")
    dashes = [(cfg.dash_mem, "dash_mem"), (cfg.dash_syn, "dash_syn"), (cfg.dash_mem_out, "dash_mem_out"), (cfg.dash_syn_out, "dash_syn_out")]
    if cfg.n_syn > 1:
        dashes.append((cfg.dash_syn_2, "dash_syn_2"))
    for arr, what in dashes:
        bad = np.nonzero(~dfmt.in_range(arr))[0]
        if bad.size:
            node, typ, which = where(what, bad)
            report.violations.append(violation("dash_range", f"{bad.size} {what} value(s) outside {dfmt.min}..{dfmt.max} ({which})", node,
                                               limit=dfmt.max, actual=int(arr[bad].max()), node_type=typ))
    bfmt = hw.fmt("bias")
    for arr, what in ((cfg.bias, "bias"), (cfg.bias_out, "bias_out")):
        bad = np.nonzero(~bfmt.in_range(arr))[0]
        if bad.size:
            node, typ, which = where(what, bad)
            report.violations.append(violation("bias_range", f"{bad.size} {what} value(s) outside {bfmt} ({which})", node,
                                               limit=[bfmt.min, bfmt.max], actual=int(np.abs(arr).max()), node_type=typ))
