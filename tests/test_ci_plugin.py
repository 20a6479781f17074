"""The pytest plugin, run the way users run it (pytest's own `pytester`): its assertions fail with
the fit report's violations or the chip-vs-reference table on a graph that does not fit, a chip
that disagrees and an accuracy drop, and pass otherwise; its options write CI artefacts; the
example under examples/ci and its GitHub workflow run as shipped."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nirdeploy.backend.target import available_targets, get_target

from conftest import CORPUS, ROOT
from graphs import ff_graph, write

pytest_plugins = ["pytester"]

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"  # trained with reset by subtraction
BIAS_ZERO = CORPUS / "braille_noDelay_bias_zero.nir"  # trained with reset to zero: Xylo cannot do that
CNN = CORPUS / "cnn_sinabs.nir"
EXAMPLE = ROOT / "examples" / "ci"

HEADER = f"""
import numpy as np
import nirdeploy
from nirdeploy.ci import assert_fits, assert_chip_agrees, assert_chip_accuracy
BRAILLE = {str(BRAILLE)!r}
BIAS_ZERO = {str(BIAS_ZERO)!r}
CNN = {str(CNN)!r}
def poisson(rate, batch=16, steps=256, seed=0):
    return np.random.default_rng(seed).poisson(rate, size=(batch, steps, 12))
"""


def makefile(pytester, body: str, name="test_user_model"):
    return pytester.makepyfile(**{name: HEADER + body})


def text(result) -> str:
    return result.stdout.str()


# -- registration ------------------------------------------------------------------------------------
def test_plugin_is_loaded_from_the_entry_point_in_a_fresh_interpreter(pytester):
    r = pytester.runpytest_subprocess("--help")
    assert "--nirdeploy-target" in text(r) and "--nirdeploy-report" in text(r)
    r = pytester.runpytest_subprocess("-p", "no:nirdeploy", "--help")
    assert "--nirdeploy-target" not in text(r)


def test_plugin_module_imports_no_torch():
    code = "import sys, nirdeploy.ci.plugin; bad=[m for m in sys.modules if m.split('.')[0] in ('torch','rockpool','samna','xylosim')]; assert not bad, bad"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# -- assert_fits -------------------------------------------------------------------------------------
def test_assert_fits_passes_and_fails_with_the_violations(pytester, tmp_path):
    big = write(ff_graph(n_in=4, n_hid=1100, n_out=3), tmp_path / "big.nir")
    makefile(pytester, f"""
def test_fits():
    rep = assert_fits(BRAILLE, "xylo:audio2", dt=1e-4, reset="subtract")
    assert rep.fits and rep.variant == "audio2"

def test_unsupported():
    assert_fits(CNN, "xylo:audio2", dt=1e-4)

def test_too_big():
    assert_fits({str(big)!r}, "xylo:audio2", dt=1e-4)
""")
    r = pytester.runpytest()
    r.assert_outcomes(passed=1, failed=2)
    r.stdout.fnmatch_lines([
        "*NirdeployAssertionError: *cnn_sinabs.nir: network does not fit xylo:audio2: 14 violation(s)",
        "E * - [[]unsupported_node] 0 (Conv2d): Conv2d has no Xylo equivalent -- hint: *",
        "E * - [[]not_one_dimensional] input (Input): Xylo layers are vectors*",
    ])
    r.stdout.fnmatch_lines([
        "*big.nir: network does not fit xylo:audio2: 1 violation(s)",
        "E * - [[]hidden_neurons] lif1 (CubaLIF): hidden neurons 1100 > 1000 on xylo:audio2 -- hint: shrink the hidden layers*",
        "E *the fit report warns:",
        "E * - [[]reset_semantics] *",
    ])
    # the message is the report, not a bare assert, and nirdeploy's own frames are hidden
    assert "assertions.py" not in text(r) and "assert False" not in text(r)


def test_assert_fits_with_a_budget(pytester):
    pytester.makefile(".toml", budget='[keep_free]\n"hidden neurons" = 0.97\n"output neurons" = "10%"\n',
                      roomy='[keep_free]\n"hidden neurons" = 0.5\n')
    makefile(pytester, """
