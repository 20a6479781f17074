"""Chip-aware fine-tuning: train a NIR graph's weights through a target's chip model (or through
the float reference semantics) and return the new graph and its compiled deployment.

``mode="chip"`` trains :func:`nirdeploy.torch.chip.chip_model` of the graph: the loss sees the
chip's integers and its exact integer dynamics (multi-spike steps, saturation, latency, ...), the
gradient reaches the graph's float weights through straight-through estimators. The written-back
graph compiles to exactly the integers the chip model ran at the end (checked on every run).
``mode="float"`` trains the graph's reference semantics (:func:`nirdeploy.torch.to_torch`), for
users who only want the regulariser. Weights that are exactly 0 in the graph stay 0 (the
network's structure, and so its fit, does not change).

Loss: cross-entropy of the readout values against the labels, plus ``membrane_penalty`` times
the mean over spiking layers of ``relu(v / threshold - membrane_margin)**2`` (v before the spikes
of the step): a neuron whose membrane stays below twice its threshold fires at most once per
step, which is what removes Xylo's multi-spike steps (``shared/chips/nir.md``, last section).
The readout is the core's (:mod:`nirdeploy.evaluation.compare`): spike counts (``"spikes"``;
the decision is the spike-count argmax) or the maximum membrane over time (``"vmem"``), read
over the steps ``[latency, T)`` of the chip output (``[0, T)`` of the float model).

Deterministic on CPU: the sample order comes from ``numpy.random.default_rng(seed)``, torch is
seeded with ``seed``, and nothing else is random; two runs with the same arguments and thread
count give identical graphs.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import TargetError, UsageError
from ..graph.ir import Graph
from .chip import ChipModel, GraphWeights
from .neurons import SpikeRule

__all__ = ["finetune", "FinetuneResult", "MODES", "LOSSES"]

MODES = ("chip", "float")
LOSSES = ("cross_entropy",)


@dataclass
class FinetuneResult:
    """``graph``: the fine-tuned NIR graph (the input graph with trained weights); ``deployment``:
    it compiled for the target (None in float mode without a target); ``history``: per epoch
    ``loss``, ``penalty`` (the membrane term, before its weight) and ``train_accuracy`` (of the
    trained model's own forward pass); ``before`` / ``after``: accuracy on the evaluation set
    (``x_val`` or the training set) of the chip (bit-accurate simulator of the deployment) and of
    the float reference, each an :func:`~nirdeploy.evaluation.compare.accuracy` dict;
    ``settings``: what was run."""

    graph: Graph
    deployment: Any
    history: list[dict] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "history": self.history, "before": self.before, "after": self.after, "notes": self.notes}

    def render(self) -> str:
        from ..render import render_rows

        def pct(a):
            return "-" if a is None else f"{100 * a['accuracy']:.1f} %"

        rows = [[k, pct(self.before.get(k)), pct(self.after.get(k))] for k in ("float", "chip") if k in self.before]
        s = self.settings
        title = (f"Fine-tuning ({s['mode']}) for {s.get('target') or 'the reference'}: {s['epochs']} epoch(s) on {s['train_samples']} samples, "
                 f"accuracy on {s['eval_samples']} {'validation' if s['validation'] else 'training'} samples, readout {s['readout']}")
        text = render_rows(title, ["model", "before", "after"], rows)
        # what makes the written deployment differ from the float network is said here, not only
        # in report.json: the compile report's warnings and outputs that stay silent
        dep = self.deployment
        for n in getattr(dep, "notices", None) or []:
            text += f"notice: {n}\n"
        if dep is not None:
            for v in dep.report.warnings:
                text += f"warning: {v}\n"
        for k in ("chip", "float"):
            a = self.after.get(k)
            if a and a.get("silent_samples"):
                text += (f"warning: after fine-tuning the {k} output is silent on {a['silent_samples']} of {s['eval_samples']} "
                         "samples (no output activity; counted as wrong)\n")
        return text


class _Recording(SpikeRule):
    """A reference spike rule that keeps v / threshold before the spike of every step."""

    def __init__(self, inner: SpikeRule):
        self.inner = inner
        self.name = inner.name
        self.buf: list[torch.Tensor] = []

    def __call__(self, v, threshold, v_reset):
        safe = torch.where(threshold.abs() > 0, threshold.abs(), torch.ones_like(threshold))
        self.buf.append(v / safe)
        return self.inner(v, threshold, v_reset)


class _FloatModel(torch.nn.Module):
    """The reference semantics of a graph with its weights as :class:`GraphWeights` (so they can be
    written back), recording membranes for the penalty."""

    def __init__(self, graph: Graph, dt, reset, scheme):
        super().__init__()
        from . import to_torch
        from .neurons import ReferenceNeuron

        self.gm = to_torch(graph, dt=dt, reset=reset, scheme=scheme)
        self.weights = GraphWeights(graph, compile_fn=None)
        for key, name in self.weights.names.items():
            mod = self.gm.module_of(name)
            if getattr(mod, "weight", None) is None or tuple(mod.weight.shape) != tuple(self.weights.params[key].shape):
                raise TargetError(f"{name}: the reference module's weight does not match the graph's")  # pragma: no cover
            mod.weight = self.weights.params[key]
            if getattr(mod, "bias", None) is not None:
                mod.bias.requires_grad_(False)
        self.rules = []
        for m in self.gm.nodes.values():
            if isinstance(m, ReferenceNeuron) and m.spiking:
                m.spike_rule = _Recording(m.spike_rule)
                self.rules.append(m.spike_rule)
        out = self.gm.graph.nodes[self.gm.output_name]
        pred = [s for s, d in self.gm.graph.edges if d == self.gm.output_name]
        spiking = any(self.gm.graph.nodes[p].type in ("IF", "LIF", "CubaLIF", "Threshold") for p in pred)
        self.readout = "spikes" if spiking or not pred else "vmem"
        self.latency_steps = 0
        del out

    def forward(self, x, record: bool = False):
        for r in self.rules:
            r.buf = []
        y = self.gm(torch.as_tensor(np.asarray(x, dtype=np.float64)) if not isinstance(x, torch.Tensor) else x.to(torch.float64))
        if not record:
            return y
        B = y.shape[0]
        mem = [torch.stack(r.buf, 1).reshape(B, len(r.buf), -1) for r in self.rules if r.buf]
        return y, {"membrane": mem}

    def to_graph(self) -> Graph:
        return self.weights.to_graph()


def _values(y: torch.Tensor, readout: str, start: int) -> torch.Tensor:
    w = y[:, start:].reshape(y.shape[0], y.shape[1] - start, -1)
    return w.sum(1) if readout == "spikes" else w.max(1).values


def _float_arg(name: str, value, lo: float, *, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < lo or (strict and v == lo):
        raise UsageError(f"{name} must be a finite number {'>' if strict else '>='} {lo:g}, got {value!r}")
    return v


def _labels(y, n: int, what: str) -> np.ndarray:
    from ..inputs import check_path, load_npy

    if isinstance(y, (str, bytes, os.PathLike)):
        y = load_npy(check_path(y, what), what=what)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise UsageError(f"{what} must be one integer label per sample ({n}), got shape {y.shape}")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise UsageError(f"{what} must be integer class labels, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise UsageError(f"{what} must be class indices >= 0")
    return y.astype(np.int64)


class _Bar:
    """A rich progress bar on stderr when it is a terminal (``progress=None``), a callback, or nothing."""

    def __init__(self, progress, total: int, label: str):
        self.cb = progress if callable(progress) else None
        self.total = total
        self.bar = None
        if progress is None and sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def __call__(self, done: int, info: str = "") -> None:
        if self.cb is not None:
            self.cb(done, self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=info or None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def finetune(graph, target: str | None = "xylo", x_train=None, y_train=None, *, readout: str | None = None, epochs: int = 10,
             loss: str | Callable = "cross_entropy", membrane_penalty: float = 0.0, membrane_margin: float = 2.0, lr: float = 1e-3,
             batch_size: int = 32, seed: int = 0, mode: str = "chip", x_val=None, y_val=None, dt: float | None = None,
             reset: str | None = None, scheme: str = "euler", quantization: str = "channel", target_options: dict | None = None,
             chip_options: dict | None = None, progress=None, threads: int | None = 1) -> FinetuneResult:
    """Fine-tune ``graph`` (path, ``nir.NIRGraph`` or Graph) for ``target`` on ``x_train``
    (batch, time, *input_shape) event counts and ``y_train`` (batch,) class labels (arrays or
    ``.npy`` paths); see the module docstring. Returns a :class:`FinetuneResult`.

    ``mode``: ``"chip"`` (the target's chip model) or ``"float"`` (the reference semantics;
    ``target`` may then be None). ``readout``: ``"spikes"`` or ``"vmem"`` (default: the
    compiled network's). ``loss``: ``"cross_entropy"`` or a function ``(values (batch,
    n_out), labels (batch,) long) -> scalar tensor``. ``lr``: Adam's learning rate on the float
    weights. ``x_val``, ``y_val``: the evaluation set of ``before``/``after`` (default: the
    training set). ``dt``, ``reset``, ``scheme``, ``quantization``, ``target_options``: as
    :func:`nirdeploy.compile`; ``chip_options``: the target's chip-model options (Speck:
    ``{"mode": "binned"}``). ``progress``: None (a bar on stderr when it is a terminal), False,
    or ``callable(batches_done, batches_total)``. ``threads``: torch's intra-op threads during
    the run (default 1: the chip models step small tensors, where more threads cost more than
    they give on a loaded machine; None leaves torch's setting; results are deterministic for a
    given count); restored afterwards.

    Raises UsageError (bad argument or data), DoesNotFitError (the network does not fit the
    target), UnsupportedError (no chip model, or a structure the chip model does not cover),
    MissingDependencyError (no torch), and the errors of :func:`nirdeploy.compile`."""
    from ..api import _input_shape, load_graph
    from ..evaluation.compare import READOUTS
    from ..inputs import check_callable, check_choice, check_int

    mode = check_choice("mode", mode, MODES)
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    if readout is not None:
        check_choice("readout", readout, READOUTS)
    epochs = check_int("epochs", epochs, 1, 1_000_000)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    if threads is not None:
        threads = check_int("threads", threads, 1, 1024)
    lr = _float_arg("lr", lr, 0.0, strict=True)
    membrane_penalty = _float_arg("membrane_penalty", membrane_penalty, 0.0)
    membrane_margin = _float_arg("membrane_margin", membrane_margin, 0.0)
    if progress is not None and progress is not False:
        check_callable("progress", progress)
    if chip_options is not None and not isinstance(chip_options, dict):
        raise UsageError("chip_options must be a mapping of option names to values")
    if target is None and mode == "chip":
        raise UsageError("mode 'chip' needs a target")
    if target is not None and not isinstance(target, str):
        raise UsageError(f"target must be a string such as 'xylo:audio3', got {target!r}")
    if x_train is None or y_train is None:
        raise UsageError("x_train and y_train are required")
    if (x_val is None) != (y_val is None):
        raise UsageError("x_val and y_val go together")
    if mode == "chip":
        from ..backend.target import parse_target_spec
        from .chip import require_chip_model

        require_chip_model(parse_target_spec(target)[0])  # before reading the graph and the data

    g = load_graph(graph)
    in_shape = _input_shape(g)
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(g, in_shape, target, x_train, y_train, x_val, y_val, readout, epochs, loss, membrane_penalty, membrane_margin, lr,
                    batch_size, seed, mode, dt, reset, scheme, quantization, target_options, chip_options, progress)
    finally:
        torch.set_num_threads(saved)


def _run(g, in_shape, target, x_train, y_train, x_val, y_val, readout, epochs, loss, membrane_penalty, membrane_margin, lr, batch_size,
         seed, mode, dt, reset, scheme, quantization, target_options, chip_options, progress) -> FinetuneResult:
    from ..api import compile as _compile
    from ..inputs import check_events, check_path, load_npy
    from .chip import chip_model

    def events(x, what):
        if isinstance(x, (str, bytes, os.PathLike)):
            x = load_npy(check_path(x, what), what=what)
        return check_events(x, in_shape, what=what)

    x_train = events(x_train, "x_train")
    y_train = _labels(y_train, x_train.shape[0], "y_train")
    if x_val is not None:
        x_val = events(x_val, "x_val")
        y_val = _labels(y_val, x_val.shape[0], "y_val")

    torch.manual_seed(seed)
    if mode == "chip":
        model = chip_model(g, target, dt=dt, reset=reset, scheme=scheme, quantization=quantization, target_options=target_options,
                           **(chip_options or {}))
        cs = model.compile_settings
        dt, reset, target = cs["dt"], cs["reset"], cs["target"]
    else:
        from ..graph.discretize import resolve_dt, resolve_reset

        dt = resolve_dt(g, dt)[0]
        reset = resolve_reset(g, reset)[0]
        model = _FloatModel(g, dt, reset, scheme)
    readout = readout or model.readout
    latency = int(model.latency_steps)
    T = int(x_train.shape[1])
    if latency >= T:
        raise UsageError(f"the input has {T} time steps; the chip's output lags the graph's by {latency} (latency): give more steps")

    def deploy(graph_now: Graph):
        if target is None:
            return None
        return _compile(graph_now, target=target, dt=dt, reset=reset, scheme=scheme, quantization=quantization,
                        target_options=target_options)

    xe, ye = (x_val, y_val) if x_val is not None else (x_train, y_train)
    before = _evaluate(g, deploy(g), xe, ye, readout, dt, reset, scheme)
    model.weights.keep_zeros()
    params = [p for p in model.weights.params.values()]
    if not params:
        raise UsageError("the graph has no Affine, Linear or Conv2d weights to train")
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    n = x_train.shape[0]
    per_epoch = -(-n // batch_size)
    bar = _Bar(progress, epochs * per_epoch, "fine-tuning")
    history = []
    yt = torch.as_tensor(y_train)
    done = 0
    try:
        model.train()
        for ep in range(epochs):
            order = rng.permutation(n)
            tot_loss = tot_pen = 0.0
            correct = 0
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                y, rec = model(torch.as_tensor(x_train[idx], dtype=torch.float64), record=True)
                vals = _values(y, readout, latency if mode == "chip" else 0)
                lab = yt[idx]
                if callable(loss):
                    l_main = loss(vals, lab)
                else:
                    l_main = torch.nn.functional.cross_entropy(vals, lab)
                pen = torch.zeros((), dtype=torch.float64)
                mem = rec.get("membrane", [])
                if membrane_penalty > 0 and mem:
                    pen = sum(torch.relu(m - membrane_margin).pow(2).mean() for m in mem) / len(mem)
                total = l_main + membrane_penalty * pen
                if not torch.isfinite(total):
                    raise UsageError(f"the loss is not finite in epoch {ep + 1} (lr {lr:g} too large?)")
                opt.zero_grad()
                total.backward()
                opt.step()
                tot_loss += float(l_main.detach()) * len(idx)
                tot_pen += float(pen.detach()) * len(idx)
                with torch.no_grad():
                    v = vals.detach()
                    silent = (v <= 0).all(1) if readout == "spikes" else (v == 0).all(1)
                    correct += int(((v.argmax(1) == lab) & ~silent).sum())
                done += 1
                bar(done, f"epoch {ep + 1}/{epochs}")
            history.append({"epoch": ep + 1, "loss": tot_loss / n, "penalty": tot_pen / n, "train_accuracy": correct / n})
    finally:
        bar.close()
    model.eval()
    new = model.to_graph()
    dep = deploy(new)
    notes = []
    if mode == "chip":
        _check_round_trip(model, dep)
        notes.append("the fine-tuned graph compiles to exactly the integers the chip model was trained on (checked)")
    after = _evaluate(new, dep, xe, ye, readout, dt, reset, scheme)
    settings = {"mode": mode, "target": target, "dt": dt, "reset": reset, "scheme": scheme, "quantization": quantization,
                "target_options": dict(target_options or {}), "chip_options": dict(chip_options or {}), "readout": readout,
                "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"), "epochs": epochs, "lr": lr,
                "batch_size": batch_size, "membrane_penalty": membrane_penalty, "membrane_margin": membrane_margin, "seed": seed,
                "train_samples": int(n), "eval_samples": int(xe.shape[0]), "validation": x_val is not None,
                "latency_steps": latency, "torch_threads": torch.get_num_threads()}
    return FinetuneResult(new, dep, history, before, after, settings, notes)


def _evaluate(graph: Graph, dep, x, y, readout, dt, reset, scheme) -> dict:
    """Accuracy of the chip (the deployment's bit-accurate simulator) and of the float reference."""
    from ..evaluation.compare import accuracy
    from ..sim.reference import simulate_reference

    T = x.shape[1]
    out: dict = {}
    L = 0
    if dep is not None:
        L = int(dep.artifact.latency_steps)
        out["chip"] = accuracy(dep.simulate(x), y, readout, L, T)
        ref = dep.simulate_reference(x)
    else:
        ref = simulate_reference(graph, x, dt, scheme=scheme, reset=reset).output
    out["float"] = accuracy(ref, y, readout, 0, T - L)
    return out


def _check_round_trip(model: ChipModel, dep) -> None:
    """The compiled fine-tuned graph must run exactly the integers the chip model ran."""
    from .chip import chip_model

    mine = model.quantized()
    theirs = chip_model(dep).quantized()
    bad = sorted(k for k in set(mine) | set(theirs) if k not in mine or k not in theirs or not np.array_equal(mine[k], theirs[k]))
    if bad:
        raise TargetError(f"target {dep.target.name!r}: the fine-tuned graph compiles to other integers than the chip model ran "
                          f"({', '.join(bad[:6])}); please report this")
