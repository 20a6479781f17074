"""`nirdeploy check --format json|junit|github`: the same exit codes as the text output, JUnit XML
that validates against the Ant (windyroad) and Jenkins schemas, and GitHub workflow commands
that GitHub's runner parses back to the violation text, one line per violation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nirdeploy.backend.target import available_targets, get_target
from click.testing import CliRunner

from nirdeploy.backend.report import FitReport, Resource, Violation
from nirdeploy.ci import formats
from nirdeploy.ci.budget import BudgetResult
from nirdeploy.cli import main

from conftest import CORPUS, require_oracle
from graphs import ff_graph, unsupported_if_graph, write

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"
CNN = CORPUS / "cnn_sinabs.nir"
XSD = Path(__file__).parent / "data" / "junit"
SCHEMAS = ("windyroad-JUnit.xsd", "jenkins-junit-10.xsd")


def run(graph, *args):
    """``nirdeploy check GRAPH ARGS...``"""
    return CliRunner().invoke(main, ["check", str(graph), *[str(a) for a in args]], catch_exceptions=False)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Fits nowhere on Xylo Audio 2: 1100 hidden neurons."""
    return write(ff_graph(n_in=4, n_hid=1100, n_out=3), tmp_path_factory.mktemp("g") / "big.nir")


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """An unsupported IF node whose name holds every character the formats must escape."""
    name = "if:1,a%b\x1b[31m\u00e9"
    g = unsupported_if_graph(name)
    return write(g, tmp_path_factory.mktemp("g") / "odd.nir"), name


# -- exit codes and JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github"])
def test_exit_codes_are_the_same_in_every_format(fmt, big, tmp_path):
    base = ["-t", "xylo:audio2", "--dt", "1e-4", "--format", fmt]
    assert run(BRAILLE, *base, "--reset", "subtract").exit_code == 0
    assert run(big, *base).exit_code == 1
    assert run(CNN, *base).exit_code == 1
    assert run(tmp_path / "missing.nir", *base).exit_code == 2
    assert run(BRAILLE, "-t", "nochip", "--dt", "1e-4", "--format", fmt).exit_code == 2
    assert run(BRAILLE, "-t", "all", "--dt", "1e-4", "--format", fmt).exit_code == 0
    assert run(big, "-t", "xylo:all", "--dt", "1e-4", "--format", fmt).exit_code == 1  # fits no Xylo variant
    assert run(big, "-t", "all", "--dt", "1e-4", "--format", fmt).exit_code == 0  # Loihi 2 (multi-core) holds it: any fit is 0


@pytest.mark.parametrize("target", ["xylo:imu", "xylo:all", "all"])
def test_json_flag_is_an_alias_of_format_json(target):
    a = run(BRAILLE, "-t", target, "--dt", "1e-4", "--json")
    b = run(BRAILLE, "-t", target, "--dt", "1e-4", "--format", "json")
    assert a.exit_code == b.exit_code == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)
    data = json.loads(a.stdout)
    n_all = sum(len(get_target(t).variants()) for t in available_targets())
    if target.endswith("all"):
        assert isinstance(data, list) and len(data) == (3 if target == "xylo:all" else n_all)
    else:
        assert data["variant"] == "imu"
    assert run(BRAILLE, "-t", target, "--dt", "1e-4", "--json", "--format", "json").exit_code == 0


def test_json_and_another_format_contradict():
    r = run(BRAILLE, "-t", "xylo", "--dt", "1e-4", "--json", "--format", "junit")
    assert r.exit_code == 2 and "--json and --format junit" in r.stderr


def test_text_output_is_unchanged_by_the_new_options():
    r = run(BRAILLE, "-t", "all", "--dt", "1e-4")
    assert r.exit_code == 0 and "Fit on every target" in r.stdout and "xylo:imu" in r.stdout
    r = run(CNN, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "text")
    assert r.exit_code == 1 and "DOES NOT FIT" in r.stdout and "unsupported_node" in r.stdout


# -- JUnit -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schemas():
    etree = require_oracle("lxml.etree")
    return {name: etree.XMLSchema(etree.parse(str(XSD / name))) for name in SCHEMAS}


def validate(xml: str, schemas) -> "object":
    from lxml import etree

    doc = etree.fromstring(xml.encode("utf-8"))
    for name, schema in schemas.items():
        assert schema.validate(doc), f"{name}: {schema.error_log}\n{xml}"
    return doc


