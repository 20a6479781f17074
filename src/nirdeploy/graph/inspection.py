"""`nirdeploy inspect`: what a graph is, as data."""

from __future__ import annotations

import numpy as np

from .ir import NODE_TYPES, Graph, non_nir_notice

__all__ = ["inspect_graph", "render_inspection"]


def _param_summary(v) -> object:
    if isinstance(v, np.ndarray):
        if v.size == 0:
            return {"shape": list(v.shape)}
        if v.dtype.kind in "biuf":
            lo, hi = float(np.min(v)), float(np.max(v))
            d = {"shape": list(v.shape), "min": lo, "max": hi}
            if v.size > 1 and lo != hi:
                with np.errstate(over="ignore", invalid="ignore"):
                    mean = float(np.mean(v))
                if not np.isfinite(mean):  # the sum of finite extremes (1e308) overflows
                    mean = float(np.sum(v / v.size))
                d["mean"] = mean
            return d
        return {"shape": list(v.shape), "dtype": str(v.dtype)}
    if isinstance(v, (tuple, list)):
        return list(v)
    return v


# the normalization pipeline without identity removal: inspect lists every node of the file
_LISTING_PASSES = ("infer_shapes", "inline_subgraphs", "broadcast_params", "infer_shapes", "topo_sort", "mark_recurrent")


def inspect_graph(graph: Graph, dt: float | None = None, scheme: str = "euler") -> dict:
    """Every node of the file (subgraphs inlined with dotted names; nodes that pass their input
    through unchanged are listed with ``"identity": True`` - the simulators skip them), with
    ``dt`` also every neuron's discrete decay factors, input gains and effective time constants
    (``"discretization"``). ``"subgraphs"`` names the inlined NIRGraph containers, so that the
    listed nodes plus the containers add up to ``node_counts``. Values may be non-finite (a decay
    of 1e300 s has an infinite effective time constant); ``nirdeploy inspect --json`` writes those
    as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (:func:`nirdeploy.backend.report.json_safe`)."""
    from .discretize import discretize, infer_dt
    from .passes import PASSES, check, is_identity, recurrent_loops

    check(graph)  # the same validation as every other command
    flat = graph
    for name in _LISTING_PASSES:
        flat = PASSES[name](flat)
    nodes = []
    for name, n in flat.nodes.items():
        nodes.append(
            {
                "name": name,
                "type": n.type,
                "identity": bool(is_identity(n)),
                "input_shape": list(n.input_shape) if n.input_shape is not None else None,
                "output_shape": list(n.output_shape) if n.output_shape is not None else None,
                "neurons": n.n_neurons if n.type in NODE_TYPES and NODE_TYPES[n.type].category == "neuron" else 0,
                "params": {k: _param_summary(v) for k, v in n.params.items() if k not in ("shape",)},
            }
        )
    subgraphs = [full for full, n in graph.iter_nodes_recursive() if n.type == "NIRGraph"]
    from .provenance import recorded

    cands = infer_dt(graph)
    rec = recorded(graph)
    disc = {name: d.to_dict() for name, d in discretize(flat, dt, scheme).items()} if dt is not None else None
    counts = graph.summary_counts()
    return {
        "nir_version": graph.nir_version,
        "node_counts": counts,
        "n_neurons": int(sum(x["neurons"] for x in nodes)),
        "inputs": {n.name: list(n.output_shape or ()) for n in flat.inputs},
        "outputs": {n.name: list(n.input_shape or ()) for n in flat.outputs},
        "nodes": nodes,
        "edges": [list(e) for e in flat.edges],
        "subgraphs": subgraphs,
        "recurrent_loops": recurrent_loops(flat),
        "delayed_edges": sorted(list(e) for e in flat.delayed_edges),
        "dt_candidates": [c.to_dict() for c in cands],
        "recorded": {"dt": rec.dt, "reset": rec.reset, "source": rec.source, "spike_rule": rec.spike_rule,
                     "problems": list(rec.problems)},
        "discretization": disc,
        "notices": [x for x in (non_nir_notice(graph),) if x],
    }


