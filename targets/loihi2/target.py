"""The Loihi 2 target: check, compile, simulate, export, load.

Compiled folder (besides the core's report.json, deployment.json and graph copy):

* ``loihi2_network.npz``: the integer parameters (weights, biases) of every layer and synapse;
* ``loihi2_meta.json``: layer structure and scalars (du, dv, vth, weight_exp, sign mode...),
  latency, readout and its scale;
* ``network.net``: the lava-dl netx HDF5 export (when the network is a chain netx can load; see
  :mod:`.netx`).

``load`` reads them only through :mod:`nirdeploy.backend.folder` (regular files, size caps,
schemas). Target options (``CompileOptions.extra``; API ``target_options=``, CLI ``-T KEY=VALUE``):
``loihi_mode`` (``default`` | ``paper``, the NIR paper's constants | ``netx``) and ``max_chips``
(CLI ``--max-chips``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nirdeploy.backend.folder import ArraySpec, Bool, Float, Int, ListOf, Nullable, Schema, Str, read_json, read_npz, write_json, write_npz
from nirdeploy.backend.compiled import read_report
from nirdeploy.backend.report import FitReport, Violation
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target
from nirdeploy.backend.calibration import add_sample_agreement
from nirdeploy.errors import DeploymentFolderError, UsageError
from nirdeploy.graph.ir import Graph

from .config import SIGN_MODES, Loihi2Network
from .lower import LOIHI_MODES, SUPPORTED_NODES, Lowered, lower

__all__ = ["Loihi2Target", "read_network", "NETWORK_FILE", "META_FILE", "NETX_FILE"]

NETWORK_FILE = "loihi2_network.npz"
META_FILE = "loihi2_meta.json"
NETX_FILE = "network.net"
#: target options (CLI -T KEY=VALUE; --max-chips N sets max_chips)
OPTIONS = {
    "loihi_mode": "default | paper (the NIR paper's Lava constants) | netx (what a lava-dl netx file holds exactly)",
    "max_chips": "refuse a network that needs more Loihi 2 chips than this (default: count them)",
}

_PAIR = ListOf(Int(0, 1 << 16), 2, 2)
_POSITIVE_PAIR = ListOf(Int(1, 1 << 16), 2, 2)
_SYN = Schema({"src": Int(-1, 1 << 20), "kind": Str(("dense", "conv")), "weight_exp": Int(-8, 7), "num_weight_bits": Int(1, 8),
               "sign_mode": Nullable(Str(tuple(SIGN_MODES))), "stride": _POSITIVE_PAIR, "padding": _PAIR, "dilation": _POSITIVE_PAIR,
               "groups": Int(1, 1 << 16)}, optional={"name": Str(), "delayed": Bool()})
_LAYER = Schema({"name": Str(max_len=1000), "shape": ListOf(Int(1, 1 << 24), 1, 3), "du": Int(0, 4095), "dv": Int(0, 4095),
                 "vth": Int(0, (1 << 17) - 1), "synapses": ListOf(_SYN, 0, 1 << 16)}, optional={"origin": Str(max_len=1000)})
META_SCHEMA = Schema({
    "format": Int(1, 1),
    "variant": Str(max_len=100),
    "input_shape": ListOf(Int(1, 1 << 24), 1, 3),
    "output_shape": ListOf(Int(1, 1 << 24), 1, 3),
    "latency_steps": Int(0, 1 << 20),
    "output_scale": Nullable(ListOf(Float(0, exclusive_min=True))),
    "netx": Bool(),
    "network": Schema({"input_shape": ListOf(Int(1, 1 << 24), 1, 3), "output": Int(0, 1 << 16), "readout": Str(("spikes", "v")),
                       "layers": ListOf(_LAYER, 1, 1 << 16)}),
})




def _int_array(a: np.ndarray) -> str | None:
    return None if np.all(np.abs(a) < (1 << 20)) else "holds values beyond the Loihi weight/bias ranges"


def read_network(folder: Path, hw=None) -> tuple[Loihi2Network, dict]:
    """The network and meta of a compiled folder, read and checked through backend.folder: every
    field's type and range (the chip's formats from the hw_config of the folder's variant:
    decays, threshold, weight exponent and bits, bias mantissa and exponent, synaptic delays),
    array shapes against the layer shapes, synapse sources, the output layer, and the fields that
    must agree (input/output shapes, readout and its scales, latency). Raises
    DeploymentFolderError naming the file and field."""
    from nirdeploy.backend.hwconfig import load_hwconfig

    folder = Path(folder)
    mp, ap = folder / META_FILE, folder / NETWORK_FILE
    meta = read_json(mp, META_SCHEMA)
    if hw is None:
        try:
            hw = load_hwconfig("loihi2", meta["variant"])
        except Exception:
            raise DeploymentFolderError(mp, "variant", f"unknown variant {meta['variant']!r}") from None
    nm = meta["network"]
    _check_meta(meta, hw, mp)
    bm, be = hw.fmt("bias_mant"), hw.fmt("bias_exp")
    specs = {}
    for i, lm in enumerate(nm["layers"]):
        n = int(np.prod(lm["shape"]))
        specs[f"L{i}.bias_mant"] = ArraySpec("iu", 1, _within(bm.min, bm.max, n))
        specs[f"L{i}.bias_exp"] = ArraySpec("iu", 1, _within(be.min, be.max, n))
        if lm.get("origin"):
            specs[f"L{i}.neurons"] = ArraySpec("iu", 1, _int_array)
        for j, sm in enumerate(lm["synapses"]):
            lo, hi = _weight_range(sm)
            specs[f"L{i}.S{j}.weight"] = ArraySpec("iu", 2 if sm["kind"] == "dense" else 4, _within(lo, hi))
            if sm.get("delayed"):
                specs[f"L{i}.S{j}.delay"] = ArraySpec("iu", 2, _within(0, int(hw.limits["max_synaptic_delay"])))
    arrays = read_npz(ap, specs)
    try:
        net = Loihi2Network.from_parts(nm, arrays)
    except (ValueError, KeyError, IndexError) as e:
        raise DeploymentFolderError(mp, "network", f"is inconsistent with {NETWORK_FILE}: {e}") from None
    _validate(net, mp, ap)
    _check_outputs(net, meta, hw, mp)
    return net, meta


def _within(lo: int, hi: int, size: int | None = None):
    def check(a: np.ndarray) -> str | None:
        if size is not None and a.size != size:
            return f"has {a.size} entries; its layer has {size} neurons"
        if a.size and (a.min() < lo or a.max() > hi):
            return f"holds values outside {lo}..{hi} (found {a.min()}..{a.max()})"
        return None

    return check


def _weight_range(sm: dict) -> tuple[int, int]:
    """What a weight of ``num_weight_bits`` bits can hold in the synapse's sign mode (Lava's
    weightutils: mixed keeps even values in -2**bits..2**bits - 2; excitatory 0..2**bits - 1;
    inhibitory -(2**bits - 1)..0; a conv synapse has no sign mode)."""
    top = (1 << sm["num_weight_bits"]) - 1
    return {"mixed": (-top - 1, top - 1), "excitatory": (0, top), "inhibitory": (-top, 0)}.get(sm["sign_mode"], (-top - 1, top))


def _check_meta(meta: dict, hw, mp: Path) -> None:
    """Fields of loihi2_meta.json checked against the variant's formats and limits."""
    lim = hw.limits
    nm = meta["network"]
    vth_max, dmax = hw.fmt("threshold").max, (1 << int(lim["decay_shift"])) - 1
    for i, lm in enumerate(nm["layers"]):
        key = f"network.layers[{i}]"
        for k, lo, hi in (("du", 0, dmax), ("dv", 0, dmax), ("vth", 1, vth_max)):
            if not lo <= lm[k] <= hi:
                raise DeploymentFolderError(mp, f"{key}.{k}", f"{lm[k]} is outside {lo}..{hi} ({hw.name})")
        for j, sm in enumerate(lm["synapses"]):
            sk = f"{key}.synapses[{j}]"
            if not int(lim["weight_exp_min"]) <= sm["weight_exp"] <= int(lim["weight_exp_max"]):
                raise DeploymentFolderError(mp, f"{sk}.weight_exp", f"{sm['weight_exp']} is outside {lim['weight_exp_min']}..{lim['weight_exp_max']}")
            if sm["num_weight_bits"] > int(lim["num_weight_bits_max"]):
                raise DeploymentFolderError(mp, f"{sk}.num_weight_bits", f"{sm['num_weight_bits']} > {lim['num_weight_bits_max']}")
            if not -1 <= sm["src"] < len(nm["layers"]):
                raise DeploymentFolderError(mp, f"{sk}.src", f"{sm['src']} names no layer (-1 is the input, 0..{len(nm['layers']) - 1} the layers)")
            if sm["kind"] == "dense" and sm["sign_mode"] is None:
                raise DeploymentFolderError(mp, f"{sk}.sign_mode", "a dense synapse needs a sign mode")
    if not nm["output"] < len(nm["layers"]):
        raise DeploymentFolderError(mp, "network.output", f"layer {nm['output']} does not exist ({len(nm['layers'])} layers)")
    if list(nm["input_shape"]) != list(meta["input_shape"]):
        raise DeploymentFolderError(mp, "network.input_shape", f"{nm['input_shape']} differs from input_shape {meta['input_shape']}")


