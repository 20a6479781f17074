"""Speck against sinabs (the oracle; speck.md section 10): time-binned simulation equals sinabs'
forward; per-layer memory and core assignment equal sinabs' memory_summary and
get_valid_mapping; the quantized integers of cnn_sinabs.nir equal sinabs' discretize."""

from __future__ import annotations

import numpy as np
import pytest

import nirdeploy
from nirdeploy_targets.speck.mapping import assign_cores, candidate_cores, memory
from nirdeploy_targets.speck.sim import simulate_binned

from conftest import CORPUS
from speck_graphs import chain_graph, random_specs
from speck_oracle import dynapcnn, sinabs_forward_chain, sinabs_layers


def _events(rng, B, T, shape, density):
    return (rng.random((B, T) + tuple(shape)) < density).astype(np.int64) * rng.integers(1, 3, (B, T) + tuple(shape))


@pytest.mark.parametrize("seed", range(12))
def test_binned_equals_sinabs_forward_on_random_conv_networks(seed):
    dynapcnn()
    rng = np.random.default_rng(seed)
    side = int(rng.integers(6, 17))
    in_shape = (int(rng.integers(1, 4)), side, side)  # square maps: a Linear's kernel is its whole (square) input map
    specs = random_specs(rng, in_shape, int(rng.integers(1, 4)))
    reset = ["zero", "subtract"][seed % 2]
    lb = ["none", "-threshold"][(seed // 2) % 2]
    g = chain_graph(specs, in_shape, linear_out=int(rng.integers(2, 8)) if seed % 3 else None, seed=seed)
    dep = nirdeploy.compile(g, target="speck:speck2f", dt=1.0, reset=reset, target_options={"lower_bound": lb})
    net = dep.artifact.payload.network
    assert net is not None and dep.fits, dep.report.render()
    x = _events(rng, 3, 25, in_shape, 0.15)
    ours = simulate_binned(net, x).output
    ref = sinabs_forward_chain(net, x)
    assert ours.reshape(ref.shape).tolist() == ref.astype(np.int64).tolist()
    assert ours.sum() > 0 or seed > 6  # most cases spike at all


def test_binned_single_spike_equals_sinabs_single_spike():
    _, _, _, _, torch = dynapcnn()
    rng = np.random.default_rng(5)
    g = chain_graph([{"k": 3, "c_out": 6, "padding": 1, "pool": 2}, {"k": 3, "c_out": 4}], (2, 12, 12), linear_out=5, seed=3)
    dep = nirdeploy.compile(g, target="speck:speck2e", dt=1.0, reset="subtract", target_options={"binned_spikes": "single"})
    net = dep.artifact.payload.network
    x = _events(rng, 2, 30, (2, 12, 12), 0.3)
    ours = simulate_binned(net, x, spikes="single").output
    B, T = x.shape[:2]
    h = torch.tensor(x.reshape((B * T, 2, 12, 12)), dtype=torch.float32)
    with torch.no_grad():
        for dl in sinabs_layers(net, B, spikes="single"):
            h = dl(h)
    assert ours.reshape(-1).tolist() == h.numpy().astype(np.int64).reshape(-1).tolist()
    assert ours.max() <= 1


def _sinabs_cnn(batch):
    """cnn_sinabs.nir through sinabs' own from_nir and DynapcnnLayer(discretize=True): sinabs'
    quantization, independent of ours. The executor is rebuilt as a layer list with scalar
    thresholds, as sinabs' NIR-to-Speck tutorial does."""
    layer_mod, _, sl, _, torch = dynapcnn()
    import nir
    import sinabs

    graph = nir.read(str(CORPUS / "cnn_sinabs.nir"))
    ex = sinabs.from_nir(graph, batch_size=batch)
    mods = [m for m in (ex.get_submodule(n.name) for n in ex.execution_order) if not isinstance(m, torch.nn.Identity)]
    shape = (2, 34, 34)
    out, pending = [], None
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, torch.nn.Flatten):
            i += 1
            continue
        conv, spk = m, mods[i + 1]
        pools = []
        j = i + 2
        while j < len(mods) and isinstance(mods[j], sl.SumPool2d):
            pools.append(int(np.asarray(mods[j].kernel_size).ravel()[0]))
            j += 1
        thr = float(spk.spike_threshold.flatten()[0])
        spk2 = sl.IAFSqueeze(batch_size=batch, spike_threshold=torch.tensor(thr), min_v_mem=-thr)
        p = int(np.prod(pools)) if pools else 1
        dl = layer_mod.DynapcnnLayer(conv, spk2, shape, [[p, p]], discretize=True)
        out.append(dl)
        c, h, w = dl.get_neuron_shape()
        shape = (c, h // p, w // p)
        i = j
    return out


def test_cnn_sinabs_compiles_and_binned_equals_sinabs_with_its_own_quantization():
    _, _, _, _, torch = dynapcnn()
    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0, reset="subtract",
                            target_options={"lower_bound": "-threshold"})
    assert dep.fits
    net = dep.artifact.payload.network
    layers = _sinabs_cnn(batch=2)
    assert len(layers) == len(net.layers) == 5
    for ours, dl in zip(net.layers, layers):
        # sinabs' discretize and ours give the same integers
        assert ours.weight.tolist() == dl.conv_layer.weight.detach().numpy().astype(np.int64).tolist()
        assert ours.threshold_high == int(dl.spk_layer.spike_threshold)
        assert ours.threshold_low == int(dl.spk_layer.min_v_mem)
        assert {k: int(v) for k, v in dl.memory_summary().items()} == {"kernel": memory(ours.c_out, ours.c_in, *ours.kernel,
                                                                                        *ours.neuron_shape[1:], True).kernel,
                                                                      "neuron": memory(ours.c_out, ours.c_in, *ours.kernel,
                                                                                       *ours.neuron_shape[1:], True).neuron,
                                                                      "bias": ours.c_out}
    assert [l.threshold_high for l in net.layers] == [72, 128, 205, 108, 197]  # speck.md section 10
    rng = np.random.default_rng(0)
    for density in (0.02, 0.1):
        x = _events(rng, 2, 40, (2, 34, 34), density)
        ours = simulate_binned(net, x).output
        h = torch.tensor(x.reshape((80, 2, 34, 34)), dtype=torch.float32)
        with torch.no_grad():
            for dl in layers:
                dl.spk_layer.reset_states()  # sinabs layers keep v_mem between calls
                h = dl(h)
        ref = h.numpy().astype(np.int64).reshape(2, 40, 10)
        assert ours.tolist() == ref.tolist()
        assert ref.sum() > 0
    # the report's per-core memory table (speck.md section 1)
    res = {r.name: (r.used, r.limit) for r in dep.report.resources}
    assert [res[f"core {c} kernel memory ({n})"][0] for c, n in enumerate(["1", "3", "6", "10", "12"])] == [1024, 4096, 2048, 32768, 4096]
    assert [res[f"core {c} neuron memory ({n})"][0] for c, n in enumerate(["1", "3", "6", "10", "12"])] == [4096, 4096, 512, 256, 10]


def _stack_layers(rng, n, big):
    """Random layer stacks: (c_in, c_out, k, stride, padding, in_h, in_w, bias) per layer."""
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 17)) if big else int(rng.integers(1, 6))
        h = int(rng.integers(k, 129 if big else 48))
        w = int(rng.integers(k, 129 if big else 48))
        c_in = int(rng.integers(1, 257 if big else 32))
        c_out = int(rng.integers(1, 513 if big else 48))
        s = int(rng.choice([1, 2, 4]))
        p = int(rng.integers(0, min(k, 8)))
        out.append((c_in, c_out, k, s, p, h, w, bool(rng.random() < 0.7)))
    return out


