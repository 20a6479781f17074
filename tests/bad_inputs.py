"""Malformed and hostile NIR files, as a table other tests (and the CLI tests) can import.

``CASES`` is a list of ``(case_id, builder, expected_substring)``: ``builder(tmp_path) -> path``
writes one bad file with h5py directly (so the bytes are under our control) and returns its
path; loading it must raise a ``NirDeployError`` subclass (exit code 2) whose message contains
``expected_substring`` (compare case-insensitively), quickly and without allocating what the
file claims.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

__all__ = ["CASES", "write_tree", "base_nodes", "BASE_EDGES", "good_file", "insert_node"]

STR = h5py.string_dtype()


# ------------------------------------------------------------------------------------------------
# writing helpers
# ------------------------------------------------------------------------------------------------


def _edges(edges) -> np.ndarray:
    arr = np.array([[a.encode(), b.encode()] for a, b in edges], dtype=object)
    return arr.reshape(len(edges), 2)


def write_tree(group: h5py.Group, tree: dict) -> None:
    """dict -> group; str -> string dataset; ('edges', list of pairs) -> N x 2 strings; else dataset."""
    for k, v in tree.items():
        if isinstance(v, dict):
            write_tree(group.create_group(k), v)
        elif isinstance(v, str):
            group.create_dataset(k, data=v, dtype=STR)
        elif k == "edges" and isinstance(v, list):
            if v:
                group.create_dataset(k, data=_edges(v), dtype=STR)
            else:
                group.create_dataset(k, data=np.zeros((0,)))
        else:
            group.create_dataset(k, data=v)


def base_nodes(n_in: int = 3, n: int = 4) -> dict:
    """Input(3) -> Affine(4x3) -> LIF(4) -> Output(4), as an HDF5 tree."""
    return {
        "input": {"type": "Input", "shape": np.array([n_in])},
        "fc": {"type": "Affine", "weight": np.ones((n, n_in)), "bias": np.zeros(n)},
        "lif": {
            "type": "LIF",
            "tau": np.full(n, 1e-3),
            "r": np.ones(n),
            "v_leak": np.zeros(n),
            "v_threshold": np.ones(n),
            "v_reset": np.zeros(n),
        },
        "output": {"type": "Output", "shape": np.array([n])},
    }


BASE_EDGES = [("input", "fc"), ("fc", "lif"), ("lif", "output")]


def graph(nodes: dict, edges: list) -> dict:
    return {"type": "NIRGraph", "nodes": nodes, "edges": list(edges)}


def insert_node(path: Path, name: str, spec: dict, between: tuple[str, str] | None = None, replace: bool = False) -> Path:
    """Edit a written .nir file in place with h5py, in NIR's layout: add node ``name`` (``spec``: a
    tree as for :func:`write_tree`, with its ``type``) on the edge ``between`` = (a, b), or with
    ``replace`` put it in place of the existing node ``name`` (same edges)."""
    with h5py.File(path, "a") as f:
        g = f["node"]
        if replace:
            del g["nodes"][name]
        write_tree(g["nodes"].create_group(name), spec)
        if between is not None:
            edges = [(a.decode(), b.decode()) for a, b in g["edges"][()]]
            edges.remove(tuple(between))
            edges += [(between[0], name), (name, between[1])]
            del g["edges"]
            write_tree(g, {"edges": edges})
    return path


def write_file(path: Path, root: dict, version: str | None = "1.0.8") -> Path:
    with h5py.File(path, "w") as f:
        if version is not None:
            f.create_dataset("version", data=version, dtype=STR)
        write_tree(f.create_group("node"), root)
    return path


def good_file(tmp_path: Path, name: str = "good.nir") -> Path:
    return write_file(Path(tmp_path) / name, graph(base_nodes(), BASE_EDGES))


def _with(mutate: Callable[[dict], None], edges=None, name: str = "bad.nir"):
    """A builder: the base graph, changed by ``mutate(nodes)``."""

    def build(tmp_path: Path) -> Path:
        nodes = base_nodes()
        mutate(nodes)
        return write_file(Path(tmp_path) / name, graph(nodes, BASE_EDGES if edges is None else edges))

    return build


# ------------------------------------------------------------------------------------------------
# builders that need more than a mutation
# ------------------------------------------------------------------------------------------------


def truncated(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "truncated.nir"
    with h5py.File(p, "w") as f:
        f.create_dataset("version", data="1.0.8", dtype=STR)
        nodes = base_nodes(3, 4)
        nodes["fc"]["weight"] = np.random.default_rng(0).normal(size=(4, 3))
        write_tree(f.create_group("node"), graph(nodes, BASE_EDGES))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def text_file(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "text.nir"
    p.write_text("this is not a NIR graph\ninput -> lif -> output\n")
    return p


def empty_file(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "empty.nir"
    p.write_bytes(b"")
    return p


def random_bytes(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "random.nir"
    p.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return p


def hdf5_not_nir(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "plain.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.arange(10))
    return p


def huge_claimed_dataset(tmp_path: Path) -> Path:
    """A weight dataset whose header claims 10^12 elements (chunked, never written: tiny file)."""
    p = Path(tmp_path) / "huge.nir"
    with h5py.File(p, "w") as f:
        f.create_dataset("version", data="1.0.8", dtype=STR)
        nodes = base_nodes()
        del nodes["fc"]["weight"]
        write_tree(f.create_group("node"), graph(nodes, BASE_EDGES))
        f["node/nodes/fc"].create_dataset("weight", shape=(1_000_000, 1_000_000), dtype="f8", chunks=(64, 64))
    assert p.stat().st_size < 1_000_000
    return p


def deep_nesting(tmp_path: Path) -> Path:
    """40 levels of NIRGraph inside NIRGraph."""
    p = Path(tmp_path) / "deep.nir"
    inner = graph(base_nodes(), BASE_EDGES)
    for _ in range(40):
        nodes = {
            "input": {"type": "Input", "shape": np.array([3])},
            "sub": inner,
            "output": {"type": "Output", "shape": np.array([4])},
        }
        inner = graph(nodes, [("input", "sub"), ("sub", "output")])
    return write_file(p, inner)


def hardlink_cycle(tmp_path: Path) -> Path:
    """A subgraph node that is a hard link to the root graph: infinite recursion if unchecked."""
    p = Path(tmp_path) / "cycle.nir"
    with h5py.File(p, "w") as f:
        f.create_dataset("version", data="1.0.8", dtype=STR)
        root = f.create_group("node")
        write_tree(root, graph(base_nodes(), BASE_EDGES))
        root["nodes"]["loop"] = root  # hard link: node/nodes/loop is node itself
    return p


def slash_name(tmp_path: Path) -> Path:
    """What nir.write makes of a node named 'layer/fc': nested groups layer -> fc."""
    p = Path(tmp_path) / "slash.nir"
    nodes = base_nodes()
    fc = nodes.pop("fc")
    nodes["layer"] = {"fc": fc}
    edges = [("input", "layer/fc"), ("layer/fc", "lif"), ("lif", "output")]
    return write_file(p, graph(nodes, edges))


def empty_graph(tmp_path: Path) -> Path:
    return write_file(Path(tmp_path) / "emptygraph.nir", graph({}, []))


def edges_wrong_dtype(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "edges_dtype.nir"
    root = graph(base_nodes(), [])
    del root["edges"]
    write_file(p, root)
    with h5py.File(p, "a") as f:
        f["node"].create_dataset("edges", data=np.ones((3, 2), dtype=np.float64))
    return p


def edges_wrong_shape(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "edges_shape.nir"
    root = graph(base_nodes(), [])
    del root["edges"]
    write_file(p, root)
    with h5py.File(p, "a") as f:
        f["node"].create_dataset("edges", data=np.array([[b"input", b"fc", b"lif"]], dtype=object), dtype=STR)
    return p


def nested_subgraph_error(tmp_path: Path) -> Path:
    """The inner LIF of a nested recurrent subgraph has a NaN tau."""
    p = Path(tmp_path) / "nested_err.nir"
    inner = base_nodes(4, 4)
    inner.pop("fc")
    inner["lif"]["tau"] = np.array([1e-3, np.nan, 1e-3, 1e-3])
    inner["w_rec"] = {"type": "Linear", "weight": np.eye(4) * 0.5}
    sub = graph(inner, [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nodes = base_nodes()
    nodes["lif"] = sub
    return write_file(p, graph(nodes, BASE_EDGES))


def external_link(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "extlink.nir"
    other = Path(tmp_path) / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("w", data=np.ones((4, 3)))
    nodes = base_nodes()
    del nodes["fc"]["weight"]
    write_file(p, graph(nodes, BASE_EDGES))
    with h5py.File(p, "a") as f:
        f["node/nodes/fc/weight"] = h5py.ExternalLink(str(other), "/w")
    return p


def null_dataset(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "null.nir"
    nodes = base_nodes()
    del nodes["fc"]["weight"]
    write_file(p, graph(nodes, BASE_EDGES))
    with h5py.File(p, "a") as f:
        f["node/nodes/fc"].create_dataset("weight", data=h5py.Empty("f8"))
    return p


def numeric_type(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "numtype.nir"
    nodes = base_nodes()
    del nodes["lif"]["type"]
    write_file(p, graph(nodes, BASE_EDGES))
    with h5py.File(p, "a") as f:
        f["node/nodes/lif"].create_dataset("type", data=np.array([1.0, 2.0]))
    return p


def node_is_dataset(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "nodeds.nir"
    nodes = base_nodes()
    nodes["lif"] = np.ones(4)
    return write_file(p, graph(nodes, BASE_EDGES))


def _conv_graph(**conv_over) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        conv = {
            "type": "Conv2d",
            "weight": np.ones((4, 2, 3, 3)),
            "bias": np.zeros(4),
            "stride": np.array([1, 1]),
            "padding": np.array([0, 0]),
            "dilation": np.array([1, 1]),
            "groups": np.int64(1),
        }
        for k, v in conv_over.items():
            conv[k] = v
        nodes = {
            "input": {"type": "Input", "shape": np.array([2, 8, 8])},
            "conv": conv,
            "output": {"type": "Output", "shape": np.array([4, 6, 6])},
        }
        return write_file(Path(tmp_path) / "conv.nir", graph(nodes, [("input", "conv"), ("conv", "output")]))

    return build


def _flatten_bad_dims(tmp_path: Path) -> Path:
    nodes = {
        "input": {"type": "Input", "shape": np.array([2, 3, 4])},
        "flat": {"type": "Flatten", "start_dim": np.int64(5), "end_dim": np.int64(-1), "input_type": np.array([2, 3, 4])},
        "output": {"type": "Output", "shape": np.array([24])},
    }
    return write_file(Path(tmp_path) / "flat.nir", graph(nodes, [("input", "flat"), ("flat", "output")]))


def _algebraic_loop(tmp_path: Path) -> Path:
    nodes = base_nodes()
    nodes["a1"] = {"type": "Affine", "weight": np.eye(4), "bias": np.zeros(4)}
    nodes["a2"] = {"type": "Affine", "weight": np.eye(4) * 0.5, "bias": np.zeros(4)}
    edges = [("input", "fc"), ("fc", "a1"), ("a1", "a2"), ("a2", "a1"), ("a1", "lif"), ("lif", "output")]
    return write_file(Path(tmp_path) / "algloop.nir", graph(nodes, edges))


def _version_numeric(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "version.nir"
    write_file(p, graph(base_nodes(), BASE_EDGES), version=None)
    with h5py.File(p, "a") as f:
        f.create_dataset("version", data=np.array([1, 0, 8]))
    return p


def _many_duplicate_edges(tmp_path: Path) -> Path:
    """20000 copies of one edge: the report must stay short."""
    return write_file(Path(tmp_path) / "dups.nir", graph(base_nodes(), BASE_EDGES + [("fc", "lif")] * 20_000))


def _many_problems(tmp_path: Path) -> Path:
    """300 dangling edges: the report lists a few and counts the rest."""
    edges = BASE_EDGES + [("lif", f"ghost{i}") for i in range(300)]
    return write_file(Path(tmp_path) / "many.nir", graph(base_nodes(), edges))


def _many_bad_nodes(tmp_path: Path) -> Path:
    """200 nodes with string weights: the load error lists a few and counts the rest."""
    nodes = base_nodes()
    for i in range(200):
        nodes[f"bad{i}"] = {"type": "Linear", "weight": "w"}
    return write_file(Path(tmp_path) / "manybad.nir", graph(nodes, BASE_EDGES))


def _long_name(tmp_path: Path) -> Path:
    nodes = base_nodes()
    name = "x" * 5000
    nodes[name] = nodes.pop("lif")
    edges = [("input", "fc"), ("fc", name), (name, "output")]
    return write_file(Path(tmp_path) / "longname.nir", graph(nodes, edges))


def _too_many_edges(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "edges_limit.nir"
    root = graph(base_nodes(), [])
    del root["edges"]
    write_file(p, root)
    with h5py.File(p, "a") as f:
        f["node"].create_dataset("edges", shape=(150_000, 2), dtype=STR)  # never written: tiny file
    return p


def hdf5_heap_spin(tmp_path: Path) -> Path:
    """One field changed: the global-heap collection (where variable-length strings live) claims
    twice its size. The HDF5 C library then loops forever reading any string (h5py and nir.read
    hang alike), so the reader must run in a child process with a timeout (~4 s here)."""
    p = good_file(tmp_path, "heap_spin.nir")
    b = bytearray(p.read_bytes())
    i = b.find(b"GCOL")
    assert i > 0
    size = int.from_bytes(b[i + 8 : i + 16], "little")
    b[i + 8 : i + 16] = (2 * size).to_bytes(8, "little")
    p.write_bytes(bytes(b))
    return p


def _non_utf8_name(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "utf8.nir"
    write_file(p, graph(base_nodes(), BASE_EDGES))
    with h5py.File(p, "a") as f:
        g = f["node/nodes"].create_group(b"lif\x9c")
        g.create_dataset("type", data="LIF", dtype=STR)
    return p


def _directory(tmp_path: Path) -> Path:
    p = Path(tmp_path) / "folder.nir"
    os.makedirs(p, exist_ok=True)
    return p


def _set(node: str, key: str, value):
    def m(nodes):
        nodes[node][key] = value

    return m


def _delete(node: str, key: str):
    def m(nodes):
        del nodes[node][key]

    return m


def _add_node(name: str, spec: dict):
    def m(nodes):
        nodes[name] = spec

    return m


_DELAY_EDGES = [("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")]
_CUBA = {
    "type": "CubaLIF",
    "tau_syn": np.full(4, -2e-4),
    "tau_mem": np.full(4, 1e-3),
    "r": np.ones(4),
    "v_leak": np.zeros(4),
    "v_threshold": np.ones(4),
}

# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    # files that are not NIR graphs
    ("truncated_file", truncated, "truncated"),
    ("text_file", text_file, "not an hdf5"),
    ("empty_file", empty_file, "empty"),
    ("random_bytes", random_bytes, "not an hdf5"),
    ("hdf5_without_node_group", hdf5_not_nir, "not a nir file"),
    ("hdf5_library_hang", hdf5_heap_spin, "did not finish"),
    ("directory", _directory, "directory"),
    # missing things
    ("missing_tau", _with(_delete("lif", "tau")), "tau"),
    ("missing_affine_weight", _with(_delete("fc", "weight")), "weight"),
    ("missing_type", _with(_delete("lif", "type")), "no 'type'"),
    ("missing_input_shape", _with(_delete("input", "shape")), "shape"),
    ("empty_graph", empty_graph, "empty graph"),
    ("no_output_node", _with(lambda n: n.pop("output"), edges=BASE_EDGES[:2]), "no output"),
    ("no_input_node", _with(lambda n: n.pop("input"), edges=BASE_EDGES[1:]), "no input"),
    # wrong dtypes / kinds
    ("string_weight", _with(_set("fc", "weight", "0.5 0.5 0.5")), "string"),
    ("complex_weight", _with(_set("fc", "weight", np.ones((4, 3)) * (1 + 1j))), "complex"),
    ("numeric_type_field", numeric_type, "type"),
    ("null_dataspace_weight", null_dataset, "null"),
    ("node_is_a_dataset", node_is_dataset, "group"),
    ("non_integer_stride", _conv_graph(stride=np.array([1.5, 1.0])), "integer"),
    ("bad_padding_string", _conv_graph(padding="full"), "padding"),
    ("version_not_a_string", _version_numeric, "version"),
    ("edges_wrong_dtype", edges_wrong_dtype, "edges"),
    ("edges_wrong_shape", edges_wrong_shape, "edges"),
    # shapes
    ("affine_bias_length", _with(_set("fc", "bias", np.zeros(5))), "bias"),
    ("lif_param_lengths_differ", _with(_set("lif", "r", np.ones(3))), "shapes differ"),
    ("edge_shape_mismatch", _with(_set("input", "shape", np.array([5]))), "mismatch"),
    ("conv_channels_mismatch", _conv_graph(weight=np.ones((4, 3, 3, 3))), "channels"),
    ("conv_kernel_larger_than_input", _conv_graph(weight=np.ones((4, 2, 11, 3))), "does not fit"),
    ("conv_groups_do_not_divide", _conv_graph(groups=np.int64(3), weight=np.ones((4, 1, 3, 3))), "groups"),
    ("flatten_dims_out_of_range", _flatten_bad_dims, "out of range"),
    ("absurd_input_shape", _with(_set("input", "shape", np.array([100000, 100000, 1000]))), "absurd"),
    ("zero_input_dim", _with(_set("input", "shape", np.array([0]))), "dimension < 1"),
    ("fractional_shape", _with(_set("input", "shape", np.array([2.5]))), "integers"),
    ("huge_claimed_dataset", huge_claimed_dataset, "limit"),
    # values
    ("nan_weight", _with(_set("fc", "weight", np.full((4, 3), np.nan))), "nan"),
    ("inf_weight", _with(_set("fc", "weight", np.array([[np.inf, 0, 0]] * 4))), "inf"),
    ("negative_tau", _with(_set("lif", "tau", np.full(4, -1e-3))), "time constant"),
    ("zero_tau", _with(_set("lif", "tau", np.zeros(4))), "time constant"),
    ("negative_tau_syn", _with(_add_node("lif", _CUBA)), "tau_syn"),
    (
        "negative_delay",
        _with(_add_node("delay", {"type": "Delay", "delay": np.full(4, -1.0)}), edges=_DELAY_EDGES),
        "delay must be >= 0",
    ),
    # graph structure
    ("unknown_node_type", _with(_set("lif", "type", "Frobnicate2d")), "unknown node type"),
    ("dangling_edge", _with(lambda n: None, edges=BASE_EDGES + [("lif", "ghost")]), "dangling"),
    ("duplicate_edge", _with(lambda n: None, edges=BASE_EDGES + [("fc", "lif")]), "duplicate"),
    ("many_duplicate_edges", _many_duplicate_edges, "listed 20001 times"),
    ("many_problems", _many_problems, "more problems"),
    ("many_bad_nodes", _many_bad_nodes, "175 more problems"),
    ("long_node_name", _long_name, "too long"),
    ("non_utf8_node_name", _non_utf8_name, "utf-8"),
    ("too_many_edges", _too_many_edges, "edges"),
    ("algebraic_loop", _algebraic_loop, "algebraic loop"),
    ("deep_nesting", deep_nesting, "nesting"),
    ("hardlink_cycle", hardlink_cycle, "hard link"),
    ("slash_in_node_name", slash_name, "'/'"),
    ("external_link", external_link, "external"),
    ("nested_subgraph_error", nested_subgraph_error, "lif.lif"),
]