def test_over():
    assert_fits(BRAILLE, "xylo:audio2", dt=1e-4, reset="subtract", budget="budget.toml")

def test_within():
    assert_fits(BRAILLE, "xylo:audio2", dt=1e-4, reset="subtract", budget="roomy.toml")

def test_mapping():
    assert_fits(BRAILLE, "xylo:audio2", dt=1e-4, reset="subtract", budget={"keep_free": {"hidden_neurons": 0.99}})
""")
    r = pytester.runpytest()
    r.assert_outcomes(passed=1, failed=2)
    r.stdout.fnmatch_lines([
        "*braille_noDelay_noBias_subtract.nir is over its budget on xylo:audio2 (budget.toml): 1 breach(es)",
        "E * - hidden neurons: 40 of 1000 neurons used (4.0 %) on xylo:audio2; the budget keeps 97 % free, so at most 30 may be used (over by 10)",
    ])
    assert "at most 10 may be used (over by 30)" in text(r)  # 99 % of 1000 kept free


# -- assert_chip_agrees --------------------------------------------------------------------------------
def test_assert_chip_agrees_passes_and_fails_with_the_comparison_table(pytester):
    makefile(pytester, """
def test_agrees():
    cmp = assert_chip_agrees(BRAILLE, "xylo:audio2", poisson(0.4), min_agreement=0.8, dt=1e-4, reset="subtract")
    assert cmp["argmax_agreement"] >= 0.8

def test_disagrees():
    # trained with reset to zero; the chip subtracts the threshold: about 2/3 of the
    # (time, output) entries agree (0.64 measured)
    assert_chip_agrees(BIAS_ZERO, "xylo:audio2", poisson(0.4), min_agreement=0.9, metric="elementwise_agreement", dt=1e-4)

def test_silent():
    assert_chip_agrees(BRAILLE, "xylo:audio2", np.zeros((4, 64, 12), int), min_agreement=0.5, dt=1e-4, reset="subtract")

def test_does_not_fit():
    assert_chip_agrees(CNN, "xylo:audio2", np.zeros((1, 4, 2, 34, 34), int), min_agreement=0.5, dt=1e-4)
""")
    r = pytester.runpytest()
    r.assert_outcomes(passed=1, failed=3)
    r.stdout.fnmatch_lines([
        "*chip simulation of *braille_noDelay_bias_zero.nir on xylo:audio2 disagrees with the float reference: "
        "elementwise_agreement 0.* < 0.9",
        "E *Chip vs reference (chip shifted by 1 steps of latency)*",
        "E *output*chip spikes*reference spikes*",
        "E *spike-count correlation 0.*; element-wise agreement 0.*; same winning output in *% of samples",
        "E *the fit report warns:",
        "E * - [[]reset_semantics] *compiled with --reset zero, but Xylo resets by subtracting the threshold*",
    ])
    r.stdout.fnmatch_lines(["*the chip output is silent on every sample, so agreement figures measure nothing; "
                            "the reference output is silent on every sample*"])
    r.stdout.fnmatch_lines(["*cnn_sinabs.nir: network does not fit xylo:audio2: 14 violation(s)"])
    m = re.search(r"elementwise_agreement (0\.\d+) < 0\.9", text(r))
    assert m and float(m.group(1)) < 0.8


# -- assert_chip_accuracy ------------------------------------------------------------------------------
def test_assert_chip_accuracy_passes_and_fails_on_a_drop(pytester):
    makefile(pytester, """
def labels(graph, x, reset):
    # the float model's own predictions: the reference scores 100 %
    return nirdeploy.simulate_reference(graph, x, dt=1e-4, reset=reset).sum(axis=1).argmax(axis=1)

def test_holds():
    x = poisson(0.4)
    acc = assert_chip_accuracy(BRAILLE, "xylo:audio2", x, labels(BRAILLE, x, "subtract"), min_accuracy=0.8, max_drop=0.2,
                               dt=1e-4, reset="subtract")
    assert acc["reference_accuracy"] == 1.0 and acc["chip_accuracy"] >= 0.8