def test_schemas_reject_what_they_should(schemas):
    """The validation can fail: a test case without classname, and a suite without hostname."""
    from lxml import etree

    bad = etree.fromstring(b'<testsuites><testsuite name="s" package="p" id="0" timestamp="2024-01-01T00:00:00" '
                           b'tests="1" failures="0" errors="0" time="0"><properties/><testcase name="t" time="0"/>'
                           b"<system-out/><system-err/></testsuite></testsuites>")
    assert not schemas["windyroad-JUnit.xsd"].validate(bad)
    assert not schemas["jenkins-junit-10.xsd"].validate(etree.fromstring(b'<testsuite name="s"/>'))


def test_junit_fits(schemas):
    r = run(BRAILLE, "-t", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract", "--format", "junit")
    assert r.exit_code == 0
    doc = validate(r.stdout, schemas)
    suite = doc.find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "0" and suite.get("errors") == "0"
    (case,) = suite.findall("testcase")
    assert case.get("name") == "fits xylo:audio2" and len(case) == 0
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["graph"] == str(BRAILLE) and props["reset"] == "subtract"


def test_junit_failure_carries_every_violation_text(schemas):
    r = run(CNN, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "junit")
    assert r.exit_code == 1
    doc = validate(r.stdout, schemas)
    (case,) = doc.iter("testcase")
    failure = case.find("failure")
    assert failure.get("type") == "does_not_fit" and "does not fit xylo:audio2: 14 violation(s)" in failure.get("message")
    lines = failure.text.splitlines()
    assert len(lines) == 14  # ten unsupported nodes, the input's shape, and the sizes checked around them
    assert "[unsupported_node] 0 (Conv2d): Conv2d has no Xylo equivalent" in lines[0]
    assert "[not_one_dimensional] input (Input)" in lines[10]
    assert [ln.split("]")[0] for ln in lines[-3:]] == ["[input_channels", "[hidden_neurons", "[output_neurons"]
    assert doc.find("testsuite").get("failures") == "1"


def test_junit_one_testcase_per_target_variant(schemas, big):
    r = run(big, "-t", "xylo:all", "--dt", "1e-4", "--format", "junit")
    doc = validate(r.stdout, schemas)
    cases = list(doc.iter("testcase"))
    assert [c.get("name") for c in cases] == ["fits xylo:audio2", "fits xylo:audio3", "fits xylo:imu"]
    assert all(c.find("failure") is not None for c in cases)
    assert "[hidden_neurons] lif1 (CubaLIF): hidden neurons 1100 > 1000 on xylo:audio2" in cases[0].find("failure").text
    # warnings are not failures: they are in the suite's system-out
    assert "warning: [reset_semantics]" in doc.find("testsuite").find("system-out").text


def test_junit_invalid_input_is_an_error_testcase(schemas, tmp_path):
    r = run(tmp_path / "missing.nir", "-t", "xylo", "--format", "junit")
    assert r.exit_code == 2
    doc = validate(r.stdout, schemas)
    (case,) = doc.iter("testcase")
    err = case.find("error")
    assert err is not None and "missing.nir" in err.get("message") and err.get("type")
    assert doc.find("testsuite").get("errors") == "1"


def test_junit_escapes_what_xml_cannot_carry(schemas, odd):
    path, name = odd
    r = run(path, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "junit")
    assert r.exit_code == 1
    doc = validate(r.stdout, schemas)
    text = doc.find(".//failure").text
    assert "if:1,a%b\\x1b[31m\u00e9 (IF)" in text and "\x1b" not in r.stdout


# -- GitHub annotations ----------------------------------------------------------------------------------
def parse_command(line: str):
    """Parse a workflow command as GitHub's runner does (ActionCommand.TryParseV2): '::', the
    command and its properties up to the next '::', then the data; properties split at ',' and
    the first '='; then unescape."""
    assert line.startswith("::")
    end = line.index("::", 2)
    info, data = line[2:end], line[end + 2:]
    cmd, _, props = info.partition(" ")
    unesc = lambda s, p: (s.replace("%0D", "\r").replace("%0A", "\n")  # noqa: E731
                          .replace("%3A", ":" if p else "%3A").replace("%2C", "," if p else "%2C").replace("%25", "%"))
    out = {}
    for kv in filter(None, props.split(",")):
        k, _, v = kv.partition("=")
        out[k] = unesc(v, True)
    return cmd, out, unesc(data, False)


def test_github_one_line_per_violation_with_file_and_node(big):
    r = run(CNN, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "github")
    assert r.exit_code == 1
    cmds = [parse_command(line) for line in r.stdout.splitlines() if line.startswith("::")]
    assert len(cmds) == 14 and all(c == "error" for c, _, _ in cmds)
    assert all(p["file"] == str(CNN) for _, p, _ in cmds)
    assert cmds[0][1]["title"] == "nirdeploy xylo:audio2 [unsupported_node] 0"
    assert cmds[0][2].startswith("[unsupported_node] 0 (Conv2d): Conv2d has no Xylo equivalent -- hint: ")
    assert "does not fit on xylo:audio2 (14 error(s), 0 warning(s))" in r.stdout.splitlines()[-1]
    # warnings are ::warning, errors ::error
    r = run(big, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "github")
    kinds = [parse_command(line)[0] for line in r.stdout.splitlines() if line.startswith("::")]
    # the hidden-neuron count (input channels reaching many neurons are no fan-out); the reset and two
    # time-constant changes; the worst-case real-time clock as a notice
    assert sorted(kinds) == ["error", "notice", "warning", "warning", "warning"]


def test_github_escaping_round_trips_through_the_runner_parser(odd):
    path, name = odd
    r = run(path, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "github")
    lines = [line for line in r.stdout.splitlines() if line.startswith("::")]
    hit = [parse_command(line) for line in lines if "[unsupported_node]" in line]
    assert len(hit) == 1
    _, props, data = hit[0]
    shown = name.replace("\x1b", "\\x1b")
    assert props["title"].endswith(f"[unsupported_node] {shown}")
    assert data.startswith(f"[unsupported_node] {shown} (IF): IF has no Xylo equivalent")


def test_github_escaping_of_newlines_percent_colon_comma():
    rep = FitReport("chip", "v1", resources=[Resource("r", 2, 1)], violations=[
        Violation("rule,x", "line one\nline two: 100% full\r", node="a:b,c", node_type="LIF", hint="50%"),
        Violation("soft", "just so", severity="warning"),
        Violation("fyi", "for information", severity="info"),
    ])
    out = formats.github_annotations("dir, with: odd%/g.nir", [formats.CheckOutcome(rep)])
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("nirdeploy: ")
    cmd, props, data = parse_command(lines[0])
    assert cmd == "error" and props == {"file": "dir, with: odd%/g.nir", "title": "nirdeploy chip:v1 [rule,x] a:b,c"}
    assert data == str(rep.violations[0]) and "\n" in data
    assert [parse_command(x)[0] for x in lines[1:3]] == ["warning", "notice"]


def test_github_budget_breach_points_at_the_budget_file():
    rep = FitReport("chip", "v1")
    b = BudgetResult("keep_free", "hidden neurons", "chip:v1", False, "hidden neurons: 9 of 10 used", share=0.2, used=9,
                     limit=10, allowed=8)
    out = formats.github_annotations("g.nir", [formats.CheckOutcome(rep, [b])], budget_file="ci/budget.toml")
    cmd, props, data = parse_command(out.splitlines()[0])
    assert (cmd, props["file"], data) == ("error", "ci/budget.toml", "hidden neurons: 9 of 10 used")
    assert props["title"] == "nirdeploy chip:v1 budget: keep 20 % of hidden neurons free"


def test_github_relative_file_inside_the_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    rep = FitReport("chip", "v1", violations=[Violation("r", "m")])
    out = formats.github_annotations(str(tmp_path / "models" / "g.nir"), [formats.CheckOutcome(rep)])
    assert parse_command(out.splitlines()[0])[1]["file"] == "models/g.nir"


def test_github_invalid_input_is_one_error_line(tmp_path):
    r = run(tmp_path / "missing.nir", "-t", "xylo", "--format", "github")
    assert r.exit_code == 2
    (line,) = r.stdout.splitlines()
    cmd, props, data = parse_command(line)
    assert cmd == "error" and props["file"].endswith("missing.nir") and "missing.nir" in data


def test_junit_budget_lines_are_testcases(schemas, tmp_path):
    b = tmp_path / "budget.toml"
    b.write_text('[keep_free]\n"hidden neurons" = 0.97\n"output neurons" = 0.1\n')
    r = run(BRAILLE, "-t", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract", "--budget", b, "--format", "junit")
    assert r.exit_code == 1
    doc = validate(r.stdout, schemas)
    cases = {c.get("name"): c for c in doc.iter("testcase")}
    assert list(cases) == ["fits xylo:audio2", "budget xylo:audio2: keep 97 % of hidden neurons free",
                           "budget xylo:audio2: keep 10 % of output neurons free"]
    fail = cases["budget xylo:audio2: keep 97 % of hidden neurons free"].find("failure")
    assert fail.get("type") == "budget_keep_free" and "at most 30 may be used (over by 10)" in fail.text
    assert len(cases["budget xylo:audio2: keep 10 % of output neurons free"]) == 0
    assert doc.find("testsuite").get("failures") == "1"
