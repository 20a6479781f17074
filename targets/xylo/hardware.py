"""The real-hardware path: a samna configuration from an exported specification.

This needs SynSense's real ``samna`` and ``rockpool`` (AGPL-3.0, installed by the user). The
``samna`` on the public package index is an installer stub that, when imported, tries to pip
install the real binary from an outside index; we detect it by READING its ``__init__.py``
(``PYPI_SAMNA = True``) and never import it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from nirdeploy.backend.vendor import SAMNA_INSTALL, require_samna as _require_samna, samna_status  # noqa: F401 (re-exported)
from nirdeploy.errors import MissingDependencyError

__all__ = ["samna_status", "require_samna", "samna_config", "import_rockpool_xylo"]

ROCKPOOL_INSTALL = "pip install rockpool==3.1.0 xylosim==0.1.3"


def require_samna() -> None:
    _require_samna("needed to build a Xylo hardware configuration")


def samna_config(folder, variant: str | None = None):
    """``(config, is_valid, message)`` from Rockpool's ``config_from_specification`` for an
    exported deployment folder. Raises MissingDependencyError when samna or rockpool is absent."""
    require_samna()
    from nirdeploy.backend.hwconfig import load_hwconfig

    folder = Path(folder)
    with np.load(folder / "rockpool_spec.npz", allow_pickle=False) as z:
        spec = {k: z[k] for k in z.files}
    if variant is None:
        import json

        variant = json.loads((folder / "xylo_meta.json").read_text())["variant"]
    hw = load_hwconfig("xylo", variant)
    if importlib.util.find_spec("rockpool") is None:
        raise MissingDependencyError("rockpool", ROCKPOOL_INSTALL, "needed for config_from_specification")
    mod = importlib.import_module(hw.chip["rockpool_module"])
    spec.pop("dt", None)
    # Rockpool's mapper emits `bias`, but config_from_specification reads `bias_hidden`
    # (xylo.md section 5, bug 6): pass it under the name the config builder really uses.
    spec["bias_hidden"] = spec.pop("bias")
    for k in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        spec[k] = int(spec[k])
    return mod.config_from_specification(**spec)


def import_rockpool_xylo(module: str):
    """Import ``rockpool.devices.xylo.<module>`` (e.g. ``"syns61201.xylo_sim"``) without running
    ``rockpool.devices.xylo.__init__``, which imports samna outside its guard (xylo.md section 8):
    the package and its chip sub-packages are registered as empty package modules first. For
    the Rockpool oracle in tests and benchmarks; refuses when the samna installer stub is present,
    since importing rockpool would run it."""
    import sys
    import types

    if samna_status() == "stub":
        raise MissingDependencyError("samna", "pip uninstall samna", "the PyPI installer stub is installed and importing rockpool would run it")
    if importlib.util.find_spec("rockpool") is None:
        raise MissingDependencyError("rockpool", ROCKPOOL_INSTALL, "needed as the Rockpool oracle")
    import rockpool.devices as devices

    base = Path(devices.__file__).parent
    for sub in ("xylo", "xylo/syns61201", "xylo/syns61300", "xylo/syns63300"):
        name = "rockpool.devices." + sub.replace("/", ".")
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [str(base / sub)]
            sys.modules[name] = m
    return importlib.import_module(f"rockpool.devices.xylo.{module}")
