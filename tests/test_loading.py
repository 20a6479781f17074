"""Loading NIR graphs: the corpus, files written by nir 1.0.4 / 1.0.8, legacy layouts, nir objects."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from bad_inputs import BASE_EDGES, base_nodes, graph, write_file
from nirdeploy.errors import GraphLoadError, GraphValidationError, UsageError
from nirdeploy.graph.ir import Graph, Node
from nirdeploy.graph.loading import DEFAULTED_KEY, defaulted_fields, from_nir, load, read_nir_file, to_nir, write_nir
from nirdeploy.graph.validate import validate

DATA = Path(__file__).parent / "data"
CORPUS_FILES = ["lif_norse.nir", "cnn_sinabs.nir", "braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]
FIXTURES = ["nir104_lif.nir", "nir104_cnn.nir", "nir104_rnn_nested.nir", "nir104_elementwise.nir"]

from conftest import CORPUS


def corpus(name: str) -> Path:
    """A graph of the project's corpus copy (examples/nir-corpus)."""
    return CORPUS / name


def assert_same_graph(a: Graph, b: Graph, *, ordered: bool = False) -> None:
    """Same nodes (types, params, metadata), edges and shapes; node order optional."""
    if ordered:
        assert list(a.nodes) == list(b.nodes)
    assert set(a.nodes) == set(b.nodes)
    assert sorted(a.edges) == sorted(b.edges)
    for name, x in a.nodes.items():
        y = b.nodes[name]
        assert x.type == y.type, name
        assert set(x.params) == set(y.params), (name, set(x.params) ^ set(y.params))
        for k, v in x.params.items():
            w = y.params[k]
            if isinstance(v, np.ndarray):
                assert isinstance(w, np.ndarray) and v.dtype == w.dtype and np.array_equal(v, w), (name, k)
            else:
                assert v == w and type(v) is type(w), (name, k, v, w)
        assert x.input_shape == y.input_shape and x.output_shape == y.output_shape, name
        if x.subgraph is not None:
            assert_same_graph(x.subgraph, y.subgraph, ordered=ordered)


# ------------------------------------------------------------------------------------------------
# corpus
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_loads_from_file_and_validates(name):
    g = load(corpus(name))
    assert validate(g) == []
    assert g.inputs and g.outputs
    for _, n in g.iter_nodes_recursive():
        assert n.input_shape is not None and n.output_shape is not None
        for k, v in n.params.items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float64, (n.name, k)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_via_nir_read_matches_our_reader(name):
    ours = load(corpus(name))
    theirs = load(from_nir(nir.read(str(corpus(name)), type_check=False)))
    assert_same_graph(ours, theirs)
    # the nir object route also goes through load() directly
    assert_same_graph(ours, load(nir.read(str(corpus(name)), type_check=False)))


def test_corpus_versions_and_legacy_defaults():
    assert read_nir_file(corpus("lif_norse.nir")).nir_version == "0.1.1"
    assert read_nir_file(corpus("cnn_sinabs.nir")).nir_version == "0.2.0"
    g = load(corpus("lif_norse.nir"))
    lif = g.nodes["1"]
    assert lif.type == "LIF"
    # written before v_reset existed: filled with zeros and recorded
    assert defaulted_fields(lif) == ["v_reset"]
    assert np.array_equal(lif.params["v_reset"], np.zeros(1))
    assert lif.params["tau"].dtype == np.float64 and lif.params["tau"][0] == pytest.approx(0.0025)
    assert g.nodes["0"].params["weight"].shape == (1, 1)


