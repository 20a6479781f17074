"""The target contract, proven with a minimal test target (tests/toy_target.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nirdeploy
from nirdeploy.backend.target import _clear_caches, available_targets, get_target, parse_target_spec, register_target
from nirdeploy.errors import TargetError, UsageError

from graphs import ff_graph, write
from toy_target import ToyTarget

TESTS = Path(__file__).parent


@pytest.fixture
def toy():
    register_target("toy", ToyTarget)
    yield get_target("toy")
    from nirdeploy.backend import target as t

    t._EXTRA.pop("toy", None)
    _clear_caches()


def test_builtin_xylo_registered_through_entry_point():
    from importlib import metadata

    eps = {ep.name: ep.value for ep in metadata.entry_points(group="nirdeploy.targets")}
    assert eps.get("xylo") == "nirdeploy_targets.xylo:XyloTarget"
    assert "xylo" in available_targets()
    assert get_target("xylo").variants() == ["audio2", "audio3", "imu"]


def test_parse_target_spec(toy):
    t, v = parse_target_spec("toy")
    assert (t.name, v) == ("toy", "big")  # first variant in sorted order
    assert parse_target_spec("toy:small")[1] == "small"
    with pytest.raises(UsageError, match="unknown variant 'huge'"):
        parse_target_spec("toy:huge")
    with pytest.raises(UsageError, match="unknown target 'nochip'"):
        parse_target_spec("nochip:x")


def test_contract_check_compile_simulate_export_load(toy, tmp_path):
    g = ff_graph(4, 8, 3, seed=1)
    rep = nirdeploy.check(g, target="toy:small", dt=1e-4)
    assert rep.fits and rep.target == "toy" and rep.variant == "small"
    assert {r.name: r.used for r in rep.resources} == {"neurons": 11, "inputs": 4}
    big = ff_graph(6, 20, 3, seed=1)
    rep = nirdeploy.check(big, target="toy:small", dt=1e-4)
    assert not rep.fits
    # all violations collected, each naming rule, limit and actual value
    assert sorted((v.rule, v.limit, v.actual) for v in rep.errors) == [("inputs", 4, 6), ("neurons", 12, 23)]
    assert json.loads(rep.to_json())["fits"] is False

    dep = nirdeploy.compile(g, target="toy:small", dt=1e-4)
    x = np.random.default_rng(0).poisson(0.5, size=(2, 30, 4))
    y = dep.simulate(x)
    assert y.shape == (2, 30, 3)
    out = tmp_path / "dep"
    dep.save(out)
    assert {"report.json", "deployment.json", "toy.json", "toy_graph.nir", "graph.nir"} <= {p.name for p in out.iterdir()}
    dep2 = nirdeploy.load_deployment(out)
    assert np.array_equal(dep2.simulate(x), y)
    assert dep2.report.to_dict() == dep.report.to_dict()


def test_broken_plugin_gives_target_error(tmp_path):
    def factory():
        raise RuntimeError("boom")

    register_target("broken", factory)
    try:
        with pytest.raises(TargetError, match="broken.*failed to load.*boom"):
            get_target("broken")
    finally:
        from nirdeploy.backend import target as t

        t._EXTRA.pop("broken", None)
        _clear_caches()


def test_third_party_target_via_entry_point(tmp_path):
    """A target in another distribution registers with an entry point alone."""
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nirdeploy.targets]\ntoy = toy_target:ToyTarget\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS)]))
    r = subprocess.run([sys.executable, "-m", "nirdeploy.cli", "targets", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {(d["target"], d["variant"]) for d in json.loads(r.stdout)}
    assert {("toy", "small"), ("toy", "big"), ("xylo", "audio2")} <= rows
    g = write(ff_graph(6, 20, 3), tmp_path / "g.nir")
    r = subprocess.run([sys.executable, "-m", "nirdeploy.cli", "check", str(g), "--target", "toy:small", "--dt", "1e-4", "--json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert {v["rule"] for v in json.loads(r.stdout)["violations"]} == {"inputs", "neurons"}


def test_saving_a_network_that_does_not_fit_raises_and_writes_nothing(toy, tmp_path):
    dep = nirdeploy.compile(ff_graph(6, 20, 3, seed=1), target="toy:small", dt=1e-4)
    assert not dep.fits
    with pytest.raises(nirdeploy.DoesNotFitError, match="does not fit toy:small") as e:
        dep.save(tmp_path / "o")
    assert e.value.exit_code == 1 and not (tmp_path / "o").exists()
