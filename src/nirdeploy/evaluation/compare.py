"""Agreement between a chip's outputs and the reference simulator's, and accuracy with labels.

Outputs are ``(batch, time, *output_shape)``. The chip's output at step ``t + latency``
corresponds to the reference's at ``t`` (see each target's report), so the chip is read over
steps ``[latency, T)`` and the reference over ``[0, T - latency)``.

A network's decision for one sample comes from its **readout**:

* ``"spikes"``: the output with the most spikes in the window (spike-count argmax); a sample
  with no output spike at all is **silent**: it has no decision;
* ``"vmem"``: the output whose membrane reaches the highest value in the window (maximum Vmem,
  for LI/CubaLI readouts); a sample whose outputs stay exactly 0 is silent.

Silent samples never count as agreement or as a correct answer, and the figures say how many
there were: two dead networks do not "agree".
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..inputs import check_int, check_labels, check_real_array

__all__ = ["READOUTS", "readout_values", "decisions", "readout_agreement", "accuracy", "compare_outputs", "describe_readout"]

READOUTS = ("spikes", "vmem")
#: a chip whose output decision equals the float reference's on fewer samples than this gets a
#: warning (fit reports with a sample, ``simulate --compare-reference``)
AGREEMENT_WARN = 0.90


def _check_readout(readout: str) -> str:
    if readout not in READOUTS:
        raise UsageError(f"readout must be one of {', '.join(READOUTS)}; got {readout!r}")
    return readout


def describe_readout(readout: str) -> str:
    """One phrase for reports: how a decision is read from the outputs."""
    return {"spikes": "spike-count argmax (the output with the most spikes)",
            "vmem": "maximum Vmem (the output whose membrane reaches the highest value)"}[_check_readout(readout)]


def _window(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim < 2:
        raise UsageError(f"outputs must be (batch, time, ...), got shape {y.shape}")
    w = y[:, start:stop]
    return w.reshape(w.shape[0], w.shape[1], -1)


def readout_values(y: np.ndarray, readout: str = "spikes", start: int = 0, stop: int | None = None) -> np.ndarray:
    """``(batch, n_outputs)``: spike counts (``"spikes"``) or the maximum over time (``"vmem"``)
    of the outputs in steps ``[start, stop)``."""
    _check_readout(readout)
    w = _window(y, start, y.shape[1] if stop is None else stop)
    if w.shape[1] == 0:
        return np.zeros((w.shape[0], w.shape[2]))
    return w.sum(axis=1) if readout == "spikes" else w.max(axis=1)


def decisions(values: np.ndarray, readout: str = "spikes", raw: np.ndarray | None = None) -> np.ndarray:
    """Winning output per sample, ``-1`` for a silent sample (no spike; for ``"vmem"``: every
    output exactly 0 over the window, given as ``raw`` (batch, time, n))."""
    _check_readout(readout)
    values = np.asarray(values, dtype=np.float64)
    win = values.argmax(axis=1) if values.shape[1] else np.full(values.shape[0], -1)
    if readout == "spikes":
        silent = ~(values > 0).any(axis=1)
    else:
        silent = ~(raw != 0).any(axis=(1, 2)) if raw is not None else ~(values != 0).any(axis=1)
    return np.where(silent, -1, win)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a.ravel(), b.ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 1.0 if a.size and np.array_equal(a, b) and (a != 0).any() else None
    return float(np.corrcoef(a, b)[0, 1])


def _aligned(chip, ref, latency_steps) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(chip, ref as float arrays of one shape, steps T, latency L).

    Raises UsageError for arrays that are not real, finite, of equal shape (batch, time, ...) with
    batch and time >= 1, or a latency that is not an integer in ``[0, time)``."""
    chip = check_real_array(chip, what="chip output").astype(np.float64, copy=False)
    ref = check_real_array(ref, what="reference output").astype(np.float64, copy=False)
    if chip.shape != ref.shape:
        raise UsageError(f"chip output {chip.shape} and reference output {ref.shape} differ in shape")
    T = chip.shape[1]
    L = check_int("latency_steps", latency_steps, 0)
    if L >= T:
        raise UsageError(f"latency_steps = {L} leaves nothing to compare in {T} time step(s); give more than {L} steps of input")
    return chip, ref, T, L


