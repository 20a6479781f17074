"""The Speck target: check, compile, simulate, export, load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nirdeploy.backend.compiled import REPORT_FILE, read_report
from nirdeploy.backend.folder import AnyValue, ArraySpec, Bool, Float, Int, ListOf, Schema, Str, read_json, read_npz, write_json, write_npz
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target
from nirdeploy.backend.calibration import add_sample_agreement
from nirdeploy.errors import DeploymentFolderError, UsageError
from nirdeploy.graph.ir import Graph

from .config import INPUT, SpeckNetwork
from .lower import OPTIONS, SUPPORTED_NODES, Lowered, lower, option_range, resolve_options

__all__ = ["SpeckTarget", "speck_config"]

CONFIG_FILE = "speck_config.json"
SINABS_FILE = "sinabs_model.npz"
META_FILE = "speck_meta.json"

META_FORMAT = 1  # the version of speck_meta.json this nirdeploy writes and reads
_NAME = Str(max_len=256)
_SHAPE3 = ListOf(Int(1, 1 << 20), 3, 3)
_LAYER = Schema({
    "name": _NAME, "weight_node": Str(max_len=256), "kind": Str(("conv", "linear")), "core": Int(0, 63),
    "threshold_high": Int(-(2**31), 2**31), "threshold_low": Int(-(2**31), 2**31), "return_to_zero": Bool(),
    "stride": ListOf(Int(1, 1 << 16), 2, 2), "padding": ListOf(Int(0, 1 << 16), 2, 2),
    "input_shape": _SHAPE3, "neuron_shape": _SHAPE3,
    "sources": ListOf(ListOf(AnyValue(), 2, 2), 1, 64), "has_bias": Bool(), "scale": Float(0, exclusive_min=True),
}, allow_extra=False)
_NETWORK = Schema({"input_shape": _SHAPE3, "output_layer": _NAME, "output_pool": Int(1, 1 << 10),
                   "output_shape": ListOf(Int(1, 1 << 30), 0, 8), "layers": ListOf(_LAYER, 1, 64)}, allow_extra=False)
# every option is optional (a folder written before an option existed gets its default)
_OPTIONS = Schema({}, optional={k: (Int(0) if allowed is int else Str(tuple(allowed) if k != "state_overflow" else ("saturate", "wrap")))
                                for k, (allowed, _, _) in OPTIONS.items()}, allow_extra=False)
#: the schema of speck_meta.json (format 1); cross-file and chip-limit checks follow in ``load``
META_SCHEMA = Schema({"format": Int(), "variant": Str(max_len=100), "options": _OPTIONS, "network": _NETWORK,
                      "input_shape": ListOf(Int(1, 1 << 30), 1, 8), "output_shape": ListOf(Int(1, 1 << 30), 0, 8)},
                     allow_extra=False)


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
        """Lower; with sample input, calibrate (``options.calibration``: per-layer weight scales,
        guarded by the agreement with the float reference on the sample, never worse than
        uncalibrated; :mod:`.calibrate`) or measure that agreement (``options.sample``)."""
        from .calibrate import agreement, calibrate_speck, skip

        hw = self.hwconfig(variant)
        low = lower(graph, hw, options)
        sample = options.calibration if options.calibration is not None else options.sample
        if sample is None:
            return low
        if low.network is None or not low.report.fits:
            low.report.notes.append("sample input given, but the network does not fit: no calibration and no agreement measurement")
            if options.calibration is not None:
                skip("the network does not fit this variant").add_to_report(low.report)
            return low
        from nirdeploy.sim.reference import simulate_reference

        x = np.asarray(sample)
        ref = simulate_reference(graph, x, options.dt, scheme=options.scheme, reset=options.reset).output
        if options.calibration is not None:
            low, cal = calibrate_speck(graph, hw, options, low, x, ref)
            cal.add_to_report(low.report)
            ag = cal.best_evaluation.figures
        else:
            a, _ = agreement(low, hw, x, ref)
            ag = {"agreement": a["decision_agreement"], "correlation": a["value_correlation"]}
        mode = low.options["sim_mode"]
        add_sample_agreement(low.report, samples=x.shape[0], steps=x.shape[1], agreement=ag.get("agreement"),
                             correlation=ag.get("correlation"), context=f", {mode} simulation", detail=f" ({mode} simulation)",
                             extra={"mode": mode},
                             hint="see the weight and threshold warnings above; --calibrate X.npy tunes the per-layer weight scales "
                                  "on the sample; `nirdeploy compare` explains the differences it detects")
        return low

    def check(self, graph: Graph, variant: str, options: CompileOptions) -> FitReport:
        return self._lower(graph, variant, options).report

    def compile(self, graph: Graph, variant: str, options: CompileOptions) -> Artifact:
        low = self._lower(graph, variant, options)
        return Artifact(self.name, variant, low.report, low, low.input_shape, low.output_shape, 0)

    def simulate(self, artifact: Artifact, x: np.ndarray, *, record: bool = False, progress=None, mode: str | None = None) -> SimOutput:
        """Chip simulation; ``mode`` "event" (default from the compile option sim_mode) or "binned"."""
        from .sim import simulate_network

        low: Lowered = artifact.payload
        if low.network is None:
            raise UsageError("this network did not lower onto Speck; see its report")
        res = simulate_network(low.network, low.options, self.hwconfig(artifact.variant).fmt("state"), x, mode=mode, record=record,
                               progress=progress)
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
        meta = {"format": META_FORMAT, "variant": artifact.variant, "options": dict(low.options), "network": net.to_meta(),
                "input_shape": list(low.input_shape), "output_shape": list(low.output_shape)}
        write_json(folder / META_FILE, meta)
        return [CONFIG_FILE, SINABS_FILE, META_FILE]

    def load(self, folder: Path) -> Artifact:
        """Rebuild the artifact from a compiled folder (the core has validated deployment.json).

        Every file goes through :mod:`nirdeploy.backend.folder`: ``speck_meta.json`` with
        :data:`META_SCHEMA` (format version, options, one schema per layer), ``sinabs_model.npz``
        with one ArraySpec per array (integer kinds, dimensions, the variant's weight and bias
        formats), ``report.json`` through the core's :func:`~nirdeploy.backend.compiled.read_report`,
        and ``speck_config.json`` (the vendor export) must be exactly what the loaded network
        exports, so a hand-edited configuration is not silently ignored by ``simulate``. The
        network must be one the compiler can have written: layers in evaluation order whose shapes
        agree with their weights and sources, within the variant's limits (cores, kernel,
        stride, padding, channels, map sizes, pooling, destinations, 16-bit thresholds). Raises
        DeploymentFolderError naming the file and key."""
        folder = Path(folder)
        mp = folder / META_FILE
        meta = read_json(mp, max_bytes=16 << 20)
        if isinstance(meta, dict) and isinstance(meta.get("format"), int) and not isinstance(meta["format"], bool) \
                and meta["format"] != META_FORMAT:
            raise DeploymentFolderError(mp, "format", f"format version {meta['format']} is not supported (this nirdeploy reads version "
                                        f"{META_FORMAT}); compile the graph again")
        META_SCHEMA.validate(meta, mp)
        if meta["variant"] not in self.variants():
            raise DeploymentFolderError(mp, "variant", f"{meta['variant']!r} is not a Speck variant ({', '.join(self.variants())})")
        hw = self.hwconfig(meta["variant"])
        for k, v in meta["options"].items():
            lo, hi = option_range(k, hw) if OPTIONS[k][0] is int else (0, 0)
            if OPTIONS[k][0] is int and not lo <= v <= hi:
                raise DeploymentFolderError(mp, f"options.{k}", f"{v} is outside {lo}..{hi} (the {hw.name} hw_config's {k})")
        _check_network(meta, hw, mp)
        layers = meta["network"]["layers"]
        wf, bf = hw.fmt("weight"), hw.fmt("bias")
        specs = {}
        for i, d in enumerate(layers):
            specs[f"weight_{i}"] = ArraySpec("iu", 4, _range_check(wf.min, wf.max))
            specs[f"bias_{i}"] = ArraySpec("iu", 1, _range_check(bf.min, bf.max))
        ap = folder / SINABS_FILE
        arrays = read_npz(ap, specs)
        for i, d in enumerate(layers):
            w, b = arrays[f"weight_{i}"], arrays[f"bias_{i}"]
            c, h, wd = d["neuron_shape"]
            kh, kw = w.shape[2:] if w.ndim == 4 else (0, 0)
            want = (c, d["input_shape"][0], kh, kw)
            if w.shape != want or (d["kind"] == "linear" and (kh, kw) != tuple(d["input_shape"][1:])):
                raise DeploymentFolderError(ap, f"weight_{i}", f"has shape {w.shape}, which does not fit layer {i} of {META_FILE} "
                                            f"(input {d['input_shape']}, neurons {d['neuron_shape']}, kind {d['kind']})")
            if (h, wd) != _conv_out(d["input_shape"][1:], (kh, kw), d["stride"], d["padding"]):
                raise DeploymentFolderError(mp, f"network.layers[{i}].neuron_shape", f"{d['neuron_shape']} is not the output of a {kh}x{kw} "
                                            f"convolution (stride {d['stride']}, padding {d['padding']}) over {d['input_shape']}")
            if kh != kw or kh > hw.limits["max_kernel_size"]:
                raise DeploymentFolderError(ap, f"weight_{i}", f"{kh}x{kw} kernel: Speck kernels are square and at most "
                                            f"{hw.limits['max_kernel_size']}x{hw.limits['max_kernel_size']}")
            if b.shape != (c,):
                raise DeploymentFolderError(ap, f"bias_{i}", f"has shape {b.shape}; layer {i} has {c} channels")
            if not d["has_bias"] and np.any(b != 0):
                raise DeploymentFolderError(mp, f"network.layers[{i}].has_bias", f"is false but bias_{i} in {SINABS_FILE} is not zero")
        net = SpeckNetwork.from_data(meta["network"], arrays)
        opts = resolve_options(meta["options"], hw)
        report = read_report(folder)
        for key, want in (("target", self.name), ("variant", meta["variant"])):
            if getattr(report, key) != want:
                raise DeploymentFolderError(folder / REPORT_FILE, key, f"is {getattr(report, key)!r} but the Speck files are {want!r}")
        cp = folder / CONFIG_FILE
        cfg, want = read_json(cp, max_bytes=256 << 20), speck_config(net, hw)
        if cfg != want:
            raise DeploymentFolderError(cp, _first_difference(cfg, want),
                                        f"differs from the network in {META_FILE} and {SINABS_FILE} (edited by hand?); simulate runs "
                                        "those, so compile again rather than edit the configuration")
        low = Lowered(net, report, opts, tuple(meta["input_shape"]), tuple(meta["output_shape"]))
        return Artifact(self.name, meta["variant"], report, low, low.input_shape, low.output_shape, 0)


def _conv_out(size, kernel, stride, padding) -> tuple[int, int]:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))  # type: ignore[return-value]


def _check_network(meta: dict, hw, mp: Path) -> None:
    """The network of speck_meta.json is one nirdeploy can have compiled for ``hw``: layers in
    evaluation order with unique names and cores, sources and output naming earlier layers (or
    the input), shapes that chain, and every value within the variant's limits."""
    lim = hw.limits
    net = meta["network"]
    layers = net["layers"]
    tf, sf = hw.fmt("threshold"), hw.fmt("state")
    if len(layers) > lim["cores"]:
        raise DeploymentFolderError(mp, "network.layers", f"{len(layers)} layers for {lim['cores']} cores")
    if math.prod(net["input_shape"]) != math.prod(meta["input_shape"]):
        raise DeploymentFolderError(mp, "network.input_shape", f"{net['input_shape']} does not hold the input shape {meta['input_shape']}")
    if net["output_shape"] != meta["output_shape"]:
        raise DeploymentFolderError(mp, "network.output_shape", f"{net['output_shape']} differs from output_shape {meta['output_shape']}")
    shapes: dict[str, list[int]] = {INPUT: net["input_shape"]}
    cores: set[int] = set()
    dests: dict[str, int] = {}
    for i, d in enumerate(layers):
        key = f"network.layers[{i}]"

        def bad(k: str, msg: str):
            raise DeploymentFolderError(mp, f"{key}.{k}", msg)

        if d["name"] in shapes:
            bad("name", f"{d['name']!r} names the input or an earlier layer")
        if d["core"] >= lim["cores"]:
            bad("core", f"core {d['core']} does not exist (cores 0..{lim['cores'] - 1})")
        if d["core"] in cores:
            bad("core", f"core {d['core']} holds an earlier layer already")
        cores.add(d["core"])
        if not (1 <= d["threshold_high"] <= tf.max):
            bad("threshold_high", f"{d['threshold_high']} is outside 1..{tf.max} (the 16-bit threshold format)")
        if not (sf.min <= d["threshold_low"] < d["threshold_high"]):
            bad("threshold_low", f"{d['threshold_low']} is outside {sf.min}..threshold_high - 1")
        if any(s not in lim["strides"] for s in d["stride"]):
            bad("stride", f"{d['stride']}: Speck strides are {lim['strides']}")
        if max(d["padding"]) > lim["max_padding"]:
            bad("padding", f"{d['padding']}: Speck pads at most {lim['max_padding']}")
        c_in, h, w = d["input_shape"]
        c, ho, wo = d["neuron_shape"]
        if max(h, w) > lim["max_input_size"] or max(ho, wo) > lim["max_output_size"] or c > lim["max_output_channels"]:
            bad("neuron_shape", f"input {d['input_shape']} / neurons {d['neuron_shape']} exceed Speck's map or channel limits")
        for j, src in enumerate(d["sources"]):
            name, pool = src
            if not isinstance(name, str) or name not in shapes:
                bad(f"sources[{j}]", f"{name!r} is not the input or an earlier layer")
            if isinstance(pool, bool) or not isinstance(pool, int) or pool not in lim["pooling_sizes"]:
                bad(f"sources[{j}]", f"pooling {pool!r} is not one of {lim['pooling_sizes']}")
            sc, sh, sw = shapes[name]
            if (sc, sh // pool, sw // pool) != (c_in, h, w):
                bad(f"sources[{j}]", f"{name!r} pooled by {pool} gives {[sc, sh // pool, sw // pool]}, not the input map {d['input_shape']}")
            dests[name] = dests.get(name, 0) + 1
            if name != INPUT and dests[name] > lim["max_destinations"]:
                bad(f"sources[{j}]", f"{name!r} would send to more than {lim['max_destinations']} cores")
        shapes[d["name"]] = d["neuron_shape"]
    if net["output_layer"] not in shapes or net["output_layer"] == INPUT:
        raise DeploymentFolderError(mp, "network.output_layer", f"{net['output_layer']!r} names no layer")
    oc, oh, ow = shapes[net["output_layer"]]
    p = net["output_pool"]
    if oh // p == 0 or ow // p == 0:
        raise DeploymentFolderError(mp, "network.output_pool", f"pooling by {p} leaves nothing of the {oh}x{ow} map of {net['output_layer']!r}")
    if net["output_shape"] and math.prod(net["output_shape"]) != oc * (oh // p) * (ow // p):
        raise DeploymentFolderError(mp, "network.output_shape", f"{net['output_shape']} does not hold the {oc}x{oh // p}x{ow // p} output "
                                    f"of {net['output_layer']!r}")


def _first_difference(a, b, path: str = "") -> str:
    """The key path of the first place two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(b) + [k for k in a if k not in b]:
            if a.get(k, object()) != b.get(k, object()):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return path


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
