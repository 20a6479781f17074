"""nirdeploy.finetune and `nirdeploy finetune`: chip-aware fine-tuning.

Small and fast: a few dozen digits samples, one or two epochs, one torch thread. What is checked:
the returned graph compiles to exactly the chip model's integers (every target), two runs with
one seed give identical graphs, the membrane penalty lowers Xylo's multi-spike share, float mode
writes back its weights, zero weights stay zero, progress callbacks, argument errors, the CLI's
folder and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import nirdeploy  # noqa: E402
from nirdeploy.errors import DoesNotFitError, UsageError  # noqa: E402
from nirdeploy.evaluation.datasets import digits_events, digits_frames  # noqa: E402
from nirdeploy.torch import chip_model  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from chip_graphs import random_rsnn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    ds = digits_events(10, seed=0)
    return ds.x_train[:48], ds.y_train[:48], ds.x_test[:24], ds.y_test[:24]


def rsnn(seed=0, n_out=10, scale=1.0):
    g = random_rsnn(seed, n_in=16, hidden_kinds=("CubaLIF",), out_kinds=("CubaLIF",), max_out=2, scale=scale)
    g.nodes["fc_out"].params["weight"] = np.random.default_rng(seed).normal(0, 2.0 / np.sqrt(g.nodes["fc_out"].params["weight"].shape[1]),
                                                                           (n_out, g.nodes["fc_out"].params["weight"].shape[1]))
    for k, v in list(g.nodes["out"].params.items()):
        g.nodes["out"].params[k] = np.resize(v, n_out)
    g.nodes["output"].params["shape"] = (n_out,)
    return g


def _round_trip(res, x):
    """The fine-tuned graph compiles to the deployment's integers, and the chip model of the
    written-back graph (eval mode) equals the target's bit-accurate simulator on ``x``."""
    s = res.settings
    again = nirdeploy.compile(res.graph, target=s["target"], dt=s["dt"], reset=s["reset"])
    mine, theirs = chip_model(res.deployment).quantized(), chip_model(again).quantized()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert np.array_equal(mine[k], theirs[k]), k
    m = chip_model(res.graph, s["target"], dt=s["dt"], reset=s["reset"]).eval()
    with torch.no_grad():
        y = m(x).numpy()
    assert np.array_equal(y, res.deployment.simulate(x)) and np.array_equal(y, again.simulate(x))
    assert y.any(), "a silent output proves nothing"


def test_xylo_finetune_round_trip_and_determinism(digits):
    x, y, xv, yv = digits
    kw = dict(dt=1e-4, reset="subtract", epochs=2, lr=3e-3, batch_size=16, membrane_penalty=0.1, seed=3, x_val=xv, y_val=yv)
    a = nirdeploy.finetune(rsnn(), "xylo:audio3", x, y, **kw)
    b = nirdeploy.finetune(rsnn(), "xylo:audio3", x, y, **kw)
    for name, n in a.graph.nodes.items():
        if "weight" in n.params:
            assert np.array_equal(n.params["weight"], b.graph.nodes[name].params["weight"]), name
    assert a.history == b.history and a.after == b.after
    assert any(not np.array_equal(n.params["weight"], rsnn().nodes[k].params["weight"]) for k, n in a.graph.nodes.items() if "weight" in n.params)
    assert a.deployment.fits
    _round_trip(a, xv)
    assert set(a.before) == set(a.after) == {"chip", "float"} and a.before["chip"]["samples"] == 24
    assert [h["epoch"] for h in a.history] == [1, 2] and all(np.isfinite(h["loss"]) for h in a.history)
    assert "Fine-tuning (chip)" in a.render()


def test_the_membrane_penalty_removes_multi_spike_steps(digits):
    """A network whose hidden neurons fire several spikes per step on Xylo: training on the penalty
    alone (the class loss switched off) brings the multi-spike share down."""
    x, y, _, _ = digits
    g = rsnn(seed=1, scale=4.0)

    def share(dep):
        s = dep.simulate(x, record=True).states["Spikes"]
        return float((s > 1).sum() / max(int((s > 0).sum()), 1))

    dep0 = nirdeploy.compile(g, target="xylo:audio3", dt=1e-4, reset="subtract")
    res = nirdeploy.finetune(g, "xylo:audio3", x, y, dt=1e-4, reset="subtract", epochs=4, lr=0.1, batch_size=8, membrane_penalty=1.0,
                             membrane_margin=1.5, loss=lambda values, labels: values.sum() * 0.0, seed=0)
    s0, s1 = share(dep0), share(res.deployment)
    assert s0 > 0.4 and s1 < 0.7 * s0, (s0, s1)
    assert res.history[-1]["penalty"] < res.history[0]["penalty"]


