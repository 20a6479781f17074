"""The integer network that runs on Loihi 2: what the lowering produces, the simulator runs, the
partitioner places, the netx exporter writes and ``lava.py`` turns into Lava processes.

One :class:`NeuronLayer` is one Lava ``LIF`` process (CUBA LIF neurons with per-process scalar
``du``, ``dv``, ``vth`` and per-neuron ``bias_mant``/``bias_exp``). Each of its inputs is one
:class:`Synapse`, a Lava ``Dense`` (or ``Conv``) process from a source (the network input or a
layer, itself included for recurrence). Every synapse delays by one time step.

This module needs numpy only, so that it imports in the Python 3.10 Lava environment too.
Facts: ``shared/chips/loihi2.md`` sections 2-3 (lava-nc 0.10.0 ``proc/dense/models.py``,
``utils/weightutils.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SIGN_MODES", "INPUT", "Synapse", "NeuronLayer", "Loihi2Network", "infer_sign_mode", "effective_weights"]

#: Lava's ``SignMode`` values (lava.utils.weightutils)
SIGN_MODES = {"mixed": 1, "excitatory": 2, "inhibitory": 3}
INPUT = -1  # Synapse.src of the network input


def infer_sign_mode(weight: np.ndarray) -> str:
    """Lava's ``determine_sign_mode``: all >= 0 excitatory, all <= 0 inhibitory, else mixed."""
    w = np.asarray(weight)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def effective_weights(weight: np.ndarray, sign_mode: str | None, num_weight_bits: int = 8) -> np.ndarray:
    """The weights a Loihi Dense synapse really uses (int64), from the integers it is given.

    Lava's ``PyDenseModelBitAcc`` on its first step: clip to 8 bits by sign mode (mixed
    -256..255, excitatory 0..255, inhibitory -255..0 as a negated magnitude), then drop
    ``8 - num_weight_bits + (1 if mixed)`` low bits with an arithmetic (floor) shift. A mixed-sign
    matrix therefore always loses its lowest bit: 1 -> 0, 3 -> 2, -3 -> -4.
    """
    w = np.asarray(weight, dtype=np.int64)
    mode = sign_mode or infer_sign_mode(w)
    if mode not in SIGN_MODES:
        raise ValueError(f"sign mode must be one of {', '.join(SIGN_MODES)}, got {mode!r}")
    nb = int(num_weight_bits)
    if not 1 <= nb <= 8:
        raise ValueError(f"num_weight_bits must be in 1..8, got {nb}")
    mixed = mode == "mixed"
    if mode == "inhibitory":
        w = -w
    w = np.clip(w, -256 if mixed else 0, 255)
    k = 8 - nb + (1 if mixed else 0)
    w = (w >> k) << k
    return -w if mode == "inhibitory" else w


