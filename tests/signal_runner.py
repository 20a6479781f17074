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


# point -> (module, attribute path, pause after the call instead of before)
POINTS = {
    "read": ("h5py", "is_hdf5", False),
    "lower": ("nirdeploy_targets.xylo.target", "XyloTarget.compile", False),
    "export": ("numpy", "savez", True),
    "copy": ("shutil", "copyfile", True),
    "simulate": ("nirdeploy_targets.xylo.sim", "simulate", False),
    "reference": ("nirdeploy.sim.reference", "simulate_reference", False),
    "write": ("numpy", "save", True),
}


def main() -> None:
    import importlib

    point = sys.argv[1]
    assert sys.argv[2] == "--"
    module, attr, after = POINTS[point]
    obj = importlib.import_module(module)
    *owners, name = attr.split(".")
    for o in owners:
        obj = getattr(obj, o)
    _wrap(obj, name, point, after)
    from nirdeploy.cli import main as cli_main

    sys.argv = ["nirdeploy", *sys.argv[3:]]
    cli_main()


if __name__ == "__main__":
    main()
