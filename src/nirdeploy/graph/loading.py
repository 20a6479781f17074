"""Reading NIR graphs into nirdeploy's IR, safely.

* :func:`load`: the one entry point: a path, an in-memory ``nir.NIRGraph`` or an
  :class:`~nirdeploy.graph.ir.Graph` -> a shape-inferred (and, by default, validated) Graph.
* :func:`read_nir_file`: nirdeploy's own HDF5 reader (h5py only; ``nir.read`` is never called).
  It reads files written by nir 0.1.x through 1.0.8 and treats every file as hostile: each
  dataset's shape, size and dtype is checked *before* it is read, nesting depth, node and edge
  counts are bounded, links (soft / external) are refused, and every problem found names the
  node and the field. Structural problems (not HDF5, truncated, limits exceeded) raise at once;
  per-node problems are collected and raised together as one :class:`GraphLoadError` (its
  ``problems`` attribute holds the :class:`~nirdeploy.errors.Problem` list). Because the HDF5 C
  library itself can loop forever or crash on corrupt bytes, the parse runs in a forked child
  process with a timeout where ``fork`` exists (see :func:`read_nir_file`).
* :func:`from_nir` / :func:`to_nir`: conversion from / to nir's dataclasses.
* :func:`write_nir` / :func:`save_nir`: ``to_nir`` + ``nir.write``, atomically; an existing file is
  replaced only with ``force``.

Parameter representation in the IR (see :data:`nirdeploy.graph.validate.PARAM_KINDS`):

* numeric arrays (weights, biases, neuron parameters, delays, scales): ``float64`` ndarrays
  (0-d arrays are kept; the ``broadcast_params`` pass broadcasts them);
* ``stride``, ``dilation``, ``kernel_size`` and pool ``padding``: tuples of Python ints, one per
  spatial dim (scalars are repeated: Conv1d -> 1-tuple, Conv2d / pools -> 2-tuple);
* Conv ``padding``: such a tuple, or the string ``"same"`` / ``"valid"``;
* ``groups``, ``start_dim``, ``end_dim``: Python ints;
* ``Input`` / ``Output`` ``shape`` and Conv / Flatten ``input_shape``: tuples of Python ints
  (Flatten's ``input_type`` in the file becomes ``input_shape``).

Node types: the NIR 1.0 primitives (``ir.NODE_TYPES``) and the well-known layers NIR lacks
(``ir.NON_NIR_TYPES``: MaxPool1d/2d, BatchNorm1d/2d, Dropout), read in NIR's layout with PyTorch's
parameter names; the latter load so that every target can name them with a hint
(:func:`nirdeploy.graph.ir.non_nir_notice` is the notice the commands print). Any other type is
an "unknown node type" load error.

Legacy details handled: node type ``Spike`` -> ``Threshold``; files without a ``version``
dataset (nir 0.1.0); ``Input``/``Output`` with ``shape`` (or an ``input_type`` /
``output_type`` group); Flatten without ``input_type`` (nir 0.1); Conv stride/padding/dilation
stored as scalars or arrays; integer edge indices (nir 0.0.x). Missing optional fields are
filled in and recorded in ``node.metadata[DEFAULTED_KEY]`` (a comma separated string, e.g.
``"v_reset"``): ``v_reset`` -> zeros like ``v_threshold``; ``w_in`` -> ones; Conv ``stride`` /
``dilation`` -> 1, ``padding`` -> 0, ``groups`` -> 1, ``bias`` -> zeros; Flatten ``start_dim``
-> 1, ``end_dim`` -> -1 (nir's defaults); MaxPool ``stride`` -> ``kernel_size``, ``padding`` -> 0,
``dilation`` -> 1, ``ceil_mode`` -> 0 and BatchNorm ``eps`` -> 1e-5 (PyTorch's defaults).
"""

from __future__ import annotations

import dataclasses
import inspect as _inspect
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphLoadError, GraphValidationError, Problem, UnsupportedError, UsageError
from .ir import KNOWN_TYPES, NON_NIR_TYPES, Graph, Node

__all__ = [
    "load",
    "read_nir_file",
    "from_nir",
    "to_nir",
    "write_nir",
    "ReadLimits",
    "DEFAULT_LIMITS",
    "DEFAULTED_KEY",
    "READ_TIMEOUT_BASE_S",
    "ReadBudget",
    "READ_TIMEOUT_PER_NODE_S",
    "LEGACY_TYPE_NAMES",
    "defaulted_fields",
]

#: what an unknown type should have been
_KNOWN_HINT = "a NIR 1.0 primitive (or one of the recognised non-NIR layers " + ", ".join(NON_NIR_TYPES) + ")"

#: metadata key listing the fields the loader filled with a default (comma separated)
DEFAULTED_KEY = "nirdeploy_defaulted"

#: old or alternative node type names -> NIR 1.0 names
LEGACY_TYPE_NAMES = {"Spike": "Threshold"}


@dataclass(frozen=True)
class ReadLimits:
    """Bounds the HDF5 reader enforces before reading anything."""

    max_array_elements: int = 50_000_000  # one dataset
    max_total_elements: int = 200_000_000  # all datasets of one file
    max_depth: int = 16  # nested NIRGraph levels
    max_nodes: int = 20_000  # all levels together
    max_edges: int = 100_000  # all levels together
    max_ndim: int = 8  # dimensions of one parameter array
    max_name: int = 256  # characters of a node name
    max_string: int = 4096  # characters of a type, version or metadata string
    max_metadata_items: int = 10_000


DEFAULT_LIMITS = ReadLimits()


def defaulted_fields(node: Node) -> list[str]:
    """Fields of ``node`` that the loader filled with a default value."""
    s = node.metadata.get(DEFAULTED_KEY, "")
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    return [x for x in str(s).split(",") if x]


# ================================================================================================
# public entry points
# ================================================================================================


def load(source: Any, *, validate: bool = True) -> Graph:
    """A Graph with inferred shapes from a path, a ``nir.NIRGraph`` or a Graph.

    With ``validate`` (default) every problem is collected and raised as one
    :class:`GraphValidationError`. The caller's object is never modified.
    """
    from . import validate as _v

    if isinstance(source, Graph):
        g = source.copy()
    elif isinstance(source, (str, os.PathLike)):
        g = read_nir_file(source)
    elif _is_nir_graph(source):
        g = from_nir(source)
    else:
        raise UsageError(
            f"cannot load a {type(source).__name__}: expected a path to a .nir file, a nir.NIRGraph "
            "or a nirdeploy Graph"
        )
    g = _v.infer_shapes(g)
    if validate:
        _v.check(g)
    return g


