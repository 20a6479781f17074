"""Data sets for evaluating deployed networks, read from files the user already has (nothing is
ever downloaded). Optional dependencies are imported on first use, never by ``import nirdeploy``.

* :func:`load_nmnist`: N-MNIST event recordings, decoded and binned by ``tonic``.
"""

from __future__ import annotations

__all__ = ["load_nmnist"]


def load_nmnist(root, **kwargs):
    """See :func:`nirdeploy.data.nmnist.load_nmnist`."""
    from .nmnist import load_nmnist as _load

    return _load(root, **kwargs)
