"""What the three library frontends share: lazy imports, tracing with nirtorch, repairs on the
IR, and the check that an exported graph reproduces the model.

Export pipeline (``nirdeploy.from_torch``), for every library:

1. a deep copy of the model in ``eval()`` mode (the caller's model is never modified), BatchNorm
   folded into the preceding Conv/Linear on request (``fold_batchnorm=True``, torch's own
   ``fuse_*_bn_eval``);
2. nirtorch's module tracer (``nirtorch.extract_nir_graph``, the one the libraries' exporters
   use), with nirdeploy's module -> NIR node map (each frontend's docstring lists the library
   exporter's defects and says why its private per-module function is not called), and an error
   naming every module that NIR cannot express, with a hint;
3. conversion into nirdeploy's IR (never ``nir.NIRGraph.infer_types``, which fails on batch
   dims and scalar parameters), dropout/identity nodes bypassed, scalar parameters broadcast to
   the layer shape, training dt and reset recorded in the metadata;
4. verification: the library's own forward on ``sample`` against nirdeploy's reference
   simulator on the graph. A spike mismatch above :data:`EXPORT_TOLERANCE` raises
   :class:`ExportMismatchError` (``strict=True``) or warns (``strict=False``) with the figures
   and the reason when one is known. Behaviour the graph cannot have (a late reset, a recurrent
   bias from another step, a membrane clamp) gives a :class:`ConversionWarning` even when the
   sample happens to agree (:func:`settle`).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import MissingDependencyError, NirDeployError, UnsupportedError, UsageError
from ..graph.ir import Graph, Node
from ..inputs import check_flag, check_real_array

__all__ = [
    "TORCH_EXTRA",
    "EXPORT_TOLERANCE",
    "ConversionWarning",
    "ExportMismatchError",
    "require",
    "samna_is_stub",
    "Unsupported",
    "PASSTHROUGH",
    "trace_to_ir",
    "export_arguments",
    "verify_export",
    "spike_agreement",
]

TORCH_EXTRA = "pip install 'nirdeploy[torch]'"
#: fraction of spike events (union of both rasters) that may differ between the library's forward
#: and the reference when an export is verified: float64 on both sides, so only summation-order
#: rounding at a threshold tie can flip a spike; 1e-3 leaves room for such ties, not for a
#: semantic difference (those change several percent of the spikes).
EXPORT_TOLERANCE = 1e-3

#: the module -> node maps return this for modules that pass their input through (Dropout in eval
#: mode, Identity); such nodes are bypassed in the IR
PASSTHROUGH = "passthrough"


class ConversionWarning(UserWarning):
    """A conversion that changes the network's behaviour, with the figures."""


class ExportMismatchError(NirDeployError):
    """The exported graph does not reproduce the model on the sample (figures and reason)."""


@dataclass
class Unsupported:
    """A module NIR (or this frontend) cannot express, and how to change the model."""

    what: str
    hint: str


def samna_is_stub() -> bool:
    """True when the ``samna`` on this machine is SynSense's PyPI installer stub (read, not
    imported: importing it reaches for the internet)."""
    spec = importlib.util.find_spec("samna")
    if spec is None or not spec.origin:
        return False
    try:
        return "PYPI_SAMNA" in Path(spec.origin).read_text(errors="replace")
    except OSError:
        return False