#: the isolated read's budget: this many seconds, plus one per 20 MB of file, plus
#: READ_TIMEOUT_PER_NODE_S for every node read so far (the child reports its progress), so a
#: graph within the limits (ReadLimits.max_nodes nodes, max_total_elements elements) always
#: loads, while a read stuck inside the HDF5 library is stopped. The seconds are the reader
#: child's processor time where the OS reports it (Linux): a loaded machine slows the wall
#: clock, not the work, so load never fails a valid read; a child that is blocked (no processor
#: time and no progress for the base budget of wall time) is stopped too. See :class:`ReadBudget`.
READ_TIMEOUT_BASE_S = 4.0
READ_TIMEOUT_PER_BYTE_S = 1 / 20e6
READ_TIMEOUT_PER_NODE_S = 0.05
#: wall seconds (plus one per 20 MB) without processor time or progress after which the reader
#: child counts as blocked
READ_STALL_S = 4.0
PROGRESS_INTERVAL_S = 0.1
#: how often the parent looks at the child (seconds of wall time)
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class ReadBudget:
    """When the isolated reader counts as stuck (see :data:`READ_TIMEOUT_BASE_S`).

    ``seconds``: the base budget (file size included); ``per_node``: added per node read;
    ``stall``: wall seconds without processor time or progress that mean the child is blocked
    (default: ``seconds``). :meth:`verdict` is a pure function of what the parent observed, so
    the rules are tested with any clock."""

    seconds: float
    per_node: float = READ_TIMEOUT_PER_NODE_S
    stall: float | None = None

    def limit(self, nodes: int) -> float:
        return self.seconds + nodes * self.per_node

    def verdict(self, *, cpu: float | None, wall: float, idle: float, nodes: int) -> str | None:
        """``"budget"`` when the child used more than :meth:`limit` seconds (processor time
        ``cpu``, or ``wall`` time where processor time is unknown), ``"blocked"`` when it used no
        processor time and sent nothing for ``idle`` > ``stall`` seconds of wall time, else None."""
        used = wall if cpu is None else cpu
        if used > self.limit(nodes):
            return "budget"
        if cpu is not None and idle > self.stall_seconds:
            return "blocked"
        return None

    @property
    def stall_seconds(self) -> float:
        return self.seconds if self.stall is None else self.stall


