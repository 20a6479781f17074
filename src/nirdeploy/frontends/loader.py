"""What ``nirdeploy export`` needs around the frontends: build the user's model from
``model.py:function``, load its weights, make a sample input, write the graph atomically."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..inputs import _first_line, check_input_file, check_path

__all__ = ["load_model", "sample_input"]


def load_model(factory: str, weights: str | None = None):
    """Call ``function()`` from ``model.py`` (``"path/model.py:function"``) and load
    ``weights`` (a state_dict from ``torch.save``, read with ``weights_only=True``).

    Raises :class:`UsageError`: a missing or non-regular file, a module or function that fails
    (an exception or ``sys.exit()`` in the user's code: never a silent exit), a result that is not
    a ``torch.nn.Module``, weights that cannot be read or do not fit."""
    path, sep, fn = check_path(factory, "MODEL.py:FUNCTION").rpartition(":")
    if not sep or not path or not fn:
        raise UsageError(f"expected MODEL.py:FUNCTION, got {factory!r}")
    p = Path(check_input_file(path, "model", "a Python file"))
    spec = importlib.util.spec_from_file_location(f"nirdeploy_user_model_{abs(hash(str(p.resolve())))}", p)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {p}")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.resolve().parent))
    try:
        _user_code(f"importing {p}", spec.loader.exec_module, mod)
    finally:
        sys.path.pop(0)
    make = getattr(mod, fn, None)
    if not callable(make):
        raise UsageError(f"{p} has no function {fn!r}")
    model = _user_code(f"{p}:{fn}()", make)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{p}:{fn}() returned {type(model).__name__!r}, not a torch.nn.Module")
    if weights is not None:
        w = check_input_file(weights, "weights", "a state_dict saved with torch.save")
        try:
            state = torch.load(w, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UsageError(f"{w} is not a torch state_dict readable with weights_only=True: {type(e).__name__}: "
                             f"{_first_line(e)}") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise UsageError(f"{w} does not fit the model: {type(e).__name__}: {_first_line(e)}") from None
    return model


def _user_code(what: str, fn, *args):
    """Run the user's code; its failures (an exception, ``sys.exit()``) become a UsageError.
    KeyboardInterrupt and nirdeploy's signal exception pass through."""
    try:
        return fn(*args)
    except SystemExit as e:
        raise UsageError(f"{what} called sys.exit({e.code!r}); a model file must define the model, not end the program") from None
    except Exception as e:
        raise UsageError(f"{what} failed: {type(e).__name__}: {_first_line(e)}") from None


def sample_input(sample: str | None, input_shape: str | None, batch: int = 2, time: int = 50, seed: int = 0) -> np.ndarray:
    """The sample from an .npy file, or Poisson spikes (rate 0.2, fixed seed) of ``input_shape``
    (validated by the exporter, :func:`nirdeploy.frontends._common.export_arguments`)."""
    from ..inputs import load_npy

    if sample is not None:
        return load_npy(sample, what="sample")
    if input_shape is None:
        raise UsageError("give --sample X.npy or --input-shape C[,H,W] to trace and verify the model")
    try:
        shape = tuple(int(s) for s in input_shape.split(","))
    except ValueError:
        raise UsageError(f"--input-shape must be comma-separated integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape) or math.prod(shape) > 10_000_000:
        raise UsageError(f"--input-shape {input_shape!r} is not a usable shape (positive sizes, at most 10,000,000 elements)")
    return np.random.default_rng(seed).poisson(0.2, size=(batch, time) + shape).astype(np.float32)
