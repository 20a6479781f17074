"""QA (Python API / odd dt): what makes the chip differ from the float network is a text warning,
and bad API arguments are typed errors (GUIDE "the promise we keep")."""

import numpy as np
import pytest

import nirdeploy
from nirdeploy.errors import UsageError

CORPUS = "examples/nir-corpus/"


def test_loihi2_rounded_decay_that_moves_tau_is_a_warning_with_numbers():
    # lif_norse: tau_mem = 2.5 ms; at dt = 1 us Loihi's dv = round(4096 * dt / tau) = round(1.64) = 2,
    # an effective tau of 2.048 ms (-18 %): was only usage["tau_mem_max_rel_error"] in JSON.
    rep = nirdeploy.check(CORPUS + "lif_norse.nir", "loihi2", dt=1e-6)
    w = [v for v in rep.violations if v.rule == "time_constant_changed"]
    assert len(w) == 1 and w[0].severity == "warning"
    assert "0.0025" in w[0].message and "0.002048" in w[0].message and "-18 %" in w[0].message
    assert w[0].hint
    assert "time_constant_changed" in rep.render()


def test_loihi2_exact_decay_has_no_tau_warning():
    # dt = 2.5 ms / 4096 * 4: dv = 4 exactly, so the effective tau equals the requested one
    rep = nirdeploy.check(CORPUS + "lif_norse.nir", "loihi2", dt=0.0025 * 4 / 4096)
    assert not [v for v in rep.violations if v.rule == "time_constant_changed"]


GRAPH = CORPUS + "braille_noDelay_bias_zero.nir"  # input shape (12,)


@pytest.fixture(scope="module")
def dep():
    return nirdeploy.compile(GRAPH, "xylo", dt=1e-4)


def test_masked_array_input_is_read_as_its_data_or_refused(dep):
    x = np.zeros((1, 10, 12), dtype=int)
    x[0, 2, 3] = 1
    ref = nirdeploy.simulate_reference(GRAPH, x, dt=1e-4)
    # was ValueError: operands could not be broadcast together (np.ma matmul semantics)
    np.testing.assert_array_equal(nirdeploy.simulate_reference(GRAPH, np.ma.masked_array(x), dt=1e-4), ref)
    np.testing.assert_array_equal(dep.simulate_reference(np.ma.masked_array(x)), ref)
    assert dep.evaluate(np.ma.masked_array(x))["samples"] == 1
    m = np.ma.masked_array(x, mask=x > 0)
    for f in (lambda: dep.simulate(m), lambda: dep.simulate_reference(m), lambda: nirdeploy.simulate_reference(GRAPH, m, dt=1e-4),
              lambda: dep.evaluate(x, np.ma.masked_array([0], mask=[True]))):
        with pytest.raises(UsageError, match="masked"):
            f()


@pytest.mark.parametrize("n", [10**30, 2**31, np.uint64(2**63)])
def test_huge_spikes_per_step_is_a_usage_error(dep, n):
    x = np.zeros((1, 5, 12), dtype=int)
    with pytest.raises(UsageError, match="spikes_per_step"):  # was OverflowError: Python int too large to convert to C long
        nirdeploy.simulate_reference(GRAPH, x, dt=1e-4, spikes_per_step=n)
    with pytest.raises(UsageError, match="spikes_per_step"):
        dep.simulate_reference(x, spikes_per_step=n)


def test_cli_huge_spikes_per_step_exits_2_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from nirdeploy.cli import main

    np.save(tmp_path / "x.npy", np.zeros((1, 5, 12), dtype=int))
    r = CliRunner().invoke(main, ["simulate", GRAPH, "-i", str(tmp_path / "x.npy"), "--reference", "--dt", "1e-4",
                                  "--spikes-per-step", str(10**24), "-o", str(tmp_path / "y.npy")])
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output and not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("labels", [np.array([True]), np.ma.masked_array([0], mask=[True]), np.array([np.nan])])
def test_evaluate_labels_go_through_the_one_label_validator(dep, labels):
    # evaluate/accuracy had its own check: it took bool labels (check_labels: "bools are not")
    # and read a masked label's hidden value as a class
    with pytest.raises(UsageError, match="labels"):
        dep.evaluate(np.zeros((1, 10, 12), dtype=int), labels)


