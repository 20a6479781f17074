"""Speck target (speck2e, speck2f)."""
from .target import SpeckTarget

__all__ = ["SpeckTarget"]