@pytest.mark.parametrize("target,kw", [("loihi2", dict(dt=1e-4, reset="zero")), ("loihi2-split", dict(dt=1e-4, reset="zero")),
                                       ("speck", dict(dt=1.0, reset="subtract"))])
def test_other_targets_round_trip(target, kw):
    """Loihi 2 (also with hidden neurons of three time constants, which it runs as one LIF process
    per (du, dv) pair) and Speck: the trained graph round-trips to the chip model's integers."""
    if target == "speck":
        ds = digits_frames(10, seed=0)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from finetune_digits import cnn_graph

        g, x, y = cnn_graph(0), ds.x_train[:12], ds.y_train[:12]
    else:
        ds = digits_events(10, seed=0)
        g, x, y = rsnn(), ds.x_train[:24], ds.y_train[:24]
    if target == "loihi2-split":
        target, tau = "loihi2", g.nodes["h0"].params["tau_mem"]
        g.nodes["h0"].params["tau_mem"] = tau * np.resize([1.0, 2.0, 4.0], tau.shape)
    res = nirdeploy.finetune(g, target, x, y, epochs=1, lr=3e-3, batch_size=12, membrane_penalty=0.1, seed=0, **kw)
    assert res.deployment.fits
    if kw.get("reset") == "zero":  # Loihi 2: split layers are named name#k
        split = [L.name for L in res.deployment.artifact.payload.network.layers if "#" in L.name]
        assert bool(split) == ("tau_mem" in g.nodes["h0"].params and np.unique(g.nodes["h0"].params["tau_mem"]).size > 1), split
    _round_trip(res, x)
    assert any(not np.array_equal(n.params["weight"], g.nodes[k].params["weight"]) for k, n in res.graph.nodes.items() if "weight" in n.params)


def test_float_mode_writes_back_and_keeps_zero_weights(digits):
    x, y, _, _ = digits
    g = rsnn(seed=2)
    w0 = g.nodes["fc0"].params["weight"]
    assert (w0 == 0).any()
    calls = []
    res = nirdeploy.finetune(g, "xylo:audio3", x, y, mode="float", dt=1e-4, reset="subtract", epochs=1, lr=1e-2, batch_size=16,
                             membrane_penalty=0.1, progress=lambda done, total: calls.append((done, total)))
    w1 = res.graph.nodes["fc0"].params["weight"]
    assert np.array_equal(w1 == 0, w0 == 0) and not np.array_equal(w1, w0)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert res.deployment is not None and res.settings["mode"] == "float"
    # float mode without a target: no deployment, the reference's accuracy only
    res2 = nirdeploy.finetune(g, None, x, y, mode="float", dt=1e-4, reset="subtract", epochs=1, batch_size=48)
    assert res2.deployment is None and set(res2.after) == {"float"}


def test_arguments_are_checked(digits):
    x, y, _, _ = digits
    g = rsnn()
    bad = [dict(epochs=0), dict(lr=-1.0), dict(lr=float("nan")), dict(batch_size=0), dict(mode="fast"), dict(loss="hinge"),
           dict(readout="max"), dict(membrane_penalty=-1), dict(threads=0), dict(seed=-1), dict(chip_options=[1]), dict(nonsense=1),
           dict(x_val=x)]
    for kw in bad:
        with pytest.raises(UsageError):
            nirdeploy.finetune(g, "xylo:audio3", x, y, dt=1e-4, reset="subtract", **kw)
    with pytest.raises(UsageError, match="one integer label per sample"):
        nirdeploy.finetune(g, "xylo:audio3", x, y[:5], dt=1e-4, reset="subtract")
    with pytest.raises(UsageError, match="integer class labels"):
        nirdeploy.finetune(g, "xylo:audio3", x, y + 0.5, dt=1e-4, reset="subtract")
    with pytest.raises(UsageError):
        nirdeploy.finetune(g, "xylo:audio3", x[:, :, :3], y, dt=1e-4, reset="subtract")
    with pytest.raises(UsageError, match="needs a target"):
        nirdeploy.finetune(g, None, x, y, dt=1e-4)
    with pytest.raises(DoesNotFitError):  # 10 outputs on Audio 2 (8)
        nirdeploy.finetune(g, "xylo:audio2", x, y, dt=1e-4, reset="subtract")


