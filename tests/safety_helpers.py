"""Helpers for the safety tests (issue 6): running the CLI in a subprocess, snapshots of a folder
tree (to prove nothing was changed or left behind), child-process bookkeeping, small graphs.

Written against the public CLI and API only, so the tests that use them run unchanged against
an older nirdeploy (that is how each finding was shown to fail before the fix)."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from conftest import CORPUS

BRAILLE = CORPUS / "braille_noDelay_noBias_subtract.nir"
COMPILE = ["--target", "xylo:audio2", "--dt", "1e-4", "--reset", "subtract"]
TESTS = Path(__file__).resolve().parent


def cli(*args, cwd=None, timeout=120, env=None, rlimits=None, stdin=None) -> subprocess.CompletedProcess:
    """``python -m nirdeploy.cli ARGS`` in a subprocess (text output, never raises on exit code).
    ``rlimits``: {resource.RLIMIT_*: value} set in the child (SIGXFSZ ignored, so a file-size
    limit makes writes fail with EFBIG like a full disk)."""

    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for k, v in (rlimits or {}).items():
            resource.setrlimit(k, (v, v))

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nirdeploy.cli", *[str(a) for a in args]],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e, preexec_fn=pre, stdin=stdin,
    )


def snapshot(root) -> dict:
    """Every path under ``root`` (not following links) -> (kind, size, mtime_ns, link target, sha)."""
    import hashlib

    out = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def leftovers(root) -> list[str]:
    """Temporary files or folders of nirdeploy (any version) under ``root``."""
    return sorted(
        str(p.relative_to(root)) for p in Path(root).rglob("*")
        if ".tmp-" in p.name or ".old-" in p.name or p.name.startswith(".nirdeploy-")
    )


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_quietly(pids) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class Runner:
    """A subprocess running ``tests/signal_runner.py POINT -- ARGS``; :meth:`wait_paused` blocks
    until the wrapped function has been reached."""

    def __init__(self, point: str, args, cwd):
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "signal_runner.py"), point, "--", *[str(a) for a in args]],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.paused = threading.Event()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("PAUSED"):
                self.paused.set()

    def wait_paused(self, timeout=60) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.paused.wait(0.05):
                return True
            if self.proc.poll() is not None:
                return False
        return False

    def finish(self, timeout=30) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.t.join(5)
        self.proc.stdout.close()
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def compile_braille(folder: Path) -> Path:
    """``folder/dep``: the Braille RNN compiled for Xylo Audio 2 (tests copy it before changing it)."""
    from click.testing import CliRunner

    from nirdeploy.cli import main

    out = Path(folder) / "dep"
    r = CliRunner().invoke(main, ["compile", str(BRAILLE), *COMPILE, "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


SPECK_INPUT = (2, 8, 8)


def compile_speck(folder: Path) -> Path:
    """``folder/speck``: a three-core CNN (conv, sum pooling, conv, Flatten + Affine) compiled for
    speck2f through the CLI (tests copy it before changing it)."""
    import nir
    from click.testing import CliRunner

    from nirdeploy.cli import main
    from speck_graphs import chain_graph

    g = Path(folder) / "cnn.nir"
    nir.write(str(g), chain_graph([{"k": 3, "c_out": 4, "padding": 1, "pool": 2}, {"k": 3, "c_out": 4}], SPECK_INPUT, linear_out=3,
                                  seed=0, bias=False))
    out = Path(folder) / "speck"
    r = CliRunner().invoke(main, ["compile", str(g), "--target", "speck:speck2f", "--dt", "1", "--reset", "subtract", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def events(shape, rate=0.2, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(rate, size=shape)
