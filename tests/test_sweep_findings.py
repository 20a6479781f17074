"""Faults found by sweeping the commands that came after issue 6 (export, nmnist, compare, check
--format/--budget, -T, the pytest plugin) that are not one-row table cases: outputs written as a
set, arguments checked before the work, escaping in CI logs and test reports, and the shared
writer's folder creation. The table cases are in tests/adversarial_commands.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy import outputs
from nirdeploy.cli import main
from nirdeploy.errors import NirDeployError, OutputError, UsageError

from adversarial_commands import nmnist_dataset
from conftest import require_oracle
from graphs import unsupported_if_graph, write
from safety_helpers import leftovers, snapshot

pytest_plugins = ["pytester"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- several files of one command: both or neither ------------------------------------------------------
def test_nmnist_writes_both_outputs_or_neither(tmp_path, monkeypatch):
    """The labels' write fails (a full disk, say) after X.npy's was complete: X.npy must not be
    left on its own (it was, before: a half-written output)."""
    require_oracle("tonic")
    nmnist_dataset(tmp_path / "data")
    real = np.save
    calls = []

    def failing_second(f, a, *k, **kw):
        calls.append(a.shape)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(f, a, *k, **kw)

    monkeypatch.setattr(np, "save", failing_second)
    before = snapshot(tmp_path)
    r = run("nmnist", tmp_path / "data", "--steps", "5", "-o", tmp_path / "X.npy", "--labels-out", tmp_path / "Y.npy")
    assert r.exit_code == 2 and "no space left" in r.output.lower(), r.output
    assert len(calls) == 2
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_atomic_files_places_all_or_none(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    b.write_text("old")
    with pytest.raises(OutputError, match=f"{b} already exists; --force replaces it"):  # an existing file: only when asked
        with outputs.atomic_files([a, b]):
            pass
    assert not a.exists() and b.read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with outputs.atomic_files([a, b], force=True) as (fa, fb):
            fa.write(b"new a")
            fb.write(b"new b")
            raise RuntimeError("the second result could not be computed")
    assert not a.exists() and b.read_text() == "old" and leftovers(tmp_path) == []
    with outputs.atomic_files([a, b], force=True) as (fa, fb):
        fa.write(b"new a")
        fb.write(b"new b")
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b" and leftovers(tmp_path) == []


@pytest.mark.parametrize("how", ["same_name", "dot_path", "linked_folder", "hard_link"])
def test_atomic_files_refuses_one_file_named_twice(tmp_path, how):
    (tmp_path / "d").mkdir()
    a = tmp_path / "d" / "a.npy"
    b = {"same_name": a, "dot_path": tmp_path / "d" / "." / "a.npy", "linked_folder": tmp_path / "e" / "a.npy",
         "hard_link": tmp_path / "d" / "b.npy"}[how]
    if how == "linked_folder":
        os.symlink(tmp_path / "d", tmp_path / "e")
    if how == "hard_link":
        a.write_text("x")
        os.link(a, b)
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="name the same file"):
        with outputs.atomic_files([a, b], force=True):
            pass
    assert snapshot(tmp_path) == before


def test_atomic_file_creates_missing_folders_and_removes_them_on_failure(tmp_path):
    p = tmp_path / "x" / "y" / "r.json"
    with pytest.raises(RuntimeError):
        with outputs.atomic_file(p, parents=True) as f:
            f.write(b"{}")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with outputs.atomic_file(p, parents=True) as f:
        f.write(b"{}")
    assert p.read_bytes() == b"{}" and leftovers(tmp_path) == []
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match="is not a folder"):
        with outputs.atomic_file(tmp_path / "file" / "sub" / "r.json", parents=True):
            pass
    assert (tmp_path / "file").read_text() == "mine"


# -- arguments are checked before the work -------------------------------------------------------------
def test_from_torch_checks_its_output_path_before_exporting(tmp_path, monkeypatch):
    require_oracle("snntorch")
    import nirdeploy.frontends.snntorch as S

    monkeypatch.setattr(S, "export", lambda *a, **k: pytest.fail("the export ran although the output cannot be written"))
    with pytest.raises(OutputError, match="does not exist"):
        nirdeploy.from_torch(object(), np.zeros((1, 2, 4)), library="snntorch", path=tmp_path / "nodir" / "g.nir")


def test_nmnist_refuses_an_output_inside_the_recordings_whatever_the_layout(tmp_path):
    """ROOT/<digit>/*.bin (no NMNIST/Test folder): the recordings were not protected, so
    ``-o ROOT/3/00001.bin --force`` replaced a recording with X.npy."""
    split = nmnist_dataset(tmp_path / "data", layout="flat")
    rec = split / "3" / "00001.bin"
    before = rec.read_bytes()
    r = run("nmnist", tmp_path / "data", "--steps", "5", "-o", rec, "--force")
    assert r.exit_code == 2 and "a folder this command reads" in r.output, r.output
    assert rec.read_bytes() == before


# -- escaping in CI logs and test reports --------------------------------------------------------------
@pytest.fixture
def bidi_graph(tmp_path) -> tuple[Path, str]:
    """An unsupported IF node whose name holds an ANSI escape and a right-to-left override."""
    name = "if\u202eexe.txt\x1b[2J"
    g = unsupported_if_graph(name)
    return write(g, tmp_path / "odd.nir"), name


def test_github_annotations_escape_bidirectional_overrides(bidi_graph):
    """The annotations themselves (API and CLI), not only the CLI's terminal output: a
    right-to-left override in a node name would reorder the text in GitHub's log view."""
    from nirdeploy.ci import formats

    path, name = bidi_graph
    rep = nirdeploy.check(path, "xylo:audio2", dt=1e-4)
    for text in (formats.github_annotations(str(path), [formats.CheckOutcome(rep)]),
                 run("check", path, "-t", "xylo:audio2", "--dt", "1e-4", "--format", "github").output):
        assert "\u202e" not in text and "\x1b" not in text
        assert "if\\u202eexe.txt\\x1b[2J" in text


def test_assertion_messages_are_terminal_safe(bidi_graph):
    """pytest prints an assertion's message as it is: node names must not drive the terminal."""
    from nirdeploy.ci import NirdeployAssertionError, assert_fits

    path, name = bidi_graph
    with pytest.raises(NirdeployAssertionError) as e:
        assert_fits(path, "xylo:audio2", dt=1e-4)
    assert "\x1b" not in str(e.value) and "\u202e" not in str(e.value) and "\\x1b[2J" in str(e.value)


# -- the pytest plugin's report writer -----------------------------------------------------------------
REPORT_TEST = f"""
from nirdeploy.ci import nirdeploy_check
BRAILLE = {str(Path(__file__).resolve().parents[1] / "examples" / "nir-corpus" / "braille_noDelay_noBias_subtract.nir")!r}

def test_a():
    nirdeploy_check(BRAILLE, "xylo:audio2", dt=1e-4, reset="subtract")
"""


def test_report_writer_leaves_nothing_when_a_report_cannot_be_written(pytester):
    """The test's report path is a folder: a warning names it, the summary is still written, and
    no temporary or empty folder is left behind."""
    pytester.makepyfile(test_user=REPORT_TEST)
    r = pytester.runpytest("--nirdeploy-report", "rep")
    assert r.ret == 0
    rep = pytester.path / "rep"
    (folder,) = [p for p in rep.iterdir() if p.is_dir()]
    (folder / "report.json").unlink()
    (folder / "report.json").mkdir()
    (folder / "report.json" / "mine.txt").write_text("mine")
    r = pytester.runpytest("--nirdeploy-report", "rep", "-W", "default")
    assert r.ret == 0
    assert "could not write" in r.stdout.str() and "it is a folder" in r.stdout.str()
    assert (folder / "report.json" / "mine.txt").read_text() == "mine"
    assert json.loads((rep / "summary.json").read_text())["counts"]["passed"] == 1
    assert leftovers(rep) == []


def test_report_folder_must_be_a_path(pytester):
    pytester.makepyfile(test_user="def test_x():\n    pass\n")
    r = pytester.runpytest("--nirdeploy-report", "")
    assert r.ret == pytest.ExitCode.USAGE_ERROR and "non-empty path" in r.stderr.str()
    assert sorted(p.name for p in pytester.path.iterdir()) == ["test_user.py"]


# -- shared validators ---------------------------------------------------------------------------------
@pytest.mark.parametrize("items, expect", [
    (["a=1", "b=-2", "c=x", "d=\u00b2"], {"a": 1, "b": -2, "c": "x", "d": "\u00b2"}),
    ([" key = value "], {"key": "value"}),
])
def test_key_values(items, expect):
    from nirdeploy.inputs import parse_key_values

    assert parse_key_values(items) == expect


@pytest.mark.parametrize("items, msg", [(["a"], "KEY=VALUE"), (["=1"], "KEY=VALUE"), (["a=1", "a=1"], "given twice")])
def test_key_values_refused(items, msg):
    from nirdeploy.inputs import parse_key_values

    with pytest.raises(UsageError, match=msg):
        parse_key_values(items)


def test_the_errors_are_nirdeploy_errors():
    from nirdeploy.ci import BudgetError

    assert issubclass(BudgetError, NirDeployError) and BudgetError("x").exit_code == 2
