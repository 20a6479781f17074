"""Command-line interface. Exit codes: 0 ok / fits, 1 does not fit, 2 invalid input or usage.

Heavy imports (numpy, h5py, nir, rich) happen inside the commands so that ``--help`` is instant.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .ci.command import FORMATS as CHECK_FORMATS

EXIT_OK, EXIT_NOFIT, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
PROGRESS_MIN_WORK = 2_000_000  # batch * time * neurons above which a progress bar is shown


def _echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Print to the terminal with control and escape characters made visible (node names and
    paths come from files)."""
    from .render import terminal_safe

    click.echo(terminal_safe(str(text)), err=err, nl=nl)


def _err(msg: str) -> None:
    _echo(f"error: {msg}", err=True)


def _run(fn):
    """Run a command body, turning nirdeploy errors into a message and an exit code.

    The body runs under :func:`nirdeploy.outputs.signal_guard`: SIGTERM, SIGHUP and SIGINT
    remove every temporary file and folder and end every child process first; the exit code is
    then 128 + the signal number."""
    from .errors import NirDeployError
    from .outputs import Terminated, signal_guard

    import warnings

    try:
        with signal_guard(redeliver=False), warnings.catch_warnings():
            # numpy's overflow warnings are noise here: what matters is in the report
            warnings.simplefilter("ignore", RuntimeWarning)
            code = fn()
    except NirDeployError as e:
        _err(str(e))
        sys.exit(e.exit_code)
    except Terminated as e:
        _err(f"{e}; nothing was left behind")
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        _err("interrupted; nothing was left behind")
        sys.exit(130)
    except MemoryError:
        _err("out of memory: the graph or input is too large")
        sys.exit(EXIT_INVALID)
    except RecursionError:
        _err("the input is nested too deeply to be processed")
        sys.exit(EXIT_INVALID)
    except OSError as e:  # the environment, not nirdeploy: a file vanished, a device failed...
        if os.environ.get("NIRDEPLOY_DEBUG"):
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _err(f"{e.strerror or e}{where}")
        sys.exit(EXIT_INVALID)
    except Exception as e:  # never a traceback for users; NIRDEPLOY_DEBUG=1 shows it
        if os.environ.get("NIRDEPLOY_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set NIRDEPLOY_DEBUG=1 for the traceback; please report it)")
        sys.exit(EXIT_INTERNAL)
    sys.exit(code or 0)


def _echo_json(data) -> None:
    """RFC 8259 JSON: non-finite numbers are written as the strings "inf", "-inf", "nan"."""
    from .backend.report import json_safe

    click.echo(json.dumps(json_safe(data), indent=2, allow_nan=False))


class _Progress:
    """A rich progress bar fed by simulate(progress=...) callbacks; silent for small jobs."""

    def __init__(self, work: int, label: str):
        self.bar = None
        self.label = label
        self.enabled = work >= PROGRESS_MIN_WORK and sys.stderr.isatty()

    def __enter__(self):
        if self.enabled:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nirdeploy")
def main() -> None:
    """nirdeploy: lower NIR spiking networks to neuromorphic chips (Xylo, ...).

    Discretize with an explicit dt, quantize to the chip's integer formats, check that the network
    fits, simulate it bit-accurately and export what the vendor stack loads.
    """


@main.command("targets")
@click.option("--json", "as_json", is_flag=True, help="print data instead of a table")
def targets_cmd(as_json: bool) -> None:
    """List targets and their variants with their main limits."""

    def body():
        from .render import render_rows
        from .backend.target import available_targets, get_target

        data = []
        for name in available_targets():
            t = get_target(name)
            for v in t.variants():
                hw = t.hwconfig(v)
                data.append({"target": name, "variant": v, "name": hw.name, "summary": t.summary(v), "limits": hw.limits,
                             "options": dict(getattr(t, "options", {}) or {})})
        if as_json:
            _echo_json(data)
        else:
            _echo(render_rows("Targets", ["target:variant", "chip", "main limits"], [[f"{d['target']}:{d['variant']}", d["name"], d["summary"]] for d in data]), nl=False)
        return EXIT_OK

    _run(body)


