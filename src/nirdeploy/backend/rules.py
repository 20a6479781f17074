"""Fit-report building shared by every target: one call checks a usage figure against a limit of
the hw_config, records it as a :class:`~nirdeploy.backend.report.Resource` (with the limit's
confidence and citation) and, when it is exceeded, adds a :class:`Violation` that names the rule,
the node, the limit, the actual value and a hint.
"""

from __future__ import annotations

from typing import Any

from ..graph.ir import NON_NIR_TYPES, Graph, non_nir_nodes
from .hwconfig import HWConfig
from .report import FitReport, Resource, Violation

__all__ = ["LimitChecker", "violation", "non_nir_violation", "report_non_nir_nodes", "UNSUPPORTED_NODE"]

#: the rule name of a node a target cannot run
UNSUPPORTED_NODE = "unsupported_node"


def violation(rule: str, message: str, node: Any = None, *, limit=None, actual=None, hint: str = "", severity: str = "error",
              node_type: str = "") -> Violation:
    """A Violation; ``node`` may be an IR node (its name and type are taken) or a name."""
    name = getattr(node, "name", node) or ""
    ntype = node_type or getattr(node, "type", "") or ""
    return Violation(rule=rule, message=message, node=str(name), node_type=str(ntype), limit=limit, actual=actual, hint=hint,
                     severity=severity)


def non_nir_violation(node: Any, why: str = "", *, name: str | None = None) -> Violation:
    """The ``unsupported_node`` error for a node of a type in ``ir.NON_NIR_TYPES`` (MaxPool,
    BatchNorm, Dropout): it is not a NIR 1.0 primitive, ``why`` says what the chip lacks, and the
    hint is the type's own (the same on every target)."""
    t = getattr(node, "type", "")
    msg = f"{t} is not a NIR 1.0 primitive" + (f"; {why}" if why else "")
    v = violation(UNSUPPORTED_NODE, msg, node, hint=NON_NIR_TYPES[t].hint)
    if name is not None:
        v.node = name
    return v


def report_non_nir_nodes(report: FitReport, graph: Graph) -> None:
    """Make sure ``report`` names every node of ``graph`` that is not a NIR 1.0 primitive (a type in
    ``ir.NON_NIR_TYPES``) as an ``unsupported_node`` error carrying its type's hint, whatever the
    target reported: a violation the target already gave for the node gets the hint (before the
    target's own) and the words "not a NIR 1.0 primitive"; a node the target did not name gets a
    new violation. These violations come first in the list. The API calls this after every ``Target.check`` / ``compile``, so built-in and
    third-party targets alike refuse these layers with the same advice."""
    claimed: set[int] = set()
    for name, node in non_nir_nodes(graph):
        hint = NON_NIR_TYPES[node.type].hint
        mine = [v for v in report.violations if v.rule == UNSUPPORTED_NODE and id(v) not in claimed]
        # the target's names are those of the normalized (inlined) graph: match the name, else the type
        v = next((v for v in mine if v.node == name), None) or next((v for v in mine if v.node_type == node.type), None)
        if v is None:
            report.violations.append(non_nir_violation(node, name=name))
            claimed.add(id(report.violations[-1]))
            continue
        claimed.add(id(v))
        v.severity = "error"
        if "NIR 1.0 primitive" not in v.message:
            v.message += f" ({node.type} is not a NIR 1.0 primitive)"
        if hint not in v.hint:
            v.hint = hint + (f"; {v.hint}" if v.hint else "")
    # first, so that a one-line summary (check --target all: the first blocking reason) names them
    report.violations.sort(key=lambda v: id(v) not in claimed)


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
