"""Vendor SDK detection without importing it.

SynSense's ``samna`` on the public package index is an installer stub: importing it runs a pip
install of the real binary from an outside index (speck.md section 8, xylo.md section 8). Targets
ask :func:`samna_status` before any optional import; it finds the package with
``importlib.util.find_spec`` and READS its ``__init__.py`` (``PYPI_SAMNA = True`` marks the stub),
never importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import MissingDependencyError

__all__ = ["samna_status", "require_samna", "SAMNA_INSTALL"]

SAMNA_INSTALL = ("install SynSense's real samna for your platform (see SynSense's samna documentation); "
                 "the 'samna' package on PyPI is only an installer stub")


def samna_status() -> str:
    """'missing', 'stub' or 'real', found without importing samna."""
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError):  # a broken or stand-in module object in sys.modules
        return "missing"
    if spec is None:
        return "missing"
    init = spec.origin
    if init and init.endswith("__init__.py"):
        try:
            text = Path(init).read_text(errors="replace")
        except OSError:
            text = ""
        if "PYPI_SAMNA" in text and "PYPI_SAMNA = True" in text.replace("  ", " "):
            return "stub"
    return "real"


def require_samna(why: str) -> None:
    """Raise MissingDependencyError unless the real samna is installed; ``why`` says what for."""
    st = samna_status()
    if st == "missing":
        raise MissingDependencyError("samna", SAMNA_INSTALL, why)
    if st == "stub":
        raise MissingDependencyError(
            "samna", SAMNA_INSTALL + "; then `pip uninstall samna` the stub first",
            "the installed 'samna' is the PyPI installer stub (PYPI_SAMNA = True), not the real SDK",
        )
