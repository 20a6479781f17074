"""Adversarial cases of issue 6 as tables, by kind: what a hostile or unlucky user does to
outputs, compiled folders, input arrays and API arguments.

``CLI_CASES``: :class:`Case` (id, kind, setup, expected substring, exit code, and optionally
``after(ctx)``, asserting what a successful command wrote). ``setup(ctx)``
prepares files under ``ctx.tmp`` and returns the CLI arguments. The driver
(tests/test_adversarial.py) runs them and asserts: the exit code (2 unless a case says
otherwise), no traceback and no "internal error", the expected words in the message, nothing
under ``ctx.tmp`` changed (a refused command writes nothing, deletes nothing), no temporary left.

``API_CASES``: (id, call(ctx)) pairs; each call must raise a documented NirDeployError subclass
with exit code 2 (never a raw numpy or Python error).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from safety_helpers import BRAILLE, COMPILE, SPECK_INPUT

__all__ = ["Case", "Ctx", "CLI_CASES", "API_CASES", "KINDS"]


class Ctx:
    """What a case may use: a scratch folder, a compiled folder, an input array, chdir."""

    def __init__(self, tmp: Path, compiled: Path, chdir: Callable[[Path], None], speck: Path | None = None):
        self.tmp = tmp
        self._compiled = compiled
        self._speck = speck
        self.chdir = chdir
        self.keep_open: list = []  # sockets that must stay open while the command runs

    def dep(self, name: str = "dep") -> Path:
        d = self.tmp / name
        if not d.exists():
            shutil.copytree(self._compiled, d)
        return d

    def speck_dep(self, name: str = "speck") -> Path:
        """A copy of the compiled Speck folder (tests/safety_helpers.compile_speck)."""
        d = self.tmp / name
        if not d.exists():
            shutil.copytree(self._speck, d)
        return d

    def speck_x(self) -> Path:
        p = self.tmp / "xs.npy"
        np.save(p, (np.random.default_rng(0).random((2, 10) + SPECK_INPUT) < 0.3).astype(np.int64))
        return p

    def graph(self, where: Path | None = None) -> Path:
        where = where or self.tmp
        where.mkdir(parents=True, exist_ok=True)
        p = where / "G.nir"
        if not p.exists():
            shutil.copy(BRAILLE, p)
        return p

    def x(self, arr=None, name: str = "x.npy") -> Path:
        p = self.tmp / name
        np.save(p, np.random.default_rng(0).poisson(0.2, size=(2, 20, 12)) if arr is None else arr)
        return p


@dataclass
class Case:
    id: str
    kind: str
    setup: Callable[[Ctx], list]
    expect: str = ""
    code: int = 2
    after: Callable[[Ctx], None] | None = None


def compile_to(out_fn, *, force=False, graph_fn=None):
    def setup(ctx: Ctx):
        g = graph_fn(ctx) if graph_fn else ctx.graph()
        out = out_fn(ctx)
        return ["compile", g, *COMPILE, "-o", out] + (["--force"] if force else [])

    return setup


def simulate_to(out_fn, *, x_fn=None, extra=()):
    def setup(ctx: Ctx):
        x = x_fn(ctx) if x_fn else ctx.x()
        return ["simulate", ctx.dep(), "--input", x, "-o", out_fn(ctx), *extra]

    return setup


def _mk(path: Path, text="user data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _user_folder(ctx: Ctx) -> Path:
    d = ctx.tmp / "mydata"
    _mk(d / "thesis.tex", "five years of work")
    return d


def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _dep_with(fn):
    """A compiled-folder copy changed by ``fn(dep)``; returns the out path (a deployment)."""

    def out(ctx: Ctx) -> Path:
        d = ctx.dep("out")
        fn(d)
        return d

    return out


def _socket_at(ctx: Ctx, path: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    ctx.keep_open.append(s)
    return path


# -- output folders (compile -o, --force): the ownership rule ---------------------------------------
def _holding_input(ctx):
    d = ctx.tmp / "work"
    ctx.graph(d)
    return d


def _cwd(rel: str):
    def out(ctx):
        work = ctx.tmp / "a" / "b"
        work.mkdir(parents=True, exist_ok=True)
        ctx.graph(work)
        ctx.chdir(work)
        return rel

    return out


def _marker(files):
    return {"nirdeploy_deployment": 1, "files": files}


OUTPUT_FOLDER = [
    Case("user_folder_without_force", "output folder", compile_to(_user_folder), "already exists"),
    Case("user_folder_with_force", "output folder", compile_to(_user_folder, force=True), "not a folder written by nirdeploy"),
    Case("folder_holding_the_input", "output folder", compile_to(_holding_input, force=True, graph_fn=lambda c: c.tmp / "work" / "G.nir"), "holds the input"),
    Case("deployment_holding_the_input", "output folder",
         compile_to(lambda c: c.dep("out"), force=True, graph_fn=lambda c: c.dep("out") / "graph.nir"), "holds the input"),
    Case("dot_is_the_working_directory", "output folder", compile_to(_cwd("."), force=True, graph_fn=lambda c: "G.nir"), "working directory"),
    Case("dotdot_is_an_ancestor", "output folder", compile_to(_cwd(".."), force=True, graph_fn=lambda c: "G.nir"), "ancestor"),
    Case("sub_dotdot_is_the_working_directory", "output folder",
         compile_to(_cwd("sub/.."), force=True, graph_fn=lambda c: "G.nir"), "working directory"),
    Case("root_folder", "output folder", compile_to(lambda c: "/", force=True), "refusing"),
    Case("absolute_ancestor_of_cwd", "output folder", compile_to(lambda c: (_cwd(".")(c), c.tmp / "a")[1], force=True,
                                                                  graph_fn=lambda c: "G.nir"), "ancestor"),
    Case("symlink_to_a_user_folder", "output folder",
         compile_to(lambda c: (os.symlink(_user_folder(c), c.tmp / "out"), c.tmp / "out")[1], force=True), "symbolic link"),
    Case("symlink_to_a_deployment", "output folder",
         compile_to(lambda c: (os.symlink(c.dep(), c.tmp / "out"), c.tmp / "out")[1], force=True), "symbolic link"),
    Case("dangling_symlink", "output folder",
         compile_to(lambda c: (os.symlink(c.tmp / "nowhere", c.tmp / "out"), c.tmp / "out")[1], force=True), "symbolic link"),
    Case("regular_file_at_out", "output folder", compile_to(lambda c: _mk(c.tmp / "out"), force=True), "not a folder"),
    Case("fifo_at_out", "output folder", compile_to(lambda c: (os.mkfifo(c.tmp / "out"), c.tmp / "out")[1], force=True), "FIFO"),
    Case("socket_at_out", "output folder", compile_to(lambda c: _socket_at(c, c.tmp / "out"), force=True), "socket"),
    Case("deployment_plus_a_user_file", "output folder",
         compile_to(_dep_with(lambda d: _mk(d / "notes.txt")), force=True), "notes.txt"),
    Case("deployment_plus_a_user_folder", "output folder",
         compile_to(_dep_with(lambda d: _mk(d / "data" / "raw.bin")), force=True), "data"),
    Case("deployment_file_replaced_by_a_link", "output folder",
         compile_to(_dep_with(lambda d: ((d / "report.json").unlink(), os.symlink(_mk(d.parent / "mine.txt"), d / "report.json"))),
                    force=True), "not a regular file"),
    Case("marker_is_a_list", "output folder",
         compile_to(_dep_with(lambda d: (d / "deployment.json").write_text("[1, 2]")), force=True), "not a folder written by nirdeploy"),
    Case("marker_lists_a_parent_path", "output folder",
         compile_to(_dep_with(lambda d: _edit_json(d / "deployment.json", lambda m: {**m, "files": m["files"] + ["../mine.txt"]})),
                    force=True), "not a plain file name"),
    Case("marker_alone_with_a_user_file", "output folder",
         compile_to(lambda c: (_mk(c.tmp / "out" / "thesis.tex"), (c.tmp / "out" / "deployment.json").write_text(json.dumps(_marker([]))),
                               c.tmp / "out")[2], force=True), "thesis.tex"),
    Case("marker_is_a_fifo", "output folder",
         compile_to(_dep_with(lambda d: ((d / "deployment.json").unlink(), os.mkfifo(d / "deployment.json"))), force=True),
         "not a regular file"),
    Case("deployment_without_force", "output folder", compile_to(lambda c: c.dep("out")), "already exists"),
    Case("parent_is_a_file", "output folder", compile_to(lambda c: _mk(c.tmp / "file.txt") / "out"), "not a folder"),
    Case("folder_holding_the_calibration_input", "output folder",
         lambda c: ["compile", c.graph(), *COMPILE, "--calibrate", c.x(name="cal.npy"), "-o", c.tmp, "--force"], "refusing"),
    # the ones nirdeploy may write
    Case("empty_folder_is_used", "output folder", compile_to(lambda c: (c.tmp / "out").mkdir() or c.tmp / "out"), code=0),
    Case("own_deployment_is_replaced_with_force", "output folder", compile_to(lambda c: c.dep("out"), force=True), code=0),
    Case("missing_parents_are_created", "output folder", compile_to(lambda c: c.tmp / "p" / "q" / "out"), code=0),
]

# -- file outputs (simulate -o): an existing path is never replaced without --force, and even with
# --force only a regular file that is not an input is ------------------------------------------------
F = ("--force",)


def _replaced(name: str, old: str):
    """After a successful --force: ``name`` holds a new .npy, not the user's old bytes."""

    def after(ctx: Ctx) -> None:
        p = ctx.tmp / name
        assert p.read_text(errors="replace") != old
        assert np.load(p).ndim == 3

    return after