def test_memory_and_mapping_equal_sinabs_on_random_stacks():
    layer_mod, mapping, sl, constraints, torch = dynapcnn()
    from nirdeploy.backend.hwconfig import load_hwconfig

    hw = load_hwconfig("speck", "speck2f")
    lim = hw.limits
    assert [c.kernel_memory for c in constraints] == lim["kernel_memory"]
    assert [c.neuron_memory for c in constraints] == lim["neuron_memory"]
    assert [c.bias_memory for c in constraints] == lim["bias_memory"]
    rng = np.random.default_rng(1)
    n_stacks, mapped, failed = 0, 0, 0
    for i in range(150):
        stack = _stack_layers(rng, int(rng.integers(1, 10)), big=i % 4 == 0)
        dls, cands = {}, []
        for j, (c_in, c_out, k, s, p, h, w, b) in enumerate(stack):
            conv = torch.nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=b, device="meta")  # shapes only: no weight memory
            dl = layer_mod.DynapcnnLayer(conv, sl.IAFSqueeze(batch_size=1), (c_in, h, w), [[1, 1]], discretize=False)
            _, ho, wo = dl.get_neuron_shape()
            mem = memory(c_out, c_in, k, k, ho, wo, b)
            assert {k_: int(v) for k_, v in dl.memory_summary().items()} == mem.to_dict()
            dls[j] = dl
            cands.append(candidate_cores(mem, lim["kernel_memory"], lim["neuron_memory"], lim["bias_memory"]))
        ours = assign_cores(cands, lim["cores"])
        try:
            theirs = mapping.get_valid_mapping(dls, constraints)
        except ValueError as e:
            assert "No valid mapping" in str(e)
            assert not ours.complete
            failed += 1
        else:
            assert ours.complete and ours.assignment == theirs
            mapped += 1
        n_stacks += 1
    assert n_stacks >= 100 and mapped >= 30 and failed >= 10, (mapped, failed)


