"""The Speck target: check, compile, simulate, export, load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nirdeploy.backend.folder import ArraySpec, Bool, Float, Int, ListOf, Nullable, Schema, Str, AnyValue, read_json, read_npz, write_json, write_npz
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target
from nirdeploy.errors import UsageError
from nirdeploy.graph.ir import Graph

from .config import SpeckNetwork
from .lower import OPTIONS, SUPPORTED_NODES, Lowered, lower, resolve_options

__all__ = ["SpeckTarget", "speck_config"]

CONFIG_FILE = "speck_config.json"
SINABS_FILE = "sinabs_model.npz"
META_FILE = "speck_meta.json"
REPORT_FILE = "report.json"

_LAYER = Schema({
    "name": Str(), "weight_node": Str(), "kind": Str(("conv", "linear")), "core": Nullable(Int(0, 64)),
    "threshold_high": Int(-(2**31), 2**31), "threshold_low": Int(-(2**31), 2**31), "return_to_zero": Bool(),
    "stride": ListOf(Int(1, 1 << 16), 2, 2), "padding": ListOf(Int(0, 1 << 16), 2, 2),
    "input_shape": ListOf(Int(1, 1 << 20), 3, 3), "neuron_shape": ListOf(Int(1, 1 << 20), 3, 3),
    "sources": ListOf(ListOf(AnyValue(), 2, 2), 1, 64), "has_bias": Bool(), "scale": Float(0, exclusive_min=True),
})
_NETWORK = Schema({"input_shape": ListOf(Int(1, 1 << 20), 3, 3), "output_layer": Str(), "output_pool": Int(1, 1 << 10),
                   "output_shape": ListOf(Int(1, 1 << 30), 0, 8), "layers": ListOf(_LAYER, 1, 64)})
META_SCHEMA = Schema({"format": Int(1, 1), "variant": Str(), "options": Schema({}), "network": _NETWORK,
                      "input_shape": ListOf(Int(1, 1 << 30), 1, 8), "output_shape": ListOf(Int(1, 1 << 30), 0, 8)})


class SpeckTarget(Target):
    name = "speck"
    description = "SynSense Speck (2e, 2f): 9 DYNAP-CNN cores of integer integrate-and-fire convolutions"
    supported_nodes = SUPPORTED_NODES
    options = {k: v[2] for k, v in OPTIONS.items()}

    def summary(self, variant: str) -> str:
        lim = self.hwconfig(variant).limits
        return (f"{lim['cores']} cores, kernel mem {min(lim['kernel_memory']) // 1024}-{max(lim['kernel_memory']) // 1024} Ki, "
                f"neuron mem {min(lim['neuron_memory']) // 1024}-{max(lim['neuron_memory']) // 1024} Ki, k <= {lim['max_kernel_size']}, "
                "int8 weights, int16 state, IF only")

    # -- contract ----------------------------------------------------------------------------------
    def _lower(self, graph: Graph, variant: str, options: CompileOptions) -> Lowered:
        low = lower(graph, self.hwconfig(variant), options)
        if options.calibration is not None:
            low.report.notes.append("calibration input ignored: Speck calibration waits for the shared nirdeploy.backend.calibration")
        return low

    def check(self, graph: Graph, variant: str, options: CompileOptions) -> FitReport:
        return self._lower(graph, variant, options).report

    def compile(self, graph: Graph, variant: str, options: CompileOptions) -> Artifact:
        low = self._lower(graph, variant, options)
        return Artifact(self.name, variant, low.report, low, low.input_shape, low.output_shape, 0)

    def simulate(self, artifact: Artifact, x: np.ndarray, *, record: bool = False, progress=None, mode: str | None = None) -> SimOutput:
        """Chip simulation; ``mode`` "event" (default from the compile option sim_mode) or "binned"."""
        from .sim import simulate_binned, simulate_events

        low: Lowered = artifact.payload
        if low.network is None:
            raise UsageError("this network did not lower onto Speck; see its report")
        o = low.options
        mode = mode or o["sim_mode"]
        if mode == "binned":
            res = simulate_binned(low.network, x, spikes=o["binned_spikes"], record=record, progress=progress)
        elif mode == "event":
            res = simulate_events(low.network, x, state_format=self.hwconfig(artifact.variant).fmt("state"), spike_test=o["spike_test"],
                                  state_overflow=o["state_overflow"], ticks_per_step=o["slow_clock_ticks_per_step"], record=record,
                                  progress=progress)
        else:
            raise UsageError(f"mode must be 'event' or 'binned', got {mode!r}")
        return SimOutput(output=res.output, states=res.states if record else {})

    def chip_model(self, artifact: Artifact, *, weights=None, **options):
        """Speck's chip model in torch (:mod:`.torch_model`; imports torch); option ``mode``
        ("event" | "binned", default: the compiled sim_mode)."""
        from .torch_model import build

        return build(self, artifact, weights, **options)

    def export(self, artifact: Artifact, folder: Path) -> list[str]:
        low: Lowered = artifact.payload
        if low.network is None:
            raise UsageError("nothing to export: the network did not lower onto Speck")
        folder = Path(folder)
        net = low.network
        write_json(folder / CONFIG_FILE, speck_config(net, self.hwconfig(artifact.variant)))
        write_npz(folder / SINABS_FILE, net.to_arrays())
        meta = {"format": 1, "variant": artifact.variant, "options": dict(low.options), "network": net.to_meta(),
                "input_shape": list(low.input_shape), "output_shape": list(low.output_shape)}
        write_json(folder / META_FILE, meta)
        return [CONFIG_FILE, SINABS_FILE, META_FILE]

    def load(self, folder: Path) -> Artifact:
        folder = Path(folder)
        meta = read_json(folder / META_FILE, META_SCHEMA)
        if meta["variant"] not in self.variants():
            raise UsageError(f"{folder / META_FILE}: unknown Speck variant {meta['variant']!r}")
        n = len(meta["network"]["layers"])
        specs = {}
        for i, d in enumerate(meta["network"]["layers"]):
            specs[f"weight_{i}"] = ArraySpec("i", 4, _range_check(-128, 127))
            specs[f"bias_{i}"] = ArraySpec("i", 1, _range_check(-(2**15), 2**15 - 1))
        arrays = read_npz(folder / SINABS_FILE, specs)
        for i, d in enumerate(meta["network"]["layers"]):
            w, b = arrays[f"weight_{i}"], arrays[f"bias_{i}"]
            c, h, wd = d["neuron_shape"]
            if w.shape[0] != c or w.shape[1] != d["input_shape"][0] or b.shape != (c,):
                raise UsageError(f"{folder / SINABS_FILE}: layer {i} arrays {w.shape}/{b.shape} do not match its shapes in {META_FILE}")
        try:
            net = SpeckNetwork.from_data(meta["network"], arrays)
            opts = resolve_options(meta["options"], self.hwconfig(meta["variant"]))
            names = {l.name for l in net.layers} | {"__input__"}
            if net.output_layer not in names or any(s not in names for l in net.layers for s, _ in l.sources):
                raise ValueError("a layer source or the output layer names no layer")
        except (KeyError, ValueError, TypeError) as e:
            raise UsageError(f"{folder / META_FILE} is damaged: {e}") from None
        report = FitReport.from_dict(read_json(folder / REPORT_FILE))
        low = Lowered(net, report, opts, tuple(meta["input_shape"]), tuple(meta["output_shape"]))
        del n
        return Artifact(self.name, meta["variant"], report, low, low.input_shape, low.output_shape, 0)


def _range_check(lo: int, hi: int):
    def check(a: np.ndarray):
        if a.size and (a.min() < lo or a.max() > hi):
            return f"values outside [{lo}, {hi}]"
        return None

    return check


def speck_config(net: SpeckNetwork, hw) -> dict:
    """Per-core configuration structured after samna's Speck configuration (``cnn_layers[core]``,
    speck.md section 5): dimensions, weights in samna's [out][in][x][y] order, biases,
    leak_enable, thresholds, return_to_zero, neurons_initial_value (zeros, [f][x][y]), destinations
    with their pooling, monitor_enable on the output layer. Inputs from the host are listed under
    ``input_destinations`` (samna input events name a core)."""
    core_of = {l.name: l.core for l in net.layers}
    cores = []
    for l in net.layers:
        C, H, W = l.neuron_shape
        dests = [{"layer": core_of[d], "enable": True, "pooling": int(p), "layer_name": d} for d, p in net.destinations(l.name)]
        cores.append({
            "core": l.core,
            "layer_name": l.name,
            "weight_node": l.weight_node,
            "dimensions": {
                "input_shape": {"size": {"x": l.input_shape[2], "y": l.input_shape[1]}, "feature_count": l.input_shape[0]},
                "output_shape": {"size": {"x": W, "y": H}, "feature_count": C},
                "padding": {"x": l.padding[1], "y": l.padding[0]},
                "stride": {"x": l.stride[1], "y": l.stride[0]},
                "kernel_size": l.kernel[0],
            },
            "weights": np.transpose(l.weight, (0, 1, 3, 2)).tolist(),
            "biases": l.bias.tolist(),
            "leak_enable": bool(np.any(l.bias != 0)),
            "threshold_high": l.threshold_high,
            "threshold_low": l.threshold_low,
            "return_to_zero": bool(l.return_to_zero),
            "monitor_enable": l.name == net.output_layer,
            "neurons_initial_value": np.zeros((C, W, H), dtype=np.int64).tolist(),
            "destinations": dests,
        })
    return {
        "format": "nirdeploy speck configuration 1 (fields after samna's Speck CnnLayerConfig)",
        "device": hw.chip.get("sinabs_device", ""),
        "chip": hw.name,
        "input_shape": list(net.input_shape),
        "input_destinations": [{"layer": core_of[d], "layer_name": d} for d, _ in net.destinations("__input__")],
        "output_layer": {"layer": core_of[net.output_layer], "layer_name": net.output_layer, "host_pooling": net.output_pool},
        "cnn_layers": sorted(cores, key=lambda c: c["core"]),
    }
