"""The README stays true: its primitive table is the generated one, and its first lines are
the two fresh-machine commands that CI runs."""

from pathlib import Path

from nirdeploy.docs import BEGIN, END, NON_NIR_BEGIN, NON_NIR_END, non_nir_table, primitive_table

ROOT = Path(__file__).resolve().parents[1]


def test_primitive_table_is_current():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert block == primitive_table(), "README table is stale: run `python -m nirdeploy.docs` and paste it"


def test_non_nir_table_is_current_and_apart_from_the_primitives():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(NON_NIR_BEGIN) + len(NON_NIR_BEGIN) : text.index(NON_NIR_END)].strip()
    assert block == non_nir_table(), "README table is stale: run `python -m nirdeploy.docs` and paste it"
    primitives = {r.split("|")[1].strip() for r in primitive_table().splitlines()[2:]}
    layers = {r.split("|")[1].strip() for r in non_nir_table().splitlines()[2:]}
    assert layers == {"MaxPool2d", "MaxPool1d", "BatchNorm2d", "BatchNorm1d", "Dropout"} and not layers & primitives


def test_primitive_table_reflects_targets():
    lines = primitive_table().splitlines()
    cols = [c.strip() for c in lines[0].split("|")[2:-1]]
    rows = {r.split("|")[1].strip(): dict(zip(cols, (c.strip() for c in r.split("|")[2:-1]))) for r in lines[2:]}
    assert rows["CubaLIF"]["reference simulator"] == rows["CubaLIF"]["xylo"] == "yes"
    assert rows["Conv2d"]["reference simulator"] == "yes" and rows["Conv2d"]["xylo"] == "no"
    assert rows["Conv2d"]["loihi2"] == rows["SumPool2d"]["loihi2"] == rows["IF"]["loihi2"] == "yes"
    assert rows["Delay"]["loihi2"] == "yes" and rows["Delay"]["xylo"] == "no"  # Loihi 2: synaptic delays (DelayDense)
    assert len(rows) == 19  # every NIR 1.0 node type plus Input, Output, NIRGraph


def test_readme_starts_with_the_two_commands_ci_runs():
    lines = (ROOT / "README.md").read_text().splitlines()
    head = "\n".join(lines[:6])
    assert "bash scripts/demo.sh" in head and "bash scripts/test.sh" in head
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    graph = ROOT / "examples" / "nir-corpus" / "braille_noDelay_noBias_subtract.nir"
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"graph.nir"', repr(str(graph))), "README.md", "exec"), {})
    assert (tmp_path / "out" / "report.json").is_file()
