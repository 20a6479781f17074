"""The Python API. It mirrors the CLI one to one: every CLI flag is a keyword here.

>>> import nirdeploy
>>> report = nirdeploy.check("braille.nir", target="xylo:audio2", dt=1e-4)
>>> report.fits, [str(v) for v in report.violations]
>>> dep = nirdeploy.compile("braille.nir", target="xylo:audio2", dt=1e-4, reset="subtract")
>>> y = dep.simulate(x)                 # x: (batch, time, 12) spike counts
>>> dep.save("out/")                    # report.json + vendor export, written atomically
>>> ref = nirdeploy.simulate_reference("braille.nir", x, dt=1e-4)
>>> dep.evaluate(x, labels)             # chip and reference accuracy, readout stated
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeploymentFolderError, DoesNotFitError, NirDeployError, TargetError, UsageError
from .graph.ir import Graph, non_nir_notice
from .backend.report import FitReport
from .backend.rules import report_non_nir_nodes
from .evaluation.compare import compare_outputs
from .backend.target import Artifact, CompileOptions, SimOutput, Target, available_targets, get_target, parse_target_spec
from .inputs import check_callable, check_choice, check_events, check_flag, check_options, check_path, load_npy
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
    "compare",
    "from_torch",
    "to_torch",
    "finetune",
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
    target_options = check_options("target_options", target_options)
    if not target_options:
        return {}
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


def _graph_notices(graph: Graph) -> list[str]:
    """Notices about the graph itself: nodes that are not NIR 1.0 primitives (``ir.NON_NIR_TYPES``)."""
    n = non_nir_notice(graph)
    return [n] if n else []


def _options(graph: Graph, dt, reset, scheme, quantization, calibrate, notices: list[str] | None,
             target: Target | None = None, extra: dict | None = None, sample=None) -> CompileOptions:
    from .graph.discretize import check_delays, resolve_dt, resolve_reset

    if reset is not None:
        check_choice("reset", reset, RESETS)
    reset, notice = resolve_reset(graph, reset)  # None: the reset recorded by nirdeploy's exporter, else "zero"
    if notice and notices is not None:
        notices.append(notice)
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
    smp = None
    if sample is not None:
        if isinstance(sample, (str, bytes, os.PathLike)):
            sample = load_npy(check_path(sample, "sample"), what="sample input")
        smp = check_events(sample, _input_shape(graph), what="sample input")
    return CompileOptions(dt=dt, reset=reset, scheme=scheme, quantization=quantization, calibration=cal, extra=dict(extra or {}),
                          sample=smp)


def inspect(graph_or_path, *, dt: float | None = None, scheme: str = "euler") -> dict:
    """Nodes, shapes, neuron counts, parameter summary, dt candidates and recurrent loops (data);
    with ``dt`` (or the dt recorded by nirdeploy's exporter), also every neuron's discrete decay
    factors and input gains.

    Raises UsageError (bad dt or scheme), GraphLoadError, GraphValidationError."""
    from .graph.inspection import inspect_graph
    from .graph.provenance import recorded

    check_choice("scheme", scheme, SCHEMES)
    dt = _dt_arg(dt)
    graph = load_graph(graph_or_path)
    if dt is None:
        dt = recorded(graph).dt  # a graph nirdeploy exported knows its training dt
    return inspect_graph(graph, dt, scheme)


def check(
    graph_or_path,
    target: str = "xylo",
    *,
    dt: float | None = None,
    reset: str | None = None,
    scheme: str = "euler",
    quantization: str = "channel",
    calibrate=None,
    target_options: dict | None = None,
    sample=None,
) -> FitReport:
    """Fit report of a graph on ``target`` (``"name"`` or ``"name:variant"``). ``target_options``:
    options the target declares (e.g. Speck's ``{"lower_bound": "-threshold"}``).

    ``calibrate``: sample input, an array or a ``.npy`` path, ``(batch, time, *input_shape)``
    event counts, to calibrate the quantization on (a guarded search, see
    :mod:`nirdeploy.backend.calibration`); ``sample``: sample input that is only measured (the
    fidelity report: multi-spike share, saturation, predicted agreement with the reference). Raises UsageError (bad argument, unknown target, variant or target option, dt
    missing and not inferable), GraphLoadError, GraphValidationError (also a Delay that overflows
    at ``dt``), UnsupportedError, TargetError."""
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices = _graph_notices(graph)
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, t, _target_options(t, target_options), sample)
    rep = t.check(graph, variant, opts)
    report_non_nir_nodes(rep, graph)
    rep.notes[:0] = notices
    return rep


def check_all(graph_or_path, *, dt: float | None = None, reset: str | None = None, scheme: str = "euler",
              target_options: dict | None = None, target: str | None = None) -> list[FitReport]:
    """One report per target and variant (``target="xylo"``: every variant of that target only).
    Each target gets the ``target_options`` it declares; an option no target declares is an error.

    Raises UsageError, GraphLoadError, GraphValidationError, UnsupportedError, TargetError."""
    target_options = check_options("target_options", target_options)
    graph = load_graph(graph_or_path)
    notices = _graph_notices(graph)
    opts = _options(graph, dt, reset, scheme, "channel", None, notices)
    targets = [get_target(name) for name in ([target] if target is not None else available_targets())]
    unknown = sorted(set(target_options or {}) - {k for t in targets for k in (getattr(t, "options", {}) or {})})
    if unknown:
        raise UsageError(f"unknown target option(s) {', '.join(unknown)}")
    reports = []
    for t in targets:
        mine = {k: v for k, v in (target_options or {}).items() if k in (getattr(t, "options", {}) or {})}
        t_opts = CompileOptions(dt=opts.dt, reset=opts.reset, scheme=opts.scheme, quantization=opts.quantization, extra=mine)
        for v in t.variants():
            rep = t.check(graph, v, t_opts)
            report_non_nir_nodes(rep, graph)
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

    @property
    def readout(self) -> str:
        """How a decision is read from the outputs: ``"spikes"`` or ``"vmem"`` (the report says)."""
        r = str(self.report.details.get("readout", "spikes"))
        return "vmem" if r == "v" else r  # in memory; a folder's "v" (older Loihi 2 compiles) is mapped on load

    def source_graph(self) -> Graph:
        """The NIR graph this deployment was compiled from (the copy in its folder after loading).
        Raises UsageError when the deployment holds no copy of its graph."""
        if self.graph is not None:
            return self.graph
        if self.source_path is None:
            raise UsageError("this deployment holds no copy of its graph; cannot run the reference")
        self.graph = load_graph(self.source_path)
        return self.graph

    def chip_semantics(self):
        """The target's :class:`~nirdeploy.sim.reference.ChipSemantics` for this network (its
        spiking rule, effective decays, state range, input clipping), or None."""
        return self.target.chip_semantics(self.artifact)

    def simulate_reference(self, x, *, chip_semantics: bool = False, spikes_per_step: int | None = None) -> np.ndarray:
        """Float reference of the source graph with this deployment's dt, reset and scheme, on
        ``x`` (batch, time, *input_shape). ``chip_semantics=True``: with the chip's semantics
        (:meth:`chip_semantics`; subtractive reset). Returns (batch, time, *output_shape).

        Raises UsageError (bad input, no graph copy, a target without chip semantics)."""
        from .graph.discretize import resolve_spike_rule
        from .sim.reference import simulate_reference as _sim

        check_flag("chip_semantics", chip_semantics)
        s = self.report.settings
        sem = self.chip_semantics() if chip_semantics else None
        if chip_semantics and sem is None:
            raise UsageError(f"target {self.artifact.target!r} does not describe its chip semantics")
        reset = "subtract" if (sem is not None or spikes_per_step is not None) else s.get("reset", "zero")
        x = check_events(x, self.artifact.input_shape)
        g = self.source_graph()
        if sem is None:  # the rule the graph records (Sinabs' MultiSpike), as simulate_reference applies it
            spikes_per_step, _ = resolve_spike_rule(g, spikes_per_step, reset)
        return _sim(g, x, s["dt"], scheme=s.get("scheme", "euler"), reset=reset,
                    spikes_per_step=spikes_per_step, chip=sem).output

    def evaluate(self, x, labels=None, *, reference: bool = True) -> dict:
        """Chip and reference on ``x`` (batch, time, *input_shape): readout agreement and, with
        ``labels`` (batch,) integer classes, accuracy. The readout is stated (``"spikes"``:
        spike-count argmax; ``"vmem"``: maximum Vmem) and the chip is read ``latency_steps`` later
        than the reference. Keys: ``readout``, ``latency_steps``, ``samples``, ``chip`` (with
        labels), and with ``reference``: ``agreement`` (chip vs reference decisions, silent samples
        counted), ``reference``, ``reference_chip_semantics`` and ``agreement_chip_semantics``
        (when the target describes its semantics).

        Raises UsageError (bad input or labels, no graph copy)."""
        from .evaluation.compare import accuracy, readout_agreement

        check_flag("reference", reference)
        x = check_events(x, self.artifact.input_shape)
        T, L = x.shape[1], min(int(self.artifact.latency_steps), x.shape[1])
        if L >= T:
            raise UsageError(f"the input needs more than {L} time steps (the chip's latency); it has {T}")
        chip = self.simulate(x)
        out: dict = {"readout": self.readout, "latency_steps": L, "samples": int(x.shape[0])}

        def acc(y, a, b):
            return accuracy(y, labels, self.readout, a, b)

        if labels is not None:
            out["chip"] = acc(chip, L, T)
        if reference:
            ref = self.simulate_reference(x)
            ag = readout_agreement(chip, ref, L, self.readout)
            out["agreement"] = {k: v for k, v in ag.items() if k not in ("chip_decisions", "reference_decisions")}
            if labels is not None:
                out["reference"] = acc(ref, 0, T - L)
            if self.chip_semantics() is not None:
                refc = self.simulate_reference(x, chip_semantics=True)
                if labels is not None:
                    out["reference_chip_semantics"] = acc(refc, 0, T - L)
                out["agreement_chip_semantics"] = readout_agreement(chip, refc, L, self.readout)["decision_agreement"]
        return out

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
    reset: str | None = None,
    scheme: str = "euler",
    quantization: str = "channel",
    calibrate=None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    target_options: dict | None = None,
    sample=None,
) -> Deployment:
    """Lower, discretize and quantize for ``target``; the result carries its fit report.
    With ``out``, the deployment folder is written too (atomically; see :meth:`Deployment.save`).
    ``target_options``, ``calibrate`` and ``sample``: see :func:`check`.

    Raises UsageError, GraphLoadError, GraphValidationError, UnsupportedError, TargetError, and
    with ``out``: OutputError (checked before the work starts), DoesNotFitError."""
    check_flag("force", force)
    inputs = [os.fspath(p) for p in (graph_or_path, calibrate, sample) if isinstance(p, (str, os.PathLike))]
    if out is not None:
        out = check_path(out, "out")
        check_output_folder(out, force=force, inputs=inputs)  # fail before the work, not after it
    graph = load_graph(graph_or_path)
    t, variant = parse_target_spec(target)
    notices = _graph_notices(graph)
    opts = _options(graph, dt, reset, scheme, quantization, calibrate, notices, t, _target_options(t, target_options), sample)
    art = t.compile(graph, variant, opts)
    report_non_nir_nodes(art.report, graph)
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
    reset: str | None = None,
    scheme: str = "euler",
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
    spikes_per_step: int | None = None,
    full: bool = False,
):
    """Float64 reference simulation of the NIR graph itself. ``x``: (batch, time, *input_shape)
    event counts. Returns the output array, or the full result (``.output``, ``.states``,
    ``.notes`` such as divergence and the dt/reset notices, ``.reset``) when ``record`` (states
    recorded) or ``full`` (no states).

    ``reset`` None: the reset recorded in the graph, else ``"zero"`` (``"subtract"`` with
    ``spikes_per_step``). ``spikes_per_step=N``: the chip spiking rule, floor(v / threshold)
    spikes per step, at most N, subtractive reset. None: the rule recorded in the graph (a graph
    exported from Sinabs' MultiSpike runs with floor(v / threshold) spikes per step, uncapped,
    with a notice), else one spike per step.

    Raises UsageError (bad argument or input, ``reset="zero"`` with ``spikes_per_step``),
    GraphLoadError, GraphValidationError (also a Delay that overflows at ``dt``),
    UnsupportedError."""
    from .graph.discretize import check_delays, resolve_dt, resolve_reset, resolve_spike_rule
    from .sim.reference import simulate_reference as _sim

    check_choice("scheme", scheme, SCHEMES)
    check_flag("record", record)
    check_flag("full", full)
    check_callable("progress", progress)
    dt = _dt_arg(dt)
    graph = load_graph(graph_or_path)
    if reset is not None:
        check_choice("reset", reset, RESETS)
    notices = []
    if spikes_per_step is None or reset is not None:
        reset, r_notice = resolve_reset(graph, reset)
        notices += [r_notice] if r_notice else []
    spikes_per_step, rule_notice = resolve_spike_rule(graph, spikes_per_step, reset)
    notices += [rule_notice] if rule_notice else []
    x = check_events(x, _input_shape(graph))
    dt, dt_notice = resolve_dt(graph, dt)
    notices[:0] = [dt_notice] if dt_notice else []
    check_delays(graph, dt)
    res = _sim(graph, x, dt, scheme=scheme, reset=reset, record=record, progress=progress, spikes_per_step=spikes_per_step)
    res.notes = [n for n in res.notes if n not in notices]  # the recorded spike rule's notice is said once
    res.notices = notices  # what the caller should say (dt inferred, reset recorded); res.notes: what happened
    return res if (record or full) else res.output


# -- arrays and folders (kept for callers of the earlier names) ----------------------------------
MAX_INPUT_ELEMENTS = 500_000_000


def load_input_array(path) -> np.ndarray:
    """A ``.npy`` array read safely (:func:`nirdeploy.inputs.load_npy`)."""
    return load_npy(path)


def check_input_array(x, input_shape: tuple[int, ...]) -> np.ndarray:
    """The event-input validator (:func:`nirdeploy.inputs.check_events`)."""
    return check_events(x, input_shape)


# -- torch frontends and the multi-way comparison (torch imported only when called) -------------
COMPARE_LIBRARIES = ("snntorch", "norse", "sinabs")


def from_torch(model, sample, *, library: str, dt: float | None = None, strict: bool = True,
               fold_batchnorm: bool = False, path=None, force: bool = False) -> Graph:
    """A trained snnTorch / Norse / Sinabs model as a Graph that reproduces it; needs the
    ``[torch]`` extra. With ``path`` the graph is also written there: a new file, or with
    ``force`` an existing regular file. See :func:`nirdeploy.frontends.from_torch`.

    Raises UsageError (a bad argument: library, model, sample, dt, flags, path), UnsupportedError,
    ExportMismatchError (``strict``), OutputError (``path`` exists without ``force``, or cannot be
    written), MissingDependencyError."""
    from .frontends import from_torch as _from_torch

    return _from_torch(model, sample, library=library, dt=dt, strict=strict, fold_batchnorm=fold_batchnorm, path=path, force=force)


def to_torch(graph_or_path, *, library: str | None = None, dt: float | None = None, reset: str | None = None,
             scheme: str = "euler", dtype=None):
    """``graph`` as a runnable torch module: nirdeploy's reference semantics (no library), or a
    snnTorch / Norse / Sinabs model with dt, reset and r handled; needs the ``[torch]`` extra.

    Raises UsageError (a bad argument), GraphLoadError, GraphValidationError, UnsupportedError,
    MissingDependencyError."""
    from .frontends import to_torch as _to_torch

    return _to_torch(graph_or_path, library=library, dt=dt, reset=reset, scheme=scheme, dtype=dtype)


def finetune(graph_or_path, target: str | None = "xylo", x_train=None, y_train=None, **kwargs):
    """Chip-aware fine-tuning of a graph's weights on labelled event data: trains the target's chip
    model (``mode="chip"``, default) or the float reference semantics (``mode="float"``) and
    returns a :class:`nirdeploy.torch.finetune.FinetuneResult` (the new graph, its compiled
    deployment, accuracy before and after, per-epoch history); needs the ``[torch]`` extra.
    Keywords and errors: :func:`nirdeploy.torch.finetune.finetune`."""
    import inspect as _inspect

    from .torch.finetune import finetune as _finetune

    try:
        _inspect.signature(_finetune).bind(graph_or_path, target, x_train, y_train, **kwargs)
    except TypeError as e:
        raise UsageError(f"finetune: {e}") from None
    return _finetune(graph_or_path, target, x_train, y_train, **kwargs)


def compare(graph_or_path, x, *, runs=("reference",), dt: float | None = None, reset: str | None = None,
            scheme: str = "euler", labels=None, min_agreement: float | None = None) -> dict:
    """Run one graph several ways on ``x`` (batch, time, *input_shape) and compare each run
    with the reference. ``runs``: ``"reference"``, ``"torch"`` (nirdeploy's torch module),
    ``"snntorch"`` / ``"norse"`` / ``"sinabs"`` (nirdeploy's dt-aware conversion into the
    library), ``"snntorch:native"`` / ``"norse:native"`` / ``"sinabs:native"`` (the library's own
    importer with its defaults, what a naive trip gives), or a compiled folder. A row is
    flagged (``row["flag"]``) when its run failed or its spike agreement is below
    ``min_agreement`` (a fraction in [0, 1]; default 0.99, and then ``"below_min"`` is False: the
    comparison is a report). Returns ``{"rows", "explanations", "dt", "reset", "text",
    "min_agreement", "below_min"}``; ``below_min`` is True when ``min_agreement`` was given and a
    row is flagged. See :mod:`nirdeploy.evaluation.crosscheck`. ``runs`` may also be one string,
    comma-separated as on the command line; ``labels``: (batch,) class indices
    (:func:`nirdeploy.inputs.check_labels`).

    Raises UsageError (a bad argument, input, run name or labels), GraphLoadError,
    GraphValidationError, UnsupportedError, DeploymentFolderError (a compiled folder given as a
    run is damaged), MissingDependencyError (a library run without the library)."""
    from .evaluation.crosscheck import compare_columns, explain, render_comparison
    from .graph.discretize import resolve_dt, resolve_reset
    from .graph.provenance import recorded
    from .inputs import check_labels, check_number

    from .evaluation.crosscheck import AGREEMENT_FLAG

    if min_agreement is not None:
        min_agreement = check_number("min_agreement", min_agreement, 0.0, 1.0, kind="a fraction (0.99 = 99 %)")
    flag_below = AGREEMENT_FLAG if min_agreement is None else min_agreement
    runs = _run_specs(runs)
    graph = load_graph(graph_or_path)
    if reset is not None:
        check_choice("reset", reset, RESETS)
    check_choice("scheme", scheme, SCHEMES)
    reset, _ = resolve_reset(graph, reset)
    dt, _ = resolve_dt(graph, _dt_arg(dt))
    x = check_events(x, _input_shape(graph))
    lab = None
    if labels is not None:
        out = graph.outputs[0].output_shape if len(graph.outputs) == 1 else None
        lab = check_labels(labels, x.shape[0], int(np.prod(out)) if out is not None else None)
    cols = [_run_column(graph, graph_or_path, spec, x, dt, reset, scheme) for spec in runs]
    facts_r = _r_facts(graph)
    rows = compare_columns(cols, lab, flag_below=flag_below, readout=facts_r["readout"])
    rec = recorded(graph)
    facts = {"dt": dt, "reset": reset, "recorded_dt": rec.dt, "recorded_reset": rec.reset, "source": rec.source,
             "spike_rule": rec.spike_rule, **facts_r}
    expl = explain(cols, rows, facts)
    below = min_agreement is not None and any(r.get("flag") for r in rows)
    return {"rows": rows, "explanations": expl, "dt": dt, "reset": reset, "min_agreement": min_agreement,
            "below_min": below, "text": render_comparison(rows, expl, flag_below=flag_below)}


def _run_specs(runs) -> list[str]:
    """``runs`` as a list of run names (a string is split at commas), "reference" first."""
    if isinstance(runs, str):
        runs = runs.split(",")
    if isinstance(runs, (bytes, dict)) or not isinstance(runs, (list, tuple)):
        raise UsageError(f"runs must be a list of run names (or one comma-separated string), got {type(runs).__name__}")
    bad = [r for r in runs if not isinstance(r, str)]
    if bad:
        raise UsageError(f"runs must be names such as 'reference', 'torch', 'norse:native' or a compiled folder; got {bad[0]!r}")
    specs = list(dict.fromkeys(r.strip() for r in runs if r.strip()))
    if "reference" not in specs:
        specs.insert(0, "reference")
    return specs


def _r_facts(graph: Graph) -> dict:
    from .graph.discretize import infer_dt
    from .graph.passes import normalize

    flat = normalize(graph)
    leaky = [n for n in flat.nodes.values() if n.type in ("LIF", "LI", "CubaLIF", "CubaLI")]
    # a graph read out from membrane voltages: every node feeding the Output is a non-spiking neuron
    feeding = [flat.nodes[p].type for o in flat.nodes.values() if o.type == "Output" for p in flat.predecessors(o.name)]
    voltage = bool(feeding) and all(t in ("LI", "CubaLI", "I") for t in feeding)
    facts = {"leaky": bool(leaky), "readout": "vmem" if voltage else "spikes"}
    cands = infer_dt(graph)
    if cands and cands[0].convention == "snntorch":
        r = np.concatenate([np.ravel(n.params["r"]) for n in leaky])
        facts.update(r_convention="snntorch", r_typical=float(np.median(r)), r_dt=cands[0].dt)
    elif leaky and all(np.allclose(n.params["r"], 1.0) for n in leaky):
        facts["r_convention"] = "unit"
    return facts


def _run_column(graph: Graph, source, spec: str, x: np.ndarray, dt: float, reset: str, scheme: str):
    from .evaluation.crosscheck import Column
    from .errors import NirDeployError

    if spec == "reference":
        y = simulate_reference(graph, x, dt=dt, reset=reset, scheme=scheme)
        return Column("reference", "reference", output=y, dt=dt)
    lib, _, mode = spec.partition(":")
    if lib == "torch" or lib in COMPARE_LIBRARIES:
        kind = "native" if mode == "native" else ("torch" if lib == "torch" else "library")
        if mode not in ("", "native") or (lib == "torch" and mode):
            raise UsageError(f"unknown run {spec!r}: use LIBRARY or LIBRARY:native")
        try:
            # the libraries print to stdout (snnTorch's importer: "replace rnn subgraph ..."): keep stdout for our output
            with contextlib.redirect_stdout(sys.stderr):
                out = _run_library(graph, source, lib, mode, x, dt, reset, scheme)
            return Column(spec, kind, output=out, library=lib, dt=dt)
        except NirDeployError as e:
            if getattr(e, "install", None):
                raise
            return Column(spec, kind, error=str(e).splitlines()[0], library=lib, dt=dt)
        except Exception as e:  # a library's own importer failing is a finding, not a crash
            return Column(spec, kind, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], library=lib, dt=dt)
    if os.path.isdir(spec):
        dep = load_deployment(spec)
        y = dep.simulate(x)
        s = dep.report.settings
        # the compile report's warnings are the chip's known differences from the reference (one per rule)
        warned = {}
        for v in dep.report.violations:
            if v.severity == "warning" and v.rule not in warned:
                warned[v.rule] = f"{v.rule}{' (' + v.node + ')' if v.node else ''}: {v.message}"
        return Column(os.path.basename(os.path.normpath(spec)) or spec, "chip", output=y, latency_steps=int(dep.artifact.latency_steps),
                      dt=s.get("dt"), info={"dt": s.get("dt"), "reset": s.get("reset"), "warnings": list(warned.values())})
    raise UsageError(f"unknown run {spec!r}: use reference, torch, {', '.join(COMPARE_LIBRARIES)}, LIBRARY:native, or a compiled folder")


def _run_library(graph: Graph, source, lib: str, mode: str, x: np.ndarray, dt: float, reset: str, scheme: str) -> np.ndarray:
    import torch

    from .frontends import library_module, to_torch as _to_torch

    if lib == "torch":
        m = _to_torch(graph, dt=dt, reset=reset, scheme=scheme)
        with torch.no_grad():
            return m(torch.as_tensor(x, dtype=torch.float64)).numpy()
    mod = library_module(lib)
    if mode == "native":
        if isinstance(source, (str, os.PathLike)):
            return mod.native_import(str(source))(x)
        from .graph.loading import write_nir

        with signal_guard(), tempfile.TemporaryDirectory() as d:  # removed on SIGTERM/SIGHUP/SIGINT too
            p = os.path.join(d, "graph.nir")
            write_nir(graph, p)
            return mod.native_import(p)(x)
    m = mod.build(graph, dt=dt, reset=reset, scheme=scheme, dtype=torch.float32)
    with torch.no_grad():
        return m(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
