"""Every exporter defect nirdeploy's frontends repair (the tables in nirdeploy.frontends.snntorch /
norse / sinabs): the library's own exporter failing or changing the network, next to nirdeploy's
export of the same model reproducing it. Library versions are pinned in scripts/test.sh
(snnTorch 1.0.0, Norse 1.1.0, Sinabs 3.1.3 (2.0.3 where stated), nir 1.0.8, nirtorch 2.6).

Spikes are compared exactly: the nirdeploy side runs the reference (or, for Sinabs' multi-spike
IAF, nirdeploy's torch module with the recorded rule) against the library's own forward.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import require_oracle

torch = require_oracle("torch")
snn = require_oracle("snntorch")
nt = require_oracle("norse.torch")
sl = require_oracle("sinabs.layers")
nir = require_oracle("nir")
torch.set_num_threads(1)

import nirdeploy  # noqa: E402
from nirdeploy.frontends import from_torch, to_torch  # noqa: E402
from nirdeploy.frontends._common import ConversionWarning  # noqa: E402
from nirdeploy.graph.provenance import recorded  # noqa: E402


def spikes(shape, rate=0.4, seed=0, T=60, B=3):
    return np.random.default_rng(seed).poisson(rate, size=(B, T) + shape).astype(np.float32)


def scaled(net, k):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                m.weight.mul_(k)
    return net


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' own deprecation chatter
        yield


# -- snnTorch 1.0.0 ------------------------------------------------------------------------------


def _snn_raw(net, shape):
    from snntorch.export_nir import export_to_nir

    return export_to_nir(net, torch.zeros((1,) + shape), ignore_dims=[0])


def _snn_model(reset="zero", beta=0.9, n=16, scale=2.5):
    torch.manual_seed(0)
    kw = dict(reset_mechanism=reset, reset_delay=False, init_hidden=True)
    # per-neuron beta/threshold: the only form snnTorch's own exporter accepts
    return scaled(torch.nn.Sequential(torch.nn.Linear(4, n), snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), **kw),
                                      torch.nn.Linear(n, 3), snn.Leaky(beta=torch.full((3,), beta), threshold=torch.ones(3), output=True, **kw)), scale)


def test_snntorch_dt_baked_into_tau_vs_recorded_dt():
    from nirdeploy.frontends.snntorch import run_model

    net = _snn_model()
    x = spikes((4,), seed=1)
    raw = _snn_raw(net, (4,))
    np.testing.assert_allclose(raw.nodes["1"].tau, 1e-4 / (1 - 0.9), rtol=1e-5)  # dt = 1e-4 s whatever the model's
    y = run_model(net, torch.tensor(x))
    # a model trained on 1 ms bins: the raw graph at dt = 1e-3 s decays 10x too fast per step
    y_raw = nirdeploy.simulate_reference(raw, x, dt=1e-3, reset="zero")
    assert not np.array_equal(y_raw, y)
    g = from_torch(net, x, library="snntorch", dt=1e-3)
    np.testing.assert_allclose(g.nodes["1"].params["tau"], 1e-3 / (1 - 0.9), rtol=1e-5)
    assert recorded(g).dt == 1e-3
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)  # dt read from the graph


def _below_two_thresholds(net):
    """Non-negative rows summing to 0.95 and binary input: a membrane never exceeds 2x threshold,
    where snnTorch's immediate subtractive reset and NIR's agree (see the snnTorch frontend)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.abs_()
                m.bias.zero_()
                m.weight.div_(m.weight.sum(1, keepdim=True)).mul_(0.95)
    return net


def test_snntorch_reset_mechanism_recorded():
    from nirdeploy.frontends.snntorch import run_model

    net = _below_two_thresholds(_snn_model(reset="subtract", n=24))
    x = np.minimum(spikes((4,), seed=2, rate=0.8, T=100), 1)
    y = run_model(net, torch.tensor(x))
    raw = _snn_raw(net, (4,))
    assert not any("reset" in str(k) for k in raw.metadata)  # the raw file does not say how neurons reset
    y_raw = nirdeploy.simulate_reference(raw, x, dt=1e-4)  # so a consumer uses NIR's zero reset
    assert y.sum() > 100 and y_raw.sum() < 0.8 * y.sum()
    g = from_torch(net, x, library="snntorch")
    assert recorded(g).reset == "subtract"
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)


