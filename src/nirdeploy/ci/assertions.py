"""Assertions for tests of a user's own model: does it fit the chip, does the chip simulation
follow the float reference, does on-chip accuracy hold. Each raises
:class:`NirdeployAssertionError` (an ``AssertionError``) whose message is the fit report's
violations or the chip-vs-reference table, never a bare ``assert``; each returns its data.

``target`` may be omitted inside pytest when the run names one (``--nirdeploy-target`` or the
``nirdeploy_target`` ini option). ``x`` and ``y`` may be arrays or paths to ``.npy`` files.
Wrong arguments raise :class:`~nirdeploy.errors.UsageError` (the test errors rather than fails).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..errors import DoesNotFitError, UsageError
from ..inputs import check_number, load_npy
from . import session
from .budget import AGREEMENT_METRICS, validate_floor, as_budget, evaluate_budget, floor_failures

__all__ = ["NirdeployAssertionError", "nirdeploy_check", "assert_fits", "assert_chip_agrees", "assert_chip_accuracy"]


class NirdeployAssertionError(AssertionError):
    """A nirdeploy check failed. ``result`` holds the data the message was made from."""

    __module__ = "nirdeploy.ci"

    def __init__(self, message: str, result: Any = None):
        from ..render import terminal_safe

        super().__init__(terminal_safe(message))  # node names and paths come from files; pytest prints this raw
        self.result = result


# -- helpers -----------------------------------------------------------------------------------------
def _target(target) -> str:
    t = target if target is not None else session.default_target()
    if not t:
        raise UsageError("no target: pass target='xylo:audio2', or run pytest with --nirdeploy-target xylo:audio2")
    return str(t)


def _label(graph) -> str:
    if isinstance(graph, (str, os.PathLike)):
        return os.fspath(graph)
    return str(getattr(graph, "name", "") or "<graph object>")


def _array(x, what: str):
    if x is None:
        raise UsageError(f"{what} is required")
    if isinstance(x, (str, os.PathLike)):
        return load_npy(x, what=what)  # a missing labels file is named as the labels, not as "input"
    return x


def _record(kind: str, graph, report, passed: bool, message: str, **data) -> None:
    session.record({"kind": kind, "graph": _label(graph), "target": f"{report.target}:{report.variant}", "passed": passed,
                    "message": message, "report": report.to_dict(), **{k: v for k, v in data.items() if v is not None}})


def _chip(report) -> str:
    return f"{report.target}:{report.variant}"


def _warnings(report) -> str:
    w = report.warnings
    if not w:
        return ""
    return "the fit report warns:\n" + "\n".join(f"  - {v}" for v in w) + "\n"


def _does_not_fit(label: str, report) -> str:
    return f"{label}: {DoesNotFitError(report)}\n{_warnings(report)}".rstrip("\n")


def _over_budget(label: str, report, results, source: str) -> str:
    bad = [r for r in results if not r.passed]
    src = f" ({source})" if source else ""
    return (f"{label} is over its budget on {_chip(report)}{src}: {len(bad)} breach(es)\n"
            + "\n".join(f"  - {r.message}" for r in bad))


def _opts(dt, reset, scheme, quantization, calibrate) -> dict:
    return {"dt": dt, "reset": reset, "scheme": scheme, "quantization": quantization, "calibrate": calibrate}


def _run_or_fail(kind: str, graph, target: str, x, opts: dict):
    """Compile and simulate on chip and reference; a network that does not fit fails the test
    with its violations."""
    __tracebackhide__ = True
    from .measure import run_chip_and_reference

    try:
        return run_chip_and_reference(graph, target, x, **opts)
    except DoesNotFitError as e:
        msg = _does_not_fit(_label(graph), e.report)
        _record(kind, graph, e.report, False, msg)
        raise NirdeployAssertionError(msg, e.report) from None


# -- the assertions --------------------------------------------------------------------------------
def nirdeploy_check(graph, target: str | None = None, *, dt=None, reset: str = "zero", scheme: str = "euler",
                    quantization: str = "channel", calibrate=None):
    """The fit report of ``graph`` on ``target`` (:func:`nirdeploy.check`), recorded for the
    plugin's ``--nirdeploy-report``; asserts nothing."""
    import nirdeploy

    rep = nirdeploy.check(graph, _target(target), **_opts(dt, reset, scheme, quantization, calibrate))
    _record("check", graph, rep, rep.fits, "" if rep.fits else _does_not_fit(_label(graph), rep))
    return rep


def assert_fits(graph, target: str | None = None, *, dt=None, reset: str = "zero", scheme: str = "euler",
                quantization: str = "channel", calibrate=None, budget=None):
    """Fail unless ``graph`` fits ``target`` (and, with ``budget`` (a budget-file path, mapping or
    :class:`~nirdeploy.ci.budget.Budget`), stays within it). Returns the fit report."""
    __tracebackhide__ = True
    import nirdeploy

    opts = _opts(dt, reset, scheme, quantization, calibrate)
    b = None if budget is None else as_budget(budget)
    rep = nirdeploy.check(graph, _target(target), **opts)
    label = _label(graph)
    if not rep.fits:
        msg = _does_not_fit(label, rep)
        _record("fits", graph, rep, False, msg)
        raise NirdeployAssertionError(msg, rep)
    results = [] if b is None else evaluate_budget(graph, rep, b, **opts)
    budget_data = None if b is None else [r.to_dict() for r in results]
    if any(not r.passed for r in results):
        msg = _over_budget(label, rep, results, b.source)
        _record("fits", graph, rep, False, msg, budget=budget_data)
        raise NirdeployAssertionError(msg, rep)
    _record("fits", graph, rep, True, "", budget=budget_data)
    return rep


