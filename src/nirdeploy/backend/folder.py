"""Reading and writing the files of a compiled deployment folder, for every target.

A compiled folder is data that may have been tampered with, truncated or replaced by something
that is not a file at all (a FIFO, a link to ``/dev/zero``, a zip bomb). Targets read their files
only through these functions, which

* open only **regular files** (no symlinks, devices, FIFOs or folders) without blocking,
* refuse files above a size cap before reading them,
* parse JSON with a size and nesting-depth limit, and ``.npz`` archives after checking every
  member's *uncompressed* size and refusing pickled objects,
* validate what was read against a small declarative :class:`Schema` (keys, types, ranges), and
  raise :class:`~nirdeploy.errors.DeploymentFolderError` (exit code 2) naming the file and key.

Writers (:func:`write_json`, :func:`write_npz`) write into the temporary folder a deployment is
built in; the folder itself appears atomically (see ``nirdeploy.api``).
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DeploymentFolderError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NPZ_BYTES",
    "read_regular_file",
    "read_json",
    "read_npz",
    "write_json",
    "write_npz",
    "Schema",
    "Int",
    "Float",
    "Str",
    "Bool",
    "ListOf",
    "Nullable",
    "AnyValue",
    "ArraySpec",
]

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_NPZ_BYTES = 512 * 1024 * 1024  # uncompressed, all members together
MAX_NPZ_MEMBERS = 1000


# -- raw bytes ------------------------------------------------------------------------------------
def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a link) of at most ``max_bytes``.

    Raises DeploymentFolderError for a missing file, a link, a non-regular file, or one too large.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise DeploymentFolderError(p, "", "file is missing") from None
    except OSError as e:
        raise DeploymentFolderError(p, "", f"cannot be read: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DeploymentFolderError(p, "", "is a symbolic link; a compiled folder holds regular files only")
    if not stat.S_ISREG(st.st_mode):
        raise DeploymentFolderError(p, "", "is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise DeploymentFolderError(p, "", f"cannot be opened: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
            raise DeploymentFolderError(p, "", "is not a regular file")
        if st.st_size > max_bytes:
            raise DeploymentFolderError(p, "", f"is {st.st_size} bytes, more than the {max_bytes} allowed")
        chunks, total = [], 0
        while True:
            b = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > max_bytes:
                raise DeploymentFolderError(p, "", f"grew beyond the {max_bytes} bytes allowed while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- JSON -----------------------------------------------------------------------------------------
def _data_depth(x: Any) -> int:
    """Deepest nesting of lists and dicts in parsed JSON (iterative: no recursion limit)."""
    deepest, stack = 0, [(x, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in v if isinstance(c, (list, dict)))
    return deepest


def read_json(path, schema: "Schema | None" = None, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON file under size and depth limits, then validate it against ``schema``.

    Non-finite numbers (``NaN``, ``Infinity``) are refused: nirdeploy never writes them."""
    p = Path(path)
    raw = read_regular_file(p, max_bytes)

    def bad_constant(c: str):
        raise ValueError(f"non-finite number {c} is not allowed")

    def finite_float(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):  # 1e400 overflows to inf
            raise ValueError(f"number {text[:40]} is out of the float range")
        return v

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=bad_constant, parse_float=finite_float)
    except RecursionError:  # the C parser stops at Python's recursion limit, safely
        raise DeploymentFolderError(p, "", f"JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError, OverflowError) as e:
        raise DeploymentFolderError(p, "", f"is not valid JSON: {str(e)[:200]}") from None
    if _data_depth(data) > max_depth:
        raise DeploymentFolderError(p, "", f"JSON nested deeper than {max_depth} levels")
    if schema is not None:
        schema.validate(data, p)
    return data


def write_json(path, data: Any) -> None:
    """Write RFC 8259 JSON (non-finite floats raise ValueError: callers encode them first)."""
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


# -- npz ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArraySpec:
    """What one ``.npz`` member must be: dtype kinds (numpy ``dtype.kind`` letters), number of
    dimensions (None: any), and an optional check ``fn(array) -> str | None`` (message if bad)."""

    kinds: str = "biuf"
    ndim: int | tuple[int, ...] | None = None
    check: Callable[[np.ndarray], str | None] | None = None
    optional: bool = False


def read_npz(
    path,
    specs: dict[str, ArraySpec] | None = None,
    *,
    max_file_bytes: int = MAX_NPZ_BYTES,
    max_uncompressed_bytes: int = MAX_NPZ_BYTES,
    allow_extra: bool = False,
) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` archive, checked before and after decompression.

    Every member's uncompressed size is read from the zip directory and summed before anything
    is decompressed; object arrays (pickles) are refused; with ``specs``, the member set, dtype
    kinds and dimensions are validated and a violation names the file and member."""
    import io

    p = Path(path)
    raw = read_regular_file(p, max_file_bytes)
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DeploymentFolderError(p, "", f"is not a valid .npz archive: {e}") from None
    out: dict[str, np.ndarray] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise DeploymentFolderError(p, "", f"holds {len(infos)} members, more than the {MAX_NPZ_MEMBERS} allowed")
        total = sum(max(0, i.file_size) for i in infos)
        if total > max_uncompressed_bytes:
            raise DeploymentFolderError(p, "", f"would decompress to {total} bytes, more than the {max_uncompressed_bytes} allowed")
        for info in infos:
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if specs is not None and key not in specs and not allow_extra:
                raise DeploymentFolderError(p, key, "unexpected array in the archive")
            if key in out:
                raise DeploymentFolderError(p, key, "appears twice in the archive")
            try:
                with zf.open(info) as f:
                    data = f.read(info.file_size + 1)
                if len(data) != info.file_size:
                    raise ValueError("member size differs from the archive directory")
                arr = _npy_from_bytes(data)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError, TypeError, SyntaxError, zlib.error) as e:
                raise DeploymentFolderError(p, key, f"cannot be read: {str(e)[:200]}") from None
            out[key] = arr
    if specs is not None:
        for key, spec in specs.items():
            if key not in out:
                if spec.optional:
                    continue
                raise DeploymentFolderError(p, key, "array is missing")
            a = out[key]
            if a.dtype.kind not in spec.kinds:
                raise DeploymentFolderError(p, key, f"has dtype {a.dtype}; expected kind(s) {spec.kinds!r}")
            if spec.ndim is not None:
                allowed = (spec.ndim,) if isinstance(spec.ndim, int) else tuple(spec.ndim)
                if a.ndim not in allowed:
                    raise DeploymentFolderError(p, key, f"has {a.ndim} dimension(s); expected {' or '.join(map(str, allowed))}")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise DeploymentFolderError(p, key, "holds NaN or infinite values")
            if spec.check is not None:
                try:
                    msg = spec.check(a)
                except (ValueError, TypeError, IndexError, OverflowError) as e:
                    msg = f"cannot be checked: {str(e)[:200]}"
                if msg:
                    raise DeploymentFolderError(p, key, msg)
    return out


def _npy_from_bytes(data: bytes) -> np.ndarray:
    """One ``.npy`` member: the header's dtype and size are checked against the bytes present
    before the array is built (a header may claim far more than the member holds)."""
    import io

    from ..inputs import npy_header

    f = io.BytesIO(data)
    shape, fortran, dtype = npy_header(f)
    if dtype.hasobject:
        raise ValueError("holds Python objects (pickles are never loaded)")
    n = math.prod(shape) if shape else 1
    if n * dtype.itemsize != len(data) - f.tell():
        raise ValueError(f"header announces {n * dtype.itemsize} bytes of data, the member holds {len(data) - f.tell()}")
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=f.tell())
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def write_npz(path, arrays: dict[str, Any]) -> None:
    """Write arrays (no pickles) to ``path``; numpy's own format, uncompressed."""
    clean = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in clean.items():
        if v.dtype.kind == "O":
            raise TypeError(f"array {k!r} has dtype object; compiled folders hold numeric arrays only")
    with open(path, "wb") as f:
        np.savez(f, **clean)


# -- schemas --------------------------------------------------------------------------------------
class _Spec:
    def check(self, v: Any) -> str | None:  # message if bad
        raise NotImplementedError

    def _first_error(self, v: Any, prefix: str) -> tuple[str, str] | None:
        m = self.check(v)
        return None if m is None else (prefix, m)

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class AnyValue(_Spec):
    def check(self, v):
        return None

    def describe(self):
        return "any value"


@dataclass(frozen=True)
class Int(_Spec):
    min: int | None = None
    max: int | None = None

    def check(self, v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"expected an integer, got {type(v).__name__}"
        if self.min is not None and v < self.min:
            return f"{v} is below the minimum {self.min}"
        if self.max is not None and v > self.max:
            return f"{v} is above the maximum {self.max}"
        return None

    def describe(self):
        return "integer"


@dataclass(frozen=True)
class Float(_Spec):
    """A finite number in ``[min, max]``. With ``nonfinite_strings``, also the strings ``"inf"``,
    ``"-inf"`` and ``"nan"``: how nirdeploy writes non-finite numbers into JSON."""

    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    nonfinite_strings: bool = False

    def check(self, v):
        if self.nonfinite_strings and v in ("inf", "-inf", "nan"):
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected a number, got {type(v).__name__}"
        if isinstance(v, float) and not math.isfinite(v):
            return "expected a finite number"
        if self.min is not None and self.exclusive_min and v <= self.min:
            return f"{v} must be > {self.min}"
        if self.min is not None and v < self.min:
            return f"{v} is below the minimum {self.min}"
        if self.max is not None and v > self.max:
            return f"{v} is above the maximum {self.max}"
        return None

    def describe(self):
        return "number"


@dataclass(frozen=True)
class Str(_Spec):
    choices: tuple[str, ...] | None = None
    max_len: int = 10_000

    def check(self, v):
        if not isinstance(v, str):
            return f"expected a string, got {type(v).__name__}"
        if len(v) > self.max_len:
            return f"string longer than {self.max_len} characters"
        if self.choices is not None and v not in self.choices:
            return f"{v!r} is not one of {', '.join(self.choices)}"
        return None

    def describe(self):
        return "string"


@dataclass(frozen=True)
class Bool(_Spec):
    def check(self, v):
        return None if isinstance(v, bool) else f"expected true or false, got {type(v).__name__}"

    def describe(self):
        return "boolean"


@dataclass(frozen=True)
class Nullable(_Spec):
    inner: _Spec

    def check(self, v):
        return None if v is None else self.inner.check(v)

    def _first_error(self, v, prefix):
        return None if v is None else self.inner._first_error(v, prefix)

    def describe(self):
        return f"{self.inner.describe()} or null"


@dataclass(frozen=True)
class ListOf(_Spec):
    item: _Spec
    min_len: int = 0
    max_len: int = 1_000_000

    def check(self, v):
        err = self._first_error(v, "")
        return None if err is None else (f"{err[0]}: {err[1]}" if err[0] else err[1])

    def _first_error(self, v, prefix):
        if not isinstance(v, list):
            return prefix, f"expected a list, got {type(v).__name__}"
        if not (self.min_len <= len(v) <= self.max_len):
            return prefix, f"list of length {len(v)}; expected {self.min_len}..{self.max_len}"
        for i, x in enumerate(v):
            e = self.item._first_error(x, f"{prefix}[{i}]")
            if e:
                return e
        return None

    def describe(self):
        return f"list of {self.item.describe()}"


@dataclass(frozen=True)
class Schema(_Spec):
    """A JSON object with required ``fields``, ``optional`` ones, and (unless ``allow_extra``)
    nothing else. Nested schemas are allowed as field specs."""

    fields: dict[str, _Spec] = field(default_factory=dict)
    optional: dict[str, _Spec] = field(default_factory=dict)
    allow_extra: bool = True

    def check(self, v, _prefix: str = "") -> str | None:
        err = self._first_error(v, _prefix)
        return None if err is None else f"{err[0]}: {err[1]}" if err[0] else err[1]

    def _first_error(self, v, prefix: str) -> tuple[str, str] | None:
        if not isinstance(v, dict):
            return prefix, f"expected a JSON object, got {type(v).__name__}"
        for k, spec in self.fields.items():
            key = f"{prefix}.{k}" if prefix else k
            if k not in v:
                return key, "key is missing"
            e = spec._first_error(v[k], key)
            if e:
                return e
        for k, spec in self.optional.items():
            if k in v:
                key = f"{prefix}.{k}" if prefix else k
                e = spec._first_error(v[k], key)
                if e:
                    return e
        if not self.allow_extra:
            extra = sorted(set(v) - set(self.fields) - set(self.optional))
            if extra:
                return (f"{prefix}.{extra[0]}" if prefix else extra[0]), "unexpected key"
        return None

    def validate(self, data: Any, path) -> None:
        """Raise DeploymentFolderError naming ``path`` and the first bad key."""
        err = self._first_error(data, "")
        if err is not None:
            raise DeploymentFolderError(Path(path), err[0], err[1])

    def describe(self):
        return "object"
