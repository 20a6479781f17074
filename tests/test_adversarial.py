"""The adversarial tables of tests/adversarial.py through the CLI and the API: no data loss, no
hang, no exit 3, no traceback, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nirdeploy.cli import main
from nirdeploy.errors import NirDeployError

import adversarial_commands as commands
from adversarial import API_CASES as CORE_API_CASES, CLI_CASES as CORE_CLI_CASES, KINDS as CORE_KINDS, Ctx
from conftest import require_oracle
from safety_helpers import compile_braille, compile_speck, leftovers, snapshot

CLI_CASES = CORE_CLI_CASES + commands.CLI_CASES
API_CASES = CORE_API_CASES + commands.API_CASES
KINDS = {**CORE_KINDS, **commands.KINDS}


def _needs(kind_or_id: str) -> None:
    """Skip (or, with NIRDEPLOY_REQUIRE_ORACLES=1, fail) a case whose optional package is missing."""
    for key, module in {**commands.NEEDS, **commands.API_NEEDS}.items():
        if kind_or_id == key or kind_or_id.startswith(key + "_"):
            require_oracle(module)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    return compile_braille(tmp_path_factory.mktemp("compiled"))


@pytest.fixture(scope="module")
def speck_compiled(tmp_path_factory) -> Path:
    return compile_speck(tmp_path_factory.mktemp("speck"))


def test_the_tables_are_big_and_unique():
    ids = [c.id for c in CLI_CASES] + [c[0] for c in API_CASES]
    assert len(ids) == len(set(ids)) or len({(c.kind, c.id) for c in CLI_CASES}) == len(CLI_CASES)
    assert sum(KINDS.values()) >= 150, KINDS
    assert sum(commands.KINDS.values()) >= 100, commands.KINDS


@pytest.mark.parametrize("case", CLI_CASES, ids=[f"{c.kind.replace(' ', '_')}-{c.id}" for c in CLI_CASES])
def test_cli_case(case, tmp_path, compiled, speck_compiled, monkeypatch):
    _needs(case.kind)
    ctx = Ctx(tmp_path, compiled, monkeypatch.chdir, speck_compiled)
    try:
        args = [str(a) for a in case.setup(ctx)]
        before = snapshot(tmp_path)
        r = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        for s in ctx.keep_open:
            s.close()
    out = r.output
    assert r.exit_code == case.code, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert case.expect.lower() in out.lower(), out
    assert len(out) < 20_000
    assert leftovers(tmp_path) == [], leftovers(tmp_path)
    if case.code == 2:
        assert snapshot(tmp_path) == before, "a refused command changed the folder"
    if case.after is not None:
        case.after(ctx)


@pytest.mark.parametrize("cid,call", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_case(cid, call, tmp_path, compiled, speck_compiled, monkeypatch):
    _needs(cid)
    ctx = Ctx(tmp_path, compiled, monkeypatch.chdir, speck_compiled)
    with pytest.raises(NirDeployError) as e:
        call(ctx)
    assert e.value.exit_code == 2, e.value
    assert leftovers(tmp_path) == []
    if (tmp_path / "mydata").exists():
        assert (tmp_path / "mydata" / "thesis.tex").read_text() == "five years of work"


def test_the_documented_errors_are_listed_in_every_public_docstring():
    import nirdeploy

    from nirdeploy.ci import assert_chip_accuracy, assert_chip_agrees, assert_fits, load_budget
    from nirdeploy.data import load_nmnist

    for name in ("load_graph", "inspect", "check", "check_all", "compile", "load_deployment", "simulate_reference", "compare_outputs",
                 "compare", "from_torch", "to_torch"):
        doc = getattr(nirdeploy, name).__doc__
        assert "Raises" in doc and "UsageError" in doc, name
    for fn in (load_nmnist, load_budget, assert_fits, assert_chip_agrees, assert_chip_accuracy):
        assert "UsageError" in (fn.__doc__ or "") + (__import__("sys").modules[fn.__module__].__doc__ or ""), fn
    for meth in (nirdeploy.Deployment.simulate, nirdeploy.Deployment.save):
        assert "Raises" in meth.__doc__, meth
