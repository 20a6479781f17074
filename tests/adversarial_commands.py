"""Adversarial cases for the commands that came after issue 6's tables (``export``,
``nmnist``, ``compare``, ``check --format/--budget``, ``-T KEY=VALUE``, ``TARGET:all``) and
the API behind them (``from_torch``, ``to_torch``, ``compare``, ``load_nmnist``, the CI
assertions and budgets), by kind. Same contract as tests/adversarial.py: a refused command exits
2 with the expected words, no traceback, no "internal error", changes nothing and leaves
nothing; an API call raises a documented NirDeployError with exit code 2.

``Case.needs`` names an optional package a case reads with (tonic for recordings, torch and
snnTorch for models); without it the case is skipped, or fails under
NIRDEPLOY_REQUIRE_ORACLES=1 like every oracle test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from adversarial import Case, Ctx

__all__ = ["CLI_CASES", "API_CASES", "KINDS", "NEEDS", "nmnist_dataset", "MODEL_PY"]

G = ["--dt", "1e-4", "--reset", "subtract"]

MODEL_PY = """
import sys
import torch, snntorch as snn

def make():
    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), snn.Leaky(beta=0.9, **kw), torch.nn.Linear(16, 3),
                               snn.Leaky(beta=0.9, output=True, **kw))

def exits():
    sys.exit(0)

def none():
    return None

def number():
    return 5
"""


# -- helpers ------------------------------------------------------------------------------------------
def _model(ctx: Ctx, body: str = MODEL_PY, name: str = "m.py") -> Path:
    p = ctx.tmp / name
    p.write_text(body)
    return p


def _sample(ctx: Ctx, arr=None, name: str = "s.npy") -> Path:
    a = (np.random.default_rng(0).random((2, 10, 4)) < 0.5).astype(float) if arr is None else arr
    np.save(ctx.tmp / name, a)
    return ctx.tmp / name


def export(fn="make", *, out=None, extra=(), sample=None, model=None):
    """``export m.py:FN --library snntorch --sample s.npy -o g.nir`` with changes."""

    def setup(ctx: Ctx):
        m = model(ctx) if model else _model(ctx)
        s = sample(ctx) if sample else _sample(ctx)
        o = out(ctx) if out else ctx.tmp / "g.nir"
        args = ["export", f"{m}:{fn}", "--library", "snntorch", "-o", o, *extra]
        return args + (["--sample", s] if s != "none" else [])

    return setup


def encode(events) -> bytes:
    """(x, y, t_us, p) events in N-MNIST's 5-byte format (Orchard et al. 2015)."""
    out = bytearray()
    for x, y, t, p in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def nmnist_dataset(root: Path, layout: str = "tonic", classes=(0, 3)) -> Path:
    """Two recordings per digit; ``layout``: tonic (ROOT/NMNIST/Test/<d>) or flat (ROOT/<d>).
    Returns the split folder."""
    rng = np.random.default_rng(0)
    split = root / "NMNIST" / "Test" if layout == "tonic" else root
    for c in classes:
        d = split / str(c)
        d.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            ev = sorted(zip(rng.integers(0, 34, 20).tolist(), rng.integers(0, 34, 20).tolist(),
                            rng.integers(0, 12_000, 20).tolist(), rng.integers(0, 2, 20).tolist()), key=lambda e: e[2])
            (d / f"{k:05d}.bin").write_bytes(encode(ev))
    return split


def nmnist(*, layout="tonic", change=None, out=None, labels=None, extra=()):
    """``nmnist ROOT --steps 5 -o X.npy [--labels-out Y.npy]`` on a small dataset."""

    def setup(ctx: Ctx):
        root = ctx.tmp / "data"
        split = nmnist_dataset(root, layout)
        if change:
            change(ctx, split)
        o = out(ctx) if out else ctx.tmp / "X.npy"
        args = ["nmnist", root, "--steps", "5", "-o", o, *extra]
        if labels is not None:
            args += ["--labels-out", labels(ctx)]
        return args

    return setup


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _link(target, p: Path) -> Path:
    os.symlink(target, p)
    return p


