"""Differential tests: nirdeploy's Loihi 2 simulator against Lava's own fixed-point models
(lava-nc 0.10.0, ``Loihi2SimCfg(select_tag="fixed_pt")``), exact equality of spikes, u and v.

Random Dense -> LIF networks (about half recurrent) plus hand-made edge cases: u wrapping at 24
bits, v clipping at +-(2**23 - 1), every sign mode (explicit and inferred; mixed-sign LSB loss,
clipping of out-of-range and wrong-signed weights), 1..8 weight bits, negative weight exponents
(floor of negative sums), decay extremes (du, dv in {0, 4095}), bias mantissa/exponent extremes,
and activations beyond int32 (Lava's CPU model wraps them).

Lava's ``du``/``dv``/``vth``/``weight_exp``/sign mode are per-process scalars and every process
costs Lava about a second to start, so the networks of one group share those scalars and run in
Lava as ONE block-diagonal Dense (+ recurrent Dense) -> LIF graph; each network has its own size,
weights, biases and input and is simulated by nirdeploy ON ITS OWN, then compared with its block
of Lava's result. All groups run in one Lava subprocess under a timeout.
"""

from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest

from loihi2_oracle import run_batch
from nirdeploy_targets.loihi2.config import INPUT, Loihi2Network, NeuronLayer, Synapse, effective_weights
from nirdeploy_targets.loihi2.sim import simulate

T = 100
MODES = (None, "mixed", "excitatory", "inhibitory")


def _weights(rng, shape, mode, cls, lo=-300, hi=300):
    """Integers for a matrix; with an inferred sign mode (mode None) every network of the group
    has the same sign class ``cls`` so the packed matrix infers the same mode as each block."""
    if mode is not None:
        return rng.integers(lo, hi + 1, shape)
    if cls == "pos":
        return rng.integers(0, hi + 1, shape)
    if cls == "neg":
        return rng.integers(lo, 1, shape)
    w = rng.integers(lo, hi + 1, shape)
    flat = w.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[1] = abs(flat[0]) + 1, -abs(flat[1]) - 1  # both signs present in every block
    return w


def _group(rng, spec: dict, sizes: list[tuple[int, int]]):
    """Networks sharing the group's scalars; returns [(net, x)], (packed net, packed x)."""
    nets = []
    for n_in, n in sizes:
        w_in = spec.get("w_in_fn", _weights)(rng, (n, n_in), spec["mode_in"], spec["cls_in"])
        syns = [Synapse(INPUT, "dense", w_in, spec["exp_in"], spec["bits_in"], spec["mode_in"])]
        if spec["recurrent"]:
            w_rec = _weights(rng, (n, n), spec["mode_rec"], spec["cls_rec"], -200, 200)
            syns.append(Synapse(0, "dense", w_rec, spec["exp_rec"], spec["bits_rec"], spec["mode_rec"]))
        bm = spec.get("bias_mant_fn", lambda r, k: r.integers(-150, 151, k))(rng, n)
        be = spec.get("bias_exp_fn", lambda r, k: r.integers(0, 4, k))(rng, n)
        layer = NeuronLayer("lif", (n,), spec["du"], spec["dv"], spec["vth"], bm, be, syns)
        x = (rng.random((T, n_in)) < spec.get("rate", rng.uniform(0.05, 0.5))).astype(np.int64)
        nets.append((Loihi2Network((n_in,), [layer], 0), x))
    # block-diagonal packing for Lava
    N_in = sum(a for a, _ in sizes)
    N = sum(b for _, b in sizes)
    W_in = np.zeros((N, N_in), np.int64)
    W_rec = np.zeros((N, N), np.int64)
    bm, be, xs = [], [], []
    r = c = 0
    for (net, x), (n_in, n) in zip(nets, sizes):
        L = net.layers[0]
        W_in[r:r + n, c:c + n_in] = L.synapses[0].weight
        if spec["recurrent"]:
            W_rec[r:r + n, r:r + n] = L.synapses[1].weight
        bm.append(L.bias_mant)
        be.append(L.bias_exp)
        xs.append(x)
        r += n
        c += n_in
    syns = [Synapse(INPUT, "dense", W_in, spec["exp_in"], spec["bits_in"], spec["mode_in"])]
    if spec["recurrent"]:
        syns.append(Synapse(0, "dense", W_rec, spec["exp_rec"], spec["bits_rec"], spec["mode_rec"]))
    packed = Loihi2Network((N_in,), [NeuronLayer("lif", (N,), spec["du"], spec["dv"], spec["vth"], np.concatenate(bm),
                                                 np.concatenate(be), syns)], 0)
    return nets, (packed, np.concatenate(xs, axis=1))


