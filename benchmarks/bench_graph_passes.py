"""Benchmark: validation, normalisation and recurrent-loop detection on large graphs.

A chain of N residual diamonds (Linear and Scale in parallel into a LIF, 3 N + 2 nodes), the
shape that makes a path-enumerating pass exponential. Prints the time of N = 1,500 and of a
baseline N = 150 run in this process, and their ratio per diamond (1.0 = linear scaling).
The test suite checks the same property by counting executed lines
(tests/test_validate.py::test_large_graph_work_grows_linearly); this script gives seconds.

    python benchmarks/bench_graph_passes.py            # N = 1500 against 150, best of 3
    python benchmarks/bench_graph_passes.py --n 5000   # larger
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def diamonds(n: int):
    import nir

    from nirdeploy.graph.loading import from_nir

    nodes = {"input": nir.Input(input_type=np.array([8]))}
    edges = []
    prev = "input"
    for i in range(n):
        a, b, j = f"a{i}", f"b{i}", f"j{i}"
        nodes[a] = nir.Linear(weight=np.eye(8) * 0.5)
        nodes[b] = nir.Scale(scale=np.ones(8))
        nodes[j] = nir.LIF(tau=np.full(8, 1e-3), r=np.ones(8), v_leak=np.zeros(8), v_threshold=np.ones(8), v_reset=np.zeros(8))
        edges += [(prev, a), (prev, b), (a, j), (b, j)]
        prev = j
    nodes["output"] = nir.Output(output_type=np.array([8]))
    edges.append((prev, "output"))
    return from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def run_once(g) -> float:
    from nirdeploy.graph.passes import normalize, recurrent_loops
    from nirdeploy.graph.validate import infer_shapes, validate

    t = time.perf_counter()
    g = infer_shapes(g)
    assert validate(g) == []
    out = normalize(g)
    assert recurrent_loops(out) == []
    return time.perf_counter() - t


def best(n: int, repeats: int) -> float:
    g = diamonds(n)
    return min(run_once(g) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--baseline", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    t0 = best(a.baseline, a.repeats)
    t1 = best(a.n, a.repeats)
    print(f"baseline N = {a.baseline}: {t0:.3f} s ({1e3 * t0 / a.baseline:.3f} ms per diamond)")
    print(f"N = {a.n}: {t1:.3f} s ({1e3 * t1 / a.n:.3f} ms per diamond)")
    print(f"ratio per diamond (N = {a.n} / N = {a.baseline}): {(t1 / a.n) / (t0 / a.baseline):.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
