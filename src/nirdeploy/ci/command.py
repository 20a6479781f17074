"""``nirdeploy check --format json|junit|github`` and ``--budget``: the CI side of the check
command. Exit codes are the command's: 0 fits (and within budget), 1 does not fit or over
budget, 2 invalid input (a bad budget file included). With ``--target all``, 0 when at least one
target passes."""

from __future__ import annotations

import time
from typing import Callable

from ..errors import NirDeployError, UsageError

__all__ = ["FORMATS", "output_format", "check_command"]

FORMATS = ("text", "json", "junit", "github")
EXIT_OK, EXIT_FAIL = 0, 1


def output_format(fmt: str | None, as_json: bool) -> str:
    """The format asked for: ``--json`` is an alias of ``--format json``."""
    if as_json:
        if fmt not in (None, "json"):
            raise UsageError(f"--json and --format {fmt} contradict each other; use one of them")
        return "json"
    return fmt or "text"


def check_command(graph: str, target: str, *, fmt: str, budget: str | None, echo: Callable[..., None],
                  echo_json: Callable[[object], None], dt=None, reset: str = "zero", scheme: str = "euler",
                  quantization: str = "channel", target_options: dict | None = None, sample=None, calibrate=None) -> int:
    """Run the check, print it in ``fmt`` through ``echo``/``echo_json``, return the exit code.
    ``sample`` / ``calibrate``: sample input for one target's fidelity report (see :func:`nirdeploy.check`)."""
    from .. import api
    from . import formats
    from ..backend.target import multi_target
    from .budget import evaluate_budget, load_budget

    try:
        b = None if budget is None else load_budget(budget)  # a bad budget fails before any work
        opts = {"dt": dt, "reset": reset, "scheme": scheme}
        t0 = time.perf_counter()
        many, only = multi_target(target)
        if many:
            reports = api.check_all(graph, target_options=target_options, target=only, **opts)
        else:
            reports = [api.check(graph, target=target, quantization=quantization, target_options=target_options, sample=sample,
                                 calibrate=calibrate, **opts)]
        seconds = (time.perf_counter() - t0) / len(reports) if reports else 0.0
        results = [] if b is None else evaluate_budget(graph, reports, b, quantization=quantization, target_options=target_options, **opts)
    except NirDeployError as e:
        if fmt == "junit":
            echo(formats.junit_error(graph, e), nl=False)
        elif fmt == "github":
            echo(formats.github_error(graph, e), nl=False)
        raise
    outcomes = [formats.CheckOutcome(r, [x for x in results if x.target == f"{r.target}:{r.variant}"], seconds)
                for r in reports]
    if fmt == "json":
        echo_json(formats.to_json_data(outcomes, single=not many, budget_source=None if b is None else budget))
    elif fmt == "junit":
        props = {"target": target, **{k: str(v) for k, v in opts.items() if v is not None}}
        if b is not None:
            props["budget"] = budget
        echo(formats.junit_xml(graph, outcomes, properties=props), nl=False)
    elif fmt == "github":
        echo(formats.github_annotations(graph, outcomes, budget_file=budget), nl=False)
    else:
        echo(_text(outcomes, single=not many, budget=budget))
    passed = [o.passed for o in outcomes]
    return EXIT_OK if (any(passed) if many else all(passed)) else EXIT_FAIL


def _text(outcomes, *, single: bool, budget: str | None) -> str:
    from ..render import render_fit_table, render_rows

    parts = [outcomes[0].report.render()] if single else [render_fit_table([o.report for o in outcomes]).rstrip("\n")]
    rows = [[o.chip, b.title, "ok" if b.passed else "OVER", b.message] for o in outcomes for b in o.budget]
    if budget is not None:
        if rows:
            parts.append(render_rows(f"Budget ({budget})", ["target", "budget", "", "measured"], rows).rstrip("\n"))
        elif not any(o.report.fits for o in outcomes):
            parts.append(f"budget ({budget}): not evaluated, the network does not fit")
        else:
            parts.append(f"budget ({budget}): sets no limit")
        for o in outcomes:
            for r in o.budget:
                if not r.passed:
                    parts.append(f"over budget: {r.message}")
    return "\n".join(parts)
