"""The integer network that runs on Xylo: the one object the lowering produces, the simulator
runs, the fit rules check and the exporter writes.

Shapes are always the full-width ones (input weights reach every hidden neuron, output weights
come from every hidden neuron); the Audio 3 / IMU input and output windows are fit rules, and the
exporter cuts the matrices to the shapes Rockpool expects for the variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


__all__ = ["XyloConfig"]

_ARRAYS = (
    "weights_in",
    "weights_rec",
    "weights_out",
    "dash_mem",
    "dash_syn",
    "dash_syn_2",
    "dash_mem_out",
    "dash_syn_out",
    "threshold",
    "threshold_out",
    "bias",
    "bias_out",
)


@dataclass
class XyloConfig:
    """Integer parameters of one Xylo network.

    weights_in  (Nin, Nhid, Nsyn) int   8-bit signed values
    weights_rec (Nhid, Nhid, Nsyn) int  8-bit signed values; [pre, post, syn]
    weights_out (Nhid, Nout) int        8-bit signed values
    dash_mem, dash_syn, dash_syn_2 (Nhid,) int 0..15; dash_syn_2 is ignored when Nsyn == 1
    dash_mem_out, dash_syn_out (Nout,) int 0..15
    threshold (Nhid,), threshold_out (Nout,) int16 values
    bias (Nhid,), bias_out (Nout,) int16 values, used only when bias_enable
    weight_shift_in / _rec / _out: left shift 0..15 applied to each 8-bit weight
    aliases: list (len Nhid) of lists of at most one alias target index each
    """

    weights_in: np.ndarray
    weights_rec: np.ndarray
    weights_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_syn_2: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray
    weight_shift_in: int = 0
    weight_shift_rec: int = 0
    weight_shift_out: int = 0
    bias_enable: bool = False
    aliases: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        if self.weights_in.ndim == 2:
            self.weights_in = self.weights_in[:, :, None]
        if self.weights_rec.ndim == 2:
            self.weights_rec = self.weights_rec[:, :, None]
        if not self.aliases:
            self.aliases = [[] for _ in range(self.n_hidden)]
        self.weight_shift_in = int(self.weight_shift_in)
        self.weight_shift_rec = int(self.weight_shift_rec)
        self.weight_shift_out = int(self.weight_shift_out)
        self.bias_enable = bool(self.bias_enable)

    @property
    def n_in(self) -> int:
        return int(self.weights_in.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.weights_in.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights_out.shape[1])

    @property
    def n_syn(self) -> int:
        return int(self.weights_in.shape[2])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of numpy arrays and scalars (for ``np.savez``)."""
        d = {name: getattr(self, name) for name in _ARRAYS}
        d["weight_shift_in"] = np.int64(self.weight_shift_in)
        d["weight_shift_rec"] = np.int64(self.weight_shift_rec)
        d["weight_shift_out"] = np.int64(self.weight_shift_out)
        d["bias_enable"] = np.bool_(self.bias_enable)
        d["aliases"] = np.array([a[0] if a else -1 for a in self.aliases], dtype=np.int64)
        return d

    @classmethod
    def from_arrays(cls, d) -> "XyloConfig":
        kw = {name: np.asarray(d[name]) for name in _ARRAYS}
        al = np.asarray(d["aliases"]).tolist()
        return cls(
            **kw,
            weight_shift_in=int(d["weight_shift_in"]),
            weight_shift_rec=int(d["weight_shift_rec"]),
            weight_shift_out=int(d["weight_shift_out"]),
            bias_enable=bool(d["bias_enable"]),
            aliases=[[int(a)] if a >= 0 else [] for a in al],
        )
