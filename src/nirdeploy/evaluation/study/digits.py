"""The digits study: one trained network, every chip, one table (issue 11).

:func:`run_digits` (CLI: ``nirdeploy study digits [--quick] [-o FOLDER]``):

1. **data** - :mod:`nirdeploy.evaluation.datasets`: scikit-learn's bundled 8x8 digits as a
   16-channel ON/OFF column scan (recurrent net) and as ON/OFF saccade frames 2x10x10 (CNN), the
   same stratified train/test split for both (fixed by ``seed``);
2. **training** - two snnTorch networks on CPU (:mod:`.models`): a recurrent net (16 -> H
   recurrent LIF -> 10 LIF, subtractive reset; for Xylo and Loihi 2) and a convolutional net
   without MaxPool (IF neurons, reset to zero; for Speck and Loihi 2), with the membrane penalty;
3. **export** - ``nirdeploy.from_torch`` (the frontend checks that the graph reproduces the
   model on a sample; what it finds is kept in the results, never dropped);
4. **float accuracy per library** - the trained snnTorch model itself, and the exported graph
   in the reference simulator, in snnTorch and in Norse (``nirdeploy.compare``);
5. **chips** - ``nirdeploy.check_all`` on every registered target and variant; every fitting
   variant (and every variant of the targets the network is meant for, fitting or not: its
   violations are the row) is compiled and the whole test set is simulated bit-accurately, in
   batches; independent targets run in parallel worker processes (``jobs``);
6. **fine-tuning** per fitting target through ``nirdeploy.finetune`` (issue 11's chip-aware
   fine-tuning: the target's chip model, with the membrane-headroom penalty), one epoch at a
   time on a fixed subset of the training split; the epoch count kept (0 = the compiled network
   as it was) is the one with the best chip accuracy on a validation set held out from training,
   never chosen on the test set;
7. **outputs** (one atomic folder, :mod:`nirdeploy.outputs`): ``results.json``, ``results.md``
   (the table, :func:`nirdeploy.evaluation.study.report.markdown_table`), ``raster.png``,
   ``accuracy.png`` and the exported graphs; optionally the README's study table.

Accuracy everywhere is :func:`nirdeploy.evaluation.compare.accuracy`: spike-count argmax of the
output layer, a silent sample counts as wrong, a chip is read from its latency on. "Points
lost" is the float reference's accuracy (the exported graph, which every chip is compiled from)
minus the chip's. Needs the ``[torch]`` extra, Norse (``pip install --no-deps norse==1.1.0``),
scikit-learn and matplotlib.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import MissingDependencyError, NirDeployError, UsageError

__all__ = ["StudyConfig", "FULL", "QUICK", "run_digits", "NETWORKS", "GOAL_POINTS", "FINETUNE_UNAVAILABLE"]

#: the goal of issue 11: after fine-tuning, no target loses more than this many accuracy points
GOAL_POINTS = 1.0

#: what every fine-tuning cell says when this nirdeploy has no ``nirdeploy.finetune``
FINETUNE_UNAVAILABLE = "nirdeploy.finetune is not in this build (issue 11, item 2: chip-aware fine-tuning)"

#: the networks and the targets each is meant for (issue 11); other targets are still checked
NETWORKS = {
    "rsnn": {"title": "recurrent SNN", "targets": ("xylo", "loihi2")},
    "cnn": {"title": "convolutional SNN", "targets": ("speck", "loihi2")},
}


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of a study run (recorded in ``results.json``)."""

    quick: bool = False
    seed: int = 0
    classes: int = 10
    dt: float = 1e-3  # s per time step, recorded in both exported graphs
    train_limit: int | None = None  # None: the whole training split
    test_limit: int | None = None
    steps_per_column: int = 4  # column scan: 9 columns x 4 steps + tail
    scan_tail: int = 8
    frames_tail: int = 4  # saccade frames: 18 steps + tail
    rsnn_hidden: int = 64
    rsnn_beta: float = 0.875  # 1 - 2**-3: exact on Xylo (dash 3) and Loihi 2 (dv 512)
    rsnn_epochs: int = 20
    rsnn_lr: float = 5e-3
    cnn_channels: tuple[int, int] = (8, 16)
    cnn_epochs: int = 16
    cnn_lr: float = 1e-2
    batch: int = 64
    penalty: float = 1.0  # membrane penalty weight (0: none)
    rsnn_finetune_epochs: int = 8  # fine-tuning epochs per target (each scored on the validation set)
    cnn_finetune_epochs: int = 4
    finetune_lr: float = 1e-3  # Adam on the graph's float weights, through the chip model
    finetune_batch: int = 32
    finetune_penalty: float = 1.0  # membrane-headroom penalty weight in fine-tuning (0.1 left Xylo 1.1 points short, 1.2 % multi-spike)
    val_fraction: float = 0.15  # of the training split, held out: picks the fine-tuning epoch to keep
    rsnn_finetune_limit: int | None = None  # training samples fine-tuning sees (None: all)
    cnn_finetune_limit: int | None = 600  # the CNN's chip models (Speck's event-driven one) cost more per sample
    sample_size: int = 64  # samples for export verification and the fidelity report
    raster_index: int = 0  # which test sample the raster plot shows
    jobs: int = 2  # worker processes: the two networks train side by side, then target runs
    threads: int = 1  # torch threads per worker (on 2 loaded cores more threads were 8x slower)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cnn_channels"] = list(self.cnn_channels)
        return d


