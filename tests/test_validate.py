"""Shape inference and validation."""

from __future__ import annotations

import copy
import math
import tracemalloc
from pathlib import Path

import nir
import numpy as np
import pytest

from nirdeploy.errors import GraphValidationError, Problem
from nirdeploy.graph.ir import Graph, Node
from nirdeploy.graph.loading import from_nir, load
from nirdeploy.graph.validate import (
    check,
    conv_output_size,
    pool_output_size,
    flatten_shape,
    graph_warnings,
    infer_shapes,
    validate,
)

from conftest import CORPUS
from graphs import N, chain, ir_lif as lif


def corpus(name: str) -> Path:
    """A graph of the project's corpus copy (examples/nir-corpus)."""
    return CORPUS / name


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------




def affine(name, out, inp, **over):
    p = dict(weight=np.ones((out, inp)), bias=np.zeros(out))
    p.update(over)
    return Node(name, "Affine", p)


def simple(n_in=3, n=4) -> Graph:
    return chain(N("input", "Input", shape=(n_in,)), affine("fc", n, n_in), lif("lif", n), N("output", "Output", shape=(n,)))


def fields(probs: list[Problem]) -> set[tuple[str, str]]:
    return {(p.node, p.field) for p in probs}


def conv(name, weight_shape, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, input_shape=None):
    nd = len(weight_shape) - 2
    p = dict(weight=np.ones(weight_shape), bias=np.zeros(weight_shape[0]), stride=stride, padding=padding,
             dilation=dilation, groups=groups)
    if input_shape is not None:
        p["input_shape"] = input_shape
    return Node(name, "Conv1d" if nd == 1 else "Conv2d", p)


def one_op(op: Node, in_shape) -> Graph:
    return chain(N("input", "Input", shape=tuple(in_shape)), op, N("output", "Output"))


# ------------------------------------------------------------------------------------------------
# shape inference
# ------------------------------------------------------------------------------------------------


def test_cnn_sinabs_shapes_match_hand_computation():
    g = load(corpus("cnn_sinabs.nir"))
    # conv 0: 5x5, stride 2, pad 1 on 34x34: (34 + 2 - 4 - 1)//2 + 1 = 16
    h0 = (34 + 2 * 1 - 1 * (5 - 1) - 1) // 2 + 1
    assert h0 == 16
    expected = {
        "input": ((2, 34, 34), (2, 34, 34)),
        "0": ((2, 34, 34), (16, h0, h0)),
        "1": ((16, 16, 16), (16, 16, 16)),
        "2": ((16, 16, 16), (16, 16, 16)),  # 3x3, pad 1, stride 1 keeps 16
        "3": ((16, 16, 16), (16, 16, 16)),
        "4": ((16, 16, 16), (16, 8, 8)),  # sum pool 2x2 stride 2
        "5": ((16, 8, 8), (8, 8, 8)),
        "6": ((8, 8, 8), (8, 8, 8)),
        "7": ((8, 8, 8), (8, 4, 4)),
        "8": ((8, 4, 4), (128,)),  # Flatten start_dim=0 (NIR dims have no batch)
        "9": ((128,), (256,)),
        "10": ((256,), (256,)),
        "11": ((256,), (10,)),
        "12": ((10,), (10,)),
        "output": ((10,), (10,)),
    }
    got = {k: (n.input_shape, n.output_shape) for k, n in g.nodes.items()}
    assert got == expected


def _torch_out(n, k, s, p, d):
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s + 1)


def test_size_helpers_match_the_pytorch_formulas():
    for n, k, s, p, d in [(34, 5, 2, 1, 1), (11, 5, 1, 2, 2), (7, 7, 3, 3, 1), (100, 3, 7, 0, 4)]:
        assert conv_output_size(n, k, s, p, d) == _torch_out(n, k, s, p, d)
        assert pool_output_size(n, k, s, p) == _torch_out(n, k, s, p, 1)


NONSQUARE = [
    # (in C,H,W), weight (Cout, Cin/g, kh, kw), stride, padding, dilation, groups
    ((2, 9, 11), (4, 2, 3, 5), (2, 1), (1, 2), (1, 2), 1),
    ((4, 17, 10), (6, 2, 5, 2), (3, 2), (0, 1), (2, 1), 2),
    ((3, 7, 30), (3, 1, 1, 7), (1, 4), (0, 3), (1, 3), 3),
    ((8, 12, 5), (8, 4, 4, 3), (2, 2), (2, 0), (1, 1), 2),
]