@dataclass
class Synapse:
    """One Lava Dense (``kind="dense"``) or Conv (``kind="conv"``) process.

    dense: ``weight`` (n_dst, n_src) integers; the summed activation is shifted by
    ``weight_exp`` (left for > 0, arithmetic right for < 0).
    conv: ``weight`` (C_out, C_in/groups, kh, kw) integers, PyTorch cross-correlation layout on
    (C, H, W) maps; ``stride``/``padding``/``dilation`` pairs, ``groups``; the output wraps at
    24 bits (Lava's fixed-point Conv); ``weight_exp`` must be 0 (Lava's CPU Conv has none).
    ``sign_mode`` None lets the chip infer it from the matrix (Lava's default).
    ``delay`` (dense only): None, or (n_dst, n_src) integers >= 0: synapse (i, j) delivers
    ``delay[i, j]`` steps after a plain Dense would (Lava's ``DelayDense``; per step and per delay
    value, the weights of that delay are summed and shifted by ``weight_exp`` on their own).
    """

    src: int
    kind: str
    weight: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    name: str = ""
    delay: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.int64)
        self.src = int(self.src)
        self.weight_exp = int(self.weight_exp)
        self.num_weight_bits = int(self.num_weight_bits)
        self.stride = tuple(int(s) for s in self.stride)
        self.padding = tuple(int(s) for s in self.padding)
        self.dilation = tuple(int(s) for s in self.dilation)
        self.groups = int(self.groups)
        if self.kind not in ("dense", "conv"):
            raise ValueError(f"synapse kind must be dense or conv, got {self.kind!r}")
        if self.delay is not None:
            if self.kind != "dense":
                raise ValueError("only Dense synapses have delays (Lava's DelayDense)")
            self.delay = np.broadcast_to(np.asarray(self.delay, dtype=np.int64), self.weight.shape).copy()
            if self.delay.size and self.delay.min() < 0:
                raise ValueError("synaptic delays must be >= 0")

    @property
    def max_delay(self) -> int:
        """The longest extra delay (0 without delays)."""
        return int(self.delay.max()) if self.delay is not None and self.delay.size else 0
    @property
    def resolved_sign_mode(self) -> str:
        return self.sign_mode or infer_sign_mode(self.weight)

    def effective(self) -> np.ndarray:
        """Weights as the chip uses them (see :func:`effective_weights`)."""
        if self.kind == "conv":
            return self.weight.copy()  # Lava's fixed-point Conv uses its integers as given
        return effective_weights(self.weight, self.sign_mode, self.num_weight_bits)

    def meta(self) -> dict:
        return {"src": self.src, "kind": self.kind, "weight_exp": self.weight_exp, "num_weight_bits": self.num_weight_bits,
                "sign_mode": self.sign_mode, "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "name": self.name, "delayed": self.delay is not None}


@dataclass
class NeuronLayer:
    """One Lava LIF process: CUBA LIF neurons of ``shape`` (``(n,)`` or ``(C, H, W)``).

    ``du``, ``dv`` (0..4095) and ``vth`` (17-bit mantissa) are per-process scalars;
    ``bias_mant``/``bias_exp`` are per neuron (flattened, length n).

    A layer of the source graph whose neurons need different ``du``/``dv`` runs as several LIF
    processes, one per (du, dv) group: each carries ``origin`` (the source layer's name) and
    ``neurons`` (its neurons' positions in that layer, ascending).
    """

    name: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    synapses: list[Synapse] = field(default_factory=list)
    origin: str = ""
    neurons: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        n = self.n
        self.bias_mant = np.broadcast_to(np.asarray(self.bias_mant, dtype=np.int64).reshape(-1), (n,)).copy()
        self.bias_exp = np.broadcast_to(np.asarray(self.bias_exp, dtype=np.int64).reshape(-1), (n,)).copy()
        self.du, self.dv, self.vth = int(self.du), int(self.dv), int(self.vth)
        self.origin = str(self.origin)
        if self.neurons is not None:
            self.neurons = np.asarray(self.neurons, dtype=np.int64).reshape(-1)
            if self.neurons.shape != (n,):
                raise ValueError(f"layer {self.name}: {self.neurons.size} neuron positions for {n} neurons")

    @property
    def n(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def effective_bias(self) -> np.ndarray:
        """bias_mant << bias_exp (>> -bias_exp when negative), int64, per neuron."""
        m, e = self.bias_mant, self.bias_exp
        return np.where(e >= 0, m << np.maximum(e, 0), m >> np.maximum(-e, 0))


@dataclass
class Loihi2Network:
    """Layers in evaluation order; ``output`` is the index of the layer read out (its spikes, or
    its voltage ``v`` when ``readout == "v"``)."""

    input_shape: tuple[int, ...]
    layers: list[NeuronLayer]
    output: int
    readout: str = "spikes"

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.readout not in ("spikes", "v"):
            raise ValueError(f"readout must be spikes or v, got {self.readout!r}")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    def groups_of(self, i: int) -> list[int]:
        """The layers that run the source layer of layer ``i``: [i], or every group of a layer
        split by time constants (same ``origin``), in order."""
        o = self.layers[i].origin
        return [i] if not o else [k for k, L in enumerate(self.layers) if L.origin == o]

    def merge_groups(self, arrays: list[np.ndarray], i: int) -> np.ndarray:
        """(..., n_g) arrays of the groups of layer ``i`` (:meth:`groups_of`, in order) -> (..., n)
        in the source layer's neuron order."""
        ks = self.groups_of(i)
        if len(ks) == 1 and self.layers[ks[0]].neurons is None:
            return arrays[0]
        pos = np.concatenate([self.layers[k].neurons for k in ks])
        out = np.empty(arrays[0].shape[:-1] + (pos.size,), dtype=arrays[0].dtype)
        out[..., pos] = np.concatenate(arrays, axis=-1)
        return out

    @property
    def output_layers(self) -> list[int]:
        """The layers read out: the output layer, or all groups of a split output layer."""
        return self.groups_of(self.output)

    @property
    def output_shape(self) -> tuple[int, ...]:
        ks = self.output_layers
        return self.layers[ks[0]].shape if len(ks) == 1 else (sum(self.layers[k].n for k in ks),)

    def src_shape(self, src: int) -> tuple[int, ...]:
        return self.input_shape if src == INPUT else self.layers[src].shape

    # -- (de)serialization: JSON-able meta + named integer arrays (no pickles) ----------------
    def to_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for i, L in enumerate(self.layers):
            arrays[f"L{i}.bias_mant"] = L.bias_mant
            arrays[f"L{i}.bias_exp"] = L.bias_exp
            syn = []
            for j, s in enumerate(L.synapses):
                arrays[f"L{i}.S{j}.weight"] = s.weight
                if s.delay is not None:
                    arrays[f"L{i}.S{j}.delay"] = s.delay
                syn.append(s.meta())
            lm = {"name": L.name, "shape": list(L.shape), "du": L.du, "dv": L.dv, "vth": L.vth, "synapses": syn}
            if L.origin:
                lm["origin"] = L.origin
                arrays[f"L{i}.neurons"] = L.neurons
            layers.append(lm)
        meta = {"input_shape": list(self.input_shape), "output": self.output, "readout": self.readout, "layers": layers}
        return meta, arrays

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "Loihi2Network":
        layers = []
        for i, lm in enumerate(meta["layers"]):
            syns = []
            for j, sm in enumerate(lm["synapses"]):
                syns.append(Synapse(sm["src"], sm["kind"], arrays[f"L{i}.S{j}.weight"], sm["weight_exp"], sm["num_weight_bits"],
                                    sm["sign_mode"], tuple(sm["stride"]), tuple(sm["padding"]), tuple(sm["dilation"]), sm["groups"],
                                    sm.get("name", ""), arrays[f"L{i}.S{j}.delay"] if sm.get("delayed") else None))
            layers.append(NeuronLayer(lm["name"], tuple(lm["shape"]), lm["du"], lm["dv"], lm["vth"], arrays[f"L{i}.bias_mant"],
                                      arrays[f"L{i}.bias_exp"], syns, lm.get("origin", ""), arrays.get(f"L{i}.neurons")))
        return cls(tuple(meta["input_shape"]), layers, int(meta["output"]), meta.get("readout", "spikes"))
