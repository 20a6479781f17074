"""Agreement between a chip's outputs and the reference simulator's."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

__all__ = ["compare_outputs"]


def compare_outputs(chip: np.ndarray, ref: np.ndarray, latency_steps: int = 0) -> dict:
    """Agreement between chip and reference outputs (batch, time, *shape), after shifting the chip
    output back by its latency: per-output spike counts, correlation of those counts, and the
    fraction of equal (time, neuron) entries."""
    chip = np.asarray(chip, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if chip.shape != ref.shape:
        raise UsageError(f"chip output {chip.shape} and reference output {ref.shape} differ in shape")
    T = chip.shape[1]
    L = int(latency_steps)
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
