"""Every malformed or hostile file of ``bad_inputs.CASES`` is refused with a clear error."""

from __future__ import annotations

import pytest

from bad_inputs import CASES, good_file
from nirdeploy.errors import GraphLoadError, GraphValidationError, NirDeployError
from nirdeploy.graph.loading import load

HANG_CASES = {"hdf5_library_hang"}


@pytest.fixture(autouse=True)
def _short_budget_for_the_hang(request, monkeypatch):
    """The hang case never finishes, so any budget stops it: 0.5 s of the reader's processor time
    keeps it quick. The other cases read with the real budget (processor time, so load on the
    machine cannot fail them)."""
    import nirdeploy.graph.loading as L

    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("case_id") in HANG_CASES:
        monkeypatch.setattr(L, "READ_TIMEOUT_BASE_S", 0.5)


def test_table_is_big_enough_and_unique():
    assert len(CASES) >= 25
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_the_base_graph_of_the_table_is_valid(tmp_path):
    g = load(good_file(tmp_path))
    assert set(g.nodes) == {"input", "fc", "lif", "output"}


@pytest.mark.parametrize("case_id,builder,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused(tmp_path, case_id, builder, expected):
    path = builder(tmp_path)
    with pytest.raises(NirDeployError) as info:
        load(path)
    err = info.value
    assert isinstance(err, (GraphLoadError, GraphValidationError)), type(err)
    assert err.exit_code == 2
    msg = str(err)
    assert expected.lower() in msg.lower(), msg
    assert "Traceback" not in msg
    assert len(msg) < 5000


@pytest.mark.parametrize("case_id,builder,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_without_validation_never_crashes(tmp_path, case_id, builder, expected):
    """With validate=False a file either loads or raises a NirDeployError: nothing else."""
    path = builder(tmp_path)
    try:
        load(path, validate=False)
    except NirDeployError as e:
        assert e.exit_code == 2
