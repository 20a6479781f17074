"""Chip against reference on sample input: a thin layer over the public API (``compile``,
``Deployment.simulate``, ``simulate_reference``, ``compare_outputs``) shared by the pytest
plugin's assertions and ``nirdeploy check --budget``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DoesNotFitError

__all__ = ["ChipRun", "run_chip_and_reference", "accuracy", "silent_sides"]


@dataclass
class ChipRun:
    """One compiled network simulated on the chip and in the float reference on the same input.
    ``chip`` and ``reference``: (batch, time, *output_shape); ``comparison``: the
    :func:`nirdeploy.compare_outputs` result (chip shifted back by its latency)."""

    deployment: object  # nirdeploy.Deployment
    chip: np.ndarray
    reference: np.ndarray
    comparison: dict

    @property
    def latency_steps(self) -> int:
        return int(self.deployment.artifact.latency_steps)

    @property
    def report(self):
        return self.deployment.report


def run_chip_and_reference(graph, target: str, x, *, dt=None, reset: str = "zero", scheme: str = "euler",
                           quantization: str = "channel", calibrate=None, target_options: dict | None = None) -> ChipRun:
    """Compile ``graph`` for ``target``, simulate ``x`` (batch, time, *input_shape) spike counts on
    the chip and in the reference with the same dt, reset and scheme, and compare.

    Raises :class:`~nirdeploy.errors.DoesNotFitError` (carrying the fit report) when the network
    does not fit, and :class:`~nirdeploy.errors.UsageError` for a bad input array."""
    import nirdeploy

    g = nirdeploy.load_graph(graph)
    dep = nirdeploy.compile(g, target, dt=dt, reset=reset, scheme=scheme, quantization=quantization, calibrate=calibrate,
                            target_options=target_options)
    if not dep.fits:
        raise DoesNotFitError(dep.report)
    chip = dep.simulate(x)
    s = dep.report.settings
    ref = nirdeploy.simulate_reference(g, np.asarray(x), dt=s["dt"], reset=s["reset"], scheme=s["scheme"])
    return ChipRun(dep, chip, ref, nirdeploy.compare_outputs(chip, ref, dep.artifact.latency_steps))


def _aligned(run: ChipRun) -> tuple[np.ndarray, np.ndarray]:
    T = run.chip.shape[1]
    L = run.latency_steps
    b = run.chip.shape[0]
    return run.chip[:, L:].reshape(b, T - L, -1), run.reference[:, : T - L].reshape(b, T - L, -1)


def silent_sides(run: ChipRun) -> list[str]:
    """Which sides (``"chip"``, ``"reference"``) produce no output at all on the whole input: a
    comparison with a silent side measures nothing (both argmaxes are 0)."""
    c, r = _aligned(run)
    return [name for name, a in (("chip", c), ("reference", r)) if not np.any(a)]


def accuracy(run: ChipRun, labels) -> dict:
    """Chip and reference accuracy against ``labels`` (batch,) class indices, aligned for latency.

    The readout is the spike-count argmax over time, or the maximum-Vmem argmax for a membrane
    readout (``report.details["readout"] == "vmem"``). A sample whose outputs are all zero has no
    prediction and counts as wrong; the counts of such silent samples are returned.
    Raises :class:`UsageError` for labels of the wrong shape or out of range."""
    from ..evaluation.compare import accuracy as _accuracy
    from ..inputs import check_labels

    b = run.chip.shape[0]
    c, r = _aligned(run)
    y = check_labels(labels, b, c.shape[2])
    readout = str(run.report.details.get("readout", "spikes"))
    out = {"readout": "maximum Vmem argmax" if readout == "vmem" else "spike-count argmax", "samples": int(b),
           "latency_steps": run.latency_steps}
    T, L = run.chip.shape[1], run.latency_steps
    for side, a, (start, stop) in (("chip", run.chip, (L, T)), ("reference", run.reference, (0, T - L))):
        acc = _accuracy(a, y, readout, start, stop)  # the core's readout: one definition everywhere
        out[f"{side}_accuracy"] = acc["accuracy"]
        out[f"{side}_silent_samples"] = acc["silent_samples"]
    out["drop"] = out["reference_accuracy"] - out["chip_accuracy"]
    return out