def _mk(p: Path, text="user data") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def compare(*, labels=None, x=None, runs="reference", extra=()):
    def setup(ctx: Ctx):
        xi = x(ctx) if x else ctx.x()
        args = ["compare", ctx.graph(), "--input", xi, "--with", runs(ctx) if callable(runs) else runs, *G, *extra]
        if labels is not None:
            args += ["--labels", labels(ctx)]
        return args

    return setup


def _labels(arr):
    def fn(ctx: Ctx) -> Path:
        np.save(ctx.tmp / "y.npy", np.asarray(arr))
        return ctx.tmp / "y.npy"

    return fn


def check(*, budget=None, fmt=None, target="xylo:audio2", extra=()):
    def setup(ctx: Ctx):
        args = ["check", ctx.graph(), "--target", target, *G, *extra]
        if fmt:
            args += ["--format", fmt]
        if budget is not None:
            args += ["--budget", budget(ctx)]
        return args

    return setup


def _budget_text(text: str, name: str = "budget.toml"):
    def fn(ctx: Ctx) -> Path:
        p = ctx.tmp / name
        p.write_text(text)
        return p

    return fn


def _budget_bytes(data: bytes):
    def fn(ctx: Ctx) -> Path:
        p = ctx.tmp / "budget.toml"
        p.write_bytes(data)
        return p

    return fn


DEEP = "a = " + "[" * 50_000 + "]" * 50_000 + "\n"


# -- torch export (nirdeploy export) ---------------------------------------------------------------------
def _export_case(cid, setup, expect="", code=2, after=None) -> Case:
    return Case(cid, "torch export", setup, expect, code, after)