def _floors(min_agreement, metric: str) -> dict[str, float]:
    pairs = list(min_agreement.items()) if isinstance(min_agreement, Mapping) else [(metric, min_agreement)]
    if not pairs:
        raise UsageError("min_agreement names no metric")
    floors: dict[str, float] = {}
    for m, f in pairs:
        if not isinstance(m, str) or m not in AGREEMENT_METRICS:
            raise UsageError(f"unknown agreement metric {m!r}; known: {', '.join(AGREEMENT_METRICS)}")
        floors[m] = validate_floor(m, f, f"min_agreement for {m}")
    return floors


def assert_chip_agrees(graph, target: str | None = None, x=None, *, min_agreement, metric: str = "argmax_agreement",
                       dt=None, reset: str = "zero", scheme: str = "euler", quantization: str = "channel", calibrate=None) -> dict:
    """Fail unless the chip simulation of ``graph`` on ``x`` ((batch, time, *input_shape) spike
    counts) agrees with the float reference: ``metric`` (a :func:`nirdeploy.compare_outputs`
    figure: ``argmax_agreement`` (default), ``count_correlation`` or ``elementwise_agreement``)
    at least ``min_agreement``; or pass ``min_agreement={metric: floor, ...}``. Fails too when
    the network does not fit or an output side is silent on the whole input. Returns the
    comparison."""
    __tracebackhide__ = True
    from ..render import render_comparison
    from .measure import silent_sides

    floors = _floors(min_agreement, metric)
    x = _array(x, "x (sample input)")
    t = _target(target)
    run = _run_or_fail("agrees", graph, t, x, _opts(dt, reset, scheme, quantization, calibrate))
    label, rep, cmp = _label(graph), run.report, run.comparison
    if "argmax_agreement" in floors and len(cmp["chip_counts"]) == 1:
        raise UsageError("argmax_agreement is always 1 for a network with one output; use count_correlation or "
                         "elementwise_agreement")
    problems = [f"{m} {v:.3f} < {f:g}" for m, v, f in floor_failures(cmp, floors)]
    problems += [f"the {side} output is silent on every sample, so agreement figures measure nothing" for side in silent_sides(run)]
    data = {"comparison": cmp, "floors": floors}
    if problems:
        msg = (f"chip simulation of {label} on {_chip(rep)} disagrees with the float reference: " + "; ".join(problems)
               + "\n" + render_comparison(cmp) + _warnings(rep)).rstrip("\n")
        _record("agrees", graph, rep, False, msg, **data)
        raise NirdeployAssertionError(msg, cmp)
    _record("agrees", graph, rep, True, "", **data)
    return cmp


def _fraction(name: str, value) -> float | None:
    return None if value is None else check_number(name, value, 0.0, 1.0, kind="a fraction (0.05 = 5 points)")


def assert_chip_accuracy(graph, target: str | None = None, x=None, y=None, *, min_accuracy: float | None = None,
                         max_drop: float | None = None, dt=None, reset: str = "zero", scheme: str = "euler",
                         quantization: str = "channel", calibrate=None) -> dict:
    """Fail unless on-chip accuracy on ``x`` with labels ``y`` ((batch,) class indices) is at
    least ``min_accuracy`` and at most ``max_drop`` below the float reference's (fractions:
    ``max_drop=0.02`` allows 2 points). Readout: spike-count argmax over time (maximum Vmem for
    membrane readouts), aligned for the chip's latency; a silent sample counts as wrong.
    Returns the accuracy figures (``chip_accuracy``, ``reference_accuracy``, ``drop``, ...)."""
    __tracebackhide__ = True
    from ..render import render_comparison
    from .measure import accuracy

    lo, drop = _fraction("min_accuracy", min_accuracy), _fraction("max_drop", max_drop)
    if lo is None and drop is None:
        raise UsageError("assert_chip_accuracy needs min_accuracy, max_drop or both")
    x = _array(x, "x (sample input)")
    y = _array(y, "y (labels)")
    t = _target(target)
    run = _run_or_fail("accuracy", graph, t, x, _opts(dt, reset, scheme, quantization, calibrate))
    acc = accuracy(run, y)
    label, rep = _label(graph), run.report
    problems = []
    if lo is not None and not acc["chip_accuracy"] >= lo - 1e-12:
        problems.append(f"chip accuracy {100 * acc['chip_accuracy']:.1f} % < min_accuracy {100 * lo:g} %")
    if drop is not None and not acc["drop"] <= drop + 1e-12:
        problems.append(f"drop {100 * acc['drop']:.1f} points > max_drop {100 * drop:g} points")
    data = {"comparison": run.comparison, "accuracy": acc}
    if problems:
        msg = (f"on-chip accuracy of {label} on {_chip(rep)}: {100 * acc['chip_accuracy']:.1f} % against "
               f"{100 * acc['reference_accuracy']:.1f} % in the float reference (drop {100 * acc['drop']:.1f} points; "
               f"{acc['samples']} samples, {acc['readout']}, chip shifted by {acc['latency_steps']} steps of latency)\n"
               + "".join(f"  - {p}\n" for p in problems)
               + f"silent samples (no output, counted as wrong): chip {acc['chip_silent_samples']}, "
               f"reference {acc['reference_silent_samples']}\n"
               + render_comparison(run.comparison) + _warnings(rep)).rstrip("\n")
        _record("accuracy", graph, rep, False, msg, **data)
        raise NirdeployAssertionError(msg, acc)
    _record("accuracy", graph, rep, True, "", **data)
    return acc
