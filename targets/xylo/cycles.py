"""Real-time feasibility on Xylo: SynSense's published cycle model, and an energy estimate.

In real-time mode a Xylo core has ``dt * f_clk`` master-clock cycles to compute one time step.
SynSense publishes a model of how many it needs (Rockpool ``power_cycles_model.py`` for Audio 2
and for IMU / Audio 3); its per-operation constants live in the variant's hw_config
(``[cycle_model]``, with the citation) and are applied here to an integer configuration:

    cycles = N_in  * (p_in * N_ien * input_loop + input_fixed)                 input spikes
           + N_hid * (fanout_avg * hidden_update * p_hid + hidden_isyn_fixed)   recurrent Isyn
           + N_oen * p_hid * (output_isyn_fixed + N_out * output_isyn_update)   readout Isyn
           + N_hid * (hidden_fixed + v(p_hid))                                  hidden spiking
           + N_out * output_fixed                                              output spiking
    f_needed = cycles * (1 + margin) / dt

``p_in`` / ``p_hid`` are the probabilities that an input channel / hidden neuron has at least
one event in a step (several events cost the same as one, per the model's documentation);
``N_ien`` / ``N_oen`` are all hidden neurons on Audio 2 and the hidden neurons with input /
output weights on Audio 3 and IMU; ``v(p)`` is the model's alias term, ``3 p`` without aliases.
Without measured activity the model's default is the worst case (p = 1).

Energy: one published figure, the logic power of an Audio 2 HDK at one clock (``[energy]`` in the
hw_config). Assuming logic power proportional to the clock, running at ``f_needed`` for ``T``
steps of ``dt`` costs ``P_ref * f_needed / f_ref * T * dt``. This is an **estimate** from one
measurement, labelled as such wherever it is shown; variants without a published figure get none.
"""

from __future__ import annotations

import numpy as np

from nirdeploy.backend.hwconfig import HWConfig
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.rules import LimitChecker

from .config import XyloConfig
from .rules import recurrent_fanout

__all__ = ["cycles_per_step", "real_time_rule"]


def cycles_per_step(cfg: XyloConfig, hw: HWConfig, p_in: float = 1.0, p_hid: float = 1.0) -> dict:
    """Master-clock cycles for one time step, with the per-stage breakdown.

    ``p_in`` / ``p_hid`` in [0, 1]: probability of at least one event per channel / hidden neuron
    and step (1.0: the model's worst case). Raises KeyError when the hw_config has no cycle model."""
    m = hw.extra["cycle_model"]
    nh, nin, no = cfg.n_hidden, cfg.n_in, cfg.n_out
    if m.get("expansion", "all") == "all":
        n_ien = n_oen = nh
    else:
        n_ien = int((cfg.weights_in != 0).any(axis=(0, 2)).sum()) if cfg.weights_in.size else 0
        n_oen = int((cfg.weights_out != 0).any(axis=1).sum()) if cfg.weights_out.size else 0
    fan = recurrent_fanout(cfg)
    fan_avg = float(fan.mean()) if fan.size else 0.0
    tgt = np.zeros(max(nh, 1))
    srcs = np.zeros(max(nh, 1))
    for j, al in enumerate(cfg.aliases):
        for a in al:
            tgt[int(a)] += 1
            srcs[j] += 1
    a_t, a_s = float(tgt.mean()), float(srcs.mean())
    var_hidden = (2 * max(p_hid, a_t * a_s) + 3 * max(p_hid * a_t, a_t * a_s) + p_hid + max(p_hid, a_t) * a_s)
    parts = {
        "input": nin * (p_in * n_ien * float(m["input_loop"]) + float(m["input_fixed"])),
        "hidden_isyn": nh * (fan_avg * float(m["hidden_update"]) * p_hid + float(m["hidden_isyn_fixed"])),
        "output_isyn": n_oen * p_hid * (float(m["output_isyn_fixed"]) + no * float(m["output_isyn_update"])),
        "hidden_spiking": nh * (float(m["hidden_fixed"]) + var_hidden),
        "output_spiking": no * float(m["output_fixed"]),
    }
    return {"cycles": float(sum(parts.values())), "parts": parts, "p_in": float(p_in), "p_hid": float(p_hid),
            "fanout_avg": fan_avg, "input_expansion": n_ien, "output_expansion": n_oen}


