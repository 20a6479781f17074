"""Run the nirdeploy CLI with one function wrapped so that the process stops at a chosen point.

    python tests/signal_runner.py POINT -- nirdeploy-arguments...

When the wrapped function is reached, ``PAUSED POINT`` is printed to stderr and the process
sleeps (30 s at most), so a test can send SIGTERM, SIGINT or SIGHUP at exactly that point. The
points wrap functions every nirdeploy version calls, so the same test runs against any version:

    read       h5py.is_hdf5, in the isolated .nir reader child (the parent waits for it)
    lower      the Xylo target's compile (no output exists yet)
    export     numpy.savez, after the first file was written into the temporary folder
    copy       shutil.copyfile, after the graph was copied into the temporary folder
    simulate   the Xylo simulator, before it runs
    reference  the reference simulator, before it runs
    write      numpy.save, after Y.npy's temporary file was written
"""

from __future__ import annotations

import sys
import time


def _pause(point: str) -> None:
    sys.stderr.write(f"PAUSED {point}\n")
    sys.stderr.flush()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(0.02)


def _wrap(obj, name: str, point: str, after: bool) -> None:
    orig = getattr(obj, name)

    def wrapped(*a, **k):
        if not after:
            _pause(point)
        r = orig(*a, **k)
        if after:
            _pause(point)
        return r

    setattr(obj, name, wrapped)


def main() -> None:
    point = sys.argv[1]
    assert sys.argv[2] == "--"
    args = sys.argv[3:]
    if point == "read":
        import h5py

        _wrap(h5py, "is_hdf5", point, after=False)
    elif point == "lower":
        from nirdeploy_targets.xylo.target import XyloTarget

        _wrap(XyloTarget, "compile", point, after=False)
    elif point == "export":
        import numpy

        _wrap(numpy, "savez", point, after=True)
    elif point == "copy":
        import shutil

        _wrap(shutil, "copyfile", point, after=True)
    elif point == "simulate":
        import nirdeploy_targets.xylo.sim as S

        _wrap(S, "simulate", point, after=False)
    elif point == "reference":
        import nirdeploy.sim.reference as R

        _wrap(R, "simulate_reference", point, after=False)
    elif point == "write":
        import numpy

        _wrap(numpy, "save", point, after=True)
    else:
        raise SystemExit(f"unknown point {point}")
    from nirdeploy.cli import main as cli_main

    sys.argv = ["nirdeploy", *args]
    cli_main()


if __name__ == "__main__":
    main()
