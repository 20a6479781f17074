"""SIGTERM, SIGINT and SIGHUP at several points of compile, simulate and the isolated .nir read:
nothing is left behind (no temporary file or folder, no output, no child process) and the exit
code is 128 + the signal number.

Each run stops the CLI at a point (tests/signal_runner.py wraps a function every version calls),
sends the signal there, and compares the folder before and after."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from adversarial_commands import nmnist_dataset
from conftest import require_oracle
from safety_helpers import BRAILLE, COMPILE, compile_braille, Runner, alive, children, events, kill_quietly, leftovers, snapshot

TERM, INT, HUP = signal.SIGTERM, signal.SIGINT, signal.SIGHUP

# (command, point, signals): compile stops while the reader child runs, while lowering, after the
# first file was written into the temporary folder, after the graph copy; simulate while the chip
# simulator or the reference runs and after Y.npy's temporary file was written; inspect while the
# reader child runs. Every signal reaches at least two points of compile, two of simulate and the
# isolated read; the points where something temporary exists get all three.
POINTS = [
    ("compile", "read", (TERM, INT, HUP)),
    ("compile", "lower", (HUP,)),
    ("compile", "export", (TERM, INT, HUP)),
    ("compile", "copy", (INT,)),
    ("simulate", "simulate", (TERM,)),
    ("simulate", "write", (TERM, INT, HUP)),
    ("reference", "read", (HUP,)),
    ("reference", "reference", (INT,)),
    ("reference", "write", (TERM,)),
    ("inspect", "read", (INT,)),
    # nmnist's two outputs: X.npy's temporary is written, Y.npy's not yet
    ("nmnist", "write", (TERM,)),
]
CASES = [(c, p, s) for c, p, sigs in POINTS for s in sigs]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    return compile_braille(tmp_path_factory.mktemp("compiled"))


def _args(command: str, tmp: Path, dep: Path) -> list:
    return {
        "compile": ["compile", tmp / "g.nir", *COMPILE, "-o", tmp / "out"],
        "simulate": ["simulate", dep, "--input", tmp / "x.npy", "-o", tmp / "y.npy"],
        "reference": ["simulate", tmp / "g.nir", "--reference", "--dt", "1e-4", "--input", tmp / "x.npy", "-o", tmp / "y.npy"],
        "inspect": ["inspect", tmp / "g.nir"],
        "nmnist": ["nmnist", tmp / "data", "--steps", "5", "-o", tmp / "X.npy", "--labels-out", tmp / "Y.npy"],
    }[command]


@pytest.mark.parametrize("command,point,sig", CASES, ids=[f"{c}-{p}-{s.name}" for c, p, s in CASES])
def test_signal_leaves_nothing_behind(tmp_path, compiled, command, point, sig):
    work = tmp_path / "work"
    work.mkdir()
    dep = work / "dep"
    shutil.copytree(compiled, dep)
    shutil.copy(BRAILLE, work / "g.nir")
    np.save(work / "x.npy", events((2, 30, 12)))
    if command == "nmnist":
        require_oracle("tonic")
        nmnist_dataset(work / "data")
    before = snapshot(work)
    r = Runner(point, _args(command, work, dep), cwd=work)
    kids: list[int] = []
    try:
        assert r.wait_paused(), f"never reached {point}: {r.stderr}"
        time.sleep(0.1)
        kids = children(r.proc.pid)
        if point == "read":
            assert kids, "the isolated reader child should be running"
        r.proc.send_signal(sig)
        rc = r.finish()
        assert rc == 128 + sig, (rc, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        deadline = time.monotonic() + 30  # returns as soon as they are gone; the bound only stops a hang
        while [k for k in kids if alive(k)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [k for k in kids if alive(k)], "a child process outlived the command"
        assert leftovers(work) == []
        assert snapshot(work) == before
    finally:
        kill_quietly(kids)
        if r.proc.poll() is None:
            r.proc.kill()


def test_a_second_signal_during_clean_up_does_not_leave_things(tmp_path, compiled):
    """Two SIGTERMs in a row: the first starts the clean-up, the second is ignored until done."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(BRAILLE, work / "g.nir")
    before = snapshot(work)
    r = Runner("export", _args("compile", work, compiled), cwd=work)
    try:
        assert r.wait_paused(), r.stderr
        r.proc.send_signal(signal.SIGTERM)
        r.proc.send_signal(signal.SIGTERM)
        rc = r.finish()
        assert rc in (128 + signal.SIGTERM, -signal.SIGTERM)
        assert snapshot(work) == before
    finally:
        if r.proc.poll() is None:
            r.proc.kill()


def test_api_callers_get_clean_up_and_then_the_default_action(tmp_path):
    """Without the CLI: Deployment.save cleans up, then the process dies by SIGTERM as it would."""
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import sys, time, numpy\n"
        "orig = numpy.savez\n"
        "def slow(*a, **k):\n"
        "    orig(*a, **k); sys.stderr.write('PAUSED\\n'); sys.stderr.flush(); time.sleep(30)\n"
        "numpy.savez = slow\n"
        "import nirdeploy\n"
        f"nirdeploy.compile({str(BRAILLE)!r}, target='xylo:audio2', dt=1e-4, out={str(work / 'out')!r})\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=work)
    try:
        line = p.stderr.readline()
        assert line.startswith("PAUSED"), line + p.stderr.read()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
        assert rc == -signal.SIGTERM
        assert list(work.iterdir()) == []
    finally:
        if p.poll() is None:
            p.kill()
        p.stderr.close()
