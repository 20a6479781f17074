"""Float64 reference simulator: every primitive against hand-derived traces, plus the NIR corpus.

Corpus findings pinned here (see test_lif_exact_csv_*):
* lif_exact.csv is a zero-order-hold exponential solution (jump 1 - exp(-dt/tau) per input spike,
  decay exp(-0.04) per step) with a CONTINUOUS-TIME threshold crossing: at a spike step it
  records the voltage after resetting to 0 at the crossing instant and integrating the rest of
  the step (e.g. 0.006226 at step 460), neither the pre-reset value (0.1056) nor 0.
  nirdeploy resets at the end of the step, so its recorded v (post-reset) is 0 there.
* Tolerances: scheme="exact": identical spike times; |v - csv| <= 1e-9 before the first spike
  (measured 1.1e-13), <= 6.5e-3 overall (measured 6.226e-3, the within-step-reset residual at
  step 460, decaying afterwards). scheme="euler": identical spike times; <= 1.2e-3 before the
  first spike (measured 9.44e-4), <= 6.5e-3 overall (measured 6.226e-3).
* lif_norse.csv is exactly our forward Euler (max |dv| 2.4e-8, float32 trace), and
  lif_snntorch.csv is our forward Euler scaled by tau/(r*dt) = 25 (snnTorch gain 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nirdeploy.errors import NirDeployError, UnsupportedError, UsageError
from nirdeploy.graph.ir import Graph, Node
from nirdeploy.sim.reference import ReferenceResult, conv_nd, pool2d, simulate_reference

from conftest import CORPUS  # the project's copy


def _find_trace(name: str) -> Path:
    return CORPUS / name


# -- helpers -------------------------------------------------------------------------------------


def load_corpus(name: str) -> Graph:
    from nirdeploy.graph.loading import load

    return load(str(CORPUS / name))


def arr(*v):
    return np.array(v, dtype=np.float64)


def ishape(*s):
    return tuple(int(v) for v in s)


def chain(in_shape, out_shape, *nodes: Node) -> Graph:
    ns = {"input": Node("input", "Input", {"shape": ishape(*in_shape)})}
    prev, edges = "input", []
    for n in nodes:
        ns[n.name] = n
        edges.append((prev, n.name))
        prev = n.name
    ns["output"] = Node("output", "Output", {"shape": ishape(*out_shape)})
    edges.append((prev, "output"))
    return Graph(nodes=ns, edges=edges)


def run1(g, xs, dt=1.0, **kw) -> ReferenceResult:
    """Single batch: xs (time, *shape)."""
    return simulate_reference(g, np.asarray(xs, dtype=np.float64)[None], dt, **kw)


def lif(name="lif", tau=(2.0,), r=(1.0,), v_leak=(0.0,), thr=(1.0,), v_reset=(0.0,)):
    return Node(name, "LIF", {"tau": arr(*tau), "r": arr(*r), "v_leak": arr(*v_leak), "v_threshold": arr(*thr), "v_reset": arr(*v_reset)})


def if_(name="if", r=(1.0,), thr=(1.0,), v_reset=(0.0,)):
    return Node(name, "IF", {"r": arr(*r), "v_threshold": arr(*thr), "v_reset": arr(*v_reset)})


# -- linear / elementwise ------------------------------------------------------------------------


def test_affine_linear_scale():
    W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    g = chain((2,), (3,), Node("a", "Affine", {"weight": W, "bias": arr(1.0, 0.0, -1.0)}))
    y = run1(g, [[1.0, -1.0], [2.0, 0.5]]).output[0]
    # [1-2+1, 3-4+0, 5-6-1] and [2+1+1, 6+2, 10+3-1]
    np.testing.assert_array_equal(y, [[0.0, -1.0, -2.0], [4.0, 8.0, 12.0]])
    g = chain((2,), (3,), Node("l", "Linear", {"weight": W}))
    np.testing.assert_array_equal(run1(g, [[1.0, -1.0]]).output[0], [[-1.0, -1.0, -1.0]])
    g = chain((3,), (3,), Node("s", "Scale", {"scale": arr(2.0, -1.0, 0.5)}))
    np.testing.assert_array_equal(run1(g, [[1.0, 2.0, 4.0]]).output[0], [[2.0, -2.0, 2.0]])


def test_threshold_is_strict():
    g = chain((3,), (3,), Node("th", "Threshold", {"threshold": arr(0.5, 0.5, 0.5)}))
    y = run1(g, [[0.5, 0.5000001, 0.4], [1.0, -1.0, 0.5]]).output[0]
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 0]])


def test_fan_in_is_summed():
    # input -> a (x2) and input -> b (x3), both -> output: y = 5x (a residual-style add)
    ns = {
        "input": Node("input", "Input", {"shape": ishape(1)}),
        "a": Node("a", "Scale", {"scale": arr(2.0)}),
        "b": Node("b", "Scale", {"scale": arr(3.0)}),
        "output": Node("output", "Output", {"shape": ishape(1)}),
    }
    g = Graph(nodes=ns, edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")])
    np.testing.assert_array_equal(run1(g, [[1.0], [-2.0]]).output[0], [[5.0], [-10.0]])


# -- neurons -------------------------------------------------------------------------------------


def test_integrator_I():
    # v += r*dt*x = 1.0*x with r = 2, dt = 0.5: constant 3 -> 3, 6, 9, ...
    g = chain((1,), (1,), Node("i", "I", {"r": arr(2.0)}))
    y = run1(g, np.full((5, 1), 3.0), dt=0.5).output[0, :, 0]
    np.testing.assert_array_equal(y, [3, 6, 9, 12, 15])


def test_if_counting_zero_and_subtract():
    g = chain((1,), (1,), if_(thr=(2.5,)))
    x = np.ones((10, 1))
    r = run1(g, x, record=True)
    # zero reset: v = 1, 2, 3 > 2.5 -> spike, 0; period 3
    np.testing.assert_array_equal(np.nonzero(r.output[0, :, 0])[0], [2, 5, 8])
    np.testing.assert_array_equal(r.states["if"]["v"][0, :, 0], [1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    r = run1(g, x, reset="subtract", record=True)
    # subtract: 1, 2, 3->0.5, 1.5, 2.5 (not > 2.5), 3.5->1, 2, 3->0.5, 1.5, 2.5
    np.testing.assert_array_equal(np.nonzero(r.output[0, :, 0])[0], [2, 5, 7])
    np.testing.assert_array_equal(r.states["if"]["v"][0, :, 0], [1, 2, 0.5, 1.5, 2.5, 1, 2, 0.5, 1.5, 2.5])
    assert set(r.states["if"]) == {"v", "spikes", "out"}
    np.testing.assert_array_equal(r.states["if"]["spikes"], r.states["if"]["out"])


def test_if_nonzero_v_reset_and_gain():
    # r = 2, dt = 0.25 -> gain 0.5; v_reset = -1: v = .5, 1, 1.5 > 1.2 -> -1, -.5, 0, .5, 1, 1.5 -> -1
    g = chain((1,), (1,), if_(r=(2.0,), thr=(1.2,), v_reset=(-1.0,)))
    r = run1(g, np.ones((9, 1)), dt=0.25, record=True)
    np.testing.assert_array_equal(r.states["if"]["v"][0, :, 0], [0.5, 1, -1, -0.5, 0, 0.5, 1, -1, -0.5])
    np.testing.assert_array_equal(np.nonzero(r.output[0, :, 0])[0], [2, 7])


def test_lif_euler_closed_form():
    # tau = 2 dt -> alpha = 1/2, gain = r/2 = 1 with r = 2; constant x = 1, no spikes (thr 10):
    # v_t = 1 + v_{t-1}/2 -> v_t = 2 (1 - 2^-(t+1))
    g = chain((1,), (1,), lif(tau=(2.0,), r=(2.0,), thr=(10.0,)))
    r = run1(g, np.ones((8, 1)), record=True)
    t = np.arange(8)
    np.testing.assert_allclose(r.states["lif"]["v"][0, :, 0], 2 * (1 - 0.5 ** (t + 1)), rtol=0, atol=1e-15)
    assert r.output.sum() == 0
    # with threshold 1.6: 1, 1.5, 1.75 -> spike, reset 0, period 3
    g = chain((1,), (1,), lif(tau=(2.0,), r=(2.0,), thr=(1.6,)))
    r = run1(g, np.ones((9, 1)), record=True)
    np.testing.assert_array_equal(np.nonzero(r.output[0, :, 0])[0], [2, 5, 8])
    np.testing.assert_array_equal(r.states["lif"]["v"][0, :6, 0], [1, 1.5, 0, 1, 1.5, 0])


def test_lif_exact_closed_form_with_leak():
    # exact: v_t = v_inf (1 - exp(-(t+1) dt/tau)), v_inf = v_leak + r x = 0.5 + 3*1
    g = chain((1,), (1,), lif(tau=(2.0,), r=(3.0,), v_leak=(0.5,), thr=(100.0,)))
    r = run1(g, np.ones((6, 1)), scheme="exact", record=True)
    t = np.arange(6)
    np.testing.assert_allclose(r.states["lif"]["v"][0, :, 0], 3.5 * (1 - np.exp(-(t + 1) / 2.0)), rtol=1e-14)


def test_lif_reset_zero_vs_subtract():
    # tau = 2, r = 2 (gain 1, alpha 1/2), x = 3, thr 2: v0 = 3 spike
    #  zero:     0 -> 3 spike -> 0 ...           every step spikes
    #  subtract: 3-2=1; v1 = 0.5+3 = 3.5 spike -> 1.5; v2 = 0.75+3 = 3.75 -> 1.75; ...
    g = chain((1,), (1,), lif(tau=(2.0,), r=(2.0,), thr=(2.0,), v_reset=(0.0,)))
    x = np.full((4, 1), 3.0)
    rz = run1(g, x, reset="zero", record=True)
    rs = run1(g, x, reset="subtract", record=True)
    np.testing.assert_array_equal(rz.states["lif"]["v"][0, :, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(rs.states["lif"]["v"][0, :, 0], [1, 1.5, 1.75, 1.875])
    np.testing.assert_array_equal(rz.output[0, :, 0], [1, 1, 1, 1])
    np.testing.assert_array_equal(rs.output[0, :, 0], [1, 1, 1, 1])
    # subtract gives at most one spike per step even far above threshold
    rs2 = run1(g, np.full((2, 1), 100.0), reset="subtract", record=True)
    np.testing.assert_array_equal(rs2.output[0, :, 0], [1, 1])
    np.testing.assert_array_equal(rs2.states["lif"]["v"][0, :, 0], [98, 147])


def test_li_leak_and_readout_is_voltage():
    # LI, euler, tau = 4 (alpha 3/4, k = 1/4), v_leak = 2, no input: v_t = 2 (1 - (3/4)^(t+1))
    g = chain((1,), (1,), Node("li", "LI", {"tau": arr(4.0), "r": arr(1.0), "v_leak": arr(2.0)}))
    r = run1(g, np.zeros((5, 1)), record=True)
    t = np.arange(5)
    np.testing.assert_allclose(r.output[0, :, 0], 2 * (1 - 0.75 ** (t + 1)), rtol=1e-15)
    assert set(r.states["li"]) == {"v", "out"}


def test_cubalif_two_stage():
    # euler, dt = 1: tau_syn = 2, w_in = 2 -> alpha_i = .5, gain_i = 1;
    # tau_mem = 4, r = 4 -> alpha_v = .75, gain_v = 1. Impulse x = [1, 0, 0, 0, 0]:
    # i = 1, .5, .25, .125, .0625 (never reset)
    # v0 = 1; v1 = .75 + .5 = 1.25 > 1.2 spike -> 0; v2 = 0 + .25; v3 = .1875 + .125 = .3125;
    # v4 = .234375 + .0625 = .296875
    node = Node(
        "c",
        "CubaLIF",
        {"tau_syn": arr(2.0), "tau_mem": arr(4.0), "r": arr(4.0), "w_in": arr(2.0), "v_leak": arr(0.0), "v_threshold": arr(1.2), "v_reset": arr(0.0)},
    )
    g = chain((1,), (1,), node)
    r = run1(g, [[1.0], [0.0], [0.0], [0.0], [0.0]], record=True)
    np.testing.assert_array_equal(r.states["c"]["i"][0, :, 0], [1, 0.5, 0.25, 0.125, 0.0625])
    np.testing.assert_array_equal(r.states["c"]["v"][0, :, 0], [1, 0, 0.25, 0.3125, 0.296875])
    np.testing.assert_array_equal(r.output[0, :, 0], [0, 1, 0, 0, 0])
    assert set(r.states["c"]) == {"v", "i", "spikes", "out"}


def test_cubali_exact():
    # exact: i_t = w_in (1 - a_s) sum..., impulse: i0 = w(1-a_s), i1 = a_s i0; v0 = r(1-a_m) i0,
    # v1 = a_m v0 + r(1-a_m) i1
    node = Node("c", "CubaLI", {"tau_syn": arr(2.0), "tau_mem": arr(4.0), "r": arr(3.0), "w_in": arr(2.0), "v_leak": arr(0.0)})
    r = run1(chain((1,), (1,), node), [[1.0], [0.0]], scheme="exact", record=True)
    a_s, a_m = math.exp(-0.5), math.exp(-0.25)
    i0 = 2 * (1 - a_s)
    i1 = a_s * i0
    v0 = 3 * (1 - a_m) * i0
    v1 = a_m * v0 + 3 * (1 - a_m) * i1
    np.testing.assert_allclose(r.states["c"]["i"][0, :, 0], [i0, i1], rtol=1e-14)
    np.testing.assert_allclose(r.output[0, :, 0], [v0, v1], rtol=1e-14)


def test_delay():
    # delays of 0, 1 and 3 steps at dt = 0.5 (given in seconds: 0, 0.5, 1.5)
    g = chain((3,), (3,), Node("d", "Delay", {"delay": arr(0.0, 0.5, 1.5)}))
    x = np.arange(1, 6, dtype=float)[:, None] * np.ones((1, 3))  # x_t = t+1 on every channel
    y = run1(g, x, dt=0.5).output[0]
    np.testing.assert_array_equal(y[:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y[:, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(y[:, 2], [0, 0, 0, 1, 2])
    # float32 rounding of the delay is accepted; a fraction of a step is not
    g32 = chain((1,), (1,), Node("d", "Delay", {"delay": arr(float(np.float32(3e-4)))}))
    np.testing.assert_array_equal(run1(g32, np.eye(5)[:, :1], dt=1e-4).output[0, :, 0], [0, 0, 0, 1, 0])
    gbad = chain((1,), (1,), Node("d", "Delay", {"delay": arr(0.75)}))
    with pytest.raises(UnsupportedError, match="whole number"):
        run1(gbad, np.ones((3, 1)), dt=0.5)


def test_recurrent_edge_is_one_step_delayed():
    """input -> IF <-> Linear(w_rec = -0.25); IF r = 1, dt = 1, thr 0.5, x = 0.375 constant.

    v0 = .375; v1 = .75 spike -> 0; v2 = .375 - .25 (spike of t=1) = .125; v3 = .5 (not > .5);
    v4 = .875 spike -> 0; v5 = .125; v6 = .5; v7 = .875 spike.
    """
    inner = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": ishape(1)}),
            "lif": if_(name="lif", thr=(0.5,)),
            "w_rec": Node("w_rec", "Linear", {"weight": np.array([[-0.25]])}),
            "output": Node("output", "Output", {"shape": ishape(1)}),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    g = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": ishape(1)}),
            "rec": Node("rec", "NIRGraph", subgraph=inner),
            "output": Node("output", "Output", {"shape": ishape(1)}),
        },
        edges=[("input", "rec"), ("rec", "output")],
    )
    r = run1(g, np.full((8, 1), 0.375), record=True)
    np.testing.assert_array_equal(np.nonzero(r.output[0, :, 0])[0], [1, 4, 7])
    np.testing.assert_array_equal(r.states["rec.lif"]["v"][0, :, 0], [0.375, 0, 0.125, 0.5, 0, 0.125, 0.5, 0])
    # the delay sits on lif -> w_rec: w_rec's output at t is W s[t-1]
    np.testing.assert_array_equal(r.states["rec.w_rec"]["out"][0, :, 0], [0, 0, -0.25, 0, 0, -0.25, 0, 0])
    assert ("rec.lif", "rec.w_rec") in r.delayed_edges
    # the same recurrence written flat with dotted names (as the Braille files are)
    flat = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": ishape(1)}),
            "l.lif": if_(name="l.lif", thr=(0.5,)),
            "l.w": Node("l.w", "Linear", {"weight": np.array([[-0.25]])}),
            "output": Node("output", "Output", {"shape": ishape(1)}),
        },
        edges=[("l.w", "l.lif"), ("input", "l.lif"), ("l.lif", "l.w"), ("l.lif", "output")],
    )
    r2 = run1(flat, np.full((8, 1), 0.375))
    np.testing.assert_array_equal(r2.output, r.output)
    assert r2.delayed_edges == [("l.lif", "l.w")]


def test_recurrent_affine_bias_applied_from_t0():
    """The delayed edge is i -> w_rec, so w_rec computes W s[t-1] + b at every step, with
    s[-1] = 0: the bias arrives at t = 0 as in snnTorch's RLeaky/RSynaptic (W*0 + b).
    I neuron (r = 1, dt = 1) integrating input 0 + recurrence: w_rec = Affine(W = 0, b = 1):
    v = 1, 2, 3, 4."""
    g = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": ishape(1)}),
            "i": Node("i", "I", {"r": arr(1.0)}),
            "w_rec": Node("w_rec", "Affine", {"weight": np.array([[0.0]]), "bias": arr(1.0)}),
            "output": Node("output", "Output", {"shape": ishape(1)}),
        },
        edges=[("input", "i"), ("i", "w_rec"), ("w_rec", "i"), ("i", "output")],
    )
    r = run1(g, np.zeros((4, 1)))
    np.testing.assert_array_equal(r.output[0, :, 0], [1, 2, 3, 4])


def test_stateless_cycle_rejected():
    g = Graph(
        nodes={
            "input": Node("input", "Input", {"shape": ishape(1)}),
            "a": Node("a", "Scale", {"scale": arr(0.5)}),
            "b": Node("b", "Linear", {"weight": np.array([[0.5]])}),
            "output": Node("output", "Output", {"shape": ishape(1)}),
        },
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("a", "output")],
    )
    with pytest.raises(NirDeployError):
        run1(g, np.zeros((2, 1)))


def test_already_normalized_graph_and_identity_drop():
    from nirdeploy.graph.passes import normalize

    g = chain((1,), (1,), Node("aff", "Affine", {"weight": np.array([[1.0]]), "bias": arr(0.0)}), lif(tau=(2.0,), r=(2.0,), thr=(1.6,)))
    x = np.ones((1, 6, 1))
    r1 = simulate_reference(g, x, 1.0, record=True)
    r2 = simulate_reference(normalize(g), x, 1.0, record=True)
    np.testing.assert_array_equal(r1.output, r2.output)
    assert r1.order == r2.order and "aff" not in r1.states  # the unit Affine is an identity


def test_non_finite_input_rejected():
    g = chain((1,), (1,), lif())
    with pytest.raises(UsageError, match="NaN"):
        simulate_reference(g, np.array([[[np.nan]]]), 1.0)


# -- conv / pool / flatten -----------------------------------------------------------------------


def conv2d_loop(x, w, b, stride, padding, dilation, groups):
    """Direct 7-loop PyTorch conv2d (single sample x: (C, H, W)), integer padding."""
    C, H, W = x.shape
    Co, Cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    xp = np.zeros((C, H + 2 * ph, W + 2 * pw))
    xp[:, ph : ph + H, pw : pw + W] = x
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((Co, Ho, Wo))
    opg = Co // groups
    for o in range(Co):
        g = o // opg
        for i in range(Ho):
            for j in range(Wo):
                s = b[o] if b is not None else 0.0
                for c in range(Cg):
                    for u in range(kh):
                        for v in range(kw):
                            s += w[o, c, u, v] * xp[g * Cg + c, i * sh + u * dh, j * sw + v * dw]
                y[o, i, j] = s
    return y


def conv_node(w, b=None, stride=1, padding=0, dilation=1, groups=1, name="conv"):
    p = {"weight": w, "stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if b is not None:
        p["bias"] = b
    return Node(name, "Conv2d" if w.ndim == 4 else "Conv1d", p)


def test_conv2d_tiny_by_hand():
    # x = arange(9) in 3x3, kernel [[1, 0], [0, -1]]: y[i, j] = x[i, j] - x[i+1, j+1] = -4
    x = np.arange(9.0).reshape(1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    g = chain((1, 3, 3), (1, 2, 2), conv_node(w, arr(0.5), (1, 1), (0, 0), (1, 1), 1))
    np.testing.assert_array_equal(run1(g, x[None]).output[0, 0], np.full((1, 2, 2), -3.5))


def test_conv2d_against_loop_nonsquare_stride_padding_dilation_groups():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 9, 8))  # batch 2, C = 4
    w = rng.normal(size=(6, 2, 3, 2))  # Cout 6, groups 2, non-square 3x2 kernel
    b = rng.normal(size=6)
    stride, padding, dilation = (2, 1), (1, 2), (2, 1)
    y = conv_nd(x, w, b, np.array(stride), np.array(padding), np.array(dilation), np.int64(2))
    for k in range(2):
        np.testing.assert_allclose(y[k], conv2d_loop(x[k], w, b, stride, padding, dilation, 2), rtol=1e-12, atol=1e-12)
    # through the simulator as a graph node (time 1)
    out_shape = y.shape[1:]
    g = chain((4, 9, 8), out_shape, conv_node(w, b, stride, padding, dilation, 2))
    r = simulate_reference(g, x[:, None], 1.0)
    np.testing.assert_allclose(r.output[:, 0], y, rtol=1e-12, atol=1e-12)


def test_conv2d_same_and_valid():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 7, 6))
    w = rng.normal(size=(4, 3, 4, 3))  # even kernel height: PyTorch puts the extra row at the bottom
    y = conv_nd(x, w, None, 1, "same", (1, 2), 1)
    assert y.shape == (1, 4, 7, 6)
    # total pad: h = 1*(4-1) = 3 -> (1, 2); w = 2*(3-1) = 4 -> (2, 2)
    xp = np.pad(x[0], [(0, 0), (1, 2), (2, 2)])
    ref = conv2d_loop(xp, w, None, (1, 1), (0, 0), (1, 2), 1)
    np.testing.assert_allclose(y[0], ref, rtol=1e-12, atol=1e-12)
    yv = conv_nd(x, w, None, 1, "valid", 1, 1)
    np.testing.assert_allclose(yv[0], conv2d_loop(x[0], w, None, (1, 1), (0, 0), (1, 1), 1), rtol=1e-12, atol=1e-12)
    with pytest.raises(UnsupportedError, match="same"):
        conv_nd(x, w, None, 2, "same", 1, 1)


def test_conv1d_against_loop():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 11))
    w = rng.normal(size=(4, 1, 3))  # depthwise, groups = 4
    b = rng.normal(size=4)
    y = conv_nd(x, w, b, 2, 2, 3, 4)
    # loop: as a 2d conv with H = 1
    for k in range(2):
        ref = conv2d_loop(x[k][:, None, :], w[:, :, None, :], b, (1, 2), (0, 2), (1, 3), 4)[:, 0, :]
        np.testing.assert_allclose(y[k], ref, rtol=1e-12, atol=1e-12)
    g = chain((4, 11), y.shape[1:], conv_node(w, b, (2,), (2,), (3,), 4))
    np.testing.assert_allclose(simulate_reference(g, x[:, None], 1.0).output[:, 0], y, rtol=1e-12)


def test_sumpool_and_avgpool():
    x = np.arange(16.0).reshape(1, 4, 4)
    g = chain((1, 4, 4), (1, 2, 2), Node("p", "SumPool2d", {"kernel_size": ishape(2, 2), "stride": ishape(2, 2), "padding": ishape(0, 0)}))
    # windows: [0,1,4,5]=10, [2,3,6,7]=18, [8,9,12,13]=42, [10,11,14,15]=50
    np.testing.assert_array_equal(run1(g, x[None]).output[0, 0, 0], [[10, 18], [42, 50]])
    # AvgPool k2 s2 padding 1 on 3x3 arange: padded zeros count (divide by 4)
    x3 = np.arange(1.0, 10.0).reshape(1, 3, 3)
    g = chain((1, 3, 3), (1, 2, 2), Node("p", "AvgPool2d", {"kernel_size": ishape(2, 2), "stride": ishape(2, 2), "padding": ishape(1, 1)}))
    # windows: {1} , {2,3}, {4,7}, {5,6,8,9}
    np.testing.assert_array_equal(run1(g, x3[None]).output[0, 0, 0], [[0.25, 1.25], [2.75, 7.0]])
    # stride 1 non-square kernel through pool2d directly
    y = pool2d(x[None], ishape(1, 3), ishape(1, 1), ishape(0, 0))
    np.testing.assert_array_equal(y[0, 0], [[3, 6], [15, 18], [27, 30], [39, 42]])


def test_flatten():
    x = np.arange(24.0).reshape(2, 3, 4)
    g = chain((2, 3, 4), (24,), Node("f", "Flatten", {"start_dim": 0, "end_dim": -1}))
    np.testing.assert_array_equal(run1(g, x[None]).output[0, 0], np.arange(24.0))
    # NIR default start_dim = 1 (batch-less): [C, H, W] -> [C, H*W]
    g = chain((2, 3, 4), (2, 12), Node("f", "Flatten", {"start_dim": 1, "end_dim": -1}))
    np.testing.assert_array_equal(run1(g, x[None]).output[0, 0], x.reshape(2, 12))
    g = chain((2, 3, 4), (6, 4), Node("f", "Flatten", {"start_dim": 0, "end_dim": 1}))
    np.testing.assert_array_equal(run1(g, x[None]).output[0, 0], x.reshape(6, 4))


# -- API behaviour -------------------------------------------------------------------------------


def test_input_shape_errors():
    g = chain((3,), (3,), Node("s", "Scale", {"scale": arr(1.0, 1.0, 1.0)}))
    with pytest.raises(UsageError) as ei:
        simulate_reference(g, np.zeros((2, 5, 4)), 1.0)
    assert "(2, 5, 4)" in str(ei.value) and "3" in str(ei.value)
    with pytest.raises(UsageError):
        simulate_reference(g, np.zeros((5, 3)), 1.0)  # no batch dim
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UsageError):
            simulate_reference(g, np.zeros((1, 2, 3)), bad)
    with pytest.raises(UsageError):
        simulate_reference(g, np.zeros((1, 2, 3)), 1.0, scheme="rk4")
    with pytest.raises(UsageError):
        simulate_reference(g, np.zeros((1, 2, 3)), 1.0, reset="none")


def test_progress_record_and_batch_independence():
    g = chain((2,), (2,), lif(tau=(2.0, 4.0), r=(2.0, 2.0), v_leak=(0, 0), thr=(1.0, 1.0), v_reset=(0, 0)))
    rng = np.random.default_rng(5)
    x = rng.random((3, 7, 2))
    calls = []
    r = simulate_reference(g, x, 1.0, record=True, progress=lambda s, n: calls.append((s, n)))
    assert calls == [(k, 7) for k in range(1, 8)]
    assert r.output.shape == (3, 7, 2)
    for name in ("input", "lif", "output"):
        assert r.states[name]["out"].shape == (3, 7, 2)
    np.testing.assert_array_equal(r.states["input"]["out"], x)
    r1 = simulate_reference(g, x[1:2], 1.0)
    np.testing.assert_array_equal(r1.output[0], r.output[1])
    assert simulate_reference(g, x, 1.0).states is None


def test_dt_none_resolves_or_refuses():
    g = chain((1,), (1,), lif(tau=(1e-3,), r=(10.0,)))  # snnTorch encoding, dt = 1e-4
    r = simulate_reference(g, np.ones((1, 3, 1)), None)
    assert r.dt == 1e-4 and any("snntorch" in n for n in r.notes)
    g2 = chain((1,), (1,), lif(tau=(1e-3,), r=(1.0,)))
    with pytest.raises(UsageError):
        simulate_reference(g2, np.ones((1, 3, 1)), None)


def test_euler_instability_note_is_reported():
    g = chain((1,), (1,), lif(tau=(0.5,), r=(1.0,)))
    r = run1(g, np.zeros((2, 1)), dt=1.0)
    assert any("dt=1 >= tau" in n for n in r.notes)


# -- corpus --------------------------------------------------------------------------------------


def _lif_csv(name):
    return np.loadtxt(CORPUS / name, delimiter=",")


def _lif_node_name(g: Graph) -> str:
    return next(k for k, n in g.nodes.items() if n.type == "LIF") if "1" not in g.nodes else "1"


def test_lif_exact_csv_records_post_reset_continuous_crossing():
    """Pins what lif_exact.csv stores: ZOH exponential (decay exp(-0.04), jump 1 - exp(-0.04)),
    and at a spike step the voltage after a reset to 0 at the continuous crossing time t*
    followed by integrating the rest of the step with the input held: 1 - exp(-(dt - t*)/tau)."""
    d = _lif_csv("lif_exact.csv")
    a = math.exp(-0.04)
    assert d[60, 0] == 1 and d[60, 1] == pytest.approx(1 - a, rel=1e-6)
    np.testing.assert_allclose(d[62:70, 1] / d[61:69, 1], a, rtol=1e-7)
    for s in np.nonzero(d[:, 2])[0]:
        v0 = d[s - 1, 1]
        pre = a * v0 + (1 - a) * d[s, 0]
        assert pre > 0.1  # the step's end-of-step (pre-reset) value crosses
        t_star = math.log((1 - v0) / (1 - 0.1))  # in units of tau
        assert d[s, 1] == pytest.approx(1 - math.exp(-(0.04 - t_star)), abs=1e-8)
        assert 0 < d[s, 1] < 0.01


@pytest.mark.parametrize("scheme,tol_pre,tol_all", [("exact", 1e-9, 6.5e-3), ("euler", 1.2e-3, 6.5e-3)])
def test_lif_corpus_against_exact_csv(scheme, tol_pre, tol_all):
    d = _lif_csv("lif_exact.csv")
    g = load_corpus("lif_norse.nir")
    r = simulate_reference(g, d[None, :, 0:1], 1e-4, scheme=scheme, record=True)
    assert r.output.shape == (1, 1000, 1)
    spikes = np.nonzero(r.output[0, :, 0])[0]
    np.testing.assert_array_equal(spikes, np.nonzero(d[:, 2])[0])
    np.testing.assert_array_equal(spikes, [460, 510, 710, 760])
    v = r.states[_lif_node_name(g)]["v"][0, :, 0]
    err = np.abs(v - d[:, 1])
    assert err[:460].max() <= tol_pre
    assert err.max() <= tol_all
    if scheme == "euler":
        assert err[:460].max() > 1e-4  # Euler is measurably worse than ZOH before the first spike


def test_lif_corpus_against_norse_and_snntorch_csv():
    g = load_corpus("lif_norse.nir")
    name = _lif_node_name(g)
    n = np.loadtxt(_find_trace("lif_norse.csv"), delimiter=",")
    r = simulate_reference(g, n[None, :, 0:1], 1e-4, scheme="euler", record=True)
    np.testing.assert_array_equal(r.output[0, :, 0], n[:, 2])
    np.testing.assert_allclose(r.states[name]["v"][0, :, 0], n[:, 1], rtol=0, atol=1e-7)
    s = np.loadtxt(_find_trace("lif_snntorch.csv"), delimiter=",")
    r = simulate_reference(g, s[None, :, 0:1], 1e-4, scheme="euler", record=True)
    np.testing.assert_array_equal(r.output[0, :, 0], s[:, 2])
    # snnTorch runs the same Euler update with gain 1: its voltage is ours times tau/(r dt) = 25
    np.testing.assert_allclose(25 * r.states[name]["v"][0, :, 0], s[:, 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
def test_braille_corpus_runs_and_matches_rsynaptic_loop(name):
    g = load_corpus(name)
    rng = np.random.default_rng(7)
    x = (rng.random((3, 50, 12)) < 0.3).astype(np.float64)
    r = simulate_reference(g, x, 1e-4, record=True)
    assert r.output.shape == (3, 50, 7)
    assert np.all(np.isfinite(r.output)) and set(np.unique(r.output)) <= {0.0, 1.0}
    assert len(r.delayed_edges) == 1
    # an independent snnTorch-RSynaptic-style loop using the raw parameters
    nodes = {k: n for k, n in g.iter_nodes_recursive()}
    fc1 = next(n for k, n in nodes.items() if k.endswith("fc1"))
    fc2 = next(n for k, n in nodes.items() if k.endswith("fc2"))
    l1 = next(n for k, n in nodes.items() if k.endswith("lif1.lif") or k.endswith("lif1_lif"))
    l2 = next(n for k, n in nodes.items() if k.endswith("lif2"))
    wr = next(n for k, n in nodes.items() if k.endswith("w_rec"))

    def aff(n, v):
        y = v @ np.asarray(n.params["weight"]).T
        return y + n.params["bias"] if "bias" in n.params else y

    def coeffs(n):
        p = n.params
        dt = 1e-4
        return (1 - dt / p["tau_syn"], p["w_in"] * dt / p["tau_syn"], 1 - dt / p["tau_mem"], p["r"] * dt / p["tau_mem"], p["v_threshold"])

    c1, c2 = coeffs(l1), coeffs(l2)
    B = x.shape[0]
    i1 = np.zeros((B, c1[0].size)); v1 = np.zeros_like(i1); s1 = np.zeros_like(i1)
    i2 = np.zeros((B, c2[0].size)); v2 = np.zeros_like(i2)
    out = []
    for t in range(50):
        # snnTorch RSynaptic: the recurrent layer reads the previous spikes, W s1[t-1] + b
        # (s1[-1] = 0, so the bias is applied from t = 0)
        rec = aff(wr, s1)
        inp1 = aff(fc1, x[:, t]) + rec
        i1 = c1[0] * i1 + c1[1] * inp1
        v1 = c1[2] * v1 + c1[3] * i1
        s1 = (v1 > c1[4]).astype(float)
        v1 = np.where(s1 > 0, 0.0, v1)
        i2 = c2[0] * i2 + c2[1] * aff(fc2, s1)
        v2 = c2[2] * v2 + c2[3] * i2
        s2 = (v2 > c2[4]).astype(float)
        v2 = np.where(s2 > 0, 0.0, v2)
        out.append(s2)
    np.testing.assert_array_equal(r.output, np.stack(out, 1))
    hidden = [k for k in r.states if k.endswith("lif1.lif") or k.endswith("lif1_lif")][0]
    assert r.states[hidden]["spikes"].sum() > 0
    rs = simulate_reference(g, x, 1e-4, reset="subtract", scheme="exact")
    assert rs.output.shape == (3, 50, 7) and np.all(np.isfinite(rs.output))


def test_cnn_sinabs_corpus_runs():
    """The N-MNIST CNN of the NIR paper runs (its speed: benchmarks/bench_reference_cnn.py)."""
    g = load_corpus("cnn_sinabs.nir")
    rng = np.random.default_rng(11)
    x = (rng.random((4, 20, 2, 34, 34)) < 0.1).astype(np.float64)
    r = simulate_reference(g, x, 1.0, reset="subtract", record=True)
    assert r.output.shape == (4, 20, 10)
    assert np.all(np.isfinite(r.output)) and set(np.unique(r.output)) <= {0.0, 1.0}
    # shapes of the intermediate layers (N-MNIST CNN of the paper)
    shapes = {k: v["out"].shape[2:] for k, v in r.states.items()}
    assert (16, 16, 16) in shapes.values() and (8, 4, 4) in shapes.values() and (128,) in shapes.values()
    conv_states = [v["out"] for k, v in r.states.items() if v["out"].shape[2:] == (16, 16, 16)]
    assert any(np.abs(s).sum() > 0 for s in conv_states)
    assert r.delayed_edges == []


def test_errors_are_nirdeploy_errors():
    assert issubclass(UnsupportedError, NirDeployError) and issubclass(UsageError, NirDeployError)