def test_cnn_sinabs_parameter_kinds():
    g = load(corpus("cnn_sinabs.nir"))
    conv = g.nodes["0"]
    assert conv.params["stride"] == (2, 2) and conv.params["padding"] == (1, 1)
    assert conv.params["dilation"] == (1, 1) and conv.params["groups"] == 1
    assert type(conv.params["groups"]) is int
    assert conv.params["input_shape"] == (34, 34)
    flat = g.nodes["8"]
    assert flat.params["start_dim"] == 0 and flat.params["end_dim"] == -1
    assert flat.params["input_shape"] == (8, 4, 4)
    pool = g.nodes["4"]
    assert pool.params["kernel_size"] == (2, 2) and pool.params["stride"] == (2, 2)


def test_braille_nodes_are_flat_dotted_names():
    g = load(corpus("braille_noDelay_bias_zero.nir"))
    assert {"lif1.lif", "lif1.w_rec"} <= set(g.nodes)
    assert ("lif1.w_rec", "lif1.lif") in g.edges and ("lif1.lif", "lif1.w_rec") in g.edges
    assert g.nodes["lif1.lif"].type == "CubaLIF"
    assert g.nodes["lif1.lif"].output_shape == (38,)
    assert load(corpus("braille_noDelay_noBias_subtract.nir")).nodes["lif1.lif"].output_shape == (40,)


# ------------------------------------------------------------------------------------------------
# files written by other nir versions
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_nir_104_files_load(name):
    g = load(DATA / name)
    assert g.nir_version == "1.0.4"
    assert validate(g) == []


def test_nir_104_details():
    g = load(DATA / "nir104_lif.nir")
    assert defaulted_fields(g.nodes["lif"]) == ["v_reset"]
    assert g.nodes["fc"].output_shape == (4,)
    assert np.array_equal(g.nodes["fc"].params["bias"], np.arange(4.0))
    cnn = load(DATA / "nir104_cnn.nir")
    assert cnn.nodes["conv"].output_shape == (4, 5, 7)
    assert cnn.nodes["pool"].output_shape == (4, 5, 3)
    assert cnn.nodes["flat"].output_shape == (60,)
    rnn = load(DATA / "nir104_rnn_nested.nir")
    sub = rnn.nodes["lif1"]
    assert sub.type == "NIRGraph" and set(sub.subgraph.nodes) == {"input", "lif", "w_rec", "output"}
    assert ("w_rec", "lif") in sub.subgraph.edges
    assert sub.input_shape == (4,) and sub.output_shape == (4,)
    el = load(DATA / "nir104_elementwise.nir")
    assert el.metadata == {"source": "make_fixtures.py"}
    assert np.array_equal(el.nodes["delay"].params["delay"], [1e-3, 2e-3])


def _nir108_graph():
    rng = np.random.default_rng(0)
    sub = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([6])}),
            "li": nir.CubaLI(tau_syn=np.full(6, 1e-3), tau_mem=np.full(6, 2e-3), r=np.ones(6), v_leak=np.zeros(6)),
            "w_rec": nir.Affine(weight=rng.normal(size=(6, 6)), bias=np.zeros(6)),
            "output": nir.Output(output_type={"output": np.array([6])}),
        },
        edges=[("input", "li"), ("li", "w_rec"), ("w_rec", "li"), ("li", "output")],
        type_check=False,
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2, 10])}),
            "conv": nir.Conv1d(input_shape=10, weight=rng.normal(size=(4, 1, 3)), stride=1, padding=1, dilation=1,
                               groups=2, bias=np.zeros(4)),
            "thr": nir.Threshold(threshold=np.ones((4, 10))),
            "flat": nir.Flatten(input_type={"input": np.array([4, 10])}, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=rng.normal(size=(6, 40))),
            "rec": sub,
            "scale": nir.Scale(scale=np.full(6, 0.5)),
            "delay": nir.Delay(delay=np.full(6, 1e-3)),
            "if": nir.IF(r=np.ones(6), v_threshold=np.ones(6), v_reset=np.full(6, -0.5)),
            "output": nir.Output(output_type={"output": np.array([6])}),
        },
        edges=[("input", "conv"), ("conv", "thr"), ("thr", "flat"), ("flat", "fc"), ("fc", "rec"),
               ("rec", "scale"), ("scale", "delay"), ("delay", "if"), ("if", "output")],
        type_check=False,
    )