@pytest.mark.parametrize("reset_delay", [False, True])  # with beta = 1 the late subtraction is the same
def test_snntorch_beta_one_exports_as_if(reset_delay):
    from nirdeploy.frontends.snntorch import run_model

    torch.manual_seed(0)
    kw = dict(reset_mechanism="subtract", reset_delay=reset_delay, init_hidden=True)
    net = _below_two_thresholds(torch.nn.Sequential(
        torch.nn.Linear(4, 16), snn.Leaky(beta=torch.ones(16), threshold=torch.ones(16), **kw),
        torch.nn.Linear(16, 3), snn.Leaky(beta=torch.ones(3), threshold=torch.ones(3), output=True, **kw)))
    raw = _snn_raw(net, (4,))
    assert np.all(np.isinf(raw.nodes["1"].tau))  # LIF with tau = dt/(1 - 1) = inf
    with pytest.raises(nirdeploy.GraphValidationError, match="inf"):
        nirdeploy.simulate_reference(raw, spikes((4,)), dt=1e-4)
    x = np.minimum(spikes((4,), seed=3, T=80), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)  # exact: no warning either
        g = from_torch(net, x, library="snntorch")
    assert g.nodes["1"].type == "IF"
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 20
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)


def _snn_cnn(pool):
    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    n = 4 * 5 * 5 if isinstance(pool, torch.nn.AvgPool2d) else 4 * 4 * 4
    return scaled(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=torch.full((4, 8, 8), 0.9), threshold=torch.ones(4, 8, 8), **kw),
                                      pool, torch.nn.Flatten(), torch.nn.Linear(n, 3),
                                      snn.Leaky(beta=torch.full((3,), 0.9), threshold=torch.ones(3), output=True, **kw)), 3.0)


@pytest.mark.parametrize("pool,raw_error", [
    (lambda: torch.nn.AvgPool2d(2, padding=1), (ValueError, "type mismatch")),  # padding written as (0, 0)
    (lambda: sl.SumPool2d(2), (AttributeError, "NoneType")),  # "module not implemented" -> None node
])
def test_snntorch_pooling(pool, raw_error):
    from nirdeploy.frontends.snntorch import run_model

    net = _snn_cnn(pool())
    with pytest.raises(raw_error[0], match=raw_error[1]):
        _snn_raw(net, (2, 8, 8))
    x = spikes((2, 8, 8), seed=4)
    g = from_torch(net, x, library="snntorch")
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)


# -- Norse 1.1.0 --------------------------------------------------------------------------------


def test_norse_batch_dim_and_scalar_parameters(tmp_path):
    from norse.torch import to_nir

    from nirdeploy.frontends.norse import run_model

    torch.manual_seed(0)
    net = scaled(nt.SequentialState(torch.nn.Linear(4, 16), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.05)), dt=1e-3)), 4.0)
    raw = to_nir(net, torch.zeros(1, 4))
    assert list(np.ravel(raw.nodes["input"].input_type["input"])) == [1, 4]  # the batch axis is in the graph
    with pytest.raises(TypeError, match="Scalar datasets"):  # scalar tau / v_th
        nir.write(str(tmp_path / "raw.nir"), raw)
    x = spikes((4,), seed=5, rate=0.5)
    g = from_torch(net, x, library="norse")
    assert g.nodes["input"].params["shape"] == (4,) and g.nodes["1"].params["tau"].shape == (16,)
    nirdeploy.graph.loading.write_nir(g, tmp_path / "g.nir")
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(tmp_path / "g.nir", x), y)


def test_norse_lifcell_w_in_and_iaf_r():
    from norse.torch.utils.export_nir import _extract_norse_module

    cell = nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0)), dt=1e-3)
    raw = _extract_norse_module(cell, dt=1e-3)
    assert np.isclose(float(raw.w_in), 1.0) and np.isclose(float(raw.tau_syn), 5e-6)  # w_in default, tau = dt/tau_inv
    raw_iaf = _extract_norse_module(nt.IAFCell())
    assert np.allclose(np.asarray(raw_iaf.r), 1.0)  # v += x per step written as r = 1: at dt = 1 ms a gain of 1e-3
    net = scaled(nt.SequentialState(torch.nn.Linear(4, 16, bias=False), cell, torch.nn.Linear(16, 3), nt.IAFCell()), 4.0)
    x = spikes((4,), seed=6, rate=0.5)
    assert type(_extract_norse_module(net[0])).__name__ == "Affine"  # Linear(bias=False): a zero bias invented
    g = from_torch(net, x, library="norse")
    assert g.nodes["0"].type == "Linear"
    np.testing.assert_allclose(g.nodes["1"].params["w_in"], 5e-3 / 1e-3)  # Norse adds the whole input to i: tau_syn/dt
    np.testing.assert_allclose(g.nodes["3"].params["r"], 1e3)
    from nirdeploy.frontends.norse import run_model

    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)


