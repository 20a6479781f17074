"""File outputs never replace an existing path unasked (the ownership rule of
:mod:`nirdeploy.outputs`, for files as for folders): without --force / ``force=True`` an existing
path is exit 2 / OutputError naming it, left byte for byte; with it only a regular file that is
not an input is replaced. The adversarial tables (tests/adversarial.py, adversarial_commands.py)
run the per-command cases; here: the core, the API writers, the CI report folder and a guard
that every command with a file output has --force."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy import outputs
from nirdeploy.cli import main
from nirdeploy.errors import OutputError, UsageError
from nirdeploy.graph.loading import save_nir, write_nir

from conftest import require_oracle
from safety_helpers import BRAILLE, leftovers, snapshot

pytest_plugins = ["pytester"]

MINE = b"five years of work\n"


def _mine(p):
    p.write_bytes(MINE)
    return p


# -- the core ---------------------------------------------------------------------------------------
def test_check_output_file_refuses_an_existing_file_unless_forced(tmp_path):
    p = _mine(tmp_path / "y.npy")
    with pytest.raises(OutputError, match=f"^{p} already exists; --force replaces it") as e:
        outputs.check_output_file(p)
    assert e.value.exit_code == 2
    assert outputs.check_output_file(p, force=True) == str(p)
    assert outputs.check_output_file(tmp_path / "new.npy") == str(tmp_path / "new.npy")  # a new path needs nothing
    with pytest.raises(OutputError, match="input"):
        outputs.check_output_file(p, inputs=[p], force=True)
    os.symlink(p, tmp_path / "l.npy")
    os.mkfifo(tmp_path / "f.npy")
    for bad, words in ((tmp_path / "l.npy", "symbolic link"), (tmp_path / "f.npy", "FIFO"), ("/dev/null", "device"), (tmp_path, "folder")):
        for force in (False, True):
            with pytest.raises(OutputError, match=words):
                outputs.check_output_file(bad, force=force)
    with pytest.raises(UsageError, match="force must be True or False"):
        outputs.check_output_file(tmp_path / "new.npy", force="yes")
    assert p.read_bytes() == MINE


@pytest.mark.parametrize("native", [True, False])
def test_a_file_that_appears_while_writing_is_kept_without_force(tmp_path, monkeypatch, native):
    """The check before the work passed (no file); the user creates one meanwhile: without force
    it stays and the write fails; with force it is replaced (it is a regular file)."""
    if not native:
        monkeypatch.setattr(outputs, "_renameat2", lambda: None)  # the link + unlink fallback
    p = tmp_path / "y.npy"
    with pytest.raises(OutputError, match="appeared while nirdeploy was writing; it was not replaced"):
        with outputs.atomic_file(p) as f:
            f.write(b"result")
            _mine(p)
    assert p.read_bytes() == MINE and leftovers(tmp_path) == []
    p.unlink()
    with outputs.atomic_file(p, force=True) as f:
        f.write(b"result")
        _mine(p)
    assert p.read_bytes() == b"result" and leftovers(tmp_path) == []


def test_atomic_files_writes_none_when_one_exists(tmp_path):
    a, b = tmp_path / "X.npy", _mine(tmp_path / "Y.npy")
    with pytest.raises(OutputError, match="Y.npy already exists"):
        with outputs.atomic_files([a, b]) as (fa, fb):
            fa.write(b"x")
            fb.write(b"y")
    assert not a.exists() and b.read_bytes() == MINE and leftovers(tmp_path) == []


# -- the API writers -------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [save_nir, write_nir], ids=["save_nir", "write_nir"])
def test_graph_writers_keep_an_existing_file_unless_forced(tmp_path, writer):
    g = nirdeploy.load_graph(BRAILLE)
    p = _mine(tmp_path / "g.nir")
    with pytest.raises(OutputError, match="g.nir already exists; --force replaces it"):
        writer(g, p)
    assert p.read_bytes() == MINE
    writer(g, p, force=True)
    assert len(nirdeploy.load_graph(p).nodes) == len(g.nodes)
    os.symlink(p, tmp_path / "l.nir")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="symbolic link"):
        writer(g, tmp_path / "l.nir", force=True)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_from_torch_path_keeps_an_existing_file_unless_forced(tmp_path):
    require_oracle("snntorch")
    import numpy as np
    import snntorch as snn
    import torch

    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), snn.Leaky(beta=0.9, **kw), torch.nn.Linear(8, 3),
                                snn.Leaky(beta=0.9, output=True, **kw))
    x = (np.random.default_rng(0).random((2, 10, 4)) < 0.5).astype(float)
    p = _mine(tmp_path / "g.nir")
    with pytest.raises(OutputError, match="g.nir already exists"):
        nirdeploy.from_torch(model, x, library="snntorch", path=p)
    assert p.read_bytes() == MINE
    g = nirdeploy.from_torch(model, x, library="snntorch", path=p, force=True)
    assert len(nirdeploy.load_graph(p).nodes) == len(g.nodes)
    assert leftovers(tmp_path) == []


# -- every command with a file output has --force ---------------------------------------------------
#: command -> its file-output options (compile -o and finetune -o are folders: check_output_folder)
FILE_OUTPUTS = {"simulate": {"out"}, "export": {"out"}, "nmnist": {"out", "labels_out"}, "finetune": {"graph_out"}}
FOLDER_OUTPUTS = {"compile": {"out"}, "finetune": {"out"}}


def test_every_output_option_is_classified_and_has_force():
    """A new command or option that writes a path must be added here, and get --force."""
    for name, cmd in main.commands.items():
        outs = {p.name for p in cmd.params if p.name == "out" or p.name.endswith("_out")}
        assert outs == FILE_OUTPUTS.get(name, set()) | FOLDER_OUTPUTS.get(name, set()), (name, outs)
        if outs:
            force = [p for p in cmd.params if p.name == "force"]
            assert force and force[0].is_flag, f"{name} writes {sorted(outs)} but has no --force"


def test_simulate_refuses_an_existing_file_and_replaces_it_with_force(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).poisson(0.2, size=(1, 20, 12))
    np.save(tmp_path / "x.npy", x)
    y = _mine(tmp_path / "y_user.npy")
    args = ["simulate", str(BRAILLE), "--reference", "--dt", "1e-4", "--input", str(tmp_path / "x.npy"), "-o", str(y)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and f"{y} already exists; --force replaces it" in r.output, r.output
    assert y.read_bytes() == MINE
    r = CliRunner().invoke(main, args + ["--force"])
    assert r.exit_code == 0, r.output
    assert np.load(y).shape[:2] == (1, 20)


# -- the CI plugin's report folder -------------------------------------------------------------------
REPORT_TEST = f"""
from nirdeploy.ci import nirdeploy_check

