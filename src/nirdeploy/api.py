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

import contextlib
import json
import os
import shutil
import sys
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
    "compare",
    "from_torch",
    "to_torch",
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
    from .graph.discretize import resolve_dt, resolve_reset

    if reset is not None:
        _check_choice("reset", reset, RESETS)
    _check_choice("scheme", scheme, SCHEMES)
    reset, notice = resolve_reset(graph, reset)  # None: the reset recorded by nirdeploy's exporter, else "zero"
    if notice and notices is not None:
        notices.append(notice)
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
    with ``dt`` (or the dt recorded by nirdeploy's exporter), also every neuron's discrete decay
    factors and input gains."""
    from .graph.discretize import validate_dt
    from .graph.inspection import inspect_graph
    from .graph.provenance import recorded

    _check_choice("scheme", scheme, SCHEMES)
    graph = load_graph(graph_or_path)
    if dt is None:
        dt = recorded(graph).dt  # a graph nirdeploy exported knows its training dt
    return inspect_graph(graph, None if dt is None else validate_dt(dt), scheme)


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


def check_all(graph_or_path, *, dt: float | None = None, reset: str | None = None, scheme: str = "euler",
              target_options: dict | None = None, target: str | None = None) -> list[FitReport]:
    """One report per target and variant (``target="xylo"``: every variant of that target only).
    Each target gets the ``target_options`` it declares; an option no target declares is an error."""
    graph = load_graph(graph_or_path)
    notices: list[str] = []
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
    reset: str | None = None,
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
    reset: str | None = None,
    scheme: str = "euler",
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """Float64 reference simulation of the NIR graph itself. Returns the output array, or the
    full result (``.output``, ``.states``) when ``record``."""
    from .graph.discretize import resolve_dt, resolve_reset
    from .sim.reference import simulate_reference as _sim

    graph = load_graph(graph_or_path)
    if reset is not None:
        _check_choice("reset", reset, RESETS)
    _check_choice("scheme", scheme, SCHEMES)
    reset, _ = resolve_reset(graph, reset)
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


# -- torch frontends and the multi-way comparison (torch imported only when called) -------------
COMPARE_LIBRARIES = ("snntorch", "norse", "sinabs")


def from_torch(model, sample, *, library: str, dt: float | None = None, strict: bool = True,
               fold_batchnorm: bool = False, path=None) -> Graph:
    """A trained snnTorch / Norse / Sinabs model as a Graph that reproduces it; needs the
    ``[torch]`` extra. See :func:`nirdeploy.frontends.from_torch`."""
    from .frontends import from_torch as _from_torch

    return _from_torch(model, sample, library=library, dt=dt, strict=strict, fold_batchnorm=fold_batchnorm, path=path)


def to_torch(graph_or_path, *, library: str | None = None, dt: float | None = None, reset: str | None = None,
             scheme: str = "euler", dtype=None):
    """``graph`` as a runnable torch module: nirdeploy's reference semantics (no library), or a
    snnTorch / Norse / Sinabs model with dt, reset and r handled; needs the ``[torch]`` extra."""
    from .frontends import to_torch as _to_torch

    return _to_torch(graph_or_path, library=library, dt=dt, reset=reset, scheme=scheme, dtype=dtype)


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
    row is flagged. See :mod:`nirdeploy.evaluation.crosscheck`."""
    from .evaluation.crosscheck import compare_columns, explain, render_comparison
    from .graph.discretize import resolve_dt, resolve_reset
    from .graph.provenance import recorded

    from .evaluation.crosscheck import AGREEMENT_FLAG

    if min_agreement is not None:
        try:
            min_agreement = float(min_agreement)
        except (TypeError, ValueError):
            raise UsageError(f"min_agreement must be a fraction in [0, 1], got {min_agreement!r}") from None
        if not 0.0 <= min_agreement <= 1.0:
            raise UsageError(f"min_agreement must be a fraction in [0, 1] (0.99 = 99 %), got {min_agreement:g}")
    flag_below = AGREEMENT_FLAG if min_agreement is None else min_agreement
    graph = load_graph(graph_or_path)
    if reset is not None:
        _check_choice("reset", reset, RESETS)
    reset, _ = resolve_reset(graph, reset)
    dt, _ = resolve_dt(graph, None if dt is None else float(dt))
    x = np.asarray(x)
    runs = list(dict.fromkeys(runs))
    if "reference" not in runs:
        runs.insert(0, "reference")
    cols = [_run_column(graph, graph_or_path, spec, x, dt, reset, scheme) for spec in runs]
    lab = None if labels is None else np.asarray(labels)
    if lab is not None and lab.shape[:1] != x.shape[:1]:
        raise UsageError(f"labels must have one entry per sample ({x.shape[0]}); got shape {lab.shape}")
    rows = compare_columns(cols, lab, flag_below=flag_below)
    rec = recorded(graph)
    facts = {"dt": dt, "reset": reset, "recorded_dt": rec.dt, "recorded_reset": rec.reset, "source": rec.source,
             "spike_rule": rec.spike_rule, **_r_facts(graph)}
    expl = explain(cols, rows, facts)
    below = min_agreement is not None and any(r.get("flag") for r in rows)
    return {"rows": rows, "explanations": expl, "dt": dt, "reset": reset, "min_agreement": min_agreement,
            "below_min": below, "text": render_comparison(rows, expl, flag_below=flag_below)}


def _r_facts(graph: Graph) -> dict:
    from .graph.discretize import infer_dt
    from .graph.passes import normalize

    flat = normalize(graph)
    leaky = [n for n in flat.nodes.values() if n.type in ("LIF", "LI", "CubaLIF", "CubaLI")]
    facts = {"leaky": bool(leaky)}
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

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "graph.nir")
            write_nir(graph, p)
            return mod.native_import(p)(x)
    m = mod.build(graph, dt=dt, reset=reset, scheme=scheme, dtype=torch.float32)
    with torch.no_grad():
        return m(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