def test_norse_conv_without_bias():
    from norse.torch import to_nir

    from nirdeploy.frontends.norse import run_model

    torch.manual_seed(0)
    net = scaled(nt.SequentialState(torch.nn.Conv2d(2, 4, 3, bias=False), nt.IAFCell(), torch.nn.Flatten(), torch.nn.Linear(144, 3), nt.IAFCell()), 4.0)
    with pytest.raises(AttributeError, match="NoneType"):
        to_nir(net, torch.zeros(1, 2, 8, 8))
    x = spikes((2, 8, 8), seed=7, rate=0.5)
    g = from_torch(net, x, library="norse")
    assert g.nodes["0"].type == "Conv2d" and not np.any(g.nodes["0"].params["bias"])
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)


def test_norse_subtract_reset_recorded():
    from norse.torch.functional.reset import reset_subtract

    from nirdeploy.frontends.norse import run_model

    torch.manual_seed(0)
    p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.05), reset_method=reset_subtract)
    net = scaled(nt.SequentialState(torch.nn.Linear(4, 16, bias=False), nt.LIFBoxCell(p, dt=1e-3), torch.nn.Linear(16, 3, bias=False),
                                    nt.LIFBoxCell(p, dt=1e-3)), 2.0)
    x = spikes((4,), seed=8, rate=0.5)
    g = from_torch(net, x, library="norse")
    assert recorded(g).reset == "subtract"
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(nirdeploy.simulate_reference(g, x), y)
    assert not np.array_equal(nirdeploy.simulate_reference(g, x, reset="zero"), y)  # what a consumer without the record runs


# -- Sinabs 2.0.3 -------------------------------------------------------------------------------


def test_sinabs_cnn_needs_type_inference_before_writing(tmp_path):
    import sinabs

    from nirdeploy.frontends.sinabs import run_model

    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=1), sl.SumPool2d(2),
                                     torch.nn.Flatten(), torch.nn.Linear(64, 3, bias=False), sl.IAFSqueeze(batch_size=1)), 3.0)
    raw = sinabs.to_nir(net, torch.zeros(1, 2, 8, 8))
    with pytest.raises(TypeError, match="data, shape or dtype"):
        nir.write(str(tmp_path / "raw.nir"), raw)
    assert np.allclose(np.asarray(raw.nodes["1"].r), 1.0)  # r = 1: v += x per step, no dt
    assert type(raw.nodes["4"]).__name__ == "Affine"  # Linear(bias=False) written with a zero bias
    x = spikes((2, 8, 8), seed=9, B=1, rate=0.5)
    g = from_torch(net, x, library="sinabs")
    np.testing.assert_allclose(g.nodes["1"].params["r"], 1e3)  # r = 1/dt at the recorded dt = 1 ms
    assert g.nodes["4"].type == "Linear"
    nirdeploy.graph.loading.write_nir(g, tmp_path / "g.nir")
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    y_g = to_torch(tmp_path / "g.nir")(torch.tensor(x, dtype=torch.float64)).detach().numpy()  # multi-spike rule recorded
    np.testing.assert_array_equal(y_g, y)


def test_sinabs_conv1d_with_bias():
    import sinabs

    from nirdeploy.frontends.sinabs import run_model

    torch.manual_seed(0)
    net = scaled(torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), sl.IAFSqueeze(batch_size=2), torch.nn.Flatten(), torch.nn.Linear(24, 3),
                                     sl.IAFSqueeze(batch_size=2)), 3.0)
    if sinabs.__version__.startswith("2."):  # Sinabs 2.x: `if module.bias` on a tensor; fixed in 3.x
        with pytest.raises(RuntimeError, match="ambiguous"):
            sinabs.to_nir(net, torch.zeros(2, 2, 8))
    x = spikes((2, 8), seed=10, B=2, rate=0.5)
    g = from_torch(net, x, library="sinabs")
    assert g.nodes["0"].type == "Conv1d" and np.any(g.nodes["0"].params["bias"])
    y = run_model(net, torch.tensor(x))
    assert y.sum() > 5
    np.testing.assert_array_equal(to_torch(g)(torch.tensor(x, dtype=torch.float64)).detach().numpy(), y)


def test_sinabs_recurrent_not_exported_by_sinabs():
    import sinabs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), sl.IAFRecurrent(rec_connect=torch.nn.Linear(16, 16, bias=False)))
    with pytest.raises(NotImplementedError, match="IAFRecurrent"):
        sinabs.to_nir(net, torch.zeros(1, 1, 4))
    # nirdeploy's export of the same layer: tests/test_frontends.py::test_sinabs_round_trip_multispike[recurrent]
