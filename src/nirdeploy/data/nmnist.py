"""N-MNIST from files already on disk, read and binned by ``tonic`` (never downloaded).

N-MNIST (Orchard et al. 2015, Front. Neurosci. 9:437) is MNIST recorded by an ATIS event camera
making three saccades: 34 x 34 pixels, 2 polarities, timestamps in microseconds, about 300 ms per
sample. On disk (as the dataset's archives unpack, and where ``tonic.datasets.NMNIST(save_to)``
puts them) every sample is one ``.bin`` file of 5-byte events under a folder named by its digit::

    SAVE_TO/NMNIST/Train/0/00002.bin ... SAVE_TO/NMNIST/Test/9/...

``tonic.datasets.NMNIST`` itself downloads the archive unless the ``.zip`` and all 10,000+
files are present, so nirdeploy does not construct it: it walks the folder the same way (sorted,
label = digit folder) and uses tonic for what tonic is for: ``tonic.io.read_mnist_file`` decodes
the events (timestamp overflow events included) and ``tonic.transforms.ToFrame`` bins them into
frames of ``dt`` (start at t = 0, so step k is [k dt, (k+1) dt) for every sample). Needs
``tonic`` (``pip install tonic==1.7.0``; ``scripts/test.sh`` installs it without its audio
dependencies, which N-MNIST does not use).

The result feeds every nirdeploy command that takes an input array: ``x`` is (samples, steps,
2, 34, 34) float32 event counts (the input shape of the NIR paper's N-MNIST CNN,
``examples/nir-corpus/cnn_sinabs.nir``), ``y`` (samples,) int64 digit labels.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, UsageError
from ..inputs import check_choice, check_flag, check_input_file, check_int, check_path

__all__ = ["SENSOR_SIZE", "FIRST_SACCADE_US", "TONIC_INSTALL", "load_nmnist", "nmnist_files", "split_folder"]

#: (x, y, polarity) of the ATIS recordings (tonic.datasets.NMNIST.sensor_size)
SENSOR_SIZE = (34, 34, 2)
#: the first of the three saccades ends at 100 ms (tonic's ``first_saccade_only``)
FIRST_SACCADE_US = 100_000
TONIC_INSTALL = "pip install 'nirdeploy[data]'  (tonic==1.7.0; without its audio dependencies: pip install --no-deps tonic==1.7.0 importRosbag==1.0.4 && pip install tqdm requests)"
#: largest array load_nmnist builds unless told otherwise (bytes)
DEFAULT_MAX_BYTES = 2 << 30
#: a recording larger than this is not an N-MNIST sample (they are ~20 KB: 300 ms of events);
#: it is refused before it is read
MAX_FILE_BYTES = 16 << 20


def _tonic():
    try:
        return importlib.import_module("tonic")
    except ImportError as e:
        raise MissingDependencyError("tonic", TONIC_INSTALL, str(e)) from None


def split_folder(root, split: str = "test") -> Path:
    """The folder holding one split's digit folders: ``ROOT/NMNIST/Test`` (tonic's layout),
    ``ROOT/Test`` or ``ROOT`` itself. Raises :class:`UsageError` (bad argument, no such folder)."""
    check_choice("split", split, ("train", "test"))
    root = Path(check_path(root, "N-MNIST root folder"))
    name = {"train": "Train", "test": "Test"}[split]
    for cand in (root / "NMNIST" / name, root / name, root):
        if cand.is_dir() and any((cand / str(d)).is_dir() for d in range(10)):
            return cand
    raise UsageError(
        f"no N-MNIST {split} split under {root}: expected {root}/NMNIST/{name}/<digit>/*.bin (tonic's layout), "
        f"{root}/{name}/<digit>/*.bin or {root}/<digit>/*.bin. nirdeploy never downloads: get the files with "
        f"tonic.datasets.NMNIST(save_to='{root}', train={split == 'train'}) or from the dataset's site")


def _bin_files(folder: Path) -> list[Path]:
    """The ``.bin`` entries under ``folder``, sorted; symbolic links to folders are not followed
    (as tonic's ``os.walk``), so a link loop cannot make the walk endless. Entries that are not
    regular files (a FIFO, a device, a dangling link) are kept, so that reading refuses them by
    name instead of silently dropping a sample."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        out += [Path(dirpath) / f for f in filenames if f.endswith(".bin")]
    return sorted(out)


def nmnist_files(root, split: str = "test", limit: int | None = None) -> list[tuple[Path, int]]:
    """The (file, label) pairs of one split, in tonic's order (digit folders sorted, files
    sorted). With ``limit``, the first ``limit`` of them taken round-robin over the digits (so a
    small subset has every class). Raises :class:`UsageError` for a bad argument or when the
    folder has none."""
    if limit is not None:
        limit = check_int("limit", limit, 1)
    folder = split_folder(root, split)
    per: list[list[tuple[Path, int]]] = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and len(p.name) == 1):
        files = _bin_files(d)
        if files:
            per.append([(f, int(d.name)) for f in files])
    if not per:
        raise UsageError(f"{folder} has digit folders but no .bin files")
    if limit is None:
        return [pair for cls in per for pair in cls]
    out: list[tuple[Path, int]] = []
    i = 0
    while len(out) < limit and any(i < len(c) for c in per):
        out.extend(c[i] for c in per if i < len(c))
        i += 1
    return out[:limit]