def readout_agreement(chip: np.ndarray, ref: np.ndarray, latency_steps: int = 0, readout: str = "spikes") -> dict:
    """How well the chip's decisions follow the reference's.

    Returns ``decision_agreement`` (share of the samples on which the reference decides where the
    chip makes the same decision; None when the reference is silent on every sample),
    ``value_correlation`` (Pearson correlation of the readout values, None when either side is
    constant), the silent-sample counts of each side, and ``score`` = (decision agreement,
    correlation) with None counted as 0: the objective calibration maximises."""
    chip, ref, T, L = _aligned(chip, ref, latency_steps)
    cw, rw = _window(chip, L, T), _window(ref, 0, T - L)
    cv, rv = readout_values(chip, readout, L, T), readout_values(ref, readout, 0, T - L)
    dc, dr = decisions(cv, readout, cw), decisions(rv, readout, rw)
    decided = dr >= 0
    agree = float(np.mean(dc[decided] == dr[decided])) if decided.any() else None
    corr = _corr(cv, rv)
    return {
        "readout": readout,
        "latency_steps": L,
        "samples": int(chip.shape[0]),
        "decision_agreement": agree,
        "value_correlation": corr,
        "silent_chip_samples": int(np.sum(dc < 0)),
        "silent_reference_samples": int(np.sum(dr < 0)),
        "score": (agree if agree is not None else 0.0, corr if corr is not None else 0.0),
        "chip_decisions": dc,
        "reference_decisions": dr,
    }


def accuracy(y: np.ndarray, labels, readout: str = "spikes", start: int = 0, stop: int | None = None) -> dict:
    """Accuracy of outputs ``y`` (batch, time, n) against integer ``labels`` (batch,) in
    ``[0, n)``, reading steps ``[start, stop)``; silent samples count as wrong and are counted.
    Raises UsageError for labels of the wrong shape, type or range."""
    stop = np.asarray(y).shape[1] if stop is None else stop
    n_out = int(np.prod(np.asarray(y).shape[2:]))
    labels = lab = check_labels(labels, np.asarray(y).shape[0], n_out)  # the one label validator (masked, bool, NaN, range)
    vals = readout_values(y, readout, start, stop)
    d = decisions(vals, readout, _window(y, start, stop))
    return {"accuracy": float(np.mean(d == lab)) if labels.size else 0.0, "samples": int(labels.size),
            "silent_samples": int(np.sum(d < 0)), "readout": readout, "window": [int(start), int(stop)]}


def compare_outputs(chip: np.ndarray, ref: np.ndarray, latency_steps: int = 0, readout: str = "spikes") -> dict:
    """Agreement between chip and reference outputs (batch, time, *shape), after shifting the chip
    output back by its latency: per-output sums over time, the correlation of those sums, the
    fraction of equal (time, neuron) entries, and the readout decisions (see
    :func:`readout_agreement`). ``argmax_agreement`` is the decision agreement; it is NaN (not a
    figure: it fails every floor) when the reference's output is silent on every sample, as is
    ``count_correlation`` when either side's sums are constant; the silent counts say how often
    each side was silent.

    Raises UsageError for arrays that are not real, finite, of equal shape (batch, time, ...) with
    batch and time >= 1, or a latency that is not an integer in ``[0, time)``."""
    chip, ref, T, L = _aligned(chip, ref, latency_steps)
    c, r = _window(chip, L, T), _window(ref, 0, T - L)
    cc, rc = c.sum(axis=1), r.sum(axis=1)
    corr = _corr(cc, rc)
    ag = readout_agreement(chip, ref, L, readout)
    return {
        "latency_steps": L,
        "readout": readout,
        "samples": int(chip.shape[0]),
        "chip_counts": cc.sum(axis=0).tolist(),
        "reference_counts": rc.sum(axis=0).tolist(),
        "count_correlation": float("nan") if corr is None else corr,
        "elementwise_agreement": float(np.mean(c == r)) if c.size else 1.0,
        "argmax_agreement": float("nan") if ag["decision_agreement"] is None else ag["decision_agreement"],
        "silent_chip_samples": ag["silent_chip_samples"],
        "silent_reference_samples": ag["silent_reference_samples"],
    }