def _weights_file(ctx: Ctx) -> Path:
    """The model's own state_dict, saved with torch.save."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("adv_model", ctx.tmp / "m.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.make().state_dict(), ctx.tmp / "w.pt")
    return ctx.tmp / "w.pt"


def _is_a_new_graph(name: str):
    def after(ctx: Ctx) -> None:
        import nirdeploy

        assert (ctx.tmp / name).read_bytes() != b"old graph"
        assert len(nirdeploy.load_graph(ctx.tmp / name).nodes) > 2

    return after


TORCH_EXPORT = [
    _export_case("model_function_calls_sys_exit", export("exits"), "sys.exit"),
    _export_case("model_file_calls_sys_exit_on_import", export(model=lambda c: _model(c, "import sys\nsys.exit(0)\n")), "sys.exit"),
    _export_case("model_function_returns_none", export("none"), "not a torch.nn.Module"),
    _export_case("model_function_returns_a_number", export("number"), "not a torch.nn.Module"),
    _export_case("model_function_missing", export("nothere"), "no function"),
    _export_case("model_file_is_a_folder", export(model=lambda c: (c.tmp / "d.py").mkdir() or c.tmp / "d.py"), "is a folder"),
    _export_case("model_file_is_a_fifo", export(model=lambda c: _fifo(c.tmp / "f.py")), "not a regular file"),
    _export_case("model_file_is_binary", export(model=lambda c: ((c.tmp / "b.py").write_bytes(b"\0\xff" * 50), c.tmp / "b.py")[1]),
                 "importing"),
]


def _weights(how):
    def setup(ctx: Ctx):
        args = export()(ctx)
        w = ctx.tmp / "w.pt"
        if how == "fifo":
            _fifo(w)
        elif how == "folder":
            w.mkdir()
        elif how == "dev_zero":
            _link("/dev/zero", w)
        else:
            w.write_bytes(b"\x80\x04garbage" * 10)
        return args + ["--weights", w]

    return setup


TORCH_EXPORT += [
    _export_case("weights_fifo", _weights("fifo"), "not a regular file"),
    _export_case("weights_folder", _weights("folder"), "is a folder"),
    _export_case("weights_link_to_dev_zero", _weights("dev_zero"), "not a regular file"),
    _export_case("weights_garbage", _weights("garbage"), "state_dict"),
    _export_case("sample_zero_time_steps", export(sample=lambda c: _sample(c, np.zeros((2, 0, 4)))), "0 time steps"),
    _export_case("sample_zero_batch", export(sample=lambda c: _sample(c, np.zeros((0, 5, 4)))), "batch size 0"),
    _export_case("sample_complex", export(sample=lambda c: _sample(c, np.ones((2, 5, 4), complex))), "complex"),
    _export_case("sample_nan", export(sample=lambda c: _sample(c, np.full((2, 5, 4), np.nan))), "NaN"),
    _export_case("sample_two_dimensional", export(sample=lambda c: _sample(c, np.zeros((5, 4)))), "dimensions"),
    _export_case("sample_fifo", export(sample=lambda c: _fifo(c.tmp / "s.npy")), "not a regular file"),
    _export_case("input_shape_overflows_int64", export(sample=lambda c: "none", extra=("--input-shape", "4294967296,4294967296")),
                 "not a usable shape"),
    _export_case("input_shape_not_integers", export(sample=lambda c: "none", extra=("--input-shape", "4,,2")), "comma-separated"),
    _export_case("dt_negative_for_norse", lambda c: [a if a != "snntorch" else "norse" for a in export()(c)] + ["--dt", "-1"],
                 "dt must be"),
    _export_case("out_is_a_folder", export(out=lambda c: (c.tmp / "g.nir").mkdir() or c.tmp / "g.nir", extra=("--force",)), "folder"),
    _export_case("out_is_a_fifo", export(out=lambda c: _fifo(c.tmp / "g.nir"), extra=("--force",)), "FIFO"),
    _export_case("out_is_a_symlink", export(out=lambda c: _link(_mk(c.tmp / "mine.txt"), c.tmp / "g.nir"), extra=("--force",)),
                 "symbolic link"),
    _export_case("out_is_the_model_file", export(out=lambda c: c.tmp / "m.py", extra=("--force",)), "input"),
    _export_case("out_is_the_sample", export(out=lambda c: c.tmp / "s.npy", extra=("--force",)), "input"),
    _export_case("out_exists_without_force", export(out=lambda c: _mk(c.tmp / "g.nir")), "g.nir already exists; --force replaces it"),
    _export_case("out_is_a_fifo_without_force", export(out=lambda c: _fifo(c.tmp / "g.nir")), "FIFO"),
    _export_case("out_is_a_dangling_symlink", export(out=lambda c: _link(c.tmp / "nowhere", c.tmp / "g.nir"), extra=("--force",)),
                 "symbolic link"),
    _export_case("out_is_the_weights", lambda c: export(out=lambda c: c.tmp / "w.pt", extra=("--force",))(c) + ["--weights", _weights_file(c)],
                 "input"),
    _export_case("out_regular_file_replaced_with_force", export(out=lambda c: _mk(c.tmp / "g.nir", "old graph"), extra=("--force",)), "", 0,
                 after=_is_a_new_graph("g.nir")),
    _export_case("out_parent_missing", export(out=lambda c: c.tmp / "nodir" / "g.nir"), "does not exist"),
    _export_case("a_good_export_is_written", export(), "", 0),
]


# -- N-MNIST recordings (nirdeploy nmnist) ---------------------------------------------------------------
def _nm(cid, setup, expect="", code=2, after=None) -> Case:
    return Case(cid, "N-MNIST", setup, expect, code, after)


def _new_npy(*names):
    """After a successful --force: each file holds a new .npy, not the user's bytes."""

    def after(ctx: Ctx) -> None:
        for n in names:
            assert not (ctx.tmp / n).read_text(errors="replace").startswith("old"), n
            np.load(ctx.tmp / n)

    return after


def _same_via_link(ctx: Ctx) -> str:
    (ctx.tmp / "d").mkdir()
    os.symlink(ctx.tmp / "d", ctx.tmp / "e")
    return str(ctx.tmp / "e" / "X.npy")


def _sparse(p: Path, size: int) -> None:
    with open(p, "wb") as f:
        f.truncate(size)


