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
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, UsageError

__all__ = ["SENSOR_SIZE", "FIRST_SACCADE_US", "TONIC_INSTALL", "load_nmnist", "nmnist_files"]

#: (x, y, polarity) of the ATIS recordings (tonic.datasets.NMNIST.sensor_size)
SENSOR_SIZE = (34, 34, 2)
#: the first of the three saccades ends at 100 ms (tonic's ``first_saccade_only``)
FIRST_SACCADE_US = 100_000
TONIC_INSTALL = "pip install 'nirdeploy[data]'  (tonic==1.7.0; without its audio dependencies: pip install --no-deps tonic==1.7.0 importRosbag==1.0.4 && pip install tqdm requests)"
#: largest array load_nmnist builds unless told otherwise (bytes)
DEFAULT_MAX_BYTES = 2 << 30


def _tonic():
    try:
        return importlib.import_module("tonic")
    except ImportError as e:
        raise MissingDependencyError("tonic", TONIC_INSTALL, str(e)) from None


def _split_folder(root: Path, split: str) -> Path:
    name = {"train": "Train", "test": "Test"}[split]
    for cand in (root / "NMNIST" / name, root / name, root):
        if cand.is_dir() and any((cand / str(d)).is_dir() for d in range(10)):
            return cand
    raise UsageError(
        f"no N-MNIST {split} split under {root}: expected {root}/NMNIST/{name}/<digit>/*.bin (tonic's layout), "
        f"{root}/{name}/<digit>/*.bin or {root}/<digit>/*.bin. nirdeploy never downloads: get the files with "
        f"tonic.datasets.NMNIST(save_to='{root}', train={split == 'train'}) or from the dataset's site")


def nmnist_files(root, split: str = "test", limit: int | None = None) -> list[tuple[Path, int]]:
    """The (file, label) pairs of one split, in tonic's order (digit folders sorted, files
    sorted). With ``limit``, the first ``limit`` of them taken round-robin over the digits (so a
    small subset has every class). Raises :class:`UsageError` when the folder has none."""
    if split not in ("train", "test"):
        raise UsageError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise UsageError(f"limit must be a positive number of samples, got {limit!r}")
    folder = _split_folder(Path(root), split)
    per: list[list[tuple[Path, int]]] = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and len(p.name) == 1):
        files = sorted(f for f in d.rglob("*.bin") if f.is_file())
        if files:
            per.append([(f, int(d.name)) for f in files])
    if not per:
        raise UsageError(f"{folder} has digit folders but no .bin files")
    if limit is None:
        return [pair for cls in per for pair in cls]
    out: list[tuple[Path, int]] = []
    i = 0
    while len(out) < int(limit) and any(i < len(c) for c in per):
        out.extend(c[i] for c in per if i < len(c))
        i += 1
    return out[: int(limit)]


def _read(path: Path, tonic) -> np.ndarray:
    size = path.stat().st_size
    if size % 5:
        raise UsageError(f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events (truncated or not N-MNIST)")
    ev = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
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
    missing folder, a malformed file or a result larger than ``max_bytes`` (say ``limit`` /
    ``n_steps``), :class:`~nirdeploy.errors.MissingDependencyError` without tonic.
    """
    from ..graph.discretize import validate_dt

    dt = validate_dt(dt)
    if n_steps is not None and (isinstance(n_steps, bool) or int(n_steps) < 1):
        raise UsageError(f"n_steps must be a positive number of steps, got {n_steps!r}")
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
    n_steps = int(n_steps)
    need = len(pairs) * n_steps * frame_bytes
    if need > max_bytes:
        raise UsageError(f"{len(pairs)} samples x {n_steps} steps of 2 x 34 x 34 float32 need {need / 2**30:.2f} GiB "
                         f"(limit {max_bytes / 2**30:.2f} GiB): pass limit / n_steps (--limit / --steps), a larger dt, or max_bytes")
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