def real_time_rule(cfg: XyloConfig, hw: HWConfig, dt: float, report: FitReport, *, activity: dict | None = None,
                   steps: int | None = None, node: str = "") -> None:
    """Cycles per step against ``max_clock_hz * dt``, recorded in ``report``.

    ``activity``: ``{"p_in": ..., "p_hid": ..., "samples": n}`` measured on sample input; without it
    the worst case is used and an exceeded clock is an ``info`` (a warning with measured activity):
    real-time mode only, the host-driven (accelerated) mode has no deadline. ``steps``: time steps
    per inference (the sample's length) for the energy estimate; ``node``: the layers named in a
    violation."""
    if "cycle_model" not in hw.extra or "max_clock_hz" not in hw.limits:
        return
    m = hw.extra["cycle_model"]
    measured = activity is not None
    p_in = float(activity["p_in"]) if measured else 1.0
    p_hid = float(activity["p_hid"]) if measured else 1.0
    cyc = cycles_per_step(cfg, hw, p_in, p_hid)
    margin = float(m.get("margin", 0.0))
    f_needed = cyc["cycles"] * (1.0 + margin) / dt
    basis = (f"activity measured on {activity.get('samples', '?')} sample(s): p_in {p_in:.3f}, p_hid {p_hid:.3f}" if measured
             else "worst case: every input channel and hidden neuron active every step")
    chk = LimitChecker(hw, report)
    # measured activity: a resource row and a warning when over; the worst case: an info only (a
    # resource row marked OVER would read like a failed fit rule)
    chk.check("max_clock_hz", round(f_needed), what=f"clock for real time at dt = {dt:g} s (cycle-model estimate, {'sample' if measured else 'worst-case'} activity)",
              unit="Hz", rule="real_time", node=node, severity="warning" if measured else "info", record=measured,
              hint=(f"{cyc['cycles']:.0f} cycles per step ({basis}; +{margin:.0%} margin) do not fit {hw.limits['max_clock_hz'] / 1e6:g} MHz x {dt:g} s: "
                    "use a larger dt, fewer hidden neurons or a smaller fan-out, or run in host-driven (accelerated) mode, which has no deadline"
                    + ("" if measured else "; pass --sample X.npy to use measured activity")))
    rt = {"cycles_per_step": cyc["cycles"], "breakdown": cyc["parts"], "p_in": p_in, "p_hid": p_hid, "activity": "measured" if measured else "worst case",
          "clock_needed_hz": f_needed, "margin": margin, "max_clock_hz": hw.limits["max_clock_hz"], "model": m.get("source", ""),
          "confidence": m.get("confidence", "estimate")}
    note = (f"real time (estimate, SynSense's cycle model, {basis}): {cyc['cycles']:.0f} cycles per step, "
            f"{f_needed / 1e6:.3g} MHz needed at dt = {dt:g} s (chip: {hw.limits['max_clock_hz'] / 1e6:g} MHz)")
    en = hw.extra.get("energy")
    if en:
        p_at = float(en["logic_power_w"]) * f_needed / float(en["at_clock_hz"])
        rt["logic_power_w_estimate"] = p_at
        rt["energy_source"] = en.get("source", "")
        if steps:
            e = p_at * steps * dt
            rt["energy_per_inference_j_estimate"] = e
            rt["steps_per_inference"] = int(steps)
            note += (f"; energy per inference of {steps} steps ~ {e * 1e6:.3g} uJ (ESTIMATE: logic power {float(en['logic_power_w']) * 1e6:.4g} uW "
                     f"measured at {float(en['at_clock_hz']) / 1e6:g} MHz, scaled to {f_needed / 1e6:.3g} MHz)")
        else:
            note += f"; logic power at that clock ~ {p_at * 1e6:.3g} uW (ESTIMATE from one published measurement)"
    report.details["real_time"] = rt
    report.notes.append(note)
