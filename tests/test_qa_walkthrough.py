"""Faults found by walking the README as a new user (branch qa-walkthrough): each test failed
before its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nirdeploy.cli import main

from conftest import CORPUS

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"
BRAILLE_ZERO = CORPUS / "braille_noDelay_bias_zero.nir"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def xylo_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    out = d / "OUT"
    r = run("compile", BRAILLE, "-t", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract", "-o", out)
    assert r.exit_code == 0, r.output
    x = np.random.default_rng(0).poisson(0.1, size=(2, 40, 12))
    np.save(d / "x.npy", x)
    return out, d / "x.npy"


@pytest.mark.parametrize("flags", [["--dt", "1e-3"], ["--reset", "zero"], ["--scheme", "exact"], ["--scheme", "euler"]])
def test_simulate_compiled_folder_refuses_settings_it_would_ignore(xylo_folder, tmp_path, flags):
    """`simulate OUT --dt 1e-3` ran at the compiled dt and said nothing: the flag was silently
    ignored (for the chip and for --compare-reference). Now exit 2 naming the flag, nothing written."""
    out, x = xylo_folder
    y = tmp_path / "y.npy"
    r = run("simulate", out, "--input", x, "-o", y, "--compare-reference", *flags)
    assert r.exit_code == 2, r.output
    assert flags[0] in r.output and "compiled with" in r.output
    assert not y.exists()
    r = run("simulate", out, "--input", x, "-o", y)  # without the flags it runs
    assert r.exit_code == 0, r.output
    assert y.exists()


def test_check_all_shows_the_warnings_of_targets_that_fit():
    """`check G --target all` printed 'yes  -' for Xylo while the single-target report carries
    time_constant_changed and weights_quantized_to_zero warnings (at --dt 1e-300 even 100 %
    changed time constants): the overview was silent about how the chip differs."""
    r = run("check", BRAILLE_ZERO, "--target", "all", "--dt", "1e-4")
    assert r.exit_code == 0, r.output
    assert "time_constant_changed" in r.stdout.split("xylo:audio2")[1].split("xylo:audio3")[0]
    assert "weights_round_to_zero" in r.stdout.split("loihi2:chip")[1].split("speck:speck2e")[0]
    assert "check GRAPH --target TARGET:VARIANT" in r.stdout
    single = run("check", BRAILLE_ZERO, "--target", "xylo:audio2", "--dt", "1e-4", "--json")
    n = sum(v["severity"] == "warning" for v in json.loads(single.stdout)["violations"])
    assert f"{n}: " in r.stdout.split("xylo:audio2")[1].split("xylo:audio3")[0]


def test_missing_dependency_of_an_installed_library_is_named(tmp_path, monkeypatch):
    """Following the README (sinabs with --no-deps), `compare --with sinabs` said "Sinabs is not
    available: No module named 'pylab'. Install it with: pip install 'nirdeploy[torch]'", a
    command that was already run and does not install matplotlib. The message now says the
    library is installed and names the missing package."""
    from nirdeploy.errors import MissingDependencyError
    from nirdeploy.frontends._common import require

    pkg = tmp_path / "qa_fakelib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import pylab\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "pylab", None)  # import pylab fails even where matplotlib exists
    with pytest.raises(MissingDependencyError) as e:
        require("qa_fakelib", "qa_fakelib==1.0", "Fakelib")
    msg = str(e.value)
    assert "installed" in msg and "pip install matplotlib" in msg and "nirdeploy[torch]" not in msg
    with pytest.raises(MissingDependencyError) as e:  # the library itself missing: the install command as before
        require("qa_not_installed_lib", "qa_not_installed_lib==1.0", "Nolib")
    assert "nirdeploy[torch]" in str(e.value) and "qa_not_installed_lib==1.0" in str(e.value)


def test_sinabs_install_pins_name_matplotlib():
    from nirdeploy.frontends import sinabs

    assert "matplotlib" in sinabs.PINS


def _li_readout_graph(path):
    import nir

    rng = np.random.default_rng(0)
    n_in, n_h, n_o = 4, 8, 3
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc1": nir.Linear(weight=rng.normal(0, 1, (n_h, n_in))),
             "lif1": nir.LIF(tau=np.full(n_h, 1e-3), r=np.full(n_h, 10.0), v_leak=np.zeros(n_h), v_threshold=np.ones(n_h),
                             v_reset=np.zeros(n_h)),
             "fc2": nir.Linear(weight=rng.normal(0, 1, (n_o, n_h))),
             "li": nir.LI(tau=np.full(n_o, 1e-3), r=np.full(n_o, 10.0), v_leak=np.zeros(n_o)),
             "output": nir.Output(output_type={"output": np.array([n_o])})}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li"), ("li", "output")]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def test_loihi2_voltage_readout_compares_and_scores(tmp_path):
    """A Loihi 2 network read out from an LI layer: `simulate OUT --compare-reference` and
    `--labels` stopped with "error: readout must be one of spikes, vmem; got 'v'" (exit 2),
    and the CI accuracy check read the voltages as spike counts. The report now uses the core's
    word ('vmem')."""
    import nirdeploy

    g = _li_readout_graph(tmp_path / "li.nir")
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.poisson(0.3, (4, 50, 4)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0]))
    out = tmp_path / "OUT"
    assert run("compile", g, "-t", "loihi2", "--dt", "1e-4", "-o", out).exit_code == 0
    r = run("simulate", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "yc.npy", "--compare-reference", "--labels", tmp_path / "y.npy")
    assert r.exit_code == 0, r.output
    assert "sum of Vmem" in r.output and "maximum Vmem" in r.output
    dep = nirdeploy.compile(str(g), target="loihi2", dt=1e-4)
    assert dep.readout == "vmem" and dep.report.details["readout"] == "vmem"
    ev = dep.evaluate(np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy"))
    assert ev["readout"] == "vmem" and 0.0 <= ev["chip"]["accuracy"] <= 1.0


def test_loihi2_sample_is_measured_and_calibrate_is_not_claimed():
    """`check -t loihi2 --sample X.npy` measured nothing and said nothing; `--calibrate X.npy`
    printed 'calibrated=True' although Loihi 2 has no calibration. Now the sample is simulated
    and compared with the reference (note, details, a warning below 90 %), and --calibrate is
    measured only, with a warning and calibrated=False."""
    import nirdeploy

    x = np.load(CORPUS.parent / "braille_input.npy")  # the README's example input
    kw = dict(target="loihi2", dt=1e-4, reset="subtract")
    rep = nirdeploy.check(str(BRAILLE), sample=x, **kw)
    ag = rep.details["sample_agreement"]
    assert ag["samples"] == x.shape[0] and ag["steps"] == x.shape[1] and ag["readout"] == "spikes"
    assert any(n.startswith("sample (") for n in rep.notes)
    low = [v for v in rep.violations if v.rule == "fidelity"]
    assert bool(low) == (ag["decision_agreement"] is None or ag["decision_agreement"] < 0.9)
    cal = nirdeploy.check(str(BRAILLE), calibrate=x, **kw)
    assert cal.settings["calibrated"] is False
    assert any(v.rule == "no_calibration" and v.severity == "warning" for v in cal.violations)
    assert cal.details["sample_agreement"] == ag  # measured exactly as --sample
    plain = nirdeploy.check(str(BRAILLE), **kw)
    assert "sample_agreement" not in plain.details


@pytest.mark.parametrize("target", ["loihi2", "speck"])
def test_low_sample_agreement_is_a_warning_in_the_text(tmp_path, target):
    """cnn_sinabs with a sparse random sample agrees with the reference on few decisions: Loihi 2
    measured nothing, Speck put the 50 % in a note only (Xylo makes it a warning below 90 %).
    Both reports now carry a fidelity warning with the figure."""
    x = np.random.default_rng(0).poisson(0.02, size=(2, 20, 2, 34, 34))
    np.save(tmp_path / "x.npy", x)
    r = run("check", CORPUS / "cnn_sinabs.nir", "-t", target, "--sample", tmp_path / "x.npy", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    pa = d["details"]["sample_agreement"]["decision_agreement"]
    assert pa is not None and pa < 0.9
    assert [v for v in d["violations"] if v["rule"] == "fidelity" and v["severity"] == "warning"]


def test_simulate_warns_when_the_chip_decides_unlike_the_reference(xylo_folder, tmp_path):
    """The README's own example (`simulate OUT --input examples/braille_input.npy
    --compare-reference`) prints 'same winning output in 50.0 % of samples' and nothing else:
    a figure, no warning, no hint. Below 90 % it is now a warning naming the compile report's
    warnings and the command that explains the difference."""
    out, _ = xylo_folder
    x = CORPUS.parent / "braille_input.npy"
    r = run("simulate", out, "--input", x, "-o", tmp_path / "y.npy", "--compare-reference")
    assert r.exit_code == 0, r.output
    assert "same winning output in 50.0 %" in r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("warning: the chip's winning output")]
    assert line and "time_constant_changed" in line[0] and "nirdeploy compare" in line[0] and "--reset subtract" in line[0]


def test_simulate_warns_when_the_input_exceeds_what_the_chip_takes(xylo_folder, tmp_path):
    """Xylo takes at most 15 input events per channel and step, Loihi 2 one: `simulate` ran a
    10**6-event input (or the README's braille input on Loihi 2, counts up to 3) and said
    nothing, although the chip saw other input than the file holds."""
    out, _ = xylo_folder
    x = np.full((1, 10, 12), 10**6)
    np.save(tmp_path / "x.npy", x)
    r = run("simulate", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.exit_code == 0, r.output
    assert "warning: 120 of 120 input values exceed the chip's 15 event(s)" in r.output
    ok = np.minimum(x, 15)
    np.save(tmp_path / "ok.npy", ok)
    r = run("simulate", out, "--input", tmp_path / "ok.npy", "-o", tmp_path / "y2.npy")
    assert r.exit_code == 0 and "exceed" not in r.output
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "y2.npy"))  # what the warning says the chip did
    lo = tmp_path / "L"
    assert run("compile", BRAILLE, "-t", "loihi2", "--dt", "1e-4", "--reset", "subtract", "-o", lo).exit_code == 0
    r = run("simulate", lo, "--input", CORPUS.parent / "braille_input.npy", "-o", tmp_path / "y3.npy")
    assert r.exit_code == 0 and "exceed the chip's 1 event(s)" in r.output


@pytest.mark.parametrize("dt", [1e-7, 1e-12])
def test_loihi2_dead_decay_and_vanished_weights_are_reported_at_any_dt(dt):
    """At a tiny dt the decays round to nothing and the scaled weights to 0: Loihi 2 reported FITS
    with neither voltage_decay_rounds_to_zero nor a word about the weights, although no weight and
    no leak was left (first seen at 1e-300, which is now refused as outside 1e-12..1e6 s). Every
    synapse that lost all its weights is now an error: the network does not fit."""
    import nirdeploy

    rep = nirdeploy.check(str(BRAILLE_ZERO), target="loihi2", dt=dt)
    rules = [v.rule for v in rep.violations]
    assert "voltage_decay_rounds_to_zero" in rules
    lost = {k: q for k, q in rep.details["quantization"].items()}
    assert all(q["nonzero_float"] > 0 for q in lost.values())
    if dt == 1e-12:
        assert rules.count("voltage_decay_rounds_to_zero") == 2  # lif1.lif and lif2: no leak at all
        assert all(q["became_zero"] == q["nonzero_float"] for q in lost.values())
        assert rules.count("weights_all_zero") == len(lost) and not rep.fits
    with pytest.raises(nirdeploy.errors.UsageError, match="outside"):
        nirdeploy.check(str(BRAILLE_ZERO), target="loihi2", dt=1e-300)


def test_compare_table_says_n_a_for_an_undefined_rate_correlation(tmp_path):
    """`compare lif_norse.nir --dt 1e-4 --with reference,norse:native` printed 'nan' in the rate
    correlation column (one output: the reference's rate is the same in every sample)."""
    from nirdeploy.evaluation.crosscheck import render_comparison

    row = {"name": "run", "counts": [4.0], "total": 4.0, "spike_agreement": 0.5, "elementwise_agreement": 0.9,
           "rate_correlation": float("nan"), "first_divergent_step": 3, "flag": True}
    ref = {"name": "reference", "counts": [4.0], "total": 4.0, "flag": False}
    text = render_comparison([ref, row], [])
    text = text if isinstance(text, str) else str(text)
    assert "nan" not in text and "n/a" in text