def test_drop():
    x = poisson(0.05, batch=32)
    assert_chip_accuracy(BIAS_ZERO, "xylo:audio2", x, labels(BIAS_ZERO, x, "zero"), max_drop=0.05, dt=1e-4)

def test_floor():
    x = poisson(0.05, batch=32)
    assert_chip_accuracy(BIAS_ZERO, "xylo:audio2", x, labels(BIAS_ZERO, x, "zero"), min_accuracy=0.99, dt=1e-4)
""")
    r = pytester.runpytest()
    r.assert_outcomes(passed=1, failed=2)
    r.stdout.fnmatch_lines([
        "*on-chip accuracy of *braille_noDelay_bias_zero.nir on xylo:audio2: *% against 100.0 % in the float reference "
        "(drop * points; 32 samples, spike-count argmax, chip shifted by 1 steps of latency)",
        "E * - drop * points > max_drop 5 points",
        "E *silent samples (no output, counted as wrong): chip *, reference 0",
        "E *Chip vs reference*",
    ])
    r.stdout.fnmatch_lines(["E * - chip accuracy * % < min_accuracy 99 %"])
    drops = [float(d) for d in re.findall(r"drop (\d+\.\d) points >", text(r))]
    assert drops and all(d > 10 for d in drops)


# -- arguments -----------------------------------------------------------------------------------------
def test_wrong_arguments_are_usage_errors_that_name_the_problem(pytester, tmp_path):
    one = write(ff_graph(n_in=4, n_hid=8, n_out=1), tmp_path / "one_output.nir")
    makefile(pytester, f"ONE = {str(one)!r}\n" + """
import pytest
from nirdeploy import UsageError

def test_no_target():
    with pytest.raises(UsageError, match="no target: pass target="):
        assert_fits(BRAILLE, dt=1e-4)

@pytest.mark.parametrize("kw, msg", [
    ({"min_agreement": 1.5}, r"must be a number in \\[0, 1\\]"),
    ({"min_agreement": 0.5, "metric": "accuracy"}, "unknown agreement metric 'accuracy'"),
    ({"min_agreement": {}}, "names no metric"),
    ({"min_agreement": True}, "must be a number"),
])
def test_bad_floor(kw, msg):
    with pytest.raises(UsageError, match=msg):
        assert_chip_agrees(BRAILLE, "xylo:audio2", poisson(0.1, batch=1, steps=8), dt=1e-4, **kw)

def test_argmax_of_one_output_measures_nothing():
    with pytest.raises(UsageError, match="argmax_agreement is always 1 for a network with one output"):
        assert_chip_agrees(ONE, "xylo:audio2", np.ones((2, 16, 4), int), min_agreement=0.5, dt=1e-4)

def test_missing_input():
    with pytest.raises(UsageError, match="x \\\\(sample input\\\\) is required"):
        assert_chip_agrees(BRAILLE, "xylo:audio2", min_agreement=0.5, dt=1e-4)

def test_wrong_input_shape():
    with pytest.raises(UsageError, match="expected \\\\(batch, time, 12\\\\)"):
        assert_chip_agrees(BRAILLE, "xylo:audio2", np.zeros((2, 8, 5)), min_agreement=0.5, dt=1e-4)

@pytest.mark.parametrize("kw, msg", [
    ({}, "needs min_accuracy, max_drop or both"),
    ({"max_drop": 5}, "max_drop must be a fraction"),
    ({"min_accuracy": float("nan")}, "min_accuracy must be a fraction"),
])
def test_bad_accuracy_thresholds(kw, msg):
    with pytest.raises(UsageError, match=msg):
        assert_chip_accuracy(BRAILLE, "xylo:audio2", poisson(0.1, 2, 8), np.zeros(2, int), dt=1e-4, **kw)

@pytest.mark.parametrize("y, msg", [
    (np.zeros(3, int), "labels have shape \\\\(3,\\\\); expected \\\\(2,\\\\)"),
    (np.array([0, 7]), "class indices in \\\\[0, 6\\\\]"),
    (np.array([0.5, 1.0]), "integer class indices"),
    (np.zeros((2, 1), int), "one class index per sample"),
])
def test_bad_labels(y, msg):
    with pytest.raises(UsageError, match=msg):
        assert_chip_accuracy(BRAILLE, "xylo:audio2", poisson(0.1, 2, 8), y, max_drop=0.1, dt=1e-4)
