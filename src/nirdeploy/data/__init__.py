"""Data sets for evaluating deployed networks, read from files the user already has (nothing is
ever downloaded). Optional dependencies are imported on first use, never by ``import nirdeploy``.

* :func:`load_nmnist`: N-MNIST event recordings, decoded and binned by ``tonic``.
"""

from __future__ import annotations

__all__ = ["load_nmnist"]


def load_nmnist(root, **kwargs):
    """``(x, y)``: N-MNIST recordings under ``root`` binned into event counts; see
    :func:`nirdeploy.data.nmnist.load_nmnist` for the keywords. Raises UsageError (a bad
    argument, no recordings, a malformed or unreadable file), MissingDependencyError (no tonic)."""
    from .nmnist import load_nmnist as _load

    return _load(root, **kwargs)
