"""Speck calibration: the moves of :func:`nirdeploy.backend.calibration.calibrate` for Speck.

A candidate is one factor per layer on the weight-range scale that
:func:`~nirdeploy_targets.speck.lower.lower` chooses (1 = uncalibrated; the ratio of weights to
threshold is what an integrate-and-fire core computes with, so a factor only moves the rounding
and the ranges). Each evaluation lowers the graph with those factors and runs one chip
simulation of the sample in the compile's ``sim_mode``; the score is the agreement of its output
spikes with the float reference on the same sample
(:func:`nirdeploy.evaluation.compare.readout_agreement`). The guarded search keeps a move only
when it improves that score, so the result is never worse than the uncalibrated network on the
sample.

Moves, tried in this order from the current best:

1. **weight resolution, every layer**: each layer's factor becomes the one that puts the
   99.5th percentile of its non-zero weight magnitudes at the edge of the 8-bit range (the few
   larger weights clip at +-127/128, the others get up to that many times finer steps), at most
   MAX_FACTOR and never so far that the bias or the threshold would leave its range;
2. the same for one layer at a time, the layer with the most to gain first;
3. **state saturation** (event mode, whose 16-bit state saturates): layers whose state reached
   the bounds of the format on the sample get their factor halved (down to MIN_FACTOR).
"""

from __future__ import annotations

import numpy as np

from nirdeploy.backend.calibration import DEFAULT_BUDGET, CalibrationResult, Evaluation, Move, calibrate
from nirdeploy.evaluation.compare import readout_agreement

from .lower import Lowered, lower
from .sim import simulate_network

__all__ = ["calibrate_speck", "skip", "agreement", "MAX_FACTOR", "MIN_FACTOR", "PERCENTILE"]

MAX_FACTOR = 4.0
MIN_FACTOR = 1.0 / 8.0
PERCENTILE = 99.5
OBJECTIVE = "(share of samples with the same output decision as the reference, correlation of the output spike counts)"


def _flat(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    return y.reshape(y.shape[0], y.shape[1], -1)


def agreement(low: Lowered, hw, x: np.ndarray, ref_out: np.ndarray) -> tuple[dict, object]:
    """(readout agreement of one chip simulation of ``x`` with ``ref_out``, the simulation)."""
    res = simulate_network(low.network, low.options, hw.fmt("state"), x)
    return readout_agreement(_flat(res.output), _flat(ref_out), 0, "spikes"), res


def calibrate_speck(graph, hw, options, low: Lowered, x: np.ndarray, ref_out: np.ndarray, *, budget: int = DEFAULT_BUDGET):
    """Guarded calibration of ``low`` on ``x`` (chip input, (batch, time, *input_shape) counts)
    against the reference outputs ``ref_out``. Returns ``(lowered, CalibrationResult)``; the
    lowered network is the uncalibrated one unless a move improved the score."""
    names = [l.name for l in low.network.layers]
    cache: dict[bytes, Lowered] = {}

    def build(f: np.ndarray) -> Lowered:
        key = f.tobytes()
        if key not in cache:
            cache[key] = low if np.all(f == 1.0) else lower(graph, hw, options, scale_factor=dict(zip(names, f.tolist())))
        return cache[key]

    def evaluate(f: np.ndarray) -> Evaluation:
        lw = build(f)
        if lw.network is None or not lw.report.fits:  # a candidate that does not fit never wins
            return Evaluation((-1.0, -1.0), {"fits": False}, observation=(lw, None))
        ag, res = agreement(lw, hw, x, ref_out)
        sat = res.saturated
        figs = {"agreement": ag["decision_agreement"], "correlation": ag["value_correlation"],
                "clipped_values": int(sum(lw.report.details["quantization"][k]["clipped_values"] for k in names)),
                "saturating_layers": int(sum(sat.values()))}
        return Evaluation(ag["score"], figs, observation=(lw, sat))

    def gain(lw: Lowered) -> np.ndarray:
        """Per layer: the factor that brings the PERCENTILE of |w| (non-zero) to the range edge."""
        out = np.ones(len(names))
        for i, l in enumerate(lw.network.layers):
            w = np.abs(l.weight[l.weight != 0]).astype(np.float64)
            if w.size:
                p = float(np.percentile(w, PERCENTILE))
                out[i] = max(1.0, float(w.max()) / max(p, 1.0))
        return out

    def propose(f: np.ndarray, ev: Evaluation) -> list[Move]:
        lw, sat = ev.observation
        if lw.network is None:
            return []
        room = np.array([low.scale_room.get(k, 1.0) for k in names])
        want = np.minimum(np.minimum(f * gain(lw), MAX_FACTOR), room)
        moves = []
        up = want > f * 1.01
        if up.any():
            g = np.where(up, want, f)
            moves.append(Move("weight resolution (every layer)", g, int(up.sum())))
            if up.sum() > 1:
                for i in np.argsort(-(want / f))[: int(up.sum())]:
                    g = f.copy()
                    g[i] = want[i]
                    moves.append(Move(f"weight resolution ({names[i]})", g, 1))
        hot = np.array([sat.get(k, False) for k in names]) & (f > MIN_FACTOR)
        if hot.any():
            moves.append(Move("state saturation", np.where(hot, np.maximum(f * 0.5, MIN_FACTOR), f), int(hot.sum())))
        return moves

    result = calibrate(np.ones(len(names)), evaluate, propose, budget=budget, objective=OBJECTIVE)
    return result.best_evaluation.observation[0], result


def skip(reason: str, budget: int = DEFAULT_BUDGET) -> CalibrationResult:
    return CalibrationResult.skip(np.ones(0), reason, budget)
