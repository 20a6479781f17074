"""Multi-way comparison (``nirdeploy compare``): one table of several runs of the same graph on
the same input (the reference simulator, library models, compiled chip folders), each against
the reference, plus a plain explanation of every known semantic difference detected.

This module is numpy-only (core): it receives finished outputs; running the libraries and the
targets is the API's job. Agreement figures come from
:func:`nirdeploy.evaluation.compare.compare_outputs` (counts, correlation, element-wise
agreement, latency shift); this module adds the spike agreement (shared spike events over all
events), the first divergent step, accuracy against labels, and the explanations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compare import accuracy, compare_outputs, readout_agreement

__all__ = ["AGREEMENT_FLAG", "Column", "compare_columns", "explain", "render_comparison", "spike_agreement"]

#: a column whose spike agreement with the reference is below this is flagged
AGREEMENT_FLAG = 0.99


@dataclass
class Column:
    """One run: ``output`` (batch, time, *output_shape) or ``error`` (why it could not run).
    ``kind``: "reference" | "torch" | "library" | "native" | "chip"; ``library`` for library
    columns; ``latency_steps`` for chip folders; ``dt`` (s) the run used."""

    name: str
    kind: str
    output: np.ndarray | None = None
    error: str | None = None
    library: str | None = None
    latency_steps: int = 0
    dt: float | None = None
    info: dict = field(default_factory=dict)


def spike_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """sum(min(a, b)) / sum(max(a, b)) over all entries (1.0 when both are silent)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    hi = float(np.maximum(a, b).sum())
    return 1.0 if hi == 0 else float(np.minimum(a, b).sum()) / hi


#: voltages closer than this (relative to each other and to the reference's largest magnitude)
#: are the same value: float32 libraries round differently from the float64 reference
VMEM_RTOL = 1e-5


def _first_divergent(a: np.ndarray, b: np.ndarray, readout: str = "spikes") -> int | None:
    """First step where ``a`` and ``b`` (batch, time, ...) differ: spikes exactly, voltages
    beyond rounding (:data:`VMEM_RTOL`)."""
    if readout == "vmem":
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        diff = ~np.isclose(a, b, rtol=VMEM_RTOL, atol=VMEM_RTOL * scale)
    else:
        diff = a != b
    d = np.any(diff.reshape(a.shape[0], a.shape[1], -1), axis=(0, 2))
    idx = np.nonzero(d)[0]
    return int(idx[0]) if idx.size else None


def compare_columns(columns: list[Column], labels: np.ndarray | None = None, reference: str = "reference",
                    flag_below: float = AGREEMENT_FLAG, readout: str = "spikes") -> list[dict]:
    """One row per column: spikes per output, total, agreement with the reference column
    (spike agreement, element-wise agreement, rate correlation, first divergent step; chip
    columns shifted back by their latency), accuracy and silent samples when ``labels`` (batch,)
    are given (:func:`nirdeploy.evaluation.compare.accuracy` with ``readout``: a silent sample
    counts as wrong; a chip column is read from its latency on), and
    ``flag`` (True when the run failed or its spike agreement < ``flag_below``, a fraction).

    ``readout="vmem"`` (the graph's output is a membrane voltage, LI/CubaLI): the outputs are
    values, not spikes, so a row has ``counts`` = each output's maximum, averaged over samples,
    ``decision_agreement`` (argmax of each output's maximum; :func:`readout_agreement`) in place
    of the spike agreement, ``rate_correlation`` = the correlation of those maxima, and no
    ``max_per_step``; the flag is on the decision agreement."""
    ref = next((c for c in columns if c.name == reference and c.output is not None), None)
    rows = []
    for c in columns:
        row: dict = {"name": c.name, "kind": c.kind, "error": c.error, "latency_steps": c.latency_steps, "dt": c.dt}
        if c.output is None:
            row["flag"] = True
            rows.append(row)
            continue
        y = np.asarray(c.output, dtype=np.float64)
        row["readout"] = readout
        if readout == "vmem":
            counts = y.reshape(y.shape[0], y.shape[1], -1).max(axis=1).mean(axis=0) if y.size else np.zeros(0)
        else:
            counts = y.reshape(y.shape[0], y.shape[1], -1).sum(axis=(0, 1))
            row["max_per_step"] = float(y.max()) if y.size else 0.0
        row["counts"] = [float(v) for v in counts]
        row["total"] = float(counts.sum())
        if labels is not None:
            # the one readout definition (a silent sample is wrong); a chip is read from its latency
            # on, as everywhere else
            acc = accuracy(y, np.asarray(labels).ravel(), readout, int(c.latency_steps), y.shape[1])
            row["accuracy"], row["silent_samples"] = acc["accuracy"], acc["silent_samples"]
        if ref is not None and c is not ref:
            r = np.asarray(ref.output, dtype=np.float64)
            if r.shape != y.shape:
                row["error"] = f"output shape {y.shape} differs from the reference's {r.shape}"
                row["flag"] = True
                rows.append(row)
                continue
            L = int(c.latency_steps)
            ys, rs = y[:, L:], r[:, : y.shape[1] - L]
            row["first_divergent_step"] = _first_divergent(ys, rs, readout)
            if readout == "vmem":
                ra = readout_agreement(y, r, L, "vmem")
                row["decision_agreement"] = ra["decision_agreement"]
                row["rate_correlation"] = ra["value_correlation"]
                row["flag"] = ra["decision_agreement"] is None or ra["decision_agreement"] < flag_below
            else:
                cmp = compare_outputs(y, r, L)
                row["spike_agreement"] = spike_agreement(ys, rs)
                row["elementwise_agreement"] = cmp["elementwise_agreement"]
                row["rate_correlation"] = cmp["count_correlation"]
                row["flag"] = row["spike_agreement"] < flag_below
        else:
            row["flag"] = False
        rows.append(row)
    return rows