def test_report_cores_equal_sinabs_mapping_on_random_networks():
    """The whole compile path: per-layer memory and core of the report equal sinabs' on random
    conv networks built as NIR graphs."""
    layer_mod, mapping, sl, constraints, torch = dynapcnn()
    rng = np.random.default_rng(7)
    compared = 0
    failed = 0
    for i in range(30):
        side = int(rng.integers(8, 48))
        in_shape = (int(rng.integers(1, 4)), side, side)
        specs = random_specs(rng, in_shape, int(rng.integers(1, 9)), max_c=48, big=i % 5 == 0)
        g = chain_graph(specs, in_shape, linear_out=10, seed=i)
        rep = nirdeploy.check(g, target="speck:speck2f", dt=1.0)
        nodes = {n.node: n.usage for n in rep.nodes}
        dls = {}
        for j, name in enumerate(nodes):
            u = nodes[name]
            c, h, w = u["input_shape"]
            conv = torch.nn.Conv2d(c, u["neuron_shape"][0], tuple(u["kernel"]), stride=tuple(u["stride"]), padding=tuple(u["padding"]),
                                   bias=u["memory"]["bias"] > 0, device="meta")
            dl = layer_mod.DynapcnnLayer(conv, sl.IAFSqueeze(batch_size=1), (c, h, w), [[1, 1]], discretize=False)
            assert {k: int(v) for k, v in dl.memory_summary().items()} == u["memory"]
            dls[j] = dl
        try:
            theirs = mapping.get_valid_mapping(dls, constraints)
        except ValueError:
            assert any(v.rule in ("core_memory", "core_mapping") for v in rep.errors)
            failed += 1
            continue
        assert [nodes[n].get("core") for n in nodes] == [theirs[j] for j in range(len(nodes))]
        compared += 1
    assert compared >= 10 and failed >= 3, (compared, failed)


def test_exported_sinabs_model_runs_like_the_binned_simulator(tmp_path):
    """hardware.sinabs_model rebuilds the export as sinabs layers; its forward equals ours."""
    _, _, _, _, torch = dynapcnn()
    from nirdeploy_targets.speck import hardware

    dep = nirdeploy.compile(CORPUS / "cnn_sinabs.nir", target="speck:speck2f", dt=1.0)
    dep.save(tmp_path / "o")
    model, in_shape = hardware.sinabs_model(tmp_path / "o", batch_size=2)
    assert in_shape == (2, 34, 34)
    x = _events(np.random.default_rng(2), 2, 30, in_shape, 0.05)
    with torch.no_grad():
        y = model(torch.tensor(x.reshape((60,) + in_shape), dtype=torch.float32))
    ours = dep.target.simulate(dep.artifact, x, mode="binned").output
    assert ours.reshape(-1).tolist() == y.numpy().astype(np.int64).reshape(-1).tolist() and ours.sum() > 0