def _child_cpu_seconds(pid: int) -> float | None:
    """Processor time (user + system, seconds) of a running child, from ``/proc`` (Linux);
    None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


#: the clocks of the isolated read (tests inject others)
_monotonic = time.monotonic
_child_cpu = _child_cpu_seconds


def read_nir_file(
    path: str | os.PathLike,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    isolate: bool | None = None,
    timeout: float | None = None,
) -> Graph:
    """Read a ``.nir`` (HDF5) file with nirdeploy's own bounded reader. Shapes are not inferred.

    The HDF5 C library can spin forever or crash on corrupt bytes (for example a global-heap
    collection size doubled by one flipped byte makes reading any variable-length string loop,
    in h5py and in ``nir.read`` alike), and C code cannot be interrupted from Python. So by
    default (``isolate=None``: where ``fork`` exists) the file is parsed in a forked child
    process that is killed when its budget is spent (:class:`ReadBudget`): ``timeout`` seconds
    (default :data:`READ_TIMEOUT_BASE_S` plus one second per 20 MB) plus
    :data:`READ_TIMEOUT_PER_NODE_S` per node the child reports as read, of the child's processor
    time where the OS reports it (so a loaded machine never fails a valid read), or when it makes
    no progress at all for :data:`READ_STALL_S` (plus one second per 20 MB; with ``timeout``:
    ``timeout``) seconds. A hang or a crash of the child becomes a :class:`GraphLoadError`. The child dies with this process (Linux
    ``PR_SET_PDEATHSIG``), and SIGTERM, SIGHUP or SIGINT here kill it first
    (:func:`nirdeploy.outputs.signal_guard`). ``isolate=False`` reads in this process.
    """
    p = Path(path)
    if not p.exists():
        raise GraphLoadError(f"{p}: no such file")
    if p.is_dir():
        raise GraphLoadError(f"{p}: is a directory, not a NIR file")
    try:
        size = p.stat().st_size
    except OSError as e:  # pragma: no cover - racing deletion etc.
        raise GraphLoadError(f"{p}: cannot read: {e.strerror or e}") from None
    if size == 0:
        raise GraphLoadError(f"{p}: empty file, not a NIR (HDF5) file")
    if isolate is None:
        isolate = _can_fork()
    if not isolate:
        return _read_file(p, limits)
    if timeout is None:
        budget = ReadBudget(READ_TIMEOUT_BASE_S + size * READ_TIMEOUT_PER_BYTE_S, stall=READ_STALL_S + size * READ_TIMEOUT_PER_BYTE_S)
    else:
        budget = ReadBudget(float(timeout))
    return _read_file_isolated(p, limits, budget)


def _can_fork() -> bool:
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        return False
    try:  # a daemonic process (e.g. a Pool worker) may not have children
        return not mp.current_process().daemon
    except Exception:  # pragma: no cover
        return False


def _die_with_parent(parent: int) -> None:
    """In the reader child: default signal actions, and SIGKILL when the parent dies (Linux)."""
    import signal

    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child_read(conn, path: str, limits: ReadLimits, parent: int) -> None:
    import time

    _die_with_parent(parent)
    last = [0.0]

    def progress(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            conn.send(("progress", n))

    try:
        try:
            res = ("ok", _read_file(Path(path), limits, progress))
        except GraphLoadError as e:
            res = ("err", e)
        except BaseException as e:  # pragma: no cover - _read_file converts everything
            res = ("err", GraphLoadError(f"{path}: cannot read this NIR file (internal error: {type(e).__name__}: {_short(e)})"))
        conn.send(res)
    finally:
        conn.close()


def _read_file_isolated(p: Path, limits: ReadLimits, budget: ReadBudget) -> Graph:
    import multiprocessing as mp

    from ..outputs import register_child, signal_guard, unregister_child

    ctx = mp.get_context("fork")
    with signal_guard():
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_read, args=(send, str(p), limits, os.getpid()), name="nirdeploy-read")
        try:
            proc.start()
        except Exception:  # cannot fork here: read in this process
            recv.close()
            send.close()
            return _read_file(p, limits)
        register_child(proc.pid, proc.kill)
        send.close()
        start = last_change = _monotonic()
        last_cpu: float | None = None
        nodes = 0
        status = None
        try:
            while True:
                now = _monotonic()
                cpu = _child_cpu(proc.pid)
                if cpu != last_cpu:
                    last_cpu, last_change = cpu, now
                verdict = budget.verdict(cpu=cpu, wall=now - start, idle=now - last_change, nodes=nodes)
                if verdict is not None:
                    proc.kill()
                    raise GraphLoadError(_stuck_message(p, verdict, budget, nodes, cpu is not None))
                if not recv.poll(POLL_INTERVAL_S):
                    continue
                try:
                    msg = recv.recv()
                except (EOFError, OSError):
                    proc.join(2)
                    raise GraphLoadError(
                        f"{p}: the HDF5 library crashed while reading this file (child exit code {proc.exitcode}): "
                        "corrupt or hostile file"
                    ) from None
                last_change = _monotonic()  # a message is progress
                if msg[0] == "progress":
                    nodes = int(msg[1])
                    continue
                status, payload = msg
                break
        finally:
            recv.close()
            if status is not None and proc.is_alive():
                proc.join(0.5)  # it has sent its result and is exiting
            if proc.is_alive():
                proc.kill()
                proc.join()
            unregister_child(proc.pid)
    if status == "ok":
        return payload
    raise payload


def _stuck_message(p: Path, verdict: str, budget: ReadBudget, nodes: int, cpu: bool) -> str:
    if verdict == "blocked":
        return (f"{p}: reading the file did not finish: the reader made no progress for {budget.stall_seconds:.3g} s "
                f"({nodes} nodes read): the HDF5 library is stuck on corrupt data (a damaged or hostile file) or the "
                "file system does not answer")
    unit = "s of processor time" if cpu else "s"
    return (f"{p}: reading the file did not finish within {budget.limit(nodes):.3g} {unit} ({nodes} nodes read): the HDF5 "
            "library is stuck on corrupt data (a damaged or hostile file)")


def _read_file(p: Path, limits: ReadLimits, progress=None) -> Graph:
    """The reader proper (no process isolation); ``progress(nodes_read)`` is called per node."""
    import h5py

    try:
        is_h5 = h5py.is_hdf5(str(p))
    except Exception:
        is_h5 = False
    if not is_h5:
        raise GraphLoadError(f"{p}: not an HDF5 file, so not a NIR graph (no HDF5 signature)")
    try:
        f = h5py.File(str(p), "r")
    except Exception as e:
        raise GraphLoadError(f"{p}: cannot open the HDF5 file (truncated or corrupt?): {_short(e)}") from None
    r = _Reader(limits, str(p), progress)
    try:
        with f:
            g = r.read_file(f)
    except _Fatal as e:
        raise GraphLoadError(f"{p}: {e}") from None
    except GraphLoadError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, IndexError) as e:
        # h5py / HDF5 failures while reading: truncated data, bad filters, broken headers...
        where = f" (while reading {r.where})" if r.where else ""
        raise GraphLoadError(f"{p}: corrupt or truncated NIR file{where}: {_short(e)}") from None
    except Exception as e:  # a reader bug must still not escape as a traceback
        where = f" while reading {r.where}" if r.where else ""
        raise GraphLoadError(f"{p}: cannot read this NIR file (internal error{where}: {type(e).__name__}: {_short(e)})") from None
    if r.problems:
        raise _load_error(f"{p}: cannot load NIR graph", r.problems)
    return g


def from_nir(graph: Any) -> Graph:
    """Convert an in-memory ``nir.NIRGraph`` (any nir 1.0.x) into a Graph (shapes not inferred).

    Values that cannot be converted (strings where numbers go, complex numbers...) raise one
    :class:`GraphLoadError` listing all of them. Semantic problems (NaN, bad shapes, '/' in a
    name...) are left to :func:`nirdeploy.graph.validate.validate`.
    """
    problems: list[Problem] = []
    g = _from_nir_graph(graph, "", 0, problems, set())
    if problems:
        raise _load_error("cannot convert nir.NIRGraph", problems)
    return g


def to_nir(g: Graph) -> Any:
    """A ``nir.NIRGraph`` (built without nir's type check) equivalent to ``g``.

    Shapes nir needs for writing (Conv ``input_shape``, Flatten ``input_type``, Output shape)
    are taken from shape inference when the node does not declare them. ``delayed_edges`` has no
    NIR equivalent and is dropped.
    """
    from .validate import infer_shapes

    return _to_nir_graph(infer_shapes(g))


def write_nir(g: Graph, path: str | os.PathLike, *, force: bool = False) -> None:
    """Write ``g`` as a ``.nir`` file (``to_nir`` + ``nir.write``); the same as :func:`save_nir`:
    atomically, and an existing file is replaced only with ``force``."""
    save_nir(g, path, force=force)


def save_nir(g: Graph, path: str | os.PathLike, *, inputs=(), force: bool = False) -> None:
    """Write ``g`` to ``path`` as a user-facing output: atomically, a new file, or with ``force`` a
    regular file that is not one of ``inputs`` (:class:`nirdeploy.outputs.atomic_file`); refuses
    names HDF5 would mangle. Raises OutputError (``path`` exists and ``force`` is false, or may not
    be written), GraphValidationError."""
    import io

    import nir

    from ..outputs import atomic_file

    buf = io.BytesIO()
    bad = [name for name, _ in g.iter_nodes_recursive() if "/" in name or name == ""]
    if bad:
        raise GraphValidationError(
            [Problem(b, "", "name", "node names must be non-empty and must not contain '/' to be written") for b in bad]
        )
    nir.write(buf, to_nir(g))
    with atomic_file(path, inputs=inputs, force=force) as f:
        f.write(buf.getvalue())


# ================================================================================================
# parameter conversion shared by the HDF5 reader and from_nir
# ================================================================================================


class _ParamError(Exception):
    def __init__(self, message: str, expected: Any = None, actual: Any = None):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual


def _canonical_type(t: str) -> str:
    return LEGACY_TYPE_NAMES.get(t, t)


def _spatial_ndim(ntype: str) -> int:
    return 1 if ntype in ("Conv1d", "MaxPool1d") else 2


def _as_number_array(raw: Any) -> np.ndarray:
    if isinstance(raw, (str, bytes)):
        raise _ParamError("expected numbers, found a string", "number array", "string")
    try:
        a = np.asarray(raw)
    except Exception as e:
        raise _ParamError(f"cannot convert to an array: {_short(e)}") from None
    k = a.dtype.kind
    if k == "c":
        raise _ParamError("complex numbers are not allowed", "real numbers", str(a.dtype))
    if k in "SUa" or (k == "O" and a.size and isinstance(a.flat[0], (str, bytes))):
        raise _ParamError("expected numbers, found strings", "number array", "string")
    if k not in "biuf":
        if k == "O":
            try:
                a = a.astype(np.float64)
            except Exception:
                raise _ParamError("expected numbers, found objects", "number array", str(a.dtype)) from None
            return a
        raise _ParamError(f"unsupported dtype {a.dtype}", "number array", str(a.dtype))
    return a


def _to_float_array(raw: Any) -> np.ndarray:
    a = _as_number_array(raw)
    return np.array(a, dtype=np.float64, copy=True)


def _to_ints(raw: Any, what: str) -> tuple[int, ...]:
    a = _as_number_array(raw)
    if a.ndim > 1:
        raise _ParamError(f"{what} must be a number or a 1-D list", "1-D", f"{a.ndim}-D")
    if a.size > 64:
        raise _ParamError(f"{what} has {a.size} entries", "at most 64", a.size)
    flat = a.reshape(-1).astype(np.float64) if a.dtype.kind in "bf" else a.reshape(-1)
    out = []
    for v in flat.tolist():
        if isinstance(v, float):
            if not math.isfinite(v) or v != int(v):
                raise _ParamError(f"{what} must hold integers", "integers", v)
            v = int(v)
        out.append(int(v))
    return tuple(out)


def _convert_param(ntype: str, name: str, kind: str, raw: Any) -> Any:
    """Raw value (from a file or a nir object) -> IR value; raises _ParamError."""
    if kind == "array":
        return _to_float_array(raw)
    if kind == "int":
        t = _to_ints(raw, name)
        if len(t) != 1:
            raise _ParamError(f"{name} must be a single integer", "integer", list(t))
        return t[0]
    if kind == "ints":
        t = _to_ints(raw, name)
        nd = _spatial_ndim(ntype)
        if len(t) == 1 and nd > 1:
            t = t * nd
        return t
    if kind == "shape":
        return _to_ints(raw, name)
    if kind == "padding":
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if isinstance(raw, np.ndarray) and raw.dtype.kind in "SUO" and raw.size == 1:
            v = raw.reshape(-1)[0]
            raw = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        if isinstance(raw, str):
            return raw
        return _convert_param(ntype, name, "ints", raw)
    raise AssertionError(kind)  # pragma: no cover


def _apply_defaults(ntype: str, params: dict, metadata: dict, missing: list[str]) -> list[str]:
    """Fill nir's defaults for fields absent in ``params``; return required fields still missing."""
    from .validate import PARAM_KINDS

    kinds = PARAM_KINDS.get(ntype, {})
    defaulted: list[str] = []

    def like(*keys):
        for k in keys:
            v = params.get(k)
            if isinstance(v, np.ndarray):
                return v
        return None

    if ntype in ("IF", "LIF", "CubaLIF") and "v_reset" not in params:
        ref = like("v_threshold", "r")
        if ref is not None:
            params["v_reset"] = np.zeros_like(ref, dtype=np.float64)
            defaulted.append("v_reset")
    if ntype in ("CubaLI", "CubaLIF") and "w_in" not in params:
        ref = like("v_threshold", "v_leak", "r", "tau_mem")
        if ref is not None:
            params["w_in"] = np.ones_like(ref, dtype=np.float64)
            defaulted.append("w_in")
    if ntype in ("Conv1d", "Conv2d"):
        nd = _spatial_ndim(ntype)
        for k, v in (("stride", (1,) * nd), ("dilation", (1,) * nd), ("padding", (0,) * nd), ("groups", 1)):
            if k not in params:
                params[k] = v
                defaulted.append(k)
        w = params.get("weight")
        if "bias" not in params and isinstance(w, np.ndarray) and w.ndim >= 1:
            params["bias"] = np.zeros(w.shape[0], dtype=np.float64)
            defaulted.append("bias")
    if ntype == "Flatten":
        for k, v in (("start_dim", 1), ("end_dim", -1)):
            if k not in params:
                params[k] = v
                defaulted.append(k)
    if ntype in ("MaxPool1d", "MaxPool2d"):  # PyTorch's defaults
        nd = _spatial_ndim(ntype)
        for k, v in (("stride", params.get("kernel_size")), ("padding", (0,) * nd), ("dilation", (1,) * nd), ("ceil_mode", 0)):
            if k not in params and v is not None:
                params[k] = v
                defaulted.append(k)
    if ntype in ("BatchNorm1d", "BatchNorm2d") and "eps" not in params:
        params["eps"] = np.array(1e-5)
        defaulted.append("eps")
    if defaulted:
        prev = [x for x in str(metadata.get(DEFAULTED_KEY, "")).split(",") if x]
        metadata[DEFAULTED_KEY] = ",".join(prev + [d for d in defaulted if d not in prev])
    spec = KNOWN_TYPES[ntype]
    still = [k for k in spec.required if k not in params and k in kinds]
    if ntype == "Output":  # nir 0.0.x wrote Output without a shape: inferred from the graph
        still = [k for k in still if k != "shape"]
    missing.extend(still)
    return still


# ================================================================================================
# HDF5 reader
# ================================================================================================


class _Fatal(Exception):
    """Stops reading: the file as a whole is unusable."""


class _Reader:
    def __init__(self, limits: ReadLimits, path: str, progress=None):
        self.limits = limits
        self.path = path
        self.progress = progress
        self.nodes_read = 0
        self.problems: list[Problem] = []
        self.total_elements = 0
        self.n_nodes = 0
        self.n_edges = 0
        self.where = ""
        self.seen_groups: set = set()  # h5py ObjectIDs compare equal across hard links

    def _visit(self, group, what: str) -> None:
        gid = group.id
        if gid in self.seen_groups:
            raise _Fatal(
                f"{what}: the same HDF5 group appears at two places (a hard link); NIR files never share "
                "or nest a node into itself"
            )
        self.seen_groups.add(gid)

    # -- helpers ---------------------------------------------------------------------------------
    def _child(self, group, key: str, what: str):
        """group[key] after refusing soft / external links."""
        import h5py

        lnk = group.get(key, getlink=True)
        if lnk is None:
            return None
        if isinstance(lnk, h5py.ExternalLink):
            raise _Fatal(f"{what}: external links to other files are not allowed")
        if isinstance(lnk, h5py.SoftLink):
            raise _Fatal(f"{what}: HDF5 soft links are not allowed in a NIR file")
        return group[key]

    def _check_dataset(self, ds, what: str, max_elements: int | None = None) -> int:
        import h5py

        if not isinstance(ds, h5py.Dataset):
            raise _ParamError("expected a dataset, found a group", "dataset", "group")
        shape = ds.shape
        if shape is None:
            raise _ParamError("empty (null) dataset", "a value", "null dataspace")
        if len(shape) > self.limits.max_ndim:
            raise _ParamError(f"{len(shape)} dimensions", f"at most {self.limits.max_ndim}", len(shape))
        n = math.prod(shape)
        lim = self.limits.max_array_elements if max_elements is None else max_elements
        if n > lim:
            raise _Fatal(f"{what}: dataset of shape {tuple(shape)} has {n} elements, over the limit of {lim}")
        if self.total_elements + n > self.limits.max_total_elements:
            raise _Fatal(
                f"{what}: the file's datasets hold more than {self.limits.max_total_elements} elements in total"
            )
        self.total_elements += n
        return n

    def _read_numeric(self, ds, what: str) -> np.ndarray:
        import h5py

        self._check_dataset(ds, what)
        dt = _dtype(ds)
        if h5py.check_string_dtype(dt) is not None or dt.kind in "SU":
            raise _ParamError("expected numbers, found strings", "number array", "string")
        if dt.kind == "c":
            raise _ParamError("complex numbers are not allowed", "real numbers", str(dt))
        if dt.kind not in "biuf":
            raise _ParamError(f"unsupported dtype {dt}", "number array", str(dt))
        self.where = what
        return np.asarray(ds[()])

    def _read_string(self, ds, what: str) -> str:
        import h5py

        if not isinstance(ds, h5py.Dataset):
            raise _ParamError("expected a string dataset, found a group", "string", "group")
        dt = _dtype(ds)
        if h5py.check_string_dtype(dt) is None and dt.kind not in "S":
            raise _ParamError(f"expected a string, found {dt}", "string", str(dt))
        if ds.shape is None or math.prod(ds.shape) != 1:
            raise _ParamError("expected a single string", "1 string", None if ds.shape is None else tuple(ds.shape))
        self._check_dataset(ds, what, max_elements=1)
        self.where = what
        v = ds[()]
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0] if v.size else b""
        if isinstance(v, bytes):
            if len(v) > self.limits.max_string:
                raise _ParamError(f"string of {len(v)} bytes is too long", f"<= {self.limits.max_string}", len(v))
            v = v.decode("utf-8", "replace")
        if not isinstance(v, str):
            raise _ParamError("expected a string", "string", type(v).__name__)
        if len(v) > self.limits.max_string:
            raise _ParamError(f"string of {len(v)} characters is too long", f"<= {self.limits.max_string}", len(v))
        return v

    def _problem(self, node: str, ntype: str, fld: str, e: _ParamError | str, expected: Any = None, actual: Any = None) -> None:
        if isinstance(e, _ParamError):
            self.problems.append(Problem(node, ntype, fld, e.message, e.expected, e.actual))
        else:
            self.problems.append(Problem(node, ntype, fld, e, expected, actual))

    # -- file / graph ------------------------------------------------------------------------------
    def read_file(self, f) -> Graph:
        import h5py

        version = None
        if "version" in f:
            ds = self._child(f, "version", "version")
            try:
                version = self._read_string(ds, "version")
            except _ParamError as e:
                self._problem("", "", "version", e)
        if "node" not in f:
            raise _Fatal("no 'node' group at the root: not a NIR file")
        root = self._child(f, "node", "node")
        if not isinstance(root, h5py.Group):
            raise _Fatal("'node' is a dataset, not a group: not a NIR file")
        if "type" not in root:
            raise _Fatal("the root 'node' group has no 'type': not a NIR file")
        try:
            t = self._read_string(self._child(root, "type", "node/type"), "node/type")
        except _ParamError as e:
            raise _Fatal(f"the root node's 'type' is unreadable: {e.message}") from None
        if t != "NIRGraph":
            raise _Fatal(f"the root node has type {t!r}, expected 'NIRGraph'")
        self._visit(root, "node")
        g = self.read_graph(root, "", 0)
        g.nir_version = version
        return g

    def read_graph(self, group, prefix: str, depth: int) -> Graph:
        import h5py

        if depth > self.limits.max_depth:
            raise _Fatal(
                f"subgraph {prefix.rstrip('.')[:200] or '(root)'}: NIRGraph nesting deeper than {self.limits.max_depth} "
                "levels (or a subgraph group linked into itself)"
            )
        gname = prefix.rstrip(".")
        g = Graph()
        if "nodes" not in group:
            self._problem(gname, "NIRGraph", "nodes", "missing required field 'nodes'")
            nodes_group = None
        else:
            nodes_group = self._child(group, "nodes", f"{gname or 'graph'}.nodes")
            if not isinstance(nodes_group, h5py.Group):
                self._problem(gname, "NIRGraph", "nodes", "'nodes' must be a group")
                nodes_group = None
        if nodes_group is not None:
            n = len(nodes_group)
            if self.n_nodes + n > self.limits.max_nodes:
                raise _Fatal(f"more than {self.limits.max_nodes} nodes")
            self.n_nodes += n
            for key in nodes_group.keys():
                if isinstance(key, bytes):  # h5py gives names that are not UTF-8 as bytes
                    self._problem(prefix + key.decode("utf-8", "replace"), "", "name", "node name is not valid UTF-8")
                    continue
                if len(key) > self.limits.max_name:
                    self._problem(
                        prefix + key[:40] + "...", "", "name", f"node name of {len(key)} characters is too long",
                        f"<= {self.limits.max_name}", len(key),
                    )
                    continue
                full = prefix + key
                obj = self._child(nodes_group, key, full)
                node = self.read_node(obj, key, full, depth)
                if node is not None:
                    g.nodes[key] = node
                self.nodes_read += 1
                if self.progress is not None:
                    self.progress(self.nodes_read)
        g.edges = self.read_edges(group, gname)
        if "metadata" in group:
            g.metadata = self.read_metadata(self._child(group, "metadata", "metadata"), gname, "NIRGraph", 0)
        return g

    def read_edges(self, group, gname: str) -> list[tuple[str, str]]:
        import h5py

        if "edges" not in group:
            self._problem(gname, "NIRGraph", "edges", "missing required field 'edges'")
            return []
        what = f"{gname + '.' if gname else ''}edges"
        ds = self._child(group, "edges", what)
        try:
            if not isinstance(ds, h5py.Dataset):
                raise _ParamError("expected a dataset, found a group", "dataset", "group")
            shape = ds.shape
            if shape is None or math.prod(shape) == 0:
                return []  # nir writes an empty edge list as a shape (0,) float array
            if len(shape) != 2 or shape[1] != 2:
                raise _ParamError("edges must be an N x 2 array of node names", "(N, 2)", tuple(shape))
            if shape[0] + self.n_edges > self.limits.max_edges:
                raise _Fatal(f"{what}: more than {self.limits.max_edges} edges")
            self._check_dataset(ds, what)
            self.n_edges += shape[0]
            dt = _dtype(ds)
            self.where = what
            if h5py.check_string_dtype(dt) is not None or dt.kind == "S":
                raw = ds[()]
                out = []
                for a, b in raw.tolist():
                    out.append((_decode_name(a, self.limits), _decode_name(b, self.limits)))
                return out
            if dt.kind in "iu":  # nir 0.0.x: edges as node indices
                return [(str(int(a)), str(int(b))) for a, b in ds[()].tolist()]
            raise _ParamError("edges must hold node names (strings)", "strings", str(dt))
        except _ParamError as e:
            self._problem(gname, "NIRGraph", "edges", e)
            return []

    def read_metadata(self, obj, node: str, ntype: str, depth: int) -> dict:
        import h5py

        if not isinstance(obj, h5py.Group):
            self._problem(node, ntype, "metadata", "'metadata' must be a group")
            return {}
        if depth > 8:
            raise _Fatal(f"{node or 'graph'}.metadata: nested too deeply")
        if len(obj) > self.limits.max_metadata_items:
            raise _Fatal(f"{node or 'graph'}.metadata: more than {self.limits.max_metadata_items} entries")
        out: dict[str, Any] = {}
        for k in obj.keys():
            if isinstance(k, bytes):
                self._problem(node, ntype, "metadata", "a metadata key is not valid UTF-8", None, k.decode("utf-8", "replace"))
                continue
            what = f"{node or 'graph'}.metadata.{k}"
            item = self._child(obj, k, what)
            if isinstance(item, h5py.Group):
                out[k] = self.read_metadata(item, node, ntype, depth + 1)
                continue
            try:
                self._check_dataset(item, what, max_elements=1_000_000)
                dt = _dtype(item)
                self.where = what
                if h5py.check_string_dtype(dt) is not None or dt.kind == "S":
                    v = item[()]
                    if isinstance(v, np.ndarray):
                        v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.reshape(-1).tolist()]
                    elif isinstance(v, bytes):
                        v = v.decode("utf-8", "replace")
                    out[k] = v
                elif dt.kind in "biufc":
                    v = item[()]
                    out[k] = v.item() if isinstance(v, np.generic) else v
                else:
                    raise _ParamError(f"unsupported metadata dtype {dt}", "numbers or strings", str(dt))
            except _ParamError as e:
                self._problem(node, ntype, f"metadata.{k}", e)
        return out

    # -- nodes -------------------------------------------------------------------------------------
    def read_node(self, obj, key: str, full: str, depth: int) -> Node | None:
        import h5py

        from .validate import PARAM_KINDS

        if not isinstance(obj, h5py.Group):
            kind = "a dataset" if isinstance(obj, h5py.Dataset) else f"an HDF5 {type(obj).__name__}"
            self._problem(full, "", "", f"a node must be an HDF5 group, found {kind}")
            return None
        self._visit(obj, full)
        if "type" not in obj:
            nested = _nested_typed_groups(obj, 3)
            if nested:
                for sub in nested:
                    self._problem(
                        f"{full}/{sub}",
                        "",
                        "name",
                        f"node name contains '/': HDF5 stored the name {key + '/' + sub!r} as nested groups, so the "
                        "node cannot be read; rename the node (no '/' in names) and export again",
                    )
            else:
                self._problem(full, "", "type", "node has no 'type' field")
            return None
        try:
            t = self._read_string(self._child(obj, "type", f"{full}.type"), f"{full}.type")
        except _ParamError as e:
            self._problem(full, "", "type", e)
            return None
        ntype = _canonical_type(t)
        if ntype not in KNOWN_TYPES:
            self._problem(full, t, "type", f"unknown node type {t!r}", _KNOWN_HINT, t)
            return None
        meta: dict[str, Any] = {}
        if "metadata" in obj:
            meta = self.read_metadata(self._child(obj, "metadata", f"{full}.metadata"), full, ntype, 0)
        if t != ntype:
            meta["nirdeploy_legacy_type"] = t
        if ntype == "NIRGraph":
            sub = self.read_graph(obj, full + ".", depth + 1)
            return Node(key, ntype, {}, meta, subgraph=sub)

        kinds = PARAM_KINDS[ntype]
        aliases = {"input_shape": ("input_shape", "input_type")} if ntype == "Flatten" else {}
        if ntype == "Input":
            aliases = {"shape": ("shape", "input_type")}
        if ntype == "Output":
            aliases = {"shape": ("shape", "output_type")}
        params: dict[str, Any] = {}
        ok = True
        for pname, kind in kinds.items():
            for src in aliases.get(pname, (pname,)):
                if src not in obj:
                    continue
                what = f"{full}.{src}"
                try:
                    item = self._child(obj, src, what)
                    if isinstance(item, h5py.Group) and src in ("input_type", "output_type"):
                        # an old layout: {input_type: {input: shape}}
                        ks = list(item.keys())
                        if len(ks) != 1:
                            raise _ParamError(f"'{src}' group must hold one shape", "1 entry", len(ks))
                        item = self._child(item, ks[0], what)
                    if kind == "padding":
                        if isinstance(item, h5py.Dataset) and (
                            h5py.check_string_dtype(_dtype(item)) is not None or _dtype(item).kind == "S"
                        ):
                            raw: Any = self._read_string(item, what)
                        else:
                            raw = self._read_numeric(item, what)
                    else:
                        raw = self._read_numeric(item, what)
                    params[pname] = _convert_param(ntype, pname, kind, raw)
                except _ParamError as e:
                    self._problem(full, ntype, src, e)
                    ok = False
                break
        missing: list[str] = []
        _apply_defaults(ntype, params, meta, missing)
        for m in missing:
            if any(p.node == full and p.field == m for p in self.problems):
                continue
            self._problem(full, ntype, m, f"missing required field '{m}'")
            ok = False
        if not ok:
            return None
        return Node(key, ntype, params, meta)