def require(module: str, pins: str, library: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or ""
        top = missing.split(".")[0]
        if top and top != module.split(".")[0] and importlib.util.find_spec(module.split(".")[0]) is not None:
            # the library is there (installed with --no-deps) but one of its own imports is not:
            # name that package, the install command of the library would not bring it
            dist = _IMPORT_TO_DIST.get(top, top)
            raise MissingDependencyError(library or module, f"pip install {dist}",
                                         f"it is installed, but its dependency {dist!r} is missing ({e})") from None
        raise MissingDependencyError(library or module, f"{TORCH_EXTRA}  (or: pip install {pins})", str(e)) from None


#: import names whose distribution on the package index is named differently
_IMPORT_TO_DIST = {"pylab": "matplotlib", "mpl_toolkits": "matplotlib", "sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}


def export_arguments(model, sample, strict, fold_batchnorm, library: str):
    """What every frontend's ``export`` checks before any work: ``model`` is a
    ``torch.nn.Module``, ``strict`` and ``fold_batchnorm`` are bools, and ``sample`` is a finite
    real array or tensor of shape (batch, time, *input_shape) with batch, time >= 1
    (:func:`nirdeploy.inputs.check_real_array`). Returns the sample as a float64 tensor.
    Raises :class:`UsageError`."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{library}: the model must be a torch.nn.Module, got {type(model).__name__}")
    check_flag("strict", strict)
    check_flag("fold_batchnorm", fold_batchnorm)
    if isinstance(sample, torch.Tensor):
        if sample.is_complex():
            raise UsageError(f"sample holds complex numbers (dtype {sample.dtype}); expected real numbers")
        sample = sample.detach().cpu().numpy()
    x = check_real_array(sample, what="sample", min_ndim=3)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _fold_batchnorm(model):
    """Fold every BatchNorm that directly follows a Conv/Linear inside an nn.Sequential."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    def walk(mod):
        for name, child in list(mod.named_children()):
            walk(child)
        if isinstance(mod, torch.nn.Sequential):
            keys = list(mod._modules)
            for a, b in zip(keys, keys[1:]):
                m1, m2 = mod._modules[a], mod._modules[b]
                if isinstance(m2, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    if isinstance(m1, (torch.nn.Conv1d, torch.nn.Conv2d)):
                        mod._modules[a] = fuse_conv_bn_eval(m1, m2)
                    elif isinstance(m1, torch.nn.Linear):
                        mod._modules[a] = fuse_linear_bn_eval(m1, m2)
                    else:
                        continue
                    mod._modules[b] = torch.nn.Identity()

    walk(model)
    return model


def _replace_passthroughs(model) -> None:
    """Dropout (eval) and Identity return their input object itself, which nirtorch's tracer
    turns into a self-loop; replace them by a module that copies (bypassed after tracing)."""
    import torch

    class _PassThrough(torch.nn.Module):
        nirdeploy_passthrough = True

        def forward(self, x):
            return x.clone()

    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Identity)
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, kinds):
                mod._modules[name] = _PassThrough()


def common_node(module, dt: float):
    """Map the plain torch layers every library uses (or None when not one of them)."""
    import nir
    import torch

    nn = torch.nn

    def arr(t):
        return t.detach().cpu().double().numpy()

    if getattr(module, "nirdeploy_passthrough", False) or isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)):
        return PASSTHROUGH
    if isinstance(module, nn.Linear):
        if module.bias is None:
            return nir.Linear(weight=arr(module.weight))
        return nir.Affine(weight=arr(module.weight), bias=arr(module.bias))
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            return Unsupported(f"{type(module).__name__}(padding_mode={module.padding_mode!r})", "NIR convolutions pad with zeros")
        cls = nir.Conv1d if isinstance(module, nn.Conv1d) else nir.Conv2d
        pad = module.padding if isinstance(module.padding, str) else tuple(int(p) for p in module.padding)
        return cls(
            input_shape=None,
            weight=arr(module.weight),
            stride=tuple(module.stride) if cls is nir.Conv2d else int(module.stride[0]),
            padding=pad if cls is nir.Conv2d or isinstance(pad, str) else pad[0],
            dilation=tuple(module.dilation) if cls is nir.Conv2d else int(module.dilation[0]),
            groups=int(module.groups),
            bias=arr(module.bias) if module.bias is not None else np.zeros(module.weight.shape[0]),
        )
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode or not module.count_include_pad or module.divisor_override:
            return Unsupported("AvgPool2d with ceil_mode, count_include_pad=False or divisor_override",
                               "use AvgPool2d(k, stride, padding) with the defaults (NIR's AvgPool2d = SumPool2d then 1/k^2)")
        k = _pair(module.kernel_size)
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(_pair(module.stride or k)), padding=np.array(_pair(module.padding)))
    if isinstance(module, nn.LPPool2d):
        if float(module.norm_type) != 1.0 or module.ceil_mode:
            return Unsupported(f"LPPool2d(norm_type={module.norm_type})", "only LPPool2d(1, k) (a sum pool) has a NIR equivalent (SumPool2d)")
        k = _pair(module.kernel_size)
        return nir.SumPool2d(kernel_size=np.array(k), stride=np.array(_pair(module.stride or k)), padding=np.array([0, 0]))
    if isinstance(module, nn.Flatten):
        # NIR has no batch axis: torch dims shift down by one
        s = module.start_dim - 1 if module.start_dim > 0 else module.start_dim
        e = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
        return nir.Flatten(input_type=None, start_dim=s, end_dim=e)
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return Unsupported(type(module).__name__, "NIR has no max pooling: use a sum pool (sinabs.layers.SumPool2d or "
                           "nn.LPPool2d(1, k)), nn.AvgPool2d, or a strided convolution, and retrain")
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return Unsupported(type(module).__name__, "NIR has no BatchNorm: pass fold_batchnorm=True to fold it into the "
                           "preceding Conv/Linear (eval-mode statistics), or remove it")
    return None


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def trace_to_ir(
    model,
    sample_step,
    node_map: Callable[[Any], Any],
    *,
    ignore_dims: list[int],
    ignore_submodules_of: list | None = None,
    fold_batchnorm: bool = False,
    library: str,
    reset_states: Callable[[Any], None] | None = None,
) -> Graph:
    """Trace ``model`` on one step of input with nirtorch and map every module with
    ``node_map(module) -> nir node | PASSTHROUGH | Unsupported | None``. Returns the IR graph
    (shapes inferred, scalars broadcast, pass-through nodes bypassed)."""
    try:
        model = copy.deepcopy(model).eval()
    except Exception:  # e.g. sinabs 2.0.3's IAFRecurrent cannot be deep-copied
        if fold_batchnorm or _has_passthroughs(model):
            raise UsageError(f"{library}: the model cannot be copied (deepcopy fails), so nirdeploy cannot fold "
                             "BatchNorm or bypass Dropout/Identity without modifying it; remove them first") from None
        was_training = model.training
        model.eval()
        try:
            return _trace(model, sample_step, node_map, ignore_dims, ignore_submodules_of, library, reset_states)
        finally:
            model.train(was_training)
    if fold_batchnorm:
        model = _fold_batchnorm(model)
    _replace_passthroughs(model)
    return _trace(model, sample_step, node_map, ignore_dims, ignore_submodules_of, library, reset_states)


