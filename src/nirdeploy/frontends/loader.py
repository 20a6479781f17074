"""What ``nirdeploy export`` needs around the frontends: build the user's model from
``model.py:function``, load its weights, make a sample input, write the graph atomically."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError

__all__ = ["load_model", "sample_input"]


def load_model(factory: str, weights: str | None = None):
    """Call ``function()`` from ``model.py`` (``"path/model.py:function"``) and load
    ``weights`` (a state_dict from ``torch.save``, read with ``weights_only=True``)."""
    path, sep, fn = factory.rpartition(":")
    if not sep or not path or not fn:
        raise UsageError(f"expected MODEL.py:FUNCTION, got {factory!r}")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"model file {p} does not exist")
    spec = importlib.util.spec_from_file_location(f"nirdeploy_user_model_{abs(hash(str(p.resolve())))}", p)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {p}")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.resolve().parent))
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise UsageError(f"importing {p} failed: {type(e).__name__}: {e}") from None
    finally:
        sys.path.pop(0)
    make = getattr(mod, fn, None)
    if not callable(make):
        raise UsageError(f"{p} has no function {fn!r}")
    try:
        model = make()
    except Exception as e:
        raise UsageError(f"{p}:{fn}() failed: {type(e).__name__}: {e}") from None
    if weights is not None:
        import torch

        if not Path(weights).is_file():
            raise UsageError(f"weights file {weights} does not exist")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UsageError(f"{weights} is not a torch state_dict readable with weights_only=True: {type(e).__name__}: {e}") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise UsageError(f"{weights} does not fit the model: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return model


def sample_input(sample: str | None, input_shape: str | None, batch: int = 2, time: int = 50, seed: int = 0) -> np.ndarray:
    """The sample from an .npy file, or Poisson spikes (rate 0.2, fixed seed) of ``input_shape``."""
    from ..api import load_input_array

    if sample is not None:
        x = load_input_array(sample)
        if x.ndim < 3:
            raise UsageError(f"{sample} must be (batch, time, *input_shape); got shape {x.shape}")
        return x
    if input_shape is None:
        raise UsageError("give --sample X.npy or --input-shape C[,H,W] to trace and verify the model")
    try:
        shape = tuple(int(s) for s in input_shape.split(","))
    except ValueError:
        raise UsageError(f"--input-shape must be comma-separated integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape) or int(np.prod(shape)) > 10_000_000:
        raise UsageError(f"--input-shape {input_shape!r} is not a usable shape")
    return np.random.default_rng(seed).poisson(0.2, size=(batch, time) + shape).astype(np.float32)
