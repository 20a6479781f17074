"""CI-native renderings of fit checks: JSON, JUnit XML and GitHub workflow commands.

* **JSON**: the fit report (a list of them for ``--target all``), exactly as ``--json`` prints
  it, plus a ``budget`` object when a budget was checked.
* **JUnit XML**: one ``<testsuite>`` per checked graph, one ``<testcase>`` per target:variant
  (``fits xylo:audio2``) whose ``<failure>`` carries every blocking violation, one
  ``<testcase>`` per budget line; warnings and notes go to the suite's ``<system-out>``. Valid
  against both the Apache Ant schema (windyroad ``JUnit.xsd``, the strict one: required
  attributes and elements, one result per test case) and Jenkins' ``junit-10.xsd``.
* **GitHub**: one workflow command per violation, ``::error`` / ``::warning`` / ``::notice`` by
  severity, with ``file=`` the graph and the node in the title; budget breaches are ``::error``.
  Data and properties are escaped as GitHub's runner expects (``%``, CR and LF in the message;
  also ``:`` and ``,`` in properties), so every command is one line.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

__all__ = ["CheckOutcome", "to_json_data", "junit_xml", "github_annotations", "github_escape_data",
           "github_escape_property", "visible", "xml_text"]


@dataclass
class CheckOutcome:
    """One fit report with the budget lines checked against it."""

    report: object  # FitReport
    budget: list = field(default_factory=list)  # BudgetResult
    seconds: float = 0.0

    @property
    def chip(self) -> str:
        return f"{self.report.target}:{self.report.variant}"

    @property
    def passed(self) -> bool:
        return self.report.fits and all(b.passed for b in self.budget)


# -- JSON ------------------------------------------------------------------------------------------
def to_json_data(outcomes: list[CheckOutcome], *, single: bool, budget_source: str | None = None):
    """The report dict (``single``) or list of them; with a budget, each gains ``"budget":
    {"source", "passed", "results"}``."""
    data = []
    for o in outcomes:
        d = o.report.to_dict()
        if budget_source is not None:
            d["budget"] = {"source": budget_source, "passed": all(b.passed for b in o.budget),
                           "results": [b.to_dict() for b in o.budget]}
        data.append(d)
    return data[0] if single else data


# -- JUnit XML -------------------------------------------------------------------------------------
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _hex(m) -> str:
    return f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"


def visible(s) -> str:
    """Control characters (ESC in a node name, say) and bidirectional overrides written as
    ``\\xNN`` / ``\\uNNNN`` (:func:`nirdeploy.render.terminal_safe`): a log or a terminal shows them
    instead of obeying them. Tab, CR and LF stay."""
    from ..render import terminal_safe

    return terminal_safe(str(s), keep="\r")


def xml_text(s) -> str:
    """Text safe for XML 1.0: what XML cannot carry even escaped (control characters, lone
    surrogates) is written as ``\\xNN`` / ``\\uNNNN``."""
    return _XML_BAD.sub(_hex, str(s))


def _el(parent, tag: str, text: str | None = None, **attrs) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        e.text = xml_text(text)
    return e


def _suite(root, graph: str, suite_id: int, seconds: float, timestamp: str | None, hostname: str | None) -> ET.Element:
    return _el(root, "testsuite", name=f"nirdeploy check {graph}", package="nirdeploy", id=str(suite_id),
               timestamp=timestamp or time.strftime("%Y-%m-%dT%H:%M:%S"),
               hostname=hostname or socket.gethostname() or "localhost",
               tests="0", failures="0", errors="0", skipped="0", time=f"{seconds:.3f}")


def _finish(suite: ET.Element, out_lines: list[str]) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
    _el(suite, "system-out", "\n".join(out_lines))
    _el(suite, "system-err", "")


def _serialize(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def junit_xml(graph: str, outcomes: list[CheckOutcome], *, timestamp: str | None = None, hostname: str | None = None,
              properties: dict | None = None) -> str:
    """A JUnit XML document for the checks of one graph (see the module docstring)."""
    root = ET.Element("testsuites")
    suite = _suite(root, graph, 0, sum(o.seconds for o in outcomes), timestamp, hostname)
    props = _el(suite, "properties")
    for k, v in {"graph": graph, **(properties or {})}.items():
        _el(props, "property", name=k, value=v)
    out: list[str] = []
    for o in outcomes:
        rep = o.report
        case = _el(suite, "testcase", classname=f"nirdeploy.{rep.target}.{rep.variant}", name=f"fits {o.chip}",
                   time=f"{o.seconds:.3f}")
        if not rep.fits:
            errs = rep.errors
            _el(case, "failure", "\n".join(str(v) for v in errs), type="does_not_fit",
                message=f"{graph} does not fit {o.chip}: {len(errs)} violation(s); first: {errs[0]}")
        for b in o.budget:
            bc = _el(suite, "testcase", classname=f"nirdeploy.{rep.target}.{rep.variant}", name=f"budget {o.chip}: {b.title}",
                     time="0")
            if not b.passed:
                _el(bc, "failure", b.message, type=f"budget_{b.kind}", message=b.message)
        out += [f"{o.chip}: {v.severity}: {v}" for v in rep.violations if v.severity != "error"]
        out += [f"{o.chip}: note: {n}" for n in rep.notes]
    _finish(suite, out)
    return _serialize(root)


def junit_error(graph: str, error: BaseException, *, timestamp: str | None = None, hostname: str | None = None) -> str:
    """A JUnit XML document for a check that could not run (invalid input, exit code 2): one
    test case with an ``<error>``."""
    root = ET.Element("testsuites")
    suite = _suite(root, graph, 0, 0.0, timestamp, hostname)
    _el(suite, "properties")
    case = _el(suite, "testcase", classname="nirdeploy", name=f"check {graph}", time="0")
    _el(case, "error", str(error), type=type(error).__name__, message=str(error).splitlines()[0] if str(error) else "")
    _finish(suite, [])
    return _serialize(root)


# -- GitHub workflow commands ------------------------------------------------------------------------
def github_escape_data(s) -> str:
    """Escape a workflow command's message: ``%``, CR, LF (as actions/toolkit's ``escapeData``);
    control characters are made :func:`visible`."""
    return visible(s).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_escape_property(s) -> str:
    """Escape a property value: as data, plus ``:`` and ``,`` (actions/toolkit's ``escapeProperty``)."""
    return github_escape_data(s).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **props) -> str:
    p = ",".join(f"{k}={github_escape_property(v)}" for k, v in props.items() if v not in (None, ""))
    return f"::{kind}{' ' + p if p else ''}::{github_escape_data(message)}"


