"""`simulate DIR --compare-reference` (and --labels) runs the float reference of a compiled
folder's graph with the spike rule the graph records (Sinabs' MultiSpike: floor(v / threshold)
spikes per step). `simulate --reference` said so; the compiled-folder path printed only dt, reset
and scheme, so a multi-spike reference ran unannounced next to a one-spike-per-step chip."""

from __future__ import annotations

import nir
import numpy as np
from click.testing import CliRunner

from nirdeploy.cli import main


def _if_graph(path, multi: bool):
    rng = np.random.default_rng(0)
    one6, one3 = np.ones(6), np.ones(3)
    meta = {"nirdeploy_dt": 1e-3, "nirdeploy_reset": "subtract", "nirdeploy_source": "sinabs 3.1.3"}
    if multi:
        meta["nirdeploy_spike_rule"] = "multi"
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([4])),
        "fc1": nir.Affine(weight=rng.normal(0, 1, (6, 4)), bias=np.zeros(6)),
        "if1": nir.IF(r=one6, v_threshold=one6, v_reset=0 * one6),
        "fc2": nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=np.zeros(3)),
        "if2": nir.IF(r=one3, v_threshold=one3, v_reset=0 * one3),
        "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "output")], metadata=meta)
    nir.write(str(path), g)


def test_compare_reference_of_a_folder_names_the_recorded_multi_spike_rule(tmp_path):
    x = (np.random.default_rng(1).random((2, 8, 4)) < 0.5).astype(np.int64) * 3
    np.save(tmp_path / "x.npy", x)
    for multi in (True, False):
        g, out = tmp_path / f"g{multi}.nir", tmp_path / f"c{multi}"
        _if_graph(g, multi)
        r = CliRunner().invoke(main, ["compile", str(g), "-t", "loihi2", "-o", str(out)])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(main, ["simulate", str(out), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / f"y{multi}.npy"),
                                      "--compare-reference"])
        assert r.exit_code == 0, r.output
        said = "notice: spike rule: multi-spike steps, floor(v / threshold) spikes per step" in r.output
        assert said == multi, r.output
