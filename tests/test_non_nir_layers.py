"""Well-known layers NIR 1.0 lacks (ir.NON_NIR_TYPES: MaxPool1d/2d, BatchNorm1d/2d, Dropout),
as a class: real .nir files written with h5py in NIR's layout load with a notice, get shapes and
validation, and are refused with their type's hint by every target (exit 1; `check --target all`
names them on every row), by a third-party target that knows nothing about them, by the reference
simulator (exit 2) and by the NIR writer. Unknown types stay load errors (exit 2)."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy.backend.target import available_targets, get_target, register_target
from nirdeploy.cli import main
from nirdeploy.errors import GraphLoadError, GraphValidationError, UnsupportedError
from nirdeploy.graph.ir import NODE_TYPES, NON_NIR_TYPES
from nirdeploy.graph.loading import load, write_nir

from bad_inputs import base_nodes, graph, insert_node, write_file
from speck_graphs import chain_graph

HINT_WORDS = {"MaxPool2d": "strided convolution", "MaxPool1d": "strided Conv1d", "BatchNorm2d": "fold it into the preceding",
              "BatchNorm1d": "fold it into the preceding", "Dropout": "identity"}


def _cnn(path):
    g = chain_graph([{"k": 3, "c_out": 4, "padding": 1, "pool": 2}, {"k": 3, "c_out": 4}], (2, 16, 16), linear_out=5, seed=0)
    nir.write(str(path), g)
    return path


def _conv1d(path):
    rng = np.random.default_rng(0)
    nodes = {
        "input": {"type": "Input", "shape": np.array([2, 16])},
        "conv": {"type": "Conv1d", "weight": rng.normal(size=(4, 2, 3)), "bias": np.zeros(4), "stride": np.array([1]),
                 "padding": np.array([0]), "dilation": np.array([1]), "groups": np.array(1), "input_shape": np.array([16])},
        "if0": {"type": "IF", "r": np.ones((4, 14)), "v_threshold": np.ones((4, 14)), "v_reset": np.zeros((4, 14))},
        "mp": {"type": "MaxPool1d", "kernel_size": np.array([2])},
        "flat": {"type": "Flatten", "start_dim": np.array(0), "end_dim": np.array(-1), "input_type": np.array([4, 7])},
        "fc": {"type": "Affine", "weight": rng.normal(size=(5, 28)), "bias": np.zeros(5)},
        "if1": {"type": "IF", "r": np.ones(5), "v_threshold": np.ones(5), "v_reset": np.zeros(5)},
        "output": {"type": "Output", "shape": np.array([5])},
    }
    edges = [("input", "conv"), ("conv", "if0"), ("if0", "mp"), ("mp", "flat"), ("flat", "fc"), ("fc", "if1"), ("if1", "output")]
    return write_file(path, graph(nodes, edges))


def _mlp(path):
    return write_file(path, graph(base_nodes(), [("input", "fc"), ("fc", "lif"), ("lif", "output")]))


#: (node type, node name, builder(tmp) -> path): one real file per non-NIR type, in the places
#: these layers take in exported networks
def _files():
    bn = {"type": "BatchNorm2d", "weight": np.full(4, 2.0), "bias": np.zeros(4), "running_mean": np.zeros(4), "running_var": np.ones(4)}
    return [
        ("MaxPool2d", "pool0", lambda p: insert_node(_cnn(p), "pool0", {"type": "MaxPool2d", "kernel_size": np.array([2, 2])}, replace=True)),
        ("MaxPool1d", "mp", _conv1d),
        ("BatchNorm2d", "bn", lambda p: insert_node(_cnn(p), "bn", bn, ("conv0", "if0"))),
        ("BatchNorm1d", "bn", lambda p: insert_node(_mlp(p), "bn", {"type": "BatchNorm1d", "running_mean": np.zeros(4),
                                                                    "running_var": np.ones(4)}, ("fc", "lif"))),
        ("Dropout", "drop", lambda p: insert_node(_mlp(p), "drop", {"type": "Dropout", "p": np.array(0.2)}, ("lif", "output"))),
    ]


FILES = _files()


def test_the_table_covers_the_class_and_stays_out_of_nir():
    assert set(NON_NIR_TYPES) == set(HINT_WORDS) and not set(NON_NIR_TYPES) & set(NODE_TYPES)
    for t, spec in NON_NIR_TYPES.items():
        assert not spec.nir and HINT_WORDS[t] in spec.hint and "NIR 1.0 has no" in spec.hint
    assert all(s.nir for s in NODE_TYPES.values())


@pytest.mark.parametrize("typ,name,build", FILES, ids=[f[0] for f in FILES])
def test_every_target_refuses_it_with_the_hint(typ, name, build, tmp_path):
    """Through the CLI on a real file: exit 1 on every target and variant with the type's hint;
    `check --target all` names it on every row; the reference simulator and compile refuse it."""
    path = build(tmp_path / f"{typ}.nir")
    g = load(path)
    assert g.nodes[name].type == typ and g.nodes[name].output_shape is not None
    hint = NON_NIR_TYPES[typ].hint
    run = CliRunner().invoke
    for target in available_targets():
        for variant in get_target(target).variants():
            r = run(main, ["check", str(path), "--target", f"{target}:{variant}", "--dt", "1", "--json"])
            assert r.exit_code == 1, r.output
            rep = json.loads(r.stdout)
            v = [v for v in rep["violations"] if v["node"] == name]
            assert len(v) == 1 and v[0]["rule"] == "unsupported_node" and v[0]["severity"] == "error", v
            assert hint in v[0]["hint"] and "not a NIR 1.0 primitive" in v[0]["message"]
            assert any("not a NIR 1.0 primitive" in n for n in rep["notes"])
    r = run(main, ["check", str(path), "--target", "all", "--dt", "1", "--json"])
    assert r.exit_code == 1
    reps = json.loads(r.stdout)
    assert {(d["target"], d["variant"]) for d in reps} == {(t, v) for t in available_targets() for v in get_target(t).variants()}
    for d in reps:
        assert d["violations"][0]["node"] == name and hint in d["violations"][0]["hint"]  # the first blocking reason
    r = run(main, ["check", str(path), "--target", "all", "--dt", "1"])
    assert r.exit_code == 1 and r.output.count(f"[unsupported_node] {name} ({typ})") == len(reps), r.output
    r = run(main, ["compile", str(path), "--target", available_targets()[0], "--dt", "1", "-o", str(tmp_path / "out")])
    assert r.exit_code == 1 and not (tmp_path / "out").exists()
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3) + tuple(g.inputs[0].output_shape)))
    r = run(main, ["simulate", str(path), "--reference", "--dt", "1", "-i", str(x), "-o", str(tmp_path / "y.npy")])
    assert r.exit_code == 2 and f"{name} ({typ})" in r.output and hint in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "y.npy").exists()
    r = run(main, ["inspect", str(path)])
    assert r.exit_code == 0 and "notice:" in r.output and "not a NIR 1.0 primitive" in r.output


def test_a_third_party_target_that_does_not_know_them_still_names_them(tmp_path):
    from toy_target import ToyTarget

    class Blind(ToyTarget):  # runs Affine + LIF, and never looks at the other node types
        def check(self, graph, variant, options):
            from nirdeploy.backend.report import FitReport

            return FitReport(self.name, variant, settings=options.to_dict())

    register_target("blind", Blind)
    try:
        path = FILES[4][2](tmp_path / "drop.nir")
        rep = nirdeploy.check(path, target="blind", dt=1e-3)
        assert not rep.fits and rep.violations[0].node == "drop" and rep.violations[0].rule == "unsupported_node"
        assert NON_NIR_TYPES["Dropout"].hint == rep.violations[0].hint
    finally:
        import nirdeploy.backend.target as t

        t._EXTRA.pop("blind", None)
        t._clear_caches()


def test_shapes_follow_pytorch():
    torch = pytest.importorskip("torch")
    from nirdeploy.graph.validate import node_output_shape
    from nirdeploy.graph.ir import Node

    rng = np.random.default_rng(0)
    for _ in range(200):
        nd = int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, nd))
        s = tuple(int(v) for v in rng.integers(1, 4, nd))
        d = tuple(int(v) for v in rng.integers(1, 3, nd))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        cm = int(rng.integers(0, 2))
        size = tuple(int(v) for v in rng.integers(1, 12, nd))
        n = Node("mp", f"MaxPool{nd}d", {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": cm})
        pool = (torch.nn.MaxPool1d if nd == 1 else torch.nn.MaxPool2d)(k, s, p, d, ceil_mode=bool(cm))
        try:
            want = tuple(pool(torch.zeros((3,) + size)).shape)
        except RuntimeError:  # torch: output size too small
            want = None
        try:
            got = node_output_shape(n, (3,) + size)
        except Exception:
            got = None
        assert got == want, (k, s, p, d, cm, size)


@pytest.mark.parametrize("typ,spec,between,words", [
    ("MaxPool2d", {"kernel_size": np.array([0, 2])}, ("if0", "pool0"), "kernel_size must be >= 1"),
    ("MaxPool2d", {"kernel_size": np.array([2, 2]), "padding": np.array([2, 2])}, ("if0", "pool0"), "more than half the kernel"),
    ("MaxPool2d", {}, ("if0", "pool0"), "missing required field 'kernel_size'"),
    ("BatchNorm2d", {"running_var": np.array([1.0, np.nan, 1, 1])}, ("conv0", "if0"), "NaN"),
    ("BatchNorm2d", {"running_mean": np.zeros(3)}, ("conv0", "if0"), "3 entries but the input has 4 channels"),
    ("BatchNorm2d", {"running_var": -np.ones(4)}, ("conv0", "if0"), "running_var must be >= 0"),
    ("BatchNorm2d", {"running_mean": np.zeros((4, 1))}, ("conv0", "if0"), "must be 1-D"),
    ("Dropout", {"p": np.array(1.5)}, ("if0", "pool0"), "probability"),
    ("Frobnicate2d", {}, ("if0", "pool0"), "unknown node type 'Frobnicate2d'"),
])
def test_bad_parameters_and_unknown_types_are_input_errors(typ, spec, between, words, tmp_path):
    path = insert_node(_cnn(tmp_path / "g.nir"), "x", {"type": typ, **spec}, between)
    with pytest.raises((GraphLoadError, GraphValidationError)) as e:
        load(path)
    assert words in str(e.value) and e.value.exit_code == 2
    r = CliRunner().invoke(main, ["check", str(path), "--target", "all", "--dt", "1"])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output


def test_they_never_reach_a_nir_file(tmp_path):
    g = load(FILES[0][2](tmp_path / "mp.nir"))
    with pytest.raises(UnsupportedError, match="pool0 \\(MaxPool2d\\): not a NIR 1.0 primitive"):
        write_nir(g, tmp_path / "copy.nir")
    assert not (tmp_path / "copy.nir").exists()
    assert load(FILES[0][2](tmp_path / "mp2.nir")).nodes["pool0"].params["stride"] == (2, 2)  # PyTorch's default: the kernel