def test_importing_nirdeploy_imports_no_torch():
    code = ("import sys, nirdeploy, nirdeploy_targets.xylo.target, nirdeploy_targets.speck.target, nirdeploy_targets.loihi2.target; "
            "nirdeploy.finetune; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "nirdeploy.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_cli_writes_the_deployment_of_the_finetuned_graph(tmp_path, digits):
    x, y, _, _ = digits
    from nirdeploy.graph.loading import save_nir

    save_nir(rsnn(), tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", x[:16])
    np.save(tmp_path / "y.npy", y[:16])
    out = tmp_path / "out"
    args = ["finetune", tmp_path / "g.nir", "-t", "xylo:audio3", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--dt", "1e-4",
            "--reset", "subtract", "--epochs", "1", "--batch-size", "8", "--membrane-penalty", "0.1", "-o", out,
            "--graph-out", tmp_path / "g2.nir"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "before" in r.stdout and "epoch 1:" in r.stderr
    dep = nirdeploy.load_deployment(out)
    g2 = nirdeploy.load_graph(tmp_path / "g2.nir")
    again = nirdeploy.compile(g2, target="xylo:audio3", dt=1e-4, reset="subtract")
    assert dep.artifact.payload.config.to_arrays().keys() == again.artifact.payload.config.to_arrays().keys()
    for k, v in again.artifact.payload.config.to_arrays().items():
        assert np.array_equal(dep.artifact.payload.config.to_arrays()[k], v), k
    assert np.array_equal(dep.simulate(x), again.simulate(x))
    r = _cli(*args)  # OUT exists: refused before any work
    assert r.returncode == 2 and str(out) in r.stderr and "Traceback" not in r.stderr, r.stderr
    from click.testing import CliRunner

    from nirdeploy.cli import main

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    g2 = (tmp_path / "g2.nir").read_bytes()
    r = CliRunner().invoke(main, list(map(str, args[:-4])) + ["-o", str(tmp_path / "out3"), "--graph-out", str(tmp_path / "g2.nir")])
    assert r.exit_code == 2 and f"{tmp_path / 'g2.nir'} already exists; --force replaces it" in r.output, r.output  # before any work
    assert (tmp_path / "g2.nir").read_bytes() == g2 and not (tmp_path / "out3").exists() and "epoch" not in r.output
    r = CliRunner().invoke(main, list(map(str, args[:-2])) + ["--graph-out", str(tmp_path / "x.npy"), "--force"])
    assert r.exit_code == 2 and "input" in r.output, r.output  # --force never replaces an input
    r = CliRunner().invoke(main, list(map(str, args)) + ["--force", "--seed", "1"])  # replaced: another seed, other weights
    assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before
    assert (tmp_path / "g2.nir").read_bytes() != g2
    r = CliRunner().invoke(main, [str(a) if a != "xylo:audio3" else "xylo:audio2" for a in args[:-4]] + ["-o", str(tmp_path / "out2")])
    assert r.exit_code == 1 and "does not fit" in r.output and not (tmp_path / "out2").exists(), r.output


def test_a_target_without_chip_model_is_refused_before_any_work(tmp_path, digits):
    """The toy target (tests/toy_target.py) implements no Target.chip_model: chip_model and
    finetune say so, naming the target and the float alternative; the CLI exits 2 without a
    traceback and writes nothing. Float mode still works without a target."""
    from nirdeploy.backend import target as reg
    from nirdeploy.errors import UnsupportedError
    from toy_target import ToyTarget

    x, y, _, _ = digits
    reg.register_target("toy", ToyTarget)
    try:
        for call in (lambda: nirdeploy.finetune(rsnn(), "toy", x, y, dt=1e-4),
                     lambda: nirdeploy.finetune(rsnn(), "toy", "no-such-x.npy", "no-such-y.npy", dt=1e-4),  # refused before reading
                     lambda: chip_model(rsnn(), "toy", dt=1e-4)):
            with pytest.raises(UnsupportedError, match=r"target 'toy' has no chip model.*mode='float'"):
                call()
    finally:
        reg._EXTRA.pop("toy", None)
        reg._clear_caches()
    from nirdeploy.graph.loading import save_nir

    save_nir(rsnn(), tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", x[:4])
    np.save(tmp_path / "y.npy", y[:4])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from toy_target import ToyTarget; import nirdeploy; "
            "nirdeploy.register_target('toy', ToyTarget); from nirdeploy.cli import main; main(sys.argv[2:])")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests"), "finetune", str(tmp_path / "g.nir"), "-t", "toy", "--x",
                        str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "--dt", "1e-4", "-o", str(tmp_path / "out"),
                        "--graph-out", str(tmp_path / "g2.nir")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no chip model" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nir", "x.npy", "y.npy"]


def test_cli_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, digits):
    """Every kind of bad data file or option: exit 2, a message naming the problem, no traceback,
    no output folder or graph file, and an existing output folder left as it was."""
    from click.testing import CliRunner

    from nirdeploy.cli import main
    from nirdeploy.graph.loading import save_nir

    x, y, _, _ = digits
    save_nir(rsnn(), tmp_path / "g.nir")
    files = {"x.npy": x[:8], "y.npy": y[:8], "x_shape.npy": x[:8, :, :3], "x_neg.npy": -x[:8].astype(np.int64), "x_nan.npy": np.full(x[:8].shape, np.nan),
             "y_float.npy": y[:8] + 0.5, "y_short.npy": y[:3], "y_neg.npy": -1 - y[:8]}
    for name, a in files.items():
        np.save(tmp_path / name, a)
    (tmp_path / "x_text.npy").write_text("not an array")
    nirdeploy.compile(rsnn(), target="xylo:audio3", dt=1e-4, reset="subtract").save(tmp_path / "old")  # a folder --force may replace
    old = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}

    def run(xf="x.npy", yf="y.npy", *extra, out="out"):
        return CliRunner().invoke(main, ["finetune", str(tmp_path / "g.nir"), "-t", "xylo:audio3", "--x", str(tmp_path / xf), "--y",
                                         str(tmp_path / yf), "--dt", "1e-4", "--reset", "subtract", "--epochs", "1", "-o",
                                         str(tmp_path / out), "--graph-out", str(tmp_path / "g2.nir"), *extra])

    cases = [(("missing.npy",), "missing.npy"), (("x_text.npy",), "x_text.npy"), (("x_shape.npy",), "shape"),
             (("x_neg.npy",), "x_train"), (("x_nan.npy",), "x_train"), (("x.npy", "y_float.npy"), "integer class labels"),
             (("x.npy", "y_short.npy"), "one integer label per sample"), (("x.npy", "y_neg.npy"), ">= 0"),
             (("x.npy", "y.npy", "--val-x", str(tmp_path / "x.npy")), "--val-x and --val-y go together"),
             (("x.npy", "y.npy", "--lr", "nan"), "lr"), (("x.npy", "y.npy", "--chip-option", "mode"), "mode"),
             (("x.npy", "y.npy", "--chip-option", "speed=fast"), "speed")]
    for args, words in cases:
        r = run(*args)
        assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, (args, r.output, r.exception)
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".npy") == ["g.nir", "old"], args
    r = run("x.npy", "y_short.npy", "--force", out="old")  # bad data with --force: the old deployment is untouched
    assert r.exit_code == 2 and "one integer label per sample" in r.output, r.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == old