""")
    r = pytester.runpytest()
    r.assert_outcomes(passed=15)


# -- targets ---------------------------------------------------------------------------------------------
def test_target_option_sets_the_default_and_parametrizes(pytester):
    makefile(pytester, """
def test_default():
    assert assert_fits(BRAILLE, dt=1e-4, reset="subtract").variant in ("audio2", "imu")

def test_each(nirdeploy_target):
    rep = assert_fits(BRAILLE, nirdeploy_target, dt=1e-4, reset="subtract")
    assert f"{rep.target}:{rep.variant}" == nirdeploy_target

def test_fixture_target_is_the_default(nirdeploy_target):
    rep = assert_fits(BRAILLE, dt=1e-4, reset="subtract")
    assert f"{rep.target}:{rep.variant}" == nirdeploy_target
""")
    r = pytester.runpytest("-v", "--nirdeploy-target", "xylo:audio2,xylo:imu")
    r.assert_outcomes(passed=5)
    r.stdout.fnmatch_lines(["*test_each[[]xylo:audio2] PASSED*", "*test_each[[]xylo:imu] PASSED*"])
    r = pytester.runpytest("--nirdeploy-target", "xylo:all")  # every Xylo variant
    r.assert_outcomes(passed=7)
    r = pytester.runpytest("--nirdeploy-target", "all", "--collect-only", "-q")  # every target and variant
    assert sum("test_each[" in line for line in r.outlines) == sum(len(get_target(t).variants()) for t in available_targets())
    r = pytester.runpytest("--nirdeploy-target", "xylo")  # default variant
    r.assert_outcomes(passed=3)


def test_target_from_ini_and_errors(pytester):
    makefile(pytester, """
def test_each(nirdeploy_target):
    assert nirdeploy_target == "xylo:imu"
""")
    pytester.makeini("[pytest]\nnirdeploy_target = xylo:imu\n")
    pytester.runpytest().assert_outcomes(passed=1)
    r = pytester.runpytest("--nirdeploy-target", "nochip")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "--nirdeploy-target: unknown target 'nochip'" in r.stderr.str()
    r = pytester.runpytest("--nirdeploy-target", "xylo:audio9")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "unknown variant 'audio9'" in r.stderr.str()


def test_fixture_without_a_target_says_how_to_set_one(pytester):
    makefile(pytester, "def test_x(nirdeploy_target):\n    pass\n")
    r = pytester.runpytest()
    r.assert_outcomes(errors=1)
    r.stdout.fnmatch_lines(["*no nirdeploy target: run pytest with --nirdeploy-target TARGET[[]:VARIANT]*"])


# -- report folder ---------------------------------------------------------------------------------------
def test_report_folder_holds_each_tests_report_and_a_summary(pytester):
    makefile(pytester, """
def test_check(nirdeploy_check):
    rep = nirdeploy_check(BRAILLE, dt=1e-4, reset="subtract")
    assert rep.fits

def test_fails():
    assert_fits(CNN, dt=1e-4)

def test_agrees():
    assert_chip_agrees(BRAILLE, x=poisson(0.4, batch=4, steps=64), min_agreement={"count_correlation": -1}, dt=1e-4)

def test_unrelated():
    assert 1
