"""Byte-level mutations of the corpus files: every outcome is a loaded graph or a NirDeployError
(exit code 2 in the CLI), never another exception. Fixed seed, so a failure reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from nirdeploy.errors import NirDeployError
from nirdeploy.graph.loading import load

from conftest import CORPUS

SOURCES = ["lif_norse.nir", "braille_noDelay_noBias_subtract.nir", "cnn_sinabs.nir"]
N_MUTANTS = 240


def _mutants():
    rng = np.random.default_rng(2026)
    src = [(CORPUS / n).read_bytes() for n in SOURCES]
    for i in range(N_MUTANTS):
        b = bytearray(src[i % len(src)])
        for _ in range(int(rng.integers(1, 20))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        if i % 7 == 0:
            b = b[: int(rng.integers(0, len(b)))]
        yield i, bytes(b)


def test_mutated_files_load_or_fail_cleanly(tmp_path):
    outcomes = {"loaded": 0, "rejected": 0}
    for i, data in _mutants():
        p = tmp_path / f"m{i}.nir"
        p.write_bytes(data)
        try:
            load(p)
            outcomes["loaded"] += 1
        except NirDeployError as e:
            assert str(e) and "Traceback" not in str(e)
            outcomes["rejected"] += 1
        except Exception as e:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"mutant {i}: {type(e).__name__}: {e}")
    assert outcomes["rejected"] > N_MUTANTS // 2  # the mutations really do break files