@main.command("inspect")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--dt", type=float, default=None, help="also show every neuron's discrete decays and gains at this time step")
@click.option("--scheme", type=click.Choice(["euler", "exact"]), default="euler", show_default=True, help="discretization scheme (with --dt)")
@click.option("--json", "as_json", is_flag=True, help="print data instead of a table")
def inspect_cmd(graph: str, dt, scheme, as_json: bool) -> None:
    """Nodes, shapes, neuron counts, parameters, inferred dt candidates, recurrent loops."""

    def body():
        from . import api
        from .graph.inspection import render_inspection

        info = api.inspect(graph, dt=dt, scheme=scheme)
        if as_json:
            _echo_json(info)
        else:
            _echo(render_inspection(info), nl=False)
            _echo()
        return EXIT_OK

    _run(body)


_dt_opt = click.option("--dt", type=float, default=None,
                       help="time step in seconds (default: the dt nirdeploy recorded when it exported the graph, "
                            "else inferred with a notice when unambiguous)")
_reset_opt = click.option("--reset", type=click.Choice(["zero", "subtract"]), default=None,
                          help="reset semantics: zero = jump to v_reset (NIR >= 1.0.6), subtract = v -= threshold "
                               "[default: the reset nirdeploy recorded when it exported the graph, else zero]")
_scheme_opt = click.option("--scheme", type=click.Choice(["euler", "exact"]), default="euler", show_default=True,
                           help="discretization: forward Euler or exact exponential")
_quant_opt = click.option("--quantization", type=click.Choice(["channel", "global"]), default="channel", show_default=True,
                          help="weight scaling: one scale per post-neuron or one per matrix")

_topt_opt = click.option("--target-option", "-T", "target_options", multiple=True, metavar="KEY=VALUE",
                         help="a target-specific option (repeatable), e.g. -T lower_bound=-threshold for speck; `nirdeploy targets --json` lists them")


_max_chips_opt = click.option("--max-chips", type=click.IntRange(min=1), default=None,
                              help="multi-chip targets (loihi2): refuse a network that needs more chips (default: count them); "
                                   "the same as -T max_chips=N")


def _parse_target_options(items, max_chips: int | None = None) -> dict:
    """KEY=VALUE pairs (:func:`nirdeploy.inputs.parse_key_values`); integers become ints.
    ``--max-chips N`` adds ``max_chips`` (given both ways, it is an error)."""
    from .errors import UsageError
    from .inputs import parse_key_values

    out = parse_key_values(items, "--target-option")
    if max_chips is not None:
        if "max_chips" in out:
            raise UsageError(f"max_chips is given twice (--max-chips {max_chips} and -T max_chips={out['max_chips']}); give it once")
        out["max_chips"] = max_chips
    return out


_sample_opt = click.option("--sample", type=click.Path(dir_okay=False), default=None,
                           help="sample input .npy (batch, time, *input_shape) that is only measured: fidelity report (multi-spike share, "
                                "saturation, predicted agreement with the reference)")
_calibrate_opt = click.option("--calibrate", type=click.Path(), default=None,
                              help="sample input .npy (batch, time, *input_shape) to calibrate the quantization on (guarded: never worse than "
                                   "uncalibrated on that sample), then measured like --sample")


def _notices(notices) -> None:
    for n in notices:
        if n:
            _echo(f"notice: {n}", err=True)


@main.command("check")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--target", "-t", "target", required=True, help="TARGET[:VARIANT], TARGET:all (every variant of one target), or all (every target and variant)")
@_dt_opt
@_reset_opt
@_scheme_opt
@_quant_opt
@_topt_opt
@_max_chips_opt
@_sample_opt
@_calibrate_opt
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON (same as --format json)")
@click.option("--format", "output_format", type=click.Choice(CHECK_FORMATS), default=None,
              help="text (default), json, junit (JUnit XML for CI test reports) or github (workflow-command annotations)")
@click.option("--budget", default=None, metavar="BUDGET.toml",
              help="budget.toml: share of each resource to keep free, agreement floors; over budget exits 1")
