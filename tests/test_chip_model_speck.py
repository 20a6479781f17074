"""Speck's chip model (torch) against the simulators of both modes: exact array equality of the
output and of every layer's v and spike counts.

* 100 random integer networks (ours), each in both modes: 1-3 conv layers (kernels 1-3, stride
  1-2, padding), sum pooling between layers, a layer merging two sources, biases on slow-clock
  ticks (0-2 per step), thresholds from 1 (weights far above them: one spike per event on the
  chip, floor(v / threshold) in sinabs) to 32767, lower bounds, return to zero or subtraction,
  spike test >= or >, 16-bit saturation or wrap-around; each case checked to occur;
* random compiled graphs (Conv2d / pooling / Flatten / Affine into IF) and the corpus CNN in
  graph form; the round trip of trained weights.
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
from nirdeploy_targets.speck.config import INPUT, SpeckLayer, SpeckNetwork  # noqa: E402
from nirdeploy_targets.speck.lower import Lowered, resolve_options  # noqa: E402
from nirdeploy_targets.speck.sim import simulate_binned, simulate_events  # noqa: E402
from nirdeploy_targets.speck.torch_model import SpeckChipModel  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from chip_graphs import event_input  # noqa: E402
from conftest import CORPUS  # noqa: E402
from speck_graphs import chain_graph, random_specs  # noqa: E402

HW = load_hwconfig("speck", "speck2f")
N_RANDOM = 100


def random_net(seed):
    rng = np.random.default_rng(4000 + seed)
    C0, side = int(rng.integers(1, 3)), int(rng.integers(4, 9))
    in_shape = (C0, side, side)
    layers, shapes, names = [], {INPUT: in_shape}, [INPUT]
    for i in range(int(rng.integers(1, 4))):
        src = names[-1]
        cs, hs, ws = shapes[src]
        pool = int(rng.choice([1, 1, 2])) if src != INPUT and hs >= 4 else 1
        hin, win = hs // pool, ws // pool
        sources = [(src, pool)]
        if len(names) > 2 and rng.random() < 0.6:  # a second source into this layer (sinabs' Merge)
            c2, h2, w2 = shapes[names[-2]]
            p2 = h2 // hin if hin and h2 % hin == 0 else 0
            if c2 == cs and p2 in (1, 2, 4) and h2 // p2 == hin and w2 // p2 == win:
                sources.append((names[-2], p2))
        k = int(rng.choice([1, 2, 3]))
        stride = int(rng.choice([1, 1, 2]))
        pad = int(rng.integers(0, k))
        c = int(rng.integers(1, 4))
        if i >= 1 and src != INPUT and rng.random() < 0.6:  # keep the shape, so that the next layer can merge this one and its source
            k, stride, pad, c = 3, 1, 1, cs
        H = (hin + 2 * pad - k) // stride + 1
        if H < 1:
            k, stride, pad, H = 1, 1, 0, hin
        w = rng.integers(-128, 128, (c, cs, k, k)) if rng.random() < 0.4 else rng.integers(-20, 60, (c, cs, k, k))
        th = int(rng.choice([rng.integers(1, 50), rng.integers(50, 3000), 32767]))
        low = int(rng.choice([-32768, -th, rng.integers(-500, 1)]))
        if seed % 3 == 0 and i == 0:  # drive the first layer's state through the 16-bit bound
            w, th, low = -rng.integers(100, 128, (c, cs, k, k)), 32767, -32768
        has_bias = rng.random() < 0.4
        bias = rng.integers(-30, 30, c) if has_bias else np.zeros(c, np.int64)
        name = f"l{i}"
        layers.append(SpeckLayer(name, w, bias, th, low, bool(rng.random() < 0.3), (stride, stride), (pad, pad), (cs, hin, win), (c, H, H),
                                 sources, core=i, has_bias=has_bias))
        shapes[name] = (c, H, H)
        names.append(name)
    net = SpeckNetwork(layers, in_shape, names[-1], 1, shapes[names[-1]])
    x = (rng.random((2, int(rng.integers(5, 20))) + in_shape) < rng.uniform(0.05, 0.4)) * rng.integers(1, 4, (2, 1) + in_shape)
    if seed % 3 == 0:  # enough events to reach the bound
        x = x * 60
    opts = resolve_options({"spike_test": (">=", ">")[(seed // 3) % 2], "state_overflow": ("saturate", "wrap")[(seed // 8) % 2],
                            "slow_clock_ticks_per_step": int(rng.integers(1, 4)), "binned_spikes": ("multi", "single")[(seed // 4) % 2]}, HW)
    return net, x, opts


def _model(net, opts, mode):
    low = Lowered(net, FitReport("speck", "speck2f", settings={"dt": 1.0}), opts, tuple(net.input_shape), tuple(net.output_shape))
    return SpeckChipModel(Artifact("speck", "speck2f", low.report, low, tuple(net.input_shape), tuple(net.output_shape), 0), HW, None, mode).eval()


@pytest.mark.parametrize("chunk", range(4))
def test_random_integer_networks_equal_both_simulators(chunk):
    seen = {"merge": 0, "pool": 0, "ticks": 0, "rtz": 0, "wrap": 0, "saturated": 0, "wrapped": 0, "gt": 0, "multi_crossing": 0, "low_clamp": 0}
    for seed in range(chunk, N_RANDOM, 4):
        net, x, o = random_net(seed)
        ev = simulate_events(net, x, state_format=HW.fmt("state"), spike_test=o["spike_test"], state_overflow=o["state_overflow"],
                             ticks_per_step=o["slow_clock_ticks_per_step"], record=True)
        bn = simulate_binned(net, x, spikes=o["binned_spikes"], record=True)
        for mode, ref in (("event", ev), ("binned", bn)):
            with torch.no_grad():
                y, rec = _model(net, o, mode)(x, record=True)
            assert np.array_equal(y.numpy(), ref.output), f"seed {seed} ({mode}): output differs"
            for l in net.layers:
                for k in ("v", "spikes"):
                    assert np.array_equal(rec[l.name][k].numpy(), ref.states[l.name][k]), f"seed {seed} ({mode}): {l.name}.{k} differs"
        v = np.concatenate([ev.states[l.name]["v"].ravel() for l in net.layers])
        seen["merge"] += any(len(l.sources) > 1 for l in net.layers)
        seen["pool"] += any(p > 1 for l in net.layers for _, p in l.sources)
        seen["ticks"] += o["slow_clock_ticks_per_step"] > 0 and any(np.any(l.bias != 0) for l in net.layers)
        seen["rtz"] += any(l.return_to_zero for l in net.layers)
        seen["wrap"] += o["state_overflow"] == "wrap"
        seen["saturated"] += o["state_overflow"] == "saturate" and bool((v == -32768).any())
        seen["wrapped"] += o["state_overflow"] == "wrap" and seed % 3 == 0
        seen["gt"] += o["spike_test"] == ">"
        seen["multi_crossing"] += any((np.abs(l.weight) > 2 * l.threshold_high).any() for l in net.layers)
        seen["low_clamp"] += any((ev.states[l.name]["v"] == l.threshold_low).any() and l.threshold_low > -32768 for l in net.layers)
    assert all(v > 0 for v in seen.values()), seen


def _chain(seed):
    rng = np.random.default_rng(seed)
    side = int(rng.integers(6, 13))
    in_shape = (int(rng.integers(1, 3)), side, side)
    specs = random_specs(rng, in_shape, int(rng.integers(1, 3)), max_c=6)
    g = chain_graph(specs, in_shape, linear_out=int(rng.integers(2, 6)) if seed % 3 else None, seed=seed, thr=float(rng.uniform(0.3, 1.0)))
    x = event_input(rng, 2, 10, in_shape, rate=0.3)
    return g, x, ("zero", "subtract")[seed % 2]


@pytest.mark.parametrize("seed", range(16))
def test_compiled_random_graphs_equal_the_simulator_in_both_modes(seed):
    g, x, reset = _chain(seed)
    dep = nirdeploy.compile(g, target="speck", dt=1.0, reset=reset)
    assert dep.fits, dep.report.render()
    for mode in ("event", "binned"):
        m = chip_model(g, "speck", dt=1.0, reset=reset, mode=mode)
        with torch.no_grad():
            y = m(x)
        assert np.array_equal(y.numpy(), dep.target.simulate(dep.artifact, x, mode=mode).output), mode


def test_compiled_graphs_spike():
    assert sum(int(nirdeploy.compile(g, target="speck", dt=1.0, reset=r).simulate(x).sum()) > 0 for g, x, r in map(_chain, range(16))) >= 10


def test_corpus_cnn_equals_the_simulator():
    rng = np.random.default_rng(2)
    x = event_input(rng, 1, 4, (2, 34, 34), rate=0.05, max_count=1)
    path = str(CORPUS / "cnn_sinabs.nir")
    dep = nirdeploy.compile(path, target="speck", dt=1.0, reset="subtract")
    for mode in ("event", "binned"):
        m = chip_model(path, "speck", dt=1.0, reset="subtract", mode=mode)
        with torch.no_grad():
            y, rec = m(x, record=True)
        ref = dep.target.simulate(dep.artifact, x, mode=mode, record=True)
        assert np.array_equal(y.numpy(), ref.output), mode
        assert ref.states["1"]["spikes"].sum() > 0
        for name, st in ref.states.items():
            assert np.array_equal(rec[name]["spikes"].numpy(), st["spikes"]), (mode, name)


@pytest.mark.parametrize("mode", ["event", "binned"])
def test_trained_weights_write_back_to_exactly_the_chip_models_integers(mode):
    g, x, reset = _chain(4)
    m = chip_model(g, "speck", dt=1.0, reset=reset, mode=mode).train()
    y, rec = m(x, record=True)
    (y.sum() + sum((r ** 2).mean() for r in rec["membrane"])).backward()
    grads = {k: float(p.grad.abs().sum()) for k, p in m.weights.params.items()}
    assert all(v > 0 for v in grads.values()), grads
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for p in m.weights.params.values():
            p.add_(torch.as_tensor(rng.normal(0, 0.2, p.shape)) * p.abs().mean())
    q = m.quantized()
    dep2 = nirdeploy.compile(m.to_graph(), target="speck", dt=1.0, reset=reset)
    for k, v in dep2.artifact.payload.network.to_arrays().items():
        assert np.array_equal(q[k], v), k
    with torch.no_grad():
        assert np.array_equal(m.eval()(x).numpy(), dep2.target.simulate(dep2.artifact, x, mode=mode).output)


def test_mode_option_is_checked():
    from nirdeploy.errors import UnsupportedError, UsageError

    g, _, reset = _chain(1)
    with pytest.raises(UsageError, match="event"):
        chip_model(g, "speck", dt=1.0, reset=reset, mode="fast")
    with pytest.raises(UnsupportedError, match="mode"):
        chip_model(g, "speck", dt=1.0, reset=reset, speed=3)