def _random_spec(rng, recurrent: bool) -> dict:
    mode_in, mode_rec = (MODES[i] for i in rng.integers(0, 4, 2))
    return {
        "du": int(rng.choice([rng.integers(0, 4096), 4095, 0, rng.integers(3000, 4096)])),
        "dv": int(rng.choice([rng.integers(0, 4096), 0, rng.integers(0, 600)])),
        "vth": int(rng.choice([rng.integers(1, 2000), rng.integers(1, 131072)])),
        "recurrent": recurrent,
        "mode_in": mode_in, "mode_rec": mode_rec,
        "cls_in": ("pos", "neg", "mixed")[rng.integers(0, 3)], "cls_rec": ("pos", "neg", "mixed")[rng.integers(0, 3)],
        "bits_in": int(rng.integers(1, 9)), "bits_rec": int(rng.integers(1, 9)),
        "exp_in": int(rng.integers(-4, 5)), "exp_rec": int(rng.integers(-4, 4)),
    }


def _edge_specs(rng):
    base = {"recurrent": False, "mode_in": "excitatory", "mode_rec": None, "cls_in": "pos", "cls_rec": "pos", "bits_in": 8,
            "bits_rec": 8, "exp_in": 0, "exp_rec": 0}
    big = lambda r, shape, *a: np.full(shape, 255)  # noqa: E731
    yield "u_wraps_at_24_bits", {**base, "du": 4000, "dv": 3000, "vth": 131071, "exp_in": 7, "w_in_fn": big, "rate": 0.3}, [(12, 3)] * 4
    yield "v_clips_both_ways", {**base, "du": 4095, "dv": 0, "vth": 131071, "mode_in": "mixed", "recurrent": True, "mode_rec": "mixed",
                                "bias_mant_fn": lambda r, k: r.choice([4095, -4096, 4000, -4000], k), "bias_exp_fn": lambda r, k: np.full(k, 7),
                                "rate": 0.2}, [(4, 4)] * 8
    yield "mixed_lsb_and_clipping", {**base, "du": 2000, "dv": 100, "vth": 40, "mode_in": "mixed", "recurrent": True, "mode_rec": "inhibitory",
                                     "bits_in": 8, "bits_rec": 6, "exp_rec": -1,
                                     "w_in_fn": lambda r, shape, *a: r.choice([1, 3, -3, 255, 300, -300, -1, 2], shape)}, [(6, 5)] * 4
    yield "activation_beyond_int32", {**base, "du": 100, "dv": 10, "vth": 131071, "exp_in": 7, "w_in_fn": big, "rate": 1.0,
                                      "bias_mant_fn": lambda r, k: np.zeros(k, int)}, [(1100, 2)]
    for du, dv in ((0, 4095), (4095, 0), (0, 0)):
        yield f"decays_du{du}_dv{dv}", {**base, "du": du, "dv": dv, "vth": 300, "mode_in": None, "cls_in": "mixed", "recurrent": True,
                                        "mode_rec": None, "cls_rec": "neg", "exp_in": -2, "exp_rec": 1}, [(5, 4)] * 4
    neg = {**base, "du": 1500, "dv": 700, "vth": 5, "mode_in": "mixed", "exp_in": -7, "recurrent": True, "mode_rec": "mixed", "exp_rec": -5,
           "bits_in": 7, "bias_mant_fn": lambda r, k: r.integers(-4096, 4096, k), "bias_exp_fn": lambda r, k: r.integers(0, 8, k)}
    yield "negative_exponent_floor", neg, [(8, 6)] * 4
    # more spikes in one step than an int16 sum of 8-bit weights holds: the numba engine sums them in int32
    many = {**base, "du": 3000, "dv": 200, "vth": 131071, "rate": 0.97, "bias_mant_fn": lambda r, k: np.zeros(k, int)}
    yield "many_spikes_excitatory", {**many, "exp_in": -3, "w_in_fn": lambda r, shape, *a: r.choice([255, 254, 1], shape)}, [(300, 3)] * 2
    yield "many_spikes_mixed", {**many, "mode_in": "mixed", "exp_in": -2,
                                "w_in_fn": lambda r, shape, *a: r.choice([254, -256, 255, -3], shape)}, [(300, 3)] * 2