N_MNIST = [
    _nm("out_replaces_a_recording_flat_layout", nmnist(layout="flat", out=lambda c: c.tmp / "data" / "3" / "00001.bin",
                                                       extra=("--force",)), "a folder this command reads"),
    _nm("labels_replace_a_recording", nmnist(labels=lambda c: c.tmp / "data" / "NMNIST" / "Test" / "0" / "00000.bin",
                                             extra=("--force",)), "a folder this command reads"),
    _nm("new_output_inside_the_recordings", nmnist(out=lambda c: c.tmp / "data" / "NMNIST" / "Test" / "x.npy"),
        "a folder this command reads"),
    _nm("out_and_labels_same_file_through_a_linked_folder", nmnist(out=lambda c: (_same_via_link(c), c.tmp / "d" / "X.npy")[1],
                                                                   labels=lambda c: c.tmp / "e" / "X.npy"), "the same file"),
    _nm("out_and_labels_same_name", nmnist(labels=lambda c: c.tmp / "." / "X.npy"), "the same file"),
    _nm("out_and_labels_hard_links_of_one_file", nmnist(out=lambda c: _mk(c.tmp / "X.npy"),
                                                        labels=lambda c: (os.link(c.tmp / "X.npy", c.tmp / "Y.npy"), c.tmp / "Y.npy")[1],
                                                        extra=("--force",)), "the same file"),
    _nm("labels_out_is_a_folder", nmnist(labels=lambda c: (c.tmp / "Y.npy").mkdir() or c.tmp / "Y.npy", extra=("--force",)), "folder"),
    _nm("labels_out_is_a_fifo", nmnist(labels=lambda c: _fifo(c.tmp / "Y.npy"), extra=("--force",)), "FIFO"),
    _nm("out_is_a_symlink", nmnist(out=lambda c: _link(_mk(c.tmp / "mine.npy"), c.tmp / "X.npy"), extra=("--force",)),
        "symbolic link"),
    _nm("recording_is_a_fifo", nmnist(change=lambda c, s: _fifo(s / "3" / "00009.bin")), "not a regular file"),
    _nm("recording_links_to_dev_zero", nmnist(change=lambda c, s: _link("/dev/zero", s / "3" / "00009.bin")), "not a regular file"),
    _nm("recording_link_dangles", nmnist(change=lambda c, s: _link(s / "nowhere", s / "3" / "00009.bin")), "does not exist"),
    _nm("recording_of_64_mb", nmnist(change=lambda c, s: _sparse(s / "3" / "00009.bin", 64 << 20)), "more than"),
    _nm("recordings_hold_symlink_loops", nmnist(change=lambda c, s: (_link("..", s / "3" / "up"), _link("..", s / "3" / "up2"))),
        "", 0),
    _nm("recording_truncated", nmnist(change=lambda c, s: (s / "3" / "00000.bin").write_bytes(b"\1\2\3")), "5-byte"),
    _nm("root_is_a_file", lambda c: ["nmnist", _mk(c.tmp / "f"), "-o", c.tmp / "X.npy"], "no N-MNIST"),
    _nm("root_is_empty", lambda c: ["nmnist", "", "-o", c.tmp / "X.npy"], "non-empty path"),
    _nm("dt_so_small_the_array_is_huge", lambda c: ["nmnist", (nmnist_dataset(c.tmp / "data"), c.tmp / "data")[1], "--dt", "1e-11",
                                                     "-o", c.tmp / "X.npy"], "GiB"),
    _nm("steps_zero", nmnist(extra=("--steps", "0")), "n_steps"),
    _nm("both_outputs_are_written", nmnist(labels=lambda c: c.tmp / "Y.npy"), "", 0),
    _nm("out_exists_without_force", nmnist(out=lambda c: _mk(c.tmp / "X.npy")), "X.npy already exists; --force replaces it"),
    _nm("labels_exist_without_force_nothing_written", nmnist(labels=lambda c: _mk(c.tmp / "Y.npy")), "Y.npy already exists"),
    _nm("out_is_a_fifo_without_force", nmnist(out=lambda c: _fifo(c.tmp / "X.npy")), "FIFO"),
    _nm("labels_link_to_a_user_file", nmnist(labels=lambda c: _link(_mk(c.tmp / "mine.npy"), c.tmp / "Y.npy"), extra=("--force",)),
        "symbolic link"),
    _nm("both_replaced_with_force", nmnist(out=lambda c: _mk(c.tmp / "X.npy", "old x"), labels=lambda c: _mk(c.tmp / "Y.npy", "old y"),
                                           extra=("--force",)), "", 0, after=_new_npy("X.npy", "Y.npy")),
]


# -- compare -------------------------------------------------------------------------------------------------
def _cm(cid, setup, expect="", code=2) -> Case:
    return Case(cid, "compare", setup, expect, code)


