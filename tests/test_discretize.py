"""Discretization coefficients, dt inference and dt resolution (nirdeploy.graph.discretize)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nirdeploy.graph.discretize import (
    RESETS,
    SCHEMES,
    DtCandidate,
    NeuronDiscretization,
    discretization_notes,
    discretize,
    discretize_node,
    infer_dt,
    resolve_dt,
    validate_dt,
    validate_reset,
    validate_scheme,
)
from nirdeploy.errors import UsageError
from nirdeploy.graph.ir import Graph, Node

from conftest import CORPUS  # the project's copy

DT = 2.0**-10  # binary-exact dt so that dt/tau is exact for tau = 2*dt, 4*dt


# -- helpers -------------------------------------------------------------------------------------


def load_corpus(name: str) -> Graph:
    from nirdeploy.graph.loading import load

    return load(str(CORPUS / name))


def arr(*v):
    return np.array(v, dtype=np.float64)


def chain(in_shape, *nodes: Node) -> Graph:
    ns = {"input": Node("input", "Input", {"shape": tuple(int(v) for v in in_shape)})}
    prev = "input"
    edges = []
    for n in nodes:
        ns[n.name] = n
        edges.append((prev, n.name))
        prev = n.name
    out_shape = in_shape
    last = nodes[-1]
    if last.type in ("Affine", "Linear"):
        out_shape = (np.asarray(last.params["weight"]).shape[0],)
    ns["output"] = Node("output", "Output", {"shape": tuple(int(v) for v in out_shape)})
    edges.append((prev, "output"))
    return Graph(nodes=ns, edges=edges)


def lif(name="lif", tau=(4 * DT,), r=(1.0,), v_leak=(0.0,), thr=(1.0,), v_reset=(0.0,)):
    return Node(name, "LIF", {"tau": arr(*tau), "r": arr(*r), "v_leak": arr(*v_leak), "v_threshold": arr(*thr), "v_reset": arr(*v_reset)})


def cubalif(name="cuba", tau_syn=(2 * DT,), tau_mem=(4 * DT,), r=(4.0,), w_in=(2.0,), v_leak=(0.0,), thr=(1.0,)):
    return Node(
        name,
        "CubaLIF",
        {
            "tau_syn": arr(*tau_syn),
            "tau_mem": arr(*tau_mem),
            "r": arr(*r),
            "v_leak": arr(*v_leak),
            "v_threshold": arr(*thr),
            "v_reset": np.zeros(len(thr)),
            "w_in": arr(*w_in),
        },
    )


# -- validators ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, -1e-4, float("nan"), float("inf"), "abc", None, True])
def test_validate_dt_rejects(bad):
    with pytest.raises(UsageError):
        validate_dt(bad)


def test_validate_dt_accepts():
    assert validate_dt(1e-4) == 1e-4
    assert validate_dt("0.001") == 0.001
    assert validate_dt(np.float32(0.5)) == 0.5


def test_scheme_and_reset_constants():
    assert SCHEMES == ("euler", "exact")
    assert RESETS == ("zero", "subtract")
    assert validate_scheme("exact") == "exact"
    assert validate_reset("subtract") == "subtract"
    with pytest.raises(UsageError, match="scheme"):
        validate_scheme("rk4")
    with pytest.raises(UsageError, match="reset"):
        validate_reset("none")


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan"), float("inf")])
def test_discretize_rejects_bad_dt(dt):
    with pytest.raises(UsageError):
        discretize(chain((1,), lif()), dt)


def test_discretize_rejects_bad_scheme():
    with pytest.raises(UsageError):
        discretize(chain((1,), lif()), DT, scheme="rk4")


# -- coefficients --------------------------------------------------------------------------------


def test_lif_euler_coefficients():
    # tau = 4 dt: dt/tau = 1/4 exactly. Euler: alpha = 3/4, gain = r/4, bias = v_leak/4.
    n = lif(tau=(4 * DT, 2 * DT), r=(2.0, 3.0), v_leak=(0.5, -1.0), thr=(1.0, 2.0), v_reset=(0.0, -0.5))
    d = discretize(chain((2,), n), DT)["lif"]
    assert isinstance(d, NeuronDiscretization)
    assert d.type == "LIF" and d.scheme == "euler" and d.dt == DT
    np.testing.assert_array_equal(d.alpha_v, [0.75, 0.5])
    np.testing.assert_array_equal(d.gain_v, [0.5, 1.5])
    np.testing.assert_array_equal(d.bias_v, [0.125, -0.5])
    np.testing.assert_array_equal(d.threshold, [1.0, 2.0])
    np.testing.assert_array_equal(d.v_reset, [0.0, -0.5])
    assert d.alpha_i is None and d.gain_i is None
    assert d.spiking and not d.cuba
    # the time constant Euler really implements: -dt/ln(1 - dt/tau)
    np.testing.assert_allclose(d.tau_effective, [-DT / math.log(0.75), -DT / math.log(0.5)], rtol=1e-14)
    assert d.notes == []


def test_lif_exact_coefficients():
    n = lif(tau=(4 * DT,), r=(2.0,), v_leak=(0.5,))
    d = discretize(chain((1,), n), DT, scheme="exact")["lif"]
    a = math.exp(-0.25)
    np.testing.assert_allclose(d.alpha_v, [a], rtol=1e-15)
    np.testing.assert_allclose(d.gain_v, [2.0 * (1 - a)], rtol=1e-14)
    np.testing.assert_allclose(d.bias_v, [0.5 * (1 - a)], rtol=1e-14)
    np.testing.assert_allclose(d.tau_effective, [4 * DT], rtol=1e-13)


def test_li_has_no_threshold():
    n = Node("li", "LI", {"tau": arr(2 * DT), "r": arr(1.0), "v_leak": arr(0.0)})
    d = discretize(chain((1,), n), DT)["li"]
    assert d.threshold is None and d.v_reset is None and not d.spiking
    np.testing.assert_array_equal(d.alpha_v, [0.5])


def test_cuba_coefficients_euler_and_exact():
    g = chain((1,), cubalif(tau_syn=(2 * DT,), tau_mem=(4 * DT,), r=(4.0,), w_in=(2.0,), v_leak=(1.0,)))
    d = discretize(g, DT)["cuba"]
    # Euler: alpha_i = 1 - 1/2, gain_i = w_in/2 = 1; alpha_v = 3/4, gain_v = r/4 = 1, bias = 1/4
    np.testing.assert_array_equal(d.alpha_i, [0.5])
    np.testing.assert_array_equal(d.gain_i, [1.0])
    np.testing.assert_array_equal(d.alpha_v, [0.75])
    np.testing.assert_array_equal(d.gain_v, [1.0])
    np.testing.assert_array_equal(d.bias_v, [0.25])
    assert d.cuba
    e = discretize(g, DT, scheme="exact")["cuba"]
    np.testing.assert_allclose(e.alpha_i, [math.exp(-0.5)], rtol=1e-15)
    np.testing.assert_allclose(e.gain_i, [2 * (1 - math.exp(-0.5))], rtol=1e-14)
    np.testing.assert_allclose(e.alpha_v, [math.exp(-0.25)], rtol=1e-15)
    np.testing.assert_allclose(e.gain_v, [4 * (1 - math.exp(-0.25))], rtol=1e-14)
    np.testing.assert_allclose(e.tau_effective_syn, [2 * DT], rtol=1e-13)


def test_cubali_default_w_in():
    n = Node("cli", "CubaLI", {"tau_syn": arr(2 * DT), "tau_mem": arr(4 * DT), "r": arr(1.0), "v_leak": arr(0.0)})
    d = discretize(chain((1,), n), DT)["cli"]
    np.testing.assert_array_equal(d.gain_i, [0.5])  # w_in defaults to 1
    assert d.threshold is None


@pytest.mark.parametrize("scheme", ["euler", "exact"])
def test_integrators(scheme):
    g = chain((2,), Node("if", "IF", {"r": arr(2.0, 3.0), "v_threshold": arr(1.0, 1.0)}))
    d = discretize(g, 0.5, scheme=scheme)["if"]
    np.testing.assert_array_equal(d.alpha_v, [1.0, 1.0])
    np.testing.assert_array_equal(d.gain_v, [1.0, 1.5])  # r*dt
    np.testing.assert_array_equal(d.bias_v, [0.0, 0.0])
    np.testing.assert_array_equal(d.v_reset, [0.0, 0.0])  # default
    assert np.all(np.isinf(d.tau_effective))
    gi = chain((1,), Node("i", "I", {"r": arr(4.0)}))
    di = discretize(gi, 0.25, scheme=scheme)["i"]
    np.testing.assert_array_equal(di.gain_v, [1.0])
    assert di.threshold is None


def test_scalar_params_broadcast():
    n = Node("lif", "LIF", {"tau": np.array(4 * DT), "r": np.ones(3), "v_leak": np.array(0.0), "v_threshold": np.array(1.0)})
    d = discretize_node(n, DT)
    assert d.shape == (3,)
    np.testing.assert_array_equal(d.alpha_v, [0.75] * 3)


def test_subgraph_names_are_dotted():
    inner = chain((1,), lif())
    g = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": (1,)}),
            "sub": Node("sub", "NIRGraph", subgraph=inner),
            "output": Node("output", "Output", {"shape": (1,)}),
        },
        edges=[("input", "sub"), ("sub", "output")],
    )
    assert list(discretize(g, DT)) == ["sub.lif"]


def test_notes_when_dt_not_below_tau():
    g = chain((3,), lif(tau=(DT, 0.5 * DT, 4 * DT), r=(1, 1, 1), v_leak=(0, 0, 0), thr=(1, 1, 1), v_reset=(0, 0, 0)))
    d = discretize(g, DT)["lif"]
    assert len(d.notes) == 1
    assert "2 of 3" in d.notes[0] and "<= 0" in d.notes[0] and "diverges" not in d.notes[0]
    np.testing.assert_array_equal(d.alpha_v, [0.0, -1.0, 0.75])
    assert np.isnan(d.tau_effective[0]) and np.isnan(d.tau_effective[1])
    d3 = discretize(g, 3 * DT)["lif"]
    assert "diverges" in d3.notes[0]
    e = discretize(g, DT, scheme="exact")["lif"]
    assert len(e.notes) == 1 and "stable" in e.notes[0]
    assert discretization_notes(discretize(g, DT)) == d.notes
    assert discretize(chain((1,), lif()), DT)["lif"].notes == []


def test_to_dict_is_json():
    d = discretize(chain((1,), cubalif()), DT)["cuba"]
    js = json.loads(json.dumps(d.to_dict()))
    assert js["type"] == "CubaLIF" and js["alpha_i"] == [0.5] and js["scheme"] == "euler"
    assert js["threshold"] == [1.0] and js["notes"] == []


# -- forward Euler with snnTorch's encoding == snnTorch --------------------------------------------


def test_snntorch_encoding_gives_unit_gain_exactly():
    # snnTorch export: tau = dt/(1-beta), r = tau/dt, w_in = tau_syn/dt. With binary-exact numbers
    # (beta = 3/4, alpha = 1/2) the Euler gains are exactly 1 and the decays exactly beta/alpha.
    beta, alpha = 0.75, 0.5
    tau_mem, tau_syn = DT / (1 - beta), DT / (1 - alpha)
    g = chain((1,), cubalif(tau_syn=(tau_syn,), tau_mem=(tau_mem,), r=(tau_mem / DT,), w_in=(tau_syn / DT,)))
    d = discretize(g, DT)["cuba"]
    assert d.gain_v[0] == 1.0 and d.gain_i[0] == 1.0
    assert d.alpha_v[0] == beta and d.alpha_i[0] == alpha
    g2 = chain((1,), lif(tau=(tau_mem,), r=(tau_mem / DT,)))
    d2 = discretize(g2, DT)["lif"]
    assert d2.gain_v[0] == 1.0 and d2.alpha_v[0] == beta and d2.bias_v[0] == 0.0


def test_snntorch_equivalence_simulated():
    """Reference (forward Euler, zero reset) == snnTorch Leaky/Synaptic(reset_mechanism="zero",
    reset_delay=False) written out by hand, for typical non-binary betas at dt = 1e-4."""
    from nirdeploy.sim.reference import simulate_reference

    dt = 1e-4
    rng = np.random.default_rng(1)
    beta = np.array([0.9, 0.8, 0.95, 0.7])
    alpha = np.array([0.5, 0.6, 0.3, 0.8])
    thr = np.array([1.0, 0.5, 1.5, 0.8])
    tau_mem, tau_syn = dt / (1 - beta), dt / (1 - alpha)
    d = discretize(chain((4,), lif(tau=tau_mem, r=tau_mem / dt, v_leak=np.zeros(4), thr=thr, v_reset=np.zeros(4))), dt)["lif"]
    np.testing.assert_allclose(d.gain_v, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.alpha_v, beta, rtol=0, atol=1e-12)

    x = rng.random((3, 200, 4)) * 0.6
    # Leaky
    g = chain((4,), lif(tau=tau_mem, r=tau_mem / dt, v_leak=np.zeros(4), thr=thr, v_reset=np.zeros(4)))
    res = simulate_reference(g, x, dt, record=True)
    mem = np.zeros((3, 4))
    spk_ref, mem_ref = [], []
    for t in range(x.shape[1]):
        mem = beta * mem + x[:, t]
        spk = (mem > thr).astype(float)
        mem = mem * (1 - spk)
        spk_ref.append(spk)
        mem_ref.append(mem)
    spk_ref, mem_ref = np.stack(spk_ref, 1), np.stack(mem_ref, 1)
    assert spk_ref.sum() > 20
    np.testing.assert_array_equal(res.output, spk_ref)
    np.testing.assert_allclose(res.states["lif"]["v"], mem_ref, rtol=0, atol=1e-12)
    # Synaptic: syn = alpha*syn + x; mem = beta*mem + syn (new syn in the same step)
    g = chain((4,), cubalif(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, w_in=tau_syn / dt, v_leak=np.zeros(4), thr=thr * 3))
    res = simulate_reference(g, x, dt, record=True)
    syn = np.zeros((3, 4))
    mem = np.zeros((3, 4))
    spk_ref, mem_ref = [], []
    for t in range(x.shape[1]):
        syn = alpha * syn + x[:, t]
        mem = beta * mem + syn
        spk = (mem > thr * 3).astype(float)
        mem = mem * (1 - spk)
        spk_ref.append(spk)
        mem_ref.append(mem)
    spk_ref, mem_ref = np.stack(spk_ref, 1), np.stack(mem_ref, 1)
    assert spk_ref.sum() > 20
    np.testing.assert_array_equal(res.output, spk_ref)
    np.testing.assert_allclose(res.states["cuba"]["v"], mem_ref, rtol=0, atol=1e-11)


# -- dt inference --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
def test_infer_dt_braille_single_snntorch_candidate(name):
    g = load_corpus(name)
    cands = infer_dt(g)
    assert len(cands) == 1
    c = cands[0]
    assert isinstance(c, DtCandidate)
    assert c.convention == "snntorch"
    assert c.dt == pytest.approx(1e-4, rel=1e-6)
    assert set(c.nodes) == {"lif1.lif", "lif2"}
    dt, notice = resolve_dt(g, None)
    assert dt == c.dt and "snntorch" in notice and "0.0001 s" in notice
    assert json.loads(json.dumps(c.to_dict()))["dt"] == c.dt


def test_infer_dt_lif_norse_none():
    g = load_corpus("lif_norse.nir")  # tau 2.5e-3, r = 1: Norse style, dt cannot be inferred
    assert infer_dt(g) == []
    with pytest.raises(UsageError, match="cannot be inferred"):
        resolve_dt(g, None)
    assert resolve_dt(g, 1e-4) == (1e-4, None)


def test_infer_dt_cnn_sinabs_unit_step():
    cands = infer_dt(load_corpus("cnn_sinabs.nir"))
    assert len(cands) == 1
    assert cands[0].convention == "sinabs" and cands[0].dt == 1.0
    assert len(cands[0].nodes) == 5  # the five IF layers


def test_infer_dt_snntorch_float32_per_neuron_betas():
    dt = 1e-4
    beta = np.linspace(0.5, 0.99, 16)
    tau = (dt / (1 - beta)).astype(np.float32).astype(np.float64)
    r = (1 / (1 - beta)).astype(np.float32).astype(np.float64)
    g = chain((16,), lif(tau=tau, r=r, v_leak=np.zeros(16), thr=np.ones(16), v_reset=np.zeros(16)))
    cands = infer_dt(g)
    assert [(c.dt, c.convention) for c in cands] == [(1e-4, "snntorch")]


def _rockpool_layer(name, taus, dt):
    taus = np.asarray(taus, dtype=np.float64)
    r = taus * np.exp(-dt / taus) / dt
    return lif(name=name, tau=taus, r=r, v_leak=np.zeros(taus.size), thr=np.ones(taus.size), v_reset=np.zeros(taus.size))


def _two_layer(n1: Node, n2: Node, size: int) -> Graph:
    g = chain((size,), n1)
    g.nodes.pop("output")
    g.edges = [e for e in g.edges if e[1] != "output"]
    g.nodes[n2.name] = n2
    g.nodes["output"] = Node("output", "Output", {"shape": (size,)})
    g.edges += [(n1.name, n2.name), (n2.name, "output")]
    return g


def test_infer_dt_rockpool():
    dt = 1e-3
    g = _two_layer(_rockpool_layer("l1", [0.01, 0.02, 0.05], dt), _rockpool_layer("l2", [0.01, 0.03, 0.04], dt), 3)
    cands = infer_dt(g)
    assert len(cands) == 1
    c = cands[0]
    assert c.convention == "rockpool"
    # min over neurons of tau/(1+r) = dt/(dt/tau + exp(-dt/tau)) at tau = 0.01 -> 9.95e-4
    expect = 0.01 / (1 + 0.01 * math.exp(-0.1) / dt)
    assert c.dt == pytest.approx(expect, rel=2e-3)
    assert "per layer" in c.evidence
    assert set(c.nodes) == {"l1", "l2"}


def test_infer_dt_several_candidates_refused():
    # two Rockpool-style layers whose per-layer dt differ by ~2%: two candidates
    g = _two_layer(_rockpool_layer("l1", [0.01, 0.011], 1e-3), _rockpool_layer("l2", [0.01, 0.011], 1.02e-3), 2)
    cands = infer_dt(g)
    assert len(cands) == 2 and {c.convention for c in cands} == {"rockpool"}
    with pytest.raises(UsageError) as ei:
        resolve_dt(g, None)
    msg = str(ei.value)
    assert "several" in msg and all(f"{c.dt:g}" in msg for c in cands)
    assert resolve_dt(g, 5e-4) == (5e-4, None)


def test_infer_dt_inconsistent_graph_gives_nothing():
    # layer 1 says dt = 1e-4 (r = tau/dt = 10), layer 2 says 2e-4 (r = 5): no shared dt, tau/(1+r) far apart
    g = _two_layer(lif(name="a", tau=(1e-3,), r=(10.0,)), lif(name="b", tau=(1e-3,), r=(5.0,)), 1)
    assert infer_dt(g) == []
    with pytest.raises(UsageError):
        resolve_dt(g, None)


def test_infer_dt_sinabs_tau_in_steps_and_empty_graphs():
    g = chain((2,), lif(tau=(20.0, 5.0), r=(1.0, 1.0), v_leak=(0, 0), thr=(1, 1), v_reset=(0, 0)))
    cands = infer_dt(g)
    assert [(c.dt, c.convention) for c in cands] == [(1.0, "sinabs")]
    # no neurons at all
    g2 = chain((2,), Node("s", "Scale", {"scale": arr(1.0, 2.0)}))
    assert infer_dt(g2) == []
    # integrators with r != 1: r*dt is a gain, no dt
    g3 = chain((1,), Node("if", "IF", {"r": arr(3.0), "v_threshold": arr(1.0)}))
    assert infer_dt(g3) == []


def test_resolve_dt_validates_given_dt():
    g = chain((1,), lif())
    with pytest.raises(UsageError):
        resolve_dt(g, 0.0)
    with pytest.raises(UsageError):
        resolve_dt(g, float("nan"))
