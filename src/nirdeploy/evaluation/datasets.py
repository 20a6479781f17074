"""Deterministic event data sets for end-to-end checks, built from scikit-learn's bundled 8x8
digits (``sklearn.datasets.load_digits``: 1,797 images, 16 grey levels, shipped inside
scikit-learn, no download).

Two encodings, both exact functions of the images (no random numbers except the train/test
split, which is fixed by ``seed``):

* :func:`digits_events` - **16 channels over time** for recurrent networks and Xylo: a column
  scan. The image is swept left to right, one column every ``steps_per_column`` steps, starting
  and ending on a blank column. Channel ``r`` (0-7) is the ON channel of pixel row ``r``: it
  emits events when that row's pixel brightens from one column to the next; channel ``8 + r``
  is its OFF channel (darkening). A change of ``d`` grey levels (0..16) gives
  ``round(d * max_events / 16)`` events, spread evenly over the column's steps at most one per
  step when ``max_events <= steps_per_column``; ``tail_steps`` silent steps follow the sweep so a
  readout can settle. Shape ``(n, T, 16)``, ``T = 9 * steps_per_column + tail_steps``.
* :func:`digits_frames` - **ON/OFF frames** for convolutional networks: the image, upsampled by
  ``upsample`` (nearest neighbour), moves along a fixed saccade path (like the N-MNIST
  recordings: three sweeps of a triangle, one pixel per step); each step's events are the
  brightening (ON, channel 0) and darkening (OFF, channel 1) between consecutive frames;
  ``tail_steps`` silent steps may follow so a readout can settle (a chip reads its outputs
  ``latency`` steps later). Shape ``(n, T, 2, 8u + 2, 8u + 2)`` (one pixel of margin for the
  motion), ``T = len(SACCADE_PATH) - 1 + tail_steps``.

Both return an :class:`EventDataset` with a stratified train/test split. Requires
scikit-learn (``pip install scikit-learn``); raises MissingDependencyError when it is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MissingDependencyError, UsageError

__all__ = ["EventDataset", "load_digit_images", "column_scan", "saccade_frames", "split", "digits_events", "digits_frames",
           "DIGITS_CHANNELS", "SACCADE_PATH"]

DIGITS_CHANNELS = 16
GREY_LEVELS = 16  # load_digits pixel values are 0..16
# one pixel per step around a triangle, three times (row, column offsets)
SACCADE_PATH = ((0, 0), (1, 1), (2, 2), (2, 1), (2, 0), (1, 0)) * 3 + ((0, 0),)


@dataclass
class EventDataset:
    """Train and test event tensors with integer labels; ``description`` says how they were made."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample, (time, *channels)."""
        return tuple(self.x_train.shape[1:])


