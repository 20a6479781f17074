"""Typed errors.

Every error nirdeploy raises on purpose derives from :class:`NirDeployError` and carries the
exit code the CLI uses: 2 for invalid input or usage, 1 for "does not fit". A check that finds
several problems raises one error holding all of them (:class:`GraphValidationError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "NirDeployError",
    "UsageError",
    "GraphLoadError",
    "GraphValidationError",
    "Problem",
    "UnsupportedError",
    "TargetError",
    "DoesNotFitError",
    "MissingDependencyError",
    "DeploymentFolderError",
    "OutputError",
]


class NirDeployError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it."""

    exit_code = 2


class UsageError(NirDeployError):
    """Bad arguments: unknown target, missing dt, input array of the wrong shape, ..."""


class GraphLoadError(NirDeployError):
    """The file or object is not a readable NIR graph (not HDF5, truncated, wrong layout...)."""


@dataclass
class Problem:
    """One validation finding: what is wrong where, what was expected, what was found."""

    node: str
    node_type: str
    field: str
    message: str
    expected: Any = None
    actual: Any = None

    def to_dict(self) -> dict:
        return {
            "node": self.node,
            "node_type": self.node_type,
            "field": self.field,
            "message": self.message,
            "expected": _jsonable(self.expected),
            "actual": _jsonable(self.actual),
        }

    def __str__(self) -> str:
        where = f"{self.node} ({self.node_type})" if self.node else "graph"
        s = f"{where}"
        if self.field:
            s += f" .{self.field}"
        s += f": {self.message}"
        if self.expected is not None or self.actual is not None:
            s += f" (expected {self.expected}, got {self.actual})"
        return s


class GraphValidationError(NirDeployError):
    """All problems found in a graph, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"invalid NIR graph: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


class UnsupportedError(NirDeployError):
    """A valid graph that a target (or the reference simulator) cannot handle."""


class TargetError(NirDeployError):
    """A target failed to load or broke its contract."""


class DoesNotFitError(NirDeployError):
    """Raised by APIs that require a fitting network; carries the fit report."""

    exit_code = 1

    def __init__(self, report):
        self.report = report
        lines = [f"{v}" for v in report.violations if v.severity == "error"]
        super().__init__(
            f"network does not fit {report.target}:{report.variant}: {len(lines)} violation(s)\n"
            + "\n".join(f"  - {line}" for line in lines)
        )


class MissingDependencyError(NirDeployError):
    """An optional vendor package is missing (or is an installer stub)."""

    def __init__(self, package: str, install: str, why: str = ""):
        self.package = package
        self.install = install
        msg = f"{package} is not available{': ' + why if why else ''}. Install it with: {install}"
        super().__init__(msg)


class DeploymentFolderError(UsageError):
    """A compiled folder's file is missing, not a regular file, too large, or does not match its
    schema. Names the file and, where it applies, the key or array."""

    def __init__(self, path, key: str, problem: str):
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}" + (f": {key!r}" if key else "")
        super().__init__(f"damaged compiled folder: {where} {problem}")


class OutputError(UsageError):
    """An output cannot be written: it exists and nirdeploy did not create it (ownership rule),
    it is not a regular file or folder, something appeared at its place while writing, or the
    file system refused (disk full, read-only, permission denied). Nothing is left behind."""


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
    except Exception:  # pragma: no cover
        pass
    if isinstance(x, tuple):
        return list(x)
    return x