def test_ci_assertion_names_the_missing_labels_file(tmp_path):
    from nirdeploy.ci import assert_chip_accuracy

    x = np.zeros((2, 10, 12), dtype=int)
    with pytest.raises(UsageError, match=r"y \(labels\)"):  # said "input file ... does not exist"
        assert_chip_accuracy(GRAPH, "xylo", x, str(tmp_path / "y.npy"), max_drop=1.0, dt=1e-4)
    with pytest.raises(UsageError, match=r"x \(sample input\)"):
        assert_chip_accuracy(GRAPH, "xylo", str(tmp_path / "x.npy"), np.zeros(2, int), max_drop=1.0, dt=1e-4)


@pytest.mark.parametrize("target", ["xylo:audio2", "xylo:imu", "loihi2", "speck"])
@pytest.mark.parametrize("dt", [5e-324, 1e-200, 1e300, 1.7e308])
def test_extreme_dt_is_a_usage_error_on_every_target(target, dt):
    # was OverflowError (exit 3, "internal error"): xylo at dt = 5e-324, loihi2 at dt >= 1e300
    for g in ("braille_noDelay_bias_zero.nir", "lif_norse.nir"):
        with pytest.raises(UsageError, match="dt"):
            nirdeploy.check(CORPUS + g, target, dt=dt)


@pytest.mark.parametrize("tau", [5e-324, 1e-300])
@pytest.mark.parametrize("target", ["loihi2", "xylo"])
def test_tau_far_below_dt_is_a_typed_error_or_a_report(tau, target):
    # loihi2 with tau = 5e-324: dt/tau = inf, int(inf) was an OverflowError (CLI: exit 3)
    import nir

    from nirdeploy.errors import NirDeployError, UnsupportedError

    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "fc": nir.Linear(np.ones((2, 2))),
               "lif": nir.LIF(tau=np.full(2, tau), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    try:
        rep = nirdeploy.check(g, target, dt=1e-4)
    except UnsupportedError as e:
        assert "'lif'" in str(e) and "dt = 0.0001" in str(e)
        return
    except NirDeployError:
        raise
    assert rep.violations  # a report, then it must say something


def test_inspect_text_says_when_the_update_oscillates_or_diverges():
    # nirdeploy inspect G --dt 10 showed "tau_eff nan..nan" and kept the discretization notes in --json only
    from click.testing import CliRunner

    from nirdeploy.cli import main

    r = CliRunner().invoke(main, ["inspect", CORPUS + "lif_norse.nir", "--dt", "10"])
    assert r.exit_code == 0, r.output
    assert "warning: 1 (LIF): dt=10 >= tau" in r.output and "diverges" in r.output and "min -3999" in r.output
    assert "nan" not in r.output
    ok = CliRunner().invoke(main, ["inspect", CORPUS + "lif_norse.nir", "--dt", "1e-4"])
    assert ok.exit_code == 0 and "warning" not in ok.output


def test_float16_input_raises_no_runtime_warning(dep):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was "RuntimeWarning: overflow encountered in cast" on every call
        y = dep.simulate(np.zeros((1, 10, 12), dtype=np.float16))
    assert y.shape[:2] == (1, 10)


def test_loihi2_a_synapse_whose_every_weight_rounds_to_zero_does_not_fit(tmp_path):
    """The layer behind it receives nothing: an error (does not fit), as Speck's weights_all_zero,
    not a warning under a report that says FITS."""
    from click.testing import CliRunner

    from nirdeploy.cli import main

    r = CliRunner().invoke(main, ["check", CORPUS + "cnn_sinabs.nir", "-t", "loihi2", "--dt", "1e-12"])
    assert r.exit_code == 1, r.output
    assert "weights_all_zero" in r.output and "receives nothing" in r.output
    rep = nirdeploy.check(CORPUS + "cnn_sinabs.nir", target="loihi2", dt=1e-3)  # the ordinary case still fits
    assert rep.fits and not [v for v in rep.violations if v.rule == "weights_all_zero"]


@pytest.mark.parametrize("tau", [5e-324, 1e-300])
def test_xylo_extreme_tau_gives_a_report_without_numpy_warnings(tmp_path, tau):
    """A LIF with a tau far below dt: the report says what it means (does not fit / a dead or
    diverging layer); numpy's overflow RuntimeWarnings are not printed on top of it."""
    import warnings

    import nir

    from graphs import ff_graph, write

    g = ff_graph(neuron="lif")
    g.nodes["lif1"] = nir.LIF(tau=np.full(8, tau), r=np.ones(8), v_leak=np.zeros(8), v_threshold=np.ones(8), v_reset=np.zeros(8))
    p = write(g, tmp_path / "g.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rep = nirdeploy.check(str(p), target="xylo:audio2", dt=1e-4)
    assert not rep.fits and rep.violations
