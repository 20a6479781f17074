"""The Python API. It mirrors the CLI one to one: every CLI flag is a keyword here.

>>> import nirdeploy
>>> report = nirdeploy.check("braille.nir", target="xylo:audio2", dt=1e-4)
>>> report.fits, [str(v) for v in report.violations]
>>> dep = nirdeploy.compile("braille.nir", target="xylo:audio2", dt=1e-4, reset="subtract")
>>> y = dep.simulate(x)                 # x: (batch, time, 12) spike counts
>>> dep.save("out/")                    # report.json + vendor export, written atomically
>>> ref = nirdeploy.simulate_reference("braille.nir", x, dt=1e-4)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DoesNotFitError, UsageError
from .graph.ir import Graph
from .backend.report import FitReport
from .evaluation.compare import compare_outputs
from .backend.target import Artifact, CompileOptions, SimOutput, Target, available_targets, get_target, parse_target_spec

__all__ = [
    "load_graph",
    "inspect",
    "check",
    "check_all",
    "compile",
    "Deployment",
    "load_deployment",
    "simulate_reference",
    "compare_outputs",
    "RESETS",
    "SCHEMES",
]

RESETS = ("zero", "subtract")
SCHEMES = ("euler", "exact")
DEPLOYMENT_FILE = "deployment.json"
GRAPH_COPY = "graph.nir"


def load_graph(graph_or_path) -> Graph:
    """A validated :class:`~nirdeploy.graph.ir.Graph` from a path, a ``nir.NIRGraph`` or a Graph."""
    from .graph.loading import load

    return load(graph_or_path)


def _check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _target_options(t: Target, target_options: dict | None) -> dict:
    """Target-specific options (``--target-option KEY=VALUE``): only names the target declares in
    its ``options`` mapping are accepted."""
    if not target_options:
        return {}
    if not isinstance(target_options, dict):
        raise UsageError("target_options must be a mapping of option names to values")
    known = getattr(t, "options", {}) or {}
    bad = sorted(k for k in target_options if k not in known)
    if bad:
        raise UsageError(f"unknown option(s) {', '.join(bad)} for target {t.name!r}; known: {', '.join(sorted(known)) or 'none'}")
    return dict(target_options)


def _options(graph: Graph, dt, reset, scheme, quantization, calibrate, notices: list[str] | None, extra: dict | None = None) -> CompileOptions:
    from .graph.discretize import resolve_dt

    _check_choice("reset", reset, RESETS)
    _check_choice("scheme", scheme, SCHEMES)
    if dt is not None:
        try:
            dt = float(dt)
        except (TypeError, ValueError):
            raise UsageError(f"dt must be a number of seconds, got {dt!r}") from None
    dt, notice = resolve_dt(graph, dt)
    if notice and notices is not None:
        notices.append(notice)
    cal = None
    if calibrate is not None:
        cal = calibrate if isinstance(calibrate, np.ndarray) else load_input_array(calibrate)
    return CompileOptions(dt=dt, reset=reset, scheme=scheme, quantization=quantization, calibration=cal, extra=dict(extra or {}))


def inspect(graph_or_path, *, dt: float | None = None, scheme: str = "euler") -> dict:
    """Nodes, shapes, neuron counts, parameter summary, dt candidates and recurrent loops (data);
    with ``dt``, also every neuron's discrete decay factors and input gains."""
    from .graph.discretize import validate_dt
    from .graph.inspection import inspect_graph

    _check_choice("scheme", scheme, SCHEMES)
    return inspect_graph(load_graph(graph_or_path), None if dt is None else validate_dt(dt), scheme)


def check(
    graph_or_path,
    target: str = "xylo",
    *,
    dt: float | None = None,
    reset: str = "zero",
    scheme: str = "euler",
    quantization: str = "channel",
    calibrate=None,
    target_options: dict | None = None,
) -> FitReport:
    """Fit report of a graph on ``target`` (``"name"`` or ``"name:variant"``). ``target_options``:
    options the target declares (e.g. Speck's ``{"lower_bound": "-threshold"}``)."""
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices: list[str] = []
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, _target_options(t, target_options))
    rep = t.check(graph, variant, opts)
    rep.notes[:0] = notices
    return rep