def check_cmd(graph, target, dt, reset, scheme, quantization, target_options, max_chips, sample, calibrate, as_json, output_format,
              budget) -> None:
    """Does GRAPH fit TARGET? Exit 0 if it fits, 1 if not, 2 on invalid input."""

    def body():
        from . import api
        from .ci.command import check_command, output_format as _format
        from .backend.target import multi_target
        from .render import render_fit_table

        fmt = _format(output_format, as_json)
        topts = _parse_target_options(target_options, max_chips)
        many, only = multi_target(target)
        if many and (sample is not None or calibrate is not None):
            from .errors import UsageError

            raise UsageError("--sample and --calibrate measure one target: give TARGET[:VARIANT]")
        if fmt != "text" or budget is not None:
            return check_command(graph, target, fmt=fmt, budget=budget, echo=_echo, echo_json=_echo_json, dt=dt,
                                 reset=reset, scheme=scheme, quantization=quantization, target_options=topts,
                                 sample=sample, calibrate=calibrate)
        if many:
            if dt is None:  # the dt every target uses, said once (single reports carry it in their notes)
                from .graph.discretize import resolve_dt

                _notices([resolve_dt(api.load_graph(graph), None)[1]])
            reps = api.check_all(graph, dt=dt, reset=reset, scheme=scheme, target_options=topts, target=only)
            _echo(render_fit_table(reps), nl=False)
            return EXIT_OK if any(r.fits for r in reps) else EXIT_NOFIT
        rep = api.check(graph, target=target, dt=dt, reset=reset, scheme=scheme, quantization=quantization, target_options=topts,
                        sample=sample, calibrate=calibrate)
        _echo(rep.render())
        return EXIT_OK if rep.fits else EXIT_NOFIT

    _run(body)


@main.command("compile")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--target", "-t", "target", required=True, help="TARGET[:VARIANT]")
@_dt_opt
@_reset_opt
@_scheme_opt
@_quant_opt
@_calibrate_opt
@_sample_opt
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="output folder (written atomically; never replaces what nirdeploy did not write)")
@click.option("--force", is_flag=True, help="replace OUT if it is a folder nirdeploy wrote (its deployment.json lists every file in it)")
@_topt_opt
@_max_chips_opt
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def compile_cmd(graph, target, dt, reset, scheme, quantization, calibrate, sample, out, force, target_options, max_chips, as_json) -> None:
    """Lower GRAPH for TARGET and write OUT/report.json, the vendor export and what `simulate` needs.

    A network that does not fit still gets its report printed, but no folder (exit 1)."""

    def body():
        from . import api
        from .outputs import check_output_folder

        check_output_folder(out, force=force, inputs=[graph, calibrate, sample])  # fail before the work, not after it
        dep = api.compile(graph, target=target, dt=dt, reset=reset, scheme=scheme, quantization=quantization, calibrate=calibrate,
                          target_options=_parse_target_options(target_options, max_chips), sample=sample)
        for n in dep.notices:
            _echo(f"notice: {n}", err=True)
        rep = dep.report
        if as_json:
            _echo_json(rep.to_dict())
        else:
            _echo(rep.render())
        if not rep.fits:
            _err(f"not written: the network does not fit {rep.target}:{rep.variant}")
            return EXIT_NOFIT
        dep.save(out, force=force)
        _echo(f"wrote {out}", err=True)
        return EXIT_OK

    _run(body)


@main.command("simulate")
@click.argument("source", type=click.Path())
@click.option("--input", "-i", "input_path", required=True, type=click.Path(), help="X.npy: (batch, time, *input_shape) spike counts")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Y.npy: (batch, time, *output_shape); a new file (or --force)")
@click.option("--force", is_flag=True, help="replace OUT if it is an existing regular file (never a link, FIFO, device or input)")
@click.option("--reference", is_flag=True, help="SOURCE is a .nir graph: run the float64 reference simulator")
@_dt_opt
@_reset_opt
@_scheme_opt
@click.option("--spikes-per-step", "spikes_per_step", type=click.IntRange(min=1), default=None,
              help="reference with a chip's spiking rule: floor(v / threshold) spikes per step, at most N, subtractive reset (Xylo: 31)")
@click.option("--compare-reference", is_flag=True, help="also run the reference on the compiled graph and print agreement")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False), default=None,
              help="y.npy: one integer label per sample; prints the accuracy of the chip, the reference and the reference with the "
                   "chip's semantics (runs the reference)")
