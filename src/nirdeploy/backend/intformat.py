"""Explicit integer formats.

One :class:`IntFormat` object describes a hardware number: its width, its signedness and what
happens when a value leaves its range (``"saturate"`` clamps, ``"wrap"`` keeps the low bits as
two's complement). ``symmetric`` formats drop the most negative code (range ``-max..max``, as
Loihi's voltage clip ``+-(2**23 - 1)``). The quantizers, the fit rules and the bit-accurate simulators all take their
formats from the same hw_configs data file, so they cannot disagree about a range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IntFormat"]

_OVERFLOW = ("saturate", "wrap")


@dataclass(frozen=True)
class IntFormat:
    bits: int
    signed: bool = True
    overflow: str = "saturate"
    name: str = ""
    symmetric: bool = False  # signed range -max..max (the most negative code is unused)

    def __post_init__(self) -> None:
        if not (1 <= int(self.bits) <= 62):
            raise ValueError(f"IntFormat bits must be in 1..62, got {self.bits}")
        if self.overflow not in _OVERFLOW:
            raise ValueError(f"IntFormat overflow must be one of {_OVERFLOW}, got {self.overflow!r}")

    # -- range -------------------------------------------------------------------------------
    @property
    def min(self) -> int:
        if not self.signed:
            return 0
        return -((1 << (self.bits - 1)) - 1) if self.symmetric else -(1 << (self.bits - 1))

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def in_range(self, x) -> np.ndarray:
        """Element-wise: does x lie in the representable range?"""
        a = np.asarray(x)
        return (a >= self.min) & (a <= self.max)

    def count_out_of_range(self, x) -> int:
        return int(np.count_nonzero(~self.in_range(x)))

    # -- conversion --------------------------------------------------------------------------
    def saturate(self, x) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=np.int64), self.min, self.max)

    def wrap(self, x) -> np.ndarray:
        a = np.asarray(x, dtype=np.int64)
        span = 1 << self.bits
        a = a & (span - 1)
        if self.signed:
            a = np.where(a > self.max, a - span, a)
        return a

    def apply(self, x) -> np.ndarray:
        """Bring integers into range with this format's overflow rule (int64 result)."""
        return self.saturate(x) if self.overflow == "saturate" else self.wrap(x)

    def quantize(self, x, scale=1.0) -> np.ndarray:
        """Round ``x * scale`` half away from zero, then apply the overflow rule."""
        v = np.asarray(x, dtype=np.float64) * scale
        r = np.sign(v) * np.floor(np.abs(v) + 0.5)
        r = np.clip(r, -(2.0**62), 2.0**62)
        return self.apply(r.astype(np.int64))

    def numpy_dtype(self) -> np.dtype:
        for b in (8, 16, 32, 64):
            if self.bits <= b - (0 if self.signed else 0):
                return np.dtype(f"{'int' if self.signed else 'uint'}{b}")
        return np.dtype("int64")

    # -- data --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"bits": self.bits, "signed": self.signed, "overflow": self.overflow, "min": self.min, "max": self.max}
        if self.symmetric:
            d["symmetric"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict, name: str = "") -> "IntFormat":
        return cls(bits=int(d["bits"]), signed=bool(d.get("signed", True)), overflow=str(d.get("overflow", "saturate")), name=name,
                   symmetric=bool(d.get("symmetric", False)))

    def __str__(self) -> str:
        kind = "int" if self.signed else "uint"
        return f"{kind}{self.bits}({'sat' if self.overflow == 'saturate' else 'wrap'})"
