"""Fit-report building shared by every target: one call checks a usage figure against a limit of
the hw_config, records it as a :class:`~nirdeploy.backend.report.Resource` (with the limit's
confidence and citation) and, when it is exceeded, adds a :class:`Violation` that names the rule,
the node, the limit, the actual value and a hint.
"""

from __future__ import annotations

from typing import Any

from .hwconfig import HWConfig
from .report import FitReport, Resource, Violation

__all__ = ["LimitChecker", "violation"]


def violation(rule: str, message: str, node: Any = None, *, limit=None, actual=None, hint: str = "", severity: str = "error",
              node_type: str = "") -> Violation:
    """A Violation; ``node`` may be an IR node (its name and type are taken) or a name."""
    name = getattr(node, "name", node) or ""
    ntype = node_type or getattr(node, "type", "") or ""
    return Violation(rule=rule, message=message, node=str(name), node_type=str(ntype), limit=limit, actual=actual, hint=hint,
                     severity=severity)


class LimitChecker:
    """Checks usage against ``hw.limits`` and records resources and violations in ``report``."""

    def __init__(self, hw: HWConfig, report: FitReport, violations: list[Violation] | None = None):
        self.hw = hw
        self.report = report
        self.violations = report.violations if violations is None else violations

    @property
    def chip(self) -> str:
        return f"{self.hw.target}:{self.hw.variant}"

    def check(self, key: str, used, *, what: str | None = None, unit: str = "", rule: str | None = None, node: Any = None,
              hint: str = "", severity: str = "error", record: bool = True, index: int | None = None) -> bool:
        """Record ``used`` against limit ``key``; add a violation if it exceeds it. True if within.

        ``index`` selects one entry of a per-unit list limit (e.g. the memory of core ``index``)."""
        src = self.hw.limit_source(key)
        limit = src.value if index is None else src.value[index]
        what = what or key.replace("_", " ")
        if record:
            self.report.resources.append(Resource(what, used, limit, unit, src.confidence, src.source))
        if limit is None or used <= limit:
            return True
        msg = f"{what} {used} > {limit} on {self.chip}"
        if src.confidence in ("unconfirmed", "estimate"):
            msg += f" (this limit is {'an estimate' if src.confidence == 'estimate' else 'unconfirmed'}: {src.source or 'see hw_config'})"
        self.violations.append(violation(rule or key, msg, node, limit=limit, actual=used, hint=hint, severity=severity))
        return False