@pytest.mark.parametrize("ins,wshape,stride,pad,dil,groups", NONSQUARE)
def test_nonsquare_conv2d_matches_the_pytorch_formula(ins, wshape, stride, pad, dil, groups):
    op = conv("conv", wshape, stride=stride, padding=pad, dilation=dil, groups=groups)
    g = infer_shapes(one_op(op, ins))
    kh, kw = wshape[2:]
    expected = (
        wshape[0],
        _torch_out(ins[1], kh, stride[0], pad[0], dil[0]),
        _torch_out(ins[2], kw, stride[1], pad[1], dil[1]),
    )
    assert g.nodes["conv"].input_shape == ins
    assert g.nodes["conv"].output_shape == expected
    assert validate(g) == []
    # same answer when the conv declares its input_shape (as nir files do)
    op2 = conv("conv", wshape, stride=stride, padding=pad, dilation=dil, groups=groups, input_shape=ins[1:])
    assert infer_shapes(one_op(op2, ins)).nodes["conv"].output_shape == expected


def test_nir_own_inference_gets_nonsquare_kernels_wrong():
    """The reason nirdeploy infers shapes itself (nir uses weight.shape[2] for both dims)."""
    w = np.ones((4, 2, 3, 5))
    nc = nir.Conv2d(input_shape=(9, 11), weight=w, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1,
                    bias=np.zeros(4))
    ours = infer_shapes(one_op(conv("conv", w.shape, stride=(2, 1), padding=(1, 2), dilation=(1, 2)), (2, 9, 11)))
    assert ours.nodes["conv"].output_shape == (4, 5, 7)
    assert tuple(nc.output_type["output"]) != (4, 5, 7)  # nir says (4, 5, 11)


def test_conv_padding_same_and_valid():
    g = infer_shapes(one_op(conv("conv", (5, 2, 3, 6), padding="same", dilation=(2, 1)), (2, 9, 13)))
    assert g.nodes["conv"].output_shape == (5, 9, 13)
    g = infer_shapes(one_op(conv("conv", (5, 2, 3, 6), padding="valid"), (2, 9, 13)))
    assert g.nodes["conv"].output_shape == (5, 7, 8)
    # 'same' with stride 2 is not allowed (PyTorch raises); nir silently keeps the size
    bad = one_op(conv("conv", (5, 2, 3, 3), padding="same", stride=(2, 2)), (2, 9, 13))
    assert ("conv", "padding") in fields(validate(bad))


def test_conv1d_groups_stride_dilation():
    op = conv("conv", (6, 2, 4), stride=(3,), padding=(2,), dilation=(2,), groups=3)
    g = infer_shapes(one_op(op, (6, 50)))
    assert g.nodes["conv"].output_shape == (6, _torch_out(50, 4, 3, 2, 2))
    assert validate(g) == []


