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

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeploymentFolderError, DoesNotFitError, NirDeployError, TargetError, UsageError
from .graph.ir import Graph
from .backend.report import FitReport
from .evaluation.compare import compare_outputs
from .backend.target import Artifact, CompileOptions, SimOutput, Target, available_targets, get_target, parse_target_spec
from .inputs import check_callable, check_choice, check_events, check_flag, check_path, load_npy
from .outputs import atomic_folder, check_output_folder, signal_guard

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

# Every public function validates its arguments with the validators of nirdeploy.inputs (the
# CLI's) and raises only NirDeployError subclasses, each listed in its docstring:
#   UsageError             a bad argument or input array (exit code 2)
#   GraphLoadError         the graph file or object cannot be read
#   GraphValidationError   the graph is not a valid NIR graph (all problems listed)
#   UnsupportedError       a valid graph the target or the reference simulator cannot handle
#   TargetError            a target failed to load or broke its contract
#   DoesNotFitError        saving a network that does not fit (exit code 1)
#   DeploymentFolderError  a compiled folder is damaged (names the file and key)
#   OutputError            an output cannot be written (ownership rule, disk full, read-only)
#   MissingDependencyError an optional package is missing


def load_graph(graph_or_path) -> Graph:
    """A validated :class:`~nirdeploy.graph.ir.Graph` from a path, a ``nir.NIRGraph`` or a Graph.

    Raises UsageError (not a path or graph), GraphLoadError, GraphValidationError."""
    from .graph.loading import load

    if isinstance(graph_or_path, (str, bytes, os.PathLike)):
        graph_or_path = check_path(graph_or_path, "graph")
    with signal_guard():
        return load(graph_or_path)


def _check_choice(name: str, value: str, choices) -> str:
    return check_choice(name, value, choices)


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


def _dt_arg(dt):
    from .graph.discretize import validate_dt

    return None if dt is None else validate_dt(dt)


def _input_shape(graph: Graph) -> tuple[int, ...] | None:
    ins = graph.inputs
    if len(ins) == 1 and ins[0].output_shape is not None:
        return tuple(int(s) for s in ins[0].output_shape)
    return None


def _options(graph: Graph, dt, reset, scheme, quantization, calibrate, notices: list[str] | None,
             target: Target | None = None, extra: dict | None = None) -> CompileOptions:
    from .graph.discretize import check_delays, resolve_dt

    check_choice("reset", reset, RESETS)
    check_choice("scheme", scheme, SCHEMES)
    check_choice("quantization", quantization, target.quantizations if target is not None else ("channel", "global"))
    dt, notice = resolve_dt(graph, _dt_arg(dt))
    check_delays(graph, dt)
    if notice and notices is not None:
        notices.append(notice)
    cal = None
    if calibrate is not None:
        if isinstance(calibrate, (str, bytes, os.PathLike)):
            calibrate = load_npy(check_path(calibrate, "calibrate"), what="calibration input")
        cal = check_events(calibrate, _input_shape(graph), what="calibration input")
    return CompileOptions(dt=dt, reset=reset, scheme=scheme, quantization=quantization, calibration=cal, extra=dict(extra or {}))


