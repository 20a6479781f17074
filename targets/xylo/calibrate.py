"""Xylo calibration: the moves of :func:`nirdeploy.backend.calibration.calibrate` for Xylo.

A candidate is one multiplier per chip neuron (hidden, then output) of the quantization scale
chosen by :func:`~nirdeploy_targets.xylo.lower.lower` (1 = uncalibrated). Each evaluation lowers
the graph with those multipliers and runs one recorded chip simulation of the sample; the
score is the agreement of its readout with the float reference on the same sample
(:func:`nirdeploy.evaluation.compare.readout_agreement`).

Moves, tried in this order from the current best (each kept only if it improves the score):

1. **readout range** (Vmem readouts): readout neurons whose reference voltage (the larger of the
   plain and the chip-semantics reference), in chip units, would pass 90 % of the int16 maximum
   get the factor that brings the peak there, and readouts that fired on the chip (they reach the
   maximum, fire and drop to 0) at least half their scale;
2. **positive saturation**: neurons whose Vmem or synaptic current reached the int16 maximum get
   their scale halved (the excess charge is lost at the bound);
3. **negative saturation**: neurons that reached only the minimum, halved as a separate move:
   clamping at the minimum makes a neuron recover sooner than the reference, but shrinking its
   scale costs resolution, so it is kept only when it helps.

Scales never go below MIN_FACTOR of the uncalibrated one (READOUT_MIN_FACTOR for Vmem readouts,
whose largest weight then stays at least 1).
"""

from __future__ import annotations

import numpy as np

from nirdeploy.backend.calibration import DEFAULT_BUDGET, CalibrationResult, Evaluation, Move, calibrate
from nirdeploy.evaluation.compare import readout_agreement

from .fidelity import chip_output, saturation
from .lower import lower
from .sim import simulate

__all__ = ["calibrate_xylo", "MIN_FACTOR", "READOUT_MIN_FACTOR", "READOUT_HEADROOM"]

MIN_FACTOR = 1.0 / 16.0  # threshold target 4096 / 16 = 256: the threshold keeps 8 bits of resolution
READOUT_MIN_FACTOR = 1.0 / 127.0  # a Vmem readout's largest weight (127 uncalibrated) stays >= 1
READOUT_HEADROOM = 0.9
OBJECTIVE = "(share of samples with the same readout decision as the reference, correlation of the readout values)"


def calibrate_xylo(graph, hw, options, low, x: np.ndarray, ref_out: np.ndarray, *, budget: int | None = None,
                   ref_chip_out: np.ndarray | None = None):
    """Guarded calibration of ``low`` on ``x`` (chip input, (batch, time, n_in)) against the
    reference outputs ``ref_out``; ``ref_chip_out`` (the reference with the chip's semantics, which
    fires several spikes per step like the chip) sizes Vmem readouts together with ``ref_out``. Returns ``(lowered, CalibrationResult, its recorded chip run)``; the
    lowered network is the uncalibrated one unless a move improved the score."""
    budget = int(options.extra.get("calibration_budget", DEFAULT_BUDGET) if budget is None else budget)
    n_h, n_o = low.config.n_hidden, low.config.n_out
    smin, smax = hw.fmt("state").min, hw.fmt("state").max
    cache: dict[bytes, tuple] = {}

    def build(f: np.ndarray):
        key = f.tobytes()
        if key not in cache:
            lw = low if np.all(f == 1.0) else lower(graph, hw, options, scale_factor=f)
            cache[key] = (lw,)
        return cache[key][0]

    def evaluate(f: np.ndarray) -> Evaluation:
        lw = build(f)
        res = simulate(lw.config, hw, x, record=True)
        ag = readout_agreement(chip_output(res, lw), ref_out, lw.latency_steps, lw.readout)
        sat = saturation(res, lw.config, smin, smax)
        sp = res.states["Spikes"]
        fire = np.count_nonzero(sp)
        figs = {"agreement": ag["decision_agreement"], "correlation": ag["value_correlation"],
                "saturating_pos": int(sat["pos"].sum()), "saturating_neg": int(sat["neg"].sum()),
                "multi_spike_share": float(np.count_nonzero(sp >= 2) / fire) if fire else 0.0}
        return Evaluation(ag["score"], figs, observation=(lw, res, sat))

    ref_peak = None
    if low.readout == "vmem":
        ref_peak = np.abs(np.asarray(ref_out, dtype=np.float64)).max(axis=(0, 1))
        if ref_chip_out is not None:
            ref_peak = np.maximum(ref_peak, np.abs(np.asarray(ref_chip_out, dtype=np.float64)).max(axis=(0, 1)))

    def propose(f: np.ndarray, ev: Evaluation) -> list[Move]:
        lw, res, sat = ev.observation
        moves = []
        if ref_peak is not None and lw.scales is not None:
            peak_chip = ref_peak * lw.scales[1]
            fired = np.asarray(res.spikes_out).any(axis=(0, 1))  # a Vmem readout fires only at the int16 maximum
            need = (peak_chip > READOUT_HEADROOM * smax) | fired
            if need.any():
                g = f.copy()
                shrink = np.where(peak_chip > 0, READOUT_HEADROOM * smax / np.maximum(peak_chip, 1e-300), 1.0)
                shrink = np.where(fired, np.minimum(shrink, 0.5), shrink)
                g[n_h:][need] = np.maximum(f[n_h:][need] * np.minimum(shrink[need], 1.0), READOUT_MIN_FACTOR)
                if not np.array_equal(g, f):
                    moves.append(Move("readout range", g, int(need.sum())))
        for which, mask in (("positive saturation", sat["pos"]), ("negative saturation", sat["neg"] & ~sat["pos"])):
            sel = mask & (f > MIN_FACTOR)
            if ref_peak is not None:
                sel[n_h:] = False  # Vmem readouts are sized by the readout move
            if sel.any():
                g = f.copy()
                g[sel] = np.maximum(f[sel] * 0.5, MIN_FACTOR)
                moves.append(Move(which, g, int(sel.sum())))
        return moves

    result = calibrate(np.ones(n_h + n_o), evaluate, propose, budget=budget, objective=OBJECTIVE)
    lw, res, _ = result.best_evaluation.observation
    return lw, result, res


def skip(low, reason: str, budget: int = DEFAULT_BUDGET) -> CalibrationResult:
    return CalibrationResult.skip(np.ones((low.config.n_hidden + low.config.n_out) if low.config is not None else 0), reason, budget)