def _all_groups():
    rng = np.random.default_rng(20261130)
    groups = []
    for g in range(16):
        sizes = [(int(rng.integers(1, 13)), int(rng.integers(1, 11))) for _ in range(11)]
        groups.append((f"random{g:02d}", _random_spec(rng, recurrent=bool(g % 2)), sizes))
    groups.extend(_edge_specs(rng))
    built = []
    for name, spec, sizes in groups:
        nets, packed = _group(np.random.default_rng(zlib.crc32(name.encode())), spec, sizes)
        built.append((name, spec, nets, packed))
    return built


GROUPS = _all_groups()


@pytest.fixture(scope="module")
def lava_results():
    return dict(zip([g[0] for g in GROUPS], run_batch([g[3] for g in GROUPS])))


def test_suite_size():
    n = sum(len(g[2]) for g in GROUPS)
    rec = sum(len(g[2]) for g in GROUPS if g[1]["recurrent"])
    assert n >= 200 and rec >= 60, (n, rec)


ENGINES = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [g[0] for g in GROUPS])
def test_simulator_equals_lava(name, engine, lava_results):
    _, spec, nets, (packed, _) = next(g for g in GROUPS if g[0] == name)
    lava = lava_results[name]["lif"]
    r = 0
    spikes = 0
    for k, (net, x) in enumerate(nets):
        n = net.layers[0].n
        eng = "numpy" if name == "activation_beyond_int32" else engine  # int32 wraps: the numpy engine only
        ours = simulate(net, x[None], record=True, engine=eng).states["lif"]
        for var in ("s", "u", "v"):
            want = lava[var][:, r:r + n]
            got = ours[var][0]
            assert np.array_equal(got, want), f"{name} network {k}: {var} differs at {np.argwhere(got != want)[:5].tolist()}"
        spikes += int(ours["s"].sum())
        r += n
    assert r == packed.layers[0].n
    if name.startswith(("u_wraps", "v_clips")):
        assert spikes > 0 or name.startswith("u_wraps")


def test_edge_cases_reach_their_edges(lava_results):
    """The edge groups really exercise what they are named after (in Lava's own traces)."""
    M = 1 << 23
    u = lava_results["u_wraps_at_24_bits"]["lif"]["u"]
    assert u.min() < 0, "excitatory input only: a negative u means it wrapped"
    v = lava_results["v_clips_both_ways"]["lif"]["v"]
    assert v.max() == M - 1 or lava_results["v_clips_both_ways"]["lif"]["s"].any()
    assert v.min() == -(M - 1)
    big = lava_results["activation_beyond_int32"]["lif"]["u"]
    assert np.abs(big).max() > 0
    from nirdeploy_targets.loihi2.sim import Constants, _numba_plan

    for name in ("many_spikes_excitatory", "many_spikes_mixed"):
        _, _, nets, _ = next(g for g in GROUPS if g[0] == name)
        for net, x in nets:
            plan = _numba_plan(net, Constants())[1]
            if plan:  # more input spikes in some step than the int16 accumulator takes
                assert x.sum(axis=1).max() > plan[0].kmax16, name
        assert np.abs(lava_results[name]["lif"]["u"]).max() > 0