FULL = StudyConfig()
QUICK = replace(FULL, quick=True, train_limit=240, test_limit=100, rsnn_hidden=32, rsnn_epochs=3, rsnn_lr=2e-2, cnn_channels=(4, 8),
                cnn_epochs=2, cnn_lr=2e-2,
                rsnn_finetune_epochs=2, cnn_finetune_epochs=2, rsnn_finetune_limit=64, cnn_finetune_limit=64, sample_size=16)


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _require_stack() -> None:
    """Every optional package the study needs, or MissingDependencyError naming the install."""
    from ...frontends._common import TORCH_EXTRA

    for mod, pins in (("torch", TORCH_EXTRA), ("snntorch", TORCH_EXTRA), ("norse", "pip install --no-deps norse==1.1.0"),
                      ("sklearn", "pip install 'nirdeploy[study]'"),
                      ("matplotlib", "pip install 'nirdeploy[study]'")):
        try:
            __import__(mod)
        except ImportError as e:
            raise MissingDependencyError(mod, pins, f"needed by `nirdeploy study digits` ({e})") from None


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    idx = np.arange(n)
    if limit is None or limit >= n:
        return idx
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


@dataclass
class StudyData:
    """One encoding of the digits, split three ways: ``train`` (the snnTorch training and
    fine-tuning), ``val`` (held out from training: picks how many fine-tuning epochs to keep) and
    ``test`` (every accuracy in the table)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_data(cfg: StudyConfig) -> dict:
    """The two encodings of the digits with one split: ``{"rsnn": StudyData, "cnn": StudyData}``;
    the validation set is a stratified ``cfg.val_fraction`` of the (limited) training split."""
    from ..datasets import digits_events, digits_frames, split

    ev = digits_events(cfg.classes, steps_per_column=cfg.steps_per_column, tail_steps=cfg.scan_tail, seed=cfg.seed)
    fr = digits_frames(cfg.classes, upsample=1, tail_steps=cfg.frames_tail, seed=cfg.seed)
    if not np.array_equal(ev.y_test, fr.y_test) or not np.array_equal(ev.y_train, fr.y_train):
        raise NirDeployError("the two digits encodings do not share one split")  # a bug, not an input error
    sub = _subset(len(ev.y_train), cfg.train_limit, cfg.seed)
    tr, va = split(ev.y_train[sub], cfg.val_fraction, cfg.seed + 3)
    tr, va = sub[tr], sub[va]
    te = _subset(len(ev.y_test), cfg.test_limit, cfg.seed + 1)
    return {name: StudyData(d.x_train[tr], d.y_train[tr], d.x_train[va], d.y_train[va], d.x_test[te], d.y_test[te], d.description)
            for name, d in (("rsnn", ev), ("cnn", fr))}


# -- measurements ---------------------------------------------------------------------------------


def spike_entries(states: dict) -> tuple[int, int]:
    """(entries with >= 2 spikes, entries with >= 1 spike) over the spike counts a chip
    simulation recorded (``record=True``): Xylo's hidden ``"Spikes"`` (its outputs fire at most
    once per step), every Speck layer's ``"spikes"``, every Loihi 2 layer's ``"s"``."""
    arrays = []
    if isinstance(states.get("Spikes"), np.ndarray):
        arrays.append(states["Spikes"])
    for v in states.values():
        if isinstance(v, dict):
            arrays += [v[k] for k in ("spikes", "s") if isinstance(v.get(k), np.ndarray)]
    multi = sum(int(np.count_nonzero(a >= 2)) for a in arrays)
    fire = sum(int(np.count_nonzero(a >= 1)) for a in arrays)
    return multi, fire


def _share(multi: int, fire: int) -> float | None:
    return multi / fire if fire else None


def chip_accuracy(dep, x: np.ndarray, y: np.ndarray, *, chunk: int = 150, raster_index: int = 0) -> dict:
    """Bit-accurate simulation of ``dep`` on the test set in batches of ``chunk`` samples:
    accuracy (read from the chip's latency on), silent samples, multi-spike share (see
    :func:`spike_entries`), seconds, and the output of sample ``raster_index`` for the plot."""
    from ..compare import accuracy

    t0 = time.perf_counter()
    outs, multi, fire = [], 0, 0
    for i in range(0, len(x), chunk):
        res = dep.simulate(x[i:i + chunk], record=True)
        outs.append(np.asarray(res.output, dtype=np.float64))
        m, f = spike_entries(res.states)
        multi, fire = multi + m, fire + f
        del res
    out = np.concatenate(outs, 0)
    L = min(int(dep.artifact.latency_steps), out.shape[1] - 1)
    acc = accuracy(out, y, dep.readout, L, out.shape[1])
    return {"accuracy": acc["accuracy"], "silent_samples": acc["silent_samples"], "latency_steps": L, "readout": dep.readout,
            "multi_spike_share": _share(multi, fire), "multi_spike_entries": multi, "firing_entries": fire,
            "simulate_seconds": time.perf_counter() - t0,
            "raster": out[raster_index].reshape(out.shape[1], -1).tolist() if 0 <= raster_index < len(out) else None}


def _report_summary(rep) -> dict:
    errs = [v for v in rep.violations if v.severity == "error"]
    warns = [v for v in rep.violations if v.severity != "error"]
    return {"fits": bool(rep.fits), "violations": [str(v) for v in errs], "warnings": [str(v) for v in warns],
            "rules": sorted({v.rule for v in errs}), "warning_rules": sorted({v.rule for v in warns})}


# -- worker jobs (module level: they run in spawned processes) -----------------------------------


def _chip_job(job: dict) -> dict:
    """Compile one network for one target variant and simulate the test set."""
    import nirdeploy

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dep = nirdeploy.compile(job["graph"], target=job["target"], sample=job["sample"])
        compile_s = time.perf_counter() - t0
        out = {"compile_seconds": compile_s, **_report_summary(dep.report)}
        fid = dep.report.details.get("fidelity") if isinstance(dep.report.details, dict) else None
        if isinstance(fid, dict) and fid.get("predicted_agreement") is not None:
            out["predicted_agreement"] = fid["predicted_agreement"]
        if dep.fits:
            out.update(chip_accuracy(dep, job["x"], job["y"], raster_index=job["raster_index"]))
    out["seconds"] = time.perf_counter() - t0
    return out


def _finetune_call(job: dict, graph, epoch: int):
    """One epoch of ``nirdeploy.finetune`` (chip mode: the target's chip model) of ``graph`` with
    the study's settings, scored on the validation set; returns the
    :class:`~nirdeploy.torch.finetune.FinetuneResult`. Raises LookupError when this nirdeploy has
    no ``finetune``."""
    import nirdeploy

    fn = getattr(nirdeploy, "finetune", None)
    if fn is None:
        raise LookupError(FINETUNE_UNAVAILABLE)
    return fn(graph, job["target"], job["x_train"], job["y_train"], readout="spikes", epochs=1, lr=float(job["lr"]),
              batch_size=int(job["batch"]), membrane_penalty=float(job["penalty"]), seed=int(job["seed"]) + epoch,
              x_val=job["x_val"], y_val=job["y_val"], progress=False, threads=int(job.get("threads", 1)),
              chip_options=job.get("chip_options"))


def _finetune_job(job: dict) -> dict:
    """Fine-tune one network for one target variant, one epoch at a time, and keep the epoch
    (0: the compiled network as it was) whose chip accuracy on the validation set is highest
    (ties: the earlier); simulate the test set with what was kept. Every epoch's validation
    figures are in ``epochs``."""
    t0 = time.perf_counter()
    graph, kept, best, curve = job["graph"], None, None, []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for ep in range(int(job["epochs"])):
                res = _finetune_call(job, graph, ep)
                if ep == 0:
                    best = res.before["chip"]["accuracy"]
                    curve.append({"epoch": 0, "val_chip": best, "val_float": res.before["float"]["accuracy"]})
                h = res.history[-1]
                curve.append({"epoch": ep + 1, "val_chip": res.after["chip"]["accuracy"], "val_float": res.after["float"]["accuracy"],
                              "loss": h["loss"], "penalty": h["penalty"], "train_accuracy": h["train_accuracy"],
                              "val_chip_before": res.before["chip"]["accuracy"]})
                if res.after["chip"]["accuracy"] > best:
                    best, kept = res.after["chip"]["accuracy"], (ep + 1, res)
                graph = res.graph
    except LookupError as e:
        return {"status": "unavailable", "reason": str(e)}
    except NirDeployError as e:
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:2000], "seconds": time.perf_counter() - t0}
    out = {"status": "done", "train_seconds": time.perf_counter() - t0, "epochs": curve, "kept_epoch": kept[0] if kept else 0,
           "settings": res.settings}
    if kept is None:  # fine-tuning did not beat the compiled network on the validation set: it stays
        out.update({k: v for k, v in job["chip"].items() if k not in ("seconds", "compile_seconds")})
        out["seconds"] = time.perf_counter() - t0
        return out
    res = kept[1]
    dep = res.deployment
    out.update(_report_summary(dep.report))
    if job.get("save"):
        from ...graph.loading import save_nir

        save_nir(res.graph, job["save"])
        out["graph_file"] = os.path.basename(job["save"])
    if dep.fits:
        out.update(chip_accuracy(dep, job["x"], job["y"], raster_index=job["raster_index"]))
    out["seconds"] = time.perf_counter() - t0
    return out


def _worker_init(threads: int) -> None:
    os.environ["NIRDEPLOY_STUDY_WORKER"] = "1"
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)


def _strip(job: dict) -> dict:
    """What a worker needs of a job: everything but the parent's row object."""
    return {k: v for k, v in job.items() if k != "row"}


class _Pool:
    """Independent jobs in ``jobs`` spawned worker processes (1: in this process). The workers
    are registered with :func:`nirdeploy.outputs.register_child`, so a signal ends them too."""

    def __init__(self, jobs: int, threads: int = 1):
        self.jobs = max(1, int(jobs))
        self.threads = max(1, int(threads))
        self.pool = None

    def __enter__(self):
        if self.jobs > 1:
            import multiprocessing as mp

            from ...outputs import register_child

            env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
            try:  # one thread per worker: the workers are the parallelism
                os.environ.update({k: "1" for k in env})
                self.pool = mp.get_context("spawn").Pool(self.jobs, initializer=_worker_init, initargs=(self.threads,))
            finally:
                for k, v in env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            for p in getattr(self.pool, "_pool", []):
                register_child(p.pid, p.kill)
        return self

    def run(self, jobs: list, log=None) -> None:
        """Run ``jobs`` - ``(fn, job, done, label)`` tuples - and every job that the callbacks
        ``done(job, result) -> [more jobs]`` add, as workers become free; ``label`` is logged when
        a job is done. A job's exception is raised here (the pool is then terminated)."""
        queue = list(jobs)
        if self.pool is None:
            while queue:
                fn, job, done, label = queue.pop(0)
                r = fn(job)
                if log and label:
                    log(f"  {label}")
                queue += done(job, r)
            return
        pending = []
        while queue or pending:
            while queue:  # the pool queues what its workers cannot take yet
                fn, job, done, label = queue.pop(0)
                pending.append((self.pool.apply_async(fn, (_strip(job),)), job, done, label))
            time.sleep(0.05)
            for item in [p for p in pending if p[0].ready()]:
                pending.remove(item)
                res, job, done, label = item
                r = res.get()
                if log and label:
                    log(f"  {label}")
                queue += done(job, r)

    def __exit__(self, *exc):
        if self.pool is not None:
            from ...outputs import unregister_child

            procs = list(getattr(self.pool, "_pool", []))
            if exc[0] is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            for p in procs:
                unregister_child(p.pid)
        return False


# -- the study -----------------------------------------------------------------------------------


def _train_network(name: str, cfg: StudyConfig, data, log) -> tuple:
    from . import models

    if name == "rsnn":
        net = models.build_rsnn(data.x_train.shape[-1], cfg.rsnn_hidden, cfg.classes, beta=cfg.rsnn_beta, seed=cfg.seed)
        epochs, lr = cfg.rsnn_epochs, cfg.rsnn_lr
        arch = (f"Linear(16, {cfg.rsnn_hidden}) -> RLeaky({cfg.rsnn_hidden}, beta {cfg.rsnn_beta}, all-to-all recurrence) -> "
                f"Linear({cfg.rsnn_hidden}, {cfg.classes}) -> Leaky({cfg.classes}); subtractive reset, threshold 1, no biases")
    else:
        c1, c2 = cfg.cnn_channels
        net = models.build_cnn(data.x_train.shape[2:], cfg.cnn_channels, cfg.classes, seed=cfg.seed)
        epochs, lr = cfg.cnn_epochs, cfg.cnn_lr
        arch = (f"Conv2d(2, {c1}, 3, pad 1) -> IF -> AvgPool2d(2) -> Conv2d({c1}, {c2}, 3) -> IF -> Flatten -> "
                f"Linear -> IF({cfg.classes}); snnTorch Leaky(beta=1), reset to zero, threshold 1, no biases")
    log(f"training the {NETWORKS[name]['title']} in snnTorch ({epochs} epochs, {len(data.y_train)} samples): {arch}")
    t0 = time.perf_counter()
    hist = models.train(net, data.x_train, data.y_train, epochs=epochs, lr=lr, batch=cfg.batch, penalty=cfg.penalty, seed=cfg.seed,
                        log=lambda m: log("  " + m))
    train_s = time.perf_counter() - t0
    y_float = models.run_counts(net, data.x_test)
    return net, {"architecture": arch, "epochs": epochs, "lr": lr, "history": hist, "train_seconds": train_s}, y_float


def _export(net, data, cfg: StudyConfig, path: Path) -> tuple:
    """``nirdeploy.from_torch`` with the frontend's verification on the sample; a mismatch is
    recorded (figures and reasons) and the graph is still used, as ``--no-strict`` would."""
    import nirdeploy
    from ...frontends._common import ConversionWarning

    sample = data.x_test[: cfg.sample_size].astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConversionWarning)
        graph = nirdeploy.from_torch(net, sample, library="snntorch", dt=cfg.dt, strict=False, path=str(path))
    found = [str(w.message) for w in caught if issubclass(w.category, ConversionWarning)]
    return graph, {"file": path.name, "dt": cfg.dt, "verified_on": int(len(sample)), "exact": not found, "warnings": found}


