"""The real-hardware path for Loihi 2 (the role ``hardware.py`` has in every target package).

* :func:`process_graph` builds, from a compiled folder, the Lava process graph nirdeploy's
  simulator is proven equal to (one ``LIF`` per layer, one ``Dense`` / ``DelayDense`` per
  synapse, nirdeploy's fixed-point parameters; :func:`nirdeploy_targets.loihi2.lava.build`).
* :func:`run_on_loihi2` runs that graph with ``Loihi2HwCfg``. That needs Lava (``lava-nc``,
  Python 3.10: ``bash scripts/lava_env.sh``) and Intel's closed ``lava-loihi`` extension, which
  Intel gives to members of its Neuromorphic Research Community; without them it raises
  :class:`~nirdeploy.errors.MissingDependencyError` naming what is missing. Not run here: this
  project has no Loihi 2 system. Known difference (lava #829, ../shared/chips/loihi2.md): Lava's
  Loihi 2 ``NcProcessModel`` of LIF may scale parameters differently from the CPU model, so
  compare a hardware run with ``simulate`` before trusting it.
* :func:`netx_file` is the lava-dl netx export (``network.net``) of a folder compiled with
  ``-T loihi_mode=netx``, the format lava-dl's ``netx.hdf5.Network`` loads.

Source of the hardware facts: ../shared/chips/loihi2.md (sections on Lava's run configurations
and the closed extension).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from nirdeploy.errors import MissingDependencyError, UsageError

from .lava import LAVA_INSTALL

__all__ = ["process_graph", "run_on_loihi2", "netx_file", "LAVA_INSTALL", "LAVA_LOIHI_INSTALL"]

LAVA_LOIHI_INSTALL = ("Intel's lava-loihi extension (not on the public package index: Intel distributes it to members of "
                      "the Intel Neuromorphic Research Community, with access to a Loihi 2 system)")


def _require_lava() -> None:
    if importlib.util.find_spec("lava") is None:
        raise MissingDependencyError("Lava (lava-nc)", LAVA_INSTALL, "not installed in this environment; it needs Python 3.10")


def process_graph(folder, x) -> dict:
    """The Lava processes of the compiled folder ``folder`` driven by ``x`` (time, *input_shape)
    binary spikes: ``{"lifs", "denses", "source", "sinks", "monitors", "steps"}`` as
    :func:`nirdeploy_targets.loihi2.lava.build` returns them. Raises MissingDependencyError
    without Lava, DeploymentFolderError for a damaged folder, UsageError for bad input."""
    from .lava import build, load_network

    _require_lava()
    net = load_network(Path(folder))
    x = np.asarray(x)
    if x.ndim < 2 or x.dtype.kind not in "biu" or (x < 0).any() or (x > 1).any():
        raise UsageError(f"x must be (time, *input_shape) binary spikes for Loihi 2, got shape {x.shape} dtype {x.dtype}")
    return build(net, x, record=False, sinks=True)


def run_on_loihi2(folder, x) -> dict[str, np.ndarray]:
    """Run the compiled folder on Loihi 2 hardware for ``len(x)`` steps; returns
    ``{layer name: spikes (time, n) int64}``. Raises MissingDependencyError without Lava or
    without Intel's lava-loihi extension (``Loihi2HwCfg`` needs it)."""
    _require_lava()
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2HwCfg
    except ImportError as e:
        raise MissingDependencyError("Lava's Loihi2HwCfg", LAVA_INSTALL, f"not importable ({e})") from None
    # the Nc (Loihi) compiler is the part of lava-loihi that lava-nc imports under try/except ImportError
    # (lava/magma/compiler/compiler.py, lava-nc 0.10.0): absent from the public package
    if importlib.util.find_spec("lava.magma.compiler.subcompilers.nc") is None:
        raise MissingDependencyError("lava-loihi", LAVA_LOIHI_INSTALL,
                                     "running on Loihi 2 hardware (Loihi2HwCfg) needs Intel's closed extension; on a CPU, "
                                     "`nirdeploy simulate OUT` (or `python -m nirdeploy_targets.loihi2.lava run OUT X.npy Y.npz`) "
                                     "gives the same integer dynamics")
    from .lava import load_network

    names = [layer.name for layer in load_network(Path(folder)).layers]
    g = process_graph(folder, x)
    first = g["lifs"][0]
    first.run(condition=RunSteps(num_steps=g["steps"]), run_cfg=Loihi2HwCfg())
    try:
        return {name: np.asarray(sink.data.get()).T.astype(np.int64) for name, sink in zip(names, g["sinks"])}
    finally:
        first.stop()


def netx_file(folder) -> Path:
    """``folder/network.net``, the lava-dl netx export; UsageError when the folder was not
    compiled with ``-T loihi_mode=netx`` (or netx could not reproduce a layer: the report says why)."""
    p = Path(folder) / "network.net"
    if not p.is_file():
        raise UsageError(f"{folder} has no network.net: compile with -T loihi_mode=netx (the report says when a layer "
                         "cannot be written for netx)")
    return p
