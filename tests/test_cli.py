"""The CLI contract: commands, exit codes (0 ok/fits, 1 does not fit, 2 invalid), atomic outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nirdeploy.cli import main

from conftest import CORPUS
from graphs import ff_graph, write

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"


def run(*args, **kw):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)
    return r


def test_help_imports_no_torch_nor_heavy_modules():
    code = (
        "import sys, runpy; sys.argv=['nirdeploy','--help']\n"
        "from nirdeploy.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('torch','nir','h5py','rich','rockpool','samna','xylosim','scipy')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "compile" in r.stdout and "simulate" in r.stdout


def test_import_nirdeploy_imports_no_torch_or_vendor_sdk():
    code = "import sys, nirdeploy; bad=[m for m in sys.modules if m.split('.')[0] in ('torch','rockpool','samna','xylosim','sinabs','lava')]; assert not bad, bad"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_targets_lists_variants_with_limits():
    r = run("targets", "--json")
    assert r.exit_code == 0
    rows = {(d["target"], d["variant"]): d for d in json.loads(r.output)}
    assert rows[("xylo", "audio2")]["limits"]["hidden_neurons"] == 1000
    assert rows[("xylo", "imu")]["limits"]["output_neurons"] == 16
    r = run("targets")
    assert "xylo:audio3" in r.output and "992 hidden" in r.output


def test_inspect_braille_reports_dt_and_loop():
    r = run("inspect", BRAILLE, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert [c["dt"] for c in info["dt_candidates"]] == [pytest.approx(1e-4)]
    assert info["recurrent_loops"]
    assert info["n_neurons"] == 47
    r = run("inspect", BRAILLE)
    assert "dt candidate: 0.0001" in r.output and "recurrent loops:" in r.output


@pytest.mark.parametrize("name", ["lif_norse.nir", "cnn_sinabs.nir", "braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
def test_inspect_every_corpus_graph(name):
    r = run("inspect", CORPUS / name, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["nodes"]


def test_check_exit_codes(tmp_path):
    r = run("check", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["fits"] is True
    big = write(ff_graph(20, 1100, 9, seed=3, scale=0.1), tmp_path / "big.nir")
    r = run("check", big, "--target", "xylo:audio2", "--dt", "1e-4", "--json")
    assert r.exit_code == 1
    rules = {v["rule"] for v in json.loads(r.output)["violations"] if v["severity"] == "error"}
    assert {"input_channels", "hidden_neurons", "output_neurons"} <= rules
    r = run("check", BRAILLE, "--target", "nochip")
    assert r.exit_code == 2 and "unknown target" in r.output


def test_check_all_table():
    r = run("check", BRAILLE, "--target", "all", "--dt", "1e-4")
    assert r.exit_code == 0, r.output
    for v in ("xylo:audio2", "xylo:audio3", "xylo:imu"):
        assert v in r.output


def test_compile_without_dt_uses_unique_inference_with_notice(tmp_path):
    out = tmp_path / "o"
    r = run("compile", BRAILLE, "--target", "xylo:audio2", "--reset", "subtract", "-o", out)
    assert r.exit_code == 0, r.output
    assert "notice:" in r.output and "1e-04" in r.output.replace("0.0001", "1e-04")
    assert json.loads((out / "report.json").read_text())["settings"]["dt"] == pytest.approx(1e-4)


def test_compile_ambiguous_dt_is_an_error(tmp_path):
    # Norse/Sinabs style (r = 1): no dt can be inferred
    r = run("compile", CORPUS / "lif_norse.nir", "--target", "xylo:audio2", "-o", tmp_path / "o")
    assert r.exit_code == 2
    assert "--dt" in r.output
    assert not (tmp_path / "o").exists()


def test_compile_and_simulate_roundtrip(tmp_path):
    out = tmp_path / "o"
    r = run("compile", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract", "-o", out)
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert {"target", "variant", "fits", "resources", "violations"} <= set(rep)
    assert (rep["target"], rep["variant"], rep["fits"]) == ("xylo", "audio2", True)
    assert (out / "rockpool_spec.npz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    x = np.random.default_rng(0).poisson(0.2, size=(2, 40, 12))
    np.save(tmp_path / "x.npy", x)
    r = run("simulate", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--compare-reference")
    assert r.exit_code == 0, r.output
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 40, 7)
    assert "spike-count correlation" in r.output
    r = run("simulate", BRAILLE, "--reference", "--dt", "1e-4", "--input", tmp_path / "x.npy", "-o", tmp_path / "yr.npy")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "yr.npy").shape == (2, 40, 7)
    # an existing folder is not overwritten without --force
    r = run("compile", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "-o", out)
    assert r.exit_code == 2 and "--force" in r.output
    r = run("compile", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "-o", out, "--force")
    assert r.exit_code == 0


def test_compile_that_does_not_fit_writes_nothing(tmp_path):
    big = write(ff_graph(20, 30, 3, seed=3), tmp_path / "big.nir")
    r = run("compile", big, "--target", "xylo:audio2", "--dt", "1e-4", "-o", tmp_path / "o")
    assert r.exit_code == 1
    assert "input channels 20 > 16" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.nir"]


@pytest.mark.parametrize(
    "shape",
    [(2, 40, 11), (40, 12), (2, 40, 12, 1)],
)
def test_simulate_rejects_wrong_input_shape(tmp_path, shape):
    out = tmp_path / "o"
    assert run("compile", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "-o", out).exit_code == 0
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.int64))
    for args in (["simulate", out], ["simulate", BRAILLE, "--reference", "--dt", "1e-4"]):
        r = run(*args, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
        assert r.exit_code == 2, r.output
        assert "shape" in r.output and "Traceback" not in r.output
        assert not (tmp_path / "y.npy").exists()


def test_simulate_rejects_non_array_input(tmp_path):
    (tmp_path / "x.npy").write_text("not an array")
    r = run("simulate", BRAILLE, "--reference", "--dt", "1e-4", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.exit_code == 2 and "not a readable .npy" in r.output


def test_bad_dt_and_reset_are_usage_errors(tmp_path):
    for dt in ("0", "-1e-4", "nan", "inf"):
        r = run("check", BRAILLE, "--target", "xylo:audio2", "--dt", dt)
        assert r.exit_code == 2, (dt, r.output)
        assert "dt" in r.output
    r = run("check", BRAILLE, "--target", "xylo:audio2", "--dt", "1e-4", "--reset", "sideways")
    assert r.exit_code == 2


def test_inspect_with_dt_shows_discrete_decays_and_gains():
    r = run("inspect", BRAILLE, "--dt", "1e-4", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["discretization"]
    # snnTorch encoding: r = tau/dt and w_in = tau_syn/dt give gains of exactly 1
    lif1 = d["lif1.lif"]
    assert lif1["gain_v"] == pytest.approx([1.0] * 40) and lif1["gain_i"] == pytest.approx([1.0] * 40)
    assert lif1["alpha_v"][0] == pytest.approx(1 - 1e-4 / 6.6666667e-4, rel=1e-6)
    r = run("inspect", BRAILLE, "--dt", "1e-4", "--scheme", "exact", "--json")
    assert json.loads(r.output)["discretization"]["lif2"]["alpha_v"][0] == pytest.approx(np.exp(-1e-4 / 3.3333333e-4), rel=1e-6)
    assert "Discretization (euler, dt = 0.0001 s)" in run("inspect", BRAILLE, "--dt", "1e-4").output


def test_simulations_report_progress_for_the_progress_bar():
    import nirdeploy
    from nirdeploy.cli import _Progress

    x = np.random.default_rng(0).poisson(0.2, size=(2, 50, 12))
    seen_chip, seen_ref = [], []
    dep = nirdeploy.compile(BRAILLE, target="xylo:audio2", dt=1e-4)
    dep.simulate(x, progress=lambda d, t: seen_chip.append((d, t)))
    nirdeploy.simulate_reference(BRAILLE, x, dt=1e-4, progress=lambda d, t: seen_ref.append((d, t)))
    for seen in (seen_chip, seen_ref):
        assert seen and seen[-1] == (50, 50) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    # small jobs (or no terminal) get no bar at all
    with _Progress(10, "x") as p:
        p(1, 2)
        assert p.bar is None
