"""Fit reports: data first (JSON), a readable table second.

A :class:`FitReport` says, for one target variant, which resources a network uses against which
limit, what each node costs, and every rule it breaks (all of them, collected, not the first).
``fits`` is derived: a report fits when it has no violation of severity ``"error"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import _jsonable

__all__ = ["Resource", "Violation", "NodeUsage", "FitReport", "json_safe"]

SEVERITIES = ("error", "warning", "info")


@dataclass
class Resource:
    name: str
    used: float
    limit: float | None
    unit: str = ""
    confidence: str = ""  # how the limit is known: documented | source | measured | unconfirmed | estimate
    source: str = ""  # where the limit comes from (hw_config citation)

    @property
    def fits(self) -> bool:
        return self.limit is None or self.used <= self.limit

    def to_dict(self) -> dict:
        d = {"name": self.name, "used": json_safe(self.used), "limit": json_safe(self.limit), "unit": self.unit, "fits": self.fits}
        if self.confidence:
            d["confidence"] = self.confidence
        if self.source:
            d["source"] = self.source
        return d


@dataclass
class Violation:
    rule: str
    message: str
    node: str = ""
    node_type: str = ""
    limit: Any = None
    actual: Any = None
    hint: str = ""
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")

    def to_dict(self) -> dict:
        return {k: json_safe(v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        where = (f"{self.node} ({self.node_type}): " if self.node_type else f"{self.node}: ") if self.node else ""
        s = f"[{self.rule}] {where}{self.message}"
        if self.hint:
            s += f" -- hint: {self.hint}"
        return s


@dataclass
class NodeUsage:
    node: str
    node_type: str
    usage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"node": self.node, "node_type": self.node_type, "usage": {k: json_safe(v) for k, v in self.usage.items()}}


@dataclass
class FitReport:
    target: str
    variant: str
    resources: list[Resource] = field(default_factory=list)
    nodes: list[NodeUsage] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # dt, reset, scheme, quantization, ...
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # target-specific data (latency, quantization error...)

    @property
    def fits(self) -> bool:
        return not any(v.severity == "error" for v in self.violations)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    def first_blocking_reason(self) -> str:
        e = self.errors
        return str(e[0]) if e else ""

    # -- data ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "variant": self.variant,
            "fits": self.fits,
            "settings": json_safe(self.settings),
            "resources": [r.to_dict() for r in self.resources],
            "nodes": [n.to_dict() for n in self.nodes],
            "violations": [v.to_dict() for v in self.violations],
            "notes": list(self.notes),
            "details": json_safe(self.details),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> "FitReport":
        return cls(
            target=d["target"],
            variant=d["variant"],
            resources=[Resource(r["name"], r["used"], r["limit"], r.get("unit", ""), r.get("confidence", ""), r.get("source", ""))
                       for r in d.get("resources", [])],
            nodes=[NodeUsage(n["node"], n["node_type"], dict(n.get("usage", {}))) for n in d.get("nodes", [])],
            violations=[
                Violation(**{k: v[k] for k in ("rule", "message", "node", "node_type", "limit", "actual", "hint", "severity") if k in v})
                for v in d.get("violations", [])
            ],
            settings=dict(d.get("settings", {})),
            notes=list(d.get("notes", [])),
            details=dict(d.get("details", {})),
        )

    # -- human rendering ---------------------------------------------------------------------------
    def render(self) -> str:
        """Plain-text table (the CLI prints it through rich)."""
        from ..render import render_report

        return render_report(self)


def json_safe(x):
    """``x`` as RFC 8259 JSON data: numpy values become Python ones, tuples lists, and the
    non-finite floats (which JSON cannot hold) the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
    Every JSON nirdeploy prints or writes goes through this."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    x = _jsonable(x)
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x


_deep_jsonable = json_safe  # the earlier private name, kept for callers written against it
