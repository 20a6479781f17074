"""Shared backend pieces: hw_config limit provenance, the limit checker, and bounded reads of
compiled-folder files."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from nirdeploy.backend.folder import ArraySpec, Float, Int, ListOf, Nullable, Schema, Str, read_json, read_npz, write_json, write_npz
from nirdeploy.backend.hwconfig import _parse
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.rules import LimitChecker
from nirdeploy.errors import DeploymentFolderError, UsageError


def _hw(limits):
    return _parse({"chip": {"target": "t", "variant": "v"}, "limits": limits}, source="test")


def test_limit_provenance_and_checker():
    hw = _hw({"neurons": {"value": 10, "confidence": "estimate", "source": "Loihi 1 proxy"}, "inputs": 4})
    assert hw.limits == {"neurons": 10, "inputs": 4}
    assert hw.limit_source("neurons").confidence == "estimate"
    assert hw.limit_source("inputs").confidence == "unspecified"
    rep = FitReport("t", "v")
    chk = LimitChecker(hw, rep)
    assert chk.check("inputs", 4, unit="channels")
    assert not chk.check("neurons", 11, node="layer1", hint="use fewer")
    assert [r.confidence for r in rep.resources] == ["unspecified", "estimate"]
    (v,) = rep.violations
    assert (v.rule, v.node, v.limit, v.actual) == ("neurons", "layer1", 10, 11)
    assert "estimate" in v.message and "Loihi 1 proxy" in v.message
    assert rep.to_dict()["resources"][1]["source"] == "Loihi 1 proxy"
    assert "estimate" in rep.render()


def test_bad_confidence_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        _hw({"n": {"value": 1, "confidence": "guess"}})


SCHEMA = Schema({"version": Int(1, 1), "dt": Float(0, exclusive_min=True), "readout": Str(("spikes", "vmem")),
                 "shape": ListOf(Int(1)), "scale": Nullable(ListOf(Float()))}, allow_extra=False)


def test_read_json_schema(tmp_path):
    p = tmp_path / "m.json"
    good = {"version": 1, "dt": 1e-4, "readout": "spikes", "shape": [3], "scale": None}
    write_json(p, good)
    assert read_json(p, SCHEMA) == good
    for bad, key in [
        ([1, 2], ""),
        ({**good, "dt": "x"}, "dt"),
        ({**good, "dt": -5}, "dt"),
        ({**good, "readout": "other"}, "readout"),
        ({k: v for k, v in good.items() if k != "shape"}, "shape"),
        ({**good, "shape": [0]}, "shape[0]"),
        ({**good, "extra": 1}, "extra"),
        ({**good, "version": True}, "version"),
    ]:
        p.write_text(json.dumps(bad))
        with pytest.raises(DeploymentFolderError) as e:
            read_json(p, SCHEMA)
        assert e.value.key == key and isinstance(e.value, UsageError) and e.value.exit_code == 2


def test_read_json_limits(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 10000 + "]" * 10000)
    with pytest.raises(DeploymentFolderError, match="nested deeper"):
        read_json(p)
    p.write_text('{"a": NaN}')
    with pytest.raises(DeploymentFolderError, match="not valid JSON"):
        read_json(p)
    p.write_text("x" * 100)
    with pytest.raises(DeploymentFolderError, match="more than"):
        read_json(p, max_bytes=10)


def test_non_regular_files_are_refused(tmp_path):
    (tmp_path / "real.json").write_text("{}")
    os.symlink(tmp_path / "real.json", tmp_path / "link.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    for name, msg in [("link.json", "symbolic link"), ("zero.json", "symbolic link"), ("fifo.json", "not a regular file"),
                      ("dir.json", "not a regular file"), ("missing.json", "missing")]:
        with pytest.raises(DeploymentFolderError, match=msg):
            read_json(tmp_path / name)


def test_read_npz(tmp_path):
    p = tmp_path / "a.npz"
    write_npz(p, {"w": np.arange(6).reshape(2, 3), "s": np.int64(3)})
    specs = {"w": ArraySpec("i", 2), "s": ArraySpec("i", 0), "o": ArraySpec(optional=True)}
    d = read_npz(p, specs)
    assert d["w"].shape == (2, 3) and int(d["s"]) == 3
    with pytest.raises(DeploymentFolderError, match="'w'.*dimension"):
        read_npz(p, {"w": ArraySpec("i", 1), "s": ArraySpec()})
    with pytest.raises(DeploymentFolderError, match="'x'.*missing"):
        read_npz(p, {**specs, "x": ArraySpec()})
    with pytest.raises(DeploymentFolderError, match="unexpected"):
        read_npz(p, {"w": ArraySpec()})
    # a zip bomb: 50 MB of zeros compresses to ~50 kB; refused before decompression
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("w.npy", "w") as f:
            np.save(f, np.zeros(50_000_000 // 8))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DeploymentFolderError, match="decompress"):
        read_npz(bomb, max_uncompressed_bytes=10_000_000)
    with pytest.raises(TypeError):
        write_npz(tmp_path / "o.npz", {"o": np.array([object()])})
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DeploymentFolderError, match="cannot be read"):
        read_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DeploymentFolderError, match="not a valid .npz"):
        read_npz(tmp_path / "junk.npz")


@pytest.mark.parametrize("content", [
    b"\xff\xfe not utf-8",                         # not UTF-8
    b"[chip\ntarget = 'xylo'",                      # not TOML
    b"[limits]\nhidden_neurons = 10\n",             # no [chip] table
    b"[chip]\ntarget = 'xylo'\nvariant = 'mine'\n[formats]\nweight = 3\n",  # a format that is not a table
])
def test_a_user_hw_config_that_is_not_one_is_a_usage_error(tmp_path, content):
    """hw_configs from a user folder are input: every kind of bad file is a UsageError naming it
    (before, a non-UTF-8 file raised UnicodeDecodeError and a missing table KeyError)."""
    from nirdeploy.backend.hwconfig import load_hwconfig
    from nirdeploy.errors import UsageError

    (tmp_path / "xylo-mine.toml").write_bytes(content)
    with pytest.raises(UsageError, match="xylo-mine.toml"):
        load_hwconfig("xylo", "mine", folder=tmp_path)
