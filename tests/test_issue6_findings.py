"""One test per numbered finding of issue 6 (each failed on the main branch before the fix).

They use only the public CLI (in a subprocess or CliRunner) and API, so they run unchanged
against an older nirdeploy. The whole class each finding belongs to is covered by the tables
of tests/adversarial.py, the signal matrix (test_signals.py) and the property-based test.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path

import nir
import numpy as np
import pytest
from click.testing import CliRunner

import nirdeploy
from nirdeploy.cli import main
from nirdeploy.errors import NirDeployError

from bad_inputs import BASE_EDGES, base_nodes, graph, write_file
from graphs import write
from safety_helpers import BRAILLE, COMPILE, compile_braille, Runner, alive, children, cli, events, kill_quietly, leftovers, snapshot


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """One compiled Braille folder (Xylo Audio 2); tests copy it before changing anything."""
    return compile_braille(tmp_path_factory.mktemp("compiled"))


def _copy(compiled: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "dep"
    shutil.copytree(compiled, dst)
    return dst


def _clean_exit_2(r) -> None:
    out = r.output if hasattr(r, "output") else r.stdout + r.stderr
    code = r.exit_code if hasattr(r, "exit_code") else r.returncode
    assert code == 2, out
    assert "Traceback" not in out and "internal error" not in out, out


# 1 ------------------------------------------------------------------------------------------------
def test_f01_force_never_deletes_a_users_folder(tmp_path):
    data = tmp_path / "mydata"
    data.mkdir()
    (data / "thesis.tex").write_text("five years of work")
    shutil.copy(BRAILLE, data / "G.nir")
    before = snapshot(tmp_path)
    r = run("compile", data / "G.nir", *COMPILE, "-o", data, "--force")
    _clean_exit_2(r)
    assert "mydata" in r.output
    # the input elsewhere, the folder holding only the user's file: still refused
    shutil.copy(BRAILLE, tmp_path / "G.nir")
    before = snapshot(tmp_path)
    r = run("compile", tmp_path / "G.nir", *COMPILE, "-o", data, "--force")
    _clean_exit_2(r)
    assert "not a folder written by nirdeploy" in r.output
    assert snapshot(tmp_path) == before


# 2 ------------------------------------------------------------------------------------------------
def test_f02_a_folder_that_appears_during_compile_is_not_replaced(tmp_path, monkeypatch):
    """Someone creates OUT while the compile runs (after the up-front check)."""
    from nirdeploy_targets.xylo.target import XyloTarget

    out = tmp_path / "out"
    orig = XyloTarget.export

    def export_and_race(self, artifact, folder):
        out.mkdir()
        (out / "theirs.txt").write_text("created by another program")
        return orig(self, artifact, folder)

    monkeypatch.setattr(XyloTarget, "export", export_and_race)
    r = run("compile", BRAILLE, *COMPILE, "-o", out)
    _clean_exit_2(r)
    assert (out / "theirs.txt").read_text() == "created by another program"
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert leftovers(tmp_path) == []


# 3 ------------------------------------------------------------------------------------------------
def test_f03_simulate_never_replaces_a_link_or_a_fifo(tmp_path, compiled):
    dep = _copy(compiled, tmp_path)
    np.save(tmp_path / "x.npy", events((1, 20, 12)))
    (tmp_path / "precious.npy").write_text("keep me")
    os.symlink(tmp_path / "precious.npy", tmp_path / "link.npy")
    os.symlink(tmp_path / "nowhere.npy", tmp_path / "dangling.npy")
    os.mkfifo(tmp_path / "fifo.npy")
    before = snapshot(tmp_path)
    for target in ("link.npy", "dangling.npy", "fifo.npy"):
        r = run("simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / target)
        _clean_exit_2(r)
    assert snapshot(tmp_path) == before


# 4 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point,command", [("export", "compile"), ("write", "simulate"), ("read", "inspect")])
def test_f04_sigterm_leaves_nothing_behind(tmp_path, compiled, point, command):
    dep = _copy(compiled, tmp_path)
    np.save(tmp_path / "x.npy", events((1, 20, 12)))
    args = {
        "compile": ["compile", BRAILLE, *COMPILE, "-o", tmp_path / "out"],
        "simulate": ["simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy"],
        "inspect": ["inspect", BRAILLE],
    }[command]
    before = snapshot(tmp_path)
    r = Runner(point, args, cwd=tmp_path)
    kids: list[int] = []
    try:
        assert r.wait_paused(), r.stderr
        time.sleep(0.2)
        kids = children(r.proc.pid)
        r.proc.send_signal(signal.SIGTERM)
        rc = r.finish()
        time.sleep(0.5)
        assert rc in (143, -signal.SIGTERM), (rc, r.stderr)
        assert snapshot(tmp_path) == before, leftovers(tmp_path)
        assert not [k for k in kids if alive(k)], "the reader child outlived the command"
    finally:
        kill_quietly(kids)
        if r.proc.poll() is None:
            r.proc.kill()


# 5 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("out", [".", ".."])
def test_f05_dot_and_dotdot_are_refused_and_leave_nothing(tmp_path, out, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    shutil.copy(BRAILLE, work / "G.nir")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    r = run("compile", "G.nir", *COMPILE, "-o", out, "--force")
    _clean_exit_2(r)
    assert "working directory" in r.output
    assert snapshot(tmp_path) == before


# 6 ------------------------------------------------------------------------------------------------
def _zip_bomb(path: Path, n_mb: int, member: str = "weights_in.npy") -> None:
    """A real zip bomb: one .npz member holding an .npy of ``n_mb`` MB of zeros, deflated to about
    a thousandth. Built from one precomputed deflate block (a full flush resets the compressor,
    so every 1 MB of zeros compresses to the same bytes) to stay fast."""
    import struct
    import zlib

    mb = 1 << 20
    hdr = {"descr": "|u1", "fortran_order": False, "shape": (n_mb * mb,)}
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, hdr)
    head = b.getvalue()
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(head) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(b"\0" * mb) + co.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    zeros = b"\0" * mb
    for _ in range(n_mb):
        crc = zlib.crc32(zeros, crc)
    last = co.compress(b"") + co.flush(zlib.Z_FINISH)
    csize = len(first) + n_mb * len(block) + len(last)
    usize = len(head) + n_mb * mb
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, csize, usize, len(name), 0) + name
    with open(path, "wb") as f:
        f.write(local)
        f.write(first)
        for _ in range(n_mb):
            f.write(block)
        f.write(last)
        cd_off = f.tell()
        cd = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, csize, usize, len(name), 0, 0, 0, 0, 0, 0) + name
        f.write(cd)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(cd), cd_off, 0))


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "zip_bomb"])
def test_f06_hostile_compiled_files_neither_block_nor_exhaust_memory(tmp_path, compiled, kind):
    dep = _copy(compiled, tmp_path)
    np.save(tmp_path / "x.npy", events((1, 20, 12)))
    if kind == "fifo":
        (dep / "xylo_meta.json").unlink()
        os.mkfifo(dep / "xylo_meta.json")
    elif kind == "dev_zero":
        (dep / "xylo_meta.json").unlink()
        os.symlink("/dev/zero", dep / "xylo_meta.json")
    else:
        _zip_bomb(dep / "xylo_config.npz", 1200)  # 1.2 GB from ~1 MB, as in the issue
        assert (dep / "xylo_config.npz").stat().st_size < 2_000_000
    # 3 GB of address space: a reader that decompresses or reads /dev/zero dies, it cannot take the
    # machine; a reader that blocks on the FIFO never returns (the subprocess timeout is the hang guard)
    r = cli("simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", timeout=120,
            rlimits={resource.RLIMIT_AS: 3 << 30})
    _clean_exit_2(r)
    assert "xylo_meta.json" in r.stderr or "xylo_config.npz" in r.stderr
    if kind == "zip_bomb":
        assert "decompress" in r.stderr
    assert not (tmp_path / "y.npy").exists()


# 7 ------------------------------------------------------------------------------------------------
def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    d = fn(d)
    path.write_text(json.dumps(d))


TAMPER = [
    ("meta_is_a_list", "xylo_meta.json", lambda d: [d], "xylo_meta.json"),
    ("meta_without_output_scale", "xylo_meta.json", lambda d: {k: v for k, v in d.items() if k != "output_scale"}, "output_scale"),
    ("meta_latency_x", "xylo_meta.json", lambda d: {**d, "latency_steps": "x"}, "latency_steps"),
    ("meta_latency_negative", "xylo_meta.json", lambda d: {**d, "latency_steps": -5}, "latency_steps"),
    ("meta_readout_unknown", "xylo_meta.json", lambda d: {**d, "readout": "telepathy"}, "readout"),
    ("meta_deeply_nested", "xylo_meta.json", lambda d: {**d, "extra": json.loads("[" * 5000 + "]" * 5000)}, "nested"),
    ("unknown_format_version", "deployment.json", lambda d: {**d, "nirdeploy_deployment": 99}, "format version 99"),
    ("folder_of_another_target", "deployment.json", lambda d: {**d, "target": "speck", "variant": "speck2e"}, "speck:speck2e"),
    ("folder_of_another_variant", "deployment.json", lambda d: {**d, "variant": "imu"}, "variant"),
]


@pytest.mark.parametrize("case,fname,edit,expected", TAMPER, ids=[t[0] for t in TAMPER])
def test_f07_tampered_compiled_folders_are_exit_2_naming_the_file_and_key(tmp_path, compiled, case, fname, edit, expected):
    dep = _copy(compiled, tmp_path)
    if case == "meta_deeply_nested":
        meta = json.loads((dep / fname).read_text())
        (dep / fname).write_text(json.dumps(meta)[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}")
    else:
        _edit_json(dep / fname, edit)
    np.save(tmp_path / "x.npy", events((1, 20, 12)))
    r = run("simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    _clean_exit_2(r)
    assert fname in r.output and expected in r.output, r.output
    assert not (tmp_path / "y.npy").exists()


# 8 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau,w", [(1e300, 1.0), (5e-324, 1.0), (1e-3, 1e308)], ids=["tau_1e300", "tau_denormal", "weight_1e308"])
def test_f08_inspect_json_stays_valid_on_extreme_floats(tmp_path, tau, w):
    n = 4
    weight = np.full((n, 3), w)
    weight[0, 0] = 1.7e308  # finite, but the mean of such values overflows
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Linear(weight=weight),
            "lif": nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)),
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=BASE_EDGES, type_check=False,
    )
    p = write(g, tmp_path / "g.nir")
    r = run("inspect", p, "--json", "--dt", "1e-4")
    assert r.exit_code == 0, r.output

    def strict(c):
        raise AssertionError(f"non-RFC JSON constant {c}")

    json.loads(r.output, parse_constant=strict)


# 9 ------------------------------------------------------------------------------------------------
def test_f09_a_delay_that_overflows_at_dt_is_a_validation_error(tmp_path):
    nodes = base_nodes()
    nodes["delay"] = {"type": "Delay", "delay": np.full(4, 1e15)}
    p = write_file(tmp_path / "g.nir", graph(nodes, [("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")]))
    np.save(tmp_path / "x.npy", events((1, 10, 3)))
    r = run("simulate", p, "--reference", "--dt", "1e-4", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    _clean_exit_2(r)
    assert "delay" in r.output and "steps" in r.output
    assert not (tmp_path / "y.npy").exists()


# 10 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 0, 12), (1, 1, 12), (0, 20, 12)], ids=["T0", "T_equals_latency", "batch0"])
def test_f10_compare_reference_checks_before_writing(tmp_path, compiled, shape):
    dep = _copy(compiled, tmp_path)
    assert json.loads((dep / "deployment.json").read_text())["latency_steps"] == 1
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.int64))
    r = run("simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--compare-reference")
    _clean_exit_2(r)
    assert not (tmp_path / "y.npy").exists()


# 11 -----------------------------------------------------------------------------------------------
CAL_BAD = {
    "string": np.array([[["a"] * 12]]),
    "structured": np.zeros((1, 2, 12), dtype=[("a", "i4"), ("b", "f4")]),
    "datetime": np.zeros((1, 2, 12), dtype="datetime64[s]"),
    "complex": np.ones((1, 2, 12), dtype=np.complex128),
}


@pytest.mark.parametrize("kind", sorted(CAL_BAD))
def test_f11_calibration_input_gets_the_same_validation(tmp_path, kind):
    np.save(tmp_path / "cal.npy", CAL_BAD[kind])
    r = run("compile", BRAILLE, *COMPILE, "--calibrate", tmp_path / "cal.npy", "-o", tmp_path / "out")
    _clean_exit_2(r)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("x", [np.ones((1, 5, 12), dtype=np.complex128), -np.ones((1, 5, 12))], ids=["complex", "negative"])
def test_f11_reference_refuses_complex_and_negative_input(tmp_path, x):
    np.save(tmp_path / "x.npy", x)
    r = run("simulate", BRAILLE, "--reference", "--dt", "1e-4", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    _clean_exit_2(r)
    assert not (tmp_path / "y.npy").exists()


# 12 -----------------------------------------------------------------------------------------------
def test_f12_full_file_system_is_exit_2_and_leaves_nothing(tmp_path, compiled):
    """A real write failure: a 20 kB file-size limit makes writes fail with EFBIG (as ENOSPC)."""
    dep = _copy(compiled, tmp_path)
    np.save(tmp_path / "x.npy", events((4, 2000, 12)))  # Y.npy: 4*2000*7*8 bytes > 20 kB
    before = snapshot(tmp_path)
    lim = {resource.RLIMIT_FSIZE: 20_000}
    for args in (["compile", BRAILLE, *COMPILE, "-o", tmp_path / "out"],
                 ["simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy"]):
        r = cli(*args, rlimits=lim)
        _clean_exit_2(r)
        assert "cannot write" in r.stderr and ("too large" in r.stderr or "cut short" in r.stderr), r.stderr
        assert snapshot(tmp_path) == before


def test_f12_read_only_file_system_is_exit_2(tmp_path, monkeypatch):
    import errno

    real_mkdir = os.mkdir

    def ro_mkdir(path, *a, **k):
        if str(tmp_path) in os.fspath(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    r = run("compile", BRAILLE, *COMPILE, "-o", tmp_path / "out")
    _clean_exit_2(r)
    assert "read-only" in r.output
    assert list(tmp_path.iterdir()) == []


# 13 -----------------------------------------------------------------------------------------------
def test_f13_the_read_budget_grows_with_the_node_count(tmp_path, monkeypatch):
    """A valid 1,200-node graph takes more than a second to read; with a base budget of 0.5 s it
    must still load, because every node read extends the budget (a fixed budget rejected valid
    10,000-node graphs as 'stuck'; this is the same fault, scaled down to keep the test short)."""
    import nirdeploy.graph.loading as L

    nodes = {"input": {"type": "Input", "shape": np.array([2])}}
    edges, prev = [], "input"
    for k in range(600):
        nodes[f"fc{k}"] = {"type": "Linear", "weight": np.eye(2) * 2.0}
        nodes[f"lif{k}"] = {"type": "LIF", "tau": np.full(2, 1e-3), "r": np.full(2, 10.0), "v_leak": np.zeros(2),
                            "v_threshold": np.ones(2), "v_reset": np.zeros(2)}
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        prev = f"lif{k}"
    nodes["output"] = {"type": "Output", "shape": np.array([2])}
    p = write_file(tmp_path / "big.nir", graph(nodes, edges + [(prev, "output")]))
    monkeypatch.setattr(L, "READ_TIMEOUT_BASE_S", 0.5)
    r = run("inspect", p, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["node_counts"]["LIF"] == 600


# 14 -----------------------------------------------------------------------------------------------
API_BAD = [
    ("dt_string", lambda: nirdeploy.simulate_reference(BRAILLE, events((1, 5, 12)), dt="abc")),
    ("dt_list", lambda: nirdeploy.simulate_reference(BRAILLE, events((1, 5, 12)), dt=[1e-4])),
    ("quantization_bogus", lambda: nirdeploy.check(BRAILLE, target="xylo:audio2", dt=1e-4, quantization="bogus")),
    ("ragged_input", lambda: nirdeploy.simulate_reference(BRAILLE, [[[0] * 12], [[0] * 11]], dt=1e-4)),
    ("compare_1d", lambda: nirdeploy.compare_outputs(np.zeros(5), np.zeros(5))),
    ("compare_latency_negative", lambda: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), -1)),
    ("compare_latency_above_T", lambda: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), 9)),
]


@pytest.mark.parametrize("case,call", API_BAD, ids=[c[0] for c in API_BAD])
def test_f14_api_arguments_raise_documented_errors(case, call):
    with pytest.raises(NirDeployError) as e:
        call()
    assert e.value.exit_code == 2


# 15 -----------------------------------------------------------------------------------------------
def test_f15_outputs_follow_the_umask(tmp_path, compiled):
    dep = _copy(compiled, tmp_path)
    np.save(tmp_path / "x.npy", events((1, 20, 12)))
    old = os.umask(0o022)
    try:
        assert run("compile", BRAILLE, *COMPILE, "-o", tmp_path / "out").exit_code == 0
        assert run("simulate", dep, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "report.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "y.npy").stat().st_mode & 0o777 == 0o644


def test_f15_node_names_are_escaped_in_terminal_messages(tmp_path):
    nodes = base_nodes()
    evil = "lif\x1b]0;pwned\x07\x1b[2J\r"
    nodes[evil] = nodes.pop("lif")
    nodes[evil]["tau"] = np.full(4, np.nan)
    edges = [("input", "fc"), ("fc", evil), (evil, "output")]
    p = write_file(tmp_path / "g.nir", graph(nodes, edges))
    r = run("inspect", p)
    _clean_exit_2(r)
    assert "\x1b" not in r.output and "\r" not in r.output and "\x07" not in r.output
    assert "\\x1b" in r.output