def _check_outputs(net: Loihi2Network, meta: dict, hw, mp: Path) -> None:
    """The output shape, readout scales and latency agree with the network."""
    n_out = sum(net.layers[k].n for k in net.groups_of(net.output)) if net.layers[net.output].origin else net.layers[net.output].n
    if int(np.prod(meta["output_shape"])) != n_out:
        raise DeploymentFolderError(mp, "output_shape", f"{meta['output_shape']} does not hold the {n_out} neurons of the output layer")
    scale = meta["output_scale"]
    if net.readout == "v" and (scale is None or len(scale) != n_out):
        raise DeploymentFolderError(mp, "output_scale", f"a voltage readout needs {n_out} positive scales, got "
                                    f"{'none' if scale is None else len(scale)}")
    if net.readout == "spikes" and scale is not None:
        raise DeploymentFolderError(mp, "output_scale", "is set, but the readout is spikes (scales belong to a voltage readout)")
    most = len(net.layers) * (1 + int(hw.limits["max_synaptic_delay"]))
    if meta["latency_steps"] > most:
        raise DeploymentFolderError(mp, "latency_steps", f"{meta['latency_steps']} is more than {len(net.layers)} layers can delay "
                                    f"(at most {most} steps: one per synapse plus {hw.limits['max_synaptic_delay']} of delay)")


