"""Random Speck-style NIR graphs (Conv2d -> IF [-> SumPool2d] ... [-> Flatten -> Affine -> IF])."""

from __future__ import annotations

import nir
import numpy as np


def conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def if_node(shape, thr):
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, float(thr)), v_reset=np.zeros(shape))


def chain_graph(specs, in_shape, linear_out=None, seed=0, positive=False, bias=True, thr=None, pool_type="SumPool2d"):
    """``specs``: list of dicts with c_out, k, stride, padding and optional pool. Returns (graph, names)."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges = []
    prev, shape = "input", tuple(in_shape)
    for i, sp in enumerate(specs):
        c_in, h, w = shape
        k, s, p, c_out = sp["k"], sp.get("stride", 1), sp.get("padding", 0), sp["c_out"]
        W = rng.normal(0, 1.0 / np.sqrt(c_in * k * k), (c_out, c_in, k, k)).astype(np.float32)
        if positive:
            W = np.abs(W)
        b = (rng.normal(0, 0.1, c_out) if bias else np.zeros(c_out)).astype(np.float32)
        nodes[f"conv{i}"] = nir.Conv2d(input_shape=(h, w), weight=W, stride=s, padding=p, dilation=1, groups=1, bias=b)
        shape = (c_out, conv_out(h, k, s, p), conv_out(w, k, s, p))
        t = sp.get("thr", thr if thr is not None else float(rng.uniform(0.5, 2.0)))
        if positive:
            t = max(t, float(W.max()) * 1.01)
        nodes[f"if{i}"] = if_node(shape, t)
        edges += [(prev, f"conv{i}"), (f"conv{i}", f"if{i}")]
        prev = f"if{i}"
        pool = sp.get("pool", 1)
        if pool > 1:
            Pool = getattr(nir, sp.get("pool_type", pool_type))
            nodes[f"pool{i}"] = Pool(kernel_size=np.array([pool, pool]), stride=np.array([pool, pool]), padding=np.array([0, 0]))
            edges.append((prev, f"pool{i}"))
            prev = f"pool{i}"
            shape = (shape[0], shape[1] // pool, shape[2] // pool)
    if linear_out:
        n_in = int(np.prod(shape))
        nodes["flat"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        W = rng.normal(0, 1.0 / np.sqrt(n_in), (linear_out, n_in)).astype(np.float32)
        if positive:
            W = np.abs(W)
        nodes["fc"] = nir.Affine(weight=W, bias=(rng.normal(0, 0.1, linear_out) if bias else np.zeros(linear_out)).astype(np.float32))
        t = float(rng.uniform(0.5, 2.0)) if thr is None else thr
        if positive:
            t = max(t, float(W.max()) * 1.01)
        nodes["iffc"] = if_node((linear_out,), t)
        edges += [(prev, "flat"), ("flat", "fc"), ("fc", "iffc")]
        prev, shape = "iffc", (linear_out,)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def random_specs(rng, in_shape, n_layers, max_c=16, pool_prob=0.3, big=False):
    """Random layer specs that keep the map at least 1x1."""
    specs, (c, h, w) = [], in_shape
    for _ in range(n_layers):
        k = int(rng.integers(1, min(h, w, 7) + 1))
        s = int(rng.choice([1, 2])) if min(h, w) > k + 1 else 1
        p = int(rng.integers(0, k // 2 + 1))
        c_out = int(rng.integers(1, (128 if big else max_c) + 1))
        oh, ow = conv_out(h, k, s, p), conv_out(w, k, s, p)
        if oh < 1 or ow < 1:
            k, s, p = 1, 1, 0
            oh, ow = h, w
        sp = {"k": k, "stride": s, "padding": p, "c_out": c_out}
        if rng.random() < pool_prob and min(oh, ow) >= 2:
            sp["pool"] = 2
            oh, ow = oh // 2, ow // 2
        specs.append(sp)
        c, h, w = c_out, oh, ow
    return specs
