"""What the pytest plugin knows while tests run: the configured targets, the test running now
and the checks its assertions made. The assertion functions work without pytest too (then
nothing is recorded and a target must be passed).

Sessions form a stack so that a pytest run inside a test (``pytester``) neither sees nor clears
the outer run's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CISession", "TestRecord", "active", "default_target", "record"]


@dataclass
class TestRecord:
    nodeid: str
    target: str | None = None  # the target this test runs for (parametrized or configured)
    checks: list[dict] = field(default_factory=list)
    outcome: str = "passed"  # passed | failed | error | skipped


@dataclass
class CISession:
    targets: list[str] = field(default_factory=list)  # from --nirdeploy-target / ini nirdeploy_target
    report_dir: Path | None = None
    worker: str = ""  # pytest-xdist worker id, if any
    current: TestRecord | None = None
    records: list[TestRecord] = field(default_factory=list)


_STACK: list[CISession] = []


def push(session: CISession) -> None:
    _STACK.append(session)


def pop(session: CISession) -> None:
    if session in _STACK:
        _STACK.remove(session)


def active() -> CISession | None:
    return _STACK[-1] if _STACK else None


def default_target() -> str | None:
    """The target of the running test, else the first configured one, else None."""
    s = active()
    if s is None:
        return None
    if s.current is not None and s.current.target:
        return s.current.target
    return s.targets[0] if s.targets else None


def record(check: dict) -> None:
    """Attach one check (kind, graph, target, passed, message, report, ...) to the running test."""
    s = active()
    if s is not None and s.current is not None:
        s.current.checks.append(check)
