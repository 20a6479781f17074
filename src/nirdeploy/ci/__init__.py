"""Simulator-backed CI in the user's own repository.

* A pytest plugin (registered through the ``pytest11`` entry point, loaded automatically once
  nirdeploy is installed; it needs no torch): the fixtures ``nirdeploy_check`` and
  ``nirdeploy_target``, the options ``--nirdeploy-target`` and ``--nirdeploy-report DIR``, and
  the assertions below, importable from here::

      from nirdeploy.ci import assert_fits, assert_chip_agrees, assert_chip_accuracy

      def test_fits():
          assert_fits("model/net.nir", "xylo:audio2", dt=1e-4, reset="subtract", budget="budget.toml")

* CI-native output for ``nirdeploy check`` (``--format json|junit|github``) and budget files
  (``--budget budget.toml``): :mod:`nirdeploy.ci.formats`, :mod:`nirdeploy.ci.budget`.
"""

from __future__ import annotations

from .assertions import (
    NirdeployAssertionError,
    assert_chip_accuracy,
    assert_chip_agrees,
    assert_fits,
    nirdeploy_check,
)
from .budget import Budget, BudgetError, BudgetResult, evaluate_budget, load_budget, parse_budget

__all__ = [
    "NirdeployAssertionError",
    "assert_chip_accuracy",
    "assert_chip_agrees",
    "assert_fits",
    "evaluate_budget",
    "nirdeploy_check",
    "Budget",
    "BudgetError",
    "BudgetResult",
    "load_budget",
    "parse_budget",
]
