"""Normalisation passes: each is pure, keeps the graph valid, and does what it says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nirdeploy.errors import GraphValidationError
from nirdeploy.graph.ir import Graph, Node
from nirdeploy.graph.loading import load
from nirdeploy.graph.passes import (
    PASSES,
    PIPELINE,
    back_edges,
    broadcast_params,
    drop_identities,
    inline_subgraphs,
    mark_recurrent,
    normalize,
    recurrent_loops,
    topo_sort,
)
from nirdeploy.graph.validate import infer_shapes, validate

from conftest import CORPUS
from graphs import N, chain, ir_lif as lif


def corpus(name: str) -> Path:
    """A graph of the project's corpus copy (examples/nir-corpus)."""
    return CORPUS / name


DATA = Path(__file__).parent / "data"
CORPUS_FILES = ["lif_norse.nir", "cnn_sinabs.nir", "braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]
FIXTURES = ["nir104_lif.nir", "nir104_cnn.nir", "nir104_rnn_nested.nir", "nir104_elementwise.nir"]
ALL_GRAPHS = [("corpus", f) for f in CORPUS_FILES] + [("data", f) for f in FIXTURES]


def graph_path(where: str, name: str) -> Path:
    return corpus(name) if where == "corpus" else DATA / name


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def snapshot(g: Graph):
    """A deep, comparable picture of a graph: order, types, parameter bytes, shapes, metadata."""

    def val(v):
        if isinstance(v, np.ndarray):
            return ("ndarray", str(v.dtype), v.shape, v.tobytes())
        if isinstance(v, dict):
            return tuple((k, val(x)) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return (type(v).__name__,) + tuple(val(x) for x in v)
        return (type(v).__name__, repr(v))

    return (
        tuple(
            (k, n.name, n.type, val(n.params), val(n.metadata), n.input_shape, n.output_shape,
             None if n.subgraph is None else snapshot(n.subgraph))
            for k, n in g.nodes.items()
        ),
        tuple(g.edges),
        val(g.metadata),
        g.nir_version,
        tuple(sorted(g.delayed_edges)),
    )


def run_pipeline_checked(g: Graph) -> Graph:
    """Run PIPELINE pass by pass; after each: re-infer shapes and validate; the input of every
    pass must be left untouched."""
    assert validate(g) == []
    for name in PIPELINE:
        before = snapshot(g)
        out = PASSES[name](g)
        assert snapshot(g) == before, f"{name} modified its argument"
        assert out is not g
        shaped = infer_shapes(out)
        probs = validate(shaped)
        assert probs == [], f"after {name}: {[str(p) for p in probs]}"
        g = out
    return g




def rnn_sub(n=4, name_lif="lif", name_rec="w_rec") -> Graph:
    sub = chain(N("input", "Input", shape=(n,)), lif(name_lif, n), N("output", "Output", shape=(n,)))
    sub.nodes[name_rec] = N(name_rec, "Linear", weight=np.eye(n) * 0.5)
    sub.edges += [(name_lif, name_rec), (name_rec, name_lif)]
    return sub


# ------------------------------------------------------------------------------------------------
# the whole pipeline on real graphs
# ------------------------------------------------------------------------------------------------


def test_registry_and_pipeline():
    assert set(PASSES) == {"infer_shapes", "inline_subgraphs", "broadcast_params", "drop_identities", "topo_sort",
                           "mark_recurrent"}
    assert PIPELINE == ("infer_shapes", "inline_subgraphs", "broadcast_params", "drop_identities", "infer_shapes",
                        "topo_sort", "mark_recurrent")


@pytest.mark.parametrize("where,name", ALL_GRAPHS, ids=[p[1] for p in ALL_GRAPHS])
def test_pipeline_keeps_every_graph_valid_and_pure(where, name):
    g = load(graph_path(where, name))
    before = snapshot(g)
    stepwise = run_pipeline_checked(g)
    final = normalize(g)
    assert snapshot(g) == before, "normalize modified its argument"
    assert snapshot(final) == snapshot(stepwise)
    assert not any(n.type == "NIRGraph" for n in final.nodes.values())
    names = list(final.nodes)
    assert final.nodes[names[0]].type == "Input" and final.nodes[names[-1]].type == "Output"
    # idempotent
    assert snapshot(normalize(final)) == snapshot(final)


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
def test_braille_recurrent_loop_and_delayed_edge(name):
    g = normalize(load(corpus(name)))
    assert recurrent_loops(g) == [["lif1.lif", "lif1.w_rec"]]
    # the delay sits on the edge leaving the neuron (snnTorch: W_rec s[t-1] + b_rec)
    assert g.delayed_edges == frozenset({("lif1.lif", "lif1.w_rec")})
    assert list(g.nodes)[:3] == ["input", "fc1", "lif1.lif"]
    assert list(g.nodes)[-1] == "output"


def test_corpus_normalized_forms():
    cnn = normalize(load(corpus("cnn_sinabs.nir")))
    assert list(cnn.nodes) == ["input"] + [str(i) for i in range(13)] + ["output"]  # not HDF5's alphabetical order
    assert cnn.delayed_edges == frozenset() and recurrent_loops(cnn) == []
    lif = normalize(load(corpus("lif_norse.nir")))
    # the 1x1 identity Affine (weight 1, bias 0) is dropped
    assert list(lif.nodes) == ["input", "1", "output"] and lif.edges == [("input", "1"), ("1", "output")]


def test_nested_rnn_fixture_is_inlined_with_dotted_names():
    g = normalize(load(DATA / "nir104_rnn_nested.nir"))
    assert list(g.nodes) == ["input", "fc1", "lif1.lif", "fc2", "lif1.w_rec", "lif2", "output"]
    assert ("fc1", "lif1.lif") in g.edges and ("lif1.lif", "fc2") in g.edges
    assert ("lif1.lif", "lif1.w_rec") in g.edges and ("lif1.w_rec", "lif1.lif") in g.edges
    assert g.delayed_edges == frozenset({("lif1.lif", "lif1.w_rec")})
    assert recurrent_loops(g) == [["lif1.lif", "lif1.w_rec"]]


def test_normalize_refuses_an_invalid_graph():
    g = chain(N("input", "Input", shape=(4,)), lif("lif", 4, tau=np.full(4, np.nan)), N("output", "Output"))
    with pytest.raises(GraphValidationError, match="NaN"):
        normalize(g)


# ------------------------------------------------------------------------------------------------
# inline_subgraphs
# ------------------------------------------------------------------------------------------------


def test_inline_nested_twice_and_rewire():
    inner = rnn_sub(4)
    mid = chain(N("input", "Input", shape=(4,)), N("pre", "Scale", scale=np.full(4, 2.0)),
                Node("core", "NIRGraph", subgraph=inner), N("output", "Output", shape=(4,)))
    g = chain(N("input", "Input", shape=(4,)), Node("blk", "NIRGraph", subgraph=mid), N("output", "Output", shape=(4,)))
    before = snapshot(g)
    flat = inline_subgraphs(g)
    assert snapshot(g) == before
    assert list(flat.nodes) == ["input", "blk.pre", "blk.core.lif", "blk.core.w_rec", "output"]
    assert flat.edges == [("input", "blk.pre"), ("blk.pre", "blk.core.lif"), ("blk.core.lif", "blk.core.w_rec"),
                          ("blk.core.w_rec", "blk.core.lif"), ("blk.core.lif", "output")]
    assert validate(flat) == []


def test_inline_name_collision_gets_a_suffix():
    g = chain(N("input", "Input", shape=(4,)), Node("l", "NIRGraph", subgraph=rnn_sub(4)), N("output", "Output"))
    g.nodes["l.lif"] = lif("l.lif", 4)
    g.edges += [("l", "l.lif"), ("l.lif", "output")]
    flat = inline_subgraphs(g)
    assert "l.lif_1" in flat.nodes and "l.lif" in flat.nodes and flat.nodes["l.lif"].type == "LIF"
    assert validate(flat) == []
    assert ("l.lif_1", "l.lif") in flat.edges  # the subgraph's output feeds the parent's own node


def test_inline_pass_through_subgraph():
    sub = Graph(nodes={"input": N("input", "Input", shape=(4,)), "output": N("output", "Output", shape=(4,))},
                edges=[("input", "output")])
    g = chain(N("input", "Input", shape=(4,)), lif("a", 4), Node("id", "NIRGraph", subgraph=sub), lif("b", 4),
              N("output", "Output"))
    flat = inline_subgraphs(g)
    assert list(flat.nodes) == ["input", "a", "b", "output"]
    assert flat.edges == [("input", "a"), ("a", "b"), ("b", "output")]


def test_inline_keeps_delayed_edges():
    sub = rnn_sub(4)
    sub.delayed_edges = frozenset({("w_rec", "lif")})
    g = chain(N("input", "Input", shape=(4,)), Node("r", "NIRGraph", subgraph=sub), N("output", "Output"))
    assert inline_subgraphs(g).delayed_edges == frozenset({("r.w_rec", "r.lif")})


# ------------------------------------------------------------------------------------------------
# broadcast_params
# ------------------------------------------------------------------------------------------------


def test_broadcast_scalar_params_to_input_shape():
    scal = Node("lif", "LIF", dict(tau=np.array(1e-3), r=np.array([2.0]), v_leak=np.array(0.0),
                                   v_threshold=np.array([[1.5]]), v_reset=np.array(0.0)))
    g = chain(N("input", "Input", shape=(3,)), N("fc", "Linear", weight=np.ones((5, 3))), scal, N("output", "Output"))
    before = snapshot(g)
    b = broadcast_params(g)
    assert snapshot(g) == before
    p = b.nodes["lif"].params
    for k in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        assert p[k].shape == (5,) and p[k].dtype == np.float64, k
    assert np.all(p["r"] == 2.0) and np.all(p["v_threshold"] == 1.5)
    assert validate(b) == []


def test_broadcast_mixed_scalar_and_vector():
    node = lif("lif", 4, tau=np.array(2e-3), v_leak=np.array([0.1]))
    g = chain(N("input", "Input", shape=(4,)), node, N("output", "Output"))
    p = broadcast_params(g).nodes["lif"].params
    assert p["tau"].shape == (4,) and np.all(p["tau"] == 2e-3) and np.all(p["v_leak"] == 0.1)
    # Scale, Delay and Threshold too; multi-dim layers
    g = chain(N("input", "Input", shape=(2, 3)), N("s", "Scale", scale=np.array(0.5)),
              N("d", "Delay", delay=np.array(0.0)), N("t", "Threshold", threshold=np.array([1.0])), N("output", "Output"))
    b = broadcast_params(g)
    assert b.nodes["s"].params["scale"].shape == (2, 3) and b.nodes["t"].params["threshold"].shape == (2, 3)


def test_broadcast_leaves_full_params_alone():
    g = chain(N("input", "Input", shape=(1,)), lif("lif", 1), N("output", "Output"))
    assert snapshot(broadcast_params(g))[0][1][3] == snapshot(infer_shapes(g))[0][1][3]


# ------------------------------------------------------------------------------------------------
# drop_identities
# ------------------------------------------------------------------------------------------------


def test_drop_identities():
    g = chain(
        N("input", "Input", shape=(2, 3)),
        N("flat0", "Flatten", start_dim=1, end_dim=1),  # (2, 3) -> (2, 3): no-op
        N("flat", "Flatten", start_dim=0, end_dim=-1),  # (2, 3) -> (6,): kept
        N("s1", "Scale", scale=np.ones(6)),
        N("d0", "Delay", delay=np.zeros(6)),
        N("eye", "Affine", weight=np.eye(6), bias=np.zeros(6)),
        N("lin", "Linear", weight=np.eye(6)),
        N("s2", "Scale", scale=np.full(6, 2.0)),  # kept
        N("eyeb", "Affine", weight=np.eye(6), bias=np.full(6, 0.1)),  # kept (bias)
        lif("lif", 6),
        N("output", "Output"),
    )
    before = snapshot(g)
    d = drop_identities(g)
    assert snapshot(g) == before
    assert list(d.nodes) == ["input", "flat", "s2", "eyeb", "lif", "output"]
    assert d.edges == [("input", "flat"), ("flat", "s2"), ("s2", "eyeb"), ("eyeb", "lif"), ("lif", "output")]
    assert validate(d) == []


def test_drop_identities_is_conservative():
    # an identity inside a cycle stays (dropping it could change which node holds the loop)
    g = chain(N("input", "Input", shape=(4,)), lif("lif", 4), N("output", "Output"))
    g.nodes["d0"] = N("d0", "Delay", delay=np.zeros(4))
    g.edges += [("lif", "d0"), ("d0", "lif")]
    assert "d0" in drop_identities(g).nodes
    # removing s would double a signal: a -> s -> b and a -> b
    g = chain(N("input", "Input", shape=(4,)), lif("a", 4), N("s", "Scale", scale=np.ones(4)), lif("b", 4),
              N("output", "Output"))
    g.edges.append(("a", "b"))
    assert "s" in drop_identities(g).nodes
    # a non-square Linear, a Scale that broadcasts, and an almost-identity are kept
    g = chain(N("input", "Input", shape=(4,)), N("x", "Affine", weight=np.eye(4) * 1.0000001, bias=np.zeros(4)),
              lif("lif", 4), N("output", "Output"))
    assert "x" in drop_identities(g).nodes


# ------------------------------------------------------------------------------------------------
# topo_sort, recurrent loops, mark_recurrent
# ------------------------------------------------------------------------------------------------


def test_topo_sort_is_canonical_and_deterministic():
    nodes = [N("output", "Output"), lif("b", 4), N("fc", "Linear", weight=np.ones((4, 3))), lif("a", 4),
             N("input", "Input", shape=(3,))]
    g = Graph(nodes={n.name: n for n in nodes},
              edges=[("b", "output"), ("a", "b"), ("fc", "a"), ("input", "fc"), ("fc", "b")])
    t = topo_sort(g)
    assert list(t.nodes) == ["input", "fc", "a", "b", "output"]
    assert t.edges == [("input", "fc"), ("fc", "a"), ("fc", "b"), ("a", "b"), ("b", "output")]
    # ties (two independent branches) broken by the original order
    g2 = chain(N("input", "Input", shape=(3,)), N("x", "Linear", weight=np.ones((4, 3))), lif("z", 4),
               N("output", "Output"))
    g2.nodes["y"] = N("y", "Linear", weight=np.ones((4, 3)))
    g2.edges += [("input", "y"), ("y", "z")]
    assert list(topo_sort(g2).nodes) == ["input", "x", "y", "z", "output"]


def test_mark_recurrent_delays_the_edge_leaving_the_neuron():
    g = chain(N("input", "Input", shape=(3,)), N("fc1", "Linear", weight=np.ones((4, 3))), lif("lif1", 4),
              N("output", "Output"))
    g.nodes["w_rec"] = N("w_rec", "Linear", weight=np.eye(4))
    # list the recurrent edge first: the choice must not depend on edge order
    g.edges = [("w_rec", "lif1"), ("lif1", "w_rec")] + g.edges
    m = mark_recurrent(g)
    assert m.delayed_edges == frozenset({("lif1", "w_rec")})
    assert g.delayed_edges == frozenset()
    assert back_edges(g) == [("lif1", "w_rec")]
    assert back_edges(g, rotate=False) == [("w_rec", "lif1")]  # the DFS back edge itself


def test_self_loop_and_two_loops():
    g = chain(N("input", "Input", shape=(4,)), lif("a", 4), lif("b", 4), N("output", "Output"))
    g.nodes["r"] = N("r", "Linear", weight=np.eye(4))
    g.edges += [("a", "a"), ("b", "r"), ("r", "a")]
    loops = recurrent_loops(g)
    assert sorted(loops) == [["a"], ["a", "b", "r"]]
    # loop a -> b -> r -> a: a -> b is also the forward path (b feeds the output), so the delay
    # goes on b -> r, the edge into the feedback-only part of the loop
    assert mark_recurrent(g).delayed_edges == frozenset({("a", "a"), ("b", "r")})
    n = normalize(g)
    assert n.delayed_edges == frozenset({("a", "a"), ("b", "r")})


def test_recurrent_loops_in_nested_graphs_use_dotted_names():
    g = chain(N("input", "Input", shape=(4,)), Node("rnn", "NIRGraph", subgraph=rnn_sub(4)), N("output", "Output"))
    assert recurrent_loops(g) == [["rnn.lif", "rnn.w_rec"]]
    assert mark_recurrent(g).nodes["rnn"].subgraph.delayed_edges == frozenset({("lif", "w_rec")})