FILE_OUTPUT = [
    Case("symlink_to_a_user_file", "file output",
         simulate_to(lambda c: (os.symlink(_mk(c.tmp / "mine.npy"), c.tmp / "y.npy"), c.tmp / "y.npy")[1], extra=F), "symbolic link"),
    Case("dangling_symlink", "file output",
         simulate_to(lambda c: (os.symlink(c.tmp / "nowhere", c.tmp / "y.npy"), c.tmp / "y.npy")[1], extra=F), "symbolic link"),
    Case("symlink_to_dev_null", "file output",
         simulate_to(lambda c: (os.symlink("/dev/null", c.tmp / "y.npy"), c.tmp / "y.npy")[1], extra=F), "symbolic link"),
    Case("symlink_without_force", "file output",
         simulate_to(lambda c: (os.symlink(_mk(c.tmp / "mine.npy"), c.tmp / "y.npy"), c.tmp / "y.npy")[1]), "symbolic link"),
    Case("fifo", "file output", simulate_to(lambda c: (os.mkfifo(c.tmp / "y.npy"), c.tmp / "y.npy")[1], extra=F), "FIFO"),
    Case("fifo_without_force", "file output", simulate_to(lambda c: (os.mkfifo(c.tmp / "y.npy"), c.tmp / "y.npy")[1]), "FIFO"),
    Case("folder", "file output", simulate_to(lambda c: (c.tmp / "y.npy").mkdir() or c.tmp / "y.npy", extra=F), "folder"),
    Case("socket", "file output", simulate_to(lambda c: _socket_at(c, c.tmp / "y.sock"), extra=F), "socket"),
    Case("device_dev_null", "file output", simulate_to(lambda c: "/dev/null", extra=F), "device"),
    Case("the_input_itself", "file output", simulate_to(lambda c: c.tmp / "x.npy", extra=F), "input"),
    Case("the_input_itself_without_force", "file output", simulate_to(lambda c: c.tmp / "x.npy"), "input"),
    Case("a_hard_link_to_the_input", "file output",
         simulate_to(lambda c: (os.link(c.tmp / "x.npy", c.tmp / "hl.npy"), c.tmp / "hl.npy")[1], extra=F), "input"),
    Case("the_graph_itself", "file output",
         lambda c: ["simulate", c.graph(), "--reference", "--dt", "1e-4", "--input", c.x(), "-o", c.graph(), "--force"], "input"),
    Case("trailing_slash", "file output", simulate_to(lambda c: str(c.tmp / "y") + "/"), "folder"),
    Case("missing_parent", "file output", simulate_to(lambda c: c.tmp / "nodir" / "y.npy"), "does not exist"),
    Case("parent_is_a_file", "file output", simulate_to(lambda c: _mk(c.tmp / "f.txt") / "y.npy"), "does not exist"),
    Case("inside_the_compiled_folder_read", "file output", simulate_to(lambda c: c.dep() / "report.json", extra=F),
         "a folder this command reads"),
    Case("new_file_inside_the_compiled_folder_read", "file output", simulate_to(lambda c: c.dep() / "y.npy"), "a folder this command reads"),
    Case("regular_file_without_force_is_kept", "file output", simulate_to(lambda c: _mk(c.tmp / "y.npy", "old result")),
         "y.npy already exists; --force replaces it"),
    Case("regular_file_without_force_is_kept_reference", "file output",
         lambda c: ["simulate", c.graph(), "--reference", "--dt", "1e-4", "--input", c.x(), "-o", _mk(c.tmp / "y.npy", "old result")],
         "already exists"),
    Case("empty_regular_file_without_force_is_kept", "file output", simulate_to(lambda c: _mk(c.tmp / "y.npy", "")), "already exists"),
    Case("regular_file_is_replaced_with_force", "file output", simulate_to(lambda c: _mk(c.tmp / "y.npy", "old result"), extra=F),
         code=0, after=_replaced("y.npy", "old result")),
    Case("regular_file_is_replaced_with_force_reference", "file output",
         lambda c: ["simulate", c.graph(), "--reference", "--dt", "1e-4", "--input", c.x(), "-o", _mk(c.tmp / "y.npy", "old result"),
                    "--force"], code=0, after=_replaced("y.npy", "old result")),
    Case("new_file_is_written", "file output", simulate_to(lambda c: c.tmp / "y.npy"), code=0, after=_replaced("y.npy", "")),
]