def test_nir_108_written_file_loads(tmp_path):
    ng = _nir108_graph()
    p = tmp_path / "g108.nir"
    nir.write(str(p), ng)
    g = load(p)
    assert g.nir_version == nir.version
    assert validate(g) == []
    assert_same_graph(g, load(ng))
    assert g.nodes["conv"].params["groups"] == 2 and g.nodes["conv"].params["stride"] == (1,)
    assert g.nodes["conv"].output_shape == (4, 10)
    assert g.nodes["rec"].output_shape == (6,)
    assert defaulted_fields(g.nodes["rec"].subgraph.nodes["li"]) == []  # 1.0.8 writes w_in
    assert np.array_equal(g.nodes["if"].params["v_reset"], np.full(6, -0.5))
    assert defaulted_fields(g.nodes["if"]) == []


def test_legacy_layout_written_by_hand(tmp_path):
    """nir 0.1-style file: no version, a 'Spike' node, Flatten without input_type, CubaLIF without
    w_in / v_reset, Conv2d stride/padding/dilation as scalars, Output stored with output_type group."""
    nodes = {
        "input": {"type": "Input", "shape": np.array([1, 6, 6])},
        "conv": {"type": "Conv2d", "weight": np.ones((2, 1, 3, 3), np.float32), "bias": np.zeros(2, np.float32),
                 "stride": np.int64(1), "padding": np.int64(0), "dilation": np.int64(1), "groups": np.int64(1)},
        "flat": {"type": "Flatten", "start_dim": np.int64(0), "end_dim": np.int64(-1)},
        "fc": {"type": "Linear", "weight": np.ones((3, 32), np.float32)},
        "cuba": {"type": "CubaLIF", "tau_syn": np.full(3, 1e-3), "tau_mem": np.full(3, 1e-3), "r": np.ones(3),
                 "v_leak": np.zeros(3), "v_threshold": np.ones(3)},
        "spk": {"type": "Spike", "threshold": np.ones(3)},
        "output": {"type": "Output", "output_type": {"output": np.array([3])}},
    }
    edges = [("input", "conv"), ("conv", "flat"), ("flat", "fc"), ("fc", "cuba"), ("cuba", "spk"), ("spk", "output")]
    p = write_file(tmp_path / "legacy.nir", graph(nodes, edges), version=None)
    g = load(p)
    assert g.nir_version is None
    assert g.nodes["spk"].type == "Threshold" and g.nodes["spk"].metadata["nirdeploy_legacy_type"] == "Spike"
    assert g.nodes["conv"].params["stride"] == (1, 1) and g.nodes["conv"].params["padding"] == (0, 0)
    assert g.nodes["conv"].output_shape == (2, 4, 4)
    assert "input_shape" not in g.nodes["flat"].params and g.nodes["flat"].output_shape == (32,)
    assert sorted(defaulted_fields(g.nodes["cuba"])) == ["v_reset", "w_in"]
    assert np.array_equal(g.nodes["cuba"].params["w_in"], np.ones(3))
    assert g.nodes["output"].params["shape"] == (3,)


def test_integer_edges_of_nir_00x(tmp_path):
    nodes = {
        "0": {"type": "Input", "shape": np.array([2])},
        "1": {"type": "LI", "tau": np.ones(2), "r": np.ones(2), "v_leak": np.zeros(2)},
        "2": {"type": "Output", "shape": np.array([2])},
    }
    p = tmp_path / "int_edges.nir"
    write_file(p, {"type": "NIRGraph", "nodes": nodes, "edges": np.array([[0, 1], [1, 2]])})
    g = load(p)
    assert g.edges == [("0", "1"), ("1", "2")]


