"""The N-MNIST loader on small synthetic files in N-MNIST's on-disk format (what tonic reads and
where tonic puts them): 5 bytes per event, x, y, polarity in bit 7 of byte 2, a 23-bit timestamp
in microseconds (Orchard et al. 2015; the dataset's own reader, used by tonic.io.read_mnist_file).
Network access is blocked during the loads: nothing is ever downloaded."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from conftest import require_oracle

tonic = require_oracle("tonic")

import nirdeploy  # noqa: E402
from nirdeploy.data.nmnist import load_nmnist, nmnist_files  # noqa: E402
from nirdeploy.errors import UsageError  # noqa: E402


def encode(events) -> bytes:
    """events: iterable of (x, y, t_us, p) -> N-MNIST's 5-byte records."""
    out = bytearray()
    for x, y, t, p in events:
        assert 0 <= t < 2**23
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def make_dataset(root, n_per_class=2, classes=range(10), seed=0, split="Test"):
    """ROOT/NMNIST/<split>/<digit>/<k>.bin with random events; returns {path: events}."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        d = root / "NMNIST" / split / str(c)
        d.mkdir(parents=True)
        for k in range(n_per_class):
            n = int(rng.integers(5, 40))
            ev = sorted(zip(rng.integers(0, 34, n).tolist(), rng.integers(0, 34, n).tolist(),
                            rng.integers(0, 12_000, n).tolist(), rng.integers(0, 2, n).tolist()), key=lambda e: e[2])
            p = d / f"{k:05d}.bin"
            p.write_bytes(encode(ev))
            written[p] = ev
    return written


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the N-MNIST loader tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def binned(ev, dt_us, steps):
    f = np.zeros((steps, 2, 34, 34), np.float32)
    for x, y, t, p in ev:
        if t < steps * dt_us:
            f[int(t // dt_us), p, y, x] += 1
    return f


def test_loader_bins_every_event_by_hand(tmp_path, no_network):
    written = make_dataset(tmp_path)
    x, y = load_nmnist(tmp_path, split="test", dt=1e-3)
    assert x.shape == (20, 12, 2, 34, 34) and x.dtype == np.float32  # 12 ms of events at 1 ms bins
    files = nmnist_files(tmp_path, "test")
    assert [lab for _, lab in files] == sorted(list(range(10)) * 2) and list(y) == [lab for _, lab in files]
    for k, (p, _) in enumerate(files):
        np.testing.assert_array_equal(x[k], binned(written[p], 1000, 12))
    assert x.sum() == sum(len(v) for v in written.values())


def test_loader_steps_limit_and_first_saccade(tmp_path, no_network):
    written = make_dataset(tmp_path, n_per_class=3)
    x, y = load_nmnist(tmp_path, dt=2e-3, n_steps=4, limit=13)
    assert x.shape == (13, 4, 2, 34, 34)
    assert list(y) == list(range(10)) + [0, 1, 2]  # round-robin: every digit in a small subset
    files = nmnist_files(tmp_path, "test", limit=13)
    for k, (p, _) in enumerate(files):
        np.testing.assert_array_equal(x[k], binned(written[p], 2000, 4))  # events after 8 ms dropped
    # a saccade boundary inside the data: events at 100 ms and later are dropped
    d = tmp_path / "sacc" / "Test" / "3"
    d.mkdir(parents=True)
    (d / "a.bin").write_bytes(encode([(1, 1, 99_999, 0), (2, 2, 100_000, 1), (3, 3, 150_000, 1)]))
    x, y = load_nmnist(tmp_path / "sacc", dt=0.05, first_saccade_only=True)
    assert x.sum() == 1 and x[0, 1, 0, 1, 1] == 1 and list(y) == [3]
    x, _ = load_nmnist(tmp_path / "sacc", dt=0.05)
    assert x.shape[1] == 4 and x.sum() == 3


def test_loader_errors_say_what_to_do(tmp_path, no_network):
    with pytest.raises(UsageError, match="never downloads"):
        load_nmnist(tmp_path)
    make_dataset(tmp_path, n_per_class=1, classes=[0])
    bad = tmp_path / "NMNIST" / "Test" / "0" / "bad.bin"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(UsageError, match="bad.bin: 3 bytes"):
        load_nmnist(tmp_path)
    bad.write_bytes(encode([(40, 1, 5, 0)]))
    with pytest.raises(UsageError, match="outside the 34 x 34"):
        load_nmnist(tmp_path)
    bad.unlink()
    with pytest.raises(UsageError, match="GiB"):
        load_nmnist(tmp_path, n_steps=10, max_bytes=1000)
    with pytest.raises(UsageError, match="split"):
        load_nmnist(tmp_path, split="val")


def test_cli_nmnist_feeds_compare(tmp_path, no_network, corpus):
    """The loader's arrays drive the NIR paper's N-MNIST CNN (input 2 x 34 x 34) end to end."""
    from click.testing import CliRunner

    from nirdeploy.cli import main

    make_dataset(tmp_path, n_per_class=1, classes=[1, 7])
    r = CliRunner().invoke(main, ["nmnist", str(tmp_path), "--steps", "5", "-o", str(tmp_path / "x.npy"),
                                  "--labels-out", str(tmp_path / "y.npy")])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (2, 5, 2, 34, 34) and list(np.load(tmp_path / "y.npy")) == [1, 7]
    y = nirdeploy.simulate_reference(corpus / "cnn_sinabs.nir", x, dt=1.0, reset="subtract")
    assert y.shape[:2] == (2, 5)
    r = CliRunner().invoke(main, ["nmnist", str(tmp_path), "-o", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "already exists" in r.output
    r = CliRunner().invoke(main, ["nmnist", str(tmp_path / "nothing"), "-o", str(tmp_path / "z.npy")])
    assert r.exit_code == 2 and "never downloads" in r.output and not (tmp_path / "z.npy").exists()


def test_without_tonic_the_install_command_is_named(tmp_path, monkeypatch):
    import sys

    from nirdeploy.errors import MissingDependencyError

    make_dataset(tmp_path, n_per_class=1, classes=[0])
    monkeypatch.setitem(sys.modules, "tonic", None)
    with pytest.raises(MissingDependencyError, match=r"nirdeploy\[data\]"):
        load_nmnist(tmp_path)
