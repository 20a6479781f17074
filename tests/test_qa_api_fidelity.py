"""QA (Python API / odd dt): what makes the chip differ from the float network is a text warning,
and bad API arguments are typed errors (GUIDE "the promise we keep")."""

import numpy as np
import pytest

import nirdeploy
from nirdeploy.errors import UsageError

CORPUS = "examples/nir-corpus/"


def test_loihi2_rounded_decay_that_moves_tau_is_a_warning_with_numbers():
    # lif_norse: tau_mem = 2.5 ms; at dt = 1 us Loihi's dv = round(4096 * dt / tau) = round(1.64) = 2,
    # an effective tau of 2.048 ms (-18 %): was only usage["tau_mem_max_rel_error"] in JSON.
    rep = nirdeploy.check(CORPUS + "lif_norse.nir", "loihi2", dt=1e-6)
    w = [v for v in rep.violations if v.rule == "time_constant_changed"]
    assert len(w) == 1 and w[0].severity == "warning"
    assert "0.0025" in w[0].message and "0.002048" in w[0].message and "-18 %" in w[0].message
    assert w[0].hint
    assert "time_constant_changed" in rep.render()


def test_loihi2_exact_decay_has_no_tau_warning():
    # dt = 2.5 ms / 4096 * 4: dv = 4 exactly, so the effective tau equals the requested one
    rep = nirdeploy.check(CORPUS + "lif_norse.nir", "loihi2", dt=0.0025 * 4 / 4096)
    assert not [v for v in rep.violations if v.rule == "time_constant_changed"]