def _validate(net: Loihi2Network, mp: Path, ap: Path) -> None:
    """Shapes of the arrays against the layers, split groups, synapse sources and conv geometry."""
    origins: dict[str, list[np.ndarray]] = {}
    for i, L in enumerate(net.layers):
        if L.origin:
            if L.neurons is None:
                raise DeploymentFolderError(ap, f"L{i}.neurons", f"missing: layer {i} is a group of {L.origin}")
            origins.setdefault(L.origin, []).append(L.neurons)
        for j, s in enumerate(L.synapses):
            key = f"L{i}.S{j}.weight"
            n_src = int(np.prod(net.src_shape(s.src)))
            if s.kind == "dense" and s.weight.shape != (L.n, n_src):
                raise DeploymentFolderError(ap, key, f"has shape {s.weight.shape}; layer {i} ({L.n} neurons) from source {s.src} "
                                            f"({n_src}) needs ({L.n}, {n_src})")
            if s.delay is not None and s.delay.shape != s.weight.shape:
                raise DeploymentFolderError(ap, f"L{i}.S{j}.delay", f"has shape {s.delay.shape}, not the weight's {s.weight.shape}")
            if s.kind == "conv":
                if len(L.shape) != 3 or len(net.src_shape(s.src)) != 3:
                    raise DeploymentFolderError(mp, f"network.layers[{i}].shape", "a conv synapse needs (C, H, W) shapes")
                if s.weight.shape[0] != L.shape[0] or s.weight.shape[1] * s.groups != net.src_shape(s.src)[0]:
                    raise DeploymentFolderError(ap, key, f"conv weight {s.weight.shape} does not match the shapes")
                _, H, W = net.src_shape(s.src)
                out = tuple((n + 2 * p - d * (k - 1) - 1) // st + 1
                            for n, k, st, p, d in zip((H, W), s.weight.shape[2:], s.stride, s.padding, s.dilation))
                if out != tuple(L.shape[1:]):
                    raise DeploymentFolderError(mp, f"network.layers[{i}].synapses[{j}]", f"a {s.weight.shape[2]}x{s.weight.shape[3]} "
                                                f"convolution (stride {list(s.stride)}, padding {list(s.padding)}, dilation "
                                                f"{list(s.dilation)}) of a {H}x{W} map gives {list(out)}, not the layer's {list(L.shape[1:])}")
                from .partition import fanin_indices

                try:
                    fanin_indices(s, net.src_shape(s.src), L.shape)
                except (ValueError, IndexError, ZeroDivisionError) as e:
                    raise DeploymentFolderError(mp, f"network.layers[{i}].synapses[{j}]", f"conv geometry does not fit: {e}") from None
    for o, parts in origins.items():
        pos = np.sort(np.concatenate(parts))
        if not np.array_equal(pos, np.arange(pos.size)):
            raise DeploymentFolderError(ap, "neurons", f"the groups of layer {o} do not cover its neurons exactly once")