def test_cli_prints_the_written_deployments_warnings_and_silent_outputs(tmp_path):
    """finetune writes a compiled deployment like `compile` does: what makes that chip differ from
    the float network (the compile report's warnings, an output that stays silent) is printed,
    not only left in report.json. Before, the command printed the accuracy table and 'wrote OUT'
    only, for a deployment with five warnings whose chip output was silent on every sample."""
    import nir
    from click.testing import CliRunner

    from nirdeploy.cli import main

    r = np.random.default_rng(1)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([4])), "fc1": nir.Linear(weight=r.normal(0, 1, (6, 4))),
        "lif": nir.LIF(tau=np.full(6, 1e-2), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6), v_reset=np.zeros(6)),
        "fc2": nir.Linear(weight=r.normal(0, 1, (3, 6))), "li": nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3)),
        "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")])
    nir.write(str(tmp_path / "li.nir"), g)
    np.save(tmp_path / "x.npy", (r.random((5, 20, 4)) < 0.5).astype(np.int64))
    np.save(tmp_path / "y.npy", r.integers(0, 3, 5))
    res = CliRunner().invoke(main, ["finetune", str(tmp_path / "li.nir"), "-t", "xylo", "--dt", "1e-3", "--reset", "zero", "--epochs", "1",
                                    "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    report = nirdeploy.load_deployment(tmp_path / "out").report
    assert report.warnings, "the case needs a deployment with warnings"
    for v in report.warnings:
        assert f"warning: [{v.rule}] {v.node}" in res.output, res.output
    assert "warning: after fine-tuning the chip output is silent on 5 of 5 samples" in res.output, res.output


def test_graph_out_inside_the_output_folder_is_refused_before_any_work(tmp_path, digits):
    """`-o OUT --force --graph-out OUT/g.nir` wrote a foreign file into the deployment folder (the
    next --force then refused OUT as not written by nirdeploy), and --graph-out OUT/graph.nir
    replaced the deployment's own graph. Now exit 2 before training; OUT is left as it was."""
    from click.testing import CliRunner

    from nirdeploy.cli import main
    from nirdeploy.graph.loading import save_nir

    x, y, _, _ = digits
    save_nir(rsnn(), tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", x[:8])
    np.save(tmp_path / "y.npy", y[:8])
    out = tmp_path / "out"
    args = ["finetune", str(tmp_path / "g.nir"), "-t", "xylo:audio3", "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
            "--dt", "1e-4", "--reset", "subtract", "--epochs", "1", "-o", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for inside in ("g2.nir", "graph.nir"):
        r = CliRunner().invoke(main, args + ["--force", "--graph-out", str(out / inside)])
        assert r.exit_code == 2 and "is inside" in r.output and "epoch" not in r.output, r.output
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