@pytest.mark.parametrize("type_", ["SumPool2d", "AvgPool2d"])
def test_pool_nonsquare(type_):
    op = N("pool", type_, kernel_size=(2, 3), stride=(2, 1), padding=(1, 0))
    g = infer_shapes(one_op(op, (3, 7, 8)))
    assert g.nodes["pool"].output_shape == (3, (7 + 2 - 2) // 2 + 1, (8 - 3) // 1 + 1)


@pytest.mark.parametrize(
    "shape,start,end,expected",
    [
        ((8, 4, 4), 1, -1, (8, 16)),  # NIR's default: [C, H, W] -> [C, H*W]
        ((8, 4, 4), 0, -1, (128,)),
        ((2, 3, 4), -2, -1, (2, 12)),
        ((2, 3, 4), 0, 1, (6, 4)),
        ((2, 3, 4), 1, 1, (2, 3, 4)),
        ((5,), 0, -1, (5,)),
    ],
)
def test_flatten_without_batch_dim(shape, start, end, expected):
    assert flatten_shape(shape, start, end) == expected
    g = infer_shapes(one_op(N("flat", "Flatten", start_dim=start, end_dim=end), shape))
    assert g.nodes["flat"].output_shape == expected


def test_affine_with_leading_dims_and_scale():
    g = infer_shapes(chain(N("input", "Input", shape=(2, 3)), N("fc", "Linear", weight=np.ones((2, 5, 3))),
                           N("s", "Scale", scale=np.full((2, 5), 2.0)), N("output", "Output")))
    assert g.nodes["fc"].output_shape == (2, 5) and g.nodes["s"].output_shape == (2, 5)
    assert g.nodes["output"].input_shape == (2, 5)


def test_scalar_neuron_params_take_the_input_shape():
    g = chain(N("input", "Input", shape=(3,)), affine("fc", 7, 3),
              Node("lif", "LIF", dict(tau=np.array(1e-3), r=np.array([1.0]), v_leak=np.array(0.0),
                                      v_threshold=np.array(1.0), v_reset=np.array(0.0))),
              N("output", "Output", shape=(7,)))
    s = infer_shapes(g)
    assert s.nodes["lif"].input_shape == (7,) and s.nodes["lif"].output_shape == (7,)
    assert validate(g) == []


def test_recurrent_cycle_infers_from_outside_first():
    # lif and rec have only scalar parameters: the shape must come from fc (outside the cycle)
    # and then round the cycle to rec
    g = chain(N("input", "Input", shape=(3,)), affine("fc", 4, 3),
              Node("lif", "LIF", dict(tau=np.array(1e-3), r=np.array(1.0), v_leak=np.array(0.0),
                                      v_threshold=np.array(1.0))),
              N("output", "Output"))
    g.nodes["rec"] = N("rec", "Scale", scale=np.array(0.5))
    g.edges += [("lif", "rec"), ("rec", "lif")]
    s = infer_shapes(g)
    assert s.nodes["lif"].input_shape == (4,) and s.nodes["rec"].output_shape == (4,)
    assert validate(g) == []


def test_summed_inputs_must_agree():
    g = chain(N("input", "Input", shape=(3,)), affine("a", 4, 3), lif("lif", 4), N("output", "Output"))
    g.nodes["b"] = affine("b", 4, 3)
    g.edges += [("input", "b"), ("b", "lif")]
    assert validate(g) == []
    g.nodes["b"] = affine("b", 5, 3)
    probs = validate(g)
    assert any(p.node == "lif" and p.field == "input" and "mismatch" in p.message and p.actual == (5,) for p in probs)


def test_nested_subgraph_shapes():
    sub = chain(N("input", "Input", shape=(4,)), lif("lif", 4), N("output", "Output", shape=(4,)))
    sub.nodes["w_rec"] = N("w_rec", "Linear", weight=np.eye(4))
    sub.edges += [("lif", "w_rec"), ("w_rec", "lif")]
    outer = chain(N("input", "Input", shape=(3,)), affine("fc", 4, 3), Node("rnn", "NIRGraph", subgraph=sub),
                  affine("fc2", 2, 4), N("output", "Output", shape=(2,)))
    s = infer_shapes(outer)
    assert s.nodes["rnn"].input_shape == (4,) and s.nodes["rnn"].output_shape == (4,)
    assert s.nodes["rnn"].subgraph.nodes["w_rec"].output_shape == (4,)
    assert validate(outer) == []
    outer.nodes["fc"] = affine("fc", 5, 3)
    probs = validate(outer)
    assert ("rnn", "input") in fields(probs)


def test_infer_shapes_returns_a_new_graph():
    g = simple()
    before = copy.deepcopy(g)
    s = infer_shapes(g)
    assert s is not g and s.nodes["fc"] is not g.nodes["fc"]
    assert g.nodes["fc"].output_shape is None and s.nodes["fc"].output_shape == (4,)
    assert repr(before) == repr(g)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------


def test_problem_carries_all_details():
    g = simple()
    g.nodes["fc"].params["bias"] = np.zeros(6)
    (p,) = validate(g)
    assert (p.node, p.node_type, p.field, p.expected, p.actual) == ("fc", "Affine", "bias", (4,), (6,))
    assert "fc (Affine) .bias" in str(p)


def test_all_problems_are_reported_together():
    g = simple()
    g.nodes["fc"].params["weight"][0, 0] = np.nan
    g.nodes["lif"].params["tau"][:] = -1.0
    g.edges.append(("lif", "nowhere"))
    with pytest.raises(GraphValidationError) as info:
        check(g)
    assert fields(info.value.problems) == {("fc", "weight"), ("lif", "tau"), ("lif", "edges")}  # at the existing end of the edge
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "mutate,where",
    [
        (lambda g: g.nodes["lif"].params.__setitem__("v_threshold", np.array([1, np.inf, 1, 1.0])), ("lif", "v_threshold")),
        (lambda g: g.nodes["lif"].params.__setitem__("tau", np.zeros(4)), ("lif", "tau")),
        (lambda g: g.nodes["lif"].params.__setitem__("r", np.ones(2)), ("lif", "r")),
        (lambda g: g.nodes["lif"].params.pop("tau"), ("lif", "tau")),
        (lambda g: g.nodes["fc"].params.__setitem__("weight", np.ones(4)), ("fc", "weight")),
        (lambda g: g.nodes["fc"].params.__setitem__("weight", [[1.0] * 3] * 4), ("fc", "weight")),
        (lambda g: g.nodes["fc"].params.__setitem__("bias", np.array(["a"] * 4)), ("fc", "bias")),
        (lambda g: g.nodes["input"].params.__setitem__("shape", (3, -1)), ("input", "shape")),
        (lambda g: g.nodes["input"].params.__setitem__("shape", ()), ("input", "shape")),
        (lambda g: g.nodes["input"].params.__setitem__("shape", "3"), ("input", "shape")),
        (lambda g: setattr(g.nodes["lif"], "type", "Bogus"), ("lif", "type")),
        (lambda g: g.edges.append(("fc", "lif")), ("lif", "edges")),
        (lambda g: g.edges.append(("lif", "input")), ("input", "edges")),
        (lambda g: g.edges.append(("output", "fc")), ("output", "edges")),
        (lambda g: setattr(g, "delayed_edges", frozenset({("lif", "fc")})), ("", "delayed_edges")),
    ],
)
def test_single_problems(mutate, where):
    g = simple()
    mutate(g)
    assert where in fields(validate(g))


