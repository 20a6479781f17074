"""The deterministic event versions of scikit-learn's bundled digits (no torch, no download)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the bundled digits (scripts/test.sh installs it)")

from nirdeploy.errors import UsageError  # noqa: E402
from nirdeploy.evaluation.datasets import (  # noqa: E402
    DIGITS_CHANNELS,
    SACCADE_PATH,
    column_scan,
    digits_events,
    digits_frames,
    saccade_frames,
    split,
)


def test_column_scan_hand_derived():
    img = np.zeros((1, 8, 8))
    img[0, 2, 3] = 16  # one bright pixel in row 2, column 3
    img[0, 5, 0] = 8  # half bright in row 5, column 0
    x = column_scan(img, steps_per_column=4, tail_steps=2)
    assert x.shape == (1, 9 * 4 + 2, DIGITS_CHANNELS) and x.dtype == np.uint8
    on, off = x[0, :, :8], x[0, :, 8:]
    # row 2 brightens entering column 3 (steps 12-15: 4 events), darkens entering column 4
    assert on[:, 2].tolist() == [0] * 12 + [1, 1, 1, 1] + [0] * 22
    assert off[:, 2].tolist() == [0] * 16 + [1, 1, 1, 1] + [0] * 18
    # row 5: 8 levels -> 2 events spread over the first column's 4 steps, darkening in column 1
    assert on[:4, 5].tolist() == [0, 1, 0, 1] and off[4:8, 5].tolist() == [0, 1, 0, 1]
    assert x.sum() == 4 + 4 + 2 + 2 and not x[0, -2:].any()  # silent tail


def test_digits_events_deterministic_stratified_and_bounded():
    a = digits_events(classes=8, seed=0)
    b = digits_events(classes=8, seed=0)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert a.shape == (44, 16) and a.n_classes == 8
    n = a.y_train.size + a.y_test.size
    assert set(np.unique(a.y_test)) == set(range(8)) and a.y_train.max() == 7
    assert 0.2 < a.y_test.size / n < 0.3
    for c in range(8):  # stratified: each class split in the same proportion
        k = np.sum(a.y_test == c) / (np.sum(a.y_test == c) + np.sum(a.y_train == c))
        assert abs(k - 0.25) < 0.02
    assert a.x_train.max() <= 1 and a.x_train.min() == 0 and a.x_train.mean() > 0.02
    c = digits_events(classes=8, seed=1)
    assert not np.array_equal(a.y_test, c.y_test)  # another seed, another split
    tr, te = split(np.repeat(np.arange(3), 10), 0.3, seed=5)
    assert not set(tr) & set(te) and len(tr) + len(te) == 30


def test_digits_frames_for_cnns():
    d = digits_frames(classes=10, upsample=2, seed=0)
    assert d.shape == (len(SACCADE_PATH) - 1, 2, 18, 18) and d.x_train.dtype == np.uint8
    img = np.zeros((1, 8, 8))
    img[0, 0, 0] = 16
    f = saccade_frames(img)
    # step 1 moves the image by (1, 1): the pixel leaves (0, 0) (OFF) and appears at (1, 1) (ON)
    assert f[0, 0, 1, 0, 0] == 1 and f[0, 0, 0, 1, 1] == 1 and f[0, 0].sum() == 2
    # silent tail steps (a chip's output lags by its latency): the events are unchanged, the tail is empty
    g = saccade_frames(img, tail_steps=3)
    assert g.shape == (1, f.shape[1] + 3) + f.shape[2:] and np.array_equal(g[:, : f.shape[1]], f) and g[:, f.shape[1]:].sum() == 0
    # the frames share the column scan's split, so one study compares both networks on the same digits
    e, d4 = digits_events(classes=10, seed=3), digits_frames(classes=10, seed=3, tail_steps=4)
    assert np.array_equal(e.y_test, d4.y_test) and d4.shape[0] == len(SACCADE_PATH) - 1 + 4


def test_bad_arguments():
    with pytest.raises(UsageError):
        digits_events(classes=11)
    with pytest.raises(UsageError):
        column_scan(np.zeros((2, 7, 8)))
    with pytest.raises(UsageError):
        split(np.arange(4), 1.5)
    with pytest.raises(UsageError, match="tail_steps"):
        saccade_frames(np.zeros((1, 8, 8)), tail_steps=-1)