def simulate_cmd(source, input_path, out, force, reference, dt, reset, scheme, spikes_per_step, compare_reference, labels_path) -> None:
    """Chip simulation of a compiled folder, or (--reference) float simulation of a .nir graph.

    Every check and comparison happens before Y.npy is written: a command that fails writes
    nothing. OUT must be a new path; with --force an existing regular file is replaced (never a
    device, FIFO, folder, link or an input of the command)."""

    def body():
        import numpy as np

        from . import api
        from .errors import UsageError
        from .inputs import load_npy
        from .outputs import check_output_file

        check_output_file(out, inputs=[input_path, source] + ([labels_path] if labels_path else []), force=force)
        x = load_npy(input_path)
        labels = load_npy(labels_path, what="labels") if labels_path is not None else None
        if reference:
            if os.path.isdir(source):
                raise UsageError("--reference takes a .nir graph, not a compiled folder")
            if labels is not None:
                raise UsageError("--labels needs a compiled folder (chip and reference accuracy); use it without --reference")
            g = api.load_graph(source)
            with _Progress(int(np.prod(x.shape)) * 8, "reference") as prog:
                res = api.simulate_reference(g, x, dt=dt, reset=reset, scheme=scheme, progress=prog, spikes_per_step=spikes_per_step, full=True)
            _notices(res.notices)
            _notices([_reset_notice(res.reset, reset, spikes_per_step)])
            for n in res.notes:
                _echo(f"warning: {n}", err=True)
            _save_npy(out, res.output, [input_path, source], force)
            _echo(f"wrote {out} {tuple(res.output.shape)}", err=True)
            return EXIT_OK
        if spikes_per_step is not None:
            raise UsageError("--spikes-per-step applies to the reference (--reference); a compiled folder simulates the chip itself")
        ignored = _explicit(("dt", dt is not None), ("reset", reset is not None), ("scheme", None))
        if ignored:  # a compiled folder runs (and is compared) at the settings it was compiled with
            flags = ", ".join(f"--{k}" for k in ignored)
            raise UsageError(f"{flags} applies to the reference (--reference) or to compile; a compiled folder runs with the settings it was "
                             "compiled with (its report.json 'settings'): compile again to change them")
        if not os.path.isdir(source):
            raise UsageError(f"{source} is not a compiled folder (use --reference to simulate a .nir graph)")
        dep = api.load_deployment(source)
        if labels is not None and dep.source_path is None:
            raise UsageError("this folder holds no copy of its graph; --labels needs the reference")
        if compare_reference:
            if dep.source_path is None:
                raise UsageError("this folder holds no copy of its graph; cannot compare")
            lat = dep.artifact.latency_steps
            if x.ndim >= 2 and x.shape[1] <= lat:
                raise UsageError(f"--compare-reference needs more than {lat} time steps (the chip's latency); the input has {x.shape[1]}")
        with _Progress(int(np.prod(x.shape)) * 64, "chip simulation") as prog:
            y = dep.simulate(x, progress=prog)
        cap = dep.report.details.get("input_events_cap")
        over = int(np.count_nonzero(np.asarray(x) > cap)) if isinstance(cap, (int, float)) and np.size(x) else 0
        if over:  # the chip ran on other input than the file holds
            _echo(f"warning: {over} of {np.size(x)} input values exceed the chip's {cap:g} event(s) per channel and step (largest "
                  f"{np.max(x):g}); the chip took them as {cap:g} (hint: bin the events more finely, i.e. a smaller dt, or scale the "
                  "input down)", err=True)
        cmp = ev = None
        if compare_reference or labels is not None:
            s = dep.report.settings
            _notices([f"reference: dt = {s['dt']:g} s, reset = {s.get('reset', 'zero')}, scheme = {s.get('scheme', 'euler')} (the compiled settings)"])
            from .graph.discretize import resolve_spike_rule

            # the reference follows the spike rule the graph records (Sinabs' MultiSpike): said, as with --reference
            _, rule = resolve_spike_rule(dep.source_graph(), None, s.get("reset", "zero"))
            _notices([rule.replace("; --spikes-per-step N caps it", "") if rule else None])
        if compare_reference:
            ref = dep.simulate_reference(x)
            cmp = api.compare_outputs(y, ref, dep.artifact.latency_steps, dep.readout)
        if labels is not None:
            ev = dep.evaluate(x, labels)  # validates the labels before anything is written
        _save_npy(out, y, [input_path, source], force)
        _echo(f"wrote {out} {tuple(y.shape)}", err=True)
        if cmp is not None:
            _print_compare(cmp)
            _warn_low_agreement(cmp, dep, source, input_path)
        if ev is not None:
            _print_accuracy(ev)
        return EXIT_OK

    _run(body)