def test_empty_and_bad_names():
    g = simple()
    g.nodes[""] = N("", "Scale", scale=np.ones(4))
    g.nodes["a/b"] = N("a/b", "Scale", scale=np.ones(4))
    g.edges += [("lif", ""), ("", "a/b"), ("a/b", "output")]
    probs = validate(g)
    assert ("", "name") in fields(probs) and ("a/b", "name") in fields(probs)


def test_graph_level_problems():
    assert validate(Graph())[0].message.startswith("empty graph")
    g = chain(affine("fc", 4, 3), lif("lif"))
    msgs = " ".join(p.message for p in validate(g))
    assert "no Input" in msgs and "no Output" in msgs


def test_absurd_declared_shape_is_not_allocated():
    g = simple()
    g.nodes["input"].params["shape"] = (100_000, 100_000, 1000)
    g.nodes["fc"] = N("fc", "Flatten", start_dim=0, end_dim=-1)
    g.nodes["lif"] = Node("lif", "LIF", dict(tau=np.array(1e-3), r=np.array(1.0), v_leak=np.array(0.0),
                                             v_threshold=np.array(1.0)))
    tracemalloc.start()
    try:
        probs = validate(g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
    assert any(p.node == "input" and "absurd" in p.message for p in probs)


def test_algebraic_loop_vs_recurrent_loop():
    g = simple()
    g.nodes["w_rec"] = N("w_rec", "Linear", weight=np.eye(4))
    g.edges += [("lif", "w_rec"), ("w_rec", "lif")]
    assert validate(g) == []  # the LIF holds state: a recurrent loop, fine
    g = simple()
    g.nodes["a1"] = affine("a1", 4, 4)
    g.nodes["a2"] = affine("a2", 4, 4)
    g.edges += [("fc", "a1"), ("a1", "a2"), ("a2", "a1"), ("a2", "lif")]
    (p,) = [p for p in validate(g) if "algebraic" in p.message]
    assert p.node == "a1" and p.actual == ["a1", "a2"]
    # a self loop on a stateless node is an algebraic loop too
    g = simple()
    g.edges.append(("fc", "fc"))
    assert any("algebraic" in p.message for p in validate(g))


def test_nested_graph_counts_as_stateful_only_with_a_stateful_node():
    def outer(inner_node):
        sub = chain(N("input", "Input", shape=(4,)), inner_node, N("output", "Output", shape=(4,)))
        g = simple()
        g.nodes["sub"] = Node("sub", "NIRGraph", subgraph=sub)
        g.nodes["w"] = affine("w", 4, 4)
        g.edges += [("fc", "w"), ("w", "sub"), ("sub", "w")]
        return g

    assert validate(outer(lif("lif", 4))) == []
    assert any("algebraic" in p.message for p in validate(outer(affine("a", 4, 4))))


def test_nested_errors_use_dotted_names():
    sub = chain(N("input", "Input", shape=(4,)), lif("lif", 4, tau=np.full(4, -1.0)), N("output", "Output", shape=(4,)))
    g = simple()
    g.nodes["sub"] = Node("sub", "NIRGraph", subgraph=sub)
    g.edges += [("lif", "sub"), ("sub", "output")]
    assert ("sub.lif", "tau") in fields(validate(g))


def test_unreachable_nodes_are_warnings():
    g = simple()
    g.nodes["orphan"] = lif("orphan", 4)
    g.edges.append(("orphan", "output"))
    assert validate(g) == []
    warns = graph_warnings(g)
    assert [(w.node, w.message) for w in warns] == [("orphan", "warning: not reachable from any Input")]
    assert check(g) == warns
    g2 = simple()
    g2.nodes["dead"] = lif("dead", 4)
    g2.edges.append(("fc", "dead"))
    assert [w.node for w in graph_warnings(g2)] == ["dead"]


def test_validate_never_raises_on_garbage():
    weird = [
        Graph(nodes={"x": Node("x", "Input", {"shape": None})}, edges=[("x",)]),
        Graph(nodes={"x": Node("x", "Conv2d", {"weight": np.ones(3), "stride": "a"})}, edges=[(1, 2)]),
        Graph(nodes={"x": Node("x", "Flatten", {"start_dim": "0"}), "i": Node("i", "Input", {"shape": (2,)})},
              edges=[("i", "x")]),
        Graph(nodes={"x": Node("x", "NIRGraph")}),
        Graph(nodes={"x": Node("x", "SumPool2d", {"kernel_size": (0, 0), "stride": (1,), "padding": (-1, 2)}),
                     "i": Node("i", "Input", {"shape": (2, 2)})}, edges=[("i", "x")]),
        Graph(nodes={"x": Node("x", "LIF", {"tau": np.array([]), "r": np.ones((0, 3))})}),
        Graph(nodes={"x": 42, "i": Node("i", "Input", {"shape": (2,)})}, edges=[("i", "x")]),
        Graph(nodes={"s": Node("s", "NIRGraph", subgraph="not a graph")}),
    ]
    for g in weird:
        probs = validate(g)
        assert probs and all(isinstance(p, Problem) for p in probs)
        infer_shapes(g)


def test_conv_parameter_checks():
    bad = one_op(conv("conv", (4, 2, 3, 3), stride=(0, 1), dilation=(1, 1, 1), padding=(-1, 0)), (2, 8, 8))
    f = fields(validate(bad))
    assert {("conv", "stride"), ("conv", "dilation"), ("conv", "padding")} <= f
    bad = one_op(conv("conv", (4, 2, 3)), (2, 8))
    bad.nodes["conv"].type = "Conv2d"
    assert ("conv", "weight") in fields(validate(bad))


def test_in_memory_nir_graph_is_validated_like_a_file():
    ng = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(5)),
            "output": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("input", "fc"), ("fc", "output")],
        type_check=False,
    )
    assert ("fc", "bias") in fields(validate(from_nir(ng)))