""")
    r = pytester.runpytest("--nirdeploy-target", "xylo:audio2", "--nirdeploy-report", "out/ci")
    r.assert_outcomes(passed=3, failed=1)
    out = pytester.path / "out" / "ci"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"passed": 2, "failed": 1, "error": 0, "skipped": 0}
    assert summary["targets"] == ["xylo:audio2"]
    tests = {t["test"].split("::")[1]: t for t in summary["tests"]}
    assert set(tests) == {"test_check", "test_fails", "test_agrees"}  # test_unrelated ran no check
    fails = json.loads((out / tests["test_fails"]["report"]).read_text())
    assert fails["outcome"] == "failed" and fails["test"].endswith("::test_fails")
    (c,) = fails["checks"]
    assert c["kind"] == "fits" and c["passed"] is False and c["target"] == "xylo:audio2"
    assert "[unsupported_node] 0 (Conv2d)" in c["message"]
    assert c["report"]["fits"] is False and len(c["report"]["violations"]) == 14  # the fit report, as compile writes it
    check = json.loads((out / tests["test_check"]["report"]).read_text())["checks"][0]
    assert check["kind"] == "check" and check["passed"] and check["report"]["settings"]["reset"] == "subtract"
    agrees = json.loads((out / tests["test_agrees"]["report"]).read_text())["checks"][0]
    assert set(agrees["comparison"]) >= {"argmax_agreement", "count_correlation", "chip_counts"}
    md = (out / "summary.md").read_text()
    assert md.startswith("## nirdeploy") and "2 passed, 1 failed" in md
    assert "| " + tests["test_fails"]["test"] + " | failed | fits | " in md
    # a second run replaces its own files and leaves the rest alone
    (out / "mine.txt").write_text("keep")
    pytester.runpytest("--nirdeploy-target", "xylo:audio2", "--nirdeploy-report", "out/ci")
    assert (out / "mine.txt").read_text() == "keep"
    assert not [p for p in out.rglob("*.tmp")]


def test_report_folder_that_is_a_file_is_a_usage_error(pytester):
    makefile(pytester, "def test_x():\n    pass\n")
    (pytester.path / "rep").write_text("a file")
    r = pytester.runpytest("--nirdeploy-report", "rep")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "exists and is not a folder" in r.stderr.str()
    assert (pytester.path / "rep").read_text() == "a file"


def test_assertions_work_without_pytest_running_them():
    """Imported in a plain script: no plugin session, a target is passed, nothing is recorded."""
    code = (f"from nirdeploy.ci import assert_fits, NirdeployAssertionError\n"
            f"assert assert_fits({str(BRAILLE)!r}, 'xylo:imu', dt=1e-4).fits\n"
            f"try:\n    assert_fits({str(CNN)!r}, 'xylo:imu', dt=1e-4)\n"
            f"except NirdeployAssertionError as e:\n    assert 'unsupported_node' in str(e) and not e.result.fits\n"
            f"else:\n    raise SystemExit('no failure')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# -- the shipped example -----------------------------------------------------------------------------------
def user_repository(pytester) -> Path:
    """examples/ci laid out as a user's repository: model/, budget.toml, tests/test_chip.py and
    the workflow, with the graph the example links to copied in."""
    repo = pytester.path
    shutil.copytree(EXAMPLE / "model", repo / "model")  # follows the model/net.nir link
    shutil.copy(EXAMPLE / "budget.toml", repo / "budget.toml")
    (repo / "tests").mkdir()
    shutil.copy(EXAMPLE / "test_chip.py", repo / "tests" / "test_chip.py")
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(EXAMPLE / "nirdeploy.yml", repo / ".github" / "workflows" / "nirdeploy.yml")
    assert (repo / "model" / "net.nir").read_bytes() == BRAILLE.read_bytes()
    return repo


def test_example_test_file_passes_as_shipped(pytester):
    user_repository(pytester)
    r = pytester.runpytest("tests/test_chip.py", "--nirdeploy-target", "xylo:audio2", "--nirdeploy-report", "rep")
    r.assert_outcomes(passed=3)
    summary = json.loads((pytester.path / "rep" / "summary.json").read_text())
    assert [c["kind"] for t in summary["tests"] for c in t["checks"]] == ["fits", "agrees", "accuracy"]
    r = pytester.runpytest("tests/test_chip.py", "--nirdeploy-target", "xylo:all")
    r.assert_outcomes(passed=9)
    # the budget serves other targets through their own [targets.NAME] tables (Loihi 2 lists other resources)
    r = pytester.runpytest("tests/test_chip.py", "--nirdeploy-target", "loihi2", "-k", "budget")
    r.assert_outcomes(passed=1)


def test_example_catches_a_worse_model(pytester):
    """The example's checks bite: a network that does not fit, and one whose chip output
    diverges from its float model (the same file trained with reset to zero)."""
    repo = user_repository(pytester)
    shutil.copy(CNN, repo / "model" / "net.nir")
    r = pytester.runpytest("tests/test_chip.py", "--nirdeploy-target", "xylo:audio2")
    r.assert_outcomes(failed=3)
    r.stdout.fnmatch_lines(["*model/net.nir: network does not fit xylo:audio2: 14 violation(s)"])


def workflow_steps(path: Path) -> tuple[dict, list[str]]:
    """The env block and the `run:` commands of the example workflow (a small reader for this
    file's layout: no YAML library is a dependency)."""
    env, runs, in_env = {}, [], False
    for line in path.read_text().splitlines():
        if re.match(r"^env:\s*$", line):
            in_env = True
            continue
        if in_env and re.match(r"^\S", line):
            in_env = False
        m = re.match(r"^  (\w+):\s*(.*?)\s*(#.*)?$", line)
        if in_env and m:
            env[m.group(1)] = m.group(2)
        m = re.match(r"^\s+run:\s*(.+)$", line)
        if m:
            runs.append(m.group(1))
    return env, runs


def test_example_workflow_commands_run(pytester, tmp_path):
    repo = user_repository(pytester)
    env, runs = workflow_steps(repo / ".github" / "workflows" / "nirdeploy.yml")
    assert env["TARGET"] == "xylo:audio2" and env["GRAPH"] == "model/net.nir"
    assert runs[0].startswith("python -m pip install") and "$NIRDEPLOY" in runs[0]
    summary = tmp_path / "step_summary.md"
    full = {**os.environ, **env, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(repo),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    for cmd in runs[1:]:  # nirdeploy is installed here already
        r = subprocess.run(["bash", "-c", cmd], cwd=repo, env=full, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
        if "--format github" in cmd:
            assert "fits, within budget on xylo:audio2" in r.stdout
    junit = (repo / "nirdeploy-junit.xml").read_text()
    assert junit.startswith("<?xml") and junit.count("<testcase ") == 3 + 3 * 4  # 3 variants, 4 budget lines each
    assert (repo / "nirdeploy-report" / "summary.json").is_file() and (repo / "pytest-junit.xml").is_file()
    assert summary.read_text().startswith("## nirdeploy")


def readme_in_ci_block(lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## In CI"):]
    section = section[: section.index("\n## ", 1)]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_readme_in_ci_example_runs(pytester):
    repo = user_repository(pytester)
    shutil.copy(repo / "model" / "sample_input.npy", repo / "model" / "x.npy")
    shutil.copy(repo / "model" / "sample_labels.npy", repo / "model" / "y.npy")
    pytester.makepyfile(test_from_readme=readme_in_ci_block("python"))
    r = pytester.runpytest("test_from_readme.py", "--nirdeploy-target", "xylo:audio2,xylo:imu")
    r.assert_outcomes(passed=2)
    from nirdeploy.ci import load_budget

    (repo / "readme_budget.toml").write_text(readme_in_ci_block("toml"))
    b = load_budget(repo / "readme_budget.toml")
    assert b.keep_free == {"hidden neurons": 0.2, "max_fan_out_per_neuron": 0.1} and b.sample_input == repo / "model" / "x.npy"


@pytest.mark.parametrize("nodeid", [
    "tests/test_a.py::test_b[xylo:audio2]",
    "tests/test_a.py::test_b[../../etc/passwd]",
    "tests/test_a.py::test_b[" + "x" * 500 + "]",
    "tests/t.py::test_\u00e9\u4e2d[a b\x1b]",
    "..",
])
def test_report_folder_names_are_safe_and_unique(nodeid):
    from nirdeploy.ci.plugin import _test_folder

    name = _test_folder(nodeid)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,109}", name) and name not in (".", "..") and not name.startswith(".")
    assert _test_folder(nodeid + "x") != name


def test_report_folder_that_cannot_be_created_is_a_usage_error(pytester):
    makefile(pytester, "def test_x():\n    pass\n")
    (pytester.path / "afile").write_text("a file")
    r = pytester.runpytest("--nirdeploy-report", "afile/sub")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "--nirdeploy-report afile/sub: cannot create it" in r.stderr.str()
    assert (pytester.path / "afile").read_text() == "a file"
