"""Lava (lava-nc 0.10.0) as an oracle for the Loihi 2 tests.

Lava needs Python 3.10 and numpy<2, so it lives in a side environment (``scripts/lava_env.sh``
creates ``.venv-lava``; ``NIRDEPLOY_LAVA_PYTHON`` points elsewhere). Networks run there in ONE
subprocess per batch (``python -m nirdeploy_targets.loihi2.lava batch``), each job under its own
alarm and the whole batch under a timeout whose process group is killed on expiry (Lava's runtime
is multi-process and can hang). The subprocess runs in a temporary folder: lava's wheel installs
a top-level ``tests`` package, and nothing here imports ``tests`` by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def lava_python() -> str:
    """The side environment's interpreter; skip (or fail under NIRDEPLOY_REQUIRE_ORACLES=1)."""
    env = os.environ.get("NIRDEPLOY_LAVA_PYTHON")
    cand = Path(env) if env else ROOT / ".venv-lava" / "bin" / "python"
    why = None
    if not cand.exists():
        py310 = Path("/root/.pyenv/versions/3.10.13/bin/python3")
        why = (f"no Lava environment at {cand}: run bash scripts/lava_env.sh"
               + ("" if py310.exists() or _which("python3.10") else " (needs a Python 3.10, none found)"))
    else:
        r = subprocess.run([str(cand), "-c", "import lava.proc.lif.process, nirdeploy_targets.loihi2.lava"], capture_output=True,
                           text=True, timeout=120, cwd=tempfile.gettempdir())
        if r.returncode != 0:
            why = f"{cand} cannot import lava and nirdeploy: {r.stderr.strip().splitlines()[-1:]}; run bash scripts/lava_env.sh"
    if why:
        if os.environ.get("NIRDEPLOY_REQUIRE_ORACLES") == "1":
            pytest.fail(f"the Lava oracle is required (NIRDEPLOY_REQUIRE_ORACLES=1) but unavailable: {why}")
        pytest.skip(why)
    return str(cand)


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


def run_batch(jobs: list[tuple[object, np.ndarray]], *, job_timeout_s: int = 120, python: str | None = None) -> list[dict]:
    """Run ``[(Loihi2Network, x (time, *input_shape)), ...]`` in Lava; per job
    ``{layer name: {"s", "u", "v"}}`` (time, n) int64 arrays. Raises AssertionError for a job that
    failed or timed out."""
    py = python or lava_python()
    with tempfile.TemporaryDirectory(prefix="nirdeploy-lava-") as td:
        d = Path(td)
        metas, arrays = [], {}
        for k, (net, x) in enumerate(jobs):
            meta, arr = net.to_parts()
            metas.append({"meta": meta, "timeout_s": job_timeout_s})
            for key, a in arr.items():
                arrays[f"J{k}.{key}"] = a
            arrays[f"J{k}.x"] = np.asarray(x)
        (d / "jobs.json").write_text(json.dumps(metas))
        np.savez(d / "arrays.npz", **arrays)
        out = d / "out.npz"
        total = 60 + job_timeout_s * len(jobs)
        proc = subprocess.Popen([py, "-m", "nirdeploy_targets.loihi2.lava", "batch", str(d), str(out)], cwd=td,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
        try:
            so, se = proc.communicate(timeout=total)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"Lava batch of {len(jobs)} job(s) timed out after {total} s")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, f"Lava batch failed ({proc.returncode}): {se[-3000:]}"
        with np.load(out, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    status = json.loads(bytes(data.pop("status")).decode())
    results: list[dict] = []
    for k, st in enumerate(status):
        assert st["ok"], f"Lava job {k} failed: {st.get('error')}"
        pre = f"J{k}."
        r: dict = {}
        for key, a in data.items():
            if key.startswith(pre):
                lname, _, var = key[len(pre):].rpartition(".")
                r.setdefault(lname, {})[var] = a
        results.append(r)
    return results