COMPARE = [
    _cm("labels_nan", compare(labels=_labels([np.nan, 1.0])), "NaN"),
    _cm("labels_negative", compare(labels=_labels([-1, 1])), "class indices in [0, 6]"),
    _cm("labels_beyond_the_outputs", compare(labels=_labels([7, 1])), "class indices in [0, 6]"),
    _cm("labels_two_dimensional", compare(labels=_labels([[0, 1], [1, 0]])), "one class index per sample"),
    _cm("labels_fractional", compare(labels=_labels([0.5, 1.0])), "integer class indices"),
    _cm("labels_bool", compare(labels=_labels([True, False])), "integer class indices"),
    _cm("labels_one_too_many", compare(labels=_labels([0, 1, 2])), "one class index per sample"),
    _cm("labels_strings", compare(labels=_labels(["a", "b"])), "strings"),
    _cm("labels_folder", compare(labels=lambda c: (c.tmp / "y.npy").mkdir() or c.tmp / "y.npy"), "is a folder"),
    _cm("labels_fifo", compare(labels=lambda c: _fifo(c.tmp / "y.npy")), "not a regular file"),
    _cm("input_folder", compare(x=lambda c: (c.tmp / "xd").mkdir() or c.tmp / "xd"), "is a folder"),
    _cm("run_unknown", compare(runs="reference,telepathy"), "unknown run"),
    _cm("run_is_a_user_folder", compare(runs=lambda c: str((_mk(c.tmp / "mydata" / "thesis.tex"), c.tmp / "mydata")[1])),
        "not a compiled nirdeploy folder"),
    _cm("run_is_a_damaged_compiled_folder", compare(runs=lambda c: str((_fifo_in(c.dep(), "report.json"), c.dep())[1])),
        "not a regular file"),
    _cm("min_agreement_nan", compare(extra=("--min-agreement", "nan")), "fraction"),
    _cm("min_agreement_above_one", compare(extra=("--min-agreement", "2")), "fraction"),
    _cm("good_labels_give_accuracy", compare(labels=_labels([0, 6])), "accuracy", 0),
]


def _fifo_in(d: Path, name: str) -> None:
    (d / name).unlink()
    os.mkfifo(d / name)


# -- CI check: --format, --budget, -T KEY=VALUE, TARGET:all ---------------------------------------------------
def _ck(cid, setup, expect="", code=2) -> Case:
    return Case(cid, "CI check", setup, expect, code)


CI_CHECK = [
    _ck("budget_folder", check(budget=lambda c: (c.tmp / "b.toml").mkdir() or c.tmp / "b.toml"), "is a folder"),
    _ck("budget_fifo", check(budget=lambda c: _fifo(c.tmp / "b.toml")), "not a regular file"),
    _ck("budget_link_to_dev_zero", check(budget=lambda c: _link("/dev/zero", c.tmp / "b.toml")), "not a regular file"),
    _ck("budget_empty_path", check(budget=lambda c: ""), "non-empty path"),
    _ck("budget_nested_50000_deep", check(budget=_budget_text(DEEP)), "nested too deeply"),
    _ck("budget_nested_deep_junit", check(budget=_budget_text(DEEP), fmt="junit"), "<error type=\"BudgetError\""),
    _ck("budget_nested_deep_github", check(budget=_budget_text(DEEP), fmt="github"), "::error file="),
    _ck("budget_not_utf8", check(budget=_budget_bytes(b"\xff\xfe[keep_free]\n")), "UTF-8"),
    _ck("budget_share_nan", check(budget=_budget_text('[keep_free]\n"hidden neurons" = nan\n')), "not a share"),
    _ck("budget_sample_is_a_fifo", check(budget=lambda c: (_fifo(c.tmp / "s.npy"), _budget_text(
        'sample_input = "s.npy"\n[min_agreement]\nargmax_agreement = 0.5\n')(c))[1]), "not a regular file"),
    _ck("budget_sample_path_with_nul", check(budget=_budget_text(
        'sample_input = "s\\u0000.npy"\n[min_agreement]\nargmax_agreement = 0.5\n')), "NUL"),
    _ck("budget_key_with_an_escape_github", check(budget=_budget_text('[keep_free]\n"\\u001b[2J" = 0.1\n'), fmt="github"),
        "\\x1b[2J"),
    _ck("target_option_unicode_digit", check(target="speck", extra=("-T", "lower_bound=\u00b2")), "must be one of"),
    _ck("target_option_given_twice", check(target="speck", extra=("-T", "lower_bound=none", "-T", "lower_bound=-threshold")),
        "given twice"),
    _ck("target_option_without_value", check(extra=("-T", "lower_bound")), "KEY=VALUE"),
    _ck("max_chips_given_both_ways", check(target="loihi2", extra=("--max-chips", "2", "-T", "max_chips=3")), "given twice"),
    _ck("target_option_no_target_knows", check(target="all", extra=("-T", "telepathy=1")), "unknown target option"),
    _ck("target_option_unknown_json", check(fmt="json", extra=("-T", "telepathy=1")), "unknown option"),
    _ck("target_all_of_an_unknown_target", check(target="nochip:all"), "unknown target"),
    _ck("target_all_of_nothing", check(target=":all"), "unknown target"),
    _ck("target_all_junit_with_budget", check(target="xylo:all", fmt="junit", budget=_budget_text('[keep_free]\n"hidden neurons" = 0.1\n')),
        "<testsuites", 0),
]

