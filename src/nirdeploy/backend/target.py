"""The target contract and the target registry.

A target is one chip backend behind four calls:

* ``check(graph, variant, options) -> FitReport``: design-rule and resource checks, all
  violations collected;
* ``compile(graph, variant, options) -> Artifact``: the lowered, quantized network plus its report;
* ``simulate(artifact, x, record=False, progress=None) -> SimOutput``: the chip's behaviour
  (bit-accurate for the built-in targets), inputs ``(batch, time, *input_shape)``;
* ``export(artifact, folder) -> list[str]``: the files the vendor stack loads, plus whatever
  ``load(folder)`` needs to rebuild the artifact for ``simulate``; returns their names. Write
  them with :func:`nirdeploy.backend.folder.write_json` / ``write_npz``; the names
  ``deployment.json``, ``report.json`` and ``graph.nir`` belong to the core, and every file in
  the folder must be listed;
* ``load(folder) -> Artifact``: the compiled-folder contract (:mod:`nirdeploy.backend.compiled`).
  The core has already validated ``deployment.json`` (format version, target, variant, shapes,
  latency, settings, files: every listed file is a regular file) when ``load`` is called. Read
  your files only through :mod:`nirdeploy.backend.folder` (``read_json`` with a ``Schema``,
  ``read_npz`` with ``ArraySpec``s: regular files only, size caps, JSON depth, npz sizes before
  decompression), the report with :func:`nirdeploy.backend.compiled.read_report`, and raise
  :class:`~nirdeploy.errors.DeploymentFolderError` naming the file and key for anything else
  wrong (cross-array shapes, ranges). The core checks the returned Artifact against the marker
  and turns any other exception into a DeploymentFolderError, but a precise message is yours.

``quantizations`` lists the values the target accepts for ``CompileOptions.quantization``; the
core refuses others with a UsageError before calling the target.

Targets are found through the entry-point group ``nirdeploy.targets`` (built-in ones too), so a
third-party package registers with one line in its pyproject. ``register_target`` adds one
in-process (tests, notebooks).
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import TargetError, UsageError
from .hwconfig import HWConfig, list_hwconfigs, load_hwconfig
from ..graph.ir import Graph
from .report import FitReport

__all__ = [
    "CompileOptions",
    "Artifact",
    "SimOutput",
    "Target",
    "get_target",
    "available_targets",
    "register_target",
    "parse_target_spec",
    "multi_target",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "nirdeploy.targets"


@dataclass
class CompileOptions:
    """Everything a lowering depends on, recorded in every report."""

    dt: float
    reset: str = "zero"  # "zero" | "subtract"
    scheme: str = "euler"  # "euler" | "exact"
    quantization: str = "channel"  # target-specific: e.g. "channel" | "global"
    calibration: np.ndarray | None = None  # sample input (batch, time, *input_shape) to calibrate on
    extra: dict[str, Any] = field(default_factory=dict)
    sample: np.ndarray | None = None  # sample input that is only measured (fidelity report), never changes the result

    def to_dict(self) -> dict:
        d = {"dt": self.dt, "reset": self.reset, "scheme": self.scheme, "quantization": self.quantization,
             "calibrated": self.calibration is not None}
        if self.sample is not None:
            d["sample"] = list(np.shape(self.sample))
        d.update(self.extra)
        return d


@dataclass
class Artifact:
    target: str
    variant: str
    report: FitReport
    payload: Any  # target-specific compiled network
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    latency_steps: int = 0  # chip output at step t + latency corresponds to reference step t


@dataclass
class SimOutput:
    output: np.ndarray  # (batch, time, *output_shape)
    states: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """Base class for chip backends. Subclasses set ``name`` and ``description``."""

    name: str = ""
    description: str = ""
    #: NIR node types this target can lower (for the README's support table)
    supported_nodes: frozenset[str] = frozenset()
    #: where its hw_config files live (None: the built-in hw_configs package)
    hwconfig_dir: str | Path | None = None
    #: values accepted for CompileOptions.quantization (checked by the core)
    quantizations: tuple[str, ...] = ("channel", "global")

    # -- variants --------------------------------------------------------------------------------
    def variants(self) -> list[str]:
        return list_hwconfigs(self.name, self.hwconfig_dir)

    @property
    def default_variant(self) -> str:
        v = self.variants()
        if not v:
            raise TargetError(f"target {self.name!r} declares no variants")
        return v[0]

    def hwconfig(self, variant: str) -> HWConfig:
        return load_hwconfig(self.name, variant, self.hwconfig_dir)

    def summary(self, variant: str) -> str:
        """One line of main limits for `nirdeploy targets`."""
        hw = self.hwconfig(variant)
        return ", ".join(f"{k}={v}" for k, v in list(hw.limits.items())[:4])

    # -- the contract ----------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self, graph: Graph, variant: str, options: CompileOptions) -> FitReport: ...

    @abc.abstractmethod
    def compile(self, graph: Graph, variant: str, options: CompileOptions) -> Artifact: ...

    @abc.abstractmethod
    def simulate(
        self, artifact: Artifact, x: np.ndarray, *, record: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> SimOutput: ...

    @abc.abstractmethod
    def export(self, artifact: Artifact, folder: Path) -> list[str]: ...

    @abc.abstractmethod
    def load(self, folder: Path) -> Artifact: ...

    # -- optional --------------------------------------------------------------------------------
    def chip_semantics(self, artifact: Artifact):
        """What the compiled network's chip does differently from the NIR graph, as a
        :class:`nirdeploy.sim.reference.ChipSemantics` (spiking rule per layer, effective decays,
        input clipping) for the reference simulator; None when the target does not say."""
        return None

    def chip_model(self, artifact: Artifact, *, weights=None, **options):
        """A differentiable torch module computing what the compiled network computes on the chip
        (a :class:`nirdeploy.torch.chip.ChipModel`; see that module for the contract), or None
        when the target has none. ``weights``: a :class:`nirdeploy.torch.chip.GraphWeights`
        (the graph's trainable weights, quantized by this target's lowering on every change), or
        None to train the artifact's own integers. ``options``: target-specific. Called through
        :func:`nirdeploy.torch.chip_model`; implementations import torch lazily."""
        return None


# -- registry --------------------------------------------------------------------------------------
_EXTRA: dict[str, Callable[[], Target] | type] = {}


def register_target(name: str, factory: Callable[[], Target] | type) -> None:
    """Register a target in this process (entry points are the persistent way).
    Raises UsageError for a name that is not a plain word or a factory that is not callable."""
    if not isinstance(name, str) or not name.strip() or ":" in name or name != name.strip():
        raise UsageError(f"a target name must be a non-empty string without ':' or spaces around it, got {name!r}")
    if not callable(factory):
        raise UsageError(f"the factory of target {name!r} must be a Target class or a function returning a Target")
    _EXTRA[name] = factory
    _clear_caches()


@functools.lru_cache(maxsize=None)
def _entry_points() -> dict[str, Any]:
    eps = metadata.entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    found: dict[str, Any] = {ep.name: ep for ep in group}
    found.update(_EXTRA)
    return found


def available_targets() -> list[str]:
    return sorted(_entry_points())


@functools.lru_cache(maxsize=None)
def _instantiate(name: str) -> Target:
    obj = _entry_points()[name]
    try:
        factory = obj.load() if isinstance(obj, metadata.EntryPoint) else obj
        t = factory()
    except Exception as e:  # a broken plugin must not take the tool down with a traceback
        raise TargetError(f"target {name!r} failed to load: {type(e).__name__}: {e}") from e
    if not isinstance(t, Target):
        raise TargetError(f"target {name!r} does not implement nirdeploy.backend.target.Target")
    if not t.name:
        t.name = name
    return t


def get_target(name: str) -> Target:
    """The target registered as ``name``. Raises UsageError (unknown), TargetError (broken)."""
    if not isinstance(name, str) or name not in _entry_points():
        raise UsageError(f"unknown target {name!r}; available: {', '.join(available_targets()) or 'none'}")
    return _instantiate(name)


def parse_target_spec(spec: str) -> tuple[Target, str]:
    """``"xylo"`` or ``"xylo:audio2"`` -> (target, variant)."""
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"a target is required as a string, e.g. 'xylo:audio2'; got {spec!r}")
    name, _, variant = spec.partition(":")
    t = get_target(name.strip())
    variant = variant.strip() or t.default_variant
    if variant not in t.variants():
        raise UsageError(f"unknown variant {variant!r} for target {t.name!r}; known: {', '.join(t.variants())}")
    return t, variant


def multi_target(spec: str) -> tuple[bool, str | None]:
    """``"all"`` -> (True, None): every target and variant; ``"xylo:all"`` -> (True, "xylo"):
    every variant of one target; anything else -> (False, None)."""
    if spec == "all":
        return True, None
    if isinstance(spec, str) and spec.endswith(":all"):
        return True, get_target(spec[:-4].strip()).name
    return False, None


def _clear_caches() -> None:  # for tests
    _entry_points.cache_clear()
    _instantiate.cache_clear()
