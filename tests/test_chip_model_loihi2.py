"""Loihi 2's chip model (torch) against the bit-accurate simulator: exact array equality of the
output and of every layer's u, v and spikes.

* 120 random integer networks (ours): 1-3 Dense layers with recurrent synapses and feedback from
  a later layer, or a Conv layer into a Dense one; every sign mode (explicit and inferred, the
  mixed-sign LSB loss), 1-8 weight bits, weight exponents -5..7 (floor of negative sums), du/dv
  extremes, 13-bit bias mantissas with exponents 0..7, spike and voltage readouts; regimes that
  make u wrap at 24 bits, v clip at +-(2**23 - 1), Conv outputs wrap at 24 bits and activations
  pass int32 (Lava's 32-bit wraps), each checked to really occur;
* the corpus graphs (both Braille variants, the N-MNIST CNN) and random compiled graphs in graph
  form; the round trip of trained weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import nirdeploy  # noqa: E402
from nirdeploy.backend.hwconfig import load_hwconfig  # noqa: E402
from nirdeploy.backend.report import FitReport  # noqa: E402
from nirdeploy.backend.target import Artifact  # noqa: E402
from nirdeploy.torch import chip_model  # noqa: E402
from nirdeploy_targets.loihi2.config import INPUT, Loihi2Network, NeuronLayer, Synapse  # noqa: E402
from nirdeploy_targets.loihi2.lower import Lowered  # noqa: E402
from nirdeploy_targets.loihi2.sim import Constants, simulate  # noqa: E402
from nirdeploy_targets.loihi2.torch_model import Loihi2ChipModel  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from chip_graphs import event_input, random_rsnn  # noqa: E402
from conftest import CORPUS  # noqa: E402

HW = load_hwconfig("loihi2", "chip")
REGIMES = ("plain", "u_wrap", "v_clip", "wide", "conv")
N_RANDOM = 120
MODES = (None, "mixed", "excitatory", "inhibitory")


def _dense_chain(rng, regime):
    n_in = int(rng.integers(1, 12)) if regime != "wide" else int(rng.integers(1040, 1100))
    sizes = [int(rng.integers(1, 10)) for _ in range(int(rng.integers(1, 4)))]
    layers = []
    for i, n in enumerate(sizes):
        src_n = n_in if i == 0 else sizes[i - 1]
        if regime in ("u_wrap", "wide") and i == 0:
            w, exp, bits, mode = np.full((n, src_n), 255), 7, 8, "excitatory"
        else:
            w, exp = rng.integers(-300, 301, (n, src_n)), int(rng.integers(-5, 4))
            bits, mode = int(rng.integers(1, 9)), MODES[int(rng.integers(0, 4))]
        syns = [Synapse(INPUT if i == 0 else i - 1, "dense", w, exp, bits, mode)]
        if rng.random() < 0.5:
            syns.append(Synapse(i, "dense", rng.integers(-300, 301, (n, n)), int(rng.integers(-4, 4)), int(rng.integers(1, 9)),
                                MODES[int(rng.integers(0, 2))]))
        du = int(rng.choice([rng.integers(0, 4096), 4095, 0]))
        dv = int(rng.choice([rng.integers(0, 4096), 0, 4095]))
        if regime == "u_wrap":
            du, dv = 100, 3000
        vth = int(rng.choice([rng.integers(1, 2000), rng.integers(1, 131072)]))
        if regime == "v_clip":
            vth, dv = 131071, 0
        bm = rng.integers(-4096, 4096, n)
        be = rng.integers(0, 8, n) if regime != "wide" else np.zeros(n, np.int64)
        layers.append(NeuronLayer(f"l{i}", (n,), du, dv, vth, bm, be, syns))
    if len(sizes) > 1 and rng.random() < 0.4:  # feedback from the last layer into the first
        layers[0].synapses.append(Synapse(len(sizes) - 1, "dense", rng.integers(-200, 201, (sizes[0], sizes[-1])), 0, 8, None))
    net = Loihi2Network((n_in,), layers, len(sizes) - 1, "spikes" if rng.random() < 0.7 else "v")
    rate = 1.0 if regime in ("u_wrap", "wide") else rng.uniform(0.05, 0.6)
    x = (rng.random((int(rng.integers(1, 4)), int(rng.integers(20, 60)), n_in)) < rate) * rng.integers(1, 3, (1, 1, n_in))
    return net, x


def _conv_net(rng):
    in_shape = (2, 6, 6)
    c1 = int(rng.integers(1, 4))
    big = rng.random() < 0.5
    w = rng.integers(-300, 301, (c1, 2, 3, 3)) * (40000 if big else 1)  # Lava's Conv takes its integers as given
    s1 = Synapse(INPUT, "conv", w, 0, 8, None, (1, 1), (1, 1))
    L1 = NeuronLayer("c1", (c1, 6, 6), int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), int(rng.integers(1, 3000)),
                     rng.integers(-200, 200, c1 * 36), rng.integers(0, 4, c1 * 36), [s1])
    n2 = int(rng.integers(2, 6))
    s2 = Synapse(0, "dense", rng.integers(-256, 256, (n2, c1 * 36)), int(rng.integers(-3, 4)), int(rng.integers(1, 9)),
                 [None, "mixed"][int(rng.integers(0, 2))])
    L2 = NeuronLayer("d2", (n2,), int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), int(rng.integers(1, 3000)),
                     rng.integers(-100, 100, n2), rng.integers(0, 3, n2), [s2])
    net = Loihi2Network(in_shape, [L1, L2], 1, "spikes" if rng.random() < 0.6 else "v")
    x = rng.integers(0, 3, (2, 30) + in_shape) * (rng.random((2, 30) + in_shape) < 0.3)
    return net, x


def random_net(seed):
    rng = np.random.default_rng(7000 + seed)
    regime = REGIMES[seed % len(REGIMES)]
    net, x = _conv_net(rng) if regime == "conv" else _dense_chain(rng, regime)
    return regime, net, x


def _model(net):
    out_shape = net.layers[net.output].shape
    scale = np.full(out_shape, 1.0) if net.readout == "v" else None
    low = Lowered(net, FitReport("loihi2", "chip", settings={"dt": 1e-3}), tuple(net.input_shape), out_shape, 0, scale)
    return Loihi2ChipModel(Artifact("loihi2", "chip", low.report, low, tuple(net.input_shape), out_shape, 0), HW, None).eval()


@pytest.mark.parametrize("chunk", range(4))
def test_random_integer_networks_equal_the_simulator(chunk):
    M = float(1 << 23)
    seen = {"u_wrap": 0, "v_clip": 0, "wide": 0, "conv_wrap": 0, "mixed_lsb": 0, "negative_exp": 0, "feedback": 0, "v_readout": 0}
    for seed in range(chunk, N_RANDOM, 4):
        regime, net, x = random_net(seed)
        ref = simulate(net, x, constants=Constants.from_hw(HW), record=True)
        with torch.no_grad():
            y, rec = _model(net)(x, record=True)
        assert np.array_equal(y.numpy(), ref.output), f"seed {seed} ({regime}): output differs"
        for L in net.layers:
            for k in ("u", "v", "s"):
                assert np.array_equal(rec[L.name][k].numpy(), ref.states[L.name][k]), f"seed {seed} ({regime}): {L.name}.{k} differs"
        syns = [s for L in net.layers for s in L.synapses]
        u = np.concatenate([ref.states[L.name]["u"].ravel() for L in net.layers])
        v = np.concatenate([ref.states[L.name]["v"].ravel() for L in net.layers])
        a_big = [np.abs(s.effective()).sum(axis=-1).max() * 2.0**s.weight_exp * 64 for s in syns if s.kind == "dense"]
        seen["u_wrap"] += regime == "u_wrap" and bool((np.abs(u) > M / 2).any() and (np.sign(u[1:]) != np.sign(u[:-1])).any())
        seen["v_clip"] += bool((np.abs(v) == M - 1).any())
        seen["wide"] += any(a + 2 * M >= 2**31 for a in a_big)
        seen["conv_wrap"] += any(s.kind == "conv" and np.abs(s.weight).max() * 18 >= M for s in syns)
        seen["mixed_lsb"] += any(s.kind == "dense" and s.resolved_sign_mode == "mixed" and (s.weight % 2 != 0).any() for s in syns)
        seen["negative_exp"] += any(s.weight_exp < 0 for s in syns)
        seen["feedback"] += any(s.src > i for i, L in enumerate(net.layers) for s in L.synapses)
        seen["v_readout"] += net.readout == "v"
    assert all(v > 0 for v in seen.values()), seen


CORPUS_CASES = [("braille_noDelay_bias_zero.nir", dict(dt=1e-4, reset="zero")), ("braille_noDelay_noBias_subtract.nir", dict(dt=1e-4, reset="zero"))]


@pytest.mark.parametrize("name,kw", CORPUS_CASES)
def test_corpus_recurrent_graphs_equal_the_simulator(name, kw):
    x = np.load(CORPUS.parent / "braille_input.npy")[:2, :120]
    dep = nirdeploy.compile(str(CORPUS / name), target="loihi2", **kw)
    m = chip_model(str(CORPUS / name), "loihi2", **kw)
    with torch.no_grad():
        y = m(x)
    assert np.array_equal(y.numpy(), dep.simulate(x)) and y.sum() > 0


def test_corpus_cnn_with_conv_synapses_equals_the_simulator():
    rng = np.random.default_rng(0)
    x = event_input(rng, 2, 12, (2, 34, 34), rate=0.1, max_count=1)
    dep = nirdeploy.compile(str(CORPUS / "cnn_sinabs.nir"), target="loihi2", dt=1.0, reset="zero")
    assert any(s.kind == "conv" for L in dep.artifact.payload.network.layers for s in L.synapses)
    m = chip_model(str(CORPUS / "cnn_sinabs.nir"), "loihi2", dt=1.0, reset="zero")
    with torch.no_grad():
        y, rec = m(x, record=True)
    ref = dep.simulate(x, record=True)
    assert np.array_equal(y.numpy(), ref.output)
    for name, st in ref.states.items():
        assert np.array_equal(rec[name]["v"].numpy(), st["v"]), name
    assert sum(int(st["s"].sum()) for st in ref.states.values()) > 0


@pytest.mark.parametrize("seed", range(24))
def test_compiled_random_graphs_equal_the_simulator(seed):
    rng = np.random.default_rng(300 + seed)
    g = random_rsnn(seed, hidden_kinds=("CubaLIF", "LIF", "IF"), out_kinds=("CubaLIF", "LIF", "IF", "CubaLI", "LI"), max_out=12,
                    scale=float(rng.choice([1.0, 3.0])))
    x = event_input(rng, 2, 30, g.nodes["input"].params["shape"], rate=0.4)
    reset = ("zero", "subtract")[seed % 2]
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4, reset=reset)
    assert dep.fits, dep.report.render()
    m = chip_model(g, "loihi2", dt=1e-4, reset=reset)
    with torch.no_grad():
        y = m(x)
    assert np.array_equal(y.numpy(), dep.simulate(x))


def test_trained_weights_write_back_to_exactly_the_chip_models_integers():
    path = str(CORPUS / "braille_noDelay_bias_zero.nir")
    x = np.load(CORPUS.parent / "braille_input.npy")[:2, :100]
    m = chip_model(path, "loihi2", dt=1e-4, reset="zero").train()
    y, rec = m(x, record=True)
    (y.sum() + sum((r ** 2).mean() for r in rec["membrane"])).backward()
    for k, p in m.weights.params.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, k
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for p in m.weights.params.values():
            p.add_(torch.as_tensor(rng.normal(0, 0.1, p.shape)) * p.abs().mean())
    q = m.quantized()
    dep2 = nirdeploy.compile(m.to_graph(), target="loihi2", dt=1e-4, reset="zero")
    _, arrays = dep2.artifact.payload.network.to_parts()
    for k, v in arrays.items():
        assert np.array_equal(q[k], v), k
    with torch.no_grad():
        assert np.array_equal(m.eval()(x).numpy(), dep2.simulate(x))


def _per_neuron_tau(g, rng):
    """Give every hidden spiking layer three membrane time constants: the lowering splits each
    into one LIF process per (du, dv) pair (lower.split_by_decay)."""
    for name, n in g.nodes.items():
        if n.type in ("CubaLIF", "LIF") and name != "out":
            k = "tau_mem" if "tau_mem" in n.params else "tau"
            n.params[k] = n.params[k] * rng.choice([1.0, 2.0, 4.0], n.params[k].shape)
    return g


@pytest.mark.parametrize("seed", range(6))
def test_layers_split_by_time_constant_train_from_the_graph(seed):
    """Graph weights into and out of layers split by (du, dv): the chip model equals the simulator,
    every dense synapse of every group gets the lowering's pre-rounding value (within one integer
    of its weight where it did not saturate: rows and columns sliced per group) and a gradient."""
    rng = np.random.default_rng(700 + seed)
    g = _per_neuron_tau(random_rsnn(seed, hidden_kinds=("CubaLIF", "LIF"), out_kinds=("CubaLIF", "LIF", "LI"), max_out=6), rng)
    reset = ("zero", "subtract")[seed % 2]
    dep = nirdeploy.compile(g, target="loihi2", dt=1e-4, reset=reset)
    net = dep.artifact.payload.network
    assert dep.fits and any(L.neurons is not None for L in net.layers), [L.name for L in net.layers]
    x = event_input(rng, 2, 30, g.nodes["input"].params["shape"], rate=0.4)
    m = chip_model(g, "loihi2", dt=1e-4, reset=reset).train()
    y, rec = m(x, record=True)
    assert np.array_equal(y.detach().numpy(), dep.simulate(x))
    pre = m._pre_rounding(m._current())
    assert set(pre) == {(i, j) for i, L in enumerate(net.layers) for j, _ in enumerate(L.synapses)}
    for (i, j), p in pre.items():
        q = net.layers[i].synapses[j].effective()
        free = np.abs(q) < 254
        assert np.all(np.abs(p.detach().numpy() - q)[free] <= 1.0 + 1e-9), (net.layers[i].name, j)
    (y.sum() + sum((r ** 2).mean() for r in rec["membrane"])).backward()
    for k, p in m.weights.params.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, k