def explain(columns: list[Column], rows: list[dict], graph_facts: dict) -> list[str]:
    """Plain explanations of the known semantic differences found. ``graph_facts``: ``dt`` (s,
    the run's), ``recorded_dt``, ``recorded_reset``, ``reset``, ``source``, ``r_convention``
    ("snntorch" when r == tau/dt, "unit" when r == 1), ``r_over_one`` (typical r), ``leaky``
    (the graph has LIF/LI/Cuba neurons), ``spike_rule``, ``readout``."""
    out: list[str] = []
    if graph_facts.get("readout") == "vmem":
        out.append("voltage readout: the graph's output is a membrane voltage (LI/CubaLI), not spikes; runs are compared by "
                   "their decisions (argmax of each output's maximum voltage) and the correlation of those maxima, and the "
                   "table's per-output figures are the maxima averaged over the samples")
    by = {r["name"]: r for r in rows}
    dt = graph_facts.get("dt")
    rec_dt = graph_facts.get("recorded_dt")
    for c in columns:
        row = by.get(c.name, {})
        if c.kind == "native" and c.library == "norse" and graph_facts.get("leaky"):
            if graph_facts.get("r_convention") == "snntorch":
                out.append(
                    f"{c.name}: time step and r convention. The graph stores snnTorch's encoding: r = tau/dt = "
                    f"{graph_facts.get('r_typical', 0):.3g} (dt = {graph_facts.get('r_dt', 0):g} s baked into r), so that one "
                    "step adds the whole input to the membrane. Norse's importer integrates with its own dt = 1e-3 s and "
                    "ignores r for LIF (a LIF layer then gets dt/tau of each input instead of all of it and rarely "
                    "fires; CubaLIF keeps r but decays 10x too fast per step): "
                    f"{row.get('total', 0):g} spikes against {by.get('reference', {}).get('total', 0):g} in the reference. "
                    "The 'norse' column is nirdeploy's conversion: Norse cells at the recorded dt with r as an input gain.")
            else:
                out.append(f"{c.name}: Norse's importer uses dt = 1e-3 s and ignores r; the graph is run at dt = {dt:g} s here")
        if c.kind == "native" and c.library == "snntorch":
            out.append(
                f"{c.name}: snnTorch's importer assumes dt = 1e-4 s (beta = 1 - 1e-4/tau), rescales thresholds when "
                "r*dt/tau != 1 and always resets to zero; it cannot import IF, SumPool2d, LI, Delay or its own CNNs")
            if graph_facts.get("recorded_reset") == "subtract":
                out.append(f"{c.name}: reset timing: the model was trained with a subtractive reset; snnTorch's importer resets to zero")
        if c.kind == "native" and c.library == "sinabs":
            out.append(
                f"{c.name}: Sinabs' importer reads tau as a number of time steps, ignores r and v_reset, clamps the "
                "membrane at -threshold and fires several spikes per step (MultiSpike, v >= threshold)")
        if c.kind in ("library", "native") and c.library == "sinabs":
            out.append(f"{c.name}: threshold test: Sinabs fires at v >= threshold (floor(v/threshold)), NIR at v > threshold; "
                       "an exact tie gives one spike more in Sinabs")
        if row.get("max_per_step", 0) > 1:
            out.append(
                f"{c.name}: multi-spike steps: up to {row['max_per_step']:g} spikes in one step (floor(v / threshold) with "
                "subtractive reset); the reference fires at most one spike per step and keeps the rest of the membrane, "
                "so counts agree better than timing. Chips: Xylo fires several spikes per step, Speck one per event")
        if c.kind == "chip" and c.latency_steps:
            out.append(f"{c.name}: latency: the chip's outputs arrive {c.latency_steps} step(s) late; they are shifted back "
                       "before comparing, and the last steps of the reference have no chip counterpart")
        if c.kind == "chip" and c.info.get("dt") is not None and dt is not None and not np.isclose(c.info["dt"], dt):
            out.append(f"{c.name}: time step: compiled with dt = {c.info['dt']:g} s, the reference runs at dt = {dt:g} s")
        if c.kind == "chip" and c.info.get("reset") and graph_facts.get("reset") and c.info["reset"] != graph_facts["reset"]:
            out.append(f"{c.name}: reset timing: compiled with reset = {c.info['reset']}, the reference uses {graph_facts['reset']}")
        if c.kind == "chip":
            out.extend(f"{c.name}: {w}" for w in c.info.get("warnings", []))  # from the compile report
    if rec_dt is not None and dt is not None and not np.isclose(rec_dt, dt):
        out.append(f"time step: the graph records training dt = {rec_dt:g} s, this comparison runs at dt = {dt:g} s: "
                   "every decay and input gain differs from training")
    if graph_facts.get("recorded_reset") and graph_facts.get("reset") and graph_facts["recorded_reset"] != graph_facts["reset"]:
        out.append(f"reset timing: the model was trained with reset = {graph_facts['recorded_reset']}, this comparison uses "
                   f"{graph_facts['reset']}")
    if graph_facts.get("spike_rule") == "multi":
        if graph_facts.get("reset") == "zero":
            out.append("multi-spike steps: the graph was exported from a multi-spike model (Sinabs MultiSpike); with reset = zero "
                       "the reference column fires at most one spike per step, the 'torch' column follows the recorded rule")
        else:
            out.append("multi-spike steps: the graph was exported from a multi-spike model (Sinabs MultiSpike); the reference "
                       "and 'torch' columns follow the recorded rule (floor(v / threshold) spikes per step); a run that fires "
                       "at most one spike per step differs wherever v reaches twice the threshold")
    return list(dict.fromkeys(out))


