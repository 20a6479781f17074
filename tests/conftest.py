"""Shared test fixtures. The corpus is the project's own copy (examples/nir-corpus), so a fresh
clone passes its tests anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# numpy refuses to load one of its C extensions twice in a process, and pytester's in-process runs
# (tests/test_ci_*.py) forget the modules imported during the run: import the optional compiled
# engine (the Loihi 2 simulator's numba, which pulls in numpy.random/polynomial) before any such run.
try:
    import numba  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "nir-corpus"


@pytest.fixture
def corpus() -> Path:
    return CORPUS


def require_oracle(modname: str):
    """Import an optional oracle; skip when it is missing, but FAIL when CI demands oracles
    (NIRDEPLOY_REQUIRE_ORACLES=1) so that a missing oracle never passes as green."""
    import importlib

    try:
        return importlib.import_module(modname)
    except ImportError as e:
        if os.environ.get("NIRDEPLOY_REQUIRE_ORACLES") == "1":
            pytest.fail(f"oracle {modname} is required (NIRDEPLOY_REQUIRE_ORACLES=1) but missing: {e}")
        pytest.skip(f"oracle {modname} not installed", allow_module_level=True)
