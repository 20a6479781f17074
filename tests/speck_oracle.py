"""Sinabs as the Speck oracle, without samna (speck.md section 10).

``import sinabs.backend.dynapcnn`` imports samna. Its samna-free submodules (dynapcnn_layer,
mapping, discretize) import once an empty package module stands in for
``sinabs.backend.dynapcnn``. The chip constraints live in ``chips/dynapcnn.py``, whose
``config_builder`` does ``import samna`` at the top; an empty module object stands in for samna
during that one import and is removed right after (the installed samna, if any, is never
imported). Requires sinabs (installed with --no-deps), torch, pbr and matplotlib.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

from conftest import require_oracle


def _package(name: str, path: Path) -> None:
    if name not in sys.modules:
        m = types.ModuleType(name)
        m.__path__ = [str(path)]
        sys.modules[name] = m


def dynapcnn():
    """(dynapcnn_layer module, mapping module, sinabs.layers, speck constraints list, torch)."""
    require_oracle("torch")
    sinabs = require_oracle("sinabs")
    import sinabs.backend as backend

    base = Path(backend.__file__).parent / "dynapcnn"
    _package("sinabs.backend.dynapcnn", base)
    _package("sinabs.backend.dynapcnn.chips", base / "chips")
    layer = importlib.import_module("sinabs.backend.dynapcnn.dynapcnn_layer")
    mapping = importlib.import_module("sinabs.backend.dynapcnn.mapping")
    if "sinabs.backend.dynapcnn.chips.dynapcnn" not in sys.modules:
        had = "samna" in sys.modules
        if not had:
            sys.modules["samna"] = types.ModuleType("samna")
        try:
            importlib.import_module("sinabs.backend.dynapcnn.chips.dynapcnn")
        finally:
            if not had:
                del sys.modules["samna"]
    chips = sys.modules["sinabs.backend.dynapcnn.chips.dynapcnn"]
    constraints = chips.DynapcnnConfigBuilder.get_constraints()
    import sinabs.layers as sl
    import torch

    return layer, mapping, sl, constraints, torch


def sinabs_layers(net, batch: int, *, spikes: str = "multi"):
    """One sinabs DynapcnnLayer per core of a SpeckNetwork, with its integer parameters
    (discretize=False), in evaluation order."""
    layer_mod, _, sl, _, torch = dynapcnn()
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike

    out = []
    for l in net.layers:
        conv = torch.nn.Conv2d(l.c_in, l.c_out, l.kernel, stride=l.stride, padding=l.padding, bias=l.has_bias)
        conv.weight.data = torch.tensor(l.weight, dtype=torch.float32)
        if l.has_bias:
            conv.bias.data = torch.tensor(l.bias, dtype=torch.float32)
        spk = sl.IAFSqueeze(batch_size=batch, spike_threshold=torch.tensor(float(l.threshold_high)), min_v_mem=float(l.threshold_low),
                            spike_fn=MultiSpike if spikes == "multi" else SingleSpike,
                            reset_fn=MembraneReset() if l.return_to_zero else MembraneSubtract())
        pools = [[p, p] for _, p in net.destinations(l.name)] or [[net.output_pool] * 2 if l.name == net.output_layer else [1, 1]]
        out.append(layer_mod.DynapcnnLayer(conv, spk, l.input_shape, pools, discretize=False))
    return out


def sinabs_forward_chain(net, x):
    """Run a chain SpeckNetwork through sinabs layers: x (B, T, C, H, W) counts -> output spikes
    (B, T, C, H, W) of the last layer (pooled per destination inside DynapcnnLayer)."""
    import numpy as np

    _, _, _, _, torch = dynapcnn()
    B, T = x.shape[:2]
    layers = sinabs_layers(net, B)
    h = torch.tensor(np.asarray(x).reshape((B * T,) + tuple(net.input_shape)), dtype=torch.float32)
    with torch.no_grad():
        for dl in layers:
            h = dl(h)
            if isinstance(h, tuple):
                h = h[0]
    return h.numpy().reshape((B, T) + tuple(h.shape[1:]))
