"""Budget files (`nirdeploy check --budget budget.toml`): a share of each resource kept free and
floors on chip-vs-reference agreement. Over budget is exit 1 with one message per breach; a
budget that cannot be used (syntax, unknown key, resource or metric, bad value, missing sample)
is exit 2 with a message that names the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nirdeploy.backend.report import FitReport, Resource
from nirdeploy.ci.budget import Budget, BudgetError, check_resources, load_budget, normalize_name, parse_budget
from nirdeploy.cli import main

from conftest import CORPUS

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"  # 12 in, 40 hidden, 7 out; fan-out 47
CNN = CORPUS / "cnn_sinabs.nir"
OPTS = ["-t", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract"]


def check(graph, budget, *args):
    return CliRunner().invoke(main, ["check", str(graph), *OPTS, "--budget", str(budget), *map(str, args)],
                              catch_exceptions=False)


def budget_file(tmp_path, text: str, name="budget.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    x = np.random.default_rng(7).poisson(0.3, size=(8, 128, 12)).astype(np.int8)
    p = tmp_path_factory.mktemp("s") / "sample.npy"
    np.save(p, x)
    return p


# -- within and over budget ----------------------------------------------------------------------
def test_within_budget_exits_0(tmp_path):
    b = budget_file(tmp_path, '[keep_free]\n"hidden neurons" = "20%"\nmax_fan_out_per_neuron = 0.2\n')
    r = check(BRAILLE, b)
    assert r.exit_code == 0, r.output
    assert "FITS" in r.stdout and "keep 20 % of hidden neurons free" in r.stdout and "OVER" not in r.stdout


def test_each_breach_has_its_message_and_exit_1(tmp_path):
    # 40 of 1000 hidden neurons with 97 % kept free: at most 30; fan-out 40 of 64 (40 recurrent targets;
    # the readout weights are a dense RAM, no fan-out) with 50 % free: at most 32
    b = budget_file(tmp_path, '[keep_free]\nhidden_neurons = 0.97\n"max fan-out per neuron" = "50 %"\n"input channels" = 0.25\n')
    r = check(BRAILLE, b)
    assert r.exit_code == 1
    over = [line for line in r.stdout.splitlines() if line.startswith("over budget: ")]
    assert over == [
        "over budget: hidden neurons: 40 of 1000 neurons used (4.0 %) on xylo:audio2; the budget keeps 97 % free, "
        "so at most 30 may be used (over by 10)",
        "over budget: max fan-out per neuron: 40 of 64 targets used (62.5 %) on xylo:audio2; the budget keeps 50 % free, "
        "so at most 32 may be used (over by 8)",
    ]


@pytest.mark.parametrize("share, code", [("0.125", 0), ("0.13", 1), ('"12.5%"', 0), ("0", 0), ("1", 1)])
def test_counts_allow_the_whole_number_below_the_share(tmp_path, share, code):
    # 7 of 8 output neurons: keeping 12.5 % free allows 7, 13 % allows 6
    assert check(BRAILLE, budget_file(tmp_path, f'[keep_free]\n"output neurons" = {share}\n')).exit_code == code


def test_names_match_case_and_separators_insensitively():
    assert normalize_name("Max_Fan-Out  per_neuron") == normalize_name("max fan-out per neuron") == "max fan out per neuron"


def test_budget_applies_to_every_target_with_all(tmp_path):
    b = budget_file(tmp_path, '[keep_free]\n"output neurons" = 0.5\n')
    r = CliRunner().invoke(main, ["check", str(BRAILLE), "-t", "all", "--dt", "1e-4", "--budget", str(b), "--format", "json"])
    data = json.loads(r.stdout)
    # a name applies to every report that lists the resource (Speck reports have no output neurons)
    assert all(not d["budget"]["results"] for d in data if d["target"] != "xylo")
    res = {d["variant"]: d["budget"]["results"][0] for d in data if d["target"] == "xylo"}
    # 7 outputs: audio2 has 8 (at most 4 with half free), audio3 32 (16), imu 16 (8)
    assert {v: (x["allowed"], x["passed"]) for v, x in res.items()} == {"audio2": (4, False), "audio3": (16, True), "imu": (8, True)}
    assert r.exit_code == 0  # at least one target is within budget


def test_json_carries_the_budget(tmp_path):
    b = budget_file(tmp_path, '[keep_free]\n"hidden neurons" = 0.5\n')
    r = check(BRAILLE, b, "--format", "json")
    d = json.loads(r.stdout)
    assert d["fits"] is True and d["budget"]["passed"] is True and d["budget"]["source"] == str(b)
    (res,) = d["budget"]["results"]
    assert res["kind"] == "keep_free" and res["used"] == 40 and res["limit"] == 1000 and res["allowed"] == 500


def test_a_network_that_does_not_fit_still_exits_1_with_a_budget(tmp_path):
    b = budget_file(tmp_path, '[keep_free]\n"hidden neurons" = 0.2\n')
    r = check(CNN, b)  # does not lower, but the check still counts its hidden neurons: the budget is evaluated on them
    assert r.exit_code == 1 and "DOES NOT FIT" in r.stdout
    assert "over budget: hidden neurons: 8960 of 1000 neurons used" in r.stdout and "at most 800 may be used" in r.stdout


# -- agreement floors ------------------------------------------------------------------------------
def test_agreement_floor_pass_and_breach(tmp_path, sample):
    ok = budget_file(tmp_path, f'sample_input = "{sample}"\n[min_agreement]\nargmax_agreement = 0.0\n', "ok.toml")
    r = check(BRAILLE, ok, "--format", "json")
    assert r.exit_code == 0, r.output
    (res,) = json.loads(r.stdout)["budget"]["results"]
    assert res["kind"] == "min_agreement" and res["passed"] and 0 <= res["value"] <= 1
    # the chip never reproduces every (time, output) entry of the float reference
    bad = budget_file(tmp_path, f'sample_input = "{sample}"\n[min_agreement]\nelementwise_agreement = 1.0\n', "bad.toml")
    r = check(BRAILLE, bad)
    assert r.exit_code == 1
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("over budget: ")]
    assert line.startswith("over budget: elementwise_agreement 0.") and "< 1 (budget floor) on xylo:audio2" in line


def test_sample_input_is_relative_to_the_budget_file(tmp_path, sample):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "x.npy").write_bytes(sample.read_bytes())
    b = budget_file(tmp_path / "ci", 'sample_input = "x.npy"\n[min_agreement]\ncount_correlation = -1\n')
    assert load_budget(b).sample_input == tmp_path / "ci" / "x.npy"
    assert check(BRAILLE, b).exit_code == 0


# -- budgets that cannot be used: exit 2 ------------------------------------------------------------
BAD = [
    ("[keep_free\nx = 1", "is not valid TOML"),
    ("keepfree = 1", "unknown key(s) 'keepfree'"),
    ("version = 2", "version must be 1"),
    ("keep_free = 0.2", "[keep_free] must be a table"),
    ('[keep_free]\n"hidden neurons" = 20', "is above 1: shares are fractions (0.2) or percentages"),
    ('[keep_free]\n"hidden neurons" = -0.1', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = "120%"', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = "lots"', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = true', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = nan', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = [0.2]', "is not a share of the chip"),
    ('[keep_free]\n"hidden neurons" = 0.2\nhidden_neurons = 0.3', "which are the same resource"),
    ('[keep_free]\n"" = 0.2', "empty resource name"),
    ('[keep_free]\n"hiden neurons" = 0.2', "[keep_free] names 'hiden neurons', which the fit report does not list; its resources: "),
    ('sample_input = "s.npy"\n[min_agreement]\nargmax = 0.9', "unknown metric 'argmax'"),
    ('sample_input = "s.npy"\n[min_agreement]\nargmax_agreement = 1.5', "argmax_agreement = 1.5 must be a number in [0, 1]"),
    ('sample_input = "s.npy"\n[min_agreement]\ncount_correlation = -2', "must be a number in [-1, 1]"),
    ('sample_input = "s.npy"\n[min_agreement]\nargmax_agreement = "high"', "must be a number in [0, 1]"),
    ("[min_agreement]\nargmax_agreement = 0.9", "[min_agreement] needs sample input"),
    ('sample_input = "s.npy"', "sample_input is given but [min_agreement] sets no floor"),
    ("sample_input = 3\n[min_agreement]\nargmax_agreement = 0.9", "sample_input must be a path"),
    ('sample_input = "nothere.npy"\n[min_agreement]\nargmax_agreement = 0.9', "nothere.npy does not exist"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:30] for _, m in BAD])
def test_unusable_budget_is_exit_2_with_a_clear_message(tmp_path, text, message):
    r = check(BRAILLE, budget_file(tmp_path, text))
    assert r.exit_code == 2, r.output
    assert message in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.output


def test_unusable_budget_fails_before_the_check_and_names_the_line(tmp_path):
    r = check(BRAILLE, budget_file(tmp_path, "[keep_free]\nx = 0.1\ny = = 2\n"), "--format", "github")
    assert r.exit_code == 2
    assert r.stdout.startswith("::error file=") and ",line=3," in r.stdout and "budget.toml" in r.stdout


def test_unknown_resource_lists_the_known_ones(tmp_path):
    r = check(BRAILLE, budget_file(tmp_path, "[keep_free]\nneurons = 0.2\n"))
    assert r.exit_code == 2
    assert "'hidden neurons'" in r.stderr and "'max fan-out per neuron'" in r.stderr


def test_missing_or_odd_budget_files(tmp_path, sample):
    assert check(BRAILLE, tmp_path / "none.toml").exit_code == 2
    assert check(BRAILLE, tmp_path).exit_code == 2  # a folder
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    r = check(BRAILLE, tmp_path / "bin.toml")
    assert r.exit_code == 2 and "UTF-8" in r.stderr
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 10, 5)))
    r = check(BRAILLE, budget_file(tmp_path, f'sample_input = "{wrong}"\n[min_agreement]\nargmax_agreement = 0.5\n'))
    assert r.exit_code == 2 and "expected (batch, time, 12)" in r.stderr


def test_a_resource_without_a_limit_cannot_be_budgeted():
    rep = FitReport("chip", "v", resources=[Resource("wires", 3, None)])
    with pytest.raises(BudgetError, match="for chip:v names 'wires', which has no limit there"):
        check_resources(rep, Budget(keep_free={"wires": 0.1}))


def test_parse_budget_from_a_mapping():
    b = parse_budget({"keep_free": {"hidden neurons": "20%"}})
    assert b.keep_free == {"hidden neurons": 0.2} and b.min_agreement == {} and b.sample_input is None
    with pytest.raises(BudgetError):
        parse_budget(["not", "a", "table"])


def test_per_target_tables_replace_the_top_level_ones_for_that_target():
    """Each target names its own resources: a [targets.NAME] table replaces [keep_free] /
    [min_agreement] for that target, a TARGET:VARIANT table replaces the TARGET one."""
    b = parse_budget({"keep_free": {"hidden neurons": "20%"}, "sample_input": "x.npy", "min_agreement": {"argmax_agreement": 0.5},
                      "targets": {"loihi2": {"keep_free": {"cores": 0.5}},
                                  "xylo:imu": {"min_agreement": {"argmax_agreement": 0.9}}}})
    assert b.for_chip("xylo", "audio2")[:2] == ({"hidden neurons": 0.2}, {"argmax_agreement": 0.5})
    assert b.for_chip("loihi2", "chip")[:2] == ({"cores": 0.5}, {"argmax_agreement": 0.5})
    assert b.for_chip("xylo", "imu")[:2] == ({"hidden neurons": 0.2}, {"argmax_agreement": 0.9})
    xy = FitReport("xylo", "audio2", resources=[Resource("hidden neurons", 900, 1000)])
    lo = FitReport("loihi2", "chip", resources=[Resource("cores", 2, 100)])
    res = check_resources([xy, lo], b)
    assert [(r.target, r.name, r.passed) for r in res] == [("xylo:audio2", "hidden neurons", False), ("loihi2:chip", "cores", True)]
    # the same budget without the loihi2 table: the Xylo resource is not on Loihi 2's report, and the error says what to do
    b2 = parse_budget({"keep_free": {"hidden neurons": "20%"}})
    with pytest.raises(BudgetError, match=r"\[targets.loihi2.keep_free\]"):
        check_resources([lo], b2)
    # agreement floors per target
    from nirdeploy.ci.budget import check_agreement

    out = check_agreement({"argmax_agreement": 0.7}, b, "xylo:imu")
    assert [(r.floor, r.passed) for r in out] == [(0.9, False)]


@pytest.mark.parametrize("bad,match", [
    ({"targets": {"loihi2": {"keep_fre": {}}}}, "unknown key"),
    ({"targets": {"loihi2": 3}}, "must be a table"),
    ({"targets": {"a b": {"keep_free": {}}}}, "a target or TARGET:VARIANT"),
    ({"targets": {"loihi2": {"keep_free": {"cores": 2}}}}, "above 1"),
    ({"targets": {"loihi2": {"min_agreement": {"argmax_agreement": 0.5}}}}, "needs sample input"),
    ({"targets": {"loihi2": {"min_agreement": {"bogus": 0.5}}}, "sample_input": "x.npy"}, "unknown metric"),
])
def test_bad_per_target_tables_are_budget_errors(bad, match):
    with pytest.raises(BudgetError, match=match):
        parse_budget(bad)


@pytest.mark.parametrize("name,match", [
    ("nosuch", r"\[targets.nosuch\] would never apply: unknown target 'nosuch'"),
    ("xyl", r"unknown target 'xyl'"),
    ("xylo:audio9", r"\[targets.\"xylo:audio9\"\] would never apply: unknown variant 'audio9'"),
])
def test_a_table_for_an_unknown_target_or_variant_is_an_error_not_a_silent_no_limit(name, match):
    """A [targets.NAME] table whose target or variant is not registered never applies: before,
    `check --budget` printed "sets no limit" and exited 0 on a typo."""
    with pytest.raises(BudgetError, match=match):
        parse_budget({"targets": {name: {"keep_free": {"hidden neurons": "50%"}}}})


def test_a_bad_share_in_a_target_table_names_that_table():
    with pytest.raises(BudgetError, match=r"\[targets.\"xylo:imu\".keep_free\] 'hidden neurons' = '150%'"):
        parse_budget({"targets": {"xylo:imu": {"keep_free": {"hidden neurons": "150%"}}}})


def test_cli_check_with_a_budget_for_an_unknown_target_exits_2(tmp_path):
    (tmp_path / "b.toml").write_text('[targets.nosuch.keep_free]\n"hidden neurons" = "50%"\n')
    r = CliRunner().invoke(main, ["check", str(BRAILLE), *OPTS, "--budget", str(tmp_path / "b.toml")])
    assert r.exit_code == 2, r.output
    assert "unknown target 'nosuch'" in r.output and "Traceback" not in r.output
