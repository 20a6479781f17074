"""Fidelity report: what the compiled Xylo network does on sample input, against the reference.

Given sample input (``--sample X.npy`` only measures; ``--calibrate X.npy`` measures after
calibrating), one recorded chip simulation and the float reference on the same sample give:

* per hidden layer, the **multi-spike share**: of the (sample, step, neuron) entries in which a
  neuron fires, the share that emits two or more spikes in one step (Xylo fires
  ``floor(Vmem / threshold)`` spikes, up to 31, and subtracts them all; a network trained with one
  spike per step does not expect that), and the largest count seen;
* per layer, **saturation**: neurons whose Vmem or synaptic currents reached the int16 maximum
  and, separately, the minimum, with the number of (sample, step) entries (a Vmem readout that
  reaches the maximum fires there: threshold_out is the maximum);
* the **predicted agreement** with the reference: the share of samples on which chip and
  reference reach the same readout decision, the correlation of the readout values, silent
  samples, and the same agreement for the reference run with the chip's semantics (its spiking
  rule and effective time constants), which isolates what the integer arithmetic adds;
* the activity the real-time cycle model needs (p_in, p_hid).

Above MULTI_SPIKE_WARN or below AGREEMENT_WARN a warning explains the cause and the remedies.
"""

from __future__ import annotations

import numpy as np

from nirdeploy.backend.report import FitReport
from nirdeploy.backend.rules import violation
from nirdeploy.evaluation.compare import AGREEMENT_WARN, describe_readout, readout_agreement  # one agreement floor for every target

__all__ = ["MULTI_SPIKE_WARN", "AGREEMENT_WARN", "saturation", "fidelity_report", "chip_output", "activity"]

MULTI_SPIKE_WARN = 0.05  # share of firing events with >= 2 spikes in one step, per hidden layer


def chip_output(res, low) -> np.ndarray:
    """The chip's output in reference units: spikes, or Vmem_out / output scale for Vmem readouts."""
    if low.readout == "vmem":
        return res.states["Vmem_out"] / low.output_scale
    return res.spikes_out


