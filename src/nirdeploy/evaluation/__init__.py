"""Evaluation: comparing chip and reference outputs (and, as it grows, accuracy and studies)."""