@main.command("export")
@click.argument("factory", metavar="MODEL.py:FUNCTION")
@click.option("--library", "-l", required=True, type=click.Choice(["snntorch", "norse", "sinabs"]), help="library the model is built with")
@click.option("--weights", "-w", default=None, metavar="PATH", help="state_dict saved with torch.save (loaded with weights_only=True)")
@click.option("--sample", default=None, metavar="X.npy", help="X.npy (batch, time, *input_shape) to trace and verify with")
@click.option("--input-shape", default=None, help="e.g. 2,34,34: verify on random Poisson spikes of this shape instead of --sample")
@click.option("--dt", type=float, default=None, help="time step the model was trained with, in seconds (recorded in the graph)")
@click.option("--fold-batchnorm", is_flag=True, help="fold BatchNorm into the preceding Conv/Linear")
@click.option("--no-strict", is_flag=True, help="write the graph even when it does not reproduce the model (with a warning)")
@click.option("-o", "--out", "out", required=True, metavar="G.nir", help="G.nir to write (a new file, or --force)")
@click.option("--force", is_flag=True, help="replace OUT if it is an existing regular file (never a link, FIFO, device or input)")
def export_cmd(factory, library, weights, sample, input_shape, dt, fold_batchnorm, no_strict, out, force) -> None:
    """Export a trained torch model to NIR. MODEL.py:FUNCTION builds the model (no arguments);
    the graph reproduces it (verified on the sample) and records its dt and reset."""

    def body():
        import warnings

        from . import api
        from .frontends.loader import load_model, sample_input
        from .graph.loading import save_nir
        from .outputs import check_output_file

        inputs = [factory.rpartition(":")[0], weights, sample]
        check_output_file(out, inputs, force=force)  # before the work: an existing file (without --force), a device, FIFO, folder, link or input is refused
        model = load_model(factory, weights)
        x = sample_input(sample, input_shape)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = api.from_torch(model, x, library=library, dt=dt, strict=not no_strict, fold_batchnorm=fold_batchnorm)
        for w in caught:
            if "nirdeploy" in type(w.message).__module__:
                _echo(f"warning: {w.message}", err=True)
        save_nir(g, out, inputs=inputs, force=force)
        from .graph.provenance import recorded

        rec = recorded(g)
        _echo(f"wrote {out}: {len(g.nodes)} nodes; dt = {rec.dt:g} s, reset = {rec.reset}, spike rule = {rec.spike_rule} "
                   f"(recorded in the graph; inspect/check/compile use them without --dt)", err=True)
        return EXIT_OK

    _run(body)


@main.command("compare")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--input", "-i", "input_path", required=True, metavar="X.npy", help="X.npy: (batch, time, *input_shape)")
@click.option("--with", "runs", default="reference,torch", show_default=True,
              help="comma-separated runs: reference, torch, snntorch, norse, sinabs (nirdeploy's dt-aware conversions), "
                   "LIBRARY:native (the library's own importer), or compiled folders (OUT_FOLDER)")
@_dt_opt
@_reset_opt
@_scheme_opt
@click.option("--labels", default=None, metavar="Y.npy", help="Y.npy (batch,) class labels: adds accuracy (most active output)")
@click.option("--min-agreement", type=float, default=None, metavar="X",
              help="exit 1 when a run failed or its spike agreement with the reference is below X (a fraction, "
                   "e.g. 0.99); runs below X are marked DIFFERS [default: no threshold, exit 0; DIFFERS below 0.99]")
@click.option("--json", "as_json", is_flag=True, help="print data instead of a table")
def compare_cmd(graph, input_path, runs, dt, reset, scheme, labels, min_agreement, as_json) -> None:
    """Run GRAPH several ways on the same input and compare every run with the reference.

    A report: exit 0 whatever the agreement, unless --min-agreement X is given, then exit 1 when
    a run failed or agrees on fewer than X of the spikes (CI gates). Exit 2 on invalid input."""

    def body():
        from . import api

        from .inputs import load_npy

        x = load_npy(input_path)
        lab = load_npy(labels, what="labels") if labels is not None else None
        specs = [s.strip() for s in runs.split(",") if s.strip()]
        res = api.compare(graph, x, runs=specs, dt=dt, reset=reset, scheme=scheme, labels=lab, min_agreement=min_agreement)
        if as_json:
            _echo_json({k: v for k, v in res.items() if k != "text"})
        else:
            _echo(f"dt = {res['dt']:g} s, reset = {res['reset']}")
            _echo(res["text"], nl=False)
        return EXIT_NOFIT if res["below_min"] else EXIT_OK

    _run(body)