def _dtype(ds) -> np.dtype:
    """A dataset's dtype; HDF5 types numpy cannot represent (time, references...) are refused."""
    try:
        return ds.dtype
    except (TypeError, ValueError) as e:
        raise _ParamError(f"unsupported HDF5 data type ({_short(e)})", "numbers or strings", "unsupported type") from None


def _nested_typed_groups(group, depth: int, prefix: str = "") -> list[str]:
    """Names of subgroups (below ``group``) that hold a 'type': what a '/' in a name produces."""
    import h5py

    out: list[str] = []
    if depth <= 0:
        return out
    try:
        for k in list(group.keys())[:100]:
            if not isinstance(k, str):
                continue
            lnk = group.get(k, getlink=True)
            if not isinstance(lnk, h5py.HardLink):
                continue
            item = group[k]
            if isinstance(item, h5py.Group):
                if "type" in item:
                    out.append(prefix + k)
                else:
                    out.extend(_nested_typed_groups(item, depth - 1, prefix + k + "/"))
    except Exception:
        return out
    return out


def _decode_name(x: Any, limits: ReadLimits) -> str:
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(x, str):
        if len(x) > limits.max_name:
            raise _ParamError("a node name in edges is too long", f"<= {limits.max_name} characters", len(x))
        return x
    raise _ParamError("edges must hold node names (strings)", "string", type(x).__name__)


