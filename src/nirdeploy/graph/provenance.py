"""Training settings that nirdeploy records in the metadata of graphs it writes.

NIR has no ``dt`` and no reset mode (``chips/nir.md`` §2, §6): every library hides its time step
inside ``r`` and ``w_in`` and assumes its own reset. When nirdeploy exports a model
(``nirdeploy.from_torch``, ``nirdeploy export``) it writes what the model was trained with into
the root graph's metadata, so that ``inspect``, ``check``, ``compile``, ``simulate`` and
``compare`` can use it without ``--dt`` / ``--reset``:

=====================  =====================================================================
key                    value
=====================  =====================================================================
``nirdeploy_dt``       time step in seconds (float > 0)
``nirdeploy_reset``    ``"zero"`` or ``"subtract"``
``nirdeploy_source``   the library and version the model came from, e.g. ``"snntorch 1.0.0"``
``nirdeploy_spike_rule``  ``"strict"`` (one spike when v > threshold) or ``"multi"`` (floor(v /
                       threshold) spikes per step, Sinabs' default)
=====================  =====================================================================

NIR's docs say no backend should rely on metadata (#70); nirdeploy relies on its own keys only
for graphs it wrote, and an explicit ``dt`` / ``reset`` always wins (with a notice when it
differs from the recorded value). Values that are not valid are ignored with a notice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .ir import Graph

__all__ = ["META_DT", "META_RESET", "META_SOURCE", "META_SPIKE_RULE", "Recorded", "recorded", "with_recorded"]

META_DT = "nirdeploy_dt"
META_RESET = "nirdeploy_reset"
META_SOURCE = "nirdeploy_source"
META_SPIKE_RULE = "nirdeploy_spike_rule"
SPIKE_RULES = ("strict", "multi")


@dataclass(frozen=True)
class Recorded:
    """What a graph's metadata records (``None`` where nothing valid is recorded), plus one
    notice per key that was present but invalid."""

    dt: float | None = None
    reset: str | None = None
    source: str | None = None
    spike_rule: str | None = None
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"recorded by nirdeploy when the graph was exported{src}"


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)) and len(v) == 1:
        return _text(v[0])
    return v if isinstance(v, str) else None


def recorded(graph: Graph) -> Recorded:
    """The settings recorded in ``graph.metadata`` (root graph only)."""
    md = graph.metadata if isinstance(graph.metadata, dict) else {}
    problems: list[str] = []
    dt = reset = source = rule = None
    if META_DT in md:
        v = md[META_DT]
        try:
            f = float(v) if not isinstance(v, (bool, str, bytes)) else float("nan")
        except (TypeError, ValueError):
            f = float("nan")
        if math.isfinite(f) and f > 0:
            dt = f
        else:
            problems.append(f"metadata {META_DT} = {v!r} is not a positive number of seconds; ignored")
    if META_RESET in md:
        v = _text(md[META_RESET])
        if v in ("zero", "subtract"):
            reset = v
        else:
            problems.append(f"metadata {META_RESET} = {md[META_RESET]!r} is not 'zero' or 'subtract'; ignored")
    if META_SOURCE in md:
        source = _text(md[META_SOURCE])
    if META_SPIKE_RULE in md:
        v = _text(md[META_SPIKE_RULE])
        if v in SPIKE_RULES:
            rule = v
        else:
            problems.append(f"metadata {META_SPIKE_RULE} = {md[META_SPIKE_RULE]!r} is not one of {', '.join(SPIKE_RULES)}; ignored")
    return Recorded(dt, reset, source, rule, tuple(problems))


def with_recorded(graph: Graph, *, dt: float, reset: str, source: str, spike_rule: str = "strict") -> Graph:
    """A copy of ``graph`` whose metadata records the training settings."""
    from ..inputs import check_choice

    check_choice("spike_rule", spike_rule, SPIKE_RULES)
    md = dict(graph.metadata)
    md.update({META_DT: float(dt), META_RESET: str(reset), META_SOURCE: str(source), META_SPIKE_RULE: spike_rule})
    return graph.with_(metadata=md)