def test_flatten_with_pytorch_dims_gets_a_hint():
    # a Norse-style export: torch dims (start_dim=1 counts the batch) in front of a 128-input Affine
    g = chain(N("input", "Input", shape=(8, 4, 4)), N("flat", "Flatten", start_dim=1, end_dim=-1),
              N("fc", "Linear", weight=np.ones((10, 128))), N("output", "Output"))
    (p,) = validate(g)
    assert p.node == "fc" and p.actual == (8, 16) and p.expected == (128,)
    assert "PyTorch dims" in p.message and "(0, -1)" in p.message


def _residual_diamonds(n: int) -> Graph:
    nodes = [N("input", "Input", shape=(8,))]
    edges = []
    prev = "input"
    for i in range(n):
        a, b, j = f"a{i}", f"b{i}", f"j{i}"
        nodes += [N(a, "Linear", weight=np.eye(8) * 0.5), N(b, "Scale", scale=np.ones(8)), lif(j, 8)]
        edges += [(prev, a), (prev, b), (a, j), (b, j)]  # residual diamonds
        prev = j
    nodes.append(N("output", "Output"))
    edges.append((prev, "output"))
    return Graph(nodes={x.name: x for x in nodes}, edges=edges)


def _traced_steps(fn) -> int:
    """Python lines executed (and calls made) by ``fn()``: a measure of work that load on the
    machine cannot change."""
    import sys

    count = [0]

    def tracer(frame, event, arg):
        count[0] += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(old)
    return count[0]


def test_large_graph_work_grows_linearly():
    """Validation, normalisation and loop detection on a chain of residual diamonds: twice the
    graph takes about twice the work (counted in executed lines, not seconds: an exponential
    walk over the diamonds' paths or a quadratic pass in Python would show 4x or more). The
    wall-clock figure for 1,500 diamonds is benchmarks/bench_graph_passes.py."""
    from nirdeploy.graph.passes import normalize, recurrent_loops

    def work(n):
        g = _residual_diamonds(n)

        def run():
            assert validate(g) == []
            out = normalize(g)
            assert recurrent_loops(out) == []
            assert len(out.nodes) == 2 * n + 2  # every Scale of ones is dropped

        return _traced_steps(run)

    small, big = work(30), work(60)
    assert 1.5 < big / small < 2.5, (small, big)