MAX_LISTED_PROBLEMS = 25


def _load_error(head: str, problems: list[Problem]) -> GraphLoadError:
    """One GraphLoadError listing (at most MAX_LISTED_PROBLEMS of) the problems; all are kept in
    its ``problems`` attribute."""
    n = len(problems)
    lines = [f"  - {q}" for q in problems[:MAX_LISTED_PROBLEMS]]
    if n > MAX_LISTED_PROBLEMS:
        lines.append(f"  - ... and {n - MAX_LISTED_PROBLEMS} more problems (not listed)")
    err = GraphLoadError(f"{head}: {n} problem{'s' if n != 1 else ''}\n" + "\n".join(lines))
    err.problems = list(problems)
    return err


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:300]


# ================================================================================================
# nir objects -> IR
# ================================================================================================


def _is_nir_graph(x: Any) -> bool:
    try:
        import nir
    except Exception:  # pragma: no cover
        return False
    return isinstance(x, nir.NIRGraph)


def _first_value(d: Any) -> Any:
    if isinstance(d, dict):
        if not d:
            return None
        return next(iter(d.values()))
    return d


def _from_nir_graph(graph: Any, prefix: str, depth: int, problems: list[Problem], seen: set) -> Graph:
    gname = prefix.rstrip(".")
    if depth > DEFAULT_LIMITS.max_depth:
        raise GraphLoadError(f"subgraph {gname}: NIRGraph nesting deeper than {DEFAULT_LIMITS.max_depth} levels")
    if id(graph) in seen:
        raise GraphLoadError(f"subgraph {gname}: a NIRGraph contains itself")
    seen = seen | {id(graph)}
    g = Graph()
    nodes = getattr(graph, "nodes", None)
    if not isinstance(nodes, dict):
        problems.append(Problem(gname, "NIRGraph", "nodes", "nodes must be a dict of name -> node", "dict", type(nodes).__name__))
        nodes = {}
    for name, n in nodes.items():
        if not isinstance(name, str):
            problems.append(Problem(str(name), "", "name", "node names must be strings", "str", type(name).__name__))
            continue
        node = _from_nir_node(name, n, prefix, depth, problems, seen)
        if node is not None:
            g.nodes[name] = node
    edges = getattr(graph, "edges", None)
    try:
        for e in list(edges if edges is not None else []):
            a, b = list(e)
            a = a.decode("utf-8", "replace") if isinstance(a, bytes) else a
            b = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
            if not isinstance(a, str) or not isinstance(b, str):
                raise ValueError("edge endpoints must be node names")
            g.edges.append((a, b))
    except Exception as e:
        problems.append(Problem(gname, "NIRGraph", "edges", f"edges must be (source, destination) name pairs: {_short(e)}"))
    md = getattr(graph, "metadata", None)
    g.metadata = _copy_metadata(md)
    return g