@main.command("nmnist")
@click.argument("root")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--dt", type=float, default=1e-3, show_default=True, help="bin width = network time step, in seconds")
@click.option("--steps", type=int, default=None, help="steps per sample (default: enough for the longest sample)")
@click.option("--limit", type=int, default=None, help="at most this many samples, round-robin over the digits")
@click.option("--first-saccade", is_flag=True, help="keep only the first saccade (events before 100 ms)")
@click.option("-o", "--out", "out", required=True, metavar="X.npy", help="X.npy to write: (samples, steps, 2, 34, 34)")
@click.option("--labels-out", default=None, metavar="Y.npy", help="Y.npy to write: (samples,) digit labels (written together with X.npy)")
@click.option("--force", is_flag=True, help="replace existing output files (regular files only, never a link, FIFO, device or input)")
def nmnist_cmd(root, split, dt, steps, limit, first_saccade, out, labels_out, force) -> None:
    """Bin N-MNIST recordings already on disk (ROOT/NMNIST/Test/<digit>/*.bin, tonic's layout)
    into X.npy for simulate/compare (--labels Y.npy). Needs tonic; never downloads."""

    def body():
        import numpy as np

        from .data.nmnist import load_nmnist, split_folder
        from .outputs import atomic_files, check_distinct_files

        data_dir = split_folder(root, split)  # the recordings: never written into
        targets = [out] + ([labels_out] if labels_out is not None else [])
        check_distinct_files(targets, [data_dir], force=force)  # before the work: existing files, devices, links, inputs, the same file twice
        x, y = load_nmnist(root, split=split, dt=dt, n_steps=steps, limit=limit, first_saccade_only=first_saccade)
        with atomic_files(targets, inputs=[data_dir], force=force) as files:  # both or neither
            np.save(files[0], x)
            if labels_out is not None:
                np.save(files[1], y)
        _echo(f"wrote {out}: {x.shape[0]} samples x {x.shape[1]} steps of dt = {dt:g} s, {int(x.sum())} events"
                   + (f"; {labels_out}: labels" if labels_out else ""), err=True)
        return EXIT_OK

    _run(body)


@main.command("finetune")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--target", "-t", "target", required=True, help="TARGET[:VARIANT] whose chip model is trained (and compiled for)")
@click.option("--x", "x_path", required=True, type=click.Path(dir_okay=False), help="X.npy: training input (batch, time, *input_shape) event counts")
@click.option("--y", "y_path", required=True, type=click.Path(dir_okay=False), help="Y.npy: training labels (batch,), class indices")
@click.option("--val-x", "val_x", type=click.Path(dir_okay=False), default=None, help="validation input for the before/after accuracy (default: the training set)")
@click.option("--val-y", "val_y", type=click.Path(dir_okay=False), default=None, help="validation labels")
@click.option("-o", "--out", "out", required=True, type=click.Path(),
              help="output folder: the compiled deployment of the fine-tuned graph (its graph.nir is the new graph); written atomically")
@click.option("--graph-out", type=click.Path(dir_okay=False), default=None, help="also write the fine-tuned graph to this .nir file")
@click.option("--force", is_flag=True, help="replace OUT if it is a folder nirdeploy wrote (and --graph-out if it is an existing regular file)")
@click.option("--float", "float_mode", is_flag=True, help="train the float reference semantics instead of the chip model (the penalty only)")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate on the graph's float weights")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--membrane-penalty", type=float, default=0.0, show_default=True,
              help="weight of the membrane-headroom penalty relu(v / threshold - margin)^2 (removes Xylo's multi-spike steps)")
@click.option("--membrane-margin", type=float, default=2.0, show_default=True, help="membrane level (in thresholds) above which the penalty acts")
@click.option("--readout", type=click.Choice(["spikes", "vmem"]), default=None,
              help="spike-count argmax or maximum Vmem [default: the compiled network's]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads (results are deterministic per count)")