def test_metadata_is_read_and_defaulted_marker_round_trips(tmp_path):
    nodes = base_nodes()
    nodes["lif"].pop("v_reset")
    nodes["lif"]["metadata"] = {"unit": "s", "gain": np.float64(2.5), "nested": {"k": np.arange(3)}}
    p = write_file(tmp_path / "md.nir", graph(nodes, BASE_EDGES))
    g = load(p)
    md = g.nodes["lif"].metadata
    assert md["unit"] == "s" and md["gain"] == 2.5 and np.array_equal(md["nested"]["k"], [0, 1, 2])
    assert md[DEFAULTED_KEY] == "v_reset"
    out = tmp_path / "md2.nir"
    write_nir(g, out)
    assert defaulted_fields(load(out).nodes["lif"]) == ["v_reset"]


# ------------------------------------------------------------------------------------------------
# nir objects and round trips
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_round_trip_through_nir_write(tmp_path, name):
    g = load(corpus(name))
    out = tmp_path / "rt.nir"
    write_nir(g, out)
    g2 = load(out)
    assert g2.nir_version == nir.version
    assert_same_graph(g, g2)
    nir.read(str(out), type_check=False)  # nir itself reads what we write


def test_to_nir_fills_shapes_nir_needs_for_writing(tmp_path):
    """Conv2d without input_shape makes nir.write fail; to_nir fills it from inference."""
    nodes = {
        "input": Node("input", "Input", {"shape": (2, 8, 6)}),
        "conv": Node("conv", "Conv2d", {"weight": np.ones((3, 2, 3, 1)), "bias": np.zeros(3), "stride": (1, 1),
                                        "padding": (0, 0), "dilation": (1, 1), "groups": 1}),
        "flat": Node("flat", "Flatten", {"start_dim": 0, "end_dim": -1}),
        "output": Node("output", "Output", {"shape": (108,)}),
    }
    g = Graph(nodes=nodes, edges=[("input", "conv"), ("conv", "flat"), ("flat", "output")])
    ng = to_nir(g)
    assert tuple(ng.nodes["conv"].input_shape) == (8, 6)
    assert list(ng.nodes["flat"].input_type["input"]) == [3, 6, 6]
    write_nir(g, tmp_path / "c.nir")
    assert load(tmp_path / "c.nir").nodes["conv"].params["input_shape"] == (8, 6)


def test_load_copies_and_never_mutates():
    ng = _nir108_graph()
    w = ng.nodes["fc"].weight.copy()
    g = load(ng)
    g.nodes["fc"].params["weight"][:] = 0
    assert np.array_equal(ng.nodes["fc"].weight, w)
    g2 = load(g)
    assert g2 is not g
    g2.nodes["fc"].params["weight"][:] = 1
    assert np.all(g.nodes["fc"].params["weight"] == 0)


def test_load_rejects_other_objects():
    with pytest.raises(UsageError):
        load(42)
    with pytest.raises(UsageError):
        load(nir.LIF(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1)))


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(GraphLoadError, match="no such file"):
        load(tmp_path / "nope.nir")


def test_nir_graph_with_slash_in_a_name_gives_a_problem():
    ng = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "layer/lif": nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "layer/lif"), ("layer/lif", "output")],
        type_check=False,
    )
    with pytest.raises(GraphValidationError) as info:
        load(ng)
    probs = info.value.problems
    assert any(p.node == "layer/lif" and p.field == "name" and "'/'" in p.message for p in probs)
    g = load(ng, validate=False)
    with pytest.raises(GraphValidationError, match="'/'"):
        write_nir(g, "/tmp/never-written.nir")


def test_nir_graph_with_bad_values_gives_load_error():
    lif = nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))
    lif.tau = np.array(["a", "b"])
    ng = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "li": lif,
            "fc": nir.Linear(weight=np.ones((2, 2)) * 1j),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "li"), ("li", "fc"), ("fc", "output")],
        type_check=False,
    )
    with pytest.raises(GraphLoadError) as info:
        load(ng)
    fields = {(p.node, p.field) for p in info.value.problems}
    assert fields == {("li", "tau"), ("fc", "weight")}
    assert "complex" in str(info.value) and "string" in str(info.value)