def _copy_metadata(md: Any) -> dict:
    import copy

    if not isinstance(md, dict):
        return {}
    try:
        return copy.deepcopy(md)
    except Exception:
        return dict(md)


def _from_nir_node(name: str, n: Any, prefix: str, depth: int, problems: list[Problem], seen: set) -> Node | None:
    from .validate import PARAM_KINDS

    full = prefix + name
    t = type(n).__name__
    ntype = _canonical_type(t)
    if ntype not in KNOWN_TYPES:
        problems.append(Problem(full, t, "type", f"unknown node type {t!r}", _KNOWN_HINT, t))
        return None
    meta = _copy_metadata(getattr(n, "metadata", None))
    if t != ntype:
        meta["nirdeploy_legacy_type"] = t
    if ntype == "NIRGraph":
        sub = _from_nir_graph(n, full + ".", depth + 1, problems, seen)
        return Node(name, ntype, {}, meta, subgraph=sub)
    raw: dict[str, Any] = {}
    if ntype == "Input":
        raw["shape"] = _first_value(getattr(n, "input_type", None))
        if raw["shape"] is None:
            raw["shape"] = getattr(n, "shape", None)  # nir 0.x: Input(shape=...)
    elif ntype == "Output":
        raw["shape"] = _first_value(getattr(n, "output_type", None))
        if raw["shape"] is None:
            raw["shape"] = getattr(n, "shape", None)
    elif ntype == "Flatten":
        raw["input_shape"] = _first_value(getattr(n, "input_type", None))
        raw["start_dim"] = getattr(n, "start_dim", None)
        raw["end_dim"] = getattr(n, "end_dim", None)
    else:
        for k in PARAM_KINDS[ntype]:
            raw[k] = getattr(n, k, None)
    params: dict[str, Any] = {}
    ok = True
    for k, v in raw.items():
        if v is None:
            continue
        try:
            params[k] = _convert_param(ntype, k, PARAM_KINDS[ntype][k], v)
        except _ParamError as e:
            problems.append(Problem(full, ntype, k, e.message, e.expected, e.actual))
            ok = False
    missing: list[str] = []
    _apply_defaults(ntype, params, meta, missing)
    for m in missing:
        if not any(p.node == full and p.field == m for p in problems):
            problems.append(Problem(full, ntype, m, f"missing required field '{m}'"))
        ok = False
    if not ok:
        return None
    return Node(name, ntype, params, meta)


