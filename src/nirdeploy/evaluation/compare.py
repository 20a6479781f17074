"""Agreement between a chip's outputs and the reference simulator's."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..inputs import check_int, check_real_array

__all__ = ["compare_outputs"]


def compare_outputs(chip: np.ndarray, ref: np.ndarray, latency_steps: int = 0) -> dict:
    """Agreement between chip and reference outputs (batch, time, *shape), after shifting the chip
    output back by its latency: per-output spike counts, correlation of those counts, and the
    fraction of equal (time, neuron) entries.

    Raises UsageError for arrays that are not real, finite, of equal shape (batch, time, ...) with
    batch and time >= 1, or a latency that is not an integer in ``[0, time)``."""
    chip = check_real_array(chip, what="chip output").astype(np.float64, copy=False)
    ref = check_real_array(ref, what="reference output").astype(np.float64, copy=False)
    if chip.shape != ref.shape:
        raise UsageError(f"chip output {chip.shape} and reference output {ref.shape} differ in shape")
    T = chip.shape[1]
    L = check_int("latency_steps", latency_steps, 0)
    if L >= T:
        raise UsageError(
            f"latency_steps = {L} leaves nothing to compare in {T} time step(s); give more than {L} steps of input"
        )
    c = chip[:, L:]
    r = ref[:, : T - L]
    cc = c.reshape(c.shape[0], c.shape[1], -1).sum(axis=1)  # (batch, n_out)
    rc = r.reshape(r.shape[0], r.shape[1], -1).sum(axis=1)
    a, b = cc.ravel(), rc.ravel()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    same = float(np.mean(c == r)) if c.size else 1.0
    argmax_agree = float(np.mean(cc.argmax(-1) == rc.argmax(-1))) if cc.size else 1.0
    return {
        "latency_steps": L,
        "chip_counts": cc.sum(axis=0).tolist(),
        "reference_counts": rc.sum(axis=0).tolist(),
        "count_correlation": corr,
        "elementwise_agreement": same,
        "argmax_agreement": argmax_agree,
    }