def test_unknown_nir_node_class():
    """An in-memory nir node of a class nirdeploy does not know is a load error; one named like a
    recognised non-NIR layer (ir.NON_NIR_TYPES) loads as that layer, so targets can name it."""
    from dataclasses import dataclass

    @dataclass(eq=False)
    class Frobnicate2d(nir.NIRNode):
        kernel_size: np.ndarray

    @dataclass(eq=False)
    class MaxPool2d(nir.NIRNode):
        kernel_size: np.ndarray

    def g(cls):
        return nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                "pool": cls(kernel_size=np.array([2, 2])),
                "output": nir.Output(output_type={"output": np.array([1, 2, 2])}),
            },
            edges=[("input", "pool"), ("pool", "output")],
            type_check=False,
        )

    with pytest.raises(GraphLoadError, match="unknown node type 'Frobnicate2d'"):
        load(g(Frobnicate2d))
    pool = load(g(MaxPool2d)).nodes["pool"]
    assert pool.type == "MaxPool2d" and pool.params["stride"] == (2, 2) and pool.output_shape == (1, 2, 2)


def test_load_problems_are_collected(tmp_path):
    nodes = base_nodes()
    nodes["fc"]["weight"] = "oops"
    del nodes["lif"]["tau"]
    nodes["lif"]["r"] = np.ones(4) * (1 + 2j)
    p = write_file(tmp_path / "multi.nir", graph(nodes, BASE_EDGES))
    with pytest.raises(GraphLoadError) as info:
        read_nir_file(p)
    got = {(q.node, q.field) for q in info.value.problems}
    assert got == {("fc", "weight"), ("lif", "tau"), ("lif", "r")}


def test_limits_are_configurable(tmp_path):
    from nirdeploy.graph.loading import ReadLimits

    p = write_file(tmp_path / "g.nir", graph(base_nodes(), BASE_EDGES))
    with pytest.raises(GraphLoadError, match="limit of 5"):
        read_nir_file(p, limits=ReadLimits(max_array_elements=5))
    with pytest.raises(GraphLoadError, match="in total"):
        read_nir_file(p, limits=ReadLimits(max_total_elements=20))
    with pytest.raises(GraphLoadError, match="more than 3 nodes"):
        read_nir_file(p, limits=ReadLimits(max_nodes=3))


def test_shared_hard_linked_node_is_refused(tmp_path):
    p = write_file(tmp_path / "shared.nir", graph(base_nodes(), BASE_EDGES))
    with h5py.File(p, "a") as f:
        f["node/nodes/lif2"] = f["node/nodes/lif"]
    with pytest.raises(GraphLoadError, match="hard link"):
        load(p)


# ------------------------------------------------------------------------------------------------
# process isolation of the HDF5 parse
# ------------------------------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not __import__("nirdeploy.graph.loading", fromlist=["_can_fork"])._can_fork(),
                                reason="no fork on this platform")


@needs_fork
def test_a_blocked_reader_is_stopped(tmp_path, monkeypatch):
    """A child that neither uses processor time nor reports progress (a deadlock, a read that
    never returns) is stopped after the base budget of wall time."""
    import time

    import nirdeploy.graph.loading as L

    p = write_file(tmp_path / "g.nir", graph(base_nodes(), BASE_EDGES))
    monkeypatch.setattr(L, "_read_file", lambda *a: time.sleep(60))
    with pytest.raises(GraphLoadError, match="did not finish: the reader made no progress for 1 s"):
        read_nir_file(p, timeout=1.0)