# ================================================================================================
# IR -> nir objects
# ================================================================================================


def _nir_kwargs(cls, kw: dict) -> dict:
    """Drop arguments an older nir class does not have (e.g. v_reset before nir 1.0.6)."""
    try:
        names = {f.name for f in dataclasses.fields(cls)}
    except TypeError:  # pragma: no cover
        return kw
    dropped = [k for k in kw if k not in names and k != "metadata"]
    for k in dropped:
        v = kw[k]
        if k == "v_reset" and isinstance(v, np.ndarray) and not np.any(v):
            continue  # zeros: what an older nir means anyway
        raise UnsupportedError(
            f"the installed nir {getattr(nir_module(), 'version', '?')} cannot represent {cls.__name__}.{k}; "
            "install nir>=1.0.6 to write this graph"
        )
    return {k: v for k, v in kw.items() if k in names}


def nir_module():
    import nir

    return nir


def _to_nir_graph(g: Graph) -> Any:
    import nir

    nodes = {name: _to_nir_node(n) for name, n in g.nodes.items()}
    kw: dict[str, Any] = {"nodes": nodes, "edges": [tuple(e) for e in g.edges]}
    params = _inspect.signature(nir.NIRGraph.__init__).parameters
    if "metadata" in params:
        kw["metadata"] = dict(g.metadata)
    if "type_check" in params:
        kw["type_check"] = False
    return nir.NIRGraph(**kw)


