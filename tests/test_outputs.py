"""nirdeploy.outputs and the compiled-folder contract: no-replace moves (raced), the ownership
rule, umask permissions, write failures, the signal guard, and load_deployment's checks."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy import outputs
from nirdeploy.backend.compiled import FORMAT_VERSION, owned_entries, read_marker
from nirdeploy.backend.target import _clear_caches, register_target
from nirdeploy.cli import main
from nirdeploy.errors import DeploymentFolderError, OutputError

from graphs import ff_graph, write
from safety_helpers import BRAILLE, COMPILE, leftovers, snapshot
from toy_target import ToyTarget

NATIVE = [True, False]  # renameat2(RENAME_NOREPLACE), and the mkdir/link fallback


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def small_graph(tmp_path) -> Path:
    return write(ff_graph(4, 8, 3, seed=0), tmp_path / "g.nir")


# -- rename_noreplace ---------------------------------------------------------------------------------
@pytest.mark.parametrize("native", NATIVE, ids=["renameat2", "fallback"])
def test_rename_noreplace_never_replaces(tmp_path, native):
    if native:
        assert outputs._renameat2() is not None, "renameat2 should exist on this Linux"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("new")
    for existing in ("empty_dir", "full_dir", "file", "link"):
        dst = tmp_path / existing
        if existing == "empty_dir":
            dst.mkdir()
        elif existing == "full_dir":
            dst.mkdir()
            (dst / "mine").write_text("mine")
        elif existing == "file":
            dst.write_text("mine")
        else:
            os.symlink(tmp_path / "nowhere", dst)
        before = snapshot(tmp_path)
        with pytest.raises(FileExistsError):
            outputs.rename_noreplace(src, dst, native=native)
        assert snapshot(tmp_path) == before
    outputs.rename_noreplace(src, tmp_path / "moved", native=native)
    assert (tmp_path / "moved" / "a").read_text() == "new" and not src.exists()
    f = tmp_path / "f.tmp"
    f.write_text("x")
    with pytest.raises(FileExistsError):
        outputs.rename_noreplace(f, tmp_path / "file", native=native)
    outputs.rename_noreplace(f, tmp_path / "g", native=native)
    assert (tmp_path / "g").read_text() == "x" and not f.exists()


# -- races --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("native", NATIVE, ids=["renameat2", "fallback"])
@pytest.mark.parametrize("kind", ["folder", "file"])
def test_something_appearing_just_before_the_move_is_not_replaced(tmp_path, monkeypatch, native, kind, small_graph):
    """The worst moment: after the last check, right before the final move."""
    real = outputs.rename_noreplace
    target = tmp_path / ("out" if kind == "folder" else "y.npy")

    def racing(src, dst, **kw):
        if Path(dst) == target:
            if kind == "folder":
                target.mkdir()
                (target / "theirs.txt").write_text("theirs")
            else:
                target.write_text("theirs")
        return real(src, dst, native=native)

    monkeypatch.setattr(outputs, "rename_noreplace", racing)
    if kind == "folder":
        r = run("compile", small_graph, "--target", "xylo:audio2", "--dt", "1e-4", "-o", target)
        assert (target / "theirs.txt").read_text() == "theirs" and len(list(target.iterdir())) == 1
    else:
        dep = nirdeploy.compile(small_graph, target="xylo:audio2", dt=1e-4)
        dep_dir = tmp_path / "dep"
        monkeypatch.setattr(outputs, "rename_noreplace", real)
        dep.save(dep_dir)
        monkeypatch.setattr(outputs, "rename_noreplace", racing)
        np.save(tmp_path / "x.npy", np.zeros((1, 5, 4), dtype=np.int64))
        r = run("simulate", dep_dir, "--input", tmp_path / "x.npy", "-o", target)
        assert target.read_text() == "theirs"
    assert r.exit_code == 2 and "appeared while nirdeploy was writing" in r.output, r.output
    assert leftovers(tmp_path) == []


# where the other program strikes: (owner, attribute, strike after the call instead of before)
def _strike_points():
    from nirdeploy_targets.xylo.target import XyloTarget

    return {
        "lowering": (XyloTarget, "compile", False),
        "writing the temporary folder": (np, "savez", True),
        "right before the move": (outputs, "rename_noreplace", False),
        "right after the move": (outputs, "rename_noreplace", True),
    }


@pytest.mark.parametrize("point", ["lowering", "writing the temporary folder", "right before the move", "right after the move"])
def test_a_racing_program_never_loses_its_folder(tmp_path, small_graph, monkeypatch, point):
    """Another program (a thread) creates OUT with a file of its own while compile runs, at each
    point of the compile in turn; the compile waits there until the thread is done, so every
    interleaving is exercised whatever the load on the machine. Either compile wins (the
    thread's mkdir fails) or the thread's folder survives untouched and compile exits 2."""
    out = tmp_path / "out"
    owner, name, after = _strike_points()[point]
    orig = getattr(owner, name)
    struck = []

    def other():
        try:
            out.mkdir()
        except FileExistsError:
            struck.append(False)
            return
        (out / "theirs.txt").write_text("theirs")
        struck.append(True)

    def strike(args):
        if struck or (name == "rename_noreplace" and Path(args[1]) != out):
            return
        t = threading.Thread(target=other)
        t.start()
        t.join()

    def wrapped(*a, **k):
        if not after:
            strike(a)
        r = orig(*a, **k)
        if after:
            strike(a)
        return r

    monkeypatch.setattr(owner, name, wrapped)
    r = CliRunner().invoke(main, ["compile", str(small_graph), "--target", "xylo:audio2", "--dt", "1e-4", "-o", str(out)])
    assert struck, "the other program never ran"
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    if struck == [True]:  # the other program made OUT first
        assert point != "right after the move"
        assert (out / "theirs.txt").read_text() == "theirs" and len(list(out.iterdir())) == 1, r.output
        assert r.exit_code == 2 and ("appeared while nirdeploy was writing" in r.output or "already exists" in r.output), r.output
    else:
        assert point == "right after the move"
        assert r.exit_code == 0, r.output
        assert read_marker(out).target == "xylo"
    assert leftovers(tmp_path) == []


# -- ownership ----------------------------------------------------------------------------------------
def test_force_replaces_an_own_deployment_file_by_file(tmp_path, small_graph):
    out = tmp_path / "out"
    assert run("compile", small_graph, "--target", "xylo:audio2", "--dt", "1e-4", "-o", out).exit_code == 0
    first = snapshot(out)
    assert sorted(owned_entries(out)) == sorted(first)
    r = run("compile", small_graph, "--target", "xylo:audio2", "--dt", "2e-4", "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["settings"]["dt"] == 2e-4
    assert leftovers(tmp_path) == []


def test_removing_the_old_deployment_leaves_what_is_not_listed(tmp_path):
    aside = tmp_path / "aside"
    aside.mkdir()
    (aside / "report.json").write_text("{}")
    (aside / "late.txt").write_text("appeared after the check")
    af = outputs.atomic_folder(tmp_path / "x")
    af._aside_entries = ["report.json"]
    af._remove_aside(str(aside))
    assert sorted(p.name for p in aside.iterdir()) == ["late.txt"]


def test_marker_schema_and_version(tmp_path, small_graph):
    out = tmp_path / "out"
    nirdeploy.compile(small_graph, target="xylo:audio2", dt=1e-4, out=out)
    m = read_marker(out)
    assert (m.format_version, m.target, m.variant, m.input_shape, m.output_shape) == (FORMAT_VERSION, "xylo", "audio2", (4,), (3,))
    assert set(m.files) == {p.name for p in out.iterdir()} - {"deployment.json"}


# -- permissions and write failures -------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path, small_graph, umask):
    old = os.umask(umask)
    try:
        nirdeploy.compile(small_graph, target="xylo:audio2", dt=1e-4, out=tmp_path / "p" / "out")
        np.save(tmp_path / "x.npy", np.zeros((1, 5, 4), dtype=np.int64))
        r = run("simulate", tmp_path / "p" / "out", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    for d in (tmp_path / "p", tmp_path / "p" / "out"):
        assert d.stat().st_mode & 0o777 == 0o777 & ~umask, oct(d.stat().st_mode)
    for f in list((tmp_path / "p" / "out").iterdir()) + [tmp_path / "y.npy"]:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, (f, oct(f.stat().st_mode))


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_write_failures_say_why_and_leave_nothing(tmp_path, monkeypatch, small_graph, err):
    import nirdeploy.backend.folder as F

    def failing(path, arrays):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(F, "write_npz", failing)
    r = run("compile", small_graph, "--target", "xylo:audio2", "--dt", "1e-4", "-o", tmp_path / "p" / "out")
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.output and "nothing was written" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]  # not even the missing parent


# -- the signal guard ---------------------------------------------------------------------------------
def test_signal_guard_restores_handlers_and_leaves_a_programs_own_alone():
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    mine = lambda s, f: None  # noqa: E731
    old = signal.signal(signal.SIGHUP, mine)
    try:
        with outputs.signal_guard():
            assert signal.getsignal(signal.SIGTERM) is outputs._handler
            assert signal.getsignal(signal.SIGHUP) is mine
            with outputs.signal_guard():
                pass
            assert signal.getsignal(signal.SIGTERM) is outputs._handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGHUP, old)


def test_signal_guard_cleans_registered_temporaries_on_any_error(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    with pytest.raises(RuntimeError):
        with outputs.signal_guard():
            outputs._register(str(d), "dir")
            raise RuntimeError("boom")
    assert not d.exists()


# -- load_deployment: the contract around a target's load --------------------------------------------
@pytest.fixture
def toy():
    register_target("toy", ToyTarget)
    yield
    from nirdeploy.backend import target as t

    t._EXTRA.pop("toy", None)
    _clear_caches()


def test_a_target_whose_load_breaks_is_a_folder_error(toy, tmp_path, monkeypatch):
    g = ff_graph(4, 8, 3, seed=1)
    out = tmp_path / "dep"
    nirdeploy.compile(g, target="toy:small", dt=1e-4, out=out)
    # a schema violation is named by the target's reader ...
    (out / "toy.json").write_text('{"variant": "small"}')
    with pytest.raises(DeploymentFolderError, match="toy.json.*'options'.*missing"):
        nirdeploy.load_deployment(out)

    # ... and a target that forgets a check and crashes still gives a folder error, not a traceback
    def sloppy(self, folder):
        return json.loads((Path(folder) / "toy.json").read_text())["options"]

    monkeypatch.setattr(ToyTarget, "load", sloppy)
    with pytest.raises(DeploymentFolderError, match="toy target could not load its files: KeyError"):
        nirdeploy.load_deployment(out)


def test_an_artifact_that_disagrees_with_the_marker_is_refused(toy, tmp_path):
    g = ff_graph(4, 8, 3, seed=1)
    out = tmp_path / "dep"
    nirdeploy.compile(g, target="toy:small", dt=1e-4, out=out)
    meta = json.loads((out / "toy.json").read_text())
    (out / "toy.json").write_text(json.dumps({**meta, "variant": "big"}))
    with pytest.raises(DeploymentFolderError, match="variant.*small.*big"):
        nirdeploy.load_deployment(out)


def test_an_export_that_hides_a_file_is_a_target_error(toy, tmp_path, monkeypatch):
    from nirdeploy.errors import TargetError

    orig = ToyTarget.export

    def sneaky(self, artifact, folder):
        (Path(folder) / "hidden.bin").write_bytes(b"x")
        return orig(self, artifact, folder)

    monkeypatch.setattr(ToyTarget, "export", sneaky)
    dep = nirdeploy.compile(ff_graph(4, 8, 3, seed=1), target="toy:small", dt=1e-4)
    with pytest.raises(TargetError, match="hidden.bin"):
        dep.save(tmp_path / "dep")
    assert list(tmp_path.iterdir()) == []


def test_the_graph_copy_is_refused_as_an_output_of_a_deployment(tmp_path, small_graph):
    out = tmp_path / "out"
    nirdeploy.compile(small_graph, target="xylo:audio2", dt=1e-4, out=out)
    with pytest.raises(OutputError, match="holds the input"):
        nirdeploy.compile(out / "graph.nir", target="xylo:audio2", dt=1e-4, out=out, force=True)
    assert read_marker(out).target == "xylo"


def test_cli_force_on_braille_end_to_end(tmp_path):
    out = tmp_path / "o"
    assert run("compile", BRAILLE, *COMPILE, "-o", out).exit_code == 0
    before = snapshot(out)
    r = run("compile", BRAILLE, *COMPILE, "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert set(snapshot(out)) == set(before)
    shutil.rmtree(out)
