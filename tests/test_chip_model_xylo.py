"""Xylo's chip model (torch) against the bit-accurate simulator: exact array equality.

* 120 random integer networks of the xylosim oracle test (40 per variant; regimes mild, saturate
  (per-add saturation at both bounds, in delivery order), wrap (int16 wrap of shifted weights),
  theta (thresholds <= 0: the literal spike loop), alias (alias spikes in both directions),
  wild), every output and every recorded state (Vmem, Isyn, Isyn2, Spikes, Vmem_out, Isyn_out);
* 40 random compiled graphs (CubaLIF / LIF hidden layers, recurrent or not, two hidden layers,
  spiking or Vmem readouts, Affine biases) and the corpus Braille graph, in graph form;
* hand-derived per-add saturation sequences for :func:`clamp_sequence`;
* the round trip: trained weights written back into the graph compile to exactly the chip
  model's integers (in memory and through a .nir file), and gradients reach every weight node.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import nirdeploy  # noqa: E402
from nirdeploy.backend.report import FitReport  # noqa: E402
from nirdeploy.backend.target import Artifact  # noqa: E402
from nirdeploy.torch import chip_model  # noqa: E402
from nirdeploy.torch.chip import clamp_sequence  # noqa: E402
from nirdeploy_targets.xylo.lower import Lowered  # noqa: E402
from nirdeploy_targets.xylo.sim import simulate  # noqa: E402
from nirdeploy_targets.xylo.torch_model import XyloChipModel  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from chip_graphs import event_input, random_rsnn  # noqa: E402
from conftest import CORPUS  # noqa: E402
from test_xylo_sim_oracle import random_network  # noqa: E402

N_RANDOM = 120


def _model(cfg, hw, variant):
    low = Lowered(cfg, FitReport("xylo", variant), (cfg.n_in,), (cfg.n_out,), 0, "spikes", None)
    return XyloChipModel(Artifact("xylo", variant, low.report, low, (cfg.n_in,), (cfg.n_out,), 0), hw, None).eval()


@pytest.mark.parametrize("chunk", range(5))
def test_random_integer_networks_equal_the_simulator(chunk):
    seen = {"saturated": 0, "wrapped_weight": 0, "theta_nonpositive": 0, "alias": 0, "input_above_cap": 0}
    for seed in range(chunk, N_RANDOM, 5):
        variant, regime, hw, cfg, x = random_network(seed)
        ref = simulate(cfg, hw, x, record=True)
        with torch.no_grad():
            y, rec = _model(cfg, hw, variant)(x, record=True)
        assert np.array_equal(y.numpy(), ref.spikes_out), f"seed {seed} ({variant}, {regime}): output spikes differ"
        for k, v in ref.states.items():
            assert np.array_equal(rec[k].numpy(), v), f"seed {seed} ({variant}, {regime}): {k} differs"
        states = [v for k, v in ref.states.items() if k != "Spikes"]
        seen["saturated"] += any(((s == 32767) | (s == -32768)).any() for s in states)
        for w, sh in ((cfg.weights_in, cfg.weight_shift_in), (cfg.weights_rec, cfg.weight_shift_rec)):
            seen["wrapped_weight"] += bool((np.abs(w.astype(np.int64) << sh) > 32767).any())
        seen["theta_nonpositive"] += bool((cfg.threshold <= 0).any())
        seen["alias"] += any(cfg.aliases)
        seen["input_above_cap"] += bool((x > 15).any())
    assert all(v > 0 for v in seen.values()), seen  # every case really occurs in this chunk


def test_clamp_sequence_is_per_add_saturation_in_order():
    # hand-derived: 32000 + 1000 saturates at 32767, then - 1000 -> 31767 (the plain sum is 32000)
    assert clamp_sequence(torch.tensor([32000.0]), torch.tensor([[1000.0, -1000.0]]), -32768, 32767).item() == 31767
    # the other order never saturates
    assert clamp_sequence(torch.tensor([32000.0]), torch.tensor([[-1000.0, 1000.0]]), -32768, 32767).item() == 32000
    # down to the bound, then back up: -32000 - 2000 -> -32768, + 500 -> -32268, + 40000 -> 7732
    assert clamp_sequence(torch.tensor([-32000.0]), torch.tensor([[-2000.0, 500.0, 40000.0]]), -32768, 32767).item() == 7732
    rng = np.random.default_rng(0)
    s0 = rng.integers(-32768, 32768, 400).astype(np.float64)
    terms = rng.integers(-40000, 40000, (400, 37)).astype(np.float64) * (rng.random((400, 37)) < 0.5)
    want = []
    for s, row in zip(s0, terms):
        for c in row:
            s = min(max(s + c, -32768), 32767)
        want.append(s)
    got = clamp_sequence(torch.as_tensor(s0), torch.as_tensor(terms), -32768, 32767).numpy()
    assert np.array_equal(got, np.array(want))


def _graph_case(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_rsnn(seed, scale=float(rng.choice([0.5, 1.0, 3.0])))
    variant = ("audio2", "audio3", "imu")[seed % 3]
    x = event_input(rng, 3, int(rng.integers(15, 40)), g.nodes["input"].params["shape"], rate=float(rng.choice([0.1, 0.4])), max_count=4)
    return g, variant, x


@pytest.mark.parametrize("seed", range(40))
def test_compiled_random_graphs_equal_the_simulator(seed):
    g, variant, x = _graph_case(seed)
    dep = nirdeploy.compile(g, target=f"xylo:{variant}", dt=1e-4, reset="subtract")
    if not dep.fits:
        pytest.skip("this random graph does not fit " + variant)  # (counted below: most fit)
    m = chip_model(g, f"xylo:{variant}", dt=1e-4, reset="subtract")
    with torch.no_grad():
        y = m(x)
    assert m.readout == dep.readout
    assert np.array_equal(y.numpy(), dep.simulate(x))
    for k, v in dep.artifact.payload.config.to_arrays().items():
        assert np.array_equal(m.quantized()[k], v), k


def test_most_random_graphs_fit_and_cover_the_cases():
    kinds, readouts, fits = set(), set(), 0
    for seed in range(40):
        g, variant, _ = _graph_case(seed)
        dep = nirdeploy.compile(g, target=f"xylo:{variant}", dt=1e-4, reset="subtract")
        fits += dep.fits
        if dep.fits:
            kinds |= {n.type for n in g.nodes.values()}
            readouts.add(dep.readout)
    assert fits >= 30, fits
    assert {"CubaLIF", "LIF", "Affine"} <= kinds and readouts == {"spikes", "vmem"}


def test_braille_corpus_graph_and_a_deployment_folder(tmp_path):
    path = CORPUS / "braille_noDelay_noBias_subtract.nir"
    x = np.load(CORPUS.parent / "braille_input.npy")
    dep = nirdeploy.compile(str(path), target="xylo:audio2", dt=1e-4, reset="subtract")
    m = chip_model(str(path), "xylo:audio2", dt=1e-4, reset="subtract")
    with torch.no_grad():
        y = m(x)
    assert np.array_equal(y.numpy(), dep.simulate(x)) and y.sum() > 0
    # from a deployment (its integers are the parameters), also after saving and loading it
    dep.save(tmp_path / "out")
    m2 = chip_model(nirdeploy.load_deployment(tmp_path / "out"))
    with torch.no_grad():
        assert np.array_equal(m2(x).numpy(), dep.simulate(x))
    with pytest.raises(nirdeploy.errors.UnsupportedError, match="no NIR graph form"):
        m2.to_graph()


def test_trained_weights_write_back_to_exactly_the_chip_models_integers(tmp_path):
    path = CORPUS / "braille_noDelay_noBias_subtract.nir"
    x = np.load(CORPUS.parent / "braille_input.npy")
    m = chip_model(str(path), "xylo:audio2", dt=1e-4, reset="subtract").train()
    y, rec = m(x, record=True)
    (y.sum() + sum((r ** 2).mean() for r in rec["membrane"])).backward()
    for k, p in m.weights.params.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, k
    rng = np.random.default_rng(3)
    with torch.no_grad():  # a training step's worth of change, plus a weight that outgrows its scale
        for p in m.weights.params.values():
            p.add_(torch.as_tensor(rng.normal(0, 0.05, p.shape)) * p.abs().mean())
        m.weights.params["fc1"][0, 0] = 40 * float(m.weights.params["fc1"].abs().max())
    q = m.quantized()
    g2 = m.to_graph()
    dep2 = nirdeploy.compile(g2, target="xylo:audio2", dt=1e-4, reset="subtract")
    for k, v in dep2.artifact.payload.config.to_arrays().items():
        assert np.array_equal(q[k], v), k
    with torch.no_grad():
        assert np.array_equal(m.eval()(x).numpy(), dep2.simulate(x))
    nirdeploy.graph.loading.save_nir(g2, tmp_path / "g2.nir")
    dep3 = nirdeploy.compile(str(tmp_path / "g2.nir"), target="xylo:audio2", dt=1e-4, reset="subtract")
    assert all(np.array_equal(q[k], v) for k, v in dep3.artifact.payload.config.to_arrays().items())


def test_training_and_evaluation_forward_values_are_the_same():
    g, variant, x = _graph_case(1)
    m = chip_model(g, f"xylo:{variant}", dt=1e-4, reset="subtract")
    with torch.no_grad():
        a = m.eval()(x)
    b = m.train()(x)
    assert b.requires_grad and np.array_equal(a.numpy(), b.detach().numpy())


def test_chip_model_refuses_what_it_cannot_model():
    from nirdeploy.errors import DoesNotFitError, UnsupportedError

    g = random_rsnn(0, max_out=8)
    with pytest.raises(UnsupportedError, match="takes no options"):
        chip_model(g, "xylo:audio3", dt=1e-4, reset="subtract", mode="binned")
    big = random_rsnn(5)
    big.nodes["fc_out"].params["weight"] = np.ones((40, big.nodes["fc_out"].params["weight"].shape[1]))
    for k in big.nodes["out"].params:
        big.nodes["out"].params[k] = np.resize(big.nodes["out"].params[k], 40)
    big.nodes["output"].params["shape"] = (40,)
    with pytest.raises(DoesNotFitError):
        chip_model(big, "xylo:audio2", dt=1e-4, reset="subtract")