def load_digit_images(classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 8, 8) float 0..16, labels (n,)) of the digits ``0 .. classes-1``."""
    if not (isinstance(classes, (int, np.integer)) and 2 <= classes <= 10):
        raise UsageError(f"classes must be an integer in 2..10, got {classes!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", "pip install scikit-learn", "needed for the digits event data set") from None
    d = load_digits()
    keep = d.target < classes
    return np.asarray(d.images[keep], dtype=np.float64), np.asarray(d.target[keep], dtype=np.int64)


def _spread(k: int, steps: int) -> np.ndarray:
    """Per-step event counts of ``k`` events spread evenly over ``steps`` steps."""
    out = np.zeros(steps, dtype=np.int64)
    if k <= 0:
        return out
    pos = np.floor((np.arange(k) + 0.5) * steps / k).astype(np.int64)
    np.add.at(out, np.minimum(pos, steps - 1), 1)
    return out


def column_scan(images: np.ndarray, steps_per_column: int = 4, tail_steps: int = 8, max_events: int | None = None) -> np.ndarray:
    """The 16-channel column-scan encoding of ``images`` (n, 8, 8) with values 0..16 (see the
    module docstring). Returns ``(n, 9 * steps_per_column + tail_steps, 16)`` uint8 counts."""
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 3 or imgs.shape[1:] != (8, 8):
        raise UsageError(f"images must be (n, 8, 8), got {imgs.shape}")
    spc = int(steps_per_column)
    if spc < 1 or tail_steps < 0:
        raise UsageError("steps_per_column must be >= 1 and tail_steps >= 0")
    me = spc if max_events is None else int(max_events)
    if not 1 <= me <= 255:
        raise UsageError("max_events must be in 1..255")
    n = imgs.shape[0]
    padded = np.concatenate([np.zeros((n, 8, 1)), imgs, np.zeros((n, 8, 1))], axis=2)  # blank before and after
    delta = np.diff(padded, axis=2)  # (n, 8 rows, 9 transitions)
    k_on = np.rint(np.clip(delta, 0, None) * me / GREY_LEVELS).astype(np.int64)
    k_off = np.rint(np.clip(-delta, 0, None) * me / GREY_LEVELS).astype(np.int64)
    table = np.stack([_spread(k, spc) for k in range(me + 1)])  # (me + 1, spc)
    T = 9 * spc + int(tail_steps)
    x = np.zeros((n, T, DIGITS_CHANNELS), dtype=np.uint8)
    for c in range(9):
        sl = slice(c * spc, (c + 1) * spc)
        x[:, sl, :8] = np.transpose(table[k_on[:, :, c]], (0, 2, 1))
        x[:, sl, 8:] = np.transpose(table[k_off[:, :, c]], (0, 2, 1))
    return x


def saccade_frames(images: np.ndarray, upsample: int = 1, levels: int = 1, tail_steps: int = 0) -> np.ndarray:
    """ON/OFF event frames of ``images`` (n, 8, 8) moved along :data:`SACCADE_PATH` (see the
    module docstring). A change of ``d`` grey levels gives ``round(d * levels / 16)`` events.
    Returns ``(n, len(SACCADE_PATH) - 1 + tail_steps, 2, H, W)`` uint8 with
    ``H = W = 8 * upsample + 2``; the last ``tail_steps`` steps are silent."""
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 3 or imgs.shape[1:] != (8, 8):
        raise UsageError(f"images must be (n, 8, 8), got {imgs.shape}")
    u = int(upsample)
    if not 1 <= u <= 8 or not 1 <= int(levels) <= 255:
        raise UsageError("upsample must be in 1..8 and levels in 1..255")
    if int(tail_steps) < 0:
        raise UsageError("tail_steps must be >= 0")
    big = imgs.repeat(u, axis=1).repeat(u, axis=2)
    size = 8 * u + 2
    frames = []
    for dy, dx in SACCADE_PATH:
        f = np.zeros((imgs.shape[0], size, size))
        f[:, dy:dy + 8 * u, dx:dx + 8 * u] = big
        frames.append(f)
    fr = np.stack(frames, axis=1)  # (n, P, H, W)
    d = np.diff(fr, axis=1)
    on = np.rint(np.clip(d, 0, None) * levels / GREY_LEVELS)
    off = np.rint(np.clip(-d, 0, None) * levels / GREY_LEVELS)
    x = np.stack([on, off], axis=2).astype(np.uint8)
    if tail_steps:
        x = np.concatenate([x, np.zeros((x.shape[0], int(tail_steps)) + x.shape[2:], np.uint8)], axis=1)
    return x


def split(labels: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): stratified by label, fixed by ``seed``."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise UsageError("test_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(idx.size * float(test_fraction)))
        te.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def digits_events(classes: int = 10, steps_per_column: int = 4, tail_steps: int = 8, max_events: int | None = None,
                  test_fraction: float = 0.25, seed: int = 0) -> EventDataset:
    """The 16-channel column-scan event version of the digits ``0 .. classes-1`` (see the module
    docstring), split into train and test sets by ``seed``."""
    imgs, y = load_digit_images(classes)
    x = column_scan(imgs, steps_per_column, tail_steps, max_events)
    tr, te = split(y, test_fraction, seed)
    desc = (f"sklearn digits 0-{classes - 1} ({y.size} images), 16-channel column scan: ON (0-7) / OFF (8-15) per pixel row, "
            f"{steps_per_column} steps per column, {tail_steps} tail steps, at most {max_events or steps_per_column} events per change; "
            f"stratified split, test fraction {test_fraction}, seed {seed}")
    return EventDataset(x[tr], y[tr], x[te], y[te], int(classes), desc)


def digits_frames(classes: int = 10, upsample: int = 1, levels: int = 1, test_fraction: float = 0.25, seed: int = 0,
                  tail_steps: int = 0) -> EventDataset:
    """The saccade ON/OFF frame version of the digits (see the module docstring), split into
    train and test sets by ``seed`` (the same split as :func:`digits_events` for equal
    ``classes``, ``test_fraction`` and ``seed``)."""
    imgs, y = load_digit_images(classes)
    x = saccade_frames(imgs, upsample, levels, tail_steps)
    tr, te = split(y, test_fraction, seed)
    desc = (f"sklearn digits 0-{classes - 1} ({y.size} images), ON/OFF frames of a {len(SACCADE_PATH) - 1}-step saccade, "
            f"upsample {upsample}, {levels} event level(s), {tail_steps} tail steps; stratified split, test fraction {test_fraction}, seed {seed}")
    return EventDataset(x[tr], y[tr], x[te], y[te], int(classes), desc)