def _decay_step(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Xylo's decay amount D(x, d) = x >> d, or sign(x) when that is 0."""
    sh = np.right_shift(x, d)
    return np.where(sh == 0, np.sign(x), sh)


def saturation(res, cfg, smin: int, smax: int) -> dict:
    """Per chip neuron (hidden first, then outputs): did its membrane or a synaptic current reach
    the int16 maximum (``pos``) / minimum (``neg``) on some step, and in how many (sample, step)
    entries (``pos_entries`` / ``neg_entries``)?

    The recorded states are taken after the step's decay and spikes, so the bound is recognised
    from them exactly: a membrane reached the maximum when ``Vmem + spikes * threshold`` is the
    maximum (the spikes subtracted it); a synaptic current was clipped at a bound ``b`` when it is
    ``b - D(b, dash)`` after its decay (the map is one-to-one at the bounds)."""
    st = res.states
    i64 = np.int64
    n_h, n_o = cfg.n_hidden, cfg.n_out
    pos = np.zeros((*st["Vmem"].shape[:2], n_h + n_o), bool)
    neg = np.zeros_like(pos)
    th = np.where(cfg.threshold > 0, cfg.threshold, 0).astype(i64)
    tho = np.where(cfg.threshold_out > 0, cfg.threshold_out, 0).astype(i64)
    v_pre = st["Vmem"].astype(i64) + st["Spikes"].astype(i64) * th
    vo_pre = st["Vmem_out"].astype(i64) + np.asarray(res.spikes_out, dtype=i64) * tho
    pos[..., :n_h] |= v_pre >= smax
    neg[..., :n_h] |= st["Vmem"] <= smin
    pos[..., n_h:] |= vo_pre >= smax
    neg[..., n_h:] |= st["Vmem_out"] <= smin
    syn = [("Isyn", cfg.dash_syn, slice(0, n_h)), ("Isyn_out", cfg.dash_syn_out, slice(n_h, n_h + n_o))]
    if "Isyn2" in st:
        syn.append(("Isyn2", cfg.dash_syn_2, slice(0, n_h)))
    for key, dash, sl in syn:
        d = np.asarray(dash, dtype=i64)
        hi = smax - _decay_step(np.full(d.shape, smax, i64), d)
        lo = smin - _decay_step(np.full(d.shape, smin, i64), d)
        a = st[key].astype(i64)
        live = d > 0  # dash 0 clears the state: nothing to see
        pos[..., sl] |= (a == hi) & live
        neg[..., sl] |= (a == lo) & live
    return {"pos": pos.any(axis=(0, 1)), "neg": neg.any(axis=(0, 1)), "pos_entries": pos.sum(axis=(0, 1)), "neg_entries": neg.sum(axis=(0, 1))}


def activity(x: np.ndarray, spikes: np.ndarray, cap_in: int) -> dict:
    """p_in / p_hid for the cycle model: share of (sample, step, channel / neuron) with >= 1 event."""
    return {"p_in": float(np.mean(np.minimum(x, cap_in) > 0)) if x.size else 0.0,
            "p_hid": float(np.mean(spikes > 0)) if spikes.size else 0.0, "samples": int(x.shape[0])}


def fidelity_report(low, hw, report: FitReport, x: np.ndarray, res, ref_out: np.ndarray, ref_chip_out: np.ndarray | None, *,
                    measured_only: bool) -> dict:
    """Fill ``report`` (details["fidelity"], notes, warnings) from one recorded chip run ``res`` on
    ``x`` and the reference outputs. ``measured_only``: the sample came with --sample (a Vmem
    readout that saturates is then a blocking violation; calibration would rescale it)."""
    cfg, layers = low.config, low.layers
    smin, smax = hw.fmt("state").min, hw.fmt("state").max
    sp = res.states["Spikes"]
    sat = saturation(res, cfg, smin, smax)
    fid: dict = {"samples": int(x.shape[0]), "steps": int(x.shape[1]), "layers": {}}
    lines = []
    worst = (0.0, "")
    for name, typ, off, n in layers.hidden:
        s = sp[:, :, off:off + n]
        fire = int(np.count_nonzero(s))
        multi = int(np.count_nonzero(s >= 2))
        share = multi / fire if fire else 0.0
        d = {"firing_entries": fire, "multi_spike_entries": multi, "multi_spike_share": share, "max_spikes_per_step": int(s.max(initial=0)),
             "saturating_neurons_pos": int(sat["pos"][off:off + n].sum()), "saturating_neurons_neg": int(sat["neg"][off:off + n].sum()),
             "saturated_entries_pos": int(sat["pos_entries"][off:off + n].sum()), "saturated_entries_neg": int(sat["neg_entries"][off:off + n].sum())}
        fid["layers"][name] = d
        lines.append(f"{name}: {100 * share:.1f} % of firing events are multi-spike (max {d['max_spikes_per_step']} per step); "
                     f"saturating neurons +{d['saturating_neurons_pos']} / -{d['saturating_neurons_neg']}")
        if share > worst[0]:
            worst = (share, name)
    oname, otype = layers.output
    no = slice(cfg.n_hidden, cfg.n_hidden + cfg.n_out)
    fid["layers"][oname] = {"saturating_neurons_pos": int(sat["pos"][no].sum()), "saturating_neurons_neg": int(sat["neg"][no].sum()),
                            "saturated_entries_pos": int(sat["pos_entries"][no].sum()), "saturated_entries_neg": int(sat["neg_entries"][no].sum())}
    lines.append(f"{oname}: saturating neurons +{int(sat['pos'][no].sum())} / -{int(sat['neg'][no].sum())}")
    chip_out = chip_output(res, low)
    ag = readout_agreement(chip_out, ref_out, low.latency_steps, low.readout)
    fid["readout"] = low.readout
    fid["predicted_agreement"] = ag["decision_agreement"]
    fid["value_correlation"] = ag["value_correlation"]
    fid["silent_chip_samples"] = ag["silent_chip_samples"]
    fid["silent_reference_samples"] = ag["silent_reference_samples"]
    if ref_chip_out is not None:
        ag2 = readout_agreement(ref_chip_out, ref_out, 0, low.readout)
        ag3 = readout_agreement(chip_out, ref_chip_out, low.latency_steps, low.readout)
        fid["reference_with_chip_semantics_vs_reference"] = ag2["decision_agreement"]
        fid["chip_vs_reference_with_chip_semantics"] = ag3["decision_agreement"]
    pa = ag["decision_agreement"]
    fid["activity"] = activity(x, sp, int(hw.limits["max_input_events_per_step"]))
    report.details["fidelity"] = fid

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    head = (f"fidelity on {x.shape[0]} sample(s): chip and reference reach the same decision ({describe_readout(low.readout)}) in "
            f"{pct(pa)} of the samples the reference decides")
    if ag["silent_chip_samples"] or ag["silent_reference_samples"]:
        head += f"; silent samples: chip {ag['silent_chip_samples']}, reference {ag['silent_reference_samples']}"
    if ref_chip_out is not None:
        head += (f"; the reference with the chip's spiking rule and time constants agrees with the reference in {pct(fid['reference_with_chip_semantics_vs_reference'])}"
                 f" and with the chip in {pct(fid['chip_vs_reference_with_chip_semantics'])}")
    report.notes.append(head)
    report.notes.extend("fidelity " + ln for ln in lines)

    if ag["silent_chip_samples"] == x.shape[0] and ag["silent_reference_samples"] < x.shape[0]:
        report.violations.append(violation("silent_chip", f"the chip's output is silent on all {x.shape[0]} samples while the reference decides on "
                                           f"{x.shape[0] - ag['silent_reference_samples']}", oname, node_type=otype, severity="warning",
                                           hint="see the quantization and time-constant warnings above: no signal reaches the outputs"))
    if worst[0] > MULTI_SPIKE_WARN or (pa is not None and pa < AGREEMENT_WARN):
        cause = (f"{100 * worst[0]:.0f} % of the firing events in {worst[1]!r} emit several spikes in one step on the chip (Xylo fires "
                 f"floor(Vmem / threshold) spikes, up to {hw.limits['max_hidden_spikes_per_step']}, and subtracts them all; the reference, like "
                 "training, fires at most one)") if worst[0] > MULTI_SPIKE_WARN else "the chip's integer arithmetic and spiking rule"
        report.violations.append(violation(
            "fidelity", f"predicted agreement with the reference on the sample: {pct(pa)}; cause: {cause}", worst[1] or oname, severity="warning",
            limit=f"multi-spike share <= {100 * MULTI_SPIKE_WARN:.0f} %, agreement >= {100 * AGREEMENT_WARN:.0f} %",
            actual=f"{100 * worst[0]:.0f} %, {pct(pa)}",
            hint="retrain with a penalty on the membrane potential above about twice the threshold (it keeps neurons to one spike per step), "
                 "or lower the input scale (fewer input events per step); `nirdeploy simulate --reference --spikes-per-step 31` shows the "
                 "effect of the chip's spiking rule on the float network"))
    n_pos, n_neg = int(sat["pos"].sum()), int(sat["neg"].sum())
    if n_pos or n_neg:
        report.violations.append(violation(
            "saturation", f"on the sample, {n_pos} neuron(s) reach the int16 maximum and {n_neg} the minimum of their Vmem or synaptic "
            f"currents ({int(sat['pos_entries'].sum())} / {int(sat['neg_entries'].sum())} sample-steps)",
            ", ".join([n for n, _, off, k in layers.hidden if (sat["pos"][off:off + k] | sat["neg"][off:off + k]).any()]
                      + ([oname] if (sat["pos"][no] | sat["neg"][no]).any() else [])),
            severity="warning", hint="--calibrate X.npy lowers the scale of saturating neurons when that brings the chip closer to the reference"))
    fired = np.asarray(res.spikes_out).any(axis=(0, 1))  # a Vmem readout's threshold is the int16 maximum
    if low.readout == "vmem" and fired.any():
        bad = np.nonzero(fired)[0]
        report.violations.append(violation(
            "readout_overflow", f"on the sample, readout neuron(s) {', '.join(map(str, bad))} reach the int16 maximum: there the readout fires "
            "and subtracts its threshold, so it drops to 0 where the reference keeps rising", oname, node_type=otype,
            limit=smax, actual=smax, severity="error",
            hint=("compile with --calibrate X.npy (rescales the readout to the range measured on the sample)" if measured_only else
                  "shorten the readout's time constants or lower its input weights")))
    return fid
