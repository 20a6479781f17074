"""Every malformed or hostile input of tests/bad_inputs.py through the CLI: exit code 2, a short
message naming the problem, no traceback, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nirdeploy.cli import main

from bad_inputs import CASES


@pytest.fixture(autouse=True)
def _short_budget_for_the_hang(request, monkeypatch):
    """The hang case never finishes, so any budget stops it: 0.5 s of the reader's processor
    time keeps it quick; the other cases read with the real budget (processor time: load on the
    machine cannot fail them)."""
    import nirdeploy.graph.loading

    if request.node.callspec.params.get("case_id") == "hdf5_library_hang":
        monkeypatch.setattr(nirdeploy.graph.loading, "READ_TIMEOUT_BASE_S", 0.5)


@pytest.mark.parametrize("case_id,builder,expected", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["inspect", "compile"])
def test_cli_rejects_bad_input(tmp_path, case_id, builder, expected, command):
    src = tmp_path / "in"
    src.mkdir()
    path = builder(src)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = tmp_path / "out"
    if command == "inspect":
        args = ["inspect", str(path)]
    else:
        args = ["compile", str(path), "--target", "xylo:audio2", "--dt", "1e-4", "-o", str(out)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert "error" in r.output.lower(), r.output
    assert expected.lower() in r.output.lower(), r.output
    assert len(r.output) < 4000
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