def _has_passthroughs(model) -> bool:
    import torch

    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Identity)
    return any(isinstance(m, kinds) for m in model.modules())


def _trace(model, sample_step, node_map, ignore_dims, ignore_submodules_of, library, reset_states) -> Graph:
    import nir
    import nirtorch
    import torch

    from ..graph.loading import from_nir
    from ..graph.passes import broadcast_params
    from ..graph.validate import infer_shapes

    problems: list[str] = []
    passthrough: list[Any] = []

    def mapper(module):
        try:
            node = node_map(module)
        except UnsupportedError as e:
            node = Unsupported(type(module).__name__, str(e))
        if node is None:
            node = Unsupported(type(module).__name__, f"{library} modules nirdeploy can export are listed in nirdeploy.frontends.{library}")
        if isinstance(node, Unsupported):
            problems.append(f"{node.what}: {node.hint}")
            node = PASSTHROUGH
        if isinstance(node, str) and node == PASSTHROUGH:
            marker = nir.Threshold(threshold=np.zeros(1), metadata={"nirdeploy_passthrough": 1})
            passthrough.append(marker)
            return marker
        return node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            try:  # the model's own errors, before nirtorch's tracer hides them
                model(sample_step)
            except Exception as e:
                raise UsageError(f"{library}: the model fails on one step of the sample: {type(e).__name__}: {e}") from None
            if reset_states is not None:
                reset_states(model)
            try:
                ng = nirtorch.extract_nir_graph(
                    model, mapper, sample_step, model_name=library,
                    ignore_submodules_of=ignore_submodules_of, ignore_dims=ignore_dims,
                )
            except (RuntimeError, KeyError, AttributeError, TypeError, ValueError) as e:
                if problems:
                    raise UnsupportedError(_unsupported_message(library, problems)) from None
                raise UsageError(f"{library}: tracing the model on the sample failed: {type(e).__name__}: {e}") from None
    if problems:
        raise UnsupportedError(_unsupported_message(library, problems))
    ng.edges = sorted(set(tuple(e) for e in ng.edges))
    g = from_nir(ng)
    for name in [k for k, n in g.nodes.items() if n.metadata.get("nirdeploy_passthrough")]:
        g = bypass(g, name)
    g = broadcast_params(infer_shapes(g))
    return g