def render_inspection(info: dict) -> str:
    from ..render import render_rows

    n_id = sum(1 for n in info["nodes"] if n.get("identity"))
    out = [f"notice: {n}" for n in info.get("notices") or []]
    out += [
        f"NIR version {info['nir_version']}; {len(info['nodes'])} nodes after inlining"
        + (f" ({len(info['subgraphs'])} subgraph container(s) inlined: {', '.join(info['subgraphs'])})" if info.get("subgraphs") else "")
        + (f"; {n_id} identity node(s) marked '=', skipped by the simulators" if n_id else "")
        + f"; {info['n_neurons']} neurons",
        "inputs: " + ", ".join(f"{k} {v}" for k, v in info["inputs"].items())
        + "; outputs: " + ", ".join(f"{k} {v}" for k, v in info["outputs"].items()),
    ]
    rows = []
    for n in info["nodes"]:
        ps = []
        for k, v in n["params"].items():
            if isinstance(v, dict) and "min" in v:
                ps.append(f"{k}={v['min']:.3g}" if v["min"] == v["max"] else f"{k}=[{v['min']:.3g}..{v['max']:.3g}]")
            elif isinstance(v, dict):
                ps.append(f"{k}{v.get('shape')}")
            else:
                ps.append(f"{k}={v}")
        rows.append([n["name"], n["type"] + (" (=)" if n.get("identity") else ""), n["input_shape"], n["output_shape"], n["neurons"] or "", " ".join(ps)])
    out.append(render_rows("Nodes", ["name", "type", "in", "out", "neurons", "parameters"], rows))
    if info["recurrent_loops"]:
        out.append("recurrent loops: " + "; ".join(" -> ".join(l) for l in info["recurrent_loops"]))
        out.append("one-step delayed edges: " + ", ".join(f"{a} -> {b}" for a, b in info["delayed_edges"]))
    else:
        out.append("recurrent loops: none")
    rec = info.get("recorded") or {}
    if rec.get("dt") is not None or rec.get("reset") is not None:
        src = f" (exported by nirdeploy from {rec['source']})" if rec.get("source") else " (exported by nirdeploy)"
        out.append(
            f"training settings recorded{src}: dt = {rec['dt']:g} s, reset = {rec.get('reset') or '-'}, "
            f"spike rule = {rec.get('spike_rule') or '-'}" if rec.get("dt") is not None else
            f"training settings recorded{src}: reset = {rec.get('reset')}"
        )
    for p in rec.get("problems") or []:
        out.append(f"warning: {p}")
    if info["dt_candidates"]:
        for c in info["dt_candidates"]:
            out.append(f"dt candidate: {c['dt']:g} s ({c['convention']}): {c['evidence']}")
    else:
        out.append("dt candidates: none can be inferred from the parameters; pass --dt")
    if info.get("discretization"):
        rows = []
        for name, d in info["discretization"].items():
            rows.append([name, d["type"]] + [_range(d.get(k)) for k in ("alpha_v", "gain_v", "bias_v", "alpha_i", "gain_i", "tau_effective")])
        d0 = next(iter(info["discretization"].values()))
        out.append(render_rows(f"Discretization ({d0['scheme']}, dt = {d0['dt']:g} s)",
                               ["node", "type", "alpha_v", "gain_v", "bias_v", "alpha_i", "gain_i", "tau_eff (s)"], rows))
        for d in info["discretization"].values():  # an oscillating or diverging update is said in the text, not only in --json
            out += [f"warning: {n}" for n in d.get("notes") or []]
    return "\n".join(out)


def _range(v) -> str:
    if v is None:
        return "-"
    a = np.asarray(v, dtype=np.float64)
    a = a[~np.isnan(a)]  # no time constant (a decay factor <= 0): n/a, the warning below the table says why
    if a.size == 0:
        return "n/a"
    return f"{a.min():.4g}" if a.min() == a.max() else f"{a.min():.4g}..{a.max():.4g}"
