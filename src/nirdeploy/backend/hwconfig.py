"""Load the per-variant chip data files shipped in ``hw_configs/``.

A file ``<target>-<variant>.toml`` has tables ``[chip]`` (names), ``[limits]`` (counts and
flags) and ``[formats]`` (one :class:`~nirdeploy.backend.intformat.IntFormat` per named number).
Third-party targets may pass their own folder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .intformat import IntFormat

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["HWConfig", "LimitSource", "CONFIDENCES", "load_hwconfig", "list_hwconfigs"]

CONFIDENCES = ("documented", "source", "measured", "unconfirmed", "estimate", "unspecified")


@dataclass(frozen=True)
class LimitSource:
    """Where a limit's value comes from: ``confidence`` (one of CONFIDENCES) and a citation."""

    value: Any
    confidence: str = "unspecified"
    source: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "confidence": self.confidence, "source": self.source}


@dataclass(frozen=True)
class HWConfig:
    target: str
    variant: str
    name: str
    chip: dict[str, Any]
    limits: dict[str, Any]
    formats: dict[str, IntFormat]
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    provenance: dict[str, LimitSource] = field(default_factory=dict)

    def fmt(self, name: str) -> IntFormat:
        try:
            return self.formats[name]
        except KeyError:
            raise KeyError(f"{self.target}:{self.variant} has no format {name!r} in its hw_config") from None

    def limit(self, name: str) -> Any:
        try:
            return self.limits[name]
        except KeyError:
            raise KeyError(f"{self.target}:{self.variant} has no limit {name!r} in its hw_config") from None

    def limit_source(self, name: str) -> LimitSource:
        """The value of limit ``name`` with its confidence and citation."""
        return self.provenance.get(name) or LimitSource(self.limit(name))

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "variant": self.variant,
            "name": self.name,
            "chip": dict(self.chip),
            "limits": dict(self.limits),
            "provenance": {k: v.to_dict() for k, v in self.provenance.items()},
            "formats": {k: v.to_dict() for k, v in self.formats.items()},
        }


def _parse_limits(raw: dict, source: str) -> tuple[dict[str, Any], dict[str, LimitSource]]:
    values: dict[str, Any] = {}
    prov: dict[str, LimitSource] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            if "value" not in v:
                raise ValueError(f"{source}: limit {k!r} is a table without 'value'")
            conf = str(v.get("confidence", "unspecified"))
            if conf not in CONFIDENCES:
                raise ValueError(f"{source}: limit {k!r} has confidence {conf!r}; expected one of {', '.join(CONFIDENCES)}")
            values[k] = v["value"]
            prov[k] = LimitSource(v["value"], conf, str(v.get("source", "")))
        else:
            values[k] = v
            prov[k] = LimitSource(v)
    return values, prov


def _parse(data: dict, source: str) -> HWConfig:
    chip = dict(data.get("chip", {}))
    limits, prov = _parse_limits(dict(data.get("limits", {})), source)
    formats = {k: IntFormat.from_dict(v, name=k) for k, v in data.get("formats", {}).items()}
    extra = {k: v for k, v in data.items() if k not in ("chip", "limits", "formats")}
    return HWConfig(
        target=chip["target"],
        variant=chip["variant"],
        name=chip.get("name", f"{chip['target']}:{chip['variant']}"),
        chip=chip,
        limits=limits,
        formats=formats,
        extra=extra,
        source=source,
        provenance=prov,
    )


def _builtin_dir():
    return resources.files("nirdeploy.hw_configs")


@functools.lru_cache(maxsize=None)
def _load_builtin(fname: str) -> HWConfig:
    f = _builtin_dir() / fname
    return _parse(tomllib.loads(f.read_text(encoding="utf-8")), source=f"hw_configs/{fname}")


def list_hwconfigs(target: str, folder: str | Path | None = None) -> list[str]:
    """Variant names available for ``target`` (sorted)."""
    if folder is None:
        names = [p.name for p in _builtin_dir().iterdir()]
    else:
        names = [p.name for p in Path(folder).iterdir()]
    prefix = f"{target}-"
    return sorted(n[len(prefix) : -5] for n in names if n.startswith(prefix) and n.endswith(".toml"))


#: the largest user hw_config file read (the built-in ones are a few kB)
MAX_HWCONFIG_BYTES = 1_000_000


def load_hwconfig(target: str, variant: str, folder: str | Path | None = None) -> HWConfig:
    """The hw_config of ``target:variant``: the built-in file, or ``folder/TARGET-VARIANT.toml``.
    Raises UsageError (unknown variant; a user file that is missing, not a regular file, larger
    than MAX_HWCONFIG_BYTES, not UTF-8 TOML, or missing the chip/limits/formats a hw_config has)."""
    fname = f"{target}-{variant}.toml"
    if folder is None:
        if variant not in list_hwconfigs(target):
            raise UsageError(
                f"unknown variant {variant!r} for target {target!r}; known: {', '.join(list_hwconfigs(target)) or 'none'}"
            )
        return _load_builtin(fname)
    p = Path(folder) / fname
    if not p.is_file():
        raise UsageError(f"no hw_config {fname} in {folder}")
    from ..inputs import check_input_file

    src = check_input_file(p, "hw_config", "a TOML file", MAX_HWCONFIG_BYTES)  # a regular file of bounded size
    try:
        with open(src, "rb") as f:
            text = f.read(MAX_HWCONFIG_BYTES + 1).decode("utf-8")
        return _parse(tomllib.loads(text), source=str(p))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise UsageError(f"hw_config {p} cannot be read as UTF-8 TOML: {type(e).__name__}: {str(e)[:300]}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"hw_config {p} is not a valid hw_config ({type(e).__name__}: {str(e)[:300]}); compare it with "
                         f"the built-in hw_configs/{fname}") from None