def _corr_text(v) -> str:
    """A correlation for the table: "-" when not computed, "n/a" when undefined (NaN: one side's
    rates are constant, e.g. a single output with equal counts in every sample)."""
    if v is None:
        return "-"
    return "n/a" if v != v else f"{v:.3f}"


def render_comparison(rows: list[dict], explanations: list[str], max_outputs: int = 6,
                      flag_below: float = AGREEMENT_FLAG) -> str:
    from ..render import render_rows

    has_acc = any("accuracy" in r for r in rows)
    vmem = any(r.get("readout") == "vmem" for r in rows)
    head = (["run", "max voltage per output", "sum", "decision agreement", "element-wise", "max corr.", "first divergent step"] if vmem else
            ["run", "spikes per output", "total", "spike agreement", "element-wise", "rate corr.", "first divergent step"])
    if has_acc:
        head.append("accuracy")
    head.append("")
    body = []
    for r in rows:
        if r.get("counts") is None:
            body.append([r["name"], "-", "-", "-", "-", "-", "-"] + (["-"] if has_acc else []) + [f"FAILED: {r.get('error')}"])
            continue
        cs = r["counts"]
        counts = " ".join(f"{v:g}" for v in cs[:max_outputs]) + (" ..." if len(cs) > max_outputs else "")

        def pct(k):
            return f"{100 * r[k]:.1f} %" if r.get(k) is not None else "-"

        fd = r.get("first_divergent_step")
        line = [r["name"], counts, f"{r['total']:g}", pct("decision_agreement" if vmem else "spike_agreement"), pct("elementwise_agreement"),
                _corr_text(r.get("rate_correlation")),
                "-" if "first_divergent_step" not in r else ("none" if fd is None else str(fd))]
        if has_acc:
            line.append(f"{100 * r['accuracy']:.1f} %" if "accuracy" in r else "-")
        note = "DIFFERS" if r.get("flag") else ""
        if r.get("latency_steps"):
            note = (note + f" (shifted {r['latency_steps']} steps)").strip()
        line.append(note)
        body.append(line)
    text = render_rows("Runs of the same graph on the same input, against the reference", head, body)
    if explanations:
        text += "Known semantic differences:\n" + "\n".join(f"  - {e}" for e in explanations) + "\n"
    flagged = [r["name"] for r in rows if r.get("flag")]
    if flagged:
        text += (f"{', '.join(flagged)}: {'decision' if vmem else 'spike'} agreement below {100 * flag_below:g} % (or failed): these runs do not "
                 "behave like the reference.\n")
    return text