# -- compiled folders (simulate DEP): bounded, schema-checked reads ---------------------------------
def tamper(fn, expect: str, cid: str, *, extra=()) -> Case:
    def setup(ctx: Ctx):
        d = ctx.dep()
        fn(d)
        return ["simulate", d, "--input", ctx.x(), "-o", ctx.tmp / "y.npy", *extra]

    return Case(cid, "compiled folder", setup, expect)


def _replace(name: str, how: str):
    def fn(d: Path):
        p = d / name
        p.unlink()
        if how == "fifo":
            os.mkfifo(p)
        elif how == "dev_zero":
            os.symlink("/dev/zero", p)
        elif how == "folder":
            p.mkdir()
        elif how == "link":
            os.symlink(d.parent / "x.npy", p)

    return fn


def _json(name: str, fn):
    return lambda d: _edit_json(d / name, fn)


def _text(name: str, text: str):
    return lambda d: (d / name).write_text(text)


def _npz(fn, name: str = "xylo_config.npz"):
    """Rewrite the archive ``name`` with ``fn(dict of arrays)`` (numpy's own writer)."""

    def edit(d: Path):
        p = d / name
        with np.load(p) as z:
            arrs = {k: z[k] for k in z.files}
        arrs = fn(arrs)
        np.savez(p, **arrs)

    return edit


def _set_arr(key, value):
    def fn(a):
        a[key] = value(a) if callable(value) else value
        return a

    return fn


def _npz_bytes(fn, name: str = "xylo_config.npz"):
    return lambda d: (d / name).write_bytes(fn((d / name).read_bytes()))


def _bomb_member(d: Path, name: str = "xylo_config.npz", member: bytes = b"weights_in.npy"):
    """A 600 MB member of zeros (deflated to < 1 MB) in place of ``member``: the archive ``name``
    holds nothing else."""
    import zlib

    mb = 1 << 20
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "|i1", "fortran_order": False, "shape": (600 * mb,)})
    head = b.getvalue()
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(head) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(b"\0" * mb) + co.flush(zlib.Z_FULL_FLUSH)
    last = co.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(600):
        crc = zlib.crc32(b"\0" * mb, crc)
    data = first + block * 600 + last
    usize = len(head) + 600 * mb
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), usize, len(member), 0) + member
    cd = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), usize, len(member), 0, 0, 0, 0, 0, 0) + member
    with open(d / name, "wb") as f:
        f.write(local + data)
        off = f.tell()
        f.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(cd), off, 0))


def _claims_more(d: Path, name: str = "xylo_config.npz", member: str = "bias"):
    """A member whose .npy header announces 10^12 elements but holds a few bytes."""
    p = d / name
    with np.load(p) as z:
        arrs = {k: z[k] for k in z.files}
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(p, "w") as zf:
        for k, v in arrs.items():
            if k == member:
                zf.writestr(f"{member}.npy", b.getvalue() + b"\0" * 64)
            else:
                buf = io.BytesIO()
                np.save(buf, v)
                zf.writestr(f"{k}.npy", buf.getvalue())