def check_all(graph_or_path, *, dt: float | None = None, reset: str = "zero", scheme: str = "euler",
              target_options: dict | None = None) -> list[FitReport]:
    """One report per target and variant. Each target gets the ``target_options`` it declares;
    an option no target declares is an error."""
    graph = load_graph(graph_or_path)
    notices: list[str] = []
    opts = _options(graph, dt, reset, scheme, "channel", None, notices)
    targets = [get_target(name) for name in available_targets()]
    unknown = sorted(set(target_options or {}) - {k for t in targets for k in (getattr(t, "options", {}) or {})})
    if unknown:
        raise UsageError(f"unknown target option(s) {', '.join(unknown)}")
    reports = []
    for t in targets:
        mine = {k: v for k, v in (target_options or {}).items() if k in (getattr(t, "options", {}) or {})}
        t_opts = CompileOptions(dt=opts.dt, reset=opts.reset, scheme=opts.scheme, quantization=opts.quantization, extra=mine)
        for v in t.variants():
            rep = t.check(graph, v, t_opts)
            rep.notes[:0] = notices
            reports.append(rep)
    return reports


@dataclass
class Deployment:
    """A compiled network: its report, and the chip simulation of it."""

    target: Target
    artifact: Artifact
    graph: Graph | None = None
    source_path: str | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def report(self) -> FitReport:
        return self.artifact.report

    @property
    def fits(self) -> bool:
        return self.report.fits

    def simulate(self, x, *, record: bool = False, progress: Callable[[int, int], None] | None = None) -> np.ndarray | SimOutput:
        """Chip simulation. ``x``: (batch, time, *input_shape) spike counts. Returns the output
        spikes, or a :class:`SimOutput` with states when ``record``."""
        x = check_input_array(x, self.artifact.input_shape)
        out = self.target.simulate(self.artifact, x, record=record, progress=progress)
        return out if record else out.output

    def save(self, folder, *, force: bool = False) -> Path:
        """Write report.json, the target's export files and deployment.json, atomically.
        A network that does not fit raises :class:`DoesNotFitError` (the CLI exits 1) and
        writes nothing."""
        if not self.fits:
            raise DoesNotFitError(self.report)
        folder = Path(folder)
        with atomic_folder(folder, force=force) as tmp:
            files = self.target.export(self.artifact, tmp)
            (tmp / "report.json").write_text(self.report.to_json())
            if self.source_path is not None:
                shutil.copyfile(self.source_path, tmp / GRAPH_COPY)
            elif self.graph is not None:
                from .graph.loading import write_nir

                write_nir(self.graph, tmp / GRAPH_COPY)
            meta = {
                "nirdeploy_deployment": 1,
                "target": self.artifact.target,
                "variant": self.artifact.variant,
                "input_shape": list(self.artifact.input_shape),
                "output_shape": list(self.artifact.output_shape),
                "latency_steps": self.artifact.latency_steps,
                "settings": self.report.to_dict()["settings"],
                "files": sorted(set(files) | {"report.json", GRAPH_COPY}),
            }
            (tmp / DEPLOYMENT_FILE).write_text(json.dumps(meta, indent=2))
        return folder