@needs_fork
def test_a_spinning_reader_is_stopped_by_processor_time(tmp_path, monkeypatch):
    """A child that spins (the HDF5 library looping on corrupt data) is stopped once its
    processor time exceeds the budget, however long the machine takes to give it that time."""
    import nirdeploy.graph.loading as L

    def spin(*a):
        while True:
            pass

    p = write_file(tmp_path / "g.nir", graph(base_nodes(), BASE_EDGES))
    monkeypatch.setattr(L, "_read_file", spin)
    with pytest.raises(GraphLoadError, match="did not finish within 0.3 s of processor time"):
        read_nir_file(p, timeout=0.3)


def test_read_budget_rules():
    """The budget's rules on observed figures (no clock): processor time, when known, is what
    counts (a loaded machine's wall clock does not), every node read extends the budget, and a
    child without processor time or messages for the base budget is blocked."""
    from nirdeploy.graph.loading import ReadBudget

    b = ReadBudget(4.0, per_node=0.05)
    assert b.limit(0) == 4.0 and b.limit(20_000) == 4.0 + 1000.0 and b.stall_seconds == 4.0
    assert b.verdict(cpu=1.0, wall=10_000.0, idle=0.0, nodes=0) is None  # slow machine, little work
    assert b.verdict(cpu=4.5, wall=4.5, idle=0.0, nodes=0) == "budget"
    assert b.verdict(cpu=4.5, wall=4.5, idle=0.0, nodes=10) is None  # progress extends it
    assert b.verdict(cpu=0.2, wall=30.0, idle=4.5, nodes=3) == "blocked"
    assert b.verdict(cpu=None, wall=4.5, idle=4.5, nodes=0) == "budget"  # no processor time: wall clock
    assert b.verdict(cpu=None, wall=3.0, idle=3.0, nodes=0) is None
    tight = ReadBudget(0.5, per_node=0.05, stall=4.0)  # a small processor budget, the default stall
    assert tight.verdict(cpu=0.1, wall=3.9, idle=3.9, nodes=0) is None
    assert tight.verdict(cpu=0.1, wall=4.1, idle=4.1, nodes=0) == "blocked"


@needs_fork
def test_a_valid_read_is_never_stopped_by_a_slow_wall_clock(tmp_path, monkeypatch):
    """An injected wall clock that runs 100 s per look (a machine under heavy load) while the
    child keeps using processor time: the read completes."""
    import itertools

    import nirdeploy.graph.loading as L

    wall = itertools.count(0.0, 100.0)
    cpu = itertools.count(0.0, 1e-4)
    monkeypatch.setattr(L, "_monotonic", lambda: next(wall))
    monkeypatch.setattr(L, "_child_cpu", lambda pid: next(cpu))
    p = write_file(tmp_path / "g.nir", graph(base_nodes(), BASE_EDGES))
    assert set(read_nir_file(p, timeout=1.0).nodes) == set(base_nodes())


@needs_fork
def test_a_crashing_hdf5_library_is_a_load_error(tmp_path, monkeypatch):
    import os
    import signal

    import nirdeploy.graph.loading as L

    p = write_file(tmp_path / "g.nir", graph(base_nodes(), BASE_EDGES))
    monkeypatch.setattr(L, "_read_file", lambda *a: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(GraphLoadError, match="crashed"):
        read_nir_file(p)


def test_isolated_and_in_process_readers_agree(tmp_path):
    for path in [DATA / f for f in FIXTURES] + [corpus("cnn_sinabs.nir")]:
        assert_same_graph(read_nir_file(path, isolate=True), read_nir_file(path, isolate=False), ordered=True)
    bad = write_file(tmp_path / "bad.nir", graph({**base_nodes(), "x": {"type": "Linear", "weight": "w"}}, BASE_EDGES))
    for iso in (True, False):
        with pytest.raises(GraphLoadError) as info:
            read_nir_file(bad, isolate=iso)
        assert [(q.node, q.field) for q in info.value.problems] == [("x", "weight")]