CLI_CASES: list[Case] = TORCH_EXPORT + N_MNIST + COMPARE + CI_CHECK

#: kind -> the optional package its cases need
NEEDS = {"torch export": "snntorch", "N-MNIST": "tonic"}


# -- API arguments ---------------------------------------------------------------------------------------------
def _net():
    import snntorch as snn
    import torch

    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), snn.Leaky(beta=0.9, **kw), torch.nn.Linear(8, 3),
                               snn.Leaky(beta=0.9, output=True, **kw))


def api_cases() -> list[tuple[str, Callable]]:
    import nirdeploy
    from nirdeploy.ci import assert_chip_accuracy, assert_chip_agrees, load_budget, parse_budget
    from nirdeploy.data import load_nmnist

    from safety_helpers import BRAILLE

    B = str(BRAILLE)
    x = np.random.default_rng(0).poisson(0.2, size=(2, 20, 12))
    s4 = (np.random.default_rng(0).random((2, 10, 4)) < 0.5).astype(float)
    kw = {"dt": 1e-4, "reset": "subtract"}

    def ft(**k):
        args = {"library": "snntorch", **k}
        model = args.pop("model", None)
        sample = args.pop("sample", s4)
        return nirdeploy.from_torch(_net() if model is None else model, sample, **args)

    def tt(**k):
        from nirdeploy import to_torch

        return to_torch(B, **{"dt": 1e-4, **k})

    def ds(c):
        nmnist_dataset(c.tmp / "data")
        return c.tmp / "data"

    def deep_budget(c):
        p = c.tmp / "b.toml"
        p.write_text(DEEP)
        return load_budget(p)

    return [
        ("from_torch_model_a_number", lambda c: ft(model=0)),
        ("from_torch_model_a_path_string", lambda c: ft(model="model.py", library="norse")),
        ("from_torch_model_a_number_sinabs", lambda c: ft(model=5, library="sinabs")),
        ("from_torch_sample_a_path_string", lambda c: ft(sample="x.npy")),
        ("from_torch_sample_strings", lambda c: ft(sample=np.full((2, 5, 4), "a"))),
        ("from_torch_sample_ragged", lambda c: ft(sample=[[[0] * 4], [[0] * 3]])),
        ("from_torch_sample_complex", lambda c: ft(sample=s4.astype(complex))),
        ("from_torch_sample_zero_steps", lambda c: ft(sample=np.zeros((2, 0, 4)))),
        ("from_torch_strict_a_string", lambda c: ft(strict="no")),
        ("from_torch_fold_batchnorm_a_string", lambda c: ft(fold_batchnorm="no")),
        ("from_torch_dt_a_string_norse", lambda c: ft(library="norse", dt="abc")),
        ("from_torch_path_is_a_folder", lambda c: ft(path=c.tmp)),
        ("from_torch_path_parent_missing", lambda c: ft(path=c.tmp / "nodir" / "g.nir")),
        ("from_torch_path_exists_without_force", lambda c: ft(path=_mk(c.tmp / "g.nir"))),
        ("from_torch_path_a_fifo_with_force", lambda c: ft(path=_fifo(c.tmp / "g.nir"), force=True)),
        ("from_torch_path_a_link_with_force", lambda c: ft(path=_link(_mk(c.tmp / "mine.nir"), c.tmp / "g.nir"), force=True)),
        ("from_torch_force_a_string", lambda c: ft(path=c.tmp / "g.nir", force="yes")),
        ("to_torch_dtype_a_string", lambda c: tt(dtype="float32")),
        ("to_torch_dtype_integer", lambda c: tt(dtype=__import__("torch").int64)),
        ("to_torch_library_dtype_a_string", lambda c: tt(library="snntorch", dtype="float32")),
        ("to_torch_forward_strings", lambda c: tt()(np.full((1, 2, 12), "a"))),
        ("to_torch_forward_ragged", lambda c: tt()([[[0] * 12], [[0] * 11]])),
        ("compare_runs_a_number", lambda c: nirdeploy.compare(B, x, runs=5, **kw)),
        ("compare_runs_holding_none", lambda c: nirdeploy.compare(B, x, runs=[None], **kw)),
        ("compare_labels_ragged", lambda c: nirdeploy.compare(B, x, labels=[[0], [1, 2]], **kw)),
        ("compare_labels_strings", lambda c: nirdeploy.compare(B, x, labels=["a", "b"], **kw)),
        ("compare_labels_nan", lambda c: nirdeploy.compare(B, x, labels=[np.nan, 1.0], **kw)),
        ("compare_labels_negative", lambda c: nirdeploy.compare(B, x, labels=[-1, 1], **kw)),
        ("compare_labels_2d", lambda c: nirdeploy.compare(B, x, labels=[[0, 1], [1, 0]], **kw)),
        ("compare_labels_beyond_outputs", lambda c: nirdeploy.compare(B, x, labels=[100, 1], **kw)),
        ("compare_labels_fractional", lambda c: nirdeploy.compare(B, x, labels=[0.5, 1], **kw)),
        ("compare_min_agreement_bool", lambda c: nirdeploy.compare(B, x, min_agreement=True, **kw)),
        ("load_nmnist_limit_a_string", lambda c: load_nmnist(ds(c), limit="abc")),
        ("load_nmnist_limit_fractional", lambda c: load_nmnist(ds(c), limit=1.5)),
        ("load_nmnist_steps_nan", lambda c: load_nmnist(ds(c), n_steps=float("nan"))),
        ("load_nmnist_steps_inf", lambda c: load_nmnist(ds(c), n_steps=float("inf"))),
        ("load_nmnist_steps_fractional", lambda c: load_nmnist(ds(c), n_steps=2.5)),
        ("load_nmnist_saccade_a_string", lambda c: load_nmnist(ds(c), first_saccade_only="no")),
        ("load_nmnist_max_bytes_a_string", lambda c: load_nmnist(ds(c), max_bytes="x")),
        ("load_nmnist_root_none", lambda c: load_nmnist(None)),
        ("load_nmnist_recording_a_fifo", lambda c: load_nmnist((ds(c), _fifo(c.tmp / "data" / "NMNIST" / "Test" / "0" / "x.bin"))[0])),
        ("agrees_metric_a_list", lambda c: assert_chip_agrees(B, "xylo:audio2", x, min_agreement=0.1, metric=["x"], **kw)),
        ("accuracy_labels_ragged", lambda c: assert_chip_accuracy(B, "xylo:audio2", x, [[0], [1, 2]], min_accuracy=0.1, **kw)),
        ("load_budget_a_number", lambda c: load_budget(5)),
        ("load_budget_none", lambda c: load_budget(None)),
        ("load_budget_nested_deep", deep_budget),
        ("parse_budget_base_dir_a_number", lambda c: parse_budget({"sample_input": "x.npy", "min_agreement": {"argmax_agreement": 0.5}},
                                                                  base_dir=5)),
        ("check_target_option_name_a_number", lambda c: nirdeploy.check(B, "xylo:audio2", target_options={5: 1}, **kw)),
        ("check_all_target_option_name_a_number", lambda c: nirdeploy.check_all(B, target_options={5: 1}, **kw)),
    ]


#: API case id prefix -> the optional package it needs
API_NEEDS = {"from_torch": "snntorch", "to_torch": "torch", "load_nmnist": "tonic"}

API_CASES = api_cases()

KINDS = {
    "torch export": len(TORCH_EXPORT),
    "N-MNIST": len(N_MNIST),
    "compare": len(COMPARE),
    "CI check": len(CI_CHECK),
    "API argument (new functions)": len(API_CASES),
}