def test_a():
    nirdeploy_check({str(BRAILLE)!r}, "xylo:audio2", dt=1e-4, reset="subtract")
"""


def test_report_folder_refreshes_only_its_own_files(pytester):
    pytester.makepyfile(test_user=REPORT_TEST)
    rep = pytester.path / "rep"
    assert pytester.runpytest("--nirdeploy-report", "rep").ret == 0
    (folder,) = [p for p in rep.iterdir() if p.is_dir()]
    first = json.loads((folder / "report.json").read_text())
    assert first["nirdeploy_ci"] == 1
    # a second run refreshes what the plugin wrote
    (rep / "summary.json").write_text((rep / "summary.json").read_text().replace('"passed": 1', '"passed": 7'))
    assert pytester.runpytest("--nirdeploy-report", "rep").ret == 0
    assert json.loads((rep / "summary.json").read_text())["counts"]["passed"] == 1
    # a user's files at the same names are left as they are, with a warning naming them
    for p in (rep / "summary.json", rep / "summary.md", folder / "report.json"):
        _mine(p)
    r = pytester.runpytest("--nirdeploy-report", "rep", "-W", "default")
    assert r.ret == 0
    out = r.stdout.str()
    assert "could not write" in out and "not a report nirdeploy wrote" in out, out
    for p in (rep / "summary.json", rep / "summary.md", folder / "report.json"):
        assert p.read_bytes() == MINE, p
    assert leftovers(rep) == []


def test_force_refuses_a_read_only_file_and_keeps_a_replaced_files_permissions(tmp_path):
    """A rename replaces a file whatever its mode (for any user who may write the folder), so
    --force used to replace a read-only file and leave it 0644: the owner's read-only mark was
    lost, and a private (0600) file became world-readable. A read-only file is refused (exit 2,
    left as it was); a replaced file keeps its permission bits."""
    ro = _mine(tmp_path / "ro.md")
    os.chmod(ro, 0o444)
    with pytest.raises(OutputError, match=r"refusing to replace .*ro.md: it is read-only \(mode 444\)") as e:
        outputs.check_output_file(ro, force=True)
    assert e.value.exit_code == 2
    with pytest.raises(OutputError, match="read-only"):
        with outputs.atomic_file(ro, force=True) as f:
            f.write(b"new")
    assert ro.read_bytes() == MINE and (ro.stat().st_mode & 0o777) == 0o444
    private = _mine(tmp_path / "private.npy")
    os.chmod(private, 0o600)
    with outputs.atomic_file(private, force=True) as f:
        f.write(b"new")
    assert private.read_bytes() == b"new" and (private.stat().st_mode & 0o777) == 0o600


def test_an_existing_file_named_as_an_output_folder_is_called_a_file(tmp_path):
    """`study digits -o FILE` said the regular file FILE 'is not a regular file, not a folder'."""
    p = _mine(tmp_path / "R.md")
    with pytest.raises(OutputError, match=r"refusing to replace .*R.md: it exists and is a file, not a folder"):
        outputs.check_output_folder(p)
    assert p.read_bytes() == MINE