def compile(
    graph_or_path,
    target: str = "xylo",
    *,
    dt: float | None = None,
    reset: str = "zero",
    scheme: str = "euler",
    quantization: str = "channel",
    calibrate=None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    target_options: dict | None = None,
) -> Deployment:
    """Lower, discretize and quantize for ``target``; the result carries its fit report.
    With ``out``, the deployment folder is written too (atomically). ``target_options``: see
    :func:`check`."""
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices: list[str] = []
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, _target_options(t, target_options))
    art = t.compile(graph, variant, opts)
    art.report.notes[:0] = notices
    src = str(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else None
    dep = Deployment(target=t, artifact=art, graph=graph, source_path=src, notices=notices)
    if out is not None:
        dep.save(out, force=force)
    return dep


def load_deployment(folder) -> Deployment:
    """Re-open a folder written by ``compile``/``Deployment.save``."""
    folder = Path(folder)
    meta_path = folder / DEPLOYMENT_FILE
    if not meta_path.is_file():
        raise UsageError(f"{folder} is not a compiled nirdeploy folder (no {DEPLOYMENT_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
        t = get_target(meta["target"])
    except (ValueError, KeyError) as e:
        raise UsageError(f"{meta_path} is damaged: {e}") from None
    art = t.load(folder)
    graph_path = folder / GRAPH_COPY
    return Deployment(target=t, artifact=art, source_path=str(graph_path) if graph_path.is_file() else None)


def simulate_reference(
    graph_or_path,
    x,
    *,
    dt: float | None = None,
    reset: str = "zero",
    scheme: str = "euler",
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """Float64 reference simulation of the NIR graph itself. Returns the output array, or the
    full result (``.output``, ``.states``) when ``record``."""
    from .graph.discretize import resolve_dt
    from .sim.reference import simulate_reference as _sim

    graph = load_graph(graph_or_path)
    _check_choice("reset", reset, RESETS)
    _check_choice("scheme", scheme, SCHEMES)
    dt, _ = resolve_dt(graph, None if dt is None else float(dt))
    res = _sim(graph, np.asarray(x), dt, scheme=scheme, reset=reset, record=record, progress=progress)
    return res if record else res.output


# -- arrays and folders ----------------------------------------------------------------------------
MAX_INPUT_ELEMENTS = 500_000_000


def load_input_array(path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file {p} does not exist")
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    except Exception as e:
        raise UsageError(f"{p} is not a readable .npy array: {type(e).__name__}: {e}") from None
    if not isinstance(arr, np.ndarray):
        raise UsageError(f"{p} must hold a single array (.npy), not an archive")
    if arr.size > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{p} is too large ({arr.size} elements)")
    return np.asarray(arr)


def check_input_array(x, input_shape: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"input must be numeric, got dtype {x.dtype}")
    want = tuple(int(s) for s in input_shape)
    if x.ndim != 2 + len(want) or tuple(x.shape[2:]) != want:
        raise UsageError(
            f"input has shape {tuple(x.shape)}; expected (batch, time, {', '.join(map(str, want))})"
        )
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise UsageError("input contains NaN or inf")
        if np.any(x != np.round(x)) or np.any(x < 0):
            raise UsageError("chip input must be non-negative integer spike counts")
        x = x.astype(np.int64)
    elif np.any(x < 0):
        raise UsageError("chip input must be non-negative integer spike counts")
    return x.astype(np.int64, copy=False)


def check_output_folder(folder, force: bool = False) -> None:
    """An output folder may be written: its parent exists, and it does not (or ``force``)."""
    folder = Path(folder)
    if folder.exists() and not force:
        if not folder.is_dir() or any(folder.iterdir()):
            raise UsageError(f"output folder {folder} already exists; use --force to replace it")
    if folder.exists() and force and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder")
    anc = folder.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"cannot create {folder}: {anc} is not a folder")


class atomic_folder:
    """Context manager: yields a temporary folder next to ``folder`` and renames it into place on
    success; on any error the temporary folder is removed and ``folder`` is left as it was."""

    def __init__(self, folder: Path, force: bool = False):
        self.folder = Path(folder)
        self.force = force

    def __enter__(self) -> Path:
        check_output_folder(self.folder, self.force)
        parent = self.folder.parent
        parent.mkdir(parents=True, exist_ok=True)  # only once the work has succeeded
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.tmp-", dir=parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = None
        if self.folder.exists():
            old = self.folder.with_name(f".{self.folder.name}.old-{os.getpid()}")
            os.rename(self.folder, old)
        os.rename(self.tmp, self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
