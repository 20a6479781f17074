"""The real-hardware path: a sinabs model and a samna configuration from an exported folder.

``sinabs_model(OUT)`` rebuilds, from ``OUT/sinabs_model.npz`` and ``OUT/speck_meta.json``, a
torch ``nn.Sequential`` of ``Conv2d`` -> ``sinabs.layers.IAFSqueeze`` (-> ``sinabs.layers.SumPool2d``)
per core with the integer weights and thresholds nirdeploy chose, ready for
``sinabs.backend.dynapcnn.DynapcnnNetwork(model, input_shape, discretize=False)``. It needs torch
and sinabs (``import sinabs`` and ``sinabs.layers`` do not import samna).

``samna_config(OUT)`` builds the samna configuration through ``DynapcnnNetwork.make_config``. That
needs SynSense's real ``samna``: the ``samna`` on the public package index is an installer stub,
detected by reading its ``__init__.py`` (nirdeploy.backend.vendor), never imported. The mapping is
sinabs' automatic one, which equals the report's core assignment (tests/test_speck_sinabs.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nirdeploy.backend.vendor import require_samna, samna_status
from nirdeploy.errors import MissingDependencyError, UnsupportedError

__all__ = ["samna_status", "sinabs_model", "samna_config", "SINABS_INSTALL"]

SINABS_INSTALL = "pip install torch==2.13.0 pbr matplotlib nirtorch==2.6 && pip install --no-deps sinabs==3.1.3"


def _require_sinabs() -> None:
    for mod in ("torch", "sinabs"):
        if importlib.util.find_spec(mod) is None:
            raise MissingDependencyError(mod, SINABS_INSTALL, "needed to build the sinabs model of a Speck deployment")


def sinabs_model(folder, batch_size: int = 1):
    """``(model, input_shape)``: the exported network as an ``nn.Sequential`` of sinabs layers.

    Raises MissingDependencyError without torch/sinabs, UnsupportedError for a branching network
    (sinabs needs an ``sl.Merge`` graph module for those; nirdeploy does not write one yet), and
    UsageError / DeploymentFolderError for a damaged folder."""
    _require_sinabs()
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, MembraneSubtract

    from .target import SpeckTarget

    art = SpeckTarget().load(Path(folder))
    net = art.payload.network
    prev = "__input__"
    mods: list = []
    for l in net.layers:
        if len(l.sources) != 1 or l.sources[0][0] != prev or len(net.destinations(l.name)) > 1:
            raise UnsupportedError("the network branches or merges: sinabs_model builds chains only; build the sinabs graph module by hand "
                                   "from speck_config.json")
        pool = l.sources[0][1]
        if pool > 1:
            mods.append(sl.SumPool2d(kernel_size=(pool, pool), stride=(pool, pool)))
        conv = torch.nn.Conv2d(l.c_in, l.c_out, l.kernel, stride=l.stride, padding=l.padding, bias=l.has_bias)
        conv.weight.data = torch.tensor(l.weight, dtype=torch.float32)
        if l.has_bias:
            conv.bias.data = torch.tensor(l.bias, dtype=torch.float32)
        mods.append(conv)
        mods.append(sl.IAFSqueeze(batch_size=batch_size, spike_threshold=torch.tensor(float(l.threshold_high)),
                                  min_v_mem=float(l.threshold_low), reset_fn=MembraneReset() if l.return_to_zero else MembraneSubtract()))
        prev = l.name
    if net.output_pool > 1:
        mods.append(sl.SumPool2d(kernel_size=(net.output_pool,) * 2, stride=(net.output_pool,) * 2))
    return torch.nn.Sequential(*mods), tuple(net.input_shape)


def samna_config(folder, device: str | None = None):
    """The samna configuration of an exported Speck folder, through sinabs'
    ``DynapcnnNetwork.make_config`` (``discretize=False``: the integers are nirdeploy's).
    ``device`` defaults to the variant's sinabs device string (hw_config ``chip.sinabs_device``).
    Raises MissingDependencyError when the real samna, torch or sinabs is missing."""
    require_samna("needed to build a Speck configuration")
    from nirdeploy.backend.hwconfig import load_hwconfig

    from .target import SpeckTarget

    model, input_shape = sinabs_model(folder)
    variant = SpeckTarget().load(Path(folder)).variant
    from sinabs.backend.dynapcnn import DynapcnnNetwork  # imports samna: only reached with the real one

    dyn = DynapcnnNetwork(model, input_shape=input_shape, discretize=False)
    return dyn.make_config(device=device or load_hwconfig("speck", variant).chip["sinabs_device"])
