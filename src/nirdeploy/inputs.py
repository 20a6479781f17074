"""Validating everything that comes in: event arrays and public-function arguments.

There is ONE validator for arrays, :func:`check_events`, used by ``nirdeploy simulate``
(``--input X.npy``), ``--calibrate X.npy``, ``Deployment.simulate``, ``simulate_reference`` and
``compile(calibrate=...)``, so one input gets the same message everywhere. Its rules:

* a real numeric dtype (bool, int, uint, float); strings, bytes, complex, structured, datetime,
  timedelta and object arrays are refused, and so are ragged nested lists;
* finite values that are non-negative integer event counts (spikes per time step), at most
  :data:`MAX_EVENT_COUNT` per element;
* shape ``(batch, time, *input_shape)`` with ``batch >= 1`` and ``time >= 1``, at most
  :data:`MAX_INPUT_ELEMENTS` elements.

:func:`check_real_array` is the same validator without the event-count rule (float reference
simulation of currents, chip outputs given to ``compare_outputs``). :func:`load_npy` reads a
``.npy`` file: it must be a regular file (a FIFO or a device would block or never end) and its
header (dtype, shape) is checked before any data is read.

:func:`check_labels` is the one validator of class labels (``compare --labels``,
``assert_chip_accuracy``): one whole, non-negative class index per sample.

:func:`check_input_file` is the one check of a file argument that is read (a ``.npy`` input,
a model file, a weights file, a budget file, a recording): it must be a regular file, so a
FIFO, a device or a folder never blocks or floods a read.

Argument validators (:func:`check_choice`, :func:`check_flag`, :func:`check_path`,
:func:`check_callable`, :func:`check_int`, :func:`check_number`, :func:`check_options`,
:func:`parse_key_values`) are what every public API function calls, so the API raises the same
:class:`~nirdeploy.errors.UsageError` (exit code 2) the CLI prints.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import UsageError

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "MAX_EVENT_COUNT",
    "MAX_NPY_BYTES",
    "check_events",
    "check_real_array",
    "check_labels",
    "check_input_file",
    "load_npy",
    "npy_header",
    "check_choice",
    "check_flag",
    "check_path",
    "check_callable",
    "check_int",
    "check_number",
    "check_options",
    "parse_key_values",
]

MAX_INPUT_ELEMENTS = 500_000_000
#: spikes per element and time step; larger counts are certainly not event data
MAX_EVENT_COUNT = 2**31 - 1
#: a .npy input file above this size is refused before it is read
MAX_NPY_BYTES = 8 * MAX_INPUT_ELEMENTS + 1_000_000

_KIND_NAMES = {
    "c": "complex numbers",
    "U": "strings",
    "S": "bytes",
    "V": "structured records",
    "M": "datetimes",
    "m": "time differences",
    "O": "Python objects",
}


def _kind_problem(dtype: np.dtype) -> str | None:
    if dtype.kind in "biuf" and dtype.fields is None and dtype.subdtype is None:
        return None
    what = _KIND_NAMES.get(dtype.kind, f"dtype {dtype}")
    return f"holds {what} (dtype {dtype}); expected real numbers (bool, int or float)"


def _as_array(x: Any, what: str, shape: str = "(batch, time, ...)") -> np.ndarray:
    if isinstance(x, np.ma.MaskedArray):  # its hidden values would be simulated as if they were data
        if np.ma.count_masked(x):
            raise UsageError(f"{what} is a masked array with {int(np.ma.count_masked(x))} masked value(s); "
                             "pass a plain array (fill or drop the masked entries first)")
        return np.asarray(x.data)
    if isinstance(x, np.ndarray):
        return np.asarray(x)  # a subclass (np.matrix, ...) would change what operators mean downstream
    if x is None or isinstance(x, (str, bytes, bytearray, dict, set)) or not hasattr(x, "__len__") and not hasattr(x, "__array__"):
        raise UsageError(f"{what} must be an array of shape {shape}, got {type(x).__name__}")
    try:
        return np.asarray(x)
    except (ValueError, TypeError, OverflowError) as e:
        raise UsageError(f"{what} is not a rectangular numeric array (ragged nested lists?): {_first_line(e)}") from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply to be an array") from None


def _check_shape(x: np.ndarray, input_shape: Sequence[int] | None, what: str, min_ndim: int) -> None:
    if x.ndim < min_ndim:
        raise UsageError(f"{what} has shape {tuple(x.shape)}; expected (batch, time, ...) with at least {min_ndim} dimensions")
    if input_shape is not None:
        want = tuple(int(s) for s in input_shape)
        if x.ndim != 2 + len(want) or tuple(x.shape[2:]) != want:
            dims = ", ".join(["batch", "time"] + [str(s) for s in want])
            raise UsageError(f"{what} has shape {tuple(x.shape)}; expected ({dims})")
    if x.shape[0] < 1:
        raise UsageError(f"{what} has batch size 0 (shape {tuple(x.shape)}); at least one sample is needed")
    if x.shape[1] < 1:
        raise UsageError(f"{what} has 0 time steps (shape {tuple(x.shape)}); at least one step is needed")
    if x.size > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{what} has {x.size} elements, more than the {MAX_INPUT_ELEMENTS} allowed")


def check_real_array(
    x: Any, input_shape: Sequence[int] | None = None, *, what: str = "input", min_ndim: int = 2
) -> np.ndarray:
    """``x`` as a finite real ndarray of shape (batch, time, *input_shape), batch and time >= 1.

    Raises :class:`UsageError` naming ``what`` otherwise. Returns ``x`` (float64 for float input,
    unchanged dtype for int/bool)."""
    a = _as_array(x, what)
    msg = _kind_problem(a.dtype)
    if msg:
        raise UsageError(f"{what} {msg}")
    _check_shape(a, input_shape, what, min_ndim)
    if a.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise UsageError(f"{what} contains {bad} NaN or infinite value(s)")
    return a


def check_events(x: Any, input_shape: Sequence[int] | None = None, *, what: str = "input") -> np.ndarray:
    """The one validator of event input: ``x`` as an int64 array of spike counts, shape
    ``(batch, time, *input_shape)`` (``input_shape=None``: any trailing shape).

    Raises :class:`UsageError` (exit code 2) for a non-real dtype, a ragged list, a wrong shape,
    batch or time of 0, NaN/inf, negative or fractional counts, or counts above
    :data:`MAX_EVENT_COUNT`."""
    a = check_real_array(x, input_shape, what=what)
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if np.any(a != np.floor(a)):
            raise UsageError(f"{what} must hold whole event counts (spikes per step); found fractional values")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0:
            raise UsageError(f"{what} must hold non-negative event counts; found {_num(lo)}")
        if float(hi) > MAX_EVENT_COUNT:  # a Python float: comparing a float16 to 2**31-1 overflowed (RuntimeWarning)
            raise UsageError(f"{what} holds an event count of {_num(hi)}, more than {MAX_EVENT_COUNT}")
    return a.astype(np.int64, copy=False)


def check_labels(y: Any, n_samples: int | None = None, n_classes: int | None = None, *, what: str = "labels") -> np.ndarray:
    """The one validator of class labels: ``y`` as an int64 array of shape ``(n_samples,)``
    holding whole, non-negative class indices (below ``n_classes`` when given; whole floats are
    accepted, bools are not). Raises :class:`UsageError` naming ``what`` otherwise: a label that
    is not a class index would make every accuracy figure silently wrong."""
    a = _as_array(y, what, "(samples,)")
    if a.dtype.kind not in "iuf" or a.dtype.fields is not None:
        raise UsageError(f"{what} must be integer class indices, got dtype {a.dtype}")
    if a.ndim != 1 or (n_samples is not None and a.shape[0] != n_samples):
        want = f"({n_samples},)" if n_samples is not None else "(samples,)"
        raise UsageError(f"{what} have shape {tuple(a.shape)}; expected {want}: one class index per sample")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise UsageError(f"{what} contain NaN or infinite values; expected class indices")
        if np.any(a != np.floor(a)):
            raise UsageError(f"{what} must be integer class indices; found fractional values")
    if a.size:
        lo, hi = a.min(), a.max()
        top = MAX_EVENT_COUNT if n_classes is None else n_classes - 1
        if lo < 0 or hi > top:
            rng = f"in [0, {n_classes - 1}] (the network has {n_classes} outputs)" if n_classes is not None else "(non-negative)"
            raise UsageError(f"{what} must be class indices {rng}; got values in [{_num(lo)}, {_num(hi)}]")
    return a.astype(np.int64)


def _num(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_npy(path: Any, *, what: str = "input") -> np.ndarray:
    """Read a single array from a ``.npy`` file, safely.

    The path must be a regular file (a symbolic link to one is followed; a FIFO, device or folder
    is refused without opening it for reading). The header's dtype and shape are checked before
    the data is read, pickled objects are never loaded. Raises :class:`UsageError`."""
    p, st = _input_file(path, what, "a .npy array", MAX_NPY_BYTES)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise UsageError(f"{what} file {p} cannot be opened: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced after the check
            raise UsageError(f"{what} file {p} is not a regular file")
        fmt = np.lib.format
        try:
            shape, fortran, dtype = npy_header(f)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
            head = "it is a .npz archive; give a single array (.npy)" if _is_zip(p) else _first_line(e)
            raise UsageError(f"{what} file {p} is not a readable .npy array: {head}") from None
        msg = _kind_problem(dtype)
        if msg:
            raise UsageError(f"{what} file {p} {msg}")
        n = math.prod(shape) if shape else 1
        if n > MAX_INPUT_ELEMENTS:
            raise UsageError(f"{what} file {p} holds {n} elements, more than the {MAX_INPUT_ELEMENTS} allowed")
        need = n * dtype.itemsize
        if st.st_size - f.tell() < need:
            raise UsageError(f"{what} file {p} is truncated: its header announces {need} bytes of data")
        f.seek(0)
        try:
            arr = fmt.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UsageError(f"{what} file {p} is not a readable .npy array: {_first_line(e)}") from None
    return arr


def check_input_file(path: Any, what: str, expected: str = "a file", max_bytes: int | None = None) -> str:
    """``path`` as a path string naming an existing regular file (a symbolic link to one is
    followed) of at most ``max_bytes``; else :class:`UsageError`: "WHAT file P does not exist",
    "... is a folder, not EXPECTED", "... is not a regular file (a device, FIFO or socket)".
    Nothing is opened, so a FIFO or a device never blocks."""
    return _input_file(path, what, expected, max_bytes)[0]


def _input_file(path: Any, what: str, expected: str, max_bytes: int | None) -> tuple[str, os.stat_result]:
    p = check_path(path, f"{what} file")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{what} file {p} does not exist") from None
    except OSError as e:
        raise UsageError(f"{what} file {p} cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} file {p} is a folder, not {expected}")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} file {p} is not a regular file (a device, FIFO or socket); give {expected}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UsageError(f"{what} file {p} is {st.st_size} bytes, more than the {max_bytes} allowed")
    return p, st


def npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the header of an ``.npy`` stream positioned at its start
    (format 1.0 or 2.0); leaves the stream at the data. Raises ValueError for anything else."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        return fmt.read_array_header_1_0(f)
    if version == (2, 0):
        return fmt.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _is_zip(p: str) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:300]


# -- arguments ----------------------------------------------------------------------------------
def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (strings), else :class:`UsageError`."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool (numpy bools too), else :class:`UsageError`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise UsageError(f"{name} must be True or False, got {value!r}")


def check_path(value: Any, name: str = "path") -> str:
    """``value`` as a path string: a str or os.PathLike, non-empty, without NUL bytes."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    s = os.fspath(value)
    if not isinstance(s, str) or not s:
        raise UsageError(f"{name} must be a non-empty path, got {value!r}")
    if "\x00" in s:
        raise UsageError(f"{name} contains a NUL byte: {s!r}")
    return s


