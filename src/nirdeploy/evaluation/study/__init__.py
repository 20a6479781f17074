"""End-to-end studies: one trained network through every frontend and chip, in one table
(issue 11). :func:`run_digits` is ``nirdeploy study digits``; torch, snnTorch, Norse,
scikit-learn and matplotlib are imported only when a study runs."""

from .digits import FULL, GOAL_POINTS, QUICK, StudyConfig, run_digits

__all__ = ["run_digits", "StudyConfig", "FULL", "QUICK", "GOAL_POINTS"]
