"""The integer network that runs on Speck: the one object the lowering produces, the simulators
run, the fit rules check and the exporter writes.

One :class:`SpeckLayer` is one DYNAP-CNN core: a convolution (a Linear layer is a convolution
whose kernel covers its whole input map) into integrate-and-fire neurons whose spikes go to at
most two destinations, each with its own sum pooling (speck.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SpeckLayer", "SpeckNetwork", "INPUT"]

INPUT = "__input__"  # source name of the events the host sends in


@dataclass
class SpeckLayer:
    """One core's integer parameters and wiring.

    weight        (c_out, c_in, k_h, k_w) int, 8-bit values; [out][in][y][x] (samna stores x, y)
    bias          (c_out,) int, added on every slow-clock tick (``has_bias``: leak_enable)
    threshold_high, threshold_low: int, 16-bit; one per core (speck.md section 2)
    return_to_zero: reset to 0 after a spike (else subtract ``threshold_high``)
    stride, padding: (y, x); input_shape, neuron_shape: (C, H, W) (neuron = conv output)
    sources       [(source layer name or INPUT, sum-pooling size)], their pooled spikes add
    core          the DYNAP-CNN core the layer is mapped to (None until mapped)
    kind          "conv" or "linear" (a Linear/Affine node lowered to a full-map convolution)
    scale         the float factor that multiplied weights, bias and thresholds before rounding
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    threshold_high: int
    threshold_low: int
    return_to_zero: bool
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_shape: tuple[int, int, int]
    neuron_shape: tuple[int, int, int]
    sources: list[tuple[str, int]] = field(default_factory=list)
    core: int | None = None
    kind: str = "conv"
    has_bias: bool = False
    scale: float = 1.0
    weight_node: str = ""

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.int64)
        self.bias = np.asarray(self.bias, dtype=np.int64).reshape(-1)
        self.threshold_high = int(self.threshold_high)
        self.threshold_low = int(self.threshold_low)
        self.stride = tuple(int(s) for s in self.stride)  # type: ignore[assignment]
        self.padding = tuple(int(p) for p in self.padding)  # type: ignore[assignment]
        self.input_shape = tuple(int(s) for s in self.input_shape)  # type: ignore[assignment]
        self.neuron_shape = tuple(int(s) for s in self.neuron_shape)  # type: ignore[assignment]
        self.sources = [(str(s), int(p)) for s, p in self.sources]

    @property
    def c_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def c_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])


@dataclass
class SpeckNetwork:
    """Layers in evaluation order (every source precedes its destinations), the input shape
    (C, H, W), the output layer with the host-side pooling applied to what it monitors, and the
    graph's output shape (the monitored spikes are reshaped to it)."""

    layers: list[SpeckLayer]
    input_shape: tuple[int, int, int]
    output_layer: str
    output_pool: int = 1
    output_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)  # type: ignore[assignment]
        self.output_shape = tuple(int(s) for s in self.output_shape)  # type: ignore[assignment]
        self.output_pool = int(self.output_pool)

    def layer(self, name: str) -> SpeckLayer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def destinations(self, name: str) -> list[tuple[str, int]]:
        """(destination layer, pooling) pairs of layer ``name`` (or of INPUT)."""
        return [(l.name, p) for l in self.layers for s, p in l.sources if s == name]

    # -- flat data (export / load) ---------------------------------------------------------------
    def to_meta(self) -> dict:
        """Everything but the arrays, as JSON data."""
        return {
            "input_shape": list(self.input_shape),
            "output_layer": self.output_layer,
            "output_pool": self.output_pool,
            "output_shape": list(self.output_shape),
            "layers": [
                {
                    "name": l.name,
                    "weight_node": l.weight_node,
                    "kind": l.kind,
                    "core": l.core,
                    "threshold_high": l.threshold_high,
                    "threshold_low": l.threshold_low,
                    "return_to_zero": l.return_to_zero,
                    "stride": list(l.stride),
                    "padding": list(l.padding),
                    "input_shape": list(l.input_shape),
                    "neuron_shape": list(l.neuron_shape),
                    "sources": [[s, p] for s, p in l.sources],
                    "has_bias": l.has_bias,
                    "scale": float(l.scale),
                }
                for l in self.layers
            ],
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, l in enumerate(self.layers):
            out[f"weight_{i}"] = l.weight.astype(np.int64)
            out[f"bias_{i}"] = l.bias.astype(np.int64)
        return out

    @classmethod
    def from_data(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "SpeckNetwork":
        layers = []
        for i, d in enumerate(meta["layers"]):
            layers.append(
                SpeckLayer(
                    name=d["name"],
                    weight=arrays[f"weight_{i}"],
                    bias=arrays[f"bias_{i}"],
                    threshold_high=d["threshold_high"],
                    threshold_low=d["threshold_low"],
                    return_to_zero=d["return_to_zero"],
                    stride=tuple(d["stride"]),
                    padding=tuple(d["padding"]),
                    input_shape=tuple(d["input_shape"]),
                    neuron_shape=tuple(d["neuron_shape"]),
                    sources=[(s, p) for s, p in d["sources"]],
                    core=d["core"],
                    kind=d["kind"],
                    has_bias=d["has_bias"],
                    scale=d["scale"],
                    weight_node=d.get("weight_node", ""),
                )
            )
        return cls(layers, tuple(meta["input_shape"]), meta["output_layer"], meta["output_pool"], tuple(meta["output_shape"]))
