"""The digits study (issue 11): `nirdeploy study digits --quick` end to end (the pipeline, not the
accuracy), the table and goal arithmetic on hand-made results, and the README's study table
against the results.json shipped in examples/study-digits/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nirdeploy.cli import main
from nirdeploy.evaluation.study import report

from conftest import require_oracle

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "study-digits"


def _results(ref=0.9, before=0.85, after=0.895, multi=(0.2, 0.01)) -> dict:
    """A hand-made results dict with one fitting row, one intended row that does not fit and one
    unintended row that does not fit (left out of the table)."""
    runs = {"reference": {"accuracy": ref}, "snntorch": {"accuracy": ref}, "norse": {"accuracy": 0.5}}
    return {
        "config": {"quick": False, "raster_index": 0}, "seconds": 600.0, "machine": {"cpus": 2, "load_average_start": [1.0, 2.0, 3.0]},
        "networks": {"rsnn": {"title": "recurrent SNN", "float": {"runs": runs}}},
        "rows": [
            {"network": "rsnn", "target": "xylo:audio3", "intended": True,
             "chip": {"fits": True, "accuracy": before, "multi_spike_share": multi[0], "seconds": 10.0},
             "finetune": {"status": "done", "fits": True, "accuracy": after, "multi_spike_share": multi[1], "seconds": 20.4,
                          "kept_epoch": 2, "epochs": [{"epoch": e} for e in range(4)]}},
            {"network": "rsnn", "target": "xylo:imu", "intended": True, "check": {"violations": ["too many inputs"]},
             "chip": {"fits": False, "rules": ["inputs"], "violations": ["too many inputs"], "seconds": 1.2}},
            {"network": "rsnn", "target": "speck:speck2f", "intended": False, "check": {"violations": ["no recurrence"]},
             "status": "does not fit"},
        ],
    }


def test_table_and_goal_hand_derived():
    res = _results()
    rows = report.table_rows(res)
    assert len(rows) == 2  # the unintended target that does not fit is not compiled, so not in the table
    assert rows[0] == ["recurrent SNN", "xylo:audio3", "90.0", "90.0", "50.0", "85.0", "89.5", "2 of 3", "5.0 -> 0.5", "20.0 -> 1.0", "30"]
    assert rows[1][5].startswith("does not fit (inputs)")
    g = report.goal(res, 1.0)
    assert [r["met"] for r in g["rows"]] == [True] and g["met"]  # the one compiled row is within 1 point
    assert g["not_compiled"] == [{"network": "rsnn", "target": "xylo:imu", "why": "does not fit: too many inputs"}]  # intended, listed
    assert g["rows"][0]["lost_before"] == pytest.approx(5.0) and g["rows"][0]["lost_after"] == pytest.approx(0.5)
    assert report.goal_line(res).startswith("goal met") and "not compiled: rsnn on xylo:imu: does not fit: too many inputs" in report.goal_line(res)
    # 1.5 points lost after fine-tuning misses the goal, and the line gives the figures
    res2 = _results(after=0.885)
    res2["rows"] = res2["rows"][:1]
    g2 = report.goal(res2, 1.0)
    assert not g2["met"] and g2["rows"][0]["why"] == "1.5 points lost after fine-tuning (5.0 before); multi-spike share 20.0 % -> 1.0 %"
    res2["rows"][0]["finetune"]["accuracy"] = 0.89  # exactly 1 point: met
    assert report.goal(res2, 1.0)["met"]
    # a failed fine-tune is a miss that says why
    res2["rows"][0]["finetune"] = {"status": "failed", "reason": "UnsupportedError: x", "seconds": 1.0}
    g3 = report.goal(res2, 1.0)
    assert not g3["met"] and "fine-tuning failed: UnsupportedError: x" in g3["rows"][0]["why"]
    assert report.table_rows(res2)[0][6:8] == ["failed", "-"]


def test_readme_block_markers_are_required(tmp_path):
    from nirdeploy.errors import UsageError

    with pytest.raises(UsageError, match="no study block"):
        report.readme_block("# no markers here\n")
    p = tmp_path / "README.md"
    p.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.update_readme(p, _results())
    text = p.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{report.END}\nafter\n") and "old" not in text
    assert report.markdown_table(_results()) in text


def test_readme_table_equals_the_shipped_results():
    """README's study block is what `nirdeploy study digits --readme README.md` writes from the
    results.json shipped in examples/study-digits (regenerate both together)."""
    res = json.loads((SHIPPED / "results.json").read_text())
    text = (ROOT / "README.md").read_text()
    i, j = report.readme_block(text)
    assert text[i:j].strip() == report.readme_text(res).strip(), "README study table is stale: rerun `nirdeploy study digits --readme README.md`"
    assert not res["config"]["quick"]  # the shipped run is the full study
    md = (SHIPPED / "results.md").read_text()
    assert md == report.results_markdown(res) and report.markdown_table(res) in md
    for name in ("raster.png", "accuracy.png"):
        assert (SHIPPED / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every target family has a compiled row in the shipped study
    fams = {r["target"].split(":")[0] for r in res["rows"] if (r.get("chip") or {}).get("fits")}
    assert {"xylo", "speck", "loihi2"} <= fams


def test_study_refuses_an_existing_folder_before_any_work(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    r = CliRunner().invoke(main, ["study", "digits", "--quick", "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output
    assert (out / "mine.txt").read_text() == "user data"


@pytest.mark.parametrize("content,match", [
    (b"\xff\xfe" + f"{report.BEGIN}\n{report.END}\n".encode(), "is not UTF-8 text"),
    (f"{report.BEGIN}\na\n{report.END}\n{report.BEGIN}\nb\n{report.END}\n".encode(), "keep exactly one"),
])
def test_a_readme_that_is_not_utf8_or_has_two_blocks_is_refused_before_any_work(tmp_path, content, match):
    """`study digits --readme` on a non-UTF-8 file was an internal error (exit 3, UnicodeDecodeError);
    on a README with two study blocks it rewrote the first and left the second stale. Both are
    exit 2 before any work, the README and OUT untouched."""
    readme = tmp_path / "README.md"
    readme.write_bytes(content)
    r = CliRunner().invoke(main, ["study", "digits", "--quick", "-o", str(tmp_path / "o"), "--readme", str(readme)])
    assert r.exit_code == 2 and match in r.output and "internal error" not in r.output, r.output
    assert readme.read_bytes() == content and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    for mod in ("torch", "snntorch", "norse", "sklearn", "matplotlib"):  # scripts/test.sh installs them; CI fails without
        require_oracle(mod)
    base = tmp_path_factory.mktemp("study")
    out = base / "quick"
    readme = base / "README.md"
    readme.write_text((ROOT / "README.md").read_text())  # --readme rewrites its study block
    r = CliRunner().invoke(main, ["study", "digits", "--quick", "-o", str(out), "--readme", str(readme)])
    return r, out


def test_quick_study_runs_the_whole_pipeline(quick_run):
    r, out = quick_run
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["quick"] and res["data"]["rsnn"]["sample_shape"][-1] == 16 and res["data"]["cnn"]["sample_shape"][1:] == [2, 10, 10]
    for name in ("rsnn", "cnn"):
        net = res["networks"][name]
        assert (out / net["export"]["file"]).is_file()
        runs = net["float"]["runs"]
        for run in ("snntorch (trained model)", "reference", "snntorch", "norse"):
            assert run in runs and runs[run].get("error") is None and 0.0 <= runs[run]["accuracy"] <= 1.0, (name, run, runs.get(run))
    compiled = [r for r in res["rows"] if (r.get("chip") or {}).get("fits")]
    # both networks reach every chip they are meant for: Xylo and Loihi 2 (recurrent), Speck and Loihi 2 (CNN)
    assert {(r["network"], r["target"].split(":")[0]) for r in compiled} >= {("rsnn", "xylo"), ("rsnn", "loihi2"), ("cnn", "speck"),
                                                                               ("cnn", "loihi2")}
    for row in compiled:
        chip, ft = row["chip"], row["finetune"]
        n = res["data"][row["network"]]["test"]
        assert 0.0 <= chip["accuracy"] <= 1.0 and 0 <= chip["silent_samples"] <= n
        assert ft["status"] == "done", (row["target"], ft)
        assert ft["fits"] and 0.0 <= ft["accuracy"] <= 1.0
        # epoch 0 (the compiled network) and every fine-tuning epoch scored on the validation set;
        # the kept one is the best there, and its graph is written when it is not the original
        curve = [e["val_chip"] for e in ft["epochs"]]
        assert len(curve) == res["config"][f"{row['network']}_finetune_epochs"] + 1 and ft["kept_epoch"] == int(np.argmax(curve))
        assert (ft["kept_epoch"] == 0) != (out / f"{row['network']}-{row['target'].replace(':', '-')}-finetuned.nir").is_file()
        for e in ft["epochs"][2:]:  # each epoch starts from the graph the last one wrote: its chip is the same
            assert e["val_chip_before"] == ft["epochs"][e["epoch"] - 1]["val_chip"]
        assert chip["multi_spike_entries"] <= chip["firing_entries"]
    assert res["goal"]["rows"] and all(isinstance(g["met"], bool) for g in res["goal"]["rows"])
    md = (out / "results.md").read_text()
    assert report.markdown_table(res) in md and len(report.table_rows(res)) >= len(compiled)
    for name in ("raster.png", "accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "goal" in r.output and "| network | target |" in r.output
    text = (out.parent / "README.md").read_text()
    i, j = report.readme_block(text)
    assert text[i:j].strip() == report.readme_text(res).strip()
    # only the block changed
    orig = (ROOT / "README.md").read_text()
    oi, oj = report.readme_block(orig)
    assert text[:i] == orig[:oi] and text[j:] == orig[oj:]


def test_quick_study_is_deterministic_in_its_data_split(quick_run):
    """The two encodings share one split and the quick subsets are fixed by the seed."""
    from nirdeploy.evaluation.study.digits import QUICK, load_data

    _, out = quick_run
    res = json.loads((out / "results.json").read_text())
    a, b = load_data(QUICK), load_data(QUICK)
    assert np.array_equal(a["rsnn"].y_test, b["cnn"].y_test) and np.array_equal(a["rsnn"].x_test, b["rsnn"].x_test)
    assert res["data"]["rsnn"]["test"] == len(a["rsnn"].y_test) == QUICK.test_limit