def _read(path: Path, tonic) -> np.ndarray:
    p = check_input_file(path, "N-MNIST recording", "a .bin recording", MAX_FILE_BYTES)
    size = os.stat(p).st_size
    if size % 5:
        raise UsageError(f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events (truncated or not N-MNIST)")
    try:
        ev = tonic.io.read_mnist_file(p, dtype=tonic.datasets.NMNIST.dtype)
    except OSError as e:
        raise UsageError(f"{path}: cannot be read: {e.strerror or e}") from None
    if ev.size and (ev["x"].max() >= SENSOR_SIZE[0] or ev["y"].max() >= SENSOR_SIZE[1]):
        raise UsageError(f"{path}: events at x = {int(ev['x'].max())}, y = {int(ev['y'].max())} lie outside the 34 x 34 sensor "
                         "(not an N-MNIST file)")
    return ev


def load_nmnist(
    root,
    *,
    split: str = "test",
    dt: float = 1e-3,
    n_steps: int | None = None,
    limit: int | None = None,
    first_saccade_only: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """N-MNIST samples under ``root`` as binned event counts.

    ``dt``: bin width in seconds (one network time step). ``n_steps``: steps per sample (events
    after ``n_steps * dt`` are dropped, shorter samples padded with zeros); default: enough for
    the longest sample. ``limit``: at most that many samples, round-robin over the digits.
    ``first_saccade_only``: keep events before 100 ms, as tonic's option does.

    Returns ``(x, y)``: x (samples, steps, 2, 34, 34) float32 counts ([polarity, y, x] per frame,
    tonic's ``ToFrame`` layout), y (samples,) int64 labels. Raises :class:`UsageError` for a
    bad argument (dt, n_steps, limit, max_bytes must be positive; first_saccade_only a bool), a
    missing folder, a malformed or unreadable file (recordings are regular files of at most
    :data:`MAX_FILE_BYTES`) or a result larger than ``max_bytes`` (say ``limit`` / ``n_steps``),
    :class:`~nirdeploy.errors.MissingDependencyError` without tonic.
    """
    from ..graph.discretize import validate_dt

    dt = validate_dt(dt)
    if n_steps is not None:
        n_steps = check_int("n_steps", n_steps, 1)
    first_saccade_only = check_flag("first_saccade_only", first_saccade_only)
    max_bytes = check_int("max_bytes", max_bytes, 1)
    check_path(root, "N-MNIST root folder")
    tonic = _tonic()
    from tonic.transforms import ToFrame

    pairs = nmnist_files(root, split, limit)
    window_us = dt * 1e6
    frame_bytes = 4 * SENSOR_SIZE[0] * SENSOR_SIZE[1] * SENSOR_SIZE[2]
    events = []
    for path, _ in pairs:
        ev = _read(path, tonic)
        if first_saccade_only:
            ev = ev[ev["t"] < FIRST_SACCADE_US]
        events.append(ev)
    if n_steps is None:
        last = max((int(e["t"].max()) for e in events if e.size), default=0)
        n_steps = int(last // window_us) + 1
    need = len(pairs) * n_steps * frame_bytes
    if need > max_bytes:
        raise UsageError(f"{len(pairs)} samples x {n_steps:.4g} steps of 2 x 34 x 34 float32 need {need / 2**30:.4g} GiB "
                         f"(limit {max_bytes / 2**30:.4g} GiB): pass limit / n_steps (--limit / --steps), a larger dt, or max_bytes")
    # start and end given: every sample gets the same bins [k dt, (k+1) dt); without end_time, tonic
    # 1.7.0 drops a last event that lies exactly on a bin boundary (its slices end at the last event)
    to_frame = ToFrame(sensor_size=SENSOR_SIZE, time_window=window_us, start_time=0, end_time=n_steps * window_us,
                       include_incomplete=True)
    x = np.zeros((len(pairs), n_steps, SENSOR_SIZE[2], SENSOR_SIZE[1], SENSOR_SIZE[0]), dtype=np.float32)
    for k, ev in enumerate(events):
        ev = ev[ev["t"] < n_steps * window_us]
        if ev.size == 0:
            continue
        frames = to_frame(ev)
        m = min(n_steps, frames.shape[0])
        x[k, :m] = frames[:m]
    y = np.asarray([lab for _, lab in pairs], dtype=np.int64)
    return x, y