def _float_runs(path: Path, data, y_float: np.ndarray) -> dict:
    """Float accuracy of the trained model and of the exported graph in the reference, snnTorch
    and Norse (``nirdeploy.compare``), with each run's spike agreement against the reference."""
    import nirdeploy

    from ..compare import accuracy

    with contextlib.redirect_stdout(sys.stderr):
        cmp = nirdeploy.compare(str(path), data.x_test, runs=["reference", "snntorch", "norse"], labels=data.y_test)
    runs = {"snntorch (trained model)": {**accuracy(y_float, data.y_test), "kind": "model"}}
    for row in cmp["rows"]:
        r = {"kind": row["kind"], "error": row.get("error")}
        for k in ("accuracy", "silent_samples", "spike_agreement", "first_divergent_step"):
            if k in row:
                r[k] = row[k]
        runs[row["name"]] = r
    return {"runs": runs, "explanations": cmp["explanations"], "text": cmp["text"]}


def _network_job(job: dict) -> dict:
    """Train one network, export it to ``job["path"]`` and run the float libraries on the test set
    (a worker job: everything it needs is in ``job``, its progress lines come back in ``log``)."""
    lines: list[str] = []
    cfg, name, d = job["config"], job["name"], job["data"]
    t = time.perf_counter()
    net, info, y_float = _train_network(name, cfg, d, lines.append)
    info["stages"] = {"train": time.perf_counter() - t}
    t = time.perf_counter()
    path = Path(job["path"])
    _, exp = _export(net, d, cfg, path)
    info["export"] = exp
    if exp["warnings"]:
        lines.append(f"  export: the graph differs from the snnTorch model on the sample (kept, see results.json): "
                     f"{exp['warnings'][0].splitlines()[0]}")
    info["float"] = _float_runs(path, d, y_float)
    info["stages"]["export and float runs"] = time.perf_counter() - t
    fl = info["float"]["runs"]
    lines.append("  float accuracy: " + ", ".join(f"{k} {100 * v['accuracy']:.1f} %" for k, v in fl.items() if "accuracy" in v))
    return {"info": info, "log": lines}


