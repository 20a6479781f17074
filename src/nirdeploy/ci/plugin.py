"""The nirdeploy pytest plugin (entry point ``pytest11``: loaded by pytest whenever nirdeploy is
installed; ``-p no:nirdeploy`` turns it off; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load
it with ``-p nirdeploy.ci.plugin``).

Options::

    --nirdeploy-target TARGET[:VARIANT]   default target of the nirdeploy assertions; repeat it
                                          or separate with commas (or say 'all') to run every
                                          test that uses the ``nirdeploy_target`` fixture once
                                          per target (ini: nirdeploy_target)
    --nirdeploy-report DIR                write DIR/<test>/report.json for each test that ran a
                                          nirdeploy check, and DIR/summary.json + summary.md

Fixtures: ``nirdeploy_target`` (the target of this test) and ``nirdeploy_check`` (a function:
``nirdeploy_check(graph, target=None, dt=..., ...)`` returns the fit report and records it).

``report.json`` holds ``{"nirdeploy_ci": 1, "test", "outcome", "checks": [...]}``; each check
has ``kind`` (check, fits, agrees, accuracy), ``graph``, ``target``, ``passed``, ``message``
(the failure message) and ``report`` (the fit report, as ``nirdeploy compile`` writes it),
plus ``comparison``, ``accuracy`` or ``budget`` where they apply. Files are written atomically.
A later run refreshes the report files nirdeploy wrote (a ``report.json``/``summary*.json`` that
begins with ``{"nirdeploy_ci": 1``, a ``summary*.md`` that begins with ``## nirdeploy``), so a
report folder can be reused run after run; any other file at one of those paths (and any
symbolic link, FIFO or folder) is left as it is, with a warning. Nothing else in DIR is touched.

Loading it imports pytest and nirdeploy's core (numpy; no torch, no vendor SDK); graphs,
targets and simulators load at the first check.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from . import session as _session

REPORT_FILE = "report.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
_STATE_KEY = "_nirdeploy_ci_session"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("nirdeploy", "nirdeploy: chip checks of your NIR network")
    group.addoption("--nirdeploy-target", action="append", default=[], metavar="TARGET[:VARIANT]",
                    help="default target of nirdeploy assertions (e.g. xylo:audio2); repeat, comma-separate or say 'all' "
                         "to run tests that use the nirdeploy_target fixture once per target")
    group.addoption("--nirdeploy-report", default=None, metavar="DIR",
                    help="write each test's report.json and a summary (summary.json, summary.md) under DIR")
    parser.addini("nirdeploy_target", "default nirdeploy target(s), comma-separated (like --nirdeploy-target)", default="")


def _split(values) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [t.strip() for t in str(v).split(",") if t.strip()]
    return out


def _resolve_targets(names: list[str]) -> list[str]:
    """Validate target specs; 'all' expands to every target:variant, 'TARGET:all' to every
    variant of TARGET."""
    if not names:
        return []
    from ..backend.target import available_targets, get_target, parse_target_spec
    from ..errors import NirDeployError

    out: list[str] = []
    try:
        for n in names:
            if n == "all":
                out += [f"{t}:{v}" for t in available_targets() for v in get_target(t).variants()]
            elif n.endswith(":all"):
                t = get_target(n[:-4].strip())
                out += [f"{t.name}:{v}" for v in t.variants()]
            else:
                t, v = parse_target_spec(n)
                out.append(f"{t.name}:{v}")
    except NirDeployError as e:
        raise pytest.UsageError(f"--nirdeploy-target: {e}") from None
    return list(dict.fromkeys(out))


def pytest_configure(config) -> None:
    targets = _resolve_targets(_split(config.getoption("nirdeploy_target")) or _split([config.getini("nirdeploy_target")]))
    report_dir = config.getoption("nirdeploy_report")
    if report_dir is not None:
        from ..errors import NirDeployError
        from ..inputs import check_path

        try:
            report_dir = Path(check_path(report_dir, "--nirdeploy-report"))
        except NirDeployError as e:
            raise pytest.UsageError(str(e)) from None
        if report_dir.exists() and not report_dir.is_dir():
            raise pytest.UsageError(f"--nirdeploy-report {_visible(report_dir)}: exists and is not a folder")
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise pytest.UsageError(f"--nirdeploy-report {_visible(report_dir)}: cannot create it: {e.strerror or e}") from None
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    s = _session.CISession(targets=targets, report_dir=report_dir, worker=worker)
    setattr(config, _STATE_KEY, s)
    _session.push(s)


def pytest_unconfigure(config) -> None:
    s = getattr(config, _STATE_KEY, None)
    if s is not None:
        _session.pop(s)


def _state(config) -> _session.CISession | None:
    return getattr(config, _STATE_KEY, None)


def pytest_generate_tests(metafunc) -> None:
    s = _state(metafunc.config)
    if s is not None and "nirdeploy_target" in metafunc.fixturenames and len(s.targets) > 1:
        metafunc.parametrize("nirdeploy_target", s.targets, indirect=True, ids=s.targets)


@pytest.fixture
def nirdeploy_target(request) -> str:
    """The target this test runs for: from ``--nirdeploy-target`` (one test per target when
    several are given) or the ``nirdeploy_target`` ini option."""
    param = getattr(request, "param", None)
    if param:
        return param
    s = _state(request.config)
    if s is None or not s.targets:
        pytest.fail("no nirdeploy target: run pytest with --nirdeploy-target TARGET[:VARIANT] (e.g. xylo:audio2) "
                    "or set nirdeploy_target in the pytest ini options", pytrace=False)
    return s.targets[0]


@pytest.fixture
def nirdeploy_check():
    """``nirdeploy_check(graph, target=None, *, dt=None, reset=..., ...) -> FitReport``: the fit
    report of ``graph`` (recorded for ``--nirdeploy-report``); asserts nothing."""
    from .assertions import nirdeploy_check as check

    return check


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    s = _state(item.config)
    if s is None:
        yield
        return
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("nirdeploy_target") if callspec is not None else None
    s.current = _session.TestRecord(item.nodeid, target=target or (s.targets[0] if s.targets else None))
    try:
        yield
    finally:
        rec, s.current = s.current, None
        if rec.checks:
            s.records.append(rec)
            if s.report_dir is not None:
                path = s.report_dir / _test_folder(rec.nodeid) / REPORT_FILE
                try:
                    _write_json(path, _test_data(rec))
                except OSError as e:
                    item.warn(pytest.PytestWarning(_visible(f"nirdeploy: could not write {path}: {e.strerror or e}")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    s = _state(item.config)
    rep = outcome.get_result()
    if s is None or s.current is None or s.current.nodeid != item.nodeid:
        return
    if rep.failed:
        s.current.outcome = "failed" if rep.when == "call" else "error"
    elif rep.skipped and s.current.outcome == "passed":
        s.current.outcome = "skipped"


def pytest_sessionfinish(session, exitstatus) -> None:
    s = _state(session.config)
    if s is None or s.report_dir is None:
        return
    suffix = f"-{s.worker}" if s.worker else ""  # pytest-xdist: one summary per worker
    tests = [_summary_entry(r) for r in s.records]
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    try:
        _write_json(s.report_dir / SUMMARY_JSON.replace(".json", f"{suffix}.json"),
                    {"nirdeploy_ci": 1, "targets": s.targets, "counts": counts, "tests": tests})
        _write_text(s.report_dir / SUMMARY_MD.replace(".md", f"{suffix}.md"), _summary_markdown(tests, counts))
    except OSError as e:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = _visible(f"nirdeploy: could not write the summary in {s.report_dir}: {e.strerror or e}")
        tr.write_line(msg, red=True) if tr is not None else print(msg)


# -- files -----------------------------------------------------------------------------------------
def _test_folder(nodeid: str) -> str:
    """A file-system-safe, unique folder name for a test id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("._")[:100]
    return f"{safe}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