def _merge_states(net: Loihi2Network, states: dict) -> dict:
    """Recorded states per source-graph layer: the groups of a layer split by time constants
    (``name#g``) are merged back into one entry under the layer's name, in its neuron order."""
    out = {}
    for i, L in enumerate(net.layers):
        if not L.origin:
            out[L.name] = states[L.name]
        elif L.origin not in out:
            ks = net.groups_of(i)
            out[L.origin] = {v: net.merge_groups([states[net.layers[k].name][v] for k in ks], i) for v in states[L.name]}
    return out


class Loihi2Target(Target):
    name = "loihi2"
    description = "Intel Loihi 2 (Lava fixed-point CUBA LIF; Dense and Conv synapses; multi-core, multi-chip placement)"
    supported_nodes = SUPPORTED_NODES
    options = OPTIONS

    def summary(self, variant: str) -> str:
        lim = self.hwconfig(variant).limits
        return (f"{lim['cores_per_chip']} cores/chip, {lim['neurons_per_core']} neurons/core (estimate), 8-bit weights + exponent, "
                "24-bit u/v, 12-bit decays")

    def _options(self, options: CompileOptions) -> CompileOptions:
        unknown = sorted(set(options.extra) - set(OPTIONS))
        if unknown:
            raise UsageError(f"unknown loihi2 option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        mode = options.extra.get("loihi_mode", "default")
        if mode not in LOIHI_MODES:
            raise UsageError(f"loihi_mode must be one of {', '.join(LOIHI_MODES)}, got {mode!r}")
        mc = options.extra.get("max_chips")
        if mc is not None:
            try:
                mc_i = int(mc)
            except (TypeError, ValueError):
                raise UsageError(f"max_chips must be a positive integer, got {mc!r}") from None
            if mc_i < 1 or str(mc_i) != str(mc).strip():
                raise UsageError(f"max_chips must be a positive integer, got {mc!r}")
            options.extra["max_chips"] = mc_i
        return options

    def _lower(self, graph: Graph, variant: str, options: CompileOptions) -> Lowered:
        """Lower; with sample input (``options.sample``, or ``options.calibration``: Loihi 2 has no
        quantization calibration, so that sample is measured only and the report says so),
        simulate the chip on it and measure how often its output decision equals the float
        reference's (a warning below AGREEMENT_WARN)."""
        import dataclasses

        options = self._options(options)
        no_calibration = options.calibration is not None
        if no_calibration:  # the settings must not claim a calibration that did not happen
            options = dataclasses.replace(options, sample=options.calibration, calibration=None)
        low = lower(graph, self.hwconfig(variant), options)
        if options.sample is None:
            return low
        rep = low.report
        if no_calibration:
            rep.violations.append(Violation(
                "no_calibration", "--calibrate: nirdeploy has no quantization calibration for Loihi 2; the sample was only measured "
                "(the network is compiled as without it)", severity="warning",
                hint="use --sample to measure; to improve the agreement, train with the chip's time constants and weight range"))
        if low.network is None or not rep.fits:
            rep.notes.append("sample input given, but the network does not fit: no agreement measurement")
            return low
        from nirdeploy.evaluation.compare import readout_agreement
        from nirdeploy.sim.reference import simulate_reference

        x = np.asarray(options.sample)
        ref = simulate_reference(graph, x, options.dt, scheme=options.scheme, reset=options.reset).output
        art = Artifact(self.name, variant, rep, low, low.input_shape, low.output_shape, low.latency_steps)
        chip = self.simulate(art, x).output
        readout = rep.details.get("readout", "spikes")
        b, t = chip.shape[:2]
        ag = readout_agreement(chip.reshape(b, t, -1), ref.reshape(b, t, -1), low.latency_steps, readout)
        add_sample_agreement(rep, samples=b, steps=t, agreement=ag["decision_agreement"], correlation=ag["value_correlation"],
                             values="spike-count" if readout == "spikes" else "Vmem",
                             detail=f" (silent: chip {ag['silent_chip_samples']}, reference {ag['silent_reference_samples']} of {b})",
                             extra={"readout": readout, "silent_chip_samples": ag["silent_chip_samples"],
                                    "silent_reference_samples": ag["silent_reference_samples"]},
                             hint="see the quantization and decay warnings above; `nirdeploy compare G.nir --input X.npy --with "
                                  "reference,OUT` explains the differences it detects")
        return low

    # -- contract ------------------------------------------------------------------------------
    def check(self, graph: Graph, variant: str, options: CompileOptions) -> FitReport:
        return self._lower(graph, variant, options).report

    def compile(self, graph: Graph, variant: str, options: CompileOptions) -> Artifact:
        low = self._lower(graph, variant, options)
        return Artifact(self.name, variant, low.report, low, low.input_shape, low.output_shape, low.latency_steps)

    def simulate(self, artifact: Artifact, x: np.ndarray, *, record: bool = False, progress=None) -> SimOutput:
        from .sim import Constants, simulate

        low: Lowered = artifact.payload
        if low.network is None:
            raise UsageError("this network did not lower onto Loihi 2; see its report")
        hw = self.hwconfig(artifact.variant)
        net = low.network
        res = simulate(net, np.asarray(x), constants=Constants.from_hw(hw), record=record, progress=progress)
        out = res.output.reshape(res.output.shape[:2] + tuple(low.output_shape))
        if net.readout == "v":
            out = out / np.asarray(low.output_scale, dtype=np.float64).reshape(low.output_shape)
        return SimOutput(output=out, states=_merge_states(net, res.states) if record else {})

    def chip_model(self, artifact: Artifact, *, weights=None, **options):
        """Loihi 2's chip model in torch (:mod:`.torch_model`; imports torch)."""
        from .torch_model import build

        return build(self, artifact, weights, **options)

    def export(self, artifact: Artifact, folder: Path) -> list[str]:
        from .netx import NetxUnsupported, write_netx

        low: Lowered = artifact.payload
        if low.network is None:
            raise UsageError("nothing to export: the network did not lower onto Loihi 2")
        folder = Path(folder)
        meta_net, arrays = low.network.to_parts()
        write_npz(folder / NETWORK_FILE, arrays)
        files = [NETWORK_FILE, META_FILE]
        netx = True
        try:  # the report already says why when it cannot be written (lower.py)
            write_netx(low.network, folder / NETX_FILE, artifact.report.settings.get("dt"))
            files.append(NETX_FILE)
        except NetxUnsupported:
            netx = False
        meta = {
            "format": 1,
            "variant": artifact.variant,
            "input_shape": list(low.input_shape),
            "output_shape": list(low.output_shape),
            "latency_steps": int(low.latency_steps),
            "output_scale": None if low.output_scale is None else [float(s) for s in np.asarray(low.output_scale).ravel()],
            "netx": netx,
            "network": meta_net,
        }
        write_json(folder / META_FILE, meta)
        return files

    def load(self, folder: Path) -> Artifact:
        folder = Path(folder)
        net, meta = read_network(folder)
        report = read_report(folder)  # the core's schema (also checked by the core before this load)
        scale = None if meta["output_scale"] is None else np.asarray(meta["output_scale"], dtype=np.float64)
        low = Lowered(net, report, tuple(meta["input_shape"]), tuple(meta["output_shape"]), int(meta["latency_steps"]), scale)
        if meta["variant"] not in self.variants():
            raise DeploymentFolderError(folder / META_FILE, "variant", f"unknown variant {meta['variant']!r}")
        return Artifact(self.name, meta["variant"], report, low, low.input_shape, low.output_shape, low.latency_steps)