def _workspace_path(path: str) -> str:
    """GitHub resolves ``file=`` against the workspace: make an absolute path inside it relative."""
    ws = os.environ.get("GITHUB_WORKSPACE")
    if ws and os.path.isabs(path):
        rel = os.path.relpath(path, ws)
        if not rel.startswith(".."):
            return rel
    return path


_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def github_annotations(graph: str, outcomes: list[CheckOutcome], *, budget_file: str | None = None) -> str:
    """Workflow commands (one line each) for every violation and budget breach, then one plain
    summary line per target."""
    f = _workspace_path(graph)
    lines = []
    for o in outcomes:
        for v in o.report.violations:
            where = f" {v.node}" if v.node else ""
            lines.append(_command(_LEVEL[v.severity], str(v), file=f, title=f"nirdeploy {o.chip} [{v.rule}]{where}"))
        for b in o.budget:
            if not b.passed:
                lines.append(_command("error", b.message, file=_workspace_path(budget_file) if budget_file else f,
                                      title=f"nirdeploy {o.chip} budget: {b.title}"))
        state = "fits" if o.report.fits else "does not fit"
        if o.budget:
            state += ", within budget" if all(b.passed for b in o.budget) else ", over budget"
        lines.append(f"nirdeploy: {visible(graph)} {state} on {o.chip} ({len(o.report.errors)} error(s), "
                     f"{len(o.report.warnings)} warning(s))")
    return "\n".join(lines) + "\n"


def github_error(graph: str, error: BaseException) -> str:
    """One ``::error`` for a check that could not run; it points at the budget file (and line)
    when the budget is what is wrong."""
    path = getattr(error, "path", "") or graph
    return _command("error", str(error), file=_workspace_path(path), line=getattr(error, "line", None) or "",
                    title="nirdeploy check") + "\n"