def check_callable(name: str, value: Any) -> Callable | None:
    """``value`` if it is None or callable, else :class:`UsageError`."""
    if value is None or callable(value):
        return value
    raise UsageError(f"{name} must be a function (or None), got {type(value).__name__}")


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int (Python or numpy integer, not bool) in ``[lo, hi]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if lo is not None and v < lo:
        raise UsageError(f"{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise UsageError(f"{name} must be <= {hi}, got {v}")
    return v


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, kind: str = "a number") -> float:
    """``value`` as a finite float in ``[lo, hi]``: a Python or numpy int or float (not a bool,
    not a string); else :class:`UsageError` ("NAME must be KIND in [lo, hi], got ...")."""
    rng = f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(f"{name} must be {kind}{rng}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise UsageError(f"{name} must be {kind}{rng}, got {v:g}")
    return v


def check_options(name: str, value: Any) -> dict:
    """``value`` as a dict of option names (non-empty strings) to values; None gives ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{name} must be a mapping of option names to values, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str) or not k]
    if bad:
        raise UsageError(f"{name}: option names must be non-empty strings, got {bad[0]!r}")
    return dict(value)


def parse_key_values(items: Iterable[str], name: str = "--target-option") -> dict:
    """``KEY=VALUE`` strings as a dict; a VALUE of ASCII digits (with an optional ``-``) becomes
    an int. A missing ``=``, an empty KEY or a KEY given twice is a :class:`UsageError`."""
    out: dict = {}
    for it in items or ():
        key, sep, value = str(it).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"{name} takes KEY=VALUE, got {it!r}")
        if key in out:
            raise UsageError(f"{name} {key} is given twice ({out[key]!r} and {value!r}); give it once")
        digits = value[1:] if value.startswith("-") else value
        out[key] = int(value) if digits and digits.isascii() and digits.isdigit() else value
    return out