def _shape_arr(t) -> np.ndarray | None:
    return None if t is None else np.array(list(t), dtype=np.int64)


def _to_nir_node(n: Node) -> Any:
    import nir

    p = n.params
    md = dict(n.metadata)
    t = n.type
    if t in NON_NIR_TYPES:
        raise UnsupportedError(f"{n.name} ({t}): not a NIR 1.0 primitive, so nir cannot write it -- hint: {NON_NIR_TYPES[t].hint}")
    if t == "NIRGraph":
        sub = _to_nir_graph(n.subgraph if n.subgraph is not None else Graph())
        if md and hasattr(sub, "metadata"):
            sub.metadata = md
        return sub
    if t == "Input":
        shape = p.get("shape", n.output_shape)
        return nir.Input(**_nir_kwargs(nir.Input, {"input_type": {"input": _shape_arr(shape)}, "metadata": md}))
    if t == "Output":
        shape = p.get("shape", n.input_shape)
        return nir.Output(**_nir_kwargs(nir.Output, {"output_type": {"output": _shape_arr(shape)}, "metadata": md}))
    if t == "Flatten":
        shape = p.get("input_shape", n.input_shape)
        return nir.Flatten(**_nir_kwargs(nir.Flatten, {
            "input_type": {"input": _shape_arr(shape)},
            "start_dim": int(p.get("start_dim", 1)),
            "end_dim": int(p.get("end_dim", -1)),
            "metadata": md,
        }))
    if t in ("Conv1d", "Conv2d"):
        nd = _spatial_ndim(t)
        ins = p.get("input_shape")
        if ins is None and n.input_shape is not None and len(n.input_shape) == nd + 1:
            ins = tuple(n.input_shape[1:])
        pad = p.get("padding", (0,) * nd)
        if t == "Conv1d":
            conv_in = None if ins is None else int(ins[0])
            stride = int(p.get("stride", (1,))[0])
            dil = int(p.get("dilation", (1,))[0])
            pad = pad if isinstance(pad, str) else int(pad[0])
            cls = nir.Conv1d
        else:
            conv_in = None if ins is None else tuple(int(x) for x in ins)
            stride = tuple(int(x) for x in p.get("stride", (1, 1)))
            dil = tuple(int(x) for x in p.get("dilation", (1, 1)))
            pad = pad if isinstance(pad, str) else tuple(int(x) for x in pad)
            cls = nir.Conv2d
        w = p["weight"]
        return cls(**_nir_kwargs(cls, {
            "input_shape": conv_in,
            "weight": w,
            "stride": stride,
            "padding": pad,
            "dilation": dil,
            "groups": int(p.get("groups", 1)),
            "bias": p.get("bias", np.zeros(w.shape[0])),
            "metadata": md,
        }))
    if t in ("SumPool2d", "AvgPool2d"):
        cls = getattr(nir, t, None)
        if cls is None:
            raise UnsupportedError(f"the installed nir {getattr(nir, 'version', '?')} has no {t} node; install a newer nir")
        return cls(**_nir_kwargs(cls, {
            "kernel_size": np.array(p["kernel_size"], dtype=np.int64),
            "stride": np.array(p["stride"], dtype=np.int64),
            "padding": np.array(p["padding"], dtype=np.int64),
            "metadata": md,
        }))
    cls = getattr(nir, t, None)
    if cls is None:
        raise UnsupportedError(f"the installed nir {getattr(nir, 'version', '?')} has no {t} node; install a newer nir")
    kw = {k: v for k, v in p.items()}
    kw["metadata"] = md
    return cls(**_nir_kwargs(cls, kw))
