"""Budget files: the share of each chip resource a team keeps free, and floors on how closely the
chip follows the float reference, checked on every change in CI.

Format (TOML, version 1)::

    version = 1                         # optional
    sample_input = "sample_input.npy"   # (batch, time, *input_shape) spike counts, for
                                        # [min_agreement]; relative to this file. Top-level keys
                                        # come before the first [table] (a TOML rule).

    [keep_free]                 # share of each chip resource to leave unused
    "hidden neurons" = "20%"    # a percentage string, or a fraction in [0, 1]: 0.2
    max_fan_out_per_neuron = 0.1

    [min_agreement]             # floors on chip-vs-reference agreement on sample_input
    argmax_agreement = 0.9      # share of samples whose most active output is the same
    count_correlation = 0.95    # correlation of per-sample, per-output spike counts, in [-1, 1]
    elementwise_agreement = 0.8 # share of equal (time, output) entries

    [targets.loihi2.keep_free]  # for one target (or "TARGET:VARIANT"): replaces [keep_free]
    cores = "50%"               # there; [targets.X.min_agreement] replaces [min_agreement]

Each target names its own resources, so a budget used with several targets (``--target all``, a
pytest run over several ``--nirdeploy-target``) gives each its own ``[targets.NAME]`` tables; a
``"TARGET:VARIANT"`` table takes precedence over a ``TARGET`` one, which takes precedence over the
top-level tables.

Resource names are those of the fit report's resources (``nirdeploy check --json``, key
``resources``; the "resource" column of the text report). They match case-insensitively, and
``_`` or ``-`` may stand for a space. A resource ``used`` against ``limit`` breaches
``keep_free = s`` when ``used > (1 - s) * limit``. The metrics are those of
:func:`nirdeploy.compare_outputs`.

Errors: an unreadable file, a TOML syntax error, an unknown key or metric, a value that is not a
share or a floor, a resource name that no report lists, or a resource without a limit raise
:class:`BudgetError` (a :class:`~nirdeploy.errors.UsageError`: exit code 2). A breach is not an
error: it is a failed :class:`BudgetResult` (exit code 1 from ``nirdeploy check``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError

__all__ = ["AGREEMENT_METRICS", "Budget", "BudgetError", "BudgetResult", "load_budget", "parse_budget", "as_budget",
           "check_resources", "check_agreement", "floor_failures", "evaluate_budget"]

FORMAT_VERSION = 1
MAX_BUDGET_BYTES = 1_000_000
#: compare_outputs metrics a floor may be set on, with their range
AGREEMENT_METRICS = {
    "argmax_agreement": (0.0, 1.0),
    "count_correlation": (-1.0, 1.0),
    "elementwise_agreement": (0.0, 1.0),
}
TOP_LEVEL_KEYS = ("version", "sample_input", "keep_free", "min_agreement", "targets")
TARGET_KEYS = ("keep_free", "min_agreement")


class BudgetError(UsageError):
    """A budget file or budget value that cannot be used (exit code 2). ``path`` names the file
    (empty for an in-memory budget) and ``line`` the line of a TOML syntax error, when known."""

    def __init__(self, message: str, path: str = "", line: int | None = None, *, prefixed: bool = True):
        self.path = path
        self.line = line
        if prefixed:
            message = f"budget {path}: {message}" if path else f"budget: {message}"
        super().__init__(message)


def normalize_name(name: str) -> str:
    """Resource-name key: case-insensitive; ``_`` and ``-`` stand for spaces; runs of spaces collapse."""
    return " ".join(re.sub(r"[_\-]", " ", str(name)).lower().split())


@dataclass(frozen=True)
class Budget:
    """A parsed budget. ``keep_free`` maps resource names (as written) to shares in [0, 1];
    ``min_agreement`` maps :data:`AGREEMENT_METRICS` names to floors."""

    keep_free: dict[str, float] = field(default_factory=dict)
    min_agreement: dict[str, float] = field(default_factory=dict)
    sample_input: Path | None = None
    source: str = ""
    #: "TARGET" or "TARGET:VARIANT" -> {"keep_free": {...}, "min_agreement": {...}} (either may be absent)
    targets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def for_chip(self, target: str, variant: str) -> tuple[dict[str, float], dict[str, float], str, str]:
        """(keep_free, min_agreement, the keep_free table's name, the min_agreement table's name)
        for one chip: the ``TARGET:VARIANT`` table, else the ``TARGET`` table, else the top-level
        one, per key."""
        kf, ma, kf_src, ma_src = self.keep_free, self.min_agreement, "[keep_free]", "[min_agreement]"
        for name in (target, f"{target}:{variant}"):
            t = self.targets.get(name, {})
            if "keep_free" in t:
                kf, kf_src = t["keep_free"], f"[targets.{_key(name)}.keep_free]"
            if "min_agreement" in t:
                ma, ma_src = t["min_agreement"], f"[targets.{_key(name)}.min_agreement]"
        return kf, ma, kf_src, ma_src

    def to_dict(self) -> dict:
        return {"source": self.source, "keep_free": dict(self.keep_free), "min_agreement": dict(self.min_agreement),
                "sample_input": None if self.sample_input is None else str(self.sample_input),
                "targets": {k: {kk: dict(vv) for kk, vv in v.items()} for k, v in self.targets.items()}}


def _key(name: str) -> str:
    return f'"{name}"' if ":" in name else name


@dataclass
class BudgetResult:
    """One budget line checked against one report: ``kind`` is ``"keep_free"`` or
    ``"min_agreement"``; ``name`` the resource or metric; ``passed`` whether it holds."""

    kind: str
    name: str
    target: str
    passed: bool
    message: str
    share: float | None = None  # keep_free share
    used: float | None = None
    limit: float | None = None
    allowed: float | None = None  # most that may be used
    value: float | None = None  # measured metric
    floor: float | None = None

    @property
    def title(self) -> str:
        if self.kind == "keep_free":
            return f"keep {_pct(self.share)} of {self.name} free"
        return f"{self.name} >= {self.floor:g}"

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "name": self.name, "target": self.target, "passed": self.passed, "title": self.title,
             "message": self.message}
        for k in ("share", "used", "limit", "allowed", "value", "floor"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:g} %"


# -- reading ---------------------------------------------------------------------------------------
def load_budget(path) -> Budget:
    """Read and validate a budget file (see the module docstring for the format)."""
    from ..inputs import check_input_file

    try:
        src = check_input_file(path, "budget", "a TOML file", MAX_BUDGET_BYTES)
    except UsageError as e:
        raise BudgetError(str(e), os.fspath(path) if isinstance(path, (str, os.PathLike)) else "", prefixed=False) from None
    p = Path(src)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_BUDGET_BYTES + 1)
        if len(raw) > MAX_BUDGET_BYTES:  # it grew after the check
            raise BudgetError(f"file is larger than {MAX_BUDGET_BYTES} bytes", src)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BudgetError(f"cannot be read as UTF-8 text: {e}", src) from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise BudgetError(f"is not valid TOML: {e}", src, int(m.group(1)) if m else None) from None
    except RecursionError:
        raise BudgetError("is nested too deeply to be a budget (arrays or tables inside each other)", src) from None
    return parse_budget(data, source=src, base_dir=p.parent)


def parse_budget(data: Mapping[str, Any], *, source: str = "", base_dir=None) -> Budget:
    """Validate a budget given as a mapping (the parsed TOML); ``sample_input`` is resolved
    against ``base_dir`` when relative."""
    if not isinstance(data, Mapping):
        raise BudgetError(f"must be a table of keys, got {type(data).__name__}", source)
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise BudgetError(f"unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(TOP_LEVEL_KEYS)}", source)
    version = data.get("version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
        raise BudgetError(f"version must be {FORMAT_VERSION}, got {version!r}", source)

    keep_free = _keep_free_table(_table(data, "keep_free", source), "[keep_free]", source)
    floors = _floors_table(_table(data, "min_agreement", source), "[min_agreement]", source)
    targets: dict[str, dict[str, dict[str, float]]] = {}
    for tname, tdata in _table(data, "targets", source).items():
        where = f"[targets.{_key(str(tname))}]"
        if not isinstance(tdata, Mapping):
            raise BudgetError(f"{where} must be a table, got {tdata!r}", source)
        tn, _, var = str(tname).partition(":")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", tn) or (var and not re.fullmatch(r"[A-Za-z0-9_.\-]+", var)):
            raise BudgetError(f"{where}: a table name is a target or TARGET:VARIANT, got {tname!r}", source)
        _known_chip(tn, var, where, source)
        bad = [k for k in tdata if k not in TARGET_KEYS]
        if bad:
            raise BudgetError(f"{where} has unknown key(s) {', '.join(map(repr, bad))}; known: {', '.join(TARGET_KEYS)}", source)
        entry = {}
        if "keep_free" in tdata:
            entry["keep_free"] = _keep_free_table(_table(tdata, "keep_free", source), f"{where[:-1]}.keep_free]", source)
        if "min_agreement" in tdata:
            entry["min_agreement"] = _floors_table(_table(tdata, "min_agreement", source), f"{where[:-1]}.min_agreement]", source)
        targets[str(tname)] = entry
    any_floors = bool(floors) or any(t.get("min_agreement") for t in targets.values())

    sample = data.get("sample_input")
    if sample is not None:
        if not isinstance(sample, str) or not sample.strip():
            raise BudgetError(f"sample_input must be a path to a .npy file, got {sample!r}", source)
        if "\x00" in sample:
            raise BudgetError(f"sample_input contains a NUL byte: {sample!r}", source)
        sample = Path(sample)
        if not sample.is_absolute() and base_dir is not None:
            if not isinstance(base_dir, (str, os.PathLike)):
                raise BudgetError(f"base_dir must be a folder path, got {type(base_dir).__name__}", source)
            sample = Path(base_dir) / sample
    if any_floors and sample is None:
        raise BudgetError("[min_agreement] needs sample input: add sample_input = \"X.npy\" before the first table", source)
    if sample is not None and not any_floors:
        raise BudgetError("sample_input is given but [min_agreement] sets no floor", source)
    return Budget(keep_free=keep_free, min_agreement=floors, sample_input=sample, source=source, targets=targets)


def _known_chip(target: str, variant: str, where: str, source: str) -> None:
    """A [targets.NAME] table for a target or variant nobody registered would never apply: the
    budget would silently set no limit (a typo such as ``xyl`` or ``xylo:audio9``)."""
    from ..backend.target import parse_target_spec  # the registry: built-in and entry-point targets

    try:
        parse_target_spec(f"{target}:{variant}" if variant else target)
    except UsageError as e:
        raise BudgetError(f"{where} would never apply: {e}", source) from None


def _keep_free_table(table: Mapping, where: str, source: str) -> dict[str, float]:
    keep_free: dict[str, float] = {}
    seen: dict[str, str] = {}
    for name, value in table.items():
        key = normalize_name(name)
        if not key:
            raise BudgetError(f"{where} has an empty resource name", source)
        if key in seen:
            raise BudgetError(f"{where} names {seen[key]!r} and {name!r}, which are the same resource", source)
        seen[key] = name
        keep_free[name] = _share(name, value, source, where)
    return keep_free


def _floors_table(table: Mapping, where: str, source: str) -> dict[str, float]:
    floors: dict[str, float] = {}
    for name, value in table.items():
        if name not in AGREEMENT_METRICS:
            raise BudgetError(f"{where} has unknown metric {name!r}; known: {', '.join(AGREEMENT_METRICS)}", source)
        floors[name] = validate_floor(name, value, f"{where} {name}", source)
    return floors


def as_budget(budget) -> Budget:
    """A :class:`Budget` from a Budget, a path to a budget file, or a mapping."""
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, Mapping):
        return parse_budget(budget)
    if isinstance(budget, (str, os.PathLike)):
        return load_budget(budget)
    raise BudgetError(f"expected a budget file path, a mapping or a Budget, got {type(budget).__name__}")


def _table(data: Mapping, key: str, source: str) -> Mapping:
    t = data.get(key, {})
    if not isinstance(t, Mapping):
        raise BudgetError(f"[{key}] must be a table, got {t!r}", source)
    return t


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _share(name: str, value, source: str, where: str = "[keep_free]") -> float:
    share = _number(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*", value)
        share = float(m.group(1)) / 100.0 if m else None
    elif share is not None and share > 1:
        raise BudgetError(f"{where} {name!r} = {value!r} is above 1: shares are fractions (0.2) or percentages (\"20%\")",
                          source)
    if share is None or not 0.0 <= share <= 1.0:
        raise BudgetError(f"{where} {name!r} = {value!r} is not a share of the chip: use a fraction in [0, 1] "
                          "such as 0.2, or a percentage such as \"20%\"", source)
    return share


def validate_floor(metric: str, value, what: str, source: str = "") -> float:
    lo, hi = AGREEMENT_METRICS[metric]
    f = _number(value)
    if f is None or not lo <= f <= hi:
        raise BudgetError(f"{what} = {value!r} must be a number in [{lo:g}, {hi:g}]", source)
    return f


# -- evaluation ------------------------------------------------------------------------------------
def check_resources(reports, budget: Budget) -> list[BudgetResult]:
    """Check ``budget.keep_free`` against one report or a list of them (``--target all``).

    A name is applied to every report that lists the resource. A name that no fitting report
    lists raises :class:`BudgetError` (a typo, or a resource of another target); when no report
    fits (a network that does not lower may list only a neuron count), such a name is skipped:
    the network already fails."""
    reports = list(reports) if isinstance(reports, (list, tuple)) else [reports]
    results: list[BudgetResult] = []
    groups: dict[str, tuple[dict, list]] = {}  # reports that share one keep_free table
    for rep in reports:
        kf, _, where, _ = budget.for_chip(rep.target, rep.variant)
        groups.setdefault(where, (kf, []))[1].append(rep)
    for where, (keep_free, reps) in groups.items():
        for name, share in keep_free.items():
            key = normalize_name(name)
            found = False
            for rep in reps:
                for res in rep.resources:
                    if normalize_name(res.name) != key:
                        continue
                    found = True
                    results.append(_resource_result(rep, res, name, share, budget.source))
            if not found and any(r.fits for r in reps):
                known = sorted({r.name for rep in reps if rep.fits for r in rep.resources})
                chips = ", ".join(f"{r.target}:{r.variant}" for r in reps if r.fits)
                hint = (f" (each target names its own resources: give {reps[0].target} a [targets.{reps[0].target}.keep_free] table)"
                        if where == "[keep_free]" else "")
                raise BudgetError(f"{where} names {name!r}, which the fit report does not list; its resources: "
                                  f"{', '.join(map(repr, known)) or 'none'} ({chips}){hint}", budget.source)
    return results


def _resource_result(rep, res, name: str, share: float, source: str) -> BudgetResult:
    chip = f"{rep.target}:{rep.variant}"
    if res.limit is None:
        raise BudgetError(f"the keep_free table for {chip} names {name!r}, which has no limit there, so no share of it can be kept free",
                          source)
    allowed = (1.0 - share) * float(res.limit)
    used = float(res.used)
    if used.is_integer() and float(res.limit).is_integer():  # counts: at most the whole number below
        allowed = float(math.floor(allowed + 1e-9))
    passed = used <= allowed + 1e-9 * max(1.0, abs(allowed))
    frac = used / float(res.limit) if res.limit else math.inf
    unit = f" {res.unit}" if res.unit else ""
    if passed:
        msg = (f"{res.name}: {_num(used)} of {_num(res.limit)}{unit} used ({100 * frac:.1f} %) on {chip}, within the budget "
               f"that keeps {_pct(share)} free (at most {_num(allowed)})")
    else:
        msg = (f"{res.name}: {_num(used)} of {_num(res.limit)}{unit} used ({100 * frac:.1f} %) on {chip}; the budget keeps "
               f"{_pct(share)} free, so at most {_num(allowed)} may be used (over by {_num(used - allowed)})")
    return BudgetResult("keep_free", res.name, chip, passed, msg, share=share, used=used, limit=float(res.limit),
                        allowed=allowed)


def _num(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.4g}"


def floor_failures(comparison: Mapping[str, Any], floors: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """``(metric, value, floor)`` for every floor the comparison falls below."""
    return [(m, float(comparison[m]), f) for m, f in floors.items() if not float(comparison[m]) >= f]


def check_agreement(comparison: Mapping[str, Any], budget: Budget, target: str) -> list[BudgetResult]:
    """Check the budget's agreement floors for ``target`` ("TARGET:VARIANT": its
    ``[targets...]`` table, else ``min_agreement``) against a :func:`nirdeploy.compare_outputs`
    result."""
    tn, _, var = str(target).partition(":")
    floors = budget.for_chip(tn, var)[1]
    failing = {m for m, _, _ in floor_failures(comparison, floors)}
    out = []
    for metric, floor in floors.items():
        value = float(comparison[metric])
        passed = metric not in failing
        rel = ">=" if passed else "<"
        msg = f"{metric} {value:.3f} {rel} {floor:g} (budget floor) on {target}, sample {budget.sample_input}"
        out.append(BudgetResult("min_agreement", metric, target, passed, msg, value=value, floor=floor))
    return out


def evaluate_budget(graph, reports, budget, *, dt=None, reset="zero", scheme="euler", quantization="channel",
                    calibrate=None, target_options: dict | None = None) -> list[BudgetResult]:
    """Every :class:`BudgetResult` of ``budget`` (a Budget, a file path or a mapping) for
    ``reports``, the fit report(s) of ``graph``. Agreement floors compile each fitting report's
    target with these settings and simulate the budget's sample input on chip and reference."""
    from ..api import load_input_array
    from .measure import run_chip_and_reference

    b = as_budget(budget)
    reports = list(reports) if isinstance(reports, (list, tuple)) else [reports]
    results = check_resources(reports, b)
    if b.sample_input is not None:
        x = load_input_array(b.sample_input)
        for rep in reports:
            if rep.fits and b.for_chip(rep.target, rep.variant)[1]:
                chip = f"{rep.target}:{rep.variant}"
                run = run_chip_and_reference(graph, chip, x, dt=dt, reset=reset, scheme=scheme, quantization=quantization,
                                             calibrate=calibrate, target_options=target_options)
                results += check_agreement(run.comparison, b, chip)
    return results