@click.option("--chip-option", "chip_options", multiple=True, metavar="KEY=VALUE", help="a chip-model option, e.g. mode=binned for speck")
@_dt_opt
@_reset_opt
@_scheme_opt
@_quant_opt
@_topt_opt
@click.option("--json", "as_json", is_flag=True, help="print the result (settings, history, accuracy before and after) as JSON")
def finetune_cmd(graph, target, x_path, y_path, val_x, val_y, out, graph_out, force, float_mode, epochs, lr, batch_size, membrane_penalty,
                 membrane_margin, readout, seed, threads, chip_options, dt, reset, scheme, quantization, target_options, as_json) -> None:
    """Fine-tune GRAPH's weights for TARGET on labelled event data (needs the [torch] extra).

    Trains TARGET's chip model (its exact integer dynamics, straight-through gradients) and writes
    the compiled deployment of the fine-tuned graph to OUT; prints the accuracy of the float
    reference and of the chip before and after. Exit 0; 1 if the network does not fit; 2 on
    invalid input."""

    def body():
        from . import api
        from .errors import UsageError
        from .graph.loading import save_nir
        from .outputs import check_output_file, check_output_folder

        inputs = [graph, x_path, y_path, val_x, val_y]
        if (val_x is None) != (val_y is None):
            raise UsageError("--val-x and --val-y go together")
        check_output_folder(out, force=force, inputs=inputs)  # before the work, not after it
        if graph_out is not None:
            check_output_file(graph_out, inputs, force=force)
            if os.path.abspath(graph_out) == os.path.abspath(out):
                raise UsageError("-o and --graph-out name the same path")
            g_real, o_real = os.path.realpath(graph_out), os.path.realpath(out)
            if g_real.startswith(o_real.rstrip(os.sep) + os.sep):
                # a file of ours in the deployment folder: it would replace the folder's own graph.nir
                # or make the folder no longer one nirdeploy wrote (the next --force refuses it)
                raise UsageError(f"--graph-out {graph_out} is inside {out}, the folder this command writes; its graph.nir "
                                 "already is the fine-tuned graph: choose a path outside it")
        res = api.finetune(graph, target, x_path, y_path, x_val=val_x, y_val=val_y, mode="float" if float_mode else "chip",
                           epochs=epochs, lr=lr, batch_size=batch_size, membrane_penalty=membrane_penalty, membrane_margin=membrane_margin,
                           readout=readout, seed=seed, threads=threads, dt=dt, reset=reset, scheme=scheme, quantization=quantization,
                           target_options=_parse_target_options(target_options), chip_options=_parse_target_options(chip_options) or None)
        dep = res.deployment
        if as_json:
            _echo_json(res.to_dict())
        else:
            for h in res.history:
                _echo(f"epoch {h['epoch']}: loss {h['loss']:.4f}, penalty {h['penalty']:.4f}, train accuracy {100 * h['train_accuracy']:.1f} %",
                      err=True)
            _echo(res.render(), nl=False)
        if not dep.fits:
            _echo(dep.report.render())
            _err(f"not written: the fine-tuned network does not fit {dep.report.target}:{dep.report.variant}")
            return EXIT_NOFIT
        dep.save(out, force=force)
        _echo(f"wrote {out}", err=True)
        if graph_out is not None:
            save_nir(res.graph, graph_out, inputs=inputs, force=force)
            _echo(f"wrote {graph_out}", err=True)
        return EXIT_OK

    _run(body)


@main.group("study")
def study_group() -> None:
    """End-to-end studies: train, export, run in every library, compile for every chip, fine-tune."""


@study_group.command("digits")
@click.option("--quick", is_flag=True, help="the small CI configuration (a few minutes): checks the pipeline, not the accuracy")
@click.option("-o", "--out", "out", default="study-digits", show_default=True, type=click.Path(),
              help="output folder, new or empty (results.json, results.md, raster.png, accuracy.png, the graphs); written atomically")
@click.option("--readme", type=click.Path(dir_okay=False), default=None,
              help="also rewrite the study table between the study-digits markers in this README")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="data split, initial weights, sample order")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="worker processes for independent target runs [default: 2]")