def test_mixed_sign_rules_by_hand():
    """Hand-derived values of loihi2.md section 3 (measured in Lava by the fact sheet)."""
    w = np.array([[1, 3, -3, 255, 300, -300]])
    assert effective_weights(w, "mixed", 8).tolist() == [[0, 2, -4, 254, 254, -256]]
    assert effective_weights(np.array([[1, 3, 255, 300]]), "excitatory", 8).tolist() == [[1, 3, 255, 255]]
    assert effective_weights(np.array([[-1, -3, -255, -300, 5]]), "inhibitory", 8).tolist() == [[-1, -3, -255, -255, 0]]
    assert effective_weights(np.array([[5, 4]]), "excitatory", 7).tolist() == [[4, 4]]


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_equals_single_runs(engine):
    _, _, nets, _ = GROUPS[1]
    net, x = nets[0]
    rng = np.random.default_rng(1)
    xb = (rng.random((5,) + x.shape) < 0.3).astype(np.int64)
    batch = simulate(net, xb, record=True, engine=engine)
    for b in range(5):
        one = simulate(net, xb[b:b + 1], record=True, engine="numpy")
        assert np.array_equal(batch.output[b], one.output[0])
        for var in ("u", "v", "s"):
            assert np.array_equal(batch.states["lif"][var][b], one.states["lif"][var][0])


# -- layers split by time constant (one LIF process per distinct du/dv) ----------------------------------
def _per_neuron_taus(recurrent: bool, seed: int):
    """An snnTorch-style graph whose hidden layer has per-neuron membrane time constants (learnable
    beta) and whose output layer has per-neuron synaptic ones, compiled for Loihi 2."""
    import nirdeploy
    from graphs import ff_graph

    g = ff_graph(n_in=6, n_hid=20, n_out=5, seed=seed, recurrent=recurrent, scale=0.6)
    rng = np.random.default_rng(seed)
    g.nodes["lif1"].tau_mem = rng.choice([1e-3, 1.5e-3, 3e-3], 20)
    g.nodes["lif1"].r = g.nodes["lif1"].tau_mem / 1e-4
    g.nodes["lif2"].tau_syn = rng.choice([2e-4, 4e-4], 5)
    g.nodes["lif2"].w_in = g.nodes["lif2"].tau_syn / 1e-4
    return nirdeploy.compile(g, target="loihi2", dt=1e-4).artifact.payload.network


def _split_by_hand() -> Loihi2Network:
    """Two decay groups in a recurrent layer whose recurrent and outgoing synapses have negative
    exponents, so each group's sum is floored on its own."""
    from nirdeploy_targets.loihi2.lower import split_by_decay

    rng = np.random.default_rng(7)
    n = 7
    l0 = NeuronLayer("a", (n,), 0, 0, 300, rng.integers(-50, 50, n), rng.integers(0, 3, n),
                     [Synapse(INPUT, "dense", rng.integers(-255, 255, (n, 5)), -1, 8, "mixed"),
                      Synapse(0, "dense", rng.integers(-255, 255, (n, n)), -3, 7, None)])
    l1 = NeuronLayer("b", (3,), 3000, 100, 200, [0, 5, -5], [0, 1, 2], [Synapse(0, "dense", rng.integers(1, 255, (3, n)), -2, 8, None)])
    net = Loihi2Network((5,), [l0, l1], 1)
    return split_by_decay(net, {0: (np.array([100, 100, 4000, 100, 4000, 4000, 100]), np.array([50, 50, 900, 50, 900, 900, 50]))})


def _split_with_delays():
    """Per-neuron time constants in a layer with delayed inputs and a delayed recurrent loop: the
    delay matrices are sliced with the weights."""
    import nirdeploy
    from graphs import delay_graph

    g = delay_graph("post", recurrent=True)
    g.nodes["lif1"].tau_mem = np.resize([1e-3, 2e-3], 10)
    g.nodes["lif1"].r = g.nodes["lif1"].tau_mem / 1e-4
    return nirdeploy.compile(g, target="loihi2", dt=1e-4).artifact.payload.network


SPLIT_JOBS = [("recurrent", lambda: _per_neuron_taus(True, 1)), ("feed_forward", lambda: _per_neuron_taus(False, 2)),
              ("by_hand_negative_exponents", _split_by_hand), ("with_delays", _split_with_delays)]


def _lava_jobs(makers: list, seed: int, rate: float) -> dict:
    """{name: ((net, x), Lava's states)} for ``[(name, make_network)]``, in one Lava batch."""
    nets = [(name, make()) for name, make in makers]
    rng = np.random.default_rng(seed)
    jobs = [(net, (rng.random((T, net.n_in)) < rate).astype(np.int64)) for _, net in nets]
    return dict(zip([n for n, _ in nets], zip(jobs, run_batch(jobs))))


