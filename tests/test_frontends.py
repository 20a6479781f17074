"""Torch frontends: nirdeploy's torch module, snnTorch / Norse / Sinabs round trips, repaired
exporter defects, recorded dt/reset, and `nirdeploy compare` on the seed case.

Tolerances: nirdeploy's torch module runs float64 with the reference's operations, so spikes are
compared EXACTLY and states to 1e-9. Library models run float32 (snnTorch's spike functions return
float32 whatever the input); the networks here keep membranes away from threshold ties, and the
round trips are asserted spike-for-spike equal; the export check inside from_torch allows 0.1 %
of spike events to differ (float32 rounding at a threshold tie), see EXPORT_TOLERANCE.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import require_oracle  # noqa: E402

torch = require_oracle("torch")
snn = require_oracle("snntorch")
nt = require_oracle("norse.torch")
sl = require_oracle("sinabs.layers")
torch.set_num_threads(1)

import nirdeploy  # noqa: E402
from nirdeploy.errors import UnsupportedError, UsageError  # noqa: E402
from nirdeploy.frontends import from_torch, to_torch  # noqa: E402
from nirdeploy.frontends._common import ExportMismatchError  # noqa: E402

RNG = np.random.default_rng(0)
ZERO = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)


def spikes(shape, rate=0.3, seed=0, T=60, B=3):
    return np.random.default_rng(seed).poisson(rate, size=(B, T) + shape).astype(np.float32)


def scaled(net, k):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(k)
    return net


# -- nirdeploy.torch: the reference semantics --------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_torch_module_equals_reference(seed, reset):
    import graphs

    g = nirdeploy.load_graph(graphs.ff_graph(seed=seed, recurrent=True, scale=3.0, neuron="cuba" if seed % 2 else "lif"))
    x = spikes((4,), seed=seed)
    ref = nirdeploy.simulate_reference(g, x, dt=1e-4, reset=reset, record=True)
    y, st = to_torch(g, dt=1e-4, reset=reset)(torch.tensor(x, dtype=torch.float64), record=True)
    assert ref.output.sum() > 0
    np.testing.assert_array_equal(y.detach().numpy(), ref.output)
    for k in st:
        if "v" in st[k]:
            np.testing.assert_allclose(st[k]["v"].detach().numpy(), ref.states[k]["v"], atol=1e-9)


def test_torch_module_cnn_corpus_and_gradient(corpus):
    g = nirdeploy.load_graph(corpus / "cnn_sinabs.nir")
    m = to_torch(g, dt=1.0, reset="subtract")
    x = spikes(m.input_shape, seed=1, T=8, B=2)
    ref = nirdeploy.simulate_reference(g, x, dt=1.0, reset="subtract")
    y = m(torch.tensor(x, dtype=torch.float64))
    np.testing.assert_array_equal(y.detach().numpy(), ref)
    y.sum().backward()  # differentiable: surrogate gradients reach the first convolution
    w = next(p for p in m.parameters())
    assert w.grad is not None and torch.count_nonzero(w.grad) > 0


def test_import_nirdeploy_imports_no_torch():
    code = "import sys, nirdeploy; nirdeploy.from_torch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- snnTorch -----------------------------------------------------------------------------------


def _snn_models():
    torch.manual_seed(0)
    return {
        "linear": (scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, **ZERO), torch.nn.Linear(16, 3),
                                              snn.Leaky(beta=0.8, output=True, **ZERO)), 3.0), (4,)),
        "synaptic": (scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Synaptic(alpha=0.8, beta=0.9, **ZERO),
                                                torch.nn.Linear(16, 3), snn.Synaptic(alpha=0.7, beta=0.8, output=True, **ZERO)), 2.0), (4,)),
        "conv+pool": (scaled(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=0.9, **ZERO), torch.nn.AvgPool2d(2),
                                                 torch.nn.Flatten(), torch.nn.Linear(64, 3), snn.Leaky(beta=0.9, output=True, **ZERO)), 3.0), (2, 8, 8)),
        "recurrent": (scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.RLeaky(beta=0.9, linear_features=16, **ZERO),
                                                 torch.nn.Linear(16, 3), snn.Leaky(beta=0.8, output=True, **ZERO)), 3.0), (4,)),
    }


@pytest.mark.parametrize("kind", ["linear", "synaptic", "conv+pool", "recurrent"])
def test_snntorch_round_trip(kind):
    from nirdeploy.frontends.snntorch import run_model

    net, shape = _snn_models()[kind]
    x = spikes(shape, seed=2)
    g = from_torch(net, x, library="snntorch")
    y_model = run_model(net, torch.tensor(x))
    y_ref = nirdeploy.simulate_reference(g, x)  # dt and reset read back from the metadata
    assert y_ref.sum() > 5, "the test network must spike"
    np.testing.assert_array_equal(y_model, y_ref)
    y_back = to_torch(g, library="snntorch", dtype=torch.float32)(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(y_back, y_ref)


def test_snntorch_raw_exporter_fails_on_scalar_beta_and_batch_dim_repaired():
    from snntorch.export_nir import export_to_nir

    net, _ = _snn_models()["linear"]
    with pytest.raises(ValueError, match="type mismatch"):
        export_to_nir(net, torch.zeros(1, 4))  # batch dim kept in Input
    with pytest.raises(ValueError, match="type mismatch"):
        export_to_nir(net, torch.zeros(1, 4), ignore_dims=[0])  # scalar beta -> input_type []
    g = from_torch(net, spikes((4,)), library="snntorch")
    assert g.nodes["1"].params["tau"].shape == (16,)


def test_snntorch_recurrent_bias_moved_out_of_the_delayed_edge():
    net, _ = _snn_models()["recurrent"]
    assert net[1].recurrent.bias is not None  # snnTorch always gives the recurrent Linear a bias
    x = spikes((4,), seed=3)
    g = from_torch(net, x, library="snntorch")
    assert g.nodes["1.w_rec"].type == "Linear"
    np.testing.assert_allclose(g.nodes["0"].params["bias"], (net[0].bias + net[1].recurrent.bias).detach().double().numpy(), rtol=1e-6)


def test_snntorch_default_subtract_reset_delay_is_caught_with_the_reason():
    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, init_hidden=True), torch.nn.Linear(16, 3),
                                     snn.Leaky(beta=0.8, init_hidden=True, output=True)), 3.0)
    with pytest.raises(ExportMismatchError, match="reset_delay=True"):
        from_torch(net, spikes((4,)), library="snntorch")
    with pytest.warns(UserWarning, match="does not reproduce"):
        from_torch(net, spikes((4,)), library="snntorch", strict=False)


@pytest.mark.parametrize("layer,hint", [(lambda: torch.nn.MaxPool2d(2), "sum pool"), (lambda: torch.nn.BatchNorm2d(4), "fold_batchnorm")])
def test_unsupported_layers_name_the_fix(layer, hint):
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), layer(), snn.Leaky(beta=0.9, **ZERO), torch.nn.Flatten(),
                              torch.nn.Linear(4 * (4 if hint == "sum pool" else 8) ** 2, 3), snn.Leaky(beta=0.9, output=True, **ZERO))
    with pytest.raises(UnsupportedError, match=hint):
        from_torch(net, spikes((2, 8, 8)), library="snntorch")


def test_batchnorm_folded_and_dropout_bypassed():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), snn.Leaky(beta=0.9, **ZERO), torch.nn.Dropout(0.3),
                              torch.nn.Flatten(), torch.nn.Linear(256, 3), snn.Leaky(beta=0.9, output=True, **ZERO))
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    net.eval()
    g = from_torch(net, spikes((2, 8, 8)), library="snntorch", fold_batchnorm=True)
    assert [n.type for n in g.nodes.values()] == ["Input", "Conv2d", "LIF", "Flatten", "Affine", "LIF", "Output"]
    assert net[1] is bn  # the caller's model is untouched


def test_recorded_dt_and_reset_are_read_back(tmp_path):
    net, _ = _snn_models()["synaptic"]
    p = tmp_path / "g.nir"
    from_torch(net, spikes((4,)), library="snntorch", dt=2e-4, path=p)
    info = nirdeploy.inspect(p)
    assert info["recorded"]["dt"] == 2e-4 and info["recorded"]["reset"] == "zero"
    assert info["discretization"] is not None  # decays shown at the recorded dt, no --dt needed
    from nirdeploy.graph.discretize import resolve_dt, resolve_reset

    g = nirdeploy.load_graph(p)
    assert resolve_dt(g, None)[0] == 2e-4 and "recorded" in resolve_dt(g, None)[1]
    assert "differs" in resolve_dt(g, 1e-3)[1]
    assert resolve_reset(g, None)[0] == "zero"
    rep = nirdeploy.check(p, target="xylo:audio2")  # no dt given
    assert rep.to_dict()["settings"]["dt"] == 2e-4


def test_cli_export_and_compare(tmp_path):
    from click.testing import CliRunner

    from nirdeploy.cli import main

    (tmp_path / "m.py").write_text(
        "import torch, snntorch as snn\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    kw = dict(reset_mechanism='zero', reset_delay=False, init_hidden=True)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, **kw), torch.nn.Linear(16, 3), snn.Leaky(beta=0.9, output=True, **kw))\n")
    np.save(tmp_path / "x.npy", spikes((4,), rate=0.5))
    r = CliRunner().invoke(main, ["export", f"{tmp_path}/m.py:make", "--library", "snntorch", "--sample", str(tmp_path / "x.npy"),
                                  "-o", str(tmp_path / "g.nir")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "g.nir"), "-i", str(tmp_path / "x.npy"), "--with", "reference,torch,snntorch"])
    assert r.exit_code == 0, r.output
    assert "DIFFERS" not in r.output
    r = CliRunner().invoke(main, ["export", f"{tmp_path}/nope.py:make", "--library", "snntorch", "--input-shape", "4", "-o", str(tmp_path / "h.nir")])
    assert r.exit_code == 2 and "does not exist" in r.output


# -- the seed case: snnTorch -> NIR -> Norse ------------------------------------------------------


@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_compare_flags_naive_norse_and_passes_dt_aware(neuron, tmp_path):
    torch.manual_seed(0)
    L = (lambda **k: snn.Leaky(beta=0.9, **k)) if neuron == "leaky" else (lambda **k: snn.Synaptic(alpha=0.8, beta=0.9, **k))
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), L(**ZERO), torch.nn.Linear(16, 3), L(output=True, **ZERO)), 2.0)
    x = spikes((4,), rate=0.3, T=200, B=4, seed=1)
    p = tmp_path / "g.nir"
    from_torch(net, x, library="snntorch", path=p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nirdeploy.compare(p, x, runs=["reference", "snntorch", "norse", "norse:native"])
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["reference"]["total"] >= 10
    assert rows["norse"]["spike_agreement"] >= 0.99 and not rows["norse"]["flag"]
    assert rows["snntorch"]["spike_agreement"] >= 0.99
    naive = rows["norse:native"]
    assert naive["flag"] and naive["spike_agreement"] < 0.5
    assert any("r convention" in e and "1e-3" in e for e in res["explanations"])
    assert "DIFFERS" in res["text"]


# -- Norse ---------------------------------------------------------------------------------------


def _norse_models():
    torch.manual_seed(0)
    dt = 1e-3
    P = nt.LIFParameters(v_th=torch.tensor(0.1))
    return {
        "linear": (torch.nn.Linear(4, 16, bias=False), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.05)), dt=dt),
                   torch.nn.Linear(16, 3), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.05)), dt=dt)),
        "synaptic": (torch.nn.Linear(4, 16, bias=False), nt.LIFCell(P, dt=dt), torch.nn.Linear(16, 3), nt.LIFCell(P, dt=dt)),
        "conv+pool": (torch.nn.Conv2d(2, 4, 3, padding=1), nt.IAFCell(), torch.nn.LPPool2d(1, 2), torch.nn.Flatten(), torch.nn.Linear(64, 3), nt.IAFCell()),
        "recurrent": (torch.nn.Linear(4, 16, bias=False), nt.LIFRecurrentCell(16, 16, p=P, dt=dt), torch.nn.Linear(16, 3), nt.LIFCell(P, dt=dt)),
    }


@pytest.mark.parametrize("kind", ["linear", "synaptic", "conv+pool", "recurrent"])
def test_norse_round_trip(kind):
    from nirdeploy.frontends.norse import run_model

    net = scaled(nt.SequentialState(*_norse_models()[kind]), 4.0)
    x = spikes((2, 8, 8) if kind == "conv+pool" else (4,), rate=0.5, seed=4)
    g = from_torch(net, x, library="norse")
    y_ref = nirdeploy.simulate_reference(g, x)
    assert y_ref.sum() > 5
    np.testing.assert_array_equal(run_model(net, torch.tensor(x)), y_ref)
    y_back = to_torch(g, library="norse", dtype=torch.float32)(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(y_back, y_ref)


def test_norse_raw_exporter_defects_repaired():
    from norse.torch.utils.export_nir import _extract_norse_module

    cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0)), dt=1e-3)
    raw = _extract_norse_module(cell, dt=1e-3)
    assert np.isclose(float(raw.tau), 1e-5)  # dt / tau_inv: 1000x too short (Norse #411)
    assert _extract_norse_module(torch.nn.Flatten()) is None and _extract_norse_module(torch.nn.LPPool2d(1, 2)) is None
    net = scaled(nt.SequentialState(*_norse_models()["conv+pool"]), 4.0)
    g = from_torch(net, spikes((2, 8, 8), rate=0.5), library="norse")
    assert [n.type for n in g.nodes.values()][3:5] == ["SumPool2d", "Flatten"]
    assert np.allclose(g.nodes["1"].params["r"], 1e3)  # IAF adds the whole input per step: r = 1/dt
    g2 = from_torch(nt.SequentialState(*_norse_models()["linear"]), spikes((4,)), library="norse")
    assert np.allclose(g2.nodes["1"].params["tau"], 1e-2) and g2.nodes["0"].type == "Linear"  # no invented bias


def test_norse_dt_mismatch_is_an_error():
    with pytest.raises(UsageError, match="dt = 0.001"):
        from_torch(nt.SequentialState(*_norse_models()["linear"]), spikes((4,)), library="norse", dt=1e-4)


# -- Sinabs --------------------------------------------------------------------------------------


def _sinabs_models():
    torch.manual_seed(0)
    return {
        "linear": (torch.nn.Sequential(torch.nn.Linear(4, 16), sl.IAF(), torch.nn.Linear(16, 3), sl.IAF()), (4,)),
        "conv+pool": (torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=3), sl.SumPool2d(2),
                                          torch.nn.Flatten(), torch.nn.Linear(64, 3, bias=False), sl.IAFSqueeze(batch_size=3)), (2, 8, 8)),
        # rec_connect without a bias: Sinabs' recurrent input starts at 0 (see test_sinabs_recurrent_bias_...)
        "recurrent": (torch.nn.Sequential(torch.nn.Linear(4, 16), sl.IAFRecurrent(rec_connect=scaled(torch.nn.Linear(16, 16, bias=False), 0.1)),
                                          torch.nn.Linear(16, 3), sl.IAF()), (4,)),
    }


@pytest.mark.parametrize("kind", ["linear", "conv+pool", "recurrent"])
def test_sinabs_round_trip_multispike(kind):
    """Sinabs fires floor(v/threshold) spikes per step (v >= threshold) and subtracts: the graph
    records spike_rule=multi; nirdeploy's torch module follows it exactly. The one-spike reference
    agrees only where no step reaches 2x threshold; both are measured."""
    from nirdeploy.frontends.sinabs import run_model

    net, shape = _sinabs_models()[kind]
    net = scaled(net, 3.0)
    x = spikes(shape, rate=0.5, seed=5)
    g = from_torch(net, x, library="sinabs")
    from nirdeploy.graph.provenance import recorded

    assert recorded(g).spike_rule == "multi" and recorded(g).reset == "subtract"
    y_model = run_model(net, torch.tensor(x))
    y_own = to_torch(g)(torch.tensor(x, dtype=torch.float64)).detach().numpy()
    assert y_model.sum() > 5
    np.testing.assert_array_equal(y_own, y_model)
    y_back = to_torch(g, library="sinabs", dtype=torch.float32)(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(y_back, y_model)
    # the reference applies the recorded rule by itself, and says so
    res = nirdeploy.simulate_reference(g, x, full=True)
    np.testing.assert_array_equal(res.output, y_model)
    assert any("multi-spike" in n for n in res.notices)
    # with reset zero the rule cannot apply: one spike per step, and a notice says the run differs
    res0 = nirdeploy.simulate_reference(g, x, reset="zero", full=True)
    assert res0.output.max() <= 1 and any("multi-spike" in n and "differ" in n for n in res0.notices)
    # an explicit cap wins over the recorded rule
    assert nirdeploy.simulate_reference(g, x, spikes_per_step=1).max() <= 1
    # the core simulator applies it for every caller (the targets' --sample / --calibrate references too)
    from nirdeploy.sim.reference import simulate_reference as core_reference

    low = core_reference(g, x, None, reset="subtract")
    np.testing.assert_array_equal(low.output, y_model)
    assert any("multi-spike" in n for n in low.notes)
    assert sum("multi-spike" in n for n in res0.notes + res0.notices) == 1  # said once
    if y_model.max() > 1:
        cmp = nirdeploy.compare(g, x, runs=["reference", "torch", "sinabs"])
        assert any("multi-spike" in e for e in cmp["explanations"])


def test_cli_reference_applies_and_names_a_recorded_multispike_rule(tmp_path):
    """`simulate --reference` on a graph exported from Sinabs' MultiSpike: the output is the
    trained model's (several spikes per step) and the text says which rule ran; `--spikes-per-step
    1` caps it. Never silent about a rule the reference applies on its own."""
    from click.testing import CliRunner

    from nirdeploy.cli import main
    from nirdeploy.frontends.sinabs import run_model

    net, shape = _sinabs_models()["linear"]
    net = scaled(net, 3.0)
    x = spikes(shape, rate=0.5, seed=5)
    from_torch(net, x, library="sinabs", path=tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", x)
    y_model = run_model(net, torch.tensor(x))
    assert y_model.max() > 1  # the case is one where the rule matters
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "g.nir"), "--reference", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    assert r.exit_code == 0, r.output
    assert "multi-spike" in r.output and "--spikes-per-step" in r.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), y_model)
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "g.nir"), "--reference", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y1.npy"),
                                  "--spikes-per-step", "1"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "y1.npy").max() == 1


@pytest.mark.parametrize("kind", ["linear", "conv+pool", "recurrent"])
def test_sinabs_single_spike_round_trip_equals_the_reference(kind):
    """SingleSpike + MembraneSubtract layers: one spike per step, so nirdeploy's float64 reference
    simulator itself reproduces the Sinabs model (Sinabs tests v >= threshold, NIR v > threshold:
    random float weights never tie exactly)."""
    from sinabs.activation import SingleSpike

    from nirdeploy.frontends.sinabs import run_model

    net, shape = _sinabs_models()[kind]
    for m in net.modules():
        if isinstance(m, (sl.IAF, sl.IAFSqueeze, sl.IAFRecurrent)):
            m.spike_fn = SingleSpike
    net = scaled(net, 3.0)
    x = spikes(shape, rate=0.5, seed=6)
    g = from_torch(net, x, library="sinabs")
    from nirdeploy.graph.provenance import recorded

    assert recorded(g).spike_rule == "strict"
    y_model = run_model(net, torch.tensor(x))
    assert y_model.sum() > 5 and y_model.max() == 1
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y_model)
    y_back = to_torch(g, library="sinabs", dtype=torch.float32)(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(y_back, y_model)


def test_sinabs_recurrent_bias_arrives_a_step_late_in_sinabs():
    """Sinabs' rec_out starts at 0, so rec_connect's bias arrives from t = 1; nirdeploy's NIR
    loop delays lif -> w_rec, so an Affine's bias arrives at t = 0 too: for IF neurons a permanent
    membrane offset. Not expressible in NIR: the export says exactly that."""
    from nirdeploy.frontends._common import ConversionWarning

    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), sl.IAFRecurrent(rec_connect=torch.nn.Linear(16, 16)),
                                     torch.nn.Linear(16, 3), sl.IAF()), 3.0)
    x = spikes((4,), rate=0.5, seed=5)
    with pytest.raises(ExportMismatchError, match="rec_connect's bias arrives from t = 1") as e:
        from_torch(net, x, library="sinabs")
    assert "bias=False" in str(e.value)
    with pytest.warns(ConversionWarning, match="arrives from t = 1"):
        g = from_torch(net, x, library="sinabs", strict=False)
    assert g.nodes["1.w_rec"].type == "Affine"
    # the same weights without the bias: spike-for-spike equal (the bias is the whole difference)
    with torch.no_grad():
        net[1].rec_connect.bias.zero_()
    from nirdeploy.frontends.sinabs import run_model

    g = from_torch(net, x, library="sinabs")
    assert g.nodes["1.w_rec"].type == "Linear"
    np.testing.assert_array_equal(to_torch(g)(torch.tensor(x, dtype=torch.float64)).detach().numpy(), run_model(net, torch.tensor(x)))


@pytest.mark.parametrize("layer,what", [
    (lambda: sl.IAF(reset_fn=__import__("sinabs.activation", fromlist=["x"]).MembraneReset(reset_value=0.5),
                    spike_fn=__import__("sinabs.activation", fromlist=["x"]).SingleSpike), "reset_value"),
    (lambda: sl.IAF(reset_fn=__import__("sinabs.activation", fromlist=["x"]).MembraneSubtract(subtract_value=2.0)), "subtract_value"),
    (lambda: sl.IAF(tau_syn=5.0), "tau_syn"),
])
def test_sinabs_settings_nir_cannot_express_are_named(layer, what):
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), layer(), torch.nn.Linear(16, 3), sl.IAF())
    with pytest.raises(UnsupportedError, match=what):
        from_torch(net, spikes((4,)), library="sinabs")


def test_sinabs_min_v_mem_warned_even_when_the_sample_agrees():
    from nirdeploy.frontends._common import ConversionWarning

    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), sl.IAF(min_v_mem=-1.0))
    with torch.no_grad():
        net[0].weight.abs_()  # non-negative input: the clamp never acts on this sample
    with pytest.warns(ConversionWarning, match="(?s)reproduces the model on this sample.*min_v_mem"):
        from_torch(net, spikes((4,)), library="sinabs")


def test_snntorch_rsynaptic_reset_delay_false_is_the_snntorch_bug():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=16, **ZERO),
                              torch.nn.Linear(16, 3), snn.Leaky(beta=0.8, output=True, **ZERO))
    with pytest.raises(TypeError):  # the library itself: forward fails with init_hidden=True
        net(torch.zeros(2, 4))
    with pytest.raises(UnsupportedError, match=r"snnTorch 1\.0\.0 bug: RSynaptic\(reset_delay=False\)"):
        from_torch(net, spikes((4,)), library="snntorch")
    # with explicit states it runs, but the reset stays one step late: the membrane is not reset
    lay = snn.RSynaptic(alpha=0.5, beta=0.5, linear_features=1, reset_delay=False)
    with torch.no_grad():
        lay.recurrent.weight.zero_()
        lay.recurrent.bias.zero_()
        z = torch.zeros(1, 1)
        spk, _, mem = lay(torch.full((1, 1), 2.0), z, z, z)
    assert spk.item() == 1 and mem.item() == 2.0


@pytest.mark.parametrize("mech,match", [("subtract", "threshold/beta"), ("zero", "refractory")])
def test_snntorch_rsynaptic_late_reset_named(mech, match):
    from nirdeploy.frontends._common import ConversionWarning

    torch.manual_seed(0)
    kw = dict(reset_mechanism=mech, init_hidden=True)  # reset_delay=True: snnTorch's default
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=16, **kw),
                                     torch.nn.Linear(16, 3), snn.Leaky(beta=0.8, output=True, reset_mechanism=mech, reset_delay=mech == "zero",
                                                                       init_hidden=True)), 2.0)
    x = spikes((4,), seed=2)
    with pytest.raises(ExportMismatchError, match=match):
        from_torch(net, x, library="snntorch")
    with pytest.warns(ConversionWarning, match=match):
        g = from_torch(net, x, library="snntorch", strict=False)
    assert g.nodes["1.lif"].type == "CubaLIF"


def test_snntorch_late_reset_explanations_hold():
    """The reasons the export gives are the actual arithmetic of snnTorch 1.0.0's late reset:
    subtract late = subtract threshold/beta in the step of the spike (exact); zero late for
    Synaptic-type neurons = mem (1 - reset) * (beta*mem + syn): the step after a spike is lost;
    Leaky's zero late = NIR's zero reset (exported without a warning)."""
    from snntorch import utils

    torch.manual_seed(0)
    T, beta, alpha = 200, 0.8, 0.7
    x = torch.rand(4, T, 6) * 0.9
    # Leaky, subtract, late
    lay = snn.Leaky(beta=beta, reset_mechanism="subtract", init_hidden=True)
    utils.reset(lay)
    s_lib = torch.stack([lay(x[:, t]) for t in range(T)], 1)
    v, out = torch.zeros(4, 6), []
    for t in range(T):
        v = beta * v + x[:, t]
        s = (v > 1).float()
        v = v - s / beta
        out.append(s)
    assert s_lib.sum() > 50
    assert torch.equal(s_lib, torch.stack(out, 1))
    # RSynaptic, zero, late
    lay = snn.RSynaptic(alpha=alpha, beta=beta, linear_features=6, reset_mechanism="zero", init_hidden=True)
    utils.reset(lay)
    s_lib = torch.stack([lay(x[:, t]) for t in range(T)], 1)
    syn, mem, spk, out = torch.zeros(4, 6), torch.zeros(4, 6), torch.zeros(4, 6), []
    with torch.no_grad():
        for t in range(T):
            r = (mem > 1).float()
            syn = alpha * syn + x[:, t] + lay.recurrent(spk)
            mem = (1 - r) * (beta * mem + syn)
            spk = (mem > 1).float()
            out.append(spk)
    assert s_lib.sum() > 50
    assert torch.equal(s_lib, torch.stack(out, 1))
    # Leaky, zero, late: exact, no warning
    from nirdeploy.frontends._common import ConversionWarning
    from nirdeploy.frontends.snntorch import run_model

    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True),
                                     torch.nn.Linear(16, 3), snn.Leaky(beta=0.8, reset_mechanism="zero", init_hidden=True, output=True)), 3.0)
    xs = spikes((4,), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        g = from_torch(net, xs, library="snntorch")
    y = run_model(net, torch.tensor(xs))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, xs), y)


def test_snntorch_late_reset_warned_even_when_the_sample_agrees():
    from nirdeploy.frontends._common import ConversionWarning

    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.9, init_hidden=True, output=True))  # subtract, late
    with pytest.warns(ConversionWarning, match="(?s)reproduces the model on this sample.*threshold/beta"):
        from_torch(net, np.zeros((2, 10, 4), np.float32), library="snntorch")  # silent: nothing to disagree on


def test_cli_compare_is_a_report_unless_min_agreement(tmp_path):
    from click.testing import CliRunner

    from nirdeploy.cli import main

    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, **ZERO), torch.nn.Linear(16, 3),
                                     snn.Leaky(beta=0.9, output=True, **ZERO)), 2.0)
    x = spikes((4,), rate=0.3, T=200, B=4, seed=1)
    from_torch(net, x, library="snntorch", path=tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", x)
    base = ["compare", str(tmp_path / "g.nir"), "-i", str(tmp_path / "x.npy"), "--with", "reference,norse,norse:native"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 0, r.output
    assert "DIFFERS" in r.output  # the naive trip is still flagged in the report
    r = CliRunner().invoke(main, base + ["--min-agreement", "0.99"])
    assert r.exit_code == 1 and "below 99 %" in r.output
    r = CliRunner().invoke(main, base[:-1] + ["reference,norse", "--min-agreement", "0.99"])
    assert r.exit_code == 0, r.output  # the dt-aware conversion passes the gate
    for bad in ("1.5", "-0.1", "nan"):
        r = CliRunner().invoke(main, base + ["--min-agreement", bad])
        assert r.exit_code == 2 and "min_agreement" in r.output
    r = CliRunner().invoke(main, ["compare", "--help"])
    assert "--min-agreement" in r.output


def test_compare_chip_folder_labels_and_json_stdout(tmp_path):
    """A compiled chip folder in the table (latency shifted back, the compile report's warnings as
    explanations), accuracy from labels, and --json output that parses although snnTorch's
    importer prints to stdout."""
    import json

    from click.testing import CliRunner

    from nirdeploy.cli import main

    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, **ZERO), torch.nn.Linear(16, 3),
                                     snn.Leaky(beta=0.9, output=True, **ZERO)), 2.0)
    x = spikes((4,), rate=0.3, T=100, B=4, seed=1)
    g = tmp_path / "g.nir"
    from_torch(net, x, library="snntorch", path=g)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1]))
    r = CliRunner().invoke(main, ["compile", str(g), "--target", "xylo:audio2", "-o", str(tmp_path / "chip")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compare", str(g), "-i", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                                  "--with", f"reference,{tmp_path / 'chip'},snntorch:native", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    rows = {row["name"]: row for row in data["rows"]}
    assert set(rows) == {"reference", "chip", "snntorch:native"}
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in rows.values())
    assert rows["chip"]["latency_steps"] >= 1 and rows["chip"]["spike_agreement"] is not None
    expl = "\n".join(data["explanations"])
    assert "chip: latency" in expl and "chip: reset_semantics" in expl  # the compile report's warning


def test_missing_library_names_the_install_command(monkeypatch):
    import nirdeploy.frontends._common as C
    from nirdeploy.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"nirdeploy\[torch\]"):
        C.require("nirdeploy_no_such_library", "x==1")


def test_readme_torch_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"readme-torch-example:begin -->\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "net.nir").is_file()