def _test_data(rec: _session.TestRecord) -> dict:
    return {"nirdeploy_ci": 1, "test": rec.nodeid, "outcome": rec.outcome, "checks": rec.checks}


def _summary_entry(rec: _session.TestRecord) -> dict:
    checks = []
    for c in rec.checks:
        e = {k: c[k] for k in ("kind", "graph", "target", "passed")}
        e["fits"] = c["report"]["fits"]
        e["result"] = _result_line(c)
        checks.append(e)
    return {"test": rec.nodeid, "outcome": rec.outcome, "report": f"{_test_folder(rec.nodeid)}/{REPORT_FILE}", "checks": checks}


def _result_line(c: dict) -> str:
    if c.get("message"):
        return c["message"].splitlines()[0]
    if c["kind"] == "agrees":
        return "; ".join(f"{m} {c['comparison'][m]:.3f} >= {f:g}" for m, f in c["floors"].items())
    if c["kind"] == "accuracy":
        a = c["accuracy"]
        return f"chip {100 * a['chip_accuracy']:.1f} %, reference {100 * a['reference_accuracy']:.1f} %"
    used = [f"{r['name']} {r['used']}/{r['limit']}" for r in c["report"]["resources"] if r.get("limit") is not None]
    line = ("fits" if c["report"]["fits"] else "does not fit") + (f" ({', '.join(used[:3])})" if used else "")
    return line + ("; within budget" if c.get("budget") else "")


def _md_cell(s) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _summary_markdown(tests: list[dict], counts: dict) -> str:
    lines = ["## nirdeploy", "",
             ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no test ran a nirdeploy check", ""]
    if tests:
        lines += ["| test | outcome | check | graph | target | result |", "|---|---|---|---|---|---|"]
        for t in tests:
            for c in t["checks"]:
                lines.append("| " + " | ".join(_md_cell(v) for v in (t["test"], t["outcome"], c["kind"], c["graph"], c["target"],
                                                                    c["result"])) + " |")
    return "\n".join(lines) + "\n"


def _visible(s) -> str:
    from ..render import terminal_safe

    return terminal_safe(str(s))


_OWN_PREFIX = {".json": b'{\n  "nirdeploy_ci": 1', ".md": b"## nirdeploy\n"}


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that begins as the plugin's own report
    files do (``_OWN_PREFIX``): only such a file is replaced by a later run."""
    import os
    import stat

    prefix = _OWN_PREFIX.get(path.suffix)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if prefix is None or not stat.S_ISREG(st.st_mode):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return os.read(fd, len(prefix)) == prefix
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    """Write through :class:`nirdeploy.outputs.atomic_file` (a temporary file next to ``path``,
    then a rename; the test's folder is created with it and removed again if the write fails),
    with the permissions the umask gives. An existing file is replaced only when the plugin wrote
    it (:func:`_written_by_us`); a link, FIFO, device or folder never."""
    from ..errors import OutputError
    from ..outputs import atomic_file

    ours = _written_by_us(path)
    if not ours and path.is_file() and not path.is_symlink():
        raise OSError("it exists and is not a report nirdeploy wrote; it was left as it is")
    try:
        with atomic_file(path, parents=True, force=ours) as f:  # nothing left on failure
            f.write(text.encode("utf-8"))
    except OutputError as e:
        raise OSError(str(e)) from None  # callers report OSErrors as "could not write"


def _write_json(path: Path, data) -> None:
    from ..backend.report import json_safe

    _write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
