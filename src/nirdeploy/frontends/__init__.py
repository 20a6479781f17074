"""Frontends for torch training libraries (optional extra ``nirdeploy[torch]``): a layer above the
core. The core never imports this package; each library module is imported on first use, and a
missing library raises :class:`~nirdeploy.errors.MissingDependencyError` with the install command.

* :func:`from_torch`: a trained snnTorch / Norse / Sinabs model -> a nirdeploy Graph that
  reproduces it (the library's exporter where it works, its known defects repaired, the result
  verified on the sample; dt and reset recorded in the metadata).
* :func:`to_torch`: a NIR graph -> a runnable model whose neurons are the library's own layers,
  with the right time step, reset and handling of ``r``; without a library, nirdeploy's own
  torch module of the reference semantics (:mod:`nirdeploy.torch`).
"""

from __future__ import annotations

import importlib

from ..inputs import check_choice

__all__ = ["LIBRARIES", "from_torch", "to_torch", "library_module"]

LIBRARIES = ("snntorch", "norse", "sinabs")


def library_module(library: str):
    """The frontend module of ``library`` (``nirdeploy.frontends.snntorch`` ...)."""
    check_choice("library", library, LIBRARIES)
    return importlib.import_module(f"{__name__}.{library}")


def from_torch(model, sample, *, library: str, dt: float | None = None, strict: bool = True,
               fold_batchnorm: bool = False, path=None, force: bool = False):
    """Export ``model`` (a ``torch.nn.Module`` trained in ``library``) to a nirdeploy Graph; see
    each frontend's ``export``. ``sample``: (batch, time, *input_shape) array or tensor. With
    ``path``, the graph is also written as a ``.nir`` file (dt and reset in its metadata;
    atomically, checked before the work): a new file, or with ``force`` an existing regular file
    (never a link, FIFO, device or folder).

    Raises UsageError (a bad argument: library, model, sample, dt, flags, path),
    UnsupportedError (layers NIR cannot express), ExportMismatchError (the graph does not
    reproduce the model, ``strict``), OutputError (``path`` exists and ``force`` is false, or cannot
    be written),
    MissingDependencyError (the library is not installed)."""
    from ..inputs import check_flag

    mod = library_module(library)
    check_flag("force", force)
    if path is not None:
        from ..outputs import check_output_file

        check_output_file(path, force=force)  # before the work, not after it
    g = mod.export(model, sample, dt=dt, strict=strict, fold_batchnorm=fold_batchnorm)
    if path is not None:
        from ..graph.loading import save_nir

        save_nir(g, path, force=force)
    return g


def to_torch(graph, *, library: str | None = None, dt: float | None = None, reset: str | None = None,
             scheme: str = "euler", dtype=None):
    """``graph`` as a runnable torch module: nirdeploy's reference semantics (``library=None``) or
    a model built from ``library``'s own neuron layers. ``forward(x)``: (batch, time, *input) ->
    (batch, time, *output). ``dtype``: a floating torch dtype (default float64).

    Raises UsageError (a bad argument), GraphLoadError, GraphValidationError, UnsupportedError,
    MissingDependencyError (torch or the library is not installed)."""
    if library is None:
        from ..torch import to_torch as _own

        return _own(graph, dt=dt, reset=reset, scheme=scheme, dtype=dtype)
    return library_module(library).build(graph, dt=dt, reset=reset, scheme=scheme, dtype=dtype)