def _intended(network: str, target: str) -> bool:
    return target.split(":")[0] in NETWORKS[network]["targets"]


def run_digits(out: str | os.PathLike | None = None, *, quick: bool = False, config: StudyConfig | None = None,
               readme: str | os.PathLike | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run the digits study (see the module docstring) and return the results (the content of
    ``results.json``). ``out``: folder to write (new or empty; written atomically at the end, so
    a failed run leaves nothing; a study folder is never replaced: it is not a compiled folder,
    which is all ``--force`` elsewhere may replace); ``quick``: the small CI configuration (:data:`QUICK`, a few
    minutes; checks the pipeline, not the accuracy); ``config`` overrides both; ``readme``: a
    README whose study table (between :data:`~nirdeploy.evaluation.study.report.BEGIN` and
    ``END``) is rewritten from the results. ``log``: progress lines (default: stderr).
    With ``config.jobs > 1`` the work runs in spawned worker processes, so a script that calls
    this must do so under ``if __name__ == "__main__":`` (Python's rule for spawn).

    Raises MissingDependencyError (torch, snnTorch, Norse, scikit-learn or matplotlib missing),
    OutputError (``out`` or ``readme`` cannot be written; checked before the work starts),
    UsageError (a bad argument)."""
    from ...outputs import atomic_folder, check_output_file, check_output_folder, signal_guard
    from . import report

    cfg = config or (QUICK if quick else FULL)
    if not isinstance(cfg, StudyConfig):
        raise UsageError("config must be a StudyConfig")
    log = log or _default_log
    if out is not None:
        if os.path.isdir(out) and not os.path.islink(out) and any(True for _ in os.scandir(out)):
            from ...errors import OutputError

            raise OutputError(f"output folder {out} already exists and is not empty; choose a new folder (a study never replaces one)")
        check_output_folder(out, inputs=[readme] if readme is not None else [])
    if readme is not None:
        check_output_file(readme, force=True)  # an existing README is the point: its study block is rewritten
        report.readme_block(report.read_readme(readme))  # the markers must be there
    _require_stack()

    import torch

    t_start = time.perf_counter()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    results: dict = {"study": "digits", "config": cfg.to_dict(), "networks": {}, "rows": [], "stages": {}}
    import nirdeploy

    results["nirdeploy_version"] = nirdeploy.__version__
    results["versions"] = _versions()
    with signal_guard(), contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_folder(out, inputs=[readme] if readme is not None else [])) if out is not None else Path(stack.enter_context(_tempdir()))
        t = time.perf_counter()
        data = load_data(cfg)
        results["data"] = {k: {"description": d.description, "train": int(len(d.y_train)), "validation": int(len(d.y_val)),
                               "test": int(len(d.y_test)), "sample_shape": list(d.shape)} for k, d in data.items()}
        results["stages"]["data"] = time.perf_counter() - t

        rows: list[dict] = []
        n_test = len(data["rsnn"].y_test)

        def net_done(job: dict, r: dict) -> list:
            """A network is trained: record it, check every target, queue its chip runs."""
            name = job["name"]
            for line in r["log"]:
                log(line)
            info = r["info"]
            info["title"] = NETWORKS[name]["title"]
            info["intended_targets"] = list(NETWORKS[name]["targets"])
            results["networks"][name] = info
            d = data[name]
            new = []
            for rep in nirdeploy.check_all(job["path"]):
                spec = f"{rep.target}:{rep.variant}"
                row = {"network": name, "target": spec, "intended": _intended(name, spec), "check": _report_summary(rep)}
                rows.append(row)
                if not (rep.fits or row["intended"]):
                    row["status"] = "does not fit"
                    continue
                new.append((_chip_job, {"row": row, "graph": job["path"], "target": spec, "sample": d.x_test[: cfg.sample_size],
                                        "x": d.x_test, "y": d.y_test, "raster_index": cfg.raster_index}, chip_done,
                            f"{spec} ({name}): compiled and simulated {n_test} test samples"))
            return new

        def chip_done(job: dict, r: dict) -> list:
            """A chip run is back: record it; a fitting one is queued for fine-tuning."""
            row = job["row"]
            row["chip"] = r
            row["status"] = "fits" if r["fits"] else "does not fit"
            if not r["fits"]:
                return []
            name = row["network"]
            d = data[name]
            epochs, limit = getattr(cfg, f"{name}_finetune_epochs"), getattr(cfg, f"{name}_finetune_limit")
            tr = _subset(len(d.y_train), limit, cfg.seed + 2)
            save = tmp / f"{name}-{job['target'].replace(':', '-')}-finetuned.nir"
            ft = {**job, "x_train": d.x_train[tr], "y_train": d.y_train[tr], "epochs": epochs, "seed": cfg.seed,
                  "lr": cfg.finetune_lr, "batch": cfg.finetune_batch, "penalty": cfg.finetune_penalty,
                  "x_val": d.x_val, "y_val": d.y_val, "save": str(save), "threads": cfg.threads, "chip": r}
            return [(_finetune_job, ft, finetune_done, f"{job['target']} ({name}): fine-tuned ({epochs} epochs on "
                                                         f"{len(tr)} samples) and simulated again")]

        def finetune_done(job: dict, r: dict) -> list:
            job["row"]["finetune"] = r
            return []

        first = [(_network_job, {"name": name, "config": cfg, "data": data[name], "path": str(tmp / f"{name}.nir")}, net_done,
                  f"{NETWORKS[name]['title']}: trained, exported and run in every float library") for name in NETWORKS]
        log(f"training {len(first)} networks, then compiling, simulating and fine-tuning for every target that fits "
            f"({cfg.jobs} worker processes, {n_test} test samples)")
        t = time.perf_counter()
        with _Pool(cfg.jobs, cfg.threads) as pool:
            pool.run(first, log)
        results["stages"]["pipeline"] = time.perf_counter() - t
        for name, info in results["networks"].items():
            for k, v in info.pop("stages").items():
                results["stages"][f"{k} {name}"] = v
        order = {n: i for i, n in enumerate(NETWORKS)}
        rows.sort(key=lambda r: (order[r["network"]], r["target"]))
        for row in rows:  # the row objects went to the workers' jobs; nothing of them is kept twice
            row.pop("row", None)

        results["rows"] = rows
        results["goal"] = report.goal(results, GOAL_POINTS)
        results["seconds"] = time.perf_counter() - t_start
        results["machine"] = {"cpus": os.cpu_count(), "load_average_start": list(load0) if load0 else None,
                              "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                              "torch_threads": cfg.threads, "workers": cfg.jobs}
        t = time.perf_counter()
        report.write_outputs(tmp, results, data)
        results["stages"]["outputs"] = time.perf_counter() - t
        if readme is not None:
            report.update_readme(readme, results)
    log(report.markdown_table(results))
    log(report.goal_line(results))
    return results


@contextlib.contextmanager
def _tempdir():
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nirdeploy-study-") as d:
        yield d


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("torch", "snntorch", "norse", "nir", "nirtorch", "scikit-learn", "numpy", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