def _equals_lava(net, x, lava, engine: str, numba_refuses: bool) -> None:
    """Every layer's s, u, v equal Lava's; where ``numba_refuses``, the numba engine says why."""
    if engine == "numba" and numba_refuses:
        with pytest.raises(ValueError, match="fed back from a later layer|recurrent synapse"):
            simulate(net, x[None], engine="numba")
        return
    ours = simulate(net, x[None], record=True, engine=engine).states
    for L in net.layers:
        for var in ("s", "u", "v"):
            assert np.array_equal(ours[L.name][var][0], lava[L.name][var]), (L.name, var)
    assert sum(int(r["s"].sum()) for r in lava.values()) > 0


@pytest.fixture(scope="module")
def split_results():
    return _lava_jobs(SPLIT_JOBS, 3, 0.3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [n for n, _ in SPLIT_JOBS])
def test_split_layers_equal_lava(name, engine, split_results):
    """Every LIF process of a layer split by time constant (and every other layer) equals Lava
    exactly; recurrence between the groups of a layer takes the numpy engine."""
    (net, x), lava = split_results[name]
    assert sum(bool(L.origin) for L in net.layers) >= 2 and set(lava) == {L.name for L in net.layers}
    if name == "with_delays":
        assert all(s.max_delay == 3 for L in net.layers if L.origin for s in L.synapses if s.src >= 0)
    _equals_lava(net, x, lava, engine, any(s.src > i for i, L in enumerate(net.layers) for s in L.synapses))


# -- synaptic delays (NIR Delay nodes -> Lava DelayDense) --------------------------------------------------
def _random_delays(seed: int) -> Loihi2Network:
    """Two layers, delays 0..5 on every synapse (recurrent ones too), negative exponents (each
    delay's sum is floored on its own), inferred and explicit sign modes."""
    rng = np.random.default_rng(seed)
    n_in, n = 6, 5
    l0 = NeuronLayer("a", (n,), int(rng.integers(0, 4096)), int(rng.integers(0, 500)), int(rng.integers(1, 300)), rng.integers(-50, 50, n),
                     rng.integers(0, 3, n), [Synapse(INPUT, "dense", rng.integers(-255, 255, (n, n_in)), int(rng.integers(-3, 3)), 8, "mixed",
                                                     delay=rng.integers(0, 6, (n, n_in)))])
    if seed % 2:
        l0.synapses.append(Synapse(0, "dense", rng.integers(-255, 255, (n, n)), -1, 7, None, delay=rng.integers(0, 4, (n, n))))
    l1 = NeuronLayer("b", (3,), 3000, 100, 200, [0, 5, -5], [0, 1, 2],
                     [Synapse(0, "dense", rng.integers(-255, 255, (3, n)), -2, 8, None, delay=rng.integers(0, 3, (3, n)))])
    return Loihi2Network((n_in,), [l0, l1], 1)


def _compiled_delays(where: str, recurrent: bool):
    import nirdeploy
    from graphs import delay_graph

    return nirdeploy.compile(delay_graph(where, recurrent=recurrent), target="loihi2", dt=1e-4).artifact.payload.network


DELAY_JOBS = [(f"random{s}", lambda s=s: _random_delays(s)) for s in range(4)] + [
    (f"nir_{w}{'_rec' if r else ''}", lambda w=w, r=r: _compiled_delays(w, r)) for w in ("pre", "post", "middle") for r in (False, True)]


@pytest.fixture(scope="module")
def delay_results():
    return _lava_jobs(DELAY_JOBS, 5, 0.35)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [n for n, _ in DELAY_JOBS])
def test_synaptic_delays_equal_lava(name, engine, delay_results):
    """DelayDense synapses (from NIR Delay nodes before, after and between Linears, and on a
    recurrent loop; random delay matrices with negative exponents) equal Lava's DelayDense
    exactly; a delayed recurrent synapse takes the numpy engine."""
    (net, x), lava = delay_results[name]
    assert any(s.max_delay > 0 for L in net.layers for s in L.synapses)
    _equals_lava(net, x, lava, engine, any(s.src == i and s.delay is not None for i, L in enumerate(net.layers) for s in L.synapses))
