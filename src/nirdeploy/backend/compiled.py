"""The compiled-folder contract: one definition in the core, the same for every target.

A compiled (deployment) folder, as ``nirdeploy compile -o OUT`` and ``Deployment.save`` write it::

    OUT/deployment.json   the ownership marker (core): format version, target, variant, shapes,
                          latency, settings, and the list of every other file in the folder
    OUT/report.json       the fit report (core)
    OUT/graph.nir         a copy of the source graph (core; optional)
    OUT/...               the target's own files: whatever ``Target.export`` returned

The core writes ``deployment.json`` and ``report.json`` (:func:`write_marker`,
:func:`write_report`) and validates them on load (:func:`read_marker`, :func:`read_report`).
``nirdeploy.load_deployment(folder)`` then

1. validates the marker: a regular JSON file under a size and depth limit, a format version this
   nirdeploy reads (:data:`FORMAT_VERSION`), every key present with its type and range, file names
   that are plain names, every listed file present as a regular file;
2. checks that the marker's target is installed and calls ``target.load(folder)``; anything
   other than a :class:`~nirdeploy.errors.NirDeployError` escaping ``load`` becomes a
   :class:`~nirdeploy.errors.DeploymentFolderError` naming the target;
3. checks that the returned ``Artifact`` agrees with the marker (target, variant, input and
   output shape, latency), so a folder whose files belong to another target or variant is
   refused.

Every failure is a :class:`~nirdeploy.errors.DeploymentFolderError` (exit code 2) naming the file
and the key. So a target's ``load(folder)`` receives a folder whose marker is valid; it reads its
own files only through :mod:`nirdeploy.backend.folder` with one schema per file, for example::

    from nirdeploy.backend.compiled import read_marker, read_report
    from nirdeploy.backend.folder import ArraySpec, Int, ListOf, Schema, Str, read_json, read_npz

    META = Schema({"variant": Str(), "readout": Str(("spikes", "vmem"))})
    ARRAYS = {"weights": ArraySpec("i", 2)}

    def load(self, folder):
        marker = read_marker(folder)                 # validated again (cheap), or trust it
        meta = read_json(folder / "mychip_meta.json", META)
        arrays = read_npz(folder / "mychip.npz", ARRAYS)
        report = read_report(folder)
        ...

and its ``export(artifact, folder)`` writes with :func:`~nirdeploy.backend.folder.write_json` /
:func:`~nirdeploy.backend.folder.write_npz` and returns the file names it wrote.

The marker is also what the ownership rule (:mod:`nirdeploy.outputs`) trusts: ``--force``
replaces an existing folder only when :func:`owned_entries` finds a marker and nothing in the
folder but the files it lists.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeploymentFolderError, NirDeployError
from ..graph.discretize import RESETS, SCHEMES
from .folder import AnyValue, Bool, Float, Int, ListOf, Nullable, Schema, Str, read_json, write_json
from .report import SEVERITIES, FitReport

__all__ = [
    "FORMAT_VERSION",
    "MARKER_FILE",
    "REPORT_FILE",
    "GRAPH_FILE",
    "MARKER_SCHEMA",
    "REPORT_SCHEMA",
    "Marker",
    "write_marker",
    "write_report",
    "read_marker",
    "read_report",
    "owned_entries",
    "check_artifact",
    "load_with_target",
]

#: the version of the folder layout this nirdeploy writes and reads
FORMAT_VERSION = 1
MARKER_FILE = "deployment.json"
REPORT_FILE = "report.json"
GRAPH_FILE = "graph.nir"
MAX_MARKER_BYTES = 1 << 20
MAX_FILES = 1000
MAX_SHAPE_DIMS = 8
MAX_DIM = 2**31 - 1
MAX_LATENCY = 2**31 - 1

SETTINGS_SCHEMA = Schema(
    {"dt": Float(0.0, exclusive_min=True)},
    optional={"reset": Str(RESETS), "scheme": Str(SCHEMES), "quantization": Str(), "calibrated": Bool()},
)
_SHAPE = ListOf(Int(1, MAX_DIM), max_len=MAX_SHAPE_DIMS)

MARKER_SCHEMA = Schema(
    {
        "nirdeploy_deployment": Int(FORMAT_VERSION, FORMAT_VERSION),
        "target": Str(max_len=100),
        "variant": Str(max_len=100),
        "input_shape": _SHAPE,
        "output_shape": _SHAPE,
        "latency_steps": Int(0, MAX_LATENCY),
        "settings": SETTINGS_SCHEMA,
        "files": ListOf(Str(max_len=255), max_len=MAX_FILES),
    },
    optional={"nirdeploy_version": Str(max_len=100)},
)

_NUMBER = Float(nonfinite_strings=True)
REPORT_SCHEMA = Schema(
    {
        "target": Str(max_len=100),
        "variant": Str(max_len=100),
        "fits": Bool(),
        "settings": SETTINGS_SCHEMA,
        "resources": ListOf(
            Schema(
                {"name": Str(), "used": _NUMBER, "limit": Nullable(_NUMBER)},
                optional={"unit": Str(), "confidence": Str(), "source": Str(), "fits": Bool()},
            )
        ),
        "violations": ListOf(
            Schema(
                {"rule": Str(), "message": Str()},
                optional={"node": Str(), "node_type": Str(), "limit": AnyValue(), "actual": AnyValue(), "hint": Str(),
                          "severity": Str(SEVERITIES)},
            )
        ),
    },
    optional={
        "nodes": ListOf(Schema({"node": Str(), "node_type": Str()}, optional={"usage": Schema()})),
        "notes": ListOf(Str()),
        # the keys the core reads from a report (the rest belongs to the target); "v" is how Loihi 2
        # folders named a voltage readout before it used the core's word
        "details": Schema(optional={"readout": Str(("spikes", "vmem", "v")), "input_events_cap": Float(min=0)}),
    },
)


@dataclass(frozen=True)
class Marker:
    """The validated content of ``deployment.json``."""

    format_version: int
    target: str
    variant: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    latency_steps: int
    settings: dict
    files: tuple[str, ...]
    nirdeploy_version: str = ""


# -- writing ------------------------------------------------------------------------------------
def write_marker(folder, artifact, files) -> None:
    """Write ``folder/deployment.json`` for ``artifact`` listing ``files`` (every other file)."""
    from .. import __version__

    files = sorted(set(files) - {MARKER_FILE})
    for f in files:
        _check_file_name(Path(folder) / MARKER_FILE, f)
    meta = {
        "nirdeploy_deployment": FORMAT_VERSION,
        "nirdeploy_version": __version__,
        "target": artifact.target,
        "variant": artifact.variant,
        "input_shape": [int(s) for s in artifact.input_shape],
        "output_shape": [int(s) for s in artifact.output_shape],
        "latency_steps": int(artifact.latency_steps),
        "settings": artifact.report.to_dict()["settings"],
        "files": files,
    }
    write_json(Path(folder) / MARKER_FILE, meta)


def write_report(folder, report: FitReport) -> None:
    """Write ``folder/report.json`` (RFC 8259 JSON; non-finite numbers as strings)."""
    write_json(Path(folder) / REPORT_FILE, report.to_dict())


# -- reading ------------------------------------------------------------------------------------
def _check_file_name(where: Path, name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name or name == MARKER_FILE:
        raise DeploymentFolderError(where, "files", f"{name!r} is not a plain file name of the folder")


def _folder(folder) -> Path:
    p = Path(folder)
    if not p.is_dir():
        raise DeploymentFolderError(p, "", "is not a folder; a compiled folder is what `nirdeploy compile -o` writes")
    return p


def read_marker(folder) -> Marker:
    """The validated marker of a compiled folder (see the module docstring).

    Raises DeploymentFolderError naming ``deployment.json`` (or a listed file) and the key."""
    p = _folder(folder)
    mp = p / MARKER_FILE
    if not os.path.lexists(mp):
        raise DeploymentFolderError(p, "", f"is not a compiled nirdeploy folder (no {MARKER_FILE})")
    data = read_json(mp, max_bytes=MAX_MARKER_BYTES)
    if not isinstance(data, dict):
        raise DeploymentFolderError(mp, "", f"expected a JSON object, got {type(data).__name__}")
    ver = data.get("nirdeploy_deployment")
    if isinstance(ver, int) and not isinstance(ver, bool) and ver != FORMAT_VERSION:
        raise DeploymentFolderError(
            mp, "nirdeploy_deployment",
            f"format version {ver} is not supported (this nirdeploy reads version {FORMAT_VERSION}); compile the graph again",
        )
    MARKER_SCHEMA.validate(data, mp)
    files = tuple(data["files"])
    if len(set(files)) != len(files):
        raise DeploymentFolderError(mp, "files", "lists a file twice")
    for f in files:
        _check_file_name(mp, f)
    if REPORT_FILE not in files:
        raise DeploymentFolderError(mp, "files", f"does not list {REPORT_FILE}")
    for f in files:
        fp = p / f
        try:
            st = os.lstat(fp)
        except FileNotFoundError:
            raise DeploymentFolderError(fp, "", f"is listed in {MARKER_FILE} but missing") from None
        except OSError as e:
            raise DeploymentFolderError(fp, "", f"cannot be read: {e.strerror or e}") from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise DeploymentFolderError(fp, "", f"is {kind}; a compiled folder holds regular files only")
    return Marker(
        format_version=data["nirdeploy_deployment"],
        target=data["target"],
        variant=data["variant"],
        input_shape=tuple(data["input_shape"]),
        output_shape=tuple(data["output_shape"]),
        latency_steps=data["latency_steps"],
        settings=dict(data["settings"]),
        files=files,
        nirdeploy_version=data.get("nirdeploy_version", ""),
    )


def read_report(folder) -> FitReport:
    """The validated ``report.json`` of a compiled folder as a FitReport."""
    rp = _folder(folder) / REPORT_FILE
    data = read_json(rp, REPORT_SCHEMA)
    det = data.get("details") or {}
    if det.get("readout") == "v":
        det["readout"] = "vmem"
    for r in data["resources"]:
        for k in ("used", "limit"):
            if isinstance(r.get(k), str):
                r[k] = float(r[k])
    return FitReport.from_dict(data)


_OWNERSHIP_SCHEMA = Schema({"nirdeploy_deployment": Int(1), "files": ListOf(Str(max_len=255), max_len=MAX_FILES)})


def owned_entries(folder) -> list[str]:
    """The entries of ``folder`` if it is a nirdeploy deployment holding nothing else.

    A deployment has a marker (any format version) and every entry of the folder is the marker or
    a regular file the marker lists. Raises DeploymentFolderError saying what is not ours."""
    p = Path(folder)
    mp = p / MARKER_FILE
    if not os.path.lexists(mp):
        raise DeploymentFolderError(p, "", f"has no {MARKER_FILE}, so nirdeploy did not write it")
    data = read_json(mp, _OWNERSHIP_SCHEMA, max_bytes=MAX_MARKER_BYTES)
    listed = set(data["files"])
    for f in listed:
        _check_file_name(mp, f)
    listed.add(MARKER_FILE)
    with os.scandir(p) as it:
        entries = []
        for e in it:
            entries.append(e.name)
            if len(entries) > MAX_FILES + 1:
                raise DeploymentFolderError(p, "", f"holds more than {MAX_FILES} entries")
    for name in sorted(entries):
        if name not in listed:
            raise DeploymentFolderError(p / name, "", f"is not one of the files nirdeploy wrote (not listed in {MARKER_FILE})")
        if not stat.S_ISREG(os.lstat(p / name).st_mode):
            raise DeploymentFolderError(p / name, "", "is not a regular file, so nirdeploy did not write it")
    return sorted(entries)


def check_artifact(marker: Marker, artifact, folder) -> None:
    """The artifact a target loaded must be the one the marker describes."""
    mp = Path(folder) / MARKER_FILE
    pairs = [
        ("target", marker.target, artifact.target),
        ("variant", marker.variant, artifact.variant),
        ("input_shape", tuple(marker.input_shape), tuple(int(s) for s in artifact.input_shape)),
        ("output_shape", tuple(marker.output_shape), tuple(int(s) for s in artifact.output_shape)),
        ("latency_steps", marker.latency_steps, int(artifact.latency_steps)),
    ]
    for key, want, got in pairs:
        if want != got:
            raise DeploymentFolderError(mp, key, f"says {want!r} but the {marker.target} files say {got!r}")


def load_with_target(target, folder, marker: Marker):
    """``target.load(folder)`` behind the contract: errors that are not NirDeployErrors become a
    DeploymentFolderError naming the target, and the artifact is checked against the marker.
    ``report.json`` is the core's file: it is validated here for every target, before the target
    reads anything."""
    try:
        read_report(folder)
        art = target.load(Path(folder))
    except DeploymentFolderError as e:  # say what the marker claims: a folder of another target?
        raise DeploymentFolderError(
            e.path, e.key, f"{e.problem} (its {MARKER_FILE} says this is a {marker.target}:{marker.variant} folder)"
        ) from None
    except NirDeployError:
        raise
    except (MemoryError, RecursionError):
        raise DeploymentFolderError(Path(folder), "", f"the {marker.target} files are too large or too deeply nested") from None
    except Exception as e:
        raise DeploymentFolderError(
            Path(folder), "", f"the {marker.target} target could not load its files: {type(e).__name__}: {str(e)[:300]}"
        ) from None
    check_artifact(marker, art, folder)
    return art

