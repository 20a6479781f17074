"""Real-time feasibility: SynSense's published Xylo cycle model, re-implemented, and the energy
estimate (labelled as an estimate) that rests on one published power figure."""

from __future__ import annotations

import numpy as np
import pytest

import nirdeploy
from nirdeploy.backend.report import FitReport
from nirdeploy_targets.xylo.config import XyloConfig
from nirdeploy_targets.xylo.cycles import cycles_per_step, real_time_rule

from graphs import ff_graph
from test_xylo_sim_oracle import _hw


def _cfg():
    w_in = np.zeros((2, 3, 1), int)
    w_in[0, 0, 0] = 5  # only hidden neuron 0 has an input weight
    w_rec = np.zeros((3, 3, 1), int)
    w_rec[0, 1, 0] = w_rec[0, 2, 0] = 3  # neuron 0 drives 2 targets: average fan-out 2/3
    w_out = np.zeros((3, 1), int)
    w_out[2, 0] = 7  # only hidden neuron 2 feeds the output
    z = np.zeros(3, int)
    return XyloConfig(weights_in=w_in, weights_rec=w_rec, weights_out=w_out, dash_mem=z + 2, dash_syn=z + 1, dash_syn_2=z + 1,
                      dash_mem_out=[2], dash_syn_out=[1], threshold=z + 100, threshold_out=[100], bias=z, bias_out=[0])


def test_cycle_model_hand_computed():
    cfg = _cfg()
    c = cycles_per_step(cfg, _hw("audio2"), p_in=0.5, p_hid=0.25)
    # Audio 2 (expansion over all 3 hidden neurons):
    # input  2 * (0.5 * 3 * 3.5 + 1) = 12.5;  hidden Isyn 3 * (2/3 * 7 * 0.25 + 3) = 12.5
    # output 3 * 0.25 * (1 + 1 * 8) = 6.75;    hidden spiking 3 * (19 + 3 * 0.25) = 59.25; output 1 * 12
    assert c["parts"] == pytest.approx({"input": 12.5, "hidden_isyn": 12.5, "output_isyn": 6.75, "hidden_spiking": 59.25, "output_spiking": 12.0})
    assert c["cycles"] == pytest.approx(103.0)
    # IMU / Audio 3: only the hidden neurons with input (output) weights are looped over: 1 and 1
    c = cycles_per_step(cfg, _hw("imu"), p_in=0.5, p_hid=0.25)
    assert c["parts"]["input"] == pytest.approx(2 * (0.5 * 1 * 3.5 + 1)) and c["parts"]["output_isyn"] == pytest.approx(0.25 * 9)
    # worst case (p = 1) by default
    assert cycles_per_step(cfg, _hw("audio2"))["cycles"] == pytest.approx(2 * (3 * 3.5 + 1) + 3 * (2 / 3 * 7 + 3) + 3 * 9 + 3 * 22 + 12)


def test_real_time_rule_and_energy_estimate():
    cfg = _cfg()
    rep = FitReport("xylo", "audio2")
    real_time_rule(cfg, _hw("audio2"), 1e-6, rep, activity={"p_in": 0.5, "p_hid": 0.25, "samples": 3}, steps=100, node="h")
    (v,) = rep.violations  # 103 * 1.2 / 1e-6 = 123.6 MHz > 50 MHz, with measured activity: a warning
    assert (v.rule, v.severity, v.node, v.actual, v.limit) == ("real_time", "warning", "h", round(103 * 1.2 / 1e-6), 50_000_000)
    rt = rep.details["real_time"]
    assert rt["clock_needed_hz"] == pytest.approx(123.6e6)
    assert rt["energy_per_inference_j_estimate"] == pytest.approx(277.09e-6 * 123.6e6 / 6.25e6 * 100 * 1e-6)
    assert "ESTIMATE" in rep.notes[-1] and "uJ" in rep.notes[-1]
    res = [r for r in rep.resources if r.name.startswith("clock for real time")][0]
    assert res.confidence == "source" and "estimate" in res.name
    # without activity: worst case, an info; Audio 3 has no published power figure: no energy
    rep = FitReport("xylo", "audio3")
    real_time_rule(cfg, _hw("audio3"), 1e-6, rep)
    assert [v.severity for v in rep.violations] == ["info"] and "energy_per_inference_j_estimate" not in rep.details["real_time"]


def test_check_reports_real_time_with_sample_activity():
    g = ff_graph(4, 8, 3, seed=1)
    x = np.random.default_rng(0).poisson(0.3, (3, 50, 4))
    rep = nirdeploy.check(g, target="xylo:audio2", dt=1e-4, reset="subtract", sample=x)
    rt = rep.details["real_time"]
    assert rt["activity"] == "measured" and rt["p_in"] == pytest.approx(np.mean(x > 0))
    assert any(n.startswith("real time (estimate") for n in rep.notes)
    assert nirdeploy.check(g, target="xylo:audio2", dt=1e-4).details["real_time"]["activity"] == "worst case"