M, META, CFG, REP = "deployment.json", "xylo_meta.json", "xylo_config.npz", "report.json"

COMPILED_FOLDER = [
    # the marker (core)
    tamper(lambda d: (d / M).unlink(), "no deployment.json", "marker_missing"),
    tamper(_replace(M, "fifo"), "not a regular file", "marker_fifo"),
    tamper(_replace(M, "dev_zero"), "symbolic link", "marker_link_to_dev_zero"),
    tamper(_replace(M, "folder"), "not a regular file", "marker_is_a_folder"),
    tamper(_text(M, "[1, 2, 3]"), "expected a JSON object", "marker_is_a_list"),
    tamper(_text(M, "[" * 100_000 + "]" * 100_000), "nested deeper", "marker_deeply_nested"),
    tamper(_text(M, '{"a": ' + "[" * 100 + "]" * 100 + "}"), "nested deeper", "marker_nested_100_levels"),
    tamper(_text(M, '{"nirdeploy_deployment": NaN}'), "not valid JSON", "marker_nan_literal"),
    tamper(_text(M, "\xff\xfe garbage"), "not valid JSON", "marker_not_utf8"),
    tamper(_text(M, " " * (2 << 20)), "more than", "marker_too_large"),
    tamper(_json(M, lambda m: {**m, "nirdeploy_deployment": 2}), "format version 2", "marker_format_version_2"),
    tamper(_json(M, lambda m: {**m, "nirdeploy_deployment": "1"}), "nirdeploy_deployment", "marker_format_version_string"),
    tamper(_json(M, lambda m: {**m, "target": "nochip"}), "unknown target 'nochip'", "marker_target_not_installed"),
    tamper(_json(M, lambda m: {**m, "target": "speck", "variant": "speck2e"}), "says this is a speck:speck2e folder",
           "marker_target_of_another_installed_target"),
    tamper(_json(M, lambda m: {**m, "target": 5}), "target", "marker_target_not_a_string"),
    tamper(_json(M, lambda m: {**m, "variant": "imu"}), "variant", "marker_variant_of_another_folder"),
    tamper(_json(M, lambda m: {**m, "input_shape": [13]}), "input_shape", "marker_input_shape_mismatch"),
    tamper(_json(M, lambda m: {**m, "latency_steps": 7}), "latency_steps", "marker_latency_mismatch"),
    tamper(_json(M, lambda m: {**m, "latency_steps": -1}), "latency_steps", "marker_latency_negative"),
    tamper(_json(M, lambda m: {k: v for k, v in m.items() if k != "files"}), "files", "marker_without_files"),
    tamper(_json(M, lambda m: {**m, "files": [f for f in m["files"] if f != REP]}), "report.json", "marker_not_listing_report"),
    tamper(_json(M, lambda m: {**m, "files": m["files"] + ["../../etc/passwd"]}), "not a plain file name", "marker_file_outside"),
    tamper(_json(M, lambda m: {**m, "files": m["files"] + ["ghost.bin"]}), "missing", "marker_lists_a_missing_file"),
    tamper(_json(M, lambda m: {**m, "files": m["files"] + [REP]}), "twice", "marker_lists_a_file_twice"),
    tamper(_json(M, lambda m: {**m, "settings": {**m["settings"], "dt": -1}}), "settings.dt", "marker_negative_dt"),
    # the target's files (Xylo, through backend.folder)
    tamper(lambda d: (d / META).unlink(), "missing", "meta_missing"),
    tamper(_replace(META, "fifo"), "not a regular file", "meta_fifo"),
    tamper(_replace(META, "dev_zero"), "symbolic link", "meta_link_to_dev_zero"),
    tamper(_text(META, "[]"), "expected a JSON object", "meta_is_a_list"),
    tamper(_json(META, lambda m: {k: v for k, v in m.items() if k != "output_scale"}), "output_scale", "meta_without_output_scale"),
    tamper(_json(META, lambda m: {**m, "latency_steps": "x"}), "latency_steps", "meta_latency_string"),
    tamper(_json(META, lambda m: {**m, "readout": "telepathy"}), "readout", "meta_readout_unknown"),
    tamper(_json(META, lambda m: {**m, "readout": "vmem"}), "output_scale", "meta_vmem_without_scales"),
    tamper(_json(META, lambda m: {**m, "input_shape": [0]}), "input_shape", "meta_zero_dimension"),
    tamper(_json(META, lambda m: {**m, "input_shape": [13]}), "input_shape", "meta_shape_disagrees_with_config"),
    tamper(_json(META, lambda m: {**m, "variant": "audio9"}), "variant", "meta_unknown_variant"),
    tamper(_text(META, '{"variant": "audio2", "latency_steps": 1e400}'), "float range", "meta_float_overflow"),
    tamper(_text(CFG, "not a zip archive"), "not a valid .npz", "config_not_a_zip"),
    tamper(_bomb_member, "decompress", "config_zip_bomb"),
    tamper(_npz(lambda a: {k: v for k, v in a.items() if k != "weights_rec"}), "weights_rec", "config_member_missing"),
    tamper(_npz(_set_arr("extra", np.zeros(3))), "extra", "config_extra_member"),
    tamper(_npz(_set_arr("weights_in", lambda a: a["weights_in"].astype(np.float64))), "weights_in", "config_float_weights"),
    tamper(_npz(_set_arr("weights_out", lambda a: a["weights_out"] + 300)), "weights_out", "config_weights_out_of_int8"),
    tamper(_npz(_set_arr("weights_rec", lambda a: a["weights_rec"][:-1])), "weights_rec", "config_shapes_disagree"),
    tamper(_npz(_set_arr("dash_mem", lambda a: a["dash_mem"] + 99)), "dash_mem", "config_dash_out_of_range"),
    tamper(_npz(_set_arr("aliases", lambda a: a["aliases"] + 10**6)), "aliases", "config_alias_out_of_range"),
    tamper(_npz(_set_arr("weight_shift_in", np.int64(99))), "weight_shift_in", "config_shift_out_of_range"),
    tamper(_npz(_set_arr("bias", lambda a: np.array([{"x": 1}] * len(a["bias"]), dtype=object))), "bias", "config_pickled_objects"),
    tamper(_npz_bytes(lambda b: b[: len(b) // 2]), "xylo_config.npz", "config_truncated"),
    tamper(_claims_more, "announces", "config_header_claims_more"),
    tamper(lambda d: (d / REP).unlink(), "missing", "report_missing"),
    tamper(_text(REP, "[]"), "expected a JSON object", "report_is_a_list"),
    tamper(_json(REP, lambda r: {**r, "fits": "yes"}), "fits", "report_fits_a_string"),
    tamper(_json(REP, lambda r: {**r, "resources": [{"name": "x", "used": "lots", "limit": 1}]}), "resources[0].used", "report_bad_resource"),
    tamper(_json(REP, lambda r: {**r, "violations": {"a": 1}}), "violations", "report_violations_not_a_list"),
    tamper(_replace("graph.nir", "fifo"), "not a regular file", "graph_copy_fifo", extra=("--compare-reference",)),
]


# -- compiled Speck folders: the same contract, the Speck target's files ----------------------------
def speck_tamper(fn, expect: str, cid: str) -> Case:
    def setup(ctx: Ctx):
        d = ctx.speck_dep()
        fn(d)
        return ["simulate", d, "--input", ctx.speck_x(), "-o", ctx.tmp / "y.npy"]

    return Case("speck_" + cid, "speck compiled folder", setup, expect)


SMETA, SNPZ, SCFG = "speck_meta.json", "sinabs_model.npz", "speck_config.json"


def _layer(i: int, **change):
    """Change keys of layer ``i`` of speck_meta.json (a callable value gets the old one)."""

    def fn(m):
        lay = m["network"]["layers"][i]
        for k, v in change.items():
            lay[k] = v(lay[k]) if callable(v) else v
        return m

    return _json(SMETA, fn)


def _net(**change):
    def fn(m):
        m["network"].update(change)
        return m

    return _json(SMETA, fn)


def _cfg_layer(i: int, key: str, fn):
    def edit(c):
        c["cnn_layers"][i][key] = fn(c["cnn_layers"][i][key])
        return c

    return _json(SCFG, edit)


SPECK_FOLDER = [
    # speck_meta.json: JSON, format version, schema, the network's consistency and the chip's limits
    speck_tamper(lambda d: (d / SMETA).unlink(), "missing", "meta_missing"),
    speck_tamper(_replace(SMETA, "fifo"), "not a regular file", "meta_fifo"),
    speck_tamper(_replace(SMETA, "dev_zero"), "symbolic link", "meta_link_to_dev_zero"),
    speck_tamper(_text(SMETA, "[]"), "expected a JSON object", "meta_is_a_list"),
    speck_tamper(_text(SMETA, "[" * 100_000 + "]" * 100_000), "nested deeper", "meta_deeply_nested"),
    speck_tamper(_text(SMETA, '{"format": 1, "scale": 1e400}'), "float range", "meta_float_overflow"),
    speck_tamper(_json(SMETA, lambda m: {**m, "format": 2}), "format version 2", "meta_format_version_2"),
    speck_tamper(_json(SMETA, lambda m: {**m, "format": "1"}), "format", "meta_format_version_string"),
    speck_tamper(_json(SMETA, lambda m: {k: v for k, v in m.items() if k != "network"}), "network", "meta_without_network"),
    speck_tamper(_json(SMETA, lambda m: {**m, "hacked": True}), "unexpected key", "meta_unknown_key"),
    speck_tamper(_json(SMETA, lambda m: {**m, "variant": "speck9"}), "variant", "meta_unknown_variant"),
    speck_tamper(_json(SMETA, lambda m: {**m, "variant": "speck2e"}), "variant", "meta_variant_of_another_folder"),
    speck_tamper(_json(SMETA, lambda m: {**m, "options": {**m["options"], "spike_test": "=="}}), "options.spike_test", "meta_option_bad_value"),
    speck_tamper(_json(SMETA, lambda m: {**m, "options": {**m["options"], "turbo": 1}}), "options.turbo", "meta_option_unknown"),
    speck_tamper(_json(SMETA, lambda m: {**m, "input_shape": [2, 8, 9]}), "input_shape", "meta_input_shape_mismatch"),
    speck_tamper(_net(layers=[]), "layers", "meta_no_layers"),
    speck_tamper(_net(output_layer="nowhere"), "output_layer", "meta_output_layer_unknown"),
    speck_tamper(_net(output_pool=0), "output_pool", "meta_output_pool_zero"),
    speck_tamper(_layer(0, stride="x"), "stride", "meta_stride_string"),
    speck_tamper(_layer(0, stride=[3, 3]), "stride", "meta_stride_3"),
    speck_tamper(_layer(0, padding=[9, 9]), "padding", "meta_padding_9"),
    speck_tamper(_layer(0, threshold_high=0), "threshold_high", "meta_threshold_zero"),
    speck_tamper(_layer(0, threshold_high=40000), "threshold_high", "meta_threshold_beyond_16_bit"),
    speck_tamper(_layer(0, threshold_low=lambda t: 10**6), "threshold_low", "meta_lower_bound_above_threshold"),
    speck_tamper(_layer(1, core=99), "core", "meta_core_out_of_range"),
    speck_tamper(_layer(1, core=lambda c: 0 if c else 1), "core", "meta_core_used_twice"),
    speck_tamper(_layer(1, sources=[["ghost", 1]]), "sources", "meta_source_names_no_layer"),
    speck_tamper(_layer(1, sources=lambda s: [[s[0][0], 3]]), "sources", "meta_pooling_3"),
    speck_tamper(_layer(0, sources=lambda s: [[s[0][0], "2"]]), "sources", "meta_pooling_string"),
    speck_tamper(_layer(0, neuron_shape=lambda s: [s[0], s[1] + 1, s[2]]), "neuron_shape", "meta_neuron_shape_disagrees"),
    speck_tamper(_layer(0, input_shape=lambda s: [s[0] + 1, s[1], s[2]]), "input", "meta_input_channels_disagree"),
    speck_tamper(_layer(0, kind="dense"), "kind", "meta_kind_unknown"),
    speck_tamper(_layer(0, name="__input__"), "name", "meta_layer_named_like_the_input"),
    # sinabs_model.npz: zip, members, dtypes, integer formats, shapes
    speck_tamper(_text(SNPZ, "not a zip archive"), "not a valid .npz", "npz_not_a_zip"),
    speck_tamper(lambda d: _bomb_member(d, SNPZ, b"weight_0.npy"), "decompress", "npz_zip_bomb"),
    speck_tamper(_npz(lambda a: {k: v for k, v in a.items() if k != "bias_1"}, SNPZ), "bias_1", "npz_member_missing"),
    speck_tamper(_npz(_set_arr("extra", np.zeros(3)), SNPZ), "extra", "npz_extra_member"),
    speck_tamper(_npz(_set_arr("weight_0", lambda a: a["weight_0"].astype(np.float64)), SNPZ), "weight_0", "npz_float_weights"),
    speck_tamper(_npz(_set_arr("weight_2", lambda a: a["weight_2"] + 300), SNPZ), "weight_2", "npz_weights_out_of_int8"),
    speck_tamper(_npz(_set_arr("bias_0", lambda a: np.array([{"x": 1}] * len(a["bias_0"]), dtype=object)), SNPZ), "bias_0",
                 "npz_pickled_objects"),
    speck_tamper(_npz(_set_arr("weight_1", lambda a: a["weight_1"][:-1]), SNPZ), "weight_1", "npz_weight_shape_disagrees"),
    speck_tamper(_npz(_set_arr("bias_2", lambda a: a["bias_2"] + 1), SNPZ), "has_bias", "npz_bias_where_the_layer_has_none"),
    speck_tamper(_npz_bytes(lambda b: b[: len(b) // 2], SNPZ), SNPZ, "npz_truncated"),
    speck_tamper(lambda d: _claims_more(d, SNPZ, "bias_0"), "announces", "npz_header_claims_more"),
    # speck_config.json: the vendor export must be what simulate runs
    speck_tamper(_cfg_layer(0, "threshold_high", lambda t: t + 1), "cnn_layers[0].threshold_high", "config_threshold_edited"),
    speck_tamper(_cfg_layer(1, "weights", lambda w: [[[[0] * len(w[0][0][0])] * len(w[0][0])] * len(w[0])] * len(w)),
                 "cnn_layers[1].weights", "config_weights_zeroed"),
    speck_tamper(_text(SCFG, "{"), "not valid JSON", "config_not_json"),
    speck_tamper(_replace(SCFG, "fifo"), "not a regular file", "config_fifo"),
    # report.json (the core's contract) and the marker
    speck_tamper(lambda d: (d / REP).unlink(), "missing", "report_missing"),
    speck_tamper(_json(REP, lambda r: {**r, "fits": "yes"}), "fits", "report_fits_a_string"),
    speck_tamper(_json(REP, lambda r: {**r, "target": "xylo", "variant": "audio2"}), "target", "report_of_another_target"),
    speck_tamper(_json(M, lambda m: {**m, "target": "xylo", "variant": "audio2"}), "says this is a xylo:audio2 folder",
                 "folder_claimed_by_another_target"),
    speck_tamper(_json(M, lambda m: {**m, "nirdeploy_deployment": 2}), "format version 2", "marker_format_version_2"),
    speck_tamper(_json(M, lambda m: {**m, "output_shape": [4]}), "output_shape", "marker_output_shape_mismatch"),
]


# -- input arrays (simulate --input, --reference, --calibrate) --------------------------------------
def _raw_npy(header: dict, payload: bytes = b""):
    def fn(ctx: Ctx) -> Path:
        import io

        b = io.BytesIO()
        np.lib.format.write_array_header_1_0(b, header)
        p = ctx.tmp / "x.npy"
        p.write_bytes(b.getvalue() + payload)
        return p

    return fn


def _arr(a):
    return lambda ctx: ctx.x(a)


def chip_input(cid: str, x_fn, expect: str, code: int = 2) -> Case:
    return Case(cid, "input array", simulate_to(lambda c: c.tmp / "y.npy", x_fn=x_fn), expect, code)


def ref_input(cid: str, x_fn, expect: str) -> Case:
    return Case(cid, "input array", lambda c: ["simulate", c.graph(), "--reference", "--dt", "1e-4", "--input", x_fn(c),
                                                "-o", c.tmp / "y.npy"], expect)


def cal_input(cid: str, x_fn, expect: str) -> Case:
    return Case(cid, "input array", lambda c: ["compile", c.graph(), *COMPILE, "--calibrate", x_fn(c), "-o", c.tmp / "out"], expect)


Z = np.zeros((2, 20, 12))
INPUT_ARRAY = [
    chip_input("strings", _arr(np.full((1, 2, 12), "1")), "strings"),
    chip_input("bytes", _arr(np.full((1, 2, 12), b"1")), "bytes"),
    chip_input("structured", _arr(np.zeros((1, 2, 12), dtype=[("a", "i4")])), "structured"),
    chip_input("datetime", _arr(np.zeros((1, 2, 12), dtype="datetime64[s]")), "datetime"),
    chip_input("timedelta", _arr(np.zeros((1, 2, 12), dtype="timedelta64[s]")), "time differences"),
    chip_input("complex", _arr(np.ones((1, 2, 12), dtype=complex)), "complex"),
    chip_input("pickled_objects", _arr(np.array([[[{"a": 1}] * 12]], dtype=object)), "objects"),
    chip_input("nan", _arr(np.where(np.arange(12) == 3, np.nan, Z)), "NaN"),
    chip_input("inf", _arr(np.where(np.arange(12) == 3, np.inf, Z)), "infinite"),
    chip_input("negative", _arr(Z - 1), "non-negative"),
    chip_input("fractional", _arr(Z + 0.5), "whole"),
    chip_input("count_1e300", _arr(Z + 1e300), "more than"),
    chip_input("zero_time_steps", _arr(np.zeros((2, 0, 12))), "0 time steps"),
    chip_input("zero_batch", _arr(np.zeros((0, 20, 12))), "batch size 0"),
    chip_input("two_dimensional", _arr(np.zeros((20, 12))), "shape"),
    chip_input("wrong_channel_count", _arr(np.zeros((2, 20, 11))), "shape"),
    chip_input("an_npz_archive", lambda c: (np.savez(c.tmp / "x.npz", x=Z), c.tmp / "x.npz")[1], ".npz"),
    chip_input("a_fifo", lambda c: (os.mkfifo(c.tmp / "x.npy"), c.tmp / "x.npy")[1], "not a regular file"),
    chip_input("a_folder", lambda c: (c.tmp / "xd").mkdir() or c.tmp / "xd", "folder"),
    chip_input("missing_file", lambda c: c.tmp / "nope.npy", "does not exist"),
    chip_input("empty_file", lambda c: (c.tmp / "x.npy").write_bytes(b"") or c.tmp / "x.npy", "not a readable .npy"),
    chip_input("truncated_data", _raw_npy({"descr": "<i8", "fortran_order": False, "shape": (2, 20, 12)}, b"\0" * 100), "truncated"),
    chip_input("header_claims_10_to_the_15", _raw_npy({"descr": "<f8", "fortran_order": False, "shape": (10**5, 10**5, 10**5)}),
               "more than"),
    chip_input("bool_events_are_fine", _arr(np.zeros((2, 20, 12), dtype=bool)), "", code=0),
    chip_input("whole_floats_are_fine", _arr(np.ones((2, 20, 12))), "", code=0),
    ref_input("reference_complex", _arr(np.ones((1, 2, 12), dtype=complex)), "complex"),
    ref_input("reference_negative", _arr(Z - 2), "non-negative"),
    ref_input("reference_fractional", _arr(Z + 0.25), "whole"),
    ref_input("reference_zero_steps", _arr(np.zeros((1, 0, 12))), "0 time steps"),
    cal_input("calibration_strings", _arr(np.full((1, 2, 12), "a")), "strings"),
    cal_input("calibration_negative", _arr(Z - 1), "non-negative"),
    cal_input("calibration_nan", _arr(Z + np.nan), "NaN"),
    cal_input("calibration_wrong_shape", _arr(np.zeros((2, 20, 5))), "shape"),
    cal_input("calibration_zero_batch", _arr(np.zeros((0, 20, 12))), "batch size 0"),
]


# -- graphs whose parameters are extreme at the chosen dt -------------------------------------------
def _delay_graph(delay, dt="1e-4", cmd="reference"):
    def setup(ctx: Ctx):
        from bad_inputs import base_nodes, graph, write_file

        nodes = base_nodes()
        nodes["delay"] = {"type": "Delay", "delay": np.asarray(delay, dtype=float)}
        edges = [("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")]
        p = write_file(ctx.tmp / "d.nir", graph(nodes, edges))
        x = ctx.x(np.zeros((1, 5, 3)))
        if cmd == "reference":
            return ["simulate", p, "--reference", "--dt", dt, "--input", x, "-o", ctx.tmp / "y.npy"]
        return ["check", p, "--target", "xylo:audio2", "--dt", dt]

    return setup


GRAPH_AT_DT = [
    Case("delay_1e15_s_at_1e-4", "graph at dt", _delay_graph(np.full(4, 1e15)), "steps"),
    Case("delay_1e300_s", "graph at dt", _delay_graph(np.full(4, 1e300)), "steps"),
    Case("delay_overflow_at_tiny_dt", "graph at dt", _delay_graph(np.full(4, 1.0), dt="1e-12"), "steps"),
    Case("delay_overflow_in_check", "graph at dt", _delay_graph(np.full(4, 1e15), cmd="check"), "steps"),
    Case("delay_longer_than_the_input_is_fine", "graph at dt", _delay_graph(np.full(4, 1e-2)), "", code=0),
]

CLI_CASES: list[Case] = OUTPUT_FOLDER + FILE_OUTPUT + COMPILED_FOLDER + SPECK_FOLDER + INPUT_ARRAY + GRAPH_AT_DT


# -- API arguments ----------------------------------------------------------------------------------
def _api_cases():
    import nirdeploy
    from nirdeploy.graph.loading import save_nir, write_nir

    B = str(BRAILLE)
    x = np.random.default_rng(0).poisson(0.2, size=(1, 10, 12))

    def dep(ctx):
        return nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, reset="subtract")

    cases = [
        ("dt_string", lambda c: nirdeploy.check(B, target="xylo:audio2", dt="abc")),
        ("dt_dict", lambda c: nirdeploy.check(B, target="xylo:audio2", dt={"dt": 1e-4})),
        ("dt_list", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=[1e-4])),
        ("dt_bool", lambda c: nirdeploy.inspect(B, dt=True)),
        ("dt_negative", lambda c: nirdeploy.simulate_reference(B, x, dt=-1e-4)),
        ("dt_nan", lambda c: nirdeploy.simulate_reference(B, x, dt=float("nan"))),
        ("dt_array", lambda c: nirdeploy.simulate_reference(B, x, dt=np.array([1e-4]))),
        ("reset_number", lambda c: nirdeploy.check(B, target="xylo:audio2", dt=1e-4, reset=5)),
        ("scheme_none", lambda c: nirdeploy.simulate_reference(B, x, dt=1e-4, scheme=None)),
        ("quantization_bogus", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, quantization="bogus")),
        ("target_number", lambda c: nirdeploy.check(B, target=5, dt=1e-4)),
        ("target_list", lambda c: nirdeploy.check(B, target=["xylo"], dt=1e-4)),
        ("target_empty", lambda c: nirdeploy.check(B, target="", dt=1e-4)),
        ("variant_unknown", lambda c: nirdeploy.check(B, target="xylo:audio9", dt=1e-4)),
        ("graph_number", lambda c: nirdeploy.check(5, target="xylo:audio2", dt=1e-4)),
        ("graph_none", lambda c: nirdeploy.inspect(None)),
        ("graph_bytes_path", lambda c: nirdeploy.inspect(B.encode())),
        ("graph_path_with_nul", lambda c: nirdeploy.inspect("g\0.nir")),
        ("graph_missing", lambda c: nirdeploy.load_graph(c.tmp / "nope.nir")),
        ("calibrate_ragged", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, calibrate=[[[0] * 12], [[0] * 3]])),
        ("calibrate_number", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, calibrate=5)),
        ("calibrate_missing_file", lambda c: nirdeploy.check(B, target="xylo:audio2", dt=1e-4, calibrate=c.tmp / "nope.npy")),
        ("out_number", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, out=5)),
        ("force_string", lambda c: nirdeploy.compile(B, target="xylo:audio2", dt=1e-4, out=c.tmp / "o", force="yes")),
        ("simulate_ragged", lambda c: dep(c).simulate([[[0] * 12], [[0] * 12, [0] * 12]])),
        ("simulate_string", lambda c: dep(c).simulate("x.npy")),
        ("simulate_none", lambda c: dep(c).simulate(None)),
        ("simulate_record_string", lambda c: dep(c).simulate(x, record="yes")),
        ("simulate_progress_number", lambda c: dep(c).simulate(x, progress=5)),
        ("save_force_number", lambda c: dep(c).save(c.tmp / "o", force=1)),
        ("save_to_a_user_folder", lambda c: dep(c).save(_user_folder(c), force=True)),
        ("save_nir_over_a_user_file", lambda c: save_nir(nirdeploy.load_graph(B), _mk(c.tmp / "mine.nir"))),
        ("write_nir_over_a_user_file", lambda c: write_nir(nirdeploy.load_graph(B), _mk(c.tmp / "mine.nir"))),
        ("save_nir_force_a_string", lambda c: save_nir(nirdeploy.load_graph(B), c.tmp / "new.nir", force="yes")),
        ("save_nir_force_over_a_link", lambda c: save_nir(nirdeploy.load_graph(B), (os.symlink(_mk(c.tmp / "mine.nir"), c.tmp / "l.nir"),
                                                                                    c.tmp / "l.nir")[1], force=True)),
        ("save_nir_force_over_an_input", lambda c: save_nir(nirdeploy.load_graph(B), _mk(c.tmp / "mine.nir"), inputs=[c.tmp / "mine.nir"],
                                                            force=True)),
        ("reference_ragged", lambda c: nirdeploy.simulate_reference(B, [[[0] * 12], [[0] * 11]], dt=1e-4)),
        ("reference_negative", lambda c: nirdeploy.simulate_reference(B, -x, dt=1e-4)),
        ("reference_record_number", lambda c: nirdeploy.simulate_reference(B, x, dt=1e-4, record=2)),
        ("compare_1d", lambda c: nirdeploy.compare_outputs(np.zeros(5), np.zeros(5))),
        ("compare_shapes_differ", lambda c: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 3)))),
        ("compare_ragged", lambda c: nirdeploy.compare_outputs([[[0]], [[0, 1]]], np.zeros((2, 1, 1)))),
        ("compare_strings", lambda c: nirdeploy.compare_outputs(np.full((1, 5, 2), "a"), np.zeros((1, 5, 2)))),
        ("compare_latency_negative", lambda c: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), -1)),
        ("compare_latency_equals_T", lambda c: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), 5)),
        ("compare_latency_fractional", lambda c: nirdeploy.compare_outputs(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), 1.5)),
        ("compare_nan", lambda c: nirdeploy.compare_outputs(np.full((1, 5, 2), np.nan), np.zeros((1, 5, 2)))),
        ("load_deployment_number", lambda c: nirdeploy.load_deployment(5)),
        ("load_deployment_user_folder", lambda c: nirdeploy.load_deployment(_user_folder(c))),
        ("get_target_list", lambda c: nirdeploy.get_target(["xylo"])),
        ("register_target_bad_name", lambda c: nirdeploy.register_target("a:b", lambda: None)),
        ("register_target_not_callable", lambda c: nirdeploy.register_target("fine", 5)),
    ]
    return cases


API_CASES = _api_cases()

KINDS = {
    "output folder": len(OUTPUT_FOLDER),
    "file output": len(FILE_OUTPUT),
    "compiled folder": len(COMPILED_FOLDER),
    "speck compiled folder": len(SPECK_FOLDER),
    "input array": len(INPUT_ARRAY),
    "graph at dt": len(GRAPH_AT_DT),
    "API argument": len(API_CASES),
}