def study_digits_cmd(quick, out, readme, seed, jobs) -> None:
    """Digits study (issue 11): scikit-learn's bundled 8x8 digits as events (no download), a
    recurrent and a convolutional snnTorch net trained on CPU, exported to NIR, run in snnTorch,
    Norse and the reference, compiled and simulated bit-accurately for every chip that fits,
    fine-tuned per chip; writes the table (results.md), results.json and two plots to OUT.
    Needs the [torch] extra, Norse, scikit-learn and matplotlib. Exit 0; 2 on invalid input."""

    def body():
        from dataclasses import replace

        from .evaluation.study import FULL, QUICK, run_digits

        cfg = replace(QUICK if quick else FULL, seed=seed, **({"jobs": jobs} if jobs is not None else {}))
        res = run_digits(out, config=cfg, readme=readme, log=lambda m: _echo(m, err=True))
        _echo(f"wrote {out} ({res['seconds']:.0f} s)", err=True)
        return EXIT_OK

    _run(body)


def _warn_low_agreement(cmp: dict, dep, folder, input_path) -> None:
    """A chip that decides differently from the float reference on more than 1 - AGREEMENT_WARN
    of the samples gets a warning naming the compile report's warnings and the commands that
    explain the difference (figures alone are easy to read past)."""
    from .evaluation.compare import AGREEMENT_WARN
    from .render import warning_summary

    agree = cmp.get("argmax_agreement")
    if agree is None or agree != agree or agree >= AGREEMENT_WARN:  # None / NaN: the table already says why
        return
    why = warning_summary(dep.report)
    st = dep.report.settings
    at = f"--dt {st['dt']:g} --reset {st.get('reset', 'zero')} --scheme {st.get('scheme', 'euler')} " if "dt" in st else ""
    _echo(f"warning: the chip's winning output equals the reference's in {100 * agree:.1f} % of the samples (below "
          f"{100 * AGREEMENT_WARN:.0f} %); the compile report's warnings: {why if why != '-' else 'none'} (hint: `nirdeploy compare "
          f"{dep.source_path or os.path.join(str(folder), 'graph.nir')} {at}--input {input_path} --with reference,{folder}` explains the differences it detects; "
          "check/compile --sample X.npy measures them, --calibrate X.npy tunes the quantization on Xylo and Speck)", err=True)


def _explicit(*flags) -> list[str]:
    """Names of the options the user gave on the command line: each ``(name, given)`` pair, where
    ``given`` None means "ask click" (an option with a default cannot tell by its value)."""
    ctx = click.get_current_context(silent=True)
    out = []
    for name, given in flags:
        if given is None:
            src = ctx.get_parameter_source(name) if ctx is not None else None
            given = src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")
        if given:
            out.append(name)
    return out


def _print_compare(cmp: dict) -> None:
    from .render import render_comparison

    _echo(render_comparison(cmp), nl=False)


def _reset_notice(used: str, given, spikes_per_step) -> str:
    if given is not None:
        return f"reference reset: {used}"
    if spikes_per_step is not None:
        return f"reference reset: {used} (implied by --spikes-per-step)"
    return (f"reference reset: {used} (the default: the reset recorded in the graph, else NIR's v_reset semantics; graphs trained "
            "with subtractive reset, snnTorch's default, need --reset subtract)")


def _print_accuracy(ev: dict) -> None:
    from .evaluation.compare import describe_readout
    from .render import render_rows

    def row(name, a):
        return [name, f"{100 * a['accuracy']:.1f} %", a["silent_samples"], f"{a['window'][0]}..{a['window'][1] - 1}"]

    rows = [row("chip (bit-accurate simulation)", ev["chip"])]
    if "reference" in ev:
        rows.append(row("reference (float NIR graph)", ev["reference"]))
    if "reference_chip_semantics" in ev:
        rows.append(row("reference with the chip's spiking rule and time constants", ev["reference_chip_semantics"]))
    _echo(render_rows(f"Accuracy on {ev['samples']} labelled samples; readout: {describe_readout(ev['readout'])}; "
                      f"chip read {ev['latency_steps']} step(s) later (latency)",
                      ["network", "accuracy", "silent samples", "steps read"], rows), nl=False)


def _save_npy(path: str, y, inputs, force: bool) -> None:
    """Write a regular file atomically (nirdeploy.outputs.atomic_file): a new file, or with
    ``force`` an existing regular file; never a device, FIFO, folder, link or one of the
    command's inputs."""
    import numpy as np

    from .outputs import atomic_file

    with atomic_file(path, inputs=inputs, force=force) as f:
        np.save(f, np.asarray(y))


if __name__ == "__main__":  # pragma: no cover
    main()
