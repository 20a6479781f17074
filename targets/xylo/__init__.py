"""Xylo target (Audio 2, Audio 3, IMU)."""
from .target import XyloTarget

__all__ = ["XyloTarget"]