def inspect(graph_or_path, *, dt: float | None = None, scheme: str = "euler") -> dict:
    """Nodes, shapes, neuron counts, parameter summary, dt candidates and recurrent loops (data);
    with ``dt``, also every neuron's discrete decay factors and input gains.

    Raises UsageError (bad dt or scheme), GraphLoadError, GraphValidationError."""
    from .graph.inspection import inspect_graph

    check_choice("scheme", scheme, SCHEMES)
    dt = _dt_arg(dt)
    return inspect_graph(load_graph(graph_or_path), dt, scheme)


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
    options the target declares (e.g. Speck's ``{"lower_bound": "-threshold"}``).

    ``calibrate``: sample input, an array or a ``.npy`` path, ``(batch, time, *input_shape)``
    event counts. Raises UsageError (bad argument, unknown target, variant or target option, dt
    missing and not inferable), GraphLoadError, GraphValidationError (also a Delay that overflows
    at ``dt``), UnsupportedError, TargetError."""
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices: list[str] = []
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, t, _target_options(t, target_options))
    rep = t.check(graph, variant, opts)
    rep.notes[:0] = notices
    return rep


def check_all(graph_or_path, *, dt: float | None = None, reset: str = "zero", scheme: str = "euler",
              target_options: dict | None = None) -> list[FitReport]:
    """One report per target and variant. Each target gets the ``target_options`` it declares;
    an option no target declares is an error.

    Raises UsageError, GraphLoadError, GraphValidationError, UnsupportedError, TargetError."""
    if target_options is not None and not isinstance(target_options, dict):
        raise UsageError("target_options must be a mapping of option names to values")
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
    #: files this deployment was made from; an output never replaces them or a folder holding them
    inputs: list[str] = field(default_factory=list)

    @property
    def report(self) -> FitReport:
        return self.artifact.report

    @property
    def fits(self) -> bool:
        return self.report.fits

    def simulate(self, x, *, record: bool = False, progress: Callable[[int, int], None] | None = None) -> np.ndarray | SimOutput:
        """Chip simulation. ``x``: (batch, time, *input_shape) event counts (see
        :func:`nirdeploy.inputs.check_events`). Returns the output, or a :class:`SimOutput` with
        states when ``record``.

        Raises UsageError (bad ``x``, ``record`` or ``progress``), UnsupportedError."""
        check_flag("record", record)
        check_callable("progress", progress)
        x = check_events(x, self.artifact.input_shape)
        out = self.target.simulate(self.artifact, x, record=record, progress=progress)
        return out if record else out.output

    def save(self, folder, *, force: bool = False) -> Path:
        """Write the compiled folder (see :mod:`nirdeploy.backend.compiled`): the target's export
        files, report.json, a copy of the graph and deployment.json, atomically.

        ``force`` replaces an existing folder only if it is empty or a nirdeploy deployment
        (:mod:`nirdeploy.outputs`). Raises DoesNotFitError (the CLI exits 1; nothing written),
        UsageError (bad argument), OutputError (the folder may not be replaced, disk full,
        read-only), TargetError (the target's export broke the contract)."""
        from .backend.compiled import GRAPH_FILE, MARKER_FILE, REPORT_FILE, write_marker, write_report

        folder = check_path(folder, "output folder")
        check_flag("force", force)
        if not self.fits:
            raise DoesNotFitError(self.report)
        with atomic_folder(folder, force=force, inputs=self.inputs) as tmp:
            files = self.target.export(self.artifact, tmp)
            if not isinstance(files, (list, tuple)) or not all(isinstance(f, str) for f in files):
                raise TargetError(f"target {self.target.name!r}: export() must return the list of file names it wrote")
            if set(files) & {MARKER_FILE, REPORT_FILE, GRAPH_FILE}:
                raise TargetError(f"target {self.target.name!r}: export() wrote a file name the core owns: {sorted(set(files) & {MARKER_FILE, REPORT_FILE, GRAPH_FILE})}")
            write_report(tmp, self.report)
            files = list(files) + [REPORT_FILE]
            if self._copy_graph(tmp / GRAPH_FILE):
                files.append(GRAPH_FILE)
            write_marker(tmp, self.artifact, files)
            present = {p.name for p in tmp.iterdir()}
            if present != set(files) | {MARKER_FILE}:
                raise TargetError(
                    f"target {self.target.name!r}: export() wrote {sorted(present - set(files) - {MARKER_FILE})} "
                    f"but returned {sorted(set(files) - {REPORT_FILE, GRAPH_FILE})}"
                )
        return Path(folder)

    def _copy_graph(self, dst: Path) -> bool:
        if self.source_path is not None:
            try:
                st = os.stat(self.source_path)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                shutil.copyfile(self.source_path, dst)
                return True
        if self.graph is not None:
            from .graph.loading import write_nir

            try:
                write_nir(self.graph, dst)
                return True
            except Exception as e:  # nir cannot write every graph: the folder works without a copy
                if dst.exists():
                    dst.unlink()
                self.notices.append(f"no copy of the graph was saved ({type(e).__name__}: {str(e)[:200]}); "
                                    "simulate --compare-reference will not work on this folder")
        return False


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
    With ``out``, the deployment folder is written too (atomically; see :meth:`Deployment.save`).
    ``target_options``: see :func:`check`.

    Raises UsageError, GraphLoadError, GraphValidationError, UnsupportedError, TargetError, and
    with ``out``: OutputError (checked before the work starts), DoesNotFitError."""
    check_flag("force", force)
    inputs = [os.fspath(p) for p in (graph_or_path, calibrate) if isinstance(p, (str, os.PathLike))]
    if out is not None:
        out = check_path(out, "out")
        check_output_folder(out, force=force, inputs=inputs)  # fail before the work, not after it
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices: list[str] = []
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, t, _target_options(t, target_options))
    art = t.compile(graph, variant, opts)
    art.report.notes[:0] = notices
    src = os.fspath(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else None
    dep = Deployment(target=t, artifact=art, graph=graph, source_path=src, notices=notices, inputs=inputs)
    if out is not None:
        dep.save(out, force=force)
    return dep


def load_deployment(folder) -> Deployment:
    """Re-open a folder written by ``compile``/``Deployment.save``.

    The core validates ``deployment.json`` first (format version, keys, listed files), the target
    then reads its own files with a schema per file, and the result must agree with the marker
    (:mod:`nirdeploy.backend.compiled`). Raises UsageError (not a path), DeploymentFolderError
    (naming the damaged file and key)."""
    from .backend.compiled import GRAPH_FILE, MARKER_FILE, load_with_target, read_marker

    folder = Path(check_path(folder, "folder"))
    marker = read_marker(folder)
    try:
        t = get_target(marker.target)
    except NirDeployError as e:
        raise DeploymentFolderError(folder / MARKER_FILE, "target", str(e)) from None
    art = load_with_target(t, folder, marker)
    src = str(folder / GRAPH_FILE) if GRAPH_FILE in marker.files else None
    return Deployment(target=t, artifact=art, source_path=src, inputs=[str(folder)])


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
    """Float64 reference simulation of the NIR graph itself. ``x``: (batch, time, *input_shape)
    event counts. Returns the output array, or the full result (``.output``, ``.states``) when
    ``record``.

    Raises UsageError (bad argument or input), GraphLoadError, GraphValidationError (also a
    Delay that overflows at ``dt``), UnsupportedError."""
    from .graph.discretize import check_delays, resolve_dt
    from .sim.reference import simulate_reference as _sim

    check_choice("reset", reset, RESETS)
    check_choice("scheme", scheme, SCHEMES)
    check_flag("record", record)
    check_callable("progress", progress)
    dt = _dt_arg(dt)
    graph = load_graph(graph_or_path)
    x = check_events(x, _input_shape(graph))
    dt, _ = resolve_dt(graph, dt)
    check_delays(graph, dt)
    res = _sim(graph, x, dt, scheme=scheme, reset=reset, record=record, progress=progress)
    return res if record else res.output


# -- arrays and folders (kept for callers of the earlier names) ----------------------------------
MAX_INPUT_ELEMENTS = 500_000_000


def load_input_array(path) -> np.ndarray:
    """A ``.npy`` array read safely (:func:`nirdeploy.inputs.load_npy`)."""
    return load_npy(path)


def check_input_array(x, input_shape: tuple[int, ...]) -> np.ndarray:
    """The event-input validator (:func:`nirdeploy.inputs.check_events`)."""
    return check_events(x, input_shape)