def _unsupported_message(library: str, problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
    return f"{library}: the model has layers NIR cannot express; change the model:\n{lines}"


def bypass(g: Graph, name: str) -> Graph:
    """Remove node ``name``, connecting each predecessor to each successor."""
    g = g.copy()
    preds = [s for s, d in g.edges if d == name]
    succs = [d for s, d in g.edges if s == name]
    edges = [e for e in g.edges if name not in e]
    for s in preds:
        for d in succs:
            if (s, d) not in edges:
                edges.append((s, d))
    del g.nodes[name]
    g.edges = edges
    return g


def set_node(g: Graph, name: str, node: Node) -> None:
    g.nodes[name] = node


def fold_recurrent_bias(g: Graph, reasons: list[str], library: str) -> Graph:
    """snnTorch adds a recurrent Linear's bias at every step, t = 0 included (its recurrent input
    is ``recurrent(spk)`` with ``spk`` starting at 0). NIR does not say on which edge of the
    ``lif -> w_rec -> lif`` loop the one-step delay sits: nirdeploy delays ``lif -> w_rec`` (the
    bias arrives from t = 0, as in snnTorch), a consumer that delays ``w_rec -> lif`` drops it at
    t = 0. Moving the bias of ``X.w_rec`` into the Affine feeding ``X.lif`` is exact and makes the
    graph mean the same under both readings; when there is no such Affine the bias stays (exact in
    nirdeploy) and a reason says why another consumer may differ."""
    g = g.copy()
    for name, n in list(g.nodes.items()):
        if not (name.endswith(".w_rec") or name.endswith("w_rec")) or n.type != "Affine":
            continue
        lif = name[: -len("w_rec")] + "lif"
        ff = [s for s, d in g.edges if d == lif and s != name]
        b = np.asarray(n.params["bias"], dtype=np.float64)
        if len(ff) == 1 and g.nodes[ff[0]].type in ("Affine", "Linear") and not any(
            d != lif for s, d in g.edges if s == ff[0]
        ):
            src = g.nodes[ff[0]]
            old = np.asarray(src.params.get("bias", np.zeros(b.shape)), dtype=np.float64)
            src.params["bias"] = old + b
            src.type = "Affine"
            n.type = "Linear"
            del n.params["bias"]
        elif np.any(b != 0):
            reasons.append(
                f"{name}: the recurrent bias could not be moved into a feed-forward Affine; {library} and nirdeploy add it "
                "from t = 0, a NIR consumer that delays the w_rec -> lif edge only from t = 1")
    return g


# -- verification -----------------------------------------------------------------------------


from ..evaluation.crosscheck import spike_agreement  # noqa: E402  (one definition, in the core)


@dataclass
class Verification:
    agreement: float
    model_spikes: float
    graph_spikes: float
    max_abs_diff: float
    spiking_output: bool
    first_divergent_step: int | None
    reasons: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        if self.spiking_output:
            return self.agreement >= 1.0 - EXPORT_TOLERANCE
        return self.max_abs_diff <= 1e-6 * max(1.0, self.max_abs_diff)

    def describe(self) -> str:
        if self.spiking_output:
            s = (f"spike agreement {100 * self.agreement:.2f} % ({self.model_spikes:g} spikes in the model, "
                 f"{self.graph_spikes:g} in the exported graph)")
        else:
            s = f"largest output difference {self.max_abs_diff:.3g}"
        if self.first_divergent_step is not None:
            s += f"; first divergent step {self.first_divergent_step}"
        return s


def verify_export(model_out: np.ndarray, graph_out: np.ndarray, spiking: bool) -> Verification:
    a = np.asarray(model_out, dtype=np.float64)
    b = np.asarray(graph_out, dtype=np.float64)
    if a.shape != b.shape:
        raise ExportMismatchError(f"the model's output {a.shape} and the exported graph's {b.shape} differ in shape")
    diff = np.abs(a - b).reshape(a.shape[0], a.shape[1], -1).max(axis=(0, 2)) if a.size else np.zeros(0)
    tol = 0.5 if spiking else 1e-9
    bad = np.nonzero(diff > tol)[0]
    return Verification(
        agreement=spike_agreement(a, b) if spiking else float("nan"),
        model_spikes=float(a.sum()) if spiking else float("nan"),
        graph_spikes=float(b.sum()) if spiking else float("nan"),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        spiking_output=spiking,
        first_divergent_step=int(bad[0]) if bad.size else None,
    )


def settle(v: Verification, library: str, strict: bool) -> None:
    """Raise or warn when the export does not reproduce the model.

    ``v.reasons``: what may cause a mismatch (printed only when there is one).
    ``v.differences``: behaviour of the model that the graph does not have at all (a late reset,
    a recurrent bias from a different step): a mismatch raises (``strict``) or warns, and even
    when the sample happens to agree a :class:`ConversionWarning` says so, never silence."""
    notes = list(dict.fromkeys(v.differences + v.reasons))
    if v.ok():
        if v.differences:
            warnings.warn(
                f"{library}: the exported graph reproduces the model on this sample ({v.describe()}), but differs from "
                "it in general:\n" + "\n".join(f"  - {r}" for r in dict.fromkeys(v.differences)),
                ConversionWarning, stacklevel=3)
        return
    msg = f"{library}: the exported graph does not reproduce the model on the sample: {v.describe()}"
    if notes:
        msg += "\n" + "\n".join(f"  - {r}" for r in notes)
    if strict:
        raise ExportMismatchError(msg + "\n(pass strict=False / --no-strict to export anyway)")
    warnings.warn(msg, ConversionWarning, stacklevel=3)


def run_steps(model, x, dtype=None) -> np.ndarray:
    """A stateful library model stepped over time without gradients: x (batch, time, *input) ->
    (batch, time, *output). Each step calls ``model(x_t)`` first, then ``model(x_t, state)``
    with the state the model returned (a ``(y, state)`` tuple; other tuples: y is the first
    entry), as Norse's ``SequentialState`` and the libraries' importers expect."""
    import torch

    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    x = x.to(dtype or torch.float32)
    state = None
    outs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y = model(x[:, t]) if state is None else model(x[:, t], state)
            if isinstance(y, tuple):
                y, state = y[0], y[1]
            outs.append(y)
    return as_numpy(torch.stack(outs, 1))


def as_numpy(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=np.float64)
